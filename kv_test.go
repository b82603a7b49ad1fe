package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestKVSeed replays the seed's kv snippet call for call.
func TestKVSeed(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})

	// await kv.set('session:abc123', { userId: 'usr-xxx', plan: 'pro' }, { ttl: 3600 })
	r := do(t, srv, "PUT", "/v1/storage/kv/session:abc123", tok, `{"value":{"userId":"usr-xxx","plan":"pro"},"ttl":3600}`)
	wantStatus(t, r, http.StatusNoContent, "")

	// kv.get → '{"userId":"usr-xxx","plan":"pro"}' (always a string)
	var got struct {
		Value string `json:"value"`
		TTL   int64  `json:"ttl"`
	}
	r = do(t, srv, "GET", "/v1/storage/kv/session:abc123", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &got)
	equal(t, "value", got.Value, `{"userId":"usr-xxx","plan":"pro"}`)
	if got.TTL <= 0 || got.TTL > 3600 {
		t.Fatalf("ttl %d, want 1..3600", got.TTL)
	}

	// kv.exists → true
	r = do(t, srv, "HEAD", "/v1/storage/kv/session:abc123", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "Cpod-Ttl", r.header.Get("Cpod-Ttl"), "3600")

	// kv.set('counter:api-calls', '0'); incr → 1; incr by 5 → 6
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/counter:api-calls", tok, `{"value":"0"}`), http.StatusNoContent, "")
	var n struct{ Value int64 }
	r = do(t, srv, "POST", "/v1/storage/kv/counter:api-calls", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &n)
	equal(t, "incr", n.Value, 1)
	r = do(t, srv, "POST", "/v1/storage/kv/counter:api-calls", tok, `{"by":5}`)
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &n)
	equal(t, "incr by 5", n.Value, 6)

	// kv.ttl → seconds left, <= 3600
	r = do(t, srv, "HEAD", "/v1/storage/kv/session:abc123", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	if ttl, _ := strconv.Atoi(r.header.Get("Cpod-Ttl")); ttl < 3590 || ttl > 3600 {
		t.Fatalf("Cpod-Ttl %q, want 3590..3600", r.header.Get("Cpod-Ttl"))
	}

	// kv.del; then it is gone
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/session:abc123", tok, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/session:abc123", tok, nil), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "HEAD", "/v1/storage/kv/session:abc123", tok, nil), http.StatusNotFound, "")
}

// advance lets d pass for the server: FastForward on miniredis and on the
// SQLite store, real waiting on a real Redis (keep d short).
func advance(srv *cpodtest.Server, d time.Duration) {
	if !srv.CanFastForward() {
		time.Sleep(d)
		return
	}
	srv.FastForward(d)
}

// TestKVExpiry: the ttl counts down and the key vanishes when it reaches 0.
func TestKVExpiry(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/session", tok, `{"value":"v","ttl":2}`), 204, "")
	var got struct {
		Value string
		TTL   int64
	}
	decode(t, do(t, srv, "GET", "/v1/storage/kv/session", tok, nil), &got)
	equal(t, "ttl", got.TTL, 2)
	advance(srv, 1100*time.Millisecond)
	decode(t, do(t, srv, "GET", "/v1/storage/kv/session", tok, nil), &got)
	equal(t, "ttl after 1.1s", got.TTL, 1)
	advance(srv, time.Second)
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/session", tok, nil), 404, "not_found")
	wantStatus(t, do(t, srv, "HEAD", "/v1/storage/kv/session", tok, nil), 404, "")
}

// identity is one caller of the isolation matrix.
type identity struct {
	name string
	c    cpodtest.Claims
}

// matrix is two tenants, two apps and two users, each with every scope.
func matrix(srv *cpodtest.Server, t *testing.T) []identity {
	srv.RegisterApp(t, "a", allScopes...)
	srv.RegisterApp(t, "ab", allScopes...)
	var ids []identity
	for _, tenant := range []string{"t1", "t10"} {
		for _, app := range []string{"a", "ab"} {
			for _, user := range []string{"u1", "u2"} {
				ids = append(ids, identity{tenant + "/" + app + "/" + user, cpodtest.Claims{Tenant: tenant, App: app, User: user, Scopes: allScopes}})
			}
		}
	}
	return ids
}

// visible says what the tier table promises: whether reader sees what
// writer stored in tier.
func visible(tier string, writer, reader cpodtest.Claims) bool {
	if writer.Tenant != reader.Tenant {
		return false
	}
	switch tier {
	case "private":
		return writer.App == reader.App
	case "user":
		return writer.User == reader.User
	default: // shared
		return true
	}
}

// TestKVIsolation writes as one identity and reads as every other: what the
// tier table does not promise answers exactly like a missing key.
func TestKVIsolation(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	ids := matrix(srv, t)
	writer := ids[0]
	for _, tier := range []string{"private", "user", "shared"} {
		wtok := srv.Token(writer.c)
		path := "/v1/storage/kv/iso:" + tier + "?tier=" + tier
		wantStatus(t, do(t, srv, "PUT", path, wtok, `{"value":"secret-`+tier+`"}`), http.StatusNoContent, "")
		missing := do(t, srv, "GET", "/v1/storage/kv/never-written?tier="+tier, wtok, nil)
		for _, reader := range ids {
			rtok := srv.Token(reader.c)
			get := do(t, srv, "GET", path, rtok, nil)
			head := do(t, srv, "HEAD", path, rtok, nil)
			if visible(tier, writer.c, reader.c) {
				wantStatus(t, get, http.StatusOK, "")
				wantStatus(t, head, http.StatusOK, "")
				continue
			}
			if get.status != missing.status || string(get.body) != string(missing.body) {
				t.Errorf("%s tier, reader %s: got %d %s, want exactly the missing-key answer %d %s", tier, reader.name, get.status, get.body, missing.status, missing.body)
			}
			wantStatus(t, head, http.StatusNotFound, "")
			// An increment counts from 0: the reader's location holds no
			// value (the writer's string would be 409 not_integer). Writes
			// by others never touch the writer's value.
			var n struct{ Value int64 }
			r := do(t, srv, "POST", path, rtok, nil)
			wantStatus(t, r, http.StatusOK, "")
			decode(t, r, &n)
			equal(t, "reader's own counter", n.Value, 1)
			wantStatus(t, do(t, srv, "DELETE", path, rtok, nil), http.StatusNoContent, "")
		}
		var got struct{ Value string }
		r := do(t, srv, "GET", path, wtok, nil)
		wantStatus(t, r, http.StatusOK, "")
		decode(t, r, &got)
		equal(t, tier+" value after the others' writes", got.Value, "secret-"+tier)
	}
}

// TestKVConcurrentIncr: 8 goroutines x 500 INCR = exactly 4000.
func TestKVConcurrentIncr(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				req, _ := http.NewRequest("POST", srv.URL+"/v1/storage/kv/hits", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := srv.HTTP.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", res.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var got struct{ Value string }
	r := do(t, srv, "GET", "/v1/storage/kv/hits", tok, nil)
	decode(t, r, &got)
	equal(t, "hits", got.Value, "4000")
}

func TestKVIncrSemantics(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	incr := func(key, body string) resp { return do(t, srv, "POST", "/v1/storage/kv/"+key, tok, body) }
	value := func(r resp) int64 {
		t.Helper()
		var v struct{ Value int64 }
		wantStatus(t, r, 200, "")
		decode(t, r, &v)
		return v.Value
	}
	equal(t, "missing key counts from 0", value(incr("fresh", "")), 1)
	equal(t, "by -3", value(incr("fresh", `{"by":-3}`)), -2)
	equal(t, "by 0", value(incr("fresh", `{"by":0}`)), -2)
	equal(t, "empty object", value(incr("fresh", `{}`)), -1)

	// Only Redis' canonical form of an integer counts: miniredis alone would
	// take "+5", "007" and "-0", so the engine refuses them on every backend.
	for _, v := range []string{`"abc"`, `"1.5"`, `{"a":1}`, `" 1"`, `"1 "`, `"+5"`, `"007"`, `"00"`, `"-0"`, `"-007"`, `"-"`, `""`, `"0x10"`, `"1e3"`, `"٣"`} {
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/nonint", tok, `{"value":`+v+`}`), 204, "")
		wantStatus(t, incr("nonint", ""), http.StatusConflict, "not_integer")
	}
	// The canonical forms count, at both ends of the range.
	for v, want := range map[string]int64{`"0"`: 1, `"-1"`: 0, `"10"`: 11, `"-9223372036854775808"`: -9223372036854775807, `-12`: -11} {
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/int", tok, `{"value":`+v+`}`), 204, "")
		equal(t, "incr of "+v, value(incr("int", "")), want)
	}
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/max", tok, `{"value":"9223372036854775807"}`), 204, "")
	wantStatus(t, incr("max", ""), http.StatusConflict, "not_integer")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/min", tok, `{"value":"-9223372036854775808"}`), 204, "")
	wantStatus(t, incr("min", `{"by":-1}`), http.StatusConflict, "not_integer")
	// The value stays what it was after a refused increment.
	var got struct{ Value string }
	decode(t, do(t, srv, "GET", "/v1/storage/kv/max", tok, nil), &got)
	equal(t, "max after overflow", got.Value, "9223372036854775807")
	// Large values stay exact (Lua numbers are doubles; the engine avoids them).
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/big", tok, `{"value":"9007199254740993"}`), 204, "")
	equal(t, "2^53+1 +1", value(incr("big", "")), 9007199254740994)

	// The TTL is kept by an increment.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/ttl", tok, `{"value":"5","ttl":1}`), 204, "")
	equal(t, "incr with ttl", value(incr("ttl", "")), 6)
	equal(t, "ttl kept", do(t, srv, "HEAD", "/v1/storage/kv/ttl", tok, nil).header.Get("Cpod-Ttl"), "1")
	advance(srv, 1100*time.Millisecond)
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/ttl", tok, nil), 404, "not_found")

	for _, body := range []string{`{"by":1.5}`, `{"by":"1"}`, `{"by":9223372036854775808}`, `{"by":1e3}`, `{"step":1}`, `[1]`, `{`} {
		wantStatus(t, incr("fresh", body), 400, "invalid_request")
	}
}

// TestKVValues: a JSON string is stored as-is, anything else as compact JSON;
// get always returns a string.
func TestKVValues(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	cases := []struct{ value, want string }{
		{`"hello"`, "hello"},
		{`""`, ""},
		{`"{\"a\":1}"`, `{"a":1}`},
		{`"ünïcødé ✓ \u0041"`, "ünïcødé ✓ A"},
		{`"\ud83d\ude00 \uD83D\uDE00 \\ud800"`, "😀 😀 \\ud800"}, // pairs; an escaped backslash
		{`"\ufffd"`, "\ufffd"},
		{`{"a":"\ud800"}`, `{"a":"\ud800"}`}, // JSON text is kept as written
		{`{ "b" : 1 , "a" : [ true , null ] }`, `{"b":1,"a":[true,null]}`},
		{`42`, `42`},
		{`-1.5e3`, `-1.5e3`},
		{`true`, `true`},
		{`null`, `null`},
		{`[ ]`, `[]`},
	}
	// Keys with characters that are special to Redis or URLs are plain keys.
	keys := []string{"plain", "a:b", "glob*?[x]", `back\slash`, "spa ce", "ünï", "a/b/../c", "%2e%2e", "{tag}", "}"}
	for i, tc := range cases {
		key := keys[i%len(keys)]
		path := "/v1/storage/kv/" + url.PathEscape(key)
		wantStatus(t, do(t, srv, "PUT", path, tok, `{"value":`+tc.value+`}`), 204, "")
		var got struct {
			Value *string `json:"value"`
			TTL   int64   `json:"ttl"`
		}
		r := do(t, srv, "GET", path, tok, nil)
		wantStatus(t, r, 200, "")
		decode(t, r, &got)
		if got.Value == nil || *got.Value != tc.want {
			t.Errorf("key %q value %s: got %s, want %q", key, tc.value, r.body, tc.want)
		}
		equal(t, "ttl without expiry", got.TTL, -1)
	}
	// A set without ttl removes an earlier ttl, as Redis SET does.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/x", tok, `{"value":1,"ttl":10}`), 204, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/x", tok, `{"value":2}`), 204, "")
	equal(t, "ttl after plain set", do(t, srv, "HEAD", "/v1/storage/kv/x", tok, nil).header.Get("Cpod-Ttl"), "-1")
}

// TestKVBadInput: the contract's status and code, and nothing stored.
func TestKVBadInput(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Limits.MaxKVValueSize = 1024 }))
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	big := strings.Repeat("x", 1025)
	cases := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"ttl 0", "/v1/storage/kv/k", `{"value":"v","ttl":0}`, 400, "invalid_request"},
		{"ttl negative", "/v1/storage/kv/k", `{"value":"v","ttl":-5}`, 400, "invalid_request"},
		{"ttl over a year", "/v1/storage/kv/k", `{"value":"v","ttl":31536001}`, 400, "invalid_request"},
		{"ttl fraction", "/v1/storage/kv/k", `{"value":"v","ttl":1.5}`, 400, "invalid_request"},
		{"ttl string", "/v1/storage/kv/k", `{"value":"v","ttl":"60"}`, 400, "invalid_request"},
		{"ttl huge", "/v1/storage/kv/k", `{"value":"v","ttl":1e300}`, 400, "invalid_request"},
		{"513-byte key", "/v1/storage/kv/" + strings.Repeat("k", 513), `{"value":"v"}`, 400, "invalid_request"},
		{"empty key", "/v1/storage/kv/", `{"value":"v"}`, 400, "invalid_request"},
		{"NUL in key", "/v1/storage/kv/a%00b", `{"value":"v"}`, 400, "invalid_request"},
		{"newline in key", "/v1/storage/kv/a%0Ab", `{"value":"v"}`, 400, "invalid_request"},
		{"DEL in key", "/v1/storage/kv/a%7Fb", `{"value":"v"}`, 400, "invalid_request"},
		{"invalid UTF-8 key", "/v1/storage/kv/a%FFb", `{"value":"v"}`, 400, "invalid_request"},
		{"value over the limit", "/v1/storage/kv/k", `{"value":"` + big + `"}`, 413, "too_large"},
		{"body far over the limit", "/v1/storage/kv/k", `{"value":"` + strings.Repeat(big, 8) + `"}`, 413, "too_large"},
		{"malformed JSON", "/v1/storage/kv/k", `{"value":`, 400, "invalid_request"},
		{"no value", "/v1/storage/kv/k", `{"ttl":5}`, 400, "invalid_request"},
		{"unknown field", "/v1/storage/kv/k", `{"value":"v","expire":5}`, 400, "invalid_request"},
		{"case variant field", "/v1/storage/kv/k", `{"VALUE":"v"}`, 400, "invalid_request"},
		{"repeated field", "/v1/storage/kv/k", `{"value":"v","value":"w"}`, 400, "invalid_request"},
		{"two values", "/v1/storage/kv/k", `{"value":"v"} {"value":"w"}`, 400, "invalid_request"},
		{"not an object", "/v1/storage/kv/k", `"v"`, 400, "invalid_request"},
		{"empty body", "/v1/storage/kv/k", ``, 400, "invalid_request"},
		{"unknown tier", "/v1/storage/kv/k?tier=public", `{"value":"v"}`, 400, "invalid_request"},
		{"empty tier", "/v1/storage/kv/k?tier=", `{"value":"v"}`, 400, "invalid_request"},
		{"tier without =", "/v1/storage/kv/k?tier", `{"value":"v"}`, 400, "invalid_request"},
		// A string value is stored as the text it spells; text no UTF-8
		// string can hold is refused, never turned into U+FFFD.
		{"lone high surrogate", "/v1/storage/kv/k", `{"value":"a\ud800b"}`, 400, "invalid_request"},
		{"lone high surrogate at the end", "/v1/storage/kv/k", `{"value":"a\uD800"}`, 400, "invalid_request"},
		{"high surrogate then not a low one", "/v1/storage/kv/k", `{"value":"\ud800\u0041"}`, 400, "invalid_request"},
		{"two high surrogates", "/v1/storage/kv/k", `{"value":"\ud800\ud800"}`, 400, "invalid_request"},
		{"lone low surrogate", "/v1/storage/kv/k", `{"value":"\udc00"}`, 400, "invalid_request"},
		{"invalid UTF-8 in a string", "/v1/storage/kv/k", "{\"value\":\"a\xffb\"}", 400, "invalid_request"},
		{"invalid UTF-8 in other JSON", "/v1/storage/kv/k", "{\"value\":{\"a\":\"\xc3\"}}", 400, "invalid_request"},
		{"ifValue with a lone surrogate", "/v1/storage/kv/k", `{"value":"v","ifValue":"\ud800"}`, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Calls().Redis
			wantStatus(t, do(t, srv, "PUT", tc.path, tok, tc.body), tc.status, tc.code)
			equal(t, "redis calls", srv.Calls().Redis, before)
		})
	}
	// Nothing was stored under any of those keys.
	if keys := kvLocations(t, srv); len(keys) != 0 {
		t.Fatalf("keys stored by refused requests: %q", keys)
	}
}

// TestKVIncrRetryCountsOnce loses the reply to the first increment on its way
// back (the connection drops after Redis ran the command). go-redis resends
// the command on a new connection; the engine's nonce makes the resend return
// the first result instead of counting again.
func TestKVIncrRetryCountsOnce(t *testing.T) {
	t.Parallel()
	mini := miniredis.RunT(t)
	p := &dropProxy{target: mini.Addr(), match: []byte("evalsha")}
	addr := p.start(t)
	srv := cpodtest.NewServer(t, cpodtest.WithRedisURL("redis://"+addr+"/0"))
	redisOnly(t, srv, "go-redis resends a command whose reply was lost; SQLite runs in process, a statement commits and answers or does neither")
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	// Load the script first so that the engine's first EVALSHA runs it.
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/warmup", tok, nil), 200, "")
	p.arm()

	var n struct{ Value int64 }
	r := do(t, srv, "POST", "/v1/storage/kv/c", tok, nil)
	wantStatus(t, r, 200, "")
	decode(t, r, &n)
	if !p.dropped.Load() {
		t.Fatal("the proxy dropped no reply: the test proves nothing")
	}
	if sent := p.seen.Load(); sent < 2 {
		t.Fatalf("EVALSHA sent %d times, want a resend", sent)
	}
	equal(t, "incr result", n.Value, 1)
	var got struct{ Value string }
	decode(t, do(t, srv, "GET", "/v1/storage/kv/c", tok, nil), &got)
	equal(t, "stored counter", got.Value, "1")
}

// dropProxy forwards TCP to target; once armed, it closes the client side
// of the connection instead of forwarding the reply to the first request
// that contains match.
type dropProxy struct {
	target  string
	match   []byte
	armed   atomic.Bool
	dropped atomic.Bool
	seen    atomic.Int64
}

func (p *dropProxy) arm() { p.seen.Store(0); p.armed.Store(true) }

func (p *dropProxy) start(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return ln.Addr().String()
}

func (p *dropProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	var dropNext atomic.Bool
	go func() {
		// Replies: forwarded, except the first one after an armed hit.
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if dropNext.Load() && p.dropped.CompareAndSwap(false, true) {
				return // Redis ran it; the client never hears back
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if p.armed.Load() && bytes.Contains(bytes.ToLower(buf[:n]), p.match) {
			p.seen.Add(1)
			if !p.dropped.Load() {
				dropNext.Store(true)
			}
		}
		if _, err := up.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestKVIncrFootprint: increments leave a bounded footprint in Redis. 2,000
// increments of one counter leave the counter and at most two nonce keys,
// holding at most 2*IncrNoncesPerGeneration nonces whatever the rate; once
// the counter is idle for longer than the retry window (BackendTimeout plus
// a second) only the counter is left.
func TestKVIncrFootprint(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = 500 * time.Millisecond }))
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes, TTL: time.Hour})
	const total, workers = 2000, 4
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range total / workers {
				if r := do(t, srv, "POST", "/v1/storage/kv/counter", tok, nil); r.status != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	equal(t, "failed increments", failed.Load(), 0)
	var got struct{ Value string }
	decode(t, do(t, srv, "GET", "/v1/storage/kv/counter", tok, nil), &got)
	equal(t, "counter", got.Value, strconv.Itoa(total))

	ctx := context.Background()
	keys := srv.RedisKeys(t)
	if len(keys) > 3 {
		t.Fatalf("%d increments left %d keys, want the counter and at most 2 nonce keys: %q...", total, len(keys), keys[:3])
	}
	var nonces, bytes int64
	for _, k := range keys {
		if strings.HasSuffix(k, "}") {
			continue // the counter
		}
		nonces += srv.Redis.HLen(ctx, k).Val()
		if srv.Miniredis() == nil {
			bytes += srv.Redis.MemoryUsage(ctx, k).Val()
		}
	}
	if nonces > 2*storage.IncrNoncesPerGeneration {
		t.Fatalf("%d nonces kept, want at most %d", nonces, 2*storage.IncrNoncesPerGeneration)
	}
	t.Logf("%d increments: %d keys, %d nonces, %d bytes of nonce keys (MEMORY USAGE, real Redis only)", total, len(keys), nonces, bytes)

	advance(srv, 1600*time.Millisecond)
	keys = srv.RedisKeys(t)
	if len(keys) != 1 || !strings.HasSuffix(keys[0], "}") {
		t.Fatalf("after the retry window: keys %q, want the counter alone", keys)
	}
}

// TestKVIncrNonceRemembered replays one increment's nonce, as go-redis does
// when the reply is lost: it returns the first result without counting,
// also after a full generation of other increments moved it to the previous
// nonce hash. The memory is bounded: after two generations it is forgotten.
func TestKVIncrNonceRemembered(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/c", tok, `{"value":0}`), 204, "")
	keys := srv.RedisKeys(t)
	if len(keys) != 1 {
		t.Fatalf("keys %q", keys)
	}
	ctx, k := context.Background(), keys[0]
	incr := func(nonce string) int64 {
		t.Helper()
		n, err := storage.IncrWithNonce(ctx, srv.Engine, k, nonce)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	equal(t, "first", incr("first"), 1)
	equal(t, "replay at once", incr("first"), 1)
	gen := storage.IncrNoncesPerGeneration
	for i := range gen + 10 {
		incr(fmt.Sprintf("other-%d", i))
	}
	want := int64(1 + gen + 10)
	equal(t, "replay a generation later", incr("first"), 1)
	equal(t, "counter after the replays", incr("next"), want+1)
	for i := range 2 * gen {
		incr(fmt.Sprintf("more-%d", i))
	}
	equal(t, "replay two generations later counts", incr("first"), want+1+int64(2*gen)+1)
}
