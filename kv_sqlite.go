// The SQLite kv driver: the embedded store's kv (see kv_store.go for the
// interface, sqlite.go for the table cpod_kv).
//
// A row holds a key's text and its expiry (Unix ms on the engine's clock,
// Config.Now; 0 for none). The engine's clock alone decides whether a key
// exists: every statement that reads or conditions on a row treats a row
// whose expiry has passed as missing, so an expired key is never read,
// however long its row stays. Rows are removed by a background purge, at
// most kvPurgeBatch rows per step under the write lock (see purgeLoop).
//
// Every write is one statement under the engine's write lock, which carries
// its condition (WHERE, or the upsert's conflict clause), so no other
// write, of this engine or of another process on the file, can land
// between the check and the write: ifAbsent is an upsert that updates only
// an expired row, ifValue an UPDATE or DELETE whose WHERE holds the value,
// PATCH ttl an UPDATE of a live row, INCR an upsert whose update adds with
// cpod_kv_incr (Redis' INCRBY rules, exact in int64) and returns the sum.
// Committed writes survive the process being killed (WAL; see
// embedded.OpenSQLite).

package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
)

func init() {
	// cpod_kv_incr(v, by) is the text of kvInt(v) + by, or fails with
	// kvIncrRefused when v is no integer or the sum leaves int64.
	sqlite.MustRegisterDeterministicScalarFunction("cpod_kv_incr", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		var text string
		switch x := args[0].(type) {
		case string:
			text = x
		case []byte:
			text = string(x)
		default:
			return nil, errors.New(kvIncrRefused)
		}
		by, ok := args[1].(int64)
		if !ok {
			return nil, errors.New(kvIncrRefused)
		}
		n, ok := kvInt(text)
		if !ok {
			return nil, errors.New(kvIncrRefused)
		}
		if n, ok = kvAdd(n, by); !ok {
			return nil, errors.New(kvIncrRefused)
		}
		return strconv.FormatInt(n, 10), nil
	})
}

// kvIncrRefused is the message of cpod_kv_incr's refusal, which incr reads
// back from SQLite's error.
const kvIncrRefused = "cpod_kv_incr: not an integer, or out of the int64 range"

// The background purge: at most kvPurgeBatch rows per step; the next step
// comes kvPurgeBusy later when a step was full, else when the next expiry
// is due (at least kvPurgeEvery, at most kvPurgeIdle later).
const (
	kvPurgeBatch = 500
	kvPurgeBusy  = 20 * time.Millisecond
	kvPurgeEvery = time.Second
	kvPurgeIdle  = 10 * time.Second
)

// The statements of the driver.
const (
	kvSelect = `SELECT v, exp FROM cpod_kv WHERE k = ?`
	kvTTL    = `SELECT exp FROM cpod_kv WHERE k = ?`
	kvSet    = `INSERT INTO cpod_kv (k, v, exp) VALUES (?, ?, ?)
		ON CONFLICT (k) DO UPDATE SET v = excluded.v, exp = excluded.exp`
	// kvSetAbsent writes over a row only when it expired.
	kvSetAbsent = `INSERT INTO cpod_kv (k, v, exp) VALUES (?, ?, ?)
		ON CONFLICT (k) DO UPDATE SET v = excluded.v, exp = excluded.exp
		WHERE cpod_kv.exp <> 0 AND cpod_kv.exp <= ?`
	kvSetIf = `UPDATE cpod_kv SET v = ?, exp = ? WHERE k = ? AND v = ? AND (exp = 0 OR exp > ?)`
	// kvIncr: a missing or expired key starts at by with no TTL; a live
	// one keeps its TTL.
	kvIncr = `INSERT INTO cpod_kv (k, v, exp) VALUES (?, ?, 0)
		ON CONFLICT (k) DO UPDATE SET
			v = CASE WHEN exp <> 0 AND exp <= ? THEN excluded.v ELSE cpod_kv_incr(v, ?) END,
			exp = CASE WHEN exp <> 0 AND exp <= ? THEN 0 ELSE exp END
		RETURNING v`
	kvDelete   = `DELETE FROM cpod_kv WHERE k = ?`
	kvDeleteIf = `DELETE FROM cpod_kv WHERE k = ? AND v = ? AND (exp = 0 OR exp > ?)`
	kvExpire   = `UPDATE cpod_kv SET exp = ? WHERE k = ? AND (exp = 0 OR exp > ?)`
	kvErase    = `DELETE FROM cpod_kv WHERE k IN (SELECT k FROM cpod_kv WHERE k >= ? AND k < ? LIMIT ?) RETURNING exp`
	kvScan     = `SELECT k, v, exp FROM cpod_kv WHERE k >= ? AND k < ? AND (exp = 0 OR exp > ?) ORDER BY k`
	kvPurge    = `DELETE FROM cpod_kv WHERE k IN (SELECT k FROM cpod_kv WHERE exp > 0 AND exp <= ? ORDER BY exp LIMIT ?)`
	kvNextExp  = `SELECT min(exp) FROM cpod_kv WHERE exp > 0`
)

// sqliteKV keeps kv values in the table cpod_kv.
type sqliteKV struct {
	s   *sqlStore
	now func() time.Time
	log *slog.Logger

	// stmts are the prepared statements, by text, made on first use.
	stmtMu sync.Mutex
	stmts  atomic.Pointer[map[string]*sql.Stmt]

	// The purge: started by the first call and by every write of a TTL,
	// running while rows with an expiry remain (see purgeLoop).
	started    atomic.Bool
	purgeMu    sync.Mutex
	purging    bool
	dirty      bool // a TTL was written since the purge last looked
	purgeBatch int  // rows per step; kvPurgeBatch unless a test sets it
	timeout    time.Duration
}

var _ kvStore = (*sqliteKV)(nil)

func newSQLiteKV(s *sqlStore, cfg Config) *sqliteKV {
	return &sqliteKV{s: s, now: cfg.Now, log: cfg.Logger, purgeBatch: kvPurgeBatch, timeout: cfg.BackendTimeout}
}

// stmt returns the prepared statement of query, after ready.
func (q *sqliteKV) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if m := q.stmts.Load(); m != nil {
		if st := (*m)[query]; st != nil {
			return st, nil
		}
	}
	if err := q.s.ready(ctx); err != nil {
		return nil, err
	}
	if q.started.CompareAndSwap(false, true) {
		q.kick() // rows of an earlier run may have expired meanwhile
	}
	q.stmtMu.Lock()
	defer q.stmtMu.Unlock()
	old := q.stmts.Load()
	if old != nil && (*old)[query] != nil {
		return (*old)[query], nil
	}
	st, err := q.s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, sqlError("kv prepare", err)
	}
	m := map[string]*sql.Stmt{query: st}
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	q.stmts.Store(&m)
	return st, nil
}

// exec runs a write statement under the write lock and returns the rows
// it changed.
func (q *sqliteKV) exec(ctx context.Context, op, query string, args ...any) (int64, error) {
	st, err := q.stmt(ctx, query)
	if err != nil {
		return 0, err
	}
	var n int64
	err = q.s.write(ctx, func() error {
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return sqlError(op, err)
		}
		n, err = res.RowsAffected()
		return sqlError(op, err)
	})
	return n, err
}

// expiry is the stored expiry of a TTL from now (Unix ms), 0 for none.
func expiry(ttl time.Duration, now int64) int64 {
	if ttl <= 0 {
		return 0
	}
	return now + ttl.Milliseconds()
}

func (q *sqliteKV) get(ctx context.Context, key string) (string, int64, bool, error) {
	st, err := q.stmt(ctx, kvSelect)
	if err != nil {
		return "", 0, false, err
	}
	var v string
	var exp int64
	err = st.QueryRowContext(ctx, key).Scan(&v, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, sqlError("kv get", err)
	}
	now := q.now().UnixMilli()
	if exp != 0 && exp <= now {
		return "", 0, false, nil
	}
	return v, kvTTLAt(exp, now), true, nil
}

func (q *sqliteKV) ttl(ctx context.Context, key string) (int64, bool, error) {
	st, err := q.stmt(ctx, kvTTL)
	if err != nil {
		return 0, false, err
	}
	var exp int64
	err = st.QueryRowContext(ctx, key).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, sqlError("kv ttl", err)
	}
	now := q.now().UnixMilli()
	if exp != 0 && exp <= now {
		return 0, false, nil
	}
	return kvTTLAt(exp, now), true, nil
}

func (q *sqliteKV) set(ctx context.Context, key, value string, ttl time.Duration, cond kvCond) error {
	now := q.now().UnixMilli()
	exp := expiry(ttl, now)
	var n int64
	var err error
	switch {
	case cond.ifAbsent:
		if n, err = q.exec(ctx, "kv set", kvSetAbsent, key, value, exp, now); err == nil && n == 0 {
			return kvConditionFailed("the key already exists; nothing was written")
		}
	case cond.hasValue:
		if n, err = q.exec(ctx, "kv set", kvSetIf, value, exp, key, cond.ifValue, now); err == nil && n == 0 {
			return kvConditionFailed(ifValueFailed)
		}
	default:
		_, err = q.exec(ctx, "kv set", kvSet, key, value, exp)
	}
	if err == nil && exp != 0 {
		q.kick()
	}
	return err
}

func (q *sqliteKV) incr(ctx context.Context, key string, by int64) (int64, error) {
	st, err := q.stmt(ctx, kvIncr)
	if err != nil {
		return 0, err
	}
	now := q.now().UnixMilli()
	var v string
	err = q.s.write(ctx, func() error {
		err := st.QueryRowContext(ctx, key, strconv.FormatInt(by, 10), now, by, now).Scan(&v)
		if err != nil && strings.Contains(err.Error(), kvIncrRefused) {
			return errKVNotInteger
		}
		return sqlError("kv incr", err)
	})
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil {
		return 0, &Error{Code: CodeInternal, Message: "internal error", Err: perr}
	}
	return n, nil
}

func (q *sqliteKV) remove(ctx context.Context, key string, cond kvCond) error {
	if !cond.hasValue {
		_, err := q.exec(ctx, "kv delete", kvDelete, key)
		return err
	}
	n, err := q.exec(ctx, "kv delete", kvDeleteIf, key, cond.ifValue, q.now().UnixMilli())
	if err == nil && n == 0 {
		return kvConditionFailed(ifValueFailed)
	}
	return err
}

func (q *sqliteKV) expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	now := q.now().UnixMilli()
	exp := expiry(ttl, now)
	n, err := q.exec(ctx, "kv expire", kvExpire, exp, key, now)
	if err != nil {
		return false, err
	}
	if n > 0 && exp != 0 {
		q.kick()
	}
	return n > 0, nil
}

// erase deletes the rows of the prefix's key range, a batch per statement
// under the write lock; expired rows go too but are not counted.
func (q *sqliteKV) erase(ctx context.Context, prefix string, o eraseOptions, n *int64) error {
	st, err := q.stmt(ctx, kvErase)
	if err != nil {
		return err
	}
	for {
		var deleted, live int64
		err := q.s.write(ctx, func() error {
			now := q.now().UnixMilli()
			rows, err := st.QueryContext(ctx, prefix, prefixEnd(prefix), o.size())
			if err != nil {
				return sqlError("kv erase", err)
			}
			defer rows.Close()
			for rows.Next() {
				var exp int64
				if err := rows.Scan(&exp); err != nil {
					return sqlError("kv erase", err)
				}
				deleted++
				if exp == 0 || exp > now {
					live++
				}
			}
			return sqlError("kv erase", rows.Err())
		})
		*n += live
		if err != nil {
			return err
		}
		if deleted == 0 {
			return nil
		}
		o.done("kv")
	}
}

// scan reads the prefix's live rows in key order with one query (a
// snapshot of the store: WAL readers do not block writers).
func (q *sqliteKV) scan(ctx context.Context, prefix string, each func(key, value string, ttl int64) error) error {
	st, err := q.stmt(ctx, kvScan)
	if err != nil {
		return err
	}
	now := q.now().UnixMilli()
	rows, err := st.QueryContext(ctx, prefix, prefixEnd(prefix), now)
	if err != nil {
		return sqlError("kv export", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		var exp int64
		if err := rows.Scan(&k, &v, &exp); err != nil {
			return sqlError("kv export", err)
		}
		if !strings.HasPrefix(k, prefix) {
			continue // never from the range above
		}
		if err := each(k, v, kvTTLAt(exp, now)); err != nil {
			return err
		}
	}
	return sqlError("kv export", rows.Err())
}

// ping is a real read of the table.
func (q *sqliteKV) ping(ctx context.Context) error {
	st, err := q.stmt(ctx, kvTTL)
	if err != nil {
		return err
	}
	var exp int64
	err = st.QueryRowContext(ctx, "readyz").Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return sqlError("kv ping", err)
}

// kick makes sure the purge runs, and tells it a TTL was written.
func (q *sqliteKV) kick() {
	q.purgeMu.Lock()
	defer q.purgeMu.Unlock()
	q.dirty = true
	if !q.purging {
		q.purging = true
		go q.purgeLoop()
	}
}

// purgeLoop removes expired rows, at most purgeBatch per step, until no
// row has an expiry and no TTL was written since it last looked; a failure
// stops it (logged), and the next write of a TTL starts it again. One
// goroutine per engine at most, none while no key has a TTL.
func (q *sqliteKV) purgeLoop() {
	wait := kvPurgeEvery
	for {
		time.Sleep(wait)
		q.purgeMu.Lock()
		q.dirty = false
		q.purgeMu.Unlock()
		deleted, next, err := q.purgeStep(context.Background())
		q.purgeMu.Lock()
		if err != nil || (next == 0 && !q.dirty) {
			q.purging = false
			q.purgeMu.Unlock()
			if err != nil && !strings.Contains(err.Error(), "sql: database is closed") {
				q.log.Warn("storage: kv purge of expired keys failed; retried on the next write of a ttl", "err", err)
			}
			return
		}
		q.purgeMu.Unlock()
		switch now := q.now().UnixMilli(); {
		case deleted == int64(q.purgeBatch):
			wait = kvPurgeBusy
		case next == 0:
			wait = kvPurgeEvery
		default:
			wait = min(max(time.Duration(next-now)*time.Millisecond, kvPurgeEvery), kvPurgeIdle)
		}
	}
}

// purgeStep deletes up to purgeBatch expired rows, the oldest expiries
// first, and returns how many it deleted and the earliest expiry left (0
// when no row has one).
func (q *sqliteKV) purgeStep(ctx context.Context) (deleted, next int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	if deleted, err = q.exec(ctx, "kv purge", kvPurge, q.now().UnixMilli(), q.purgeBatch); err != nil {
		return deleted, 0, err
	}
	st, err := q.stmt(ctx, kvNextExp)
	if err != nil {
		return deleted, 0, err
	}
	var min sql.NullInt64
	if err := st.QueryRowContext(ctx).Scan(&min); err != nil {
		return deleted, 0, sqlError("kv purge", err)
	}
	return deleted, min.Int64, nil
}

// storedSize is the size of the value in k's row, expired or not: what the
// usage triggers count until the purge deletes it (usage_kv.go's quota
// check, which must free what a write over it frees).
func (q *sqliteKV) storedSize(ctx context.Context, k string) (int64, bool, error) {
	st, err := q.stmt(ctx, `SELECT octet_length(v) FROM cpod_kv WHERE k = ?`)
	if err != nil {
		return 0, false, err
	}
	var n int64
	err = st.QueryRowContext(ctx, k).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, sqlError("kv read", err)
	}
	return n, true, nil
}
