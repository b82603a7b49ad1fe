// Document queries and counts (POST /v1/storage/db/{collection}/query and
// /count): filter and sort parsing, planning into a MongoDB find, and
// keyset cursors.

package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ---------------------------------------------------------------------------
// query

// fieldPath is a validated dotted path into a value.
type fieldPath struct {
	text  string   // as the caller sent it, such as "a.b"
	mongo string   // the stored field, such as "v.a.b"
	segs  []string // escaped segments, for reading the value back
}

// parseFieldPath checks a filter or sort path: 1 to 256 bytes, segments
// separated by '.', none empty, none starting with '$', UTF-8 without
// control characters, and no deeper than values may nest.
func (d *documents) parseFieldPath(what, s string) (fieldPath, error) {
	bad := func(why string) (fieldPath, error) {
		return fieldPath{}, errorf(CodeInvalidRequest, "%s field %q: %s", what, truncate(s, 64), why)
	}
	if len(s) == 0 || len(s) > maxFieldPath {
		return bad(fmt.Sprintf("a field path must be 1 to %d bytes", maxFieldPath))
	}
	if !validText(s) {
		return bad("a field path must be UTF-8 without control characters")
	}
	parts := strings.Split(s, ".")
	if len(parts) > d.maxDepth() {
		return bad(fmt.Sprintf("a field path has at most %d segments", d.maxDepth()))
	}
	segs := make([]string, len(parts))
	for i, p := range parts {
		if p == "" {
			return bad("a field path has no empty segments")
		}
		if p[0] == '$' {
			return bad("a path segment must not start with '$': no query operators")
		}
		segs[i] = escapeName(p)
	}
	return fieldPath{text: s, mongo: fieldValue + "." + strings.Join(segs, "."), segs: segs}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// filterTerm is one condition of a filter on the field at path: op applied
// to val, or for opIn to vals. A field's operator object gives one term per
// operator, so a range is two terms on one path.
type filterTerm struct {
	path fieldPath
	op   string
	val  bson.RawValue
	vals []bson.RawValue // opIn only
}

// The filter operators: equality (a plain scalar), and the operator
// object's keys. No other name, and no MongoDB operator, is accepted.
const (
	opEq  = "" // a plain scalar; also how a cursor without "o" spells it
	opGt  = "gt"
	opGte = "gte"
	opLt  = "lt"
	opLte = "lte"
	opIn  = "in"
	opNe  = "ne"
	// maxInValues is the most values of one "in", as in Firestore.
	maxInValues = 30
)

func validOp(op string) bool {
	switch op {
	case opEq, opGt, opGte, opLt, opLte, opIn, opNe:
		return true
	}
	return false
}

// sortTerm is one sort field.
type sortTerm struct {
	path fieldPath
	desc bool
}

// queryPlan is a query with its position: what a cursor carries.
type queryPlan struct {
	filter []filterTerm
	sort   []sortTerm
	// after is set for a continued query: the position of the last item
	// returned, whose sort values are pos (one per sort term) and key.
	after bool
	pos   []cursorPos
	key   string
}

// cursorPos is the value of one sort field at a cursor's position: Value,
// or for a value larger than maxInlineSortValue its hash in Hash (Value is
// then null).
type cursorPos struct {
	Value bson.RawValue `bson:"v"`
	Hash  []byte        `bson:"h,omitempty"`
}

func rawOf(v any) bson.RawValue {
	if v == nil {
		return bson.RawValue{Type: bson.TypeNull}
	}
	t, b, err := bson.MarshalValue(v)
	if err != nil {
		panic(err) // only scalars of our own making reach here
	}
	return bson.RawValue{Type: t, Value: b}
}

// parseFields reads a JSON object of field paths (a filter or a sort) in
// the order sent — a Go map would lose it — and calls each for every path
// and its value token. Paths are checked and may appear once; an object or
// array value reaches each as a json.Delim, with the decoder positioned
// after it, for each to read the rest or to refuse it.
func (d *documents) parseFields(what string, raw json.RawMessage, max int, each func(p fieldPath, v json.Token, dec *json.Decoder) error) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errorf(CodeInvalidRequest, "%s must be an object of field paths", what)
	}
	var seen []string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return errorf(CodeInvalidRequest, "%s is not valid JSON", what)
		}
		p, err := d.parseFieldPath(what, kt.(string))
		if err != nil {
			return err
		}
		for _, s := range seen {
			if s == p.text {
				return errorf(CodeInvalidRequest, "%s field %q is given twice", what, p.text)
			}
		}
		if len(seen) == max {
			return errorf(CodeInvalidRequest, "a %s has at most %d fields", what, max)
		}
		seen = append(seen, p.text)
		vt, err := dec.Token()
		if err != nil {
			return errorf(CodeInvalidRequest, "%s is not valid JSON", what)
		}
		if err := each(p, vt, dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return errorf(CodeInvalidRequest, "%s is not valid JSON", what)
	}
	return nil
}

// filterScalar converts a filter value (an equality's, a bound, an "in"
// item or a "ne" operand) to its stored form; where names it in errors.
func filterScalar(where string, vt json.Token) (bson.RawValue, error) {
	switch x := vt.(type) {
	case json.Delim:
		return bson.RawValue{}, errorf(CodeInvalidRequest, "%s must be a string, number, boolean or null, not an object or array", where)
	case json.Number:
		return rawOf(jsonNumber(string(x))), nil
	case string:
		if len(x) > maxFilterString {
			return bson.RawValue{}, errorf(CodeInvalidRequest, "%s: a string value must be at most %d bytes", where, maxFilterString)
		}
		return rawOf(bsonString(x)), nil
	default: // bool, nil
		return rawOf(x), nil
	}
}

// parseFilter reads {"path": scalar | {operator: operand, ...}, ...}:
// equality with a scalar, or an operator object (see parseOperators).
func (d *documents) parseFilter(raw json.RawMessage) ([]filterTerm, error) {
	var terms []filterTerm
	err := d.parseFields("filter", raw, maxFilterFields, func(p fieldPath, vt json.Token, dec *json.Decoder) error {
		field := fmt.Sprintf("filter field %q", truncate(p.text, 64))
		switch vt {
		case json.Delim('{'):
			ops, err := parseOperators(p, field, dec)
			terms = append(terms, ops...)
			return err
		case json.Delim('['):
			return errorf(CodeInvalidRequest, "%s: the value must be a string, number, boolean or null, or an operator object such as {\"gte\": 1} (an array is only the operand of \"in\")", field)
		}
		v, err := filterScalar(field, vt)
		if err != nil {
			return err
		}
		terms = append(terms, filterTerm{path: p, val: v})
		return nil
	})
	return terms, err
}

// parseOperators reads the rest of a field's operator object, its "{"
// already read: one lower bound ("gt" or "gte") and/or one upper bound
// ("lt" or "lte"), and/or "ne", each with a scalar; or "in" alone, with 1 to
// 30 scalars. Anything else, a key given twice or an empty object is 400
// naming the field and the operator.
func parseOperators(p fieldPath, field string, dec *json.Decoder) ([]filterTerm, error) {
	bad := func(format string, args ...any) ([]filterTerm, error) {
		return nil, errorf(CodeInvalidRequest, field+": "+format, args...)
	}
	notJSON := func() ([]filterTerm, error) { return bad("not valid JSON") }
	var terms []filterTerm
	var lower, upper string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return notJSON()
		}
		op := kt.(string)
		switch op {
		case opGt, opGte, opLt, opLte, opNe, opIn:
		default:
			hint := ""
			if strings.HasPrefix(op, "$") {
				hint = " (MongoDB operators are not accepted)"
			}
			return bad("unknown operator %q%s: an operator object takes gt, gte, lt, lte, in or ne", truncate(op, 64), hint)
		}
		for _, t := range terms {
			if t.op == op {
				return bad("operator %q is given twice", op)
			}
		}
		for _, t := range terms {
			if op == opIn || t.op == opIn {
				return bad("operator \"in\" cannot be combined with another operator")
			}
		}
		switch op {
		case opGt, opGte:
			if lower != "" {
				return bad("operators %q and %q: a range has one lower bound", lower, op)
			}
			lower = op
		case opLt, opLte:
			if upper != "" {
				return bad("operators %q and %q: a range has one upper bound", upper, op)
			}
			upper = op
		}
		where := fmt.Sprintf("%s, operator %q", field, op)
		vt, err := dec.Token()
		if err != nil {
			return notJSON()
		}
		if op != opIn {
			v, err := filterScalar(where, vt)
			if err != nil {
				return nil, err
			}
			terms = append(terms, filterTerm{path: p, op: op, val: v})
			continue
		}
		if vt != json.Delim('[') {
			return bad("operator \"in\" takes an array of 1 to %d strings, numbers, booleans or nulls", maxInValues)
		}
		t := filterTerm{path: p, op: opIn}
		for dec.More() {
			it, err := dec.Token()
			if err != nil {
				return notJSON()
			}
			if len(t.vals) == maxInValues {
				return bad("operator \"in\" takes at most %d values", maxInValues)
			}
			v, err := filterScalar(where+" item", it)
			if err != nil {
				return nil, err
			}
			t.vals = append(t.vals, v)
		}
		if _, err := dec.Token(); err != nil {
			return notJSON()
		}
		if len(t.vals) == 0 {
			return bad("operator \"in\" takes 1 to %d values, not none", maxInValues)
		}
		terms = append(terms, t)
	}
	if _, err := dec.Token(); err != nil {
		return notJSON()
	}
	if len(terms) == 0 {
		return bad("an operator object needs an operator: gt, gte, lt, lte, in or ne")
	}
	return terms, nil
}

// parseSort reads {"path": 1 or -1, ...}.
func (d *documents) parseSort(raw json.RawMessage) ([]sortTerm, error) {
	var terms []sortTerm
	err := d.parseFields("sort", raw, maxSortFields, func(p fieldPath, vt json.Token, _ *json.Decoder) error {
		switch n, _ := vt.(json.Number); n {
		case "1":
			terms = append(terms, sortTerm{path: p})
		case "-1":
			terms = append(terms, sortTerm{path: p, desc: true})
		default:
			return errorf(CodeInvalidRequest, "sort field %q must be 1 or -1", truncate(p.text, 64))
		}
		return nil
	})
	return terms, err
}

func (d *documents) handleQuery(c *call) error {
	t, err := d.scope(c, Read)
	if err != nil {
		return err
	}
	var body struct {
		Filter json.RawMessage `json:"filter"`
		Sort   json.RawMessage `json:"sort"`
		Limit  json.RawMessage `json:"limit"`
		Cursor *string         `json:"cursor"`
	}
	if err := decodeOptionalJSON(c, maxQueryBody, &body); err != nil {
		return err
	}
	limit := defaultQueryLimit
	if len(body.Limit) > 0 && string(body.Limit) != "null" {
		n, err := strconv.ParseInt(string(body.Limit), 10, 64)
		if err != nil || n < 1 || n > int64(d.e.cfg.Limits.MaxQueryLimit) {
			return errorf(CodeInvalidRequest, "limit must be a whole number from 1 to %d", d.e.cfg.Limits.MaxQueryLimit)
		}
		limit = int(n)
	}
	// A filter and sort sent with a cursor are ignored, but still checked:
	// malformed input is refused whatever comes with it.
	if !utf8.Valid(body.Filter) || !utf8.Valid(body.Sort) {
		return errorf(CodeInvalidRequest, "the body must be UTF-8 JSON")
	}
	var plan queryPlan
	if plan.filter, err = d.parseFilter(body.Filter); err != nil {
		return err
	}
	if plan.sort, err = d.parseSort(body.Sort); err != nil {
		return err
	}
	if body.Cursor != nil {
		if plan, err = d.decodeCursor(t, *body.Cursor); err != nil {
			return err
		}
	}
	if matchesNothing(plan.filter) {
		return writeRawJSON(c, http.StatusOK, []byte(`{"items":[],"nextCursor":null}`))
	}
	ctx, cancel := d.e.backendCtx(c)
	defer cancel()
	ctx, done, err := d.startRead(ctx, t)
	if err != nil {
		return err
	}
	defer done()
	page, err := d.store.query(ctx, t, plan, limit)
	if err != nil {
		return err
	}
	out := append(make([]byte, 0, 4096), `{"items":[`...)
	for i, it := range page.items {
		if i > 0 {
			out = append(out, ',')
		}
		out = itemJSON(out, it.key, it.json)
	}
	out = append(out, `],"nextCursor":`...)
	if page.more {
		next := plan
		next.after, next.pos, next.key = true, page.pos, page.key
		s, err := d.encodeCursor(t, next)
		if err != nil {
			return err
		}
		out = append(out, '"')
		out = append(out, s...)
		out = append(out, '"')
	} else {
		out = append(out, "null"...)
	}
	out = append(out, '}')
	return writeRawJSON(c, http.StatusOK, out)
}

// startRead takes a read slot for a query or count of t and returns the
// context of its backend calls (readCtx); done gives both back.
func (d *documents) startRead(ctx context.Context, t target) (context.Context, func(), error) {
	release, err := d.readSlot(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	var b docsBackend
	if p := d.backend.Load(); p != nil {
		b = *p
	}
	rctx, cancel := readCtx(ctx, b)
	return rctx, func() { cancel(); release() }, nil
}

// readCtx is the context of a read's backend calls once it holds its read
// slot: ctx, but on FerretDB not canceled when the client leaves, only at
// ctx's deadline. FerretDB goes on scanning after the client is gone (until
// the maxTimeMS the driver sends from the deadline), so the read keeps its
// slot for as long as FerretDB works on it: the slots bound FerretDB's work,
// not only the engine's waiting. Elsewhere (MongoDB, SQLite) the work stops
// with ctx.
func readCtx(ctx context.Context, b docsBackend) (context.Context, context.CancelFunc) {
	if !b.ferret {
		return ctx, func() {}
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	return context.WithDeadline(context.WithoutCancel(ctx), dl)
}

// handleCount answers POST /db/{collection}/count {"filter"} with
// {"count": n}: the number of documents a query with that filter returns
// over all its pages. The filter is a query's, with the same rules; the
// work is one count on the backend, bounded like a query by the caller's
// own collection (on FerretDB a scan of it), Config.BackendTimeout and a
// read slot (see readSlots). The count is exact, so its scan is not capped.
func (d *documents) handleCount(c *call) error {
	t, err := d.scope(c, Read)
	if err != nil {
		return err
	}
	var body struct {
		Filter json.RawMessage `json:"filter"`
	}
	if err := decodeOptionalJSON(c, maxQueryBody, &body); err != nil {
		return err
	}
	if !utf8.Valid(body.Filter) {
		return errorf(CodeInvalidRequest, "the body must be UTF-8 JSON")
	}
	terms, err := d.parseFilter(body.Filter)
	if err != nil {
		return err
	}
	n := int64(0)
	if !matchesNothing(terms) {
		ctx, cancel := d.e.backendCtx(c)
		defer cancel()
		ctx, done, err := d.startRead(ctx, t)
		if err != nil {
			return err
		}
		defer done()
		if n, err = d.store.count(ctx, t, terms); err != nil {
			return err
		}
	}
	return writeRawJSON(c, http.StatusOK, append(strconv.AppendInt([]byte(`{"count":`), n, 10), '}'))
}

// countMatches counts the documents that match filter with the pipeline
// [$match, $count], exact like CountDocuments. CountDocuments' pipeline
// counts with $group, which FerretDB v1 runs by collecting every matching
// document in memory before it adds them up (a count of 200k small
// documents took 0.9 GB); FerretDB's $count stage counts them as they
// stream past, and MongoDB runs both the same way.
func countMatches(ctx context.Context, pc *mongo.Collection, filter bson.D) (int64, error) {
	cur, err := pc.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: filter}},
		{{Key: "$count", Value: "n"}},
	})
	if err != nil {
		return 0, docsBackendError("documents count", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	if !cur.Next(ctx) {
		if err := cur.Err(); err != nil {
			return 0, docsBackendError("documents count", err)
		}
		return 0, nil // no match: $count returns no document
	}
	n, ok := cur.Current.Lookup("n").AsInt64OK()
	if !ok {
		return 0, &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("documents count: the count is not a number")}
	}
	return n, nil
}

// resolveHashedPos reads back the sort values that a cursor carries as
// hashes, from the document at the cursor's position. If that document or
// value changed since, the cursor cannot continue.
func (d *documents) resolveHashedPos(ctx context.Context, pc *mongo.Collection, t target, plan *queryPlan) error {
	var proj bson.D
	for i, p := range plan.pos {
		if p.Hash != nil {
			proj = append(proj, bson.E{Key: plan.sort[i].path.mongo, Value: 1})
		}
	}
	if proj == nil {
		return nil
	}
	raw, err := pc.FindOne(ctx, bson.D{{Key: "_id", Value: t.id(plan.key)}}, options.FindOne().SetProjection(proj)).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return errorf(CodeInvalidCursor, "the document at this cursor's position was deleted; run the query again without a cursor")
	}
	if err != nil {
		return docsBackendError("documents query", err)
	}
	for i, p := range plan.pos {
		if p.Hash == nil {
			continue
		}
		v := sortValue(raw, plan.sort[i].path)
		if !bytes.Equal(hashValue(v), p.Hash) {
			return errorf(CodeInvalidCursor, "the document at this cursor's position changed; run the query again without a cursor")
		}
		plan.pos[i] = cursorPos{Value: v}
	}
	return nil
}

func hashValue(v bson.RawValue) []byte {
	h := sha256.New()
	h.Write([]byte{byte(v.Type)})
	h.Write(v.Value)
	return h.Sum(nil)
}

// sortValue reads the value at path from a stored (projected) document;
// missing, or a path through a non-object, is null, as in MongoDB's sort.
func sortValue(doc bson.Raw, p fieldPath) bson.RawValue {
	v, err := doc.LookupErr(append([]string{fieldValue}, p.segs...)...)
	if err != nil {
		return bson.RawValue{Type: bson.TypeNull}
	}
	return v
}

// The order of query results. MongoDB (and FerretDB) sort values of
// different BSON types by type: null and missing < numbers < strings <
// objects < booleans. The stored form holds no BSON arrays (arrays are
// documents keyed by index) and no other types, so that is the whole order:
// numbers by value (int64 and double compared exactly), strings by UTF-8
// bytes, objects field by field (type, escaped name, value, then length),
// false < true. Ties are broken by key, ascending, whatever the direction.
//
// Comparison operators ($gt, $lt) only match values of the operand's type
// bracket, so the keyset condition "after the position" spells out the
// brackets: for each sort field i, the documents equal on fields 0..i-1 and
// after the position on field i, or equal on all fields with a larger _id.

// typeBracket lists the BSON types of the stored form in sort order; null
// (including missing) comes first and has no $type test (missing fields have
// no type): it is matched by equality with null.
var typeBracket = []string{"null", "number", "string", "object", "bool"}

func bracketOf(v bson.RawValue) (int, error) {
	switch v.Type {
	case bson.TypeNull:
		return 0, nil
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		return 1, nil
	case bson.TypeString:
		return 2, nil
	case bson.TypeEmbeddedDocument:
		return 3, nil
	case bson.TypeBoolean:
		return 4, nil
	}
	return 0, fmt.Errorf("unexpected BSON type %v in a sort value", v.Type)
}

// inBrackets matches the values of brackets lo..hi (inclusive); nil if none.
func inBrackets(field string, lo, hi int) []bson.D {
	var out []bson.D
	if lo <= 0 && hi >= 0 {
		out = append(out, bson.D{{Key: field, Value: nil}})
		lo = 1
	}
	if lo <= hi {
		types := bson.A{}
		for _, t := range typeBracket[lo : hi+1] {
			types = append(types, t)
		}
		out = append(out, bson.D{{Key: field, Value: bson.D{{Key: "$type", Value: types}}}})
	}
	return out
}

// equalTo matches values that sort equal to v (also filter equality: null
// matches null and missing, numbers match equal numbers of any type).
func equalTo(field string, v bson.RawValue) bson.D {
	if v.Type == bson.TypeNull {
		return bson.D{{Key: field, Value: nil}} // null or missing
	}
	return bson.D{{Key: field, Value: bson.D{{Key: "$eq", Value: v}}}}
}

// after matches values that sort strictly after v in the direction; nil when
// none can.
func after(field string, v bson.RawValue, desc bool) ([]bson.D, error) {
	b, err := bracketOf(v)
	if err != nil {
		return nil, err
	}
	var out []bson.D
	if !desc {
		switch {
		case v.Type == bson.TypeBoolean:
			if !v.Boolean() {
				out = append(out, bson.D{{Key: field, Value: true}})
			}
		case b > 0:
			out = append(out, bson.D{{Key: field, Value: bson.D{{Key: "$gt", Value: v}}}})
		}
		return append(out, inBrackets(field, b+1, len(typeBracket)-1)...), nil
	}
	switch {
	case v.Type == bson.TypeBoolean:
		if v.Boolean() {
			out = append(out, bson.D{{Key: field, Value: false}})
		}
	case b > 0:
		out = append(out, bson.D{{Key: field, Value: bson.D{{Key: "$lt", Value: v}}}})
	}
	return append(out, inBrackets(field, 0, b-1)...), nil
}

// The filter's operators, spelled with the type brackets (see above):
//
//   - equality: equalTo, so null matches null and missing fields, and a
//     number any equal number.
//   - ne: the exact complement of equality on the same operand: {"ne": null}
//     matches fields that are present and not null; {"ne": x} matches
//     every other value, null and missing fields included.
//   - in: equality with any of the values, each by equalTo's rule (mixed
//     types allowed: [1, "1"] matches 1, 1.0 and "1"; null also matches
//     missing fields).
//   - gt, gte, lt, lte: only values of the bound's bracket (numbers with
//     numbers, strings with strings, booleans with booleans), compared as
//     the sort compares them; a null bound matches what equality with null
//     does for gte and lte, and nothing for gt and lt. A lower and an upper
//     bound of different brackets match nothing.
//
// Equalities stay top-level fields of the find filter, as before; every
// other operator is one clause of a $and.

// appendFilter appends the conditions of terms to filter.
func appendFilter(filter bson.D, terms []filterTerm) (bson.D, error) {
	var and bson.A
	for _, f := range terms {
		field := f.path.mongo
		switch f.op {
		case opEq:
			filter = append(filter, equalTo(field, f.val)[0])
		case opNe:
			and = append(and, bson.D{{Key: field, Value: bson.D{{Key: "$ne", Value: f.val}}}})
		case opIn:
			var vals bson.A
			null := false
			for _, v := range f.vals {
				if v.Type == bson.TypeNull {
					null = true
				} else {
					vals = append(vals, v)
				}
			}
			or := bson.A{}
			if len(vals) > 0 {
				or = append(or, bson.D{{Key: field, Value: bson.D{{Key: "$in", Value: vals}}}})
			}
			if null {
				or = append(or, equalTo(field, rawOf(nil)))
			}
			and = append(and, bson.D{{Key: "$or", Value: or}})
		case opGt, opGte, opLt, opLte:
			b, err := bracketOf(f.val)
			if err != nil {
				return nil, err
			}
			if b == 0 {
				// Only gte and lte null remain (matchesNothing): null or
				// missing, as equality.
				and = append(and, equalTo(field, f.val))
				continue
			}
			and = append(and, bson.D{{Key: field, Value: bson.D{
				{Key: "$type", Value: typeBracket[b]},
				{Key: "$" + f.op, Value: f.val},
			}}})
		default:
			return nil, fmt.Errorf("unknown filter operator %q", f.op)
		}
	}
	if len(and) > 0 {
		filter = append(filter, bson.E{Key: "$and", Value: and})
	}
	return filter, nil
}

// matchesNothing reports a filter that no document can match: a range
// bound gt or lt null, or a lower and an upper bound of different type
// brackets on one field. Such a query or count is answered without a
// backend call.
func matchesNothing(terms []filterTerm) bool {
	bracket := map[string]int{}
	for _, f := range terms {
		switch f.op {
		case opGt, opGte, opLt, opLte:
		default:
			continue
		}
		b, err := bracketOf(f.val)
		if err != nil {
			return false // appendFilter reports it
		}
		if b == 0 && (f.op == opGt || f.op == opLt) {
			return true
		}
		if o, ok := bracket[f.path.text]; ok && o != b {
			return true
		}
		bracket[f.path.text] = b
	}
	return false
}

// mongoQuery builds the find filter, sort and projection of a plan.
func (d *documents) mongoQuery(t target, plan queryPlan) (filter, sort, proj bson.D, err error) {
	lo, hi := t.idRange()
	filter = bson.D{
		{Key: fieldLoc, Value: t.loc},
		{Key: fieldColl, Value: t.coll},
		{Key: "_id", Value: bson.D{{Key: "$gte", Value: lo}, {Key: "$lt", Value: hi}}},
	}
	filter, err = appendFilter(filter, plan.filter)
	if err != nil {
		return nil, nil, nil, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	if plan.after {
		var branches bson.A
		for i := 0; i <= len(plan.sort); i++ {
			var and bson.A
			for j := 0; j < i; j++ {
				and = append(and, equalTo(plan.sort[j].path.mongo, plan.pos[j].Value))
			}
			if i < len(plan.sort) {
				alts, err := after(plan.sort[i].path.mongo, plan.pos[i].Value, plan.sort[i].desc)
				if err != nil {
					return nil, nil, nil, &Error{Code: CodeInternal, Message: "internal error", Err: err}
				}
				if len(alts) == 0 {
					continue
				}
				or := bson.A{}
				for _, a := range alts {
					or = append(or, a)
				}
				and = append(and, bson.D{{Key: "$or", Value: or}})
			} else {
				and = append(and, bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: t.id(plan.key)}}}})
			}
			branches = append(branches, bson.D{{Key: "$and", Value: and}})
		}
		filter = append(filter, bson.E{Key: "$or", Value: branches})
	}
	proj = bson.D{{Key: fieldKey, Value: 1}, {Key: fieldJSON, Value: 1}}
	for _, s := range plan.sort {
		dir := 1
		if s.desc {
			dir = -1
		}
		sort = append(sort, bson.E{Key: s.path.mongo, Value: dir})
		// Project each sort path once; a path under another projected one
		// would be a path collision.
		covered := false
		for _, o := range plan.sort {
			covered = covered || (o.path.mongo != s.path.mongo && strings.HasPrefix(s.path.mongo, o.path.mongo+"."))
		}
		if !covered {
			proj = append(proj, bson.E{Key: s.path.mongo, Value: 1})
		}
	}
	sort = append(sort, bson.E{Key: "_id", Value: 1})
	return filter, sort, proj, nil
}

// runQuery runs plan on pc and returns one page.
func (d *documents) runQuery(ctx context.Context, pc *mongo.Collection, t target, plan queryPlan, limit int) (docPage, error) {
	filter, sort, proj, err := d.mongoQuery(t, plan)
	if err != nil {
		return docPage{}, err
	}
	cur, err := pc.Find(ctx, filter, options.Find().
		SetSort(sort).SetProjection(proj).
		SetLimit(int64(limit+1)).SetBatchSize(int32(limit+1)).
		SetAllowDiskUse(true))
	if err != nil {
		return docPage{}, docsBackendError("documents query", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var page docPage
	size := 0
	var last bson.Raw
	for cur.Next(ctx) {
		if len(page.items) == limit || size > maxPageBytes {
			page.more = true
			break
		}
		key, ok1 := cur.Current.Lookup(fieldKey).StringValueOK()
		js, ok2 := cur.Current.Lookup(fieldJSON).StringValueOK()
		if !ok1 || !ok2 {
			return docPage{}, &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("documents query: a stored document lacks key or json")}
		}
		page.items = append(page.items, docItem{key: key, json: []byte(js)})
		size += len(key) + len(js) + 20
		last = append(last[:0], cur.Current...)
	}
	if err := cur.Err(); err != nil {
		return docPage{}, docsBackendError("documents query", err)
	}
	if page.more {
		page.key, _ = last.Lookup(fieldKey).StringValueOK()
		page.pos = make([]cursorPos, len(plan.sort))
		for i, s := range plan.sort {
			v := sortValue(last, s.path)
			if len(v.Value) > maxInlineSortValue {
				page.pos[i] = cursorPos{Value: bson.RawValue{Type: bson.TypeNull}, Hash: hashValue(v)}
			} else {
				page.pos[i] = cursorPos{Value: v}
			}
		}
	}
	return page, nil
}

// ---------------------------------------------------------------------------
// cursors

// A cursor is base64url(version 1 || BSON payload || HMAC-SHA256). The MAC
// (purpose "documents-cursor") covers the caller's location and collection
// as well as the payload, so a cursor continues only the query that made it,
// for the same tenant, tier (and app or user) and collection: anything else
// fails the MAC and is 400 invalid_cursor. The payload is the query's filter
// and sort and the position of the last item returned (its sort values and
// key); it names no location. It is readable by its holder, who sent the
// filter and owns the values.
const cursorVersion = 1

type cursorPayload struct {
	Filter []cursorFilter `bson:"f"`
	Sort   []cursorSort   `bson:"s"`
	Pos    []cursorPos    `bson:"p"`
	Key    string         `bson:"k"`
}

// cursorFilter is one filter term; cursors made before operators existed
// have no "o" (equality) and no "a".
type cursorFilter struct {
	Path   string          `bson:"p"`
	Op     string          `bson:"o,omitempty"`
	Value  bson.RawValue   `bson:"v"`
	Values []bson.RawValue `bson:"a,omitempty"`
}

type cursorSort struct {
	Path string `bson:"p"`
	Desc bool   `bson:"d"`
}

func cursorMACInput(t target, payload []byte) []byte {
	m := make([]byte, 0, len(t.loc)+len(t.coll)+len(payload)+8)
	m = append(m, cursorVersion, 0)
	m = append(m, t.loc...)
	m = append(m, 0)
	m = append(m, t.coll...)
	m = append(m, 0)
	return append(m, payload...)
}

func (d *documents) encodeCursor(t target, plan queryPlan) (string, error) {
	p := cursorPayload{Pos: plan.pos, Key: plan.key, Filter: []cursorFilter{}, Sort: []cursorSort{}}
	for _, f := range plan.filter {
		v := f.val
		if f.op == opIn {
			v = rawOf(nil) // the values are in Values
		}
		p.Filter = append(p.Filter, cursorFilter{Path: f.path.text, Op: f.op, Value: v, Values: f.vals})
	}
	for _, s := range plan.sort {
		p.Sort = append(p.Sort, cursorSort{Path: s.path.text, Desc: s.desc})
	}
	payload, err := bson.Marshal(p)
	if err != nil {
		return "", &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	b := append([]byte{cursorVersion}, payload...)
	b = append(b, d.e.mac("documents-cursor", cursorMACInput(t, payload))...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (d *documents) decodeCursor(t target, s string) (queryPlan, error) {
	bad := errorf(CodeInvalidCursor, "the cursor is not valid for this query: it was changed, or belongs to another collection, tier or account")
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1+5+sha256.Size || b[0] != cursorVersion {
		return queryPlan{}, bad
	}
	payload, sum := b[1:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if !d.e.validMAC("documents-cursor", cursorMACInput(t, payload), sum) {
		return queryPlan{}, bad
	}
	// The MAC proves the engine made this payload; still check its shape.
	var p cursorPayload
	if err := bson.Unmarshal(payload, &p); err != nil || len(p.Sort) > maxSortFields || len(p.Pos) != len(p.Sort) || len(p.Filter) > maxFilterFields*3 || validDocKey(p.Key) != nil {
		return queryPlan{}, bad
	}
	plan := queryPlan{after: true, pos: p.Pos, key: p.Key}
	for _, f := range p.Filter {
		fp, err := d.parseFieldPath("filter", f.Path)
		if err != nil {
			return queryPlan{}, bad
		}
		if !validOp(f.Op) || (f.Op == opIn) != (len(f.Values) > 0) || len(f.Values) > maxInValues {
			return queryPlan{}, bad
		}
		plan.filter = append(plan.filter, filterTerm{path: fp, op: f.Op, val: f.Value, vals: f.Values})
	}
	for i, s := range p.Sort {
		sp, err := d.parseFieldPath("sort", s.Path)
		if err != nil {
			return queryPlan{}, bad
		}
		if _, err := bracketOf(p.Pos[i].Value); err != nil {
			return queryPlan{}, bad
		}
		plan.sort = append(plan.sort, sortTerm{path: sp, desc: s.Desc})
	}
	return plan, nil
}
