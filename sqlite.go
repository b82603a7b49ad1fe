// The SQLite store (Config.SQL): the schema, the engine's write lock and
// the translation of SQLite's errors, shared by the documents, apps and kv
// drivers on SQLite (documents_sqlite.go, apps_store.go, kv_sqlite.go).

package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
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
//	cpod_doc_indexes  the indexes made for collections' queries
//	                (documents_sqlite_index.go)
//	cpod_apps       the app registry, one row per client_id
//	cpod_kv         one row per kv key (kv_sqlite.go): k, the location key
//	                (Location.Key, so a location's keys lie together in
//	                key order, for erase and export); v, the value's text;
//	                exp, the expiry in Unix ms on the engine's clock, 0
//	                for none. The partial index on exp finds expired rows
//	                for the background purge without a scan.
//
// Why JSONB for v and text for json: json must round-trip byte for byte,
// which only text does; v is read by json_type/json_extract on every row a
// filter or sort visits, and JSONB is read without parsing. Measured
// (BenchmarkSQLiteQueryForms, 20k documents, a filter on two fields and a
// sort, 3 runs on a loaded 2-core machine): a scan takes 19-32 ms on JSONB
// and 40-109 ms on text; a write 59-72 µs with the jsonb() conversion and
// 64-79 µs without, within the noise.
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
CREATE TABLE IF NOT EXISTS cpod_doc_indexes (
	name    TEXT NOT NULL PRIMARY KEY,
	loc     TEXT NOT NULL,
	coll    TEXT NOT NULL,
	cols    TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cpod_apps (
	client_id       TEXT NOT NULL PRIMARY KEY,
	name            TEXT NOT NULL,
	declared_scopes TEXT NOT NULL,
	app_type        TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cpod_kv (
	k   TEXT NOT NULL PRIMARY KEY,
	v   TEXT NOT NULL,
	exp INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cpod_kv_exp ON cpod_kv (exp) WHERE exp > 0;
`

// sqlStore is the engine's handle on its SQLite database.
type sqlStore struct {
	db *sql.DB
	// writes serialises the engine's writes: SQLite has one writer at a
	// time, and a writer that waits in Go (bounded by its context) costs
	// nothing, while one that waits in SQLite's busy handler sleeps and
	// polls. Waiters go in order (tenantBudget), so another tenant's write
	// waits only for those queued before it. Other processes on the same
	// file still meet busy_timeout.
	writes *tenantBudget
	// indexes are the documents' per-collection indexes.
	indexes *docIndexes

	once    sync.Mutex
	created bool
}

func newSQLStore(db *sql.DB, log *slog.Logger) *sqlStore {
	s := &sqlStore{db: db, writes: newTenantBudget("the SQLite write lock", 1, 1)}
	s.indexes = &docIndexes{s: s, log: log}
	return s
}

// ready creates the schema once per process; a failure is retried on the
// next call.
func (s *sqlStore) ready(ctx context.Context) error {
	s.once.Lock()
	defer s.once.Unlock()
	if s.created {
		return nil
	}
	unlock, err := s.writes.acquire(ctx, "", 1)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.createSchema(ctx); err != nil {
		return sqlError("sqlite schema", err)
	}
	if err := s.indexes.load(ctx); err != nil {
		return sqlError("sqlite schema", err)
	}
	s.created = true
	return nil
}

// createSchema creates the tables, and the usage triggers (usage_sqlite.go)
// in the same transaction: a database written before cpod_usage existed
// gets its documents and kv counted then, once.
func (s *sqlStore) createSchema(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	var had int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'cpod_usage'`).Scan(&had); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqliteSchema+usageSchema); err != nil {
		return err
	}
	if had == 0 {
		// Every tenant: '/' < '0' ... and no location key starts past U+10FFFF.
		if err := countUsage(ctx, tx, "", "\U0010ffff\U0010ffff"); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// write runs f under the engine's write lock, after ready; waiting for
// the lock past ctx's end is 503.
func (s *sqlStore) write(ctx context.Context, f func() error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	unlock, err := s.writes.acquire(ctx, tenantFrom(ctx), 1)
	if err != nil {
		return err
	}
	defer unlock()
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
