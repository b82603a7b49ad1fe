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
	return s.acquire(ctx, tenant, 1)
}

// DocumentParseBudget is the engine's parse budget in body bytes.
func DocumentParseBudget(e *Engine) int64 { return e.docs.parseBudget() }

// HoldDocumentParse takes n bytes of the engine's parse budget for
// tenant (at most its share, a quarter of the budget), as a document body being
// parsed and written does, until release is called.
func HoldDocumentParse(ctx context.Context, e *Engine, tenant string, n int64) (release func(), err error) {
	return e.docs.parsing.acquire(ctx, tenant, n)
}

// IndexNoQuery makes an engine on the SQLite store build no index, so that
// a test's reads of one shape all scan. It reports false on MongoDB.
func IndexNoQuery(e *Engine) bool {
	if e.sql == nil {
		return false
	}
	e.sql.indexes.mu.Lock()
	e.sql.indexes.off = true
	e.sql.indexes.mu.Unlock()
	return true
}

// IndexEveryQuery makes an engine on the SQLite store index every query
// and count shape before it answers, without the caps, so that a test's
// later pages and queries of a shape run on its index. It reports false
// on MongoDB, where it does nothing.
func IndexEveryQuery(e *Engine) bool {
	if e.sql == nil {
		return false
	}
	e.sql.indexes.mu.Lock()
	e.sql.indexes.every = true
	e.sql.indexes.mu.Unlock()
	return true
}
