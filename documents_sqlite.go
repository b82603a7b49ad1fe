// The SQLite documents driver: the embedded store's documents (see
// documents_store.go for the interface, sqlite.go for the schema).
//
// Every write is one statement or one transaction under the engine's write
// lock: a conditional write (If-Match, If-None-Match) is a single UPDATE,
// DELETE or INSERT whose WHERE (or conflict clause) carries the condition,
// so no other write can land between the check and the write; a PATCH
// reads, merges, and writes with the version it read in the UPDATE's
// WHERE (a write in between makes it merge again). Reads run outside the
// lock on WAL snapshots. A query or count runs with the request's context:
// when it ends, the driver interrupts SQLite and its CPU stops.
//
// Filters and sorts read the value's query form (column v, see sqlite.go)
// through one sort key per path (sortKeySQL) whose SQLite order is the
// contract's order of values (query.go), objects field by field as on
// MongoDB (cpod_sortkey).

package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// sqliteDocs keeps documents in the table cpod_documents.
type sqliteDocs struct {
	s *sqlStore
	d *documents
}

var _ docStore = sqliteDocs{}

// sqliteReadSlots is the default Limits.MaxDocumentReads on SQLite: as
// many as the process has cores (at least 2). SQLite runs in process, so
// a query or count holds a core while it scans; a tenant holds at most
// half of the slots, so one tenant's scans leave the other cores to
// everyone else's requests.
func sqliteReadSlots() int { return max(2, runtime.GOMAXPROCS(0)) }

func (q sqliteDocs) get(ctx context.Context, t target, key string) ([]byte, docTag, error) {
	if err := q.s.ready(ctx); err != nil {
		return nil, docTag{}, err
	}
	var js []byte
	var g docTag
	err := q.s.db.QueryRowContext(ctx, `SELECT json, ver, updated FROM cpod_documents WHERE loc = ? AND coll = ? AND key = ?`,
		t.loc, t.coll, key).Scan(&js, &g.ver, &g.updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, docTag{}, errDocNotFound
	}
	if err != nil {
		return nil, docTag{}, sqlError("documents get", err)
	}
	return js, g, nil
}

func (q sqliteDocs) put(ctx context.Context, t target, key string, v docValue, cond docCond, g docTag) error {
	form := queryForm(v.bson)
	return q.s.write(ctx, func() error {
		switch {
		case cond.ifMatch:
			where, args := versionWhere(cond)
			res, err := q.s.db.ExecContext(ctx, `UPDATE cpod_documents SET json = ?, v = jsonb(?), ver = ?, updated = ?
				WHERE loc = ? AND coll = ? AND key = ?`+where,
				append([]any{v.json, form, g.ver, g.updated, t.loc, t.coll, key}, args...)...)
			if err != nil {
				return sqlError("documents set", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return preconditionFailed("does not exist or does not have that ETag")
			}
			return nil
		case cond.absent:
			res, err := q.s.db.ExecContext(ctx, `INSERT INTO cpod_documents (loc, coll, key, json, v, ver, updated, created)
				VALUES (?, ?, ?, ?, jsonb(?), ?, ?, ?) ON CONFLICT DO NOTHING`,
				t.loc, t.coll, key, v.json, form, g.ver, g.updated, g.updated)
			if err != nil {
				return sqlError("documents set", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return preconditionFailed("exists")
			}
			return nil
		}
		_, err := q.s.db.ExecContext(ctx, sqlUpsert, t.loc, t.coll, key, v.json, form, g.ver, g.updated, g.updated)
		return sqlError("documents set", err)
	})
}

// sqlUpsert stores a document whether or not it exists.
const sqlUpsert = `INSERT INTO cpod_documents (loc, coll, key, json, v, ver, updated, created)
	VALUES (?, ?, ?, ?, jsonb(?), ?, ?, ?)
	ON CONFLICT (loc, coll, key) DO UPDATE SET json = excluded.json, v = excluded.v, ver = excluded.ver, updated = excluded.updated`

// versionWhere is the condition of If-Match on a row: any version for
// "*", else one of the tags.
func versionWhere(cond docCond) (string, []any) {
	if cond.any {
		return "", nil
	}
	if len(cond.tags) == 0 {
		return " AND 0", nil
	}
	var b strings.Builder
	var args []any
	b.WriteString(" AND (")
	for i, g := range cond.tags {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(ver = ? AND updated = ?)")
		args = append(args, g.ver, g.updated)
	}
	b.WriteString(")")
	return b.String(), args
}

func (q sqliteDocs) remove(ctx context.Context, t target, key string, cond docCond) error {
	return q.s.write(ctx, func() error {
		where, args := "", []any(nil)
		if cond.ifMatch {
			where, args = versionWhere(cond)
		}
		res, err := q.s.db.ExecContext(ctx, `DELETE FROM cpod_documents WHERE loc = ? AND coll = ? AND key = ?`+where,
			append([]any{t.loc, t.coll, key}, args...)...)
		if err != nil {
			return sqlError("documents delete", err)
		}
		if n, _ := res.RowsAffected(); n == 0 && cond.ifMatch {
			return preconditionFailed("does not exist or does not have that ETag")
		}
		return nil
	})
}

func (q sqliteDocs) patch(ctx context.Context, t target, key string, cond docCond, merge func([]byte) (docValue, error), next func() docTag) (docValue, docTag, error) {
	for try := 0; ; try++ {
		stored, cur, err := q.get(ctx, t, key)
		if isDocNotFound(err) && cond.ifMatch {
			return docValue{}, docTag{}, preconditionFailed("does not exist")
		}
		if err != nil {
			return docValue{}, docTag{}, err
		}
		if cond.ifMatch && !cond.matches(cur) {
			return docValue{}, docTag{}, preconditionFailed("does not have that ETag")
		}
		v, err := merge(stored)
		if err != nil {
			return docValue{}, docTag{}, err
		}
		g := next()
		form := queryForm(v.bson)
		matched := false
		err = q.s.write(ctx, func() error {
			res, err := q.s.db.ExecContext(ctx, `UPDATE cpod_documents SET json = ?, v = jsonb(?), ver = ?, updated = ?
				WHERE loc = ? AND coll = ? AND key = ? AND ver = ? AND updated = ?`,
				v.json, form, g.ver, g.updated, t.loc, t.coll, key, cur.ver, cur.updated)
			if err != nil {
				return sqlError("documents patch", err)
			}
			n, _ := res.RowsAffected()
			matched = n > 0
			return nil
		})
		if err != nil {
			return docValue{}, docTag{}, err
		}
		if matched {
			return v, g, nil
		}
		if err := patchBackoff(ctx, try); err != nil {
			return docValue{}, docTag{}, err
		}
	}
}

// batch applies the ops in one transaction, in the order sent (which
// keeps the order per key). Each op succeeds on its own: a set or delete
// of a key has no way to fail but the database failing, which fails the
// whole batch (nothing of it is written then, and every op is idempotent).
func (q sqliteDocs) batch(ctx context.Context, reqID string, t target, ops []batchOp, g docTag) error {
	forms := make([][]byte, len(ops))
	for i, op := range ops {
		if op.err == nil && op.op == "set" {
			forms[i] = queryForm(op.value.bson)
		}
	}
	return q.s.write(ctx, func() error {
		tx, err := q.s.db.BeginTx(ctx, nil)
		if err != nil {
			return sqlError("documents batch", err)
		}
		defer tx.Rollback()
		set, err := tx.PrepareContext(ctx, sqlUpsert)
		if err != nil {
			return sqlError("documents batch", err)
		}
		defer set.Close()
		del, err := tx.PrepareContext(ctx, `DELETE FROM cpod_documents WHERE loc = ? AND coll = ? AND key = ?`)
		if err != nil {
			return sqlError("documents batch", err)
		}
		defer del.Close()
		for i, op := range ops {
			if op.err != nil {
				continue
			}
			if op.op == "set" {
				_, err = set.ExecContext(ctx, t.loc, t.coll, op.key, op.value.json, forms[i], g.ver, g.updated, g.updated)
			} else {
				_, err = del.ExecContext(ctx, t.loc, t.coll, op.key)
			}
			if err != nil {
				return sqlError("documents batch", err)
			}
		}
		return sqlError("documents batch", tx.Commit())
	})
}

func (q sqliteDocs) query(ctx context.Context, t target, plan queryPlan, limit int) (docPage, error) {
	if err := q.s.ready(ctx); err != nil {
		return docPage{}, err
	}
	var w sqlWhere
	w.base(t)
	if err := w.filter(plan.filter); err != nil {
		return docPage{}, err
	}
	if plan.after {
		pos, err := q.resolvePos(ctx, t, plan)
		if err != nil {
			return docPage{}, err
		}
		w.after(plan, pos)
	}
	var cols, order strings.Builder
	for _, s := range plan.sort {
		k := sortKeySQL(sqlPath(s.path))
		cols.WriteString(", " + k)
		order.WriteString(k)
		if s.desc {
			order.WriteString(" DESC")
		}
		order.WriteString(", ")
	}
	stmt := func(index string) string {
		return "SELECT key, json" + cols.String() + " FROM cpod_documents" + index + " WHERE " + w.sql.String() +
			" ORDER BY " + order.String() + "key LIMIT " + strconv.Itoa(limit+1)
	}
	start := time.Now()
	rows, err := q.s.db.QueryContext(ctx, stmt(q.s.indexes.use(t, plan.filter, plan.sort)), w.args...)
	if noPlan(err) {
		rows, err = q.s.db.QueryContext(ctx, stmt(""), w.args...)
	}
	if err != nil {
		return docPage{}, sqlError("documents query", err)
	}
	defer rows.Close()
	var page docPage
	size := 0
	var key string
	var js []byte
	values := make([]any, len(plan.sort))
	dest := make([]any, 2+len(plan.sort))
	dest[0], dest[1] = &key, &js
	for i := range plan.sort {
		dest[2+i] = &values[i]
	}
	for rows.Next() {
		if len(page.items) == limit || size > maxPageBytes {
			page.more = true
			break
		}
		js = nil
		if err := rows.Scan(dest...); err != nil {
			return docPage{}, sqlError("documents query", err)
		}
		page.items = append(page.items, docItem{key: key, json: js})
		size += len(key) + len(js) + 20
		page.key = key
		page.pos = page.pos[:0]
		for i := range plan.sort {
			page.pos = append(page.pos, sqlCursorPos(values[i]))
		}
	}
	if err := rows.Err(); err != nil {
		return docPage{}, sqlError("documents query", err)
	}
	if !page.more {
		page.pos, page.key = nil, ""
	}
	q.s.indexes.consider(t, plan.filter, plan.sort, time.Since(start))
	return page, nil
}

// resolvePos turns the cursor's positions into sort keys (sortKeySQL);
// those carried as hashes (long strings, objects) are read back from the
// document at the cursor's key, which must still hold the same value.
func (q sqliteDocs) resolvePos(ctx context.Context, t target, plan queryPlan) ([]any, error) {
	pos := make([]any, len(plan.sort))
	for i, p := range plan.pos {
		if p.Hash == nil {
			pos[i] = sqlKeyOf(p.Value)
			continue
		}
		var v any
		err := q.s.db.QueryRowContext(ctx, "SELECT "+sortKeySQL(sqlPath(plan.sort[i].path))+" FROM cpod_documents WHERE loc = ? AND coll = ? AND key = ?",
			t.loc, t.coll, plan.key).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errorf(CodeInvalidCursor, "the document at this cursor's position was deleted; run the query again without a cursor")
		}
		if err != nil {
			return nil, sqlError("documents query", err)
		}
		if !bytes.Equal(sqlHash(v), p.Hash) {
			return nil, errorf(CodeInvalidCursor, "the document at this cursor's position changed; run the query again without a cursor")
		}
		pos[i] = v
	}
	return pos, nil
}

// noPlan reports SQLite refusing an INDEXED BY whose index cannot serve
// the query (never expected: the index is chosen for the query's shape);
// the query then runs without it.
func noPlan(err error) bool { return err != nil && strings.Contains(err.Error(), "no query solution") }

// sqlCursorPos is the cursor form of a sort key read from a row: the
// value for null, numbers, booleans and short strings, else (objects,
// long strings) its hash.
func sqlCursorPos(v any) cursorPos {
	switch x := v.(type) {
	case nil, int64, float64:
		return cursorPos{Value: rawOf(x)}
	case string:
		if len(x) <= maxInlineSortValue {
			return cursorPos{Value: rawOf(x)}
		}
	case []byte:
		if len(x) == 2 && x[0] == keyBool {
			return cursorPos{Value: rawOf(x[1] != 0)}
		}
	}
	return cursorPos{Value: rawOf(nil), Hash: sqlHash(v)}
}

// sqlHash is the hash a cursor carries for a long sort key.
func sqlHash(v any) []byte {
	h := sha256.New()
	switch x := v.(type) {
	case string:
		h.Write([]byte{'s'})
		h.Write([]byte(x))
	case []byte:
		h.Write([]byte{'b'})
		h.Write(x)
	default:
		fmt.Fprintf(h, "%T:%v", v, v)
	}
	return h.Sum(nil)
}

// sqlKeyOf is the sort key (sortKeySQL) of a filter or cursor scalar.
func sqlKeyOf(v bson.RawValue) any {
	switch v.Type {
	case bson.TypeInt32:
		return int64(v.Int32())
	case bson.TypeInt64:
		return v.Int64()
	case bson.TypeDouble:
		return v.Double()
	case bson.TypeString:
		return v.StringValue()
	case bson.TypeBoolean:
		if v.Boolean() {
			return []byte{keyBool, 1}
		}
		return []byte{keyBool, 0}
	}
	return nil
}

func (q sqliteDocs) count(ctx context.Context, t target, terms []filterTerm) (int64, error) {
	if err := q.s.ready(ctx); err != nil {
		return 0, err
	}
	var w sqlWhere
	w.base(t)
	if err := w.filter(terms); err != nil {
		return 0, err
	}
	var n int64
	start := time.Now()
	err := q.s.db.QueryRowContext(ctx, "SELECT count(*) FROM cpod_documents"+q.s.indexes.use(t, terms, nil)+" WHERE "+w.sql.String(), w.args...).Scan(&n)
	if noPlan(err) {
		err = q.s.db.QueryRowContext(ctx, "SELECT count(*) FROM cpod_documents WHERE "+w.sql.String(), w.args...).Scan(&n)
	}
	if err != nil {
		return 0, sqlError("documents count", err)
	}
	q.s.indexes.consider(t, terms, nil, time.Since(start))
	return n, nil
}

func (q sqliteDocs) erase(ctx context.Context, prefix string, o eraseOptions, n *int64) error {
	for {
		var deleted int64
		err := q.s.write(ctx, func() error {
			res, err := q.s.db.ExecContext(ctx, `DELETE FROM cpod_documents WHERE (loc, coll, key) IN
				(SELECT loc, coll, key FROM cpod_documents WHERE loc >= ? AND loc < ? LIMIT ?)`,
				prefix, prefixEnd(prefix), o.size())
			if err != nil {
				return sqlError("documents erase", err)
			}
			deleted, _ = res.RowsAffected()
			if deleted == 0 {
				// Emptied: its collections' indexes go too.
				return sqlError("documents erase", q.s.indexes.dropUnder(ctx, prefix))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if deleted == 0 {
			return nil
		}
		*n += deleted
		o.done("documents")
	}
}

func (q sqliteDocs) scan(ctx context.Context, prefix string, each func(coll, key string, json []byte) error) error {
	if err := q.s.ready(ctx); err != nil {
		return err
	}
	rows, err := q.s.db.QueryContext(ctx, `SELECT coll, key, json FROM cpod_documents WHERE loc = ? ORDER BY coll, key`, prefix)
	if err != nil {
		return sqlError("documents export", err)
	}
	defer rows.Close()
	for rows.Next() {
		var coll, key string
		var js []byte
		if err := rows.Scan(&coll, &key, &js); err != nil {
			return sqlError("documents export", err)
		}
		if err := each(coll, key, js); err != nil {
			return err
		}
	}
	return sqlError("documents export", rows.Err())
}

func (q sqliteDocs) ping(ctx context.Context) error {
	if err := q.s.ready(ctx); err != nil {
		return err
	}
	var one int
	return sqlError("sqlite ping", q.s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one))
}

// ---------------------------------------------------------------------------
// WHERE clauses

// The sort key of the value at a path: one SQL value whose SQLite order is
// the contract's order (query.go): NULL (null and missing) < numbers
// (INTEGER and REAL compare exactly) < strings (TEXT, by UTF-8 bytes) <
// objects < booleans, the last two as BLOBs (every BLOB sorts after every
// TEXT): an object as keyObject and cpod_sortkey's encoding, false as
// keyBool 0, true as keyBool 1. Filters, sorts, cursors and the indexes
// all use this one expression, so an index on it serves each of them.
func sortKeySQL(p string) string {
	return "CASE json_type(v, " + p + ") WHEN 'object' THEN cpod_sortkey(json_extract(v, " + p +
		")) WHEN 'true' THEN X'0201' WHEN 'false' THEN X'0200' ELSE json_extract(v, " + p + ") END"
}

// The first byte of the BLOB sort keys.
const (
	keyObject = 1
	keyBool   = 2
)

// sqlWhere builds a WHERE clause with its arguments. The location and
// collection are SQL string literals, and so are the paths (sqlPath), so
// that the per-collection indexes (documents_sqlite_index.go), whose WHERE
// and expressions name them literally, match; every value is an argument.
type sqlWhere struct {
	sql  strings.Builder
	args []any
}

// sqlQuote is s as a SQL string literal. Locations and collection names
// are checked printable ASCII; a quote is doubled.
func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (w *sqlWhere) base(t target) {
	w.sql.WriteString("loc = " + sqlQuote(t.loc) + " AND coll = " + sqlQuote(t.coll))
}

func (w *sqlWhere) arg(v any) {
	w.sql.WriteByte('?')
	w.args = append(w.args, v)
}

// rangeSQL is "the sort key k op x", within the type bracket of the bound
// x: a range matches only values of its bound's bracket.
func rangeSQL(k string, op string, x any) string {
	switch x.(type) {
	case int64, float64: // numbers: below every TEXT
		if op == ">" || op == ">=" {
			return "(" + k + " " + op + " ? AND " + k + " < '')"
		}
		return k + " " + op + " ?" // NULL matches no comparison
	case string: // strings: at or above '', below every BLOB
		if op == ">" || op == ">=" {
			return "(" + k + " " + op + " ? AND " + k + " < X'')"
		}
		return "(" + k + " " + op + " ? AND " + k + " >= '')"
	default: // booleans
		if op == ">" || op == ">=" {
			return "(" + k + " " + op + " ? AND " + k + " <= X'0201')"
		}
		return "(" + k + " " + op + " ? AND " + k + " >= X'0200')"
	}
}

var sqlOps = map[string]string{opGt: ">", opGte: ">=", opLt: "<", opLte: "<="}

// filter appends the filter's terms (query.go's operators): equality by
// sort key (null also matches missing fields; 2 and 2.0 are equal), ne its
// complement, in a list, ranges within the bound's bracket.
func (w *sqlWhere) filter(terms []filterTerm) error {
	for _, f := range terms {
		k := sortKeySQL(sqlPath(f.path))
		w.sql.WriteString(" AND ")
		switch f.op {
		case opEq:
			if x := sqlKeyOf(f.val); x == nil {
				w.sql.WriteString(k + " IS NULL")
			} else {
				w.sql.WriteString(k + " = ")
				w.arg(x)
			}
		case opNe:
			if x := sqlKeyOf(f.val); x == nil {
				w.sql.WriteString(k + " IS NOT NULL")
			} else {
				w.sql.WriteString(k + " IS NOT ")
				w.arg(x)
			}
		case opIn:
			var vals []any
			null := false
			for _, v := range f.vals {
				if x := sqlKeyOf(v); x == nil {
					null = true
				} else {
					vals = append(vals, x)
				}
			}
			w.sql.WriteString("(")
			if len(vals) > 0 {
				w.sql.WriteString(k + " IN (")
				for i, x := range vals {
					if i > 0 {
						w.sql.WriteString(", ")
					}
					w.arg(x)
				}
				w.sql.WriteString(")")
			}
			if null {
				if len(vals) > 0 {
					w.sql.WriteString(" OR ")
				}
				w.sql.WriteString(k + " IS NULL")
			}
			w.sql.WriteString(")")
		case opGt, opGte, opLt, opLte:
			x := sqlKeyOf(f.val)
			if x == nil { // gte or lte null (matchesNothing took gt and lt): as equality
				w.sql.WriteString(k + " IS NULL")
				continue
			}
			w.sql.WriteString(rangeSQL(k, sqlOps[f.op], x))
			w.args = append(w.args, x)
		default:
			return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("unknown filter operator %q", f.op)}
		}
	}
	return nil
}

// after appends the keyset condition "after the cursor's position" in the
// plan's order: for some sort field i, equal on the fields before it and
// after the position on field i; or equal on all of them with a larger
// key. NULL sorts first ascending and last descending, as the contract
// orders null below everything.
func (w *sqlWhere) after(plan queryPlan, pos []any) {
	w.sql.WriteString(" AND (")
	for i := 0; i <= len(plan.sort); i++ {
		if i > 0 {
			w.sql.WriteString(" OR ")
		}
		w.sql.WriteString("(1")
		for j := 0; j < i; j++ {
			k := sortKeySQL(sqlPath(plan.sort[j].path))
			if pos[j] == nil {
				w.sql.WriteString(" AND " + k + " IS NULL")
			} else {
				w.sql.WriteString(" AND " + k + " = ")
				w.arg(pos[j])
			}
		}
		switch {
		case i == len(plan.sort):
			w.sql.WriteString(" AND key > ")
			w.arg(plan.key)
		case !plan.sort[i].desc && pos[i] == nil:
			w.sql.WriteString(" AND " + sortKeySQL(sqlPath(plan.sort[i].path)) + " IS NOT NULL")
		case !plan.sort[i].desc:
			w.sql.WriteString(" AND " + sortKeySQL(sqlPath(plan.sort[i].path)) + " > ")
			w.arg(pos[i])
		case pos[i] == nil:
			w.sql.WriteString(" AND 0") // nothing sorts below null
		default:
			k := sortKeySQL(sqlPath(plan.sort[i].path))
			w.sql.WriteString(" AND (" + k + " < ")
			w.arg(pos[i])
			w.sql.WriteString(" OR " + k + " IS NULL)")
		}
		w.sql.WriteString(")")
	}
	w.sql.WriteString(")")
}

// ---------------------------------------------------------------------------
// The query form of a value

// sqlPath is the SQL string literal of a field path in the query form:
// '$."seg"."seg"', each segment escaped as the names of the stored form.
func sqlPath(p fieldPath) string {
	var b strings.Builder
	b.WriteString(`'$`)
	for _, s := range p.segs {
		b.WriteString(`."`)
		b.WriteString(strings.ReplaceAll(sqlName(s), "'", "''"))
		b.WriteString(`"`)
	}
	b.WriteString(`'`)
	return b.String()
}

// sqlName maps a stored name (escapeName's form) to one a SQLite JSON
// path can spell between double quotes, which ends a label at the first
// '"' and reads a backslash as an escape: '"', '\' and control bytes
// become "%" and two hex digits. escapeName already escapes every '%', so
// the mapping stays injective.
func sqlName(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 || r == 0x7f }) {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// queryForm is the JSON text of a value's query form, from its BSON form
// (documents.go's valueParser): objects and arrays (bson.D) as objects with
// sqlName names, strings as they are (bsonString's mapping applied),
// numbers canonical (an integral float in the int64 range spelt as an
// integer, so equal numbers compare equal as SQL values too).
func queryForm(v any) []byte { return appendQueryForm(make([]byte, 0, 256), v) }

func appendQueryForm(b []byte, v any) []byte {
	switch x := v.(type) {
	case bson.D:
		b = append(b, '{')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, sqlName(e.Key))
			b = append(b, ':')
			b = appendQueryForm(b, e.Value)
		}
		return append(b, '}')
	case string:
		return appendJSONString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return strconv.AppendInt(b, int64(x), 10)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(b, x)
	}
	return append(b, "null"...)
}

// appendJSONString appends s (valid UTF-8) as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		case c < utf8.RuneSelf:
			b = append(b, c)
		default:
			_, n := utf8.DecodeRuneInString(s[i:])
			b = append(b, s[i:i+n]...)
			i += n
			continue
		}
		i++
	}
	return append(b, '"')
}
