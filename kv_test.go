package storage_test

import (
	"net/http"
	"testing"
	"time"

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
	srv.FastForward(10 * time.Minute)
	r = do(t, srv, "HEAD", "/v1/storage/kv/session:abc123", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "Cpod-Ttl after 10m", r.header.Get("Cpod-Ttl"), "3000")

	// kv.del; then it is gone
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/session:abc123", tok, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/session:abc123", tok, nil), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "HEAD", "/v1/storage/kv/session:abc123", tok, nil), http.StatusNotFound, "")
}
