package storage_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/cpodtest"
)

// kvValueTTL answers a kv GET's value and ttl; the key must exist.
func kvValueTTL(t *testing.T, srv *cpodtest.Server, tok, key string) (string, int64) {
	t.Helper()
	st := kvGet(t, srv, tok, key)
	if !st.found {
		t.Fatalf("GET %s: 404", key)
	}
	return st.value, st.ttl
}

// rawKV is what Redis holds for the server's only kv key, and the key.
func rawKV(t *testing.T, srv *cpodtest.Server) (string, string) {
	t.Helper()
	var vals []string
	for _, k := range srv.RedisKeys(t) {
		if !strings.HasSuffix(k, "}") {
			continue // a counter's nonces
		}
		vals = append(vals, k)
	}
	if len(vals) != 1 {
		t.Fatalf("redis keys %q, want one value", srv.RedisKeys(t))
	}
	v, err := srv.Redis.Get(context.Background(), vals[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	return v, vals[0]
}

// TestKVGetReadsStoredExpiry: a value carries its expiry (kv_values.go), so
// a GET answers the ttl from it with one command: it counts down on the
// engine's clock, and a key Redis still holds answers ttl 1, never 404 or a
// negative ttl; HEAD reads Redis' TTL.
func TestKVGetReadsStoredExpiry(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v","ttl":60}`), 204, "")
	raw, _ := rawKV(t, srv)
	exp := srv.Now().Add(time.Minute).UnixMilli()
	if !strings.HasPrefix(raw, "\xff") || !strings.HasSuffix(raw, ":v") {
		t.Fatalf("stored %q, want 0xff, expiry, ':', text", raw)
	}
	if got, err := strconv.ParseInt(raw[1:len(raw)-2], 10, 64); err != nil || got > exp || got < exp-5000 {
		t.Fatalf("stored expiry %q, want about %d", raw[1:len(raw)-2], exp)
	}
	v, ttl := kvValueTTL(t, srv, tok, "k")
	equal(t, "value", v, "v")
	equal(t, "ttl", ttl, 60)
	srv.AdvanceClock(30 * time.Second) // the engine's clock only, not Redis'
	_, ttl = kvValueTTL(t, srv, tok, "k")
	equal(t, "ttl after 30 s", ttl, 30)
	srv.AdvanceClock(40 * time.Second)
	_, ttl = kvValueTTL(t, srv, tok, "k")
	equal(t, "ttl past the expiry while Redis holds the key", ttl, 1)
	if srv.Miniredis() != nil {
		equal(t, "HEAD (Redis' TTL)", do(t, srv, "HEAD", "/v1/storage/kv/k", tok, nil).header.Get("Cpod-Ttl"), "60")
	}

	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":{"a":1}}`), 204, "")
	raw, _ = rawKV(t, srv)
	equal(t, "stored without ttl", raw, "\xff0:"+`{"a":1}`)
	v, ttl = kvValueTTL(t, srv, tok, "k")
	equal(t, "value", v, `{"a":1}`)
	equal(t, "no ttl", ttl, -1)
}

// TestKVLegacyValues: values stored before the expiry prefix (plain text in
// Redis, any TTL in Redis alone) still answer every call as before: GET
// reads the TTL from Redis, conditions compare the text, INCR counts and
// keeps the TTL, and a PATCH or PUT stores the current form.
func TestKVLegacyValues(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	ctx := context.Background()
	legacy := func(key, value string, ttl time.Duration) {
		t.Helper()
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/"+key, tok, `{"value":"x"}`), 204, "")
		_, rk := rawKV(t, srv)
		if err := srv.Redis.Set(ctx, rk, value, ttl).Err(); err != nil {
			t.Fatal(err)
		}
	}
	del := func(key string) {
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/"+key, tok, nil), 204, "")
	}

	legacy("s", "plain", time.Minute)
	v, ttl := kvValueTTL(t, srv, tok, "s")
	equal(t, "legacy value", v, "plain")
	equal(t, "legacy ttl", ttl, 60)
	equal(t, "legacy HEAD", do(t, srv, "HEAD", "/v1/storage/kv/s", tok, nil).header.Get("Cpod-Ttl"), "60")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/s", tok, `{"value":"w","ifValue":"other"}`), 412, "conflict")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/s", tok, `{"ifValue":"other"}`), 412, "conflict")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/s", tok, `{"ifValue":"plain"}`), 204, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/s", tok, nil), 404, "not_found")

	legacy("s", "plain", time.Minute)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/s", tok, `{"value":"w","ifValue":"plain","ttl":30}`), 204, "")
	raw, _ := rawKV(t, srv)
	if !strings.HasPrefix(raw, "\xff") || !strings.HasSuffix(raw, ":w") {
		t.Fatalf("after a conditional set: %q, want the expiry form", raw)
	}
	v, ttl = kvValueTTL(t, srv, tok, "s")
	equal(t, "set over legacy", v, "w")
	equal(t, "set over legacy ttl", ttl, 30)
	del("s")

	legacy("j", `{"a":1}`, 0)
	v, ttl = kvValueTTL(t, srv, tok, "j")
	equal(t, "legacy JSON", v, `{"a":1}`)
	equal(t, "legacy no ttl", ttl, -1)
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/j", tok, `{"ttl":90}`), 204, "")
	raw, _ = rawKV(t, srv)
	if !strings.HasPrefix(raw, "\xff") || !strings.HasSuffix(raw, `:{"a":1}`) {
		t.Fatalf("after PATCH: %q, want the expiry form", raw)
	}
	v, ttl = kvValueTTL(t, srv, tok, "j")
	equal(t, "patched legacy", v, `{"a":1}`)
	equal(t, "patched legacy ttl", ttl, 90)
	equal(t, "patched legacy HEAD", do(t, srv, "HEAD", "/v1/storage/kv/j", tok, nil).header.Get("Cpod-Ttl"), "90")
	del("j")

	// A counter INCR made before: it counts on, keeps its TTL and its form.
	legacy("c", "41", 100*time.Second)
	r := do(t, srv, "POST", "/v1/storage/kv/c", tok, nil)
	wantStatus(t, r, 200, "")
	equal(t, "legacy incr", string(r.body), `{"value":42}`+"\n")
	raw, _ = rawKV(t, srv)
	equal(t, "legacy counter stored", raw, "42")
	v, ttl = kvValueTTL(t, srv, tok, "c")
	equal(t, "legacy counter", v, "42")
	equal(t, "legacy counter ttl", ttl, 100)

	// A legacy value in a form only miniredis would count is refused too.
	legacy("c", "+41", 0)
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/c", tok, nil), 409, "not_integer")
	raw, _ = rawKV(t, srv)
	equal(t, "refused legacy counter stored", raw, "+41")
}

// TestKVIncrKeepsExpiry: an INCR of a value with an expiry counts in
// Redis' INCRBY (exact int64, its errors) on a scratch key it removes, and
// writes the count back with the same expiry and TTL; a new counter has no
// TTL; nothing but the counter and its nonces stays in Redis.
func TestKVIncrKeepsExpiry(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	incr := func(by string) resp {
		return do(t, srv, "POST", "/v1/storage/kv/c", tok, `{"by":`+by+`}`)
	}
	onlyCounter := func() {
		t.Helper()
		for _, k := range srv.RedisKeys(t) {
			if !strings.HasSuffix(k, "}") && !strings.HasSuffix(k, "}:nonces") && !strings.HasSuffix(k, "}:nonces:prev") {
				t.Fatalf("redis keys %q: %q left behind", srv.RedisKeys(t), k)
			}
		}
	}

	r := incr("7")
	wantStatus(t, r, 200, "")
	equal(t, "new counter", string(r.body), `{"value":7}`+"\n")
	raw, _ := rawKV(t, srv)
	equal(t, "new counter stored", raw, "\xff0:7")
	_, ttl := kvValueTTL(t, srv, tok, "c")
	equal(t, "new counter ttl", ttl, -1)

	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/c", tok, `{"value":"9007199254740993","ttl":60}`), 204, "")
	before, _ := rawKV(t, srv)
	srv.AdvanceClock(10 * time.Second)
	r = incr("1")
	wantStatus(t, r, 200, "")
	equal(t, "2^53+1 +1", string(r.body), `{"value":9007199254740994}`+"\n")
	raw, _ = rawKV(t, srv)
	equal(t, "stored after incr", raw, strings.TrimSuffix(before, "9007199254740993")+"9007199254740994")
	v, ttl := kvValueTTL(t, srv, tok, "c")
	equal(t, "value", v, "9007199254740994")
	equal(t, "ttl kept", ttl, 50)
	if srv.Miniredis() != nil {
		equal(t, "Redis TTL kept", do(t, srv, "HEAD", "/v1/storage/kv/c", tok, nil).header.Get("Cpod-Ttl"), "60")
	}
	onlyCounter()

	for _, tc := range []struct{ value, by string }{
		{`"9223372036854775807"`, "1"},
		{`"-9223372036854775808"`, "-1"},
		{`"abc"`, "1"},
		{`" 1"`, "1"},
		{`{"a":1}`, "1"},
	} {
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/c", tok, `{"value":`+tc.value+`,"ttl":60}`), 204, "")
		before, _ := rawKV(t, srv)
		wantStatus(t, incr(tc.by), http.StatusConflict, "not_integer")
		after, _ := rawKV(t, srv)
		equal(t, "unchanged after "+tc.value, after, before)
		onlyCounter()
	}
}
