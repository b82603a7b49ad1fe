// The SQLite usage driver (see usage_store.go): the embedded store's
// usage in cpod_usage, kept by triggers for documents and kv, and its
// quotas in cpod_quotas.

package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"sync"

	"modernc.org/sqlite"
)

// usageSchema is created with sqliteSchema (sqlStore.ready). cpod_usage
// has one row per location prefix and primitive (0 files, 1 documents, 2
// kv) and one per tenant prefix ("t1/") and primitive for the totals; a
// location prefix always holds more than one '/', so the two never meet.
//
// The triggers count documents and kv in the transaction of the write
// itself: an acknowledged write is counted, a rolled-back one is not, and
// nothing in between is possible, even across a crash. A document's bytes
// are its JSON text's, a kv value's its text's (length of the text as a
// BLOB: bytes, not characters). An expired kv row counts until the purge
// deletes it (kv_sqlite.go: within kvPurgeEvery of its expiry). A write
// costs two upserts into cpod_usage more (the location's row and the
// tenant's): measured in BenchmarkUsageCost.
//
// cpod_kvloc(k) is the location prefix of a kv location key (Location.Key),
// from splitLocation.
const usageSchema = `
CREATE TABLE IF NOT EXISTS cpod_usage (
	loc   TEXT NOT NULL,
	prim  INTEGER NOT NULL,
	bytes INTEGER NOT NULL,
	count INTEGER NOT NULL,
	PRIMARY KEY (loc, prim)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cpod_quotas (
	tenant TEXT NOT NULL PRIMARY KEY,
	q      TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS cpod_documents_usage_insert AFTER INSERT ON cpod_documents BEGIN
	INSERT INTO cpod_usage (loc, prim, bytes, count) VALUES
		(NEW.loc, 1, octet_length(NEW.json), 1),
		(substr(NEW.loc, 1, instr(NEW.loc, '/')), 1, octet_length(NEW.json), 1)
	ON CONFLICT (loc, prim) DO UPDATE SET bytes = bytes + excluded.bytes, count = count + excluded.count;
END;
CREATE TRIGGER IF NOT EXISTS cpod_documents_usage_update AFTER UPDATE OF json ON cpod_documents BEGIN
	INSERT INTO cpod_usage (loc, prim, bytes, count) VALUES
		(NEW.loc, 1, octet_length(NEW.json) - octet_length(OLD.json), 0),
		(substr(NEW.loc, 1, instr(NEW.loc, '/')), 1, octet_length(NEW.json) - octet_length(OLD.json), 0)
	ON CONFLICT (loc, prim) DO UPDATE SET bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER IF NOT EXISTS cpod_documents_usage_delete AFTER DELETE ON cpod_documents BEGIN
	INSERT INTO cpod_usage (loc, prim, bytes, count) VALUES
		(OLD.loc, 1, -octet_length(OLD.json), -1),
		(substr(OLD.loc, 1, instr(OLD.loc, '/')), 1, -octet_length(OLD.json), -1)
	ON CONFLICT (loc, prim) DO UPDATE SET bytes = bytes + excluded.bytes, count = count + excluded.count;
END;
CREATE TRIGGER IF NOT EXISTS cpod_kv_usage_insert AFTER INSERT ON cpod_kv BEGIN
	INSERT INTO cpod_usage (loc, prim, bytes, count) VALUES
		(cpod_kvloc(NEW.k), 2, octet_length(NEW.v), 1),
		(substr(NEW.k, 1, instr(NEW.k, '/')), 2, octet_length(NEW.v), 1)
	ON CONFLICT (loc, prim) DO UPDATE SET bytes = bytes + excluded.bytes, count = count + excluded.count;
END;
CREATE TRIGGER IF NOT EXISTS cpod_kv_usage_update AFTER UPDATE OF v ON cpod_kv BEGIN
	INSERT INTO cpod_usage (loc, prim, bytes, count) VALUES
		(cpod_kvloc(NEW.k), 2, octet_length(NEW.v) - octet_length(OLD.v), 0),
		(substr(NEW.k, 1, instr(NEW.k, '/')), 2, octet_length(NEW.v) - octet_length(OLD.v), 0)
	ON CONFLICT (loc, prim) DO UPDATE SET bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER IF NOT EXISTS cpod_kv_usage_delete AFTER DELETE ON cpod_kv BEGIN
	INSERT INTO cpod_usage (loc, prim, bytes, count) VALUES
		(cpod_kvloc(OLD.k), 2, -octet_length(OLD.v), -1),
		(substr(OLD.k, 1, instr(OLD.k, '/')), 2, -octet_length(OLD.v), -1)
	ON CONFLICT (loc, prim) DO UPDATE SET bytes = bytes + excluded.bytes, count = count + excluded.count;
END;
`

// usageCountSQL counts documents and kv of the rows in [?1, ?2) (a tenant's
// range) into cpod_usage: once when cpod_usage is created over data written
// before it (the whole range), and by a recount.
var usageCountSQL = []string{
	`INSERT INTO cpod_usage (loc, prim, bytes, count)
	SELECT loc, 1, sum(octet_length(json)), count(*) FROM cpod_documents WHERE loc >= ?1 AND loc < ?2 GROUP BY loc`,
	`INSERT INTO cpod_usage (loc, prim, bytes, count)
	SELECT substr(loc, 1, instr(loc, '/')), 1, sum(octet_length(json)), count(*) FROM cpod_documents WHERE loc >= ?1 AND loc < ?2 GROUP BY 1`,
	`INSERT INTO cpod_usage (loc, prim, bytes, count)
	SELECT cpod_kvloc(k), 2, sum(octet_length(v)), count(*) FROM cpod_kv WHERE k >= ?1 AND k < ?2 GROUP BY 1`,
	`INSERT INTO cpod_usage (loc, prim, bytes, count)
	SELECT substr(k, 1, instr(k, '/')), 2, sum(octet_length(v)), count(*) FROM cpod_kv WHERE k >= ?1 AND k < ?2 GROUP BY 1`,
}

// countUsage runs usageCountSQL over [lo, hi).
func countUsage(ctx context.Context, tx *sql.Tx, lo, hi string) error {
	for _, q := range usageCountSQL {
		if _, err := tx.ExecContext(ctx, q, lo, hi); err != nil {
			return err
		}
	}
	return nil
}

func init() {
	sqlite.MustRegisterDeterministicScalarFunction("cpod_kvloc", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		k, _ := args[0].(string)
		if loc, _, ok := splitLocation(k); ok {
			return loc, nil
		}
		return tenantOfKey(k) + "/", nil // not a location key: its tenant's
	})
}

// sqliteUsage is the usage driver of the embedded store.
type sqliteUsage struct {
	s *sqlStore

	mu    sync.Mutex
	check *sql.Stmt // the statement of total, prepared once
}

var _ usageStore = (*sqliteUsage)(nil)

func (*sqliteUsage) explicit(p primitive) bool { return p == primFiles }

// upsertUsage adds to a row of cpod_usage.
const upsertUsage = `INSERT INTO cpod_usage (loc, prim, bytes, count) VALUES (?, ?, ?, ?)
	ON CONFLICT (loc, prim) DO UPDATE SET bytes = bytes + excluded.bytes, count = count + excluded.count`

func (q *sqliteUsage) add(ctx context.Context, tenant string, chs []usageChange) error {
	return q.s.write(ctx, func() error {
		return q.tx(ctx, "usage add", func(tx *sql.Tx) error {
			for _, ch := range chs {
				for _, loc := range []string{ch.loc, tenantPrefix(tenant)} {
					if _, err := tx.ExecContext(ctx, upsertUsage, loc, int(ch.prim), ch.bytes, ch.count); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
}

// tx runs f in a transaction (under the write lock, which the caller holds).
func (q *sqliteUsage) tx(ctx context.Context, op string, f func(*sql.Tx) error) error {
	tx, err := q.s.db.BeginTx(ctx, nil)
	if err != nil {
		return sqlError(op, err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return sqlError(op, err)
	}
	return sqlError(op, tx.Commit())
}

func (q *sqliteUsage) read(ctx context.Context, loc string) (usageSet, error) {
	var u usageSet
	if err := q.s.ready(ctx); err != nil {
		return u, err
	}
	rows, err := q.s.db.QueryContext(ctx, `SELECT prim, bytes, count FROM cpod_usage WHERE loc = ?`, loc)
	if err != nil {
		return u, sqlError("usage read", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p int
		var f usageFigures
		if err := rows.Scan(&p, &f.Bytes, &f.Count); err != nil {
			return u, sqlError("usage read", err)
		}
		if p >= 0 && p < int(nPrims) {
			u[p] = f
		}
	}
	return u, sqlError("usage read", rows.Err())
}

func (q *sqliteUsage) total(ctx context.Context, tenant string, p primitive) (usageFigures, error) {
	var f usageFigures
	if err := q.s.ready(ctx); err != nil {
		return f, err
	}
	q.mu.Lock()
	st := q.check
	if st == nil {
		var err error
		st, err = q.s.db.PrepareContext(context.WithoutCancel(ctx), `SELECT bytes, count FROM cpod_usage WHERE loc = ? AND prim = ?`)
		if err != nil {
			q.mu.Unlock()
			return f, sqlError("usage read", err)
		}
		q.check = st
	}
	q.mu.Unlock()
	err := st.QueryRowContext(ctx, tenantPrefix(tenant), int(p)).Scan(&f.Bytes, &f.Count)
	if errors.Is(err, sql.ErrNoRows) {
		return f, nil
	}
	return f, sqlError("usage read", err)
}

// replace takes files from the recount and counts documents and kv itself,
// in the same transaction, from the tables: exact against every write.
func (q *sqliteUsage) replace(ctx context.Context, tenant string, total usageSet, locs map[string]*usageSet) error {
	lo, hi := prefixRange(tenantPrefix(tenant))
	return q.s.write(ctx, func() error {
		return q.tx(ctx, "usage recount", func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM cpod_usage WHERE loc >= ? AND loc < ?`, lo, hi); err != nil {
				return err
			}
			if err := countUsage(ctx, tx, lo, hi); err != nil {
				return err
			}
			add := func(loc string, f usageFigures) error {
				if f == (usageFigures{}) {
					return nil
				}
				_, err := tx.ExecContext(ctx, upsertUsage, loc, int(primFiles), f.Bytes, f.Count)
				return err
			}
			if err := add(tenantPrefix(tenant), total[primFiles]); err != nil {
				return err
			}
			for loc, u := range locs {
				if err := add(loc, u[primFiles]); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// prefixRange is [lo, hi): every string that starts with prefix, which
// ends with '/' (the byte after it is '0').
func prefixRange(prefix string) (string, string) {
	return prefix, prefix[:len(prefix)-1] + "0"
}

func (q *sqliteUsage) clear(ctx context.Context, prefix string) error {
	lo, hi := prefixRange(prefix)
	tenant := tenantPrefix(tenantOfKey(prefix))
	return q.s.write(ctx, func() error {
		return q.tx(ctx, "usage clear", func(tx *sql.Tx) error {
			if prefix == tenant {
				_, err := tx.ExecContext(ctx, `DELETE FROM cpod_usage WHERE prim = 0 AND loc >= ? AND loc < ?`, lo, hi)
				return err
			}
			var f usageFigures
			err := tx.QueryRowContext(ctx, `SELECT bytes, count FROM cpod_usage WHERE loc = ? AND prim = 0`, prefix).Scan(&f.Bytes, &f.Count)
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM cpod_usage WHERE loc = ? AND prim = 0`, prefix); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, upsertUsage, tenant, int(primFiles), -f.Bytes, -f.Count)
			return err
		})
	})
}

func (q *sqliteUsage) quota(ctx context.Context, tenant string) (ownQuota, error) {
	if err := q.s.ready(ctx); err != nil {
		return ownQuota{}, err
	}
	return q.quotaFrom(ctx, q.s.db.QueryRowContext(ctx, `SELECT q FROM cpod_quotas WHERE tenant = ?`, tenant))
}

func (q *sqliteUsage) quotaFrom(ctx context.Context, row *sql.Row) (ownQuota, error) {
	own := noOwnQuota()
	var text string
	err := row.Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return own, nil
	}
	if err != nil {
		return own, sqlError("quota read", err)
	}
	if err := json.Unmarshal([]byte(text), &own); err != nil {
		return own, sqlError("quota read", err)
	}
	return own, nil
}

func (q *sqliteUsage) updateQuota(ctx context.Context, tenant string, f func(ownQuota) ownQuota) (ownQuota, error) {
	var own ownQuota
	err := q.s.write(ctx, func() error {
		return q.tx(ctx, "quota update", func(tx *sql.Tx) error {
			cur, err := q.quotaFrom(ctx, tx.QueryRowContext(ctx, `SELECT q FROM cpod_quotas WHERE tenant = ?`, tenant))
			if err != nil {
				return err
			}
			own = f(cur)
			b, _ := json.Marshal(own)
			_, err = tx.ExecContext(ctx, `INSERT INTO cpod_quotas (tenant, q) VALUES (?, ?) ON CONFLICT (tenant) DO UPDATE SET q = excluded.q`, tenant, string(b))
			return err
		})
	})
	return own, err
}
