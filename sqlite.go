// The SQLite store (Config.SQL): the schema, the engine's write lock and
// the translation of SQLite's errors, shared by the documents and apps
// drivers on SQLite (documents_sqlite.go, apps_store.go).

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The schema, created on first use (CREATE ... IF NOT EXISTS, so engines
// that share the database, and restarts, agree):
//
//	cpod_documents  one row per document, its primary key (loc, coll, key)
//	                in a WITHOUT ROWID table, so a collection's documents
//	                lie together in key order: a query reads only the
//	                caller's collection, and a scan of it is sequential.
//	  json          the value as compact JSON text, byte for byte what get
//	                and query return
//	  v             the query form of the value as JSONB: the value's BSON
//	                form of documents.go (arrays as objects keyed "0", "1",
//	                ..., names escaped by escapeName and sqlName, strings by
//	                bsonString, numbers canonical), so filters and sorts
//	                address "a.0" and compare strings exactly as on MongoDB
//	  ver, updated  the version (random hex) and the last write in ms: the
//	                ETag (documents_versions.go)
//	  created       the first write in ms
//	cpod_apps       the app registry, one row per client_id
//
// Why JSONB for v and text for json: json must round-trip byte for byte,
// which only text does; v is read by json_type/json_extract on every row a
// filter or sort visits, and JSONB is read without parsing (measured:
// BenchmarkSQLiteQueryForms).
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS cpod_documents (
	loc     TEXT NOT NULL,
	coll    TEXT NOT NULL,
	key     TEXT NOT NULL,
	json    TEXT NOT NULL,
	v       BLOB NOT NULL,
	ver     TEXT NOT NULL,
	updated INTEGER NOT NULL,
	created INTEGER NOT NULL,
	PRIMARY KEY (loc, coll, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cpod_apps (
	client_id       TEXT NOT NULL PRIMARY KEY,
	name            TEXT NOT NULL,
	declared_scopes TEXT NOT NULL,
	app_type        TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);
`

// sqlStore is the engine's handle on its SQLite database.
type sqlStore struct {
	db *sql.DB
	// writes serialises the engine's writes: SQLite has one writer at a
	// time, and a writer that waits in Go (bounded by its context) costs
	// nothing, while one that waits in SQLite's busy handler sleeps and
	// polls. Other processes on the same file still meet busy_timeout.
	writes chan struct{}

	once    sync.Mutex
	created bool
}

func newSQLStore(db *sql.DB) *sqlStore {
	return &sqlStore{db: db, writes: make(chan struct{}, 1)}
}

// ready creates the schema once per process; a failure is retried on the
// next call.
func (s *sqlStore) ready(ctx context.Context) error {
	s.once.Lock()
	defer s.once.Unlock()
	if s.created {
		return nil
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	if _, err := s.db.ExecContext(ctx, sqliteSchema); err != nil {
		return sqlError("sqlite schema", err)
	}
	s.created = true
	return nil
}

// lock takes the engine's write lock, waiting at most until ctx ends
// (then 503).
func (s *sqlStore) lock(ctx context.Context) error {
	select {
	case s.writes <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("sqlite: waiting to write: %w", ctx.Err())}
	}
}

func (s *sqlStore) unlock() { <-s.writes }

// write runs f under the write lock, after ready.
func (s *sqlStore) write(ctx context.Context, f func() error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	return f()
}

// sqlError translates an error of database/sql on SQLite, once: a context
// that ended (the request's deadline or its client gone; SQLite was
// interrupted and stopped working), a busy database or a closed handle are
// 503; a full disk (SQLITE_FULL) is 507; anything else 500. An *Error
// passes as it is.
func sqlError(op string, err error) (out error) {
	defer markBackend(backendSQLite, &out)
	var ee *Error
	if err == nil || errors.As(err, &ee) {
		return err
	}
	unavailable := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, sql.ErrConnDone)
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT:
			unavailable = true
		case sqlite3.SQLITE_FULL:
			// The disk (or max_page_count) is full: the transaction was
			// rolled back, reads go on.
			return errOutOfSpace(op, err)
		}
	}
	if unavailable {
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("%s: %w", op, err)}
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("%s: %w", op, err)}
}
