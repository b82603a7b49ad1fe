// Fair budgets: a resource the engine shares between tenants (document
// read slots, the bytes of request bodies and of document values being
// parsed, write slots), so that no tenant can take all of it.

package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// tenantBudget is total units of a resource, of which one tenant holds at
// most share at once. A request that finds too few units free queues until
// its context ends (within Config.BackendTimeout): then 503
// backend_unavailable with Retry-After. When units come back the waiters
// are granted tenant by tenant, the tenant served least recently first (so
// on a budget of one unit, such as the SQLite write lock, a tenant with one
// request waiting goes before the next of another tenant's many), each
// tenant's own in order: a waiter held back only by its tenant's share is
// passed over, while one held back by the total stops the grants behind
// it, so a large request is not starved by a stream of small ones.
type tenantBudget struct {
	what         string // named in errors, such as "a read slot"
	total, share int64

	mu    sync.Mutex
	inUse int64
	held  map[string]int64 // units held, by tenant
	queue []*budgetWaiter
	// served is when each tenant with a waiter or units held was last
	// granted, counted in grants (seq).
	served map[string]uint64
	seq    uint64
}

type budgetWaiter struct {
	tenant  string
	n       int64
	ready   chan struct{} // closed when granted
	granted bool
}

func newTenantBudget(what string, total, share int64) *tenantBudget {
	return &tenantBudget{what: what, total: total, share: max(1, min(share, total)), held: map[string]int64{}, served: map[string]uint64{}}
}

// clamp is n within what one request may ever hold: 1 to share.
func (s *tenantBudget) clamp(n int64) int64 { return min(max(n, 1), s.share) }

func (s *tenantBudget) fits(tenant string, n int64) (total, own bool) {
	return s.inUse+n <= s.total, s.held[tenant]+n <= s.share
}

func (s *tenantBudget) take(tenant string, n int64) {
	s.inUse += n
	s.held[tenant] += n
	s.seq++
	s.served[tenant] = s.seq
}

// acquire waits for n units (clamped to 1..share) for tenant and returns
// their release, which must be called once. Waiting past ctx's end is 503.
func (s *tenantBudget) acquire(ctx context.Context, tenant string, n int64) (release func(), err error) {
	n = s.clamp(n)
	release = func() { s.release(tenant, n) }
	s.mu.Lock()
	if total, own := s.fits(tenant, n); total && own && len(s.queue) == 0 {
		s.take(tenant, n)
		s.mu.Unlock()
		return release, nil
	}
	w := &budgetWaiter{tenant: tenant, n: n, ready: make(chan struct{})}
	s.queue = append(s.queue, w)
	s.grant() // the queue may be held back only by shares
	s.mu.Unlock()
	select {
	case <-w.ready:
		return release, nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	granted := w.granted
	if !granted {
		for i, q := range s.queue {
			if q == w {
				s.queue = append(s.queue[:i], s.queue[i+1:]...)
				break
			}
		}
		s.grant() // a large waiter that left may have held others back
	}
	s.mu.Unlock()
	if granted { // granted as the context ended: give it back
		s.release(tenant, n)
	}
	return nil, &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("waiting for %s: %w", s.what, ctx.Err())}
}

// release gives n units back and grants the waiters that may go now.
func (s *tenantBudget) release(tenant string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse -= n
	if s.held[tenant] -= n; s.held[tenant] <= 0 {
		delete(s.held, tenant)
		if !slices.ContainsFunc(s.queue, func(w *budgetWaiter) bool { return w.tenant == tenant }) {
			delete(s.served, tenant)
		}
	}
	s.grant()
}

// grant grants the queue in order (see tenantBudget). Called with mu held.
func (s *tenantBudget) grant() {
	if len(s.queue) > 1 {
		slices.SortStableFunc(s.queue, func(a, b *budgetWaiter) int { return cmp.Compare(s.served[a.tenant], s.served[b.tenant]) })
	}
	kept := s.queue[:0]
	blocked := false
	for _, w := range s.queue {
		total, own := s.fits(w.tenant, w.n)
		if !blocked && total && own {
			s.take(w.tenant, w.n)
			w.granted = true
			close(w.ready)
			continue
		}
		if own && !total {
			blocked = true
		}
		kept = append(kept, w)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}
