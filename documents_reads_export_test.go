package storage

import (
	"context"
	"errors"
)

// HoldDocumentRead takes one of the engine's document read slots for
// tenant, as a running query or count of that tenant does, until release
// is called; it waits for one at most until ctx ends. The engine must
// have served a documents call already (the slots exist once it knows its
// backend).
func HoldDocumentRead(ctx context.Context, e *Engine, tenant string) (release func(), err error) {
	s := e.docs.reads.Load()
	if s == nil {
		return nil, errors.New("the documents backend is not known yet: make a documents call first")
	}
	return s.acquire(ctx, tenant)
}
