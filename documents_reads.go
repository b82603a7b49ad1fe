// Read slots: the document queries and counts one engine has in flight.

package storage

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Default Limits.MaxDocumentReads by backend. A query or a count costs the
// backend work, and on FerretDB memory, in proportion to the caller's
// collection: FerretDB v1 scans it on every call and sorts in memory (the
// in-process FerretDB on SQLite measured +830 MB and 13 CPU-s for a count
// of 200k small documents before counts streamed, and four counts at once
// took 1.3 GB), and keeps scanning until maxTimeMS when the client leaves.
// MongoDB serves the same calls from its indexes, with many more reads in
// flight (its read tickets), so its default only stops one engine from
// flooding it.
const (
	ferretReadSlots = 4
	mongoReadSlots  = 32
)

// readSlots bounds the document reads (queries and counts) an engine has
// in flight: at most total at once, and at most share (half of total, at
// least one) for any one tenant, so one tenant's scans cannot take every
// slot and another tenant waits at most for a slot that none of its own
// calls holds. A read that finds no slot queues, first come first served
// among the waiters that may take one, until its context ends (within
// Config.BackendTimeout): then 503 backend_unavailable with Retry-After.
type readSlots struct {
	total, share int

	mu    sync.Mutex
	inUse int
	held  map[string]int // slots held, by tenant
	queue []*readWaiter
}

type readWaiter struct {
	tenant  string
	ready   chan struct{} // closed when granted
	granted bool
}

func newReadSlots(total int) *readSlots {
	return &readSlots{total: total, share: max(1, total/2), held: map[string]int{}}
}

// readSlotsFor is the read slots of an engine on this backend: the
// configured number, or the backend's default.
func readSlotsFor(l Limits, ferret bool) *readSlots {
	n := l.MaxDocumentReads
	if n <= 0 {
		n = mongoReadSlots
		if ferret {
			n = ferretReadSlots
		}
	}
	return newReadSlots(n)
}

// tenantOf is the tenant of a target: the first segment of its location.
func tenantOf(t target) string {
	tenant, _, _ := strings.Cut(t.loc, "/")
	return tenant
}

func (s *readSlots) free(tenant string) bool {
	return s.inUse < s.total && s.held[tenant] < s.share
}

func (s *readSlots) take(tenant string) {
	s.inUse++
	s.held[tenant]++
}

// acquire waits for a slot for tenant and returns its release, which must
// be called once. Waiting past ctx's end is 503.
func (s *readSlots) acquire(ctx context.Context, tenant string) (release func(), err error) {
	release = func() { s.release(tenant) }
	s.mu.Lock()
	if s.free(tenant) {
		s.take(tenant)
		s.mu.Unlock()
		return release, nil
	}
	w := &readWaiter{tenant: tenant, ready: make(chan struct{})}
	s.queue = append(s.queue, w)
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
	}
	s.mu.Unlock()
	if granted { // granted as the context ended: give it back
		s.release(tenant)
	}
	return nil, &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("documents: waiting for a read slot: %w", ctx.Err())}
}

// release gives a slot back and grants the waiters, in order, that may
// take one now.
func (s *readSlots) release(tenant string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse--
	if s.held[tenant]--; s.held[tenant] <= 0 {
		delete(s.held, tenant)
	}
	kept := s.queue[:0]
	for _, w := range s.queue {
		if s.free(w.tenant) {
			s.take(w.tenant)
			w.granted = true
			close(w.ready)
		} else {
			kept = append(kept, w)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// readSlot waits for a read slot for t's tenant (see readSlots).
func (d *documents) readSlot(ctx context.Context, t target) (release func(), err error) {
	r := d.reads.Load()
	if r == nil { // set by the MongoDB driver once it knows the server
		if err := d.store.ping(ctx); err != nil {
			return nil, err
		}
		r = d.reads.Load()
	}
	return r.acquire(ctx, tenantOf(t))
}
