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
// with json_type and json_extract and follow the contract's order of types
// (query.go): null and missing < numbers < strings < objects < booleans,
// numbers by value, strings by UTF-8 bytes, false < true, ties by key.
// Objects (and arrays, stored as objects) compare as their JSON text here,
// field by field on MongoDB (FIDELITY.md).

package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// sqliteDocs keeps documents in the table cpod_documents.
type sqliteDocs struct {
	s *sqlStore
	d *documents
}

var _ docStore = sqliteDocs{}

// sqliteReadSlots is the default Limits.MaxDocumentReads on SQLite: reads
// run on their own connections beside the writer, and each query or count
// holds a core while it scans, so a few more than the cores of a small
// machine keep them busy without queueing everyone behind one tenant (a
// tenant holds at most half).
const sqliteReadSlots = 8

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
		p := sqlPath(s.path)
		fmt.Fprintf(&cols, ", %s, %s", bracketSQL(p), sortValueSQL(p))
		dir := ""
		if s.desc {
			dir = " DESC"
		}
		fmt.Fprintf(&order, "%s%s, %s%s, ", bracketSQL(p), dir, sortValueSQL(p), dir)
	}
	stmt := "SELECT key, json" + cols.String() + " FROM cpod_documents WHERE " + w.sql.String() +
		" ORDER BY " + order.String() + "key LIMIT " + strconv.Itoa(limit+1)
	rows, err := q.s.db.QueryContext(ctx, stmt, w.args...)
	if err != nil {
		return docPage{}, sqlError("documents query", err)
	}
	defer rows.Close()
	var page docPage
	size := 0
	dest := make([]any, 2+2*len(plan.sort))
	var key string
	var js []byte
	sortVals := make([]sql.RawBytes, 0)
	_ = sortVals
	brackets := make([]int64, len(plan.sort))
	values := make([]any, len(plan.sort))
	dest[0], dest[1] = &key, &js
	for i := range plan.sort {
		dest[2+2*i], dest[3+2*i] = &brackets[i], &values[i]
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
			page.pos = append(page.pos, sqlCursorPos(int(brackets[i]), values[i]))
		}
	}
	if err := rows.Err(); err != nil {
		return docPage{}, sqlError("documents query", err)
	}
	if !page.more {
		page.pos, page.key = nil, ""
	}
	return page, nil
}

// sqlPos is one sort value at a cursor's position: its type bracket and
// its SQL value (nil for null, int64 or float64, string, the JSON text of
// an object, 0 or 1 for a boolean).
type sqlPos struct {
	bracket int
	value   any
}

// resolvePos turns the cursor's positions into SQL values; those carried
// as hashes (long strings, objects) are read back from the document at the
// cursor's key, which must still hold the same value.
func (q sqliteDocs) resolvePos(ctx context.Context, t target, plan queryPlan) ([]sqlPos, error) {
	pos := make([]sqlPos, len(plan.sort))
	for i, p := range plan.pos {
		if p.Hash != nil {
			path := sqlPath(plan.sort[i].path)
			var b int64
			var v any
			err := q.s.db.QueryRowContext(ctx, "SELECT "+bracketSQL(path)+", "+sortValueSQL(path)+" FROM cpod_documents WHERE loc = ? AND coll = ? AND key = ?",
				t.loc, t.coll, plan.key).Scan(&b, &v)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, errorf(CodeInvalidCursor, "the document at this cursor's position was deleted; run the query again without a cursor")
			}
			if err != nil {
				return nil, sqlError("documents query", err)
			}
			if !bytes.Equal(sqlHash(int(b), v), p.Hash) {
				return nil, errorf(CodeInvalidCursor, "the document at this cursor's position changed; run the query again without a cursor")
			}
			pos[i] = sqlPos{int(b), v}
			continue
		}
		b, err := bracketOf(p.Value)
		if err != nil {
			return nil, errorf(CodeInvalidCursor, "the cursor is not valid for this query")
		}
		pos[i] = sqlPos{b, sqlValueOf(p.Value)}
	}
	return pos, nil
}

// sqlCursorPos is the cursor form of a sort value read from a row: inline
// when short (numbers, booleans, null, short strings), else its hash.
func sqlCursorPos(b int, v any) cursorPos {
	switch b {
	case 0:
		return cursorPos{Value: rawOf(nil)}
	case 1:
		return cursorPos{Value: rawOf(v)}
	case 2:
		if s, ok := v.(string); ok && len(s) <= maxInlineSortValue {
			return cursorPos{Value: rawOf(s)}
		}
	case 4:
		n, _ := v.(int64)
		return cursorPos{Value: rawOf(n != 0)}
	}
	return cursorPos{Value: rawOf(nil), Hash: sqlHash(b, v)}
}

// sqlHash is the hash a cursor carries for a long sort value.
func sqlHash(b int, v any) []byte {
	h := sha256.New()
	h.Write([]byte{byte(b)})
	fmt.Fprintf(h, "%T:%v", v, v)
	return h.Sum(nil)
}

// sqlValueOf is the SQL value of a filter or cursor scalar, as
// json_extract returns the stored one.
func sqlValueOf(v bson.RawValue) any {
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
			return int64(1)
		}
		return int64(0)
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
	err := q.s.db.QueryRowContext(ctx, "SELECT count(*) FROM cpod_documents WHERE "+w.sql.String(), w.args...).Scan(&n)
	if err != nil {
		return 0, sqlError("documents count", err)
	}
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

// sqlWhere builds a WHERE clause with its arguments. Paths are SQL string
// literals (sqlPath: checked text, quotes doubled), so that the same
// expression can be matched by an index; every value is an argument.
type sqlWhere struct {
	sql  strings.Builder
	args []any
}

func (w *sqlWhere) base(t target) {
	w.sql.WriteString("loc = ? AND coll = ?")
	w.args = append(w.args, t.loc, t.coll)
}

// The type bracket of the value at a path (see the top of this file), and
// the json_type names of each bracket.
func bracketSQL(p string) string {
	return "CASE json_type(v, " + p + ") WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'object' THEN 3 WHEN 'array' THEN 3 WHEN 'true' THEN 4 WHEN 'false' THEN 4 ELSE 0 END"
}

// sortValueSQL is the value at a path as the sort compares it within its
// bracket: json_extract's SQL value (numbers, text, 0 and 1 for booleans),
// and for an object the key cpod_sortkey makes of its JSON text, whose
// bytes order as the contract orders objects.
func sortValueSQL(p string) string {
	return "CASE json_type(v, " + p + ") WHEN 'object' THEN cpod_sortkey(json_extract(v, " + p + ")) ELSE json_extract(v, " + p + ") END"
}

var bracketTypes = [...]string{"'null'", "'integer', 'real'", "'text'", "'object', 'array'", "'true', 'false'"}

func typeSQL(p string) string { return "coalesce(json_type(v, " + p + "), 'null')" }

// eq appends "the value at p sorts equal to (b, x)": null matches null
// and missing, a number any equal number.
func (w *sqlWhere) eq(p string, b int, x any) {
	switch b {
	case 0:
		w.sql.WriteString(typeSQL(p) + " = 'null'")
	case 4:
		if n, _ := x.(int64); n != 0 {
			w.sql.WriteString(typeSQL(p) + " = 'true'")
		} else {
			w.sql.WriteString(typeSQL(p) + " = 'false'")
		}
	default:
		w.sql.WriteString("(" + typeSQL(p) + " IN (" + bracketTypes[b] + ") AND json_extract(v, " + p + ") = ?)")
		w.args = append(w.args, x)
	}
}

// cmp appends "the value at p is of bracket b and op x" (b > 0).
func (w *sqlWhere) cmp(p string, b int, op string, x any) {
	w.sql.WriteString("(" + typeSQL(p) + " IN (" + bracketTypes[b] + ") AND json_extract(v, " + p + ") " + op + " ?)")
	w.args = append(w.args, x)
}

var sqlOps = map[string]string{opGt: ">", opGte: ">=", opLt: "<", opLte: "<="}

// filter appends the filter's terms (query.go's operators).
func (w *sqlWhere) filter(terms []filterTerm) error {
	for _, f := range terms {
		p := sqlPath(f.path)
		w.sql.WriteString(" AND ")
		switch f.op {
		case opEq, opNe:
			b, err := bracketOf(f.val)
			if err != nil {
				return &Error{Code: CodeInternal, Message: "internal error", Err: err}
			}
			if f.op == opNe {
				w.sql.WriteString("NOT ")
			}
			w.eq(p, b, sqlValueOf(f.val))
		case opIn:
			w.sql.WriteString("(")
			for i, v := range f.vals {
				if i > 0 {
					w.sql.WriteString(" OR ")
				}
				b, err := bracketOf(v)
				if err != nil {
					return &Error{Code: CodeInternal, Message: "internal error", Err: err}
				}
				w.eq(p, b, sqlValueOf(v))
			}
			w.sql.WriteString(")")
		case opGt, opGte, opLt, opLte:
			b, err := bracketOf(f.val)
			if err != nil {
				return &Error{Code: CodeInternal, Message: "internal error", Err: err}
			}
			if b == 0 { // gte or lte null (matchesNothing took gt and lt): as equality
				w.eq(p, 0, nil)
				continue
			}
			w.cmp(p, b, sqlOps[f.op], sqlValueOf(f.val))
		default:
			return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("unknown filter operator %q", f.op)}
		}
	}
	return nil
}

// after appends the keyset condition "after the cursor's position" in the
// plan's order: for some sort field i, equal on the fields before it and
// after the position on field i; or equal on all of them with a larger key.
func (w *sqlWhere) after(plan queryPlan, pos []sqlPos) {
	w.sql.WriteString(" AND (")
	for i := 0; i <= len(plan.sort); i++ {
		if i > 0 {
			w.sql.WriteString(" OR ")
		}
		w.sql.WriteString("(1")
		for j := 0; j < i; j++ {
			w.sql.WriteString(" AND ")
			p := sqlPath(plan.sort[j].path)
			w.sql.WriteString(bracketSQL(p) + " = " + strconv.Itoa(pos[j].bracket))
			if pos[j].bracket != 0 {
				w.sql.WriteString(" AND " + sortValueSQL(p) + " = ?")
				w.args = append(w.args, pos[j].value)
			}
		}
		if i < len(plan.sort) {
			p, b := sqlPath(plan.sort[i].path), pos[i].bracket
			w.sql.WriteString(" AND ")
			op, bop := ">", ">"
			if plan.sort[i].desc {
				op, bop = "<", "<"
			}
			if b == 0 {
				if plan.sort[i].desc {
					w.sql.WriteString("0") // nothing sorts before null
				} else {
					w.sql.WriteString(bracketSQL(p) + " > 0")
				}
			} else {
				w.sql.WriteString("(" + bracketSQL(p) + " " + bop + " " + strconv.Itoa(b) +
					" OR (" + bracketSQL(p) + " = " + strconv.Itoa(b) + " AND " + sortValueSQL(p) + " " + op + " ?))")
				w.args = append(w.args, pos[i].value)
			}
		} else {
			w.sql.WriteString(" AND key > ?")
			w.args = append(w.args, plan.key)
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
