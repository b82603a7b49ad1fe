package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// DB is structured document storage, sdk.storage.db: named collections of
// JSON values under string keys, with equality filters, sorting, keyset
// pagination and batches. Values round-trip exactly as JSON, field order
// included.
type DB struct{ c *Client }

// CollectionOptions are the options of [DB.Collection]. A nil
// *CollectionOptions means all defaults.
type CollectionOptions struct {
	// Tier of the collection; default private.
	Tier Tier
}

// Collection returns a handle on the collection name, as
// sdk.storage.db.collection. It sends nothing; names are checked by the
// server on first use: 1 to 64 characters of letters, digits, '_', '.' and
// '-', starting with a letter or digit.
func (d *DB) Collection(name string, opts *CollectionOptions) *Collection {
	col := &Collection{c: d.c, name: name}
	if opts != nil {
		col.tier = opts.Tier
	}
	return col
}

// Collection is a named set of documents in one tier. It is safe for
// concurrent use.
type Collection struct {
	c    *Client
	name string
	tier Tier
}

// path returns the escaped URL path of the collection followed by suffix.
func (col *Collection) path(suffix string) (string, error) {
	n, err := escapeKey("collection name", col.name)
	if err != nil {
		return "", err
	}
	return "/v1/storage/db/" + n + suffix, nil
}

// docPath returns the escaped URL path of the document key.
func (col *Collection) docPath(key string) (string, error) {
	k, err := escapeKey("document key", key)
	if err != nil {
		return "", err
	}
	return col.path("/" + k)
}

// DocOption is an option of a call on one document: [Collection.Set],
// [Collection.Get], [Collection.Delete] and [Collection.Patch]. Build it
// with [ETag], [IfMatch] or [IfAbsent].
type DocOption func(*docOptions)

type docOptions struct {
	etag     *string
	ifMatch  string
	ifAbsent bool
}

// ETag stores the document's ETag in *dst when the call succeeds: the
// version Get read, or the one Set or Patch wrote. Every write of a
// document gives it a new ETag; pass it to [IfMatch] to write only that
// version. It is an opaque string in double quotes, as in the header.
func ETag(dst *string) DocOption { return func(o *docOptions) { o.etag = dst } }

// IfMatch makes Set, Patch or Delete apply only when the document exists
// with this ETag (as [ETag] returned it), in one atomic step on the server;
// "*" applies to any existing document. A write that finds another version,
// or no document, writes nothing and fails with an *Error of Status 412
// (errors.Is(err, ErrConflict)): read the document again and retry, or
// give up. That makes read-modify-write cycles safe against concurrent
// writers (optimistic concurrency).
func IfMatch(etag string) DocOption { return func(o *docOptions) { o.ifMatch = etag } }

// IfAbsent makes Set create the document only when it does not exist
// (If-None-Match: *); an existing one is left alone and the call fails
// with an *Error of Status 412 (errors.Is(err, ErrConflict)).
func IfAbsent() DocOption { return func(o *docOptions) { o.ifAbsent = true } }

// PreconditionFailed reports whether err is the answer to a write whose
// [IfMatch] or [IfAbsent] condition did not hold (HTTP 412).
func PreconditionFailed(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusPreconditionFailed
}

// docCall sends one single-document call with the options' headers. body
// is JSON text (nil for none); out, when not nil, receives the answer's
// item.
func (col *Collection) docCall(ctx context.Context, method, key string, body []byte, contentType string, opts []DocOption, out *Item) error {
	p, err := col.docPath(key)
	if err != nil {
		return err
	}
	var o docOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	h := http.Header{}
	switch {
	case (o.ifMatch != "" || o.ifAbsent) && (method == http.MethodGet || method == http.MethodHead):
		return localError("IfMatch and IfAbsent apply to writes, not to Get or Exists")
	case o.ifAbsent && method != http.MethodPut:
		return localError("IfAbsent applies to Set only")
	case o.ifAbsent && o.ifMatch != "":
		return localError("give IfMatch or IfAbsent, not both")
	case o.ifAbsent:
		h.Set("If-None-Match", "*")
	case o.ifMatch != "":
		h.Set("If-Match", o.ifMatch)
	}
	r := request{method: method, path: p, query: tierQuery(col.tier), header: h}
	if body != nil {
		r.body = bytes.NewReader(body)
		r.size = int64(len(body))
		h.Set("Content-Type", contentType)
	}
	if out != nil {
		h.Set("Accept", "application/json")
	}
	resp, err := col.c.do(ctx, r)
	if err != nil {
		return err
	}
	defer drainClose(resp.Body)
	if o.etag != nil {
		*o.etag = resp.Header.Get("ETag")
	}
	if out == nil {
		return nil
	}
	return decodeJSON(resp, out)
}

// Set stores value, marshalled with encoding/json, under key, replacing any
// document there. A json.RawMessage is sent as it is. With [IfMatch] it
// replaces only that version, with [IfAbsent] it only creates; [ETag]
// receives the new version.
func (col *Collection) Set(ctx context.Context, key string, value any, opts ...DocOption) error {
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("cpod storage: encoding document %q: %w", key, err)
	}
	return col.docCall(ctx, http.MethodPut, key, b, "application/json", opts, nil)
}

// Get decodes the document at key into dst, as json.Unmarshal does, and
// reports whether it exists: a missing document is found == false with a nil
// error (the seed's null), and leaves dst alone. dst may be nil to test
// existence only, or a *json.RawMessage to keep the JSON text. [ETag]
// receives the version read.
func (col *Collection) Get(ctx context.Context, key string, dst any, opts ...DocOption) (found bool, err error) {
	var out Item
	err = col.docCall(ctx, http.MethodGet, key, nil, "", opts, &out)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if dst != nil {
		if err := json.Unmarshal(out.Value, dst); err != nil {
			return true, fmt.Errorf("cpod storage: decoding document %q: %w", key, err)
		}
	}
	return true, nil
}

// Exists reports whether a document is stored at key, with a HEAD request:
// the value is not sent. [ETag] receives its version. A missing document
// is false with a nil error; any other failure, a wrong base URL included
// ([ErrUnknownEndpoint]), is an error.
func (col *Collection) Exists(ctx context.Context, key string, opts ...DocOption) (bool, error) {
	err := col.docCall(ctx, http.MethodHead, key, nil, "", opts, nil)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Delete removes the document at key. Deleting a missing document is not an
// error, but with [IfMatch] it is (Status 412), as is any other version.
func (col *Collection) Delete(ctx context.Context, key string, opts ...DocOption) error {
	return col.docCall(ctx, http.MethodDelete, key, nil, "", opts, nil)
}

// Patch merges patch, marshalled with encoding/json (a json.RawMessage is
// sent as it is), into the document at key as a JSON Merge Patch (RFC
// 7396), atomically, and decodes the merged value into dst (nil to skip).
// An object patch sets its members, recursively; a member set to nil
// (JSON null) is removed; any other patch replaces the whole value.
// Members the patch does not name keep their value and order, so
// concurrent patches of different fields all survive. A missing document
// is ErrNotFound. With [IfMatch] it applies only to that version; [ETag]
// receives the new one.
func (col *Collection) Patch(ctx context.Context, key string, patch any, dst any, opts ...DocOption) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("cpod storage: encoding the patch of document %q: %w", key, err)
	}
	var out Item
	if err := col.docCall(ctx, http.MethodPatch, key, b, "application/merge-patch+json", opts, &out); err != nil {
		return err
	}
	if dst != nil {
		if err := json.Unmarshal(out.Value, dst); err != nil {
			return fmt.Errorf("cpod storage: decoding document %q: %w", key, err)
		}
	}
	return nil
}

// SortField orders query results by one field; build it with [Asc] or
// [Desc].
type SortField struct {
	Field string // dotted path into the value, such as "createdAt" or "a.b"
	Desc  bool   // descending when true
}

// Asc sorts by field, smallest first.
func Asc(field string) SortField { return SortField{Field: field} }

// Desc sorts by field, largest first.
func Desc(field string) SortField { return SortField{Field: field, Desc: true} }

// Scalar is the Go types of a filter operand: a string, a number or a
// boolean. A null operand is spelled with nil in a filter, [NotNull] or
// [InOrNull].
type Scalar interface {
	~string | ~bool |
		~int | ~int8 | ~int16 | ~int32 | ~int64 |
		~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 |
		~float32 | ~float64
}

// Bound is one end of a range, the value of a filter field on its own or,
// with the other end, through [Between]. Build it with [Gt], [Gte] (a lower
// bound) or [Lt], [Lte] (an upper bound). A range matches only values of
// its bound's type: numbers with numbers, strings with strings, booleans
// with booleans.
type Bound struct {
	op    string
	value any
}

// LowerBound is [Gt] or [Gte]; UpperBound is [Lt] or [Lte]: distinct
// types, so that [Between] cannot be given two lower bounds.
type (
	LowerBound struct{ Bound }
	UpperBound struct{ Bound }
)

// Gt matches values greater than v (of v's type).
func Gt[T Scalar](v T) LowerBound { return LowerBound{Bound{"gt", v}} }

// Gte matches values greater than or equal to v (of v's type).
func Gte[T Scalar](v T) LowerBound { return LowerBound{Bound{"gte", v}} }

// Lt matches values less than v (of v's type).
func Lt[T Scalar](v T) UpperBound { return UpperBound{Bound{"lt", v}} }

// Lte matches values less than or equal to v (of v's type).
func Lte[T Scalar](v T) UpperBound { return UpperBound{Bound{"lte", v}} }

// MarshalJSON encodes the bound as its operator object, such as {"gt":1}.
func (b Bound) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]any{b.op: b.value}) }

// Range is a lower and an upper bound on one field, from [Between].
type Range struct {
	lo LowerBound
	hi UpperBound
}

// Between matches values within both bounds, such as
// Between(Gte("2025-01-01"), Lt("2025-02-01")). Bounds of two types match
// nothing.
func Between(lo LowerBound, hi UpperBound) Range { return Range{lo, hi} }

// MarshalJSON encodes the range as {"gte":x,"lt":y}.
func (r Range) MarshalJSON() ([]byte, error) {
	lo, err := json.Marshal(r.lo.value)
	if err != nil {
		return nil, err
	}
	hi, err := json.Marshal(r.hi.value)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{%q:%s,%q:%s}`, r.lo.op, lo, r.hi.op, hi), nil
}

// OneOf is a set of values, from [In] or [InOrNull].
type OneOf struct{ values []any }

// In matches values equal to any of first and more (1 to 30 values), by the
// rule of equality: numbers match equal numbers of any spelling.
func In[T Scalar](first T, more ...T) OneOf {
	vs := []any{first}
	for _, v := range more {
		vs = append(vs, v)
	}
	return OneOf{vs}
}

// InOrNull is [In] that also matches null and missing fields.
func InOrNull[T Scalar](first T, more ...T) OneOf {
	o := In(first, more...)
	o.values = append(o.values, nil)
	return o
}

// MarshalJSON encodes the set as {"in":[...]}.
func (o OneOf) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]any{"in": o.values}) }

// NotEqual is the complement of an equality, from [Ne] or [NotNull].
type NotEqual struct{ value any }

// Ne matches every value that does not equal v, null and missing fields
// included.
func Ne[T Scalar](v T) NotEqual { return NotEqual{v} }

// NotNull matches fields that are present and not null.
func NotNull() NotEqual { return NotEqual{nil} }

// MarshalJSON encodes the condition as {"ne":v}.
func (n NotEqual) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]any{"ne": n.value}) }

// QueryOptions select, order and page documents in [Collection.Query].
type QueryOptions struct {
	// Filter keeps the documents whose every field (a dotted path into
	// the value) matches: equals the given scalar (a string, number,
	// boolean or nil; nil also matches a missing field), or meets a
	// condition built with [Gt], [Gte], [Lt], [Lte], [Between], [In],
	// [InOrNull], [Ne] or [NotNull]:
	//
	//	Filter: map[string]any{
	//		"status":    "active",
	//		"plan":      client.In("pro", "team"),
	//		"createdAt": client.Between(client.Gte("2025-01-01"), client.Lt("2025-02-01")),
	//	}
	Filter map[string]any
	// Sort orders the results by these fields, first one first, ties
	// broken by key. It is a slice because the order matters: seed's
	// `sort: { createdAt: -1 }` is []SortField{Desc("createdAt")}.
	Sort []SortField
	// Limit is the page size: default 20, at most 1000.
	Limit int
	// Cursor continues the query that returned it as NextCursor. With a
	// cursor the server uses that query's filter and sort and ignores
	// Filter and Sort here.
	Cursor string
}

// MarshalJSON encodes the options as the wire's query body, with sort as an
// object whose keys keep the order of Sort.
func (q QueryOptions) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	sep := func() {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
	}
	if q.Filter != nil {
		f, err := json.Marshal(q.Filter)
		if err != nil {
			return nil, err
		}
		b.WriteString(`"filter":`)
		b.Write(f)
	}
	if len(q.Sort) > 0 {
		sep()
		b.WriteString(`"sort":{`)
		for i, s := range q.Sort {
			if i > 0 {
				b.WriteByte(',')
			}
			k, err := json.Marshal(s.Field)
			if err != nil {
				return nil, err
			}
			b.Write(k)
			if s.Desc {
				b.WriteString(":-1")
			} else {
				b.WriteString(":1")
			}
		}
		b.WriteByte('}')
	}
	if q.Limit != 0 {
		sep()
		b.WriteString(`"limit":`)
		b.WriteString(strconv.Itoa(q.Limit))
	}
	if q.Cursor != "" {
		sep()
		c, err := json.Marshal(q.Cursor)
		if err != nil {
			return nil, err
		}
		b.WriteString(`"cursor":`)
		b.Write(c)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Item is a document: its key and its value as JSON text.
type Item struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// Decode unmarshals the item's value into dst.
func (it Item) Decode(dst any) error {
	return json.Unmarshal(it.Value, dst)
}

// QueryResult is one page of [Collection.Query].
type QueryResult struct {
	Items []Item
	// NextCursor fetches the next page through QueryOptions.Cursor; empty
	// on the last page.
	NextCursor string
}

// Query returns the documents matching q.Filter in q.Sort order, one page at
// a time, as collection.query in the seed. A cursor that was changed or
// belongs to another collection is ErrInvalidCursor.
func (col *Collection) Query(ctx context.Context, q QueryOptions) (QueryResult, error) {
	p, err := col.path("/query")
	if err != nil {
		return QueryResult{}, err
	}
	var out struct {
		Items      []Item  `json:"items"`
		NextCursor *string `json:"nextCursor"`
	}
	if err := col.c.doJSON(ctx, http.MethodPost, p, tierQuery(col.tier), q, &out); err != nil {
		return QueryResult{}, err
	}
	r := QueryResult{Items: out.Items}
	if r.Items == nil {
		r.Items = []Item{}
	}
	if out.NextCursor != nil {
		r.NextCursor = *out.NextCursor
	}
	return r, nil
}

// Count returns how many documents of the collection match filter (the
// rules of QueryOptions.Filter; nil counts them all), as POST
// /db/{collection}/count.
func (col *Collection) Count(ctx context.Context, filter map[string]any) (int64, error) {
	p, err := col.path("/count")
	if err != nil {
		return 0, err
	}
	var out struct {
		Count int64 `json:"count"`
	}
	if err := col.c.doJSON(ctx, http.MethodPost, p, tierQuery(col.tier), countBody{filter}, &out); err != nil {
		return 0, err
	}
	return out.Count, nil
}

type countBody struct {
	Filter map[string]any `json:"filter,omitempty"`
}

// Batch operation kinds.
const (
	OpSet    = "set"
	OpDelete = "delete"
)

// BatchOp is one operation of [Collection.Batch]; build it with [SetOp] or
// [DeleteOp].
type BatchOp struct {
	Op    string // OpSet or OpDelete
	Key   string
	Value any // the document for OpSet, marshalled with encoding/json
}

// SetOp stores value under key.
func SetOp(key string, value any) BatchOp { return BatchOp{Op: OpSet, Key: key, Value: value} }

// DeleteOp removes the document at key.
func DeleteOp(key string) BatchOp { return BatchOp{Op: OpDelete, Key: key} }

// MarshalJSON encodes the operation as on the wire; Value is left out of a
// delete.
func (op BatchOp) MarshalJSON() ([]byte, error) {
	if op.Op == OpDelete {
		return json.Marshal(struct {
			Op  string `json:"op"`
			Key string `json:"key"`
		}{op.Op, op.Key})
	}
	return json.Marshal(struct {
		Op    string `json:"op"`
		Key   string `json:"key"`
		Value any    `json:"value"`
	}{op.Op, op.Key, op.Value})
}

// BatchResult reports a batch: how many operations succeeded and failed, and
// one result per operation in order.
type BatchResult struct {
	Succeeded int
	Failed    int
	Results   []BatchOpResult
}

// BatchOpResult is the outcome of one batch operation.
type BatchOpResult struct {
	Key string
	Op  string
	OK  bool
	// Error says why the operation failed; nil when OK. Compare it with the
	// sentinels using errors.Is.
	Error *Error
}

// UnmarshalJSON decodes a result: a failed op carries "error" (the code)
// and "message"; an {"error","message"} object under "error" is accepted too.
func (r *BatchOpResult) UnmarshalJSON(b []byte) error {
	var w struct {
		Key     string          `json:"key"`
		Op      string          `json:"op"`
		OK      bool            `json:"ok"`
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = BatchOpResult{Key: w.Key, Op: w.Op, OK: w.OK}
	if len(w.Error) > 0 {
		e, err := errorBody(w.Error)
		if err != nil {
			return err
		}
		if e != nil && e.Message == "" {
			e.Message = w.Message
		}
		r.Error = e
	}
	if !r.OK && r.Error == nil {
		r.Error = &Error{Message: "operation failed"}
	}
	return nil
}

// Batch applies ops in order, each on its own (one failing does not undo or
// stop the others), as collection.batch in the seed. At most 500 operations;
// more is ErrInvalidRequest or ErrTooLarge from the server. The error is
// about the request as a whole; per-operation failures are in the result.
func (col *Collection) Batch(ctx context.Context, ops []BatchOp) (BatchResult, error) {
	p, err := col.path("/batch")
	if err != nil {
		return BatchResult{}, err
	}
	if ops == nil {
		ops = []BatchOp{}
	}
	in := struct {
		Ops []BatchOp `json:"ops"`
	}{ops}
	var out struct {
		Succeeded int             `json:"succeeded"`
		Failed    int             `json:"failed"`
		Results   []BatchOpResult `json:"results"`
	}
	if err := col.c.doJSON(ctx, http.MethodPost, p, tierQuery(col.tier), in, &out); err != nil {
		return BatchResult{}, err
	}
	return BatchResult{Succeeded: out.Succeeded, Failed: out.Failed, Results: out.Results}, nil
}
