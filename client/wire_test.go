package client_test

// Tests of the client's side of the wire contract (URLs, escaping, bodies,
// error decoding) against a recording net/http/httptest server. The
// behaviour of the real engine is tested against cpodtest in the other
// _test files.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpod/storage/client"
)

// seen is one request as the server received it.
type seen struct {
	Method        string
	Path          string // escaped, as on the request line
	Query         string
	Header        http.Header
	Body          string
	ContentLength int64
	Chunked       bool
}

// recorder is a fake API: it records requests and answers each with reply.
type recorder struct {
	*httptest.Server
	mu    sync.Mutex
	reqs  []seen
	reply func(w http.ResponseWriter, r *http.Request)
}

func newRecorder(t *testing.T, reply func(w http.ResponseWriter, r *http.Request)) *recorder {
	t.Helper()
	rec := &recorder{reply: reply}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seen{
			Method:        r.Method,
			Path:          r.URL.EscapedPath(),
			Query:         r.URL.RawQuery,
			Header:        r.Header.Clone(),
			Body:          string(b),
			ContentLength: r.ContentLength,
			Chunked:       len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked",
		})
		rec.mu.Unlock()
		if rec.reply != nil {
			rec.reply(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// last returns the last request received.
func (rec *recorder) last(t *testing.T) seen {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	return rec.reqs[len(rec.reqs)-1]
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

// jsonReply answers every request with status and body.
func jsonReply(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func newClient(t *testing.T, base string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(base, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", base, err)
	}
	return c
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, base := range []string{
		"",
		"api.example.com",
		"ftp://api.example.com",
		"http://",
		"http://api.example.com/?x=1",
		"http://api.example.com/#frag",
		"http://user:pw@api.example.com",
		"http://[::1",
	} {
		if _, err := client.New(base); err == nil {
			t.Errorf("New(%q) succeeded, want an error", base)
		}
	}
}

func TestBaseURLPrefixAndToken(t *testing.T) {
	rec := newRecorder(t, nil)
	for _, base := range []string{rec.URL + "/storage-api", rec.URL + "/storage-api/"} {
		c := newClient(t, base, client.WithToken("tok-1"))
		if err := c.Storage.KV.Del(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
		got := rec.last(t)
		if got.Path != "/storage-api/v1/storage/kv/k" {
			t.Errorf("base %q: path = %q, want /storage-api/v1/storage/kv/k", base, got.Path)
		}
		if a := got.Header.Get("Authorization"); a != "Bearer tok-1" {
			t.Errorf("Authorization = %q, want Bearer tok-1", a)
		}
	}
}

func TestNoTokenSendsNoAuthorization(t *testing.T) {
	rec := newRecorder(t, nil)
	c := newClient(t, rec.URL)
	if err := c.Storage.KV.Del(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if a, ok := rec.last(t).Header["Authorization"]; ok {
		t.Errorf("Authorization sent without a token: %q", a)
	}
}

func TestTokenSourceIsAskedEveryCall(t *testing.T) {
	rec := newRecorder(t, nil)
	var mu sync.Mutex
	n := 0
	c := newClient(t, rec.URL, client.WithTokenSource(func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		return "tok-" + string(rune('0'+n)), nil
	}))
	ctx := context.Background()
	for want := 1; want <= 3; want++ {
		if err := c.Storage.KV.Del(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if a, w := rec.last(t).Header.Get("Authorization"), "Bearer tok-"+string(rune('0'+want)); a != w {
			t.Errorf("call %d: Authorization = %q, want %q", want, a, w)
		}
	}
}

func TestTokenSourceErrorStopsTheCall(t *testing.T) {
	rec := newRecorder(t, nil)
	boom := errors.New("refresh failed")
	c := newClient(t, rec.URL, client.WithTokenSource(func(context.Context) (string, error) { return "", boom }))
	err := c.Storage.KV.Del(context.Background(), "k")
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap %v", err, boom)
	}
	if rec.count() != 0 {
		t.Errorf("%d requests sent despite the token error", rec.count())
	}
}

func TestFromEnv(t *testing.T) {
	rec := newRecorder(t, nil)
	t.Setenv(client.EnvAPIURL, rec.URL+"/prefix")
	t.Setenv(client.EnvToken, "env-token")
	c, err := client.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Storage.KV.Del(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	got := rec.last(t)
	if got.Path != "/prefix/v1/storage/kv/k" || got.Header.Get("Authorization") != "Bearer env-token" {
		t.Errorf("got %s with Authorization %q", got.Path, got.Header.Get("Authorization"))
	}

	// An option given to FromEnv replaces CPOD_TOKEN.
	c, err = client.FromEnv(client.WithToken("opt-token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Storage.KV.Del(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if a := rec.last(t).Header.Get("Authorization"); a != "Bearer opt-token" {
		t.Errorf("Authorization = %q, want Bearer opt-token", a)
	}

	t.Setenv(client.EnvAPIURL, "")
	if _, err := client.FromEnv(); err == nil || !strings.Contains(err.Error(), "CPOD_API_URL") {
		t.Errorf("FromEnv without CPOD_API_URL: err = %v, want one naming the variable", err)
	}
}

func TestWithHTTPClientIsUsed(t *testing.T) {
	rec := newRecorder(t, nil)
	var used bool
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := newClient(t, rec.URL, client.WithHTTPClient(hc))
	if err := c.Storage.KV.Del(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if !used {
		t.Error("the *http.Client given to WithHTTPClient was not used")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestEscaping(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"key":"x","value":null}`))
	c := newClient(t, rec.URL)
	ctx := context.Background()
	col := c.Storage.DB.Collection("notes.v1", nil)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"file segments", func() error { _, err := c.Storage.Files.Read(ctx, "a b/c?d#e/%x/ü.txt", nil); return err },
			"/v1/storage/files/a%20b/c%3Fd%23e/%25x/%C3%BC.txt"},
		{"file dot segment", func() error { _, err := c.Storage.Files.Read(ctx, "a/../b", nil); return err },
			"/v1/storage/files/a/%2E%2E/b"},
		{"kv key with slash", func() error { _, _, err := c.Storage.KV.Get(ctx, "session/abc def"); return err },
			"/v1/storage/kv/session%2Fabc%20def"},
		{"kv key dot-dot", func() error { _, _, err := c.Storage.KV.Get(ctx, ".."); return err },
			"/v1/storage/kv/%2E%2E"},
		{"kv key with ..", func() error { _, _, err := c.Storage.KV.Get(ctx, "a/../b"); return err },
			"/v1/storage/kv/a%2F..%2Fb"},
		{"doc key", func() error { _, err := col.Get(ctx, "user:1/x?y", nil); return err },
			"/v1/storage/db/notes.v1/user:1%2Fx%3Fy"},
		{"doc key dot", func() error { _, err := col.Get(ctx, ".", nil); return err },
			"/v1/storage/db/notes.v1/%2E"},
	}
	for _, tc := range tests {
		if err := tc.call(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := rec.last(t).Path; got != tc.want {
			t.Errorf("%s: path = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMalformedPathsRejectedLocally(t *testing.T) {
	rec := newRecorder(t, nil)
	c := newClient(t, rec.URL)
	ctx := context.Background()
	calls := map[string]func() error{
		"empty path":      func() error { _, err := c.Storage.Files.Read(ctx, "", nil); return err },
		"leading slash":   func() error { return c.Storage.Files.Delete(ctx, "/a", nil) },
		"trailing slash":  func() error { _, err := c.Storage.Files.Write(ctx, "a/", strings.NewReader("x"), nil); return err },
		"double slash":    func() error { _, err := c.Storage.Files.URL(ctx, "a//b", nil); return err },
		"empty kv key":    func() error { return c.Storage.KV.Set(ctx, "", "v", nil) },
		"empty doc key":   func() error { return c.Storage.DB.Collection("c", nil).Set(ctx, "", 1) },
		"empty coll name": func() error { _, err := c.Storage.DB.Collection("", nil).Query(ctx, client.QueryOptions{}); return err },
		"negative offset": func() error {
			_, err := c.Storage.Files.Read(ctx, "a", &client.ReadOptions{Offset: -1})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		var e *client.Error
		if !errors.As(err, &e) || !errors.Is(err, client.ErrInvalidRequest) || e.Status != 0 {
			t.Errorf("%s: err = %#v, want a local ErrInvalidRequest (Status 0)", name, err)
		}
	}
	if n := rec.count(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestTierQuery(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"items":[],"nextCursor":null}`))
	c := newClient(t, rec.URL)
	ctx := context.Background()
	if _, err := c.Storage.Files.List(ctx, "", nil); err != nil {
		t.Fatal(err)
	}
	if q := rec.last(t).Query; q != "" {
		t.Errorf("default tier sent query %q, want none", q)
	}
	if _, err := c.Storage.DB.Collection("c", &client.CollectionOptions{Tier: client.TierShared}).Query(ctx, client.QueryOptions{}); err != nil {
		t.Fatal(err)
	}
	if q := rec.last(t).Query; q != "tier=shared" {
		t.Errorf("query = %q, want tier=shared", q)
	}
	if err := c.Storage.KV.WithTier(client.TierUser).Del(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if q := rec.last(t).Query; q != "tier=user" {
		t.Errorf("query = %q, want tier=user", q)
	}
	if err := c.Storage.KV.Del(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if q := rec.last(t).Query; q != "" {
		t.Errorf("WithTier changed the receiver: query = %q", q)
	}
}

// TestUsageWire: Usage is GET /v1/storage/usage with the tier in the query
// (none for the default) and an Accept of JSON, and decodes the three
// primitives' figures.
func TestUsageWire(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"files":{"bytes":17,"count":1},"documents":{"bytes":40,"count":2},"kv":{"bytes":5,"count":3}}`))
	c := newClient(t, rec.URL, client.WithToken("tok"))
	ctx := context.Background()
	for _, tc := range []struct {
		tier  client.Tier
		query string
	}{{"", ""}, {client.TierPrivate, "tier=private"}, {client.TierUser, "tier=user"}, {client.TierShared, "tier=shared"}} {
		u, err := c.Usage(ctx, tc.tier)
		if err != nil {
			t.Fatalf("Usage(%q): %v", tc.tier, err)
		}
		want := client.Usage{
			Files:     client.UsageFigures{Bytes: 17, Count: 1},
			Documents: client.UsageFigures{Bytes: 40, Count: 2},
			KV:        client.UsageFigures{Bytes: 5, Count: 3},
		}
		if u != want {
			t.Errorf("Usage(%q) = %+v, want %+v", tc.tier, u, want)
		}
		r := rec.last(t)
		if r.Method != "GET" || r.Path != "/v1/storage/usage" || r.Query != tc.query || r.Body != "" {
			t.Errorf("Usage(%q) sent %s %s?%s %q, want GET /v1/storage/usage?%s", tc.tier, r.Method, r.Path, r.Query, r.Body, tc.query)
		}
		if a := r.Header.Get("Accept"); a != "application/json" {
			t.Errorf("Accept = %q", a)
		}
		if a := r.Header.Get("Authorization"); a != "Bearer tok" {
			t.Errorf("Authorization = %q", a)
		}
	}
}

// TestQuotaExceededIsNotInsufficientStorage: both are 507; only the code
// tells a tenant over its quota from a server out of space, and a 507
// without a contract body (a proxy's) is neither.
func TestQuotaExceededIsNotInsufficientStorage(t *testing.T) {
	ctx := context.Background()
	rec := newRecorder(t, jsonReply(507, `{"error":"quota_exceeded","message":"over the quota files.bytes"}`))
	err := newClient(t, rec.URL).Storage.KV.Set(ctx, "k", "v", nil)
	var e *client.Error
	if !errors.As(err, &e) || !errors.Is(err, client.ErrQuotaExceeded) || errors.Is(err, client.ErrInsufficientStorage) {
		t.Fatalf("quota_exceeded: %v", err)
	}
	if e.Status != 507 || e.RetryAfter != 0 {
		t.Errorf("quota_exceeded: status %d RetryAfter %v, want 507 and none", e.Status, e.RetryAfter)
	}
	rec = newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "disk quota exceeded", http.StatusInsufficientStorage)
	})
	err = newClient(t, rec.URL).Storage.KV.Set(ctx, "k", "v", nil)
	if !errors.As(err, &e) || e.Status != 507 || errors.Is(err, client.ErrQuotaExceeded) || errors.Is(err, client.ErrInsufficientStorage) {
		t.Errorf("a proxy's 507: %#v, want status 507 matching no sentinel", err)
	}
}

func TestListQuery(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"items":[{"key":"exports/a.pdf","size":3,"lastModified":"2025-01-02T03:04:05Z","etag":"\"e1\""}],"nextCursor":"c2"}`))
	c := newClient(t, rec.URL)
	l, err := c.Storage.Files.List(context.Background(), "exports/", &client.ListOptions{Limit: 50, Cursor: "c1", Tier: client.TierUser})
	if err != nil {
		t.Fatal(err)
	}
	if q := rec.last(t).Query; q != "cursor=c1&limit=50&prefix=exports%2F&tier=user" {
		t.Errorf("query = %q", q)
	}
	want := client.Entry{Key: "exports/a.pdf", Size: 3, LastModified: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), ETag: `"e1"`}
	if len(l.Items) != 1 || l.Items[0] != want || l.NextCursor != "c2" {
		t.Errorf("listing = %+v, want [%+v] next c2", l, want)
	}
}

func TestQueryBodyKeepsSortOrder(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"items":[{"key":"k1","value":{"b":1,"a":2}}],"nextCursor":null}`))
	c := newClient(t, rec.URL)
	res, err := c.Storage.DB.Collection("sessions", nil).Query(context.Background(), client.QueryOptions{
		Filter: map[string]any{"status": "active", "plan": "pro"},
		Sort:   []client.SortField{client.Desc("createdAt"), client.Asc("name"), {Field: "a.b", Desc: true}},
		Limit:  20,
		Cursor: "cur",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"filter":{"plan":"pro","status":"active"},"sort":{"createdAt":-1,"name":1,"a.b":-1},"limit":20,"cursor":"cur"}`
	got := rec.last(t)
	if got.Body != want {
		t.Errorf("body = %s\nwant   %s", got.Body, want)
	}
	if got.Method != http.MethodPost || got.Path != "/v1/storage/db/sessions/query" {
		t.Errorf("request = %s %s", got.Method, got.Path)
	}
	if len(res.Items) != 1 || res.Items[0].Key != "k1" || string(res.Items[0].Value) != `{"b":1,"a":2}` || res.NextCursor != "" {
		t.Errorf("result = %+v", res)
	}

	// An empty query sends an empty object.
	if _, err := c.Storage.DB.Collection("sessions", nil).Query(context.Background(), client.QueryOptions{}); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t).Body; b != `{}` {
		t.Errorf("empty query body = %s, want {}", b)
	}
}

func TestBatchWire(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"succeeded":1,"failed":2,"results":[
		{"key":"a","op":"set","ok":true},
		{"key":"b","op":"set","ok":false,"error":"too_large","message":"value too large"},
		{"key":"c","op":"delete","ok":false,"error":{"error":"invalid_request","message":"bad key"}}]}`))
	c := newClient(t, rec.URL)
	res, err := c.Storage.DB.Collection("cache", nil).Batch(context.Background(), []client.BatchOp{
		client.SetOp("a", map[string]any{"name": "Alice"}),
		client.SetOp("b", nil),
		client.DeleteOp("c"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ops":[{"op":"set","key":"a","value":{"name":"Alice"}},{"op":"set","key":"b","value":null},{"op":"delete","key":"c"}]}`
	if b := rec.last(t).Body; b != want {
		t.Errorf("body = %s\nwant   %s", b, want)
	}
	if res.Succeeded != 1 || res.Failed != 2 || len(res.Results) != 3 {
		t.Fatalf("result = %+v", res)
	}
	if r := res.Results[0]; !r.OK || r.Error != nil || r.Key != "a" || r.Op != "set" {
		t.Errorf("results[0] = %+v", r)
	}
	if r := res.Results[1]; r.OK || !errors.Is(r.Error, client.ErrTooLarge) || r.Error.Message != "value too large" {
		t.Errorf("results[1] = %+v, want too_large: value too large", r)
	}
	if r := res.Results[2]; r.OK || !errors.Is(r.Error, client.ErrInvalidRequest) || r.Error.Message != "bad key" {
		t.Errorf("results[2] = %+v, want invalid_request: bad key", r)
	}
}

func TestKVSetBody(t *testing.T) {
	rec := newRecorder(t, nil)
	c := newClient(t, rec.URL)
	ctx := context.Background()
	tests := []struct {
		value any
		opts  *client.KVSetOptions
		want  string
	}{
		{"0", nil, `{"value":"0"}`},
		{[]byte("raw"), nil, `{"value":"raw"}`},
		{map[string]any{"userId": "usr-xxx"}, &client.KVSetOptions{TTL: time.Hour}, `{"value":{"userId":"usr-xxx"},"ttl":3600}`},
		{json.RawMessage(`[1, 2]`), &client.KVSetOptions{TTL: 1500 * time.Millisecond}, `{"value":[1,2],"ttl":2}`},
		{42, &client.KVSetOptions{TTL: time.Millisecond}, `{"value":42,"ttl":1}`},
		{nil, &client.KVSetOptions{TTL: -time.Second}, `{"value":null,"ttl":-1}`},
	}
	for _, tc := range tests {
		if err := c.Storage.KV.Set(ctx, "k", tc.value, tc.opts); err != nil {
			t.Fatal(err)
		}
		got := rec.last(t)
		if got.Method != http.MethodPut || got.Body != tc.want || got.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Set(%#v, %+v): %s %s (%s), want body %s", tc.value, tc.opts, got.Method, got.Body, got.Header.Get("Content-Type"), tc.want)
		}
	}
}

func TestIncrAndURLBodies(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"value":6,"url":"/v1/storage/signed/x?sig=1","expiresAt":"2030-01-01T00:00:00Z"}`))
	c := newClient(t, rec.URL+"/pre")
	ctx := context.Background()
	n, err := c.Storage.KV.Incr(ctx, "counter", 5)
	if err != nil || n != 6 {
		t.Fatalf("Incr = %d, %v; want 6", n, err)
	}
	if b := rec.last(t).Body; b != `{"by":5}` {
		t.Errorf("incr body = %s", b)
	}
	u, err := c.Storage.Files.URL(ctx, "exports/report.pdf", &client.URLOptions{ExpiresIn: 90 * time.Minute, Tier: client.TierShared})
	if err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t).Body; b != `{"key":"exports/report.pdf","tier":"shared","expiresIn":5400}` {
		t.Errorf("signed-url body = %s", b)
	}
	if p := rec.last(t).Path; p != "/pre/v1/storage/signed-urls" {
		t.Errorf("signed-url path = %s", p)
	}
	if want := rec.URL + "/v1/storage/signed/x?sig=1"; u.URL != want || !u.ExpiresAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("URL = %+v, want %s at 2030-01-01", u, want)
	}
	if _, err := c.Storage.Files.URL(ctx, "a", nil); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t).Body; b != `{"key":"a"}` {
		t.Errorf("default signed-url body = %s", b)
	}
}

func TestWriteSizeAndChunking(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"key":"f","tier":"private","size":5,"contentType":"text/plain","etag":"\"e\"","lastModified":1735787045}`))
	c := newClient(t, rec.URL)
	ctx := context.Background()

	// An opaque reader of unknown size goes chunked, and is not closed.
	r := &closeSpy{Reader: strings.NewReader("hello")}
	res, err := c.Storage.Files.Write(ctx, "f", r, &client.WriteOptions{ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	got := rec.last(t)
	if !got.Chunked || got.Body != "hello" || got.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("unknown size: chunked=%v body=%q type=%q", got.Chunked, got.Body, got.Header.Get("Content-Type"))
	}
	if r.closed {
		t.Error("Write closed the caller's reader")
	}
	want := client.WriteResult{Key: "f", Tier: client.TierPrivate, Size: 5, ContentType: "text/plain", ETag: `"e"`, LastModified: time.Unix(1735787045, 0).UTC()}
	if res != want {
		t.Errorf("result = %+v, want %+v", res, want)
	}

	// With Size, Content-Length is sent.
	if _, err := c.Storage.Files.Write(ctx, "f", &closeSpy{Reader: strings.NewReader("hello")}, &client.WriteOptions{Size: 5}); err != nil {
		t.Fatal(err)
	}
	got = rec.last(t)
	if got.Chunked || got.ContentLength != 5 || got.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("known size: chunked=%v length=%d type=%q", got.Chunked, got.ContentLength, got.Header.Get("Content-Type"))
	}

	// A bytes.Reader's length is known without Size; nil is an empty file.
	if _, err := c.Storage.Files.Write(ctx, "f", bytes.NewReader([]byte("abc")), nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got.Chunked || got.ContentLength != 3 {
		t.Errorf("bytes.Reader: chunked=%v length=%d", got.Chunked, got.ContentLength)
	}
	if _, err := c.Storage.Files.Write(ctx, "f", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got.Body != "" || got.ContentLength != 0 || got.Method != http.MethodPut {
		t.Errorf("nil body: %s length=%d body=%q", got.Method, got.ContentLength, got.Body)
	}
}

type closeSpy struct {
	io.Reader
	closed bool
}

func (c *closeSpy) Close() error { c.closed = true; return nil }

func TestReadRangeAndMetadata(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("ETag", `"abc"`)
		w.Header().Set("Last-Modified", "Thu, 02 Jan 2025 03:04:05 GMT")
		w.Header().Set("Content-Length", "4")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "ello")
	})
	c := newClient(t, rec.URL)
	ctx := context.Background()
	obj, err := c.Storage.Files.Read(ctx, "f", &client.ReadOptions{Offset: 1, Length: 4, Tier: client.TierUser})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := obj.Close(); err != nil {
		t.Fatal(err)
	}
	got := rec.last(t)
	if r := got.Header.Get("Range"); r != "bytes=1-4" || got.Query != "tier=user" {
		t.Errorf("Range = %q query = %q", r, got.Query)
	}
	if string(b) != "ello" || obj.ContentType != "text/plain" || obj.ETag != `"abc"` || obj.Size != 4 ||
		!obj.LastModified.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("object = %q %+v", b, obj)
	}
	for _, tc := range []struct {
		opts *client.ReadOptions
		want string
	}{
		{&client.ReadOptions{Offset: 10}, "bytes=10-"},
		{&client.ReadOptions{Length: 10}, "bytes=0-9"},
		{nil, ""},
	} {
		obj, err := c.Storage.Files.Read(ctx, "f", tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		obj.Close()
		if r := rec.last(t).Header.Get("Range"); r != tc.want {
			t.Errorf("Read(%+v): Range = %q, want %q", tc.opts, r, tc.want)
		}
	}
}

// allCodes pairs every contract error code with its status and sentinel.
var allCodes = []struct {
	code     string
	status   int
	sentinel error
}{
	{"invalid_request", 400, client.ErrInvalidRequest},
	{"invalid_token", 401, client.ErrInvalidToken},
	{"invalid_scope", 403, client.ErrInvalidScope},
	{"insufficient_scope", 403, client.ErrInsufficientScope},
	{"user_required", 403, client.ErrUserRequired},
	{"not_found", 404, client.ErrNotFound},
	{"conflict", 409, client.ErrConflict},
	{"too_large", 413, client.ErrTooLarge},
	{"invalid_cursor", 400, client.ErrInvalidCursor},
	{"not_integer", 409, client.ErrNotInteger},
	{"expired", 403, client.ErrExpired},
	{"invalid_signature", 403, client.ErrInvalidSignature},
	{"backend_unavailable", 503, client.ErrBackendUnavailable},
	{"internal", 500, client.ErrInternal},
	{"insufficient_storage", 507, client.ErrInsufficientStorage},
	{"quota_exceeded", 507, client.ErrQuotaExceeded},
}

func TestEveryErrorCodeMatchesItsSentinel(t *testing.T) {
	for _, tc := range allCodes {
		rec := newRecorder(t, jsonReply(tc.status, `{"error":"`+tc.code+`","message":"because"}`))
		c := newClient(t, rec.URL)
		err := c.Storage.KV.Set(context.Background(), "k", "v", nil)
		var e *client.Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: err = %v, want *client.Error", tc.code, err)
		}
		if e.Status != tc.status || e.Code != tc.code || e.Message != "because" {
			t.Errorf("%s: got %+v", tc.code, e)
		}
		if !errors.Is(err, tc.sentinel) {
			t.Errorf("%s: errors.Is(err, its sentinel) is false", tc.code)
		}
		for _, other := range allCodes {
			if other.code != tc.code && errors.Is(err, other.sentinel) {
				t.Errorf("%s: errors.Is(err, %s sentinel) is true", tc.code, other.code)
			}
		}
		if s := err.Error(); !strings.Contains(s, tc.code) || !strings.Contains(s, "because") {
			t.Errorf("%s: Error() = %q, want code and message", tc.code, s)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		jsonReply(503, `{"error":"backend_unavailable","message":"try later"}`)(w, r)
	})
	c := newClient(t, rec.URL)
	_, _, err := c.Storage.KV.Get(context.Background(), "k")
	var e *client.Error
	if !errors.As(err, &e) || e.RetryAfter != 7*time.Second || !errors.Is(err, client.ErrBackendUnavailable) {
		t.Errorf("err = %#v, want backend_unavailable with RetryAfter 7s", err)
	}
}

func TestNonContractErrorBody(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway from the proxy", http.StatusBadGateway)
	})
	c := newClient(t, rec.URL)
	err := c.Storage.KV.Del(context.Background(), "k")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 502 || e.Code != "" || e.Message != "bad gateway from the proxy" {
		t.Fatalf("err = %#v", err)
	}
	for _, tc := range allCodes {
		if errors.Is(err, tc.sentinel) {
			t.Errorf("a code-less error matches %s", tc.code)
		}
	}
	if s := err.Error(); s != "cpod storage: 502 Bad Gateway: bad gateway from the proxy" {
		t.Errorf("Error() = %q", s)
	}
}

// HEAD errors have no body: the code comes from WWW-Authenticate or the
// status.
func TestHeadErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		header string
		want   error
	}{
		{403, `Bearer error="insufficient_scope", error_description="x"`, client.ErrInsufficientScope},
		{403, `Bearer realm="cpod", error="user_required"`, client.ErrUserRequired},
		{401, `Bearer error="invalid_token"`, client.ErrInvalidToken},
		{401, ``, client.ErrInvalidToken},
		{400, ``, client.ErrInvalidRequest},
		{503, ``, client.ErrBackendUnavailable},
		{500, ``, client.ErrInternal},
	} {
		rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
			if tc.header != "" {
				w.Header().Set("WWW-Authenticate", tc.header)
			}
			jsonReply(tc.status, `{"error":"ignored","message":"HEAD drops this"}`)(w, r)
		})
		c := newClient(t, rec.URL)
		_, err := c.Storage.KV.Exists(context.Background(), "k")
		if !errors.Is(err, tc.want) {
			t.Errorf("HEAD %d %q: err = %v, want %v", tc.status, tc.header, err, tc.want)
		}
		_, err = c.Storage.KV.TTL(context.Background(), "k")
		if !errors.Is(err, tc.want) {
			t.Errorf("TTL after HEAD %d %q: err = %v, want %v", tc.status, tc.header, err, tc.want)
		}
	}
}

func TestKVHeadResults(t *testing.T) {
	ttl := "-1"
	status := 200
	code := ""
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cpod-Ttl", ttl)
		if code != "" {
			w.Header().Set("Cpod-Error", code)
		}
		w.WriteHeader(status)
	})
	c := newClient(t, rec.URL)
	ctx := context.Background()
	if d, err := c.Storage.KV.TTL(ctx, "k"); err != nil || d != client.NoExpiry {
		t.Errorf("TTL = %v, %v; want NoExpiry", d, err)
	}
	ttl = "42"
	if d, err := c.Storage.KV.TTL(ctx, "k"); err != nil || d != 42*time.Second {
		t.Errorf("TTL = %v, %v; want 42s", d, err)
	}
	if ok, err := c.Storage.KV.Exists(ctx, "k"); err != nil || !ok {
		t.Errorf("Exists = %v, %v; want true", ok, err)
	}
	if rec.last(t).Method != http.MethodHead {
		t.Errorf("Exists sent %s, want HEAD", rec.last(t).Method)
	}
	ttl = "soon"
	if _, err := c.Storage.KV.TTL(ctx, "k"); err == nil {
		t.Error("TTL accepted a malformed Cpod-Ttl header")
	}
	status, code = 404, "not_found"
	if ok, err := c.Storage.KV.Exists(ctx, "k"); err != nil || ok {
		t.Errorf("Exists on 404 not_found = %v, %v; want false, nil", ok, err)
	}
	if _, err := c.Storage.KV.TTL(ctx, "k"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("TTL on 404 not_found: err = %v, want ErrNotFound", err)
	}
	// A HEAD 404 without the engine's code is not "missing": a wrong URL,
	// or a proxy.
	for _, code = range []string{"", "unknown_endpoint"} {
		if ok, err := c.Storage.KV.Exists(ctx, "k"); err == nil || ok || errors.Is(err, client.ErrNotFound) {
			t.Errorf("Exists on 404 with Cpod-Error %q = %v, %v; want an error that is not ErrNotFound", code, ok, err)
		}
	}
}

func TestCheckResponse(t *testing.T) {
	rec := newRecorder(t, jsonReply(403, `{"error":"expired","message":"signed URL expired"}`))
	resp, err := http.Get(rec.URL + "/signed")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := client.CheckResponse(resp); !errors.Is(err, client.ErrExpired) {
		t.Errorf("CheckResponse = %v, want ErrExpired", err)
	}
	ok := &http.Response{StatusCode: 204, Body: http.NoBody}
	if err := client.CheckResponse(ok); err != nil {
		t.Errorf("CheckResponse(204) = %v, want nil", err)
	}
}

func TestContextCancel(t *testing.T) {
	block := make(chan struct{})
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	defer close(block)
	c := newClient(t, rec.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := c.Storage.KV.Get(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}
