// The documents store: the driver interface under the documents area
// (design.md, "The embedded store is SQLite").
//
// documents.go, documents_versions.go and query.go parse and check every
// request (identity, tier, collection, key, value, preconditions, filter,
// sort, cursor) and answer it; a docStore keeps the values. Two drivers
// implement it: mongoDocs (documents_mongo.go, MongoDB and FerretDB, the
// production path) and sqliteDocs (documents_sqlite.go, the embedded
// store). One suite runs on both: every documents test of this package
// runs on FerretDB by default and on SQLite with CPODTEST_STORE=sqlite
// (a step of .ci/run).

package storage

import (
	"context"
	"errors"
	"time"
)

// docStore is a documents driver. Every method works on one location and
// logical collection (a target) or on every document under a location
// prefix (erase, scan); nothing else is ever reachable through it.
//
// # Errors
//
// Every method returns nil, or an *Error the engine answers as it is: the
// driver translates its backend's errors itself, once (a backend that did
// not answer in time, or is unreachable: CodeBackendUnavailable; anything
// else unexpected: CodeInternal, its cause in Err). Besides:
//
//   - get: errDocNotFound when the document is missing.
//   - put, remove: a 412 conflict (preconditionFailed) when cond does not
//     hold; nothing is written then. The check and the write are atomic
//     against every other write of the document.
//   - patch: errDocNotFound when missing and cond has no If-Match (412
//     with one); the merge's own error as it is.
//   - batch: an op's failure goes into ops[i].err; a returned error fails
//     the whole request (the backend failed), every op being idempotent.
//   - query, count: a context that ends (the client left, the deadline)
//     stops the backend's work and returns CodeBackendUnavailable.
type docStore interface {
	// get returns the JSON text and the version of the document at key.
	get(ctx context.Context, t target, key string) ([]byte, docTag, error)
	// put stores v at key with version g under cond (If-Match,
	// If-None-Match: * or none).
	put(ctx context.Context, t target, key string, v docValue, cond docCond, g docTag) error
	// remove deletes the document at key under cond; a missing document
	// without a condition is no error.
	remove(ctx context.Context, t target, key string, cond docCond) error
	// patch reads the document at key, checks cond against it, and writes
	// merge(stored JSON) with a version from next, as one atomic step: a
	// concurrent write makes it read and merge again. It returns what it
	// wrote.
	patch(ctx context.Context, t target, key string, cond docCond, merge func(stored []byte) (docValue, error), next func() docTag) (docValue, docTag, error)
	// batch applies the ops without an err in order per key (ops on
	// different keys commute), each set with version g.
	batch(ctx context.Context, reqID string, t target, ops []batchOp, g docTag) error
	// query returns up to limit documents of plan in its order, after its
	// position when plan.after. Positions carried as hashes are read back
	// by the driver (invalid_cursor when that document changed or went).
	query(ctx context.Context, t target, plan queryPlan, limit int) (docPage, error)
	// count counts the documents that match terms.
	count(ctx context.Context, t target, terms []filterTerm) (int64, error)
	// erase deletes every document under prefix, a batch at a time,
	// adding each batch to *n and calling o.done after it.
	erase(ctx context.Context, prefix string, o eraseOptions, n *int64) error
	// scan calls each with every document directly at the location
	// prefix, collection after collection in name order (a collection's
	// documents one after another, by key).
	scan(ctx context.Context, prefix string, each func(coll, key string, json []byte) error) error
	// segments lists, for the admin console (admin_browse.go), the
	// distinct names that follow prefix up to the next '/' in the
	// locations that hold documents (prefix "", a tenant's "t/apps/" or
	// "t/users/"), from the driver's position pos ("" from the start), at
	// most limit and with bounded work; next is the position to go on
	// from, "" when no more. It fails only as every method does.
	segments(ctx context.Context, prefix, pos string, limit int) (names []string, next string, err error)
	// collections lists the logical collections that hold documents at
	// the location loc, after the name after, at most limit, with
	// bounded work; next as for segments.
	collections(ctx context.Context, loc, after string, limit int) (names []string, next string, err error)
	// ping checks that the store answers, for /readyz.
	ping(ctx context.Context) error
}

// docPage is one page of a query.
type docPage struct {
	items []docItem
	// more says a next page exists; last is then the position of the last
	// item (its sort values, inline or hashed, and its key).
	more bool
	pos  []cursorPos
	key  string
}

// docItem is one document of a page.
type docItem struct {
	key  string
	json []byte
}

// errDocNotFound is a document that does not exist.
var errDocNotFound = errorf(CodeNotFound, "no such document")

// isDocNotFound reports errDocNotFound (or any not_found).
func isDocNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// newTag is the version of a write made at now.
func newTag(now time.Time) docTag {
	return docTag{ver: newVersion(), updated: now.UTC().Truncate(time.Millisecond).UnixMilli()}
}
