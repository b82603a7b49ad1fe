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

// Set stores value, marshalled with encoding/json, under key, replacing any
// document there. A json.RawMessage is sent as it is.
func (col *Collection) Set(ctx context.Context, key string, value any) error {
	p, err := col.docPath(key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("cpod storage: encoding document %q: %w", key, err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	resp, err := col.c.do(ctx, request{
		method: http.MethodPut,
		path:   p,
		query:  tierQuery(col.tier),
		header: h,
		body:   bytes.NewReader(b),
	})
	if err != nil {
		return err
	}
	drainClose(resp.Body)
	return nil
}

// Get decodes the document at key into dst, as json.Unmarshal does, and
// reports whether it exists: a missing document is found == false with a nil
// error (the seed's null), and leaves dst alone. dst may be nil to test
// existence only, or a *json.RawMessage to keep the JSON text.
func (col *Collection) Get(ctx context.Context, key string, dst any) (found bool, err error) {
	p, err := col.docPath(key)
	if err != nil {
		return false, err
	}
	var out Item
	err = col.c.doJSON(ctx, http.MethodGet, p, tierQuery(col.tier), nil, &out)
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

// Delete removes the document at key. Deleting a missing document is not an
// error.
func (col *Collection) Delete(ctx context.Context, key string) error {
	p, err := col.docPath(key)
	if err != nil {
		return err
	}
	return col.c.doJSON(ctx, http.MethodDelete, p, tierQuery(col.tier), nil, nil)
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

// QueryOptions select, order and page documents in [Collection.Query].
type QueryOptions struct {
	// Filter keeps the documents whose every field (a dotted path into
	// the value) equals the given scalar: a string, number, boolean or nil.
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
