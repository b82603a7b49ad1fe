// Read slots: the document queries and counts one engine has in flight.

package storage

import (
	"context"
	"strings"
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
// calls holds. A read that finds no slot queues (see tenantBudget) until
// its context ends (within Config.BackendTimeout): then 503
// backend_unavailable with Retry-After. Each read takes one unit.
type readSlots = tenantBudget

func newReadSlots(total int) *readSlots {
	return newTenantBudget("a read slot", int64(total), int64(max(1, total/2)))
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

// readSlot waits for a read slot for t's tenant (see readSlots).
func (d *documents) readSlot(ctx context.Context, t target) (release func(), err error) {
	r := d.reads.Load()
	if r == nil { // set by the MongoDB driver once it knows the server
		if err := d.store.ping(ctx); err != nil {
			return nil, err
		}
		r = d.reads.Load()
	}
	return r.acquire(ctx, tenantOf(t), 1)
}
