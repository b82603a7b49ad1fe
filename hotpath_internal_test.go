package storage

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The hot path (issue 17): the engine's own parts of every call allocate
// no more than they must. Each test checks the result too, so that a
// cheaper form cannot change what the call answers.

// TestScopeAllocatesNothing: the six scope names are constants, the same
// names as "storage." + tier + "." + access.
func TestScopeAllocatesNothing(t *testing.T) {
	for _, tier := range []Tier{TierPrivate, TierUser, TierShared} {
		for _, a := range []Access{Read, Write} {
			if got, want := Scope(tier, a), "storage."+string(tier)+"."+string(a); got != want {
				t.Errorf("Scope(%s, %s) = %q, want %q", tier, a, got, want)
			}
			if allocs := testing.AllocsPerRun(100, func() { scopeSink = Scope(tier, a) }); allocs != 0 {
				t.Errorf("Scope(%s, %s): %v allocations, want 0", tier, a, allocs)
			}
		}
	}
}

// scopeSink keeps Scope's result on the heap, as a call's scope is (it
// reaches an error message).
var scopeSink string

// TestResolveAllocatesOnce: a location is built in one allocation, the
// prefix being the start of the key, and is the one of the contract.
func TestResolveAllocatesOnce(t *testing.T) {
	id := Identity{Tenant: "t1", App: "app-a", User: "u1"}
	for _, tc := range []struct {
		tier   Tier
		prefix string
	}{
		{TierPrivate, "t1/apps/app-a/"},
		{"", "t1/apps/app-a/"},
		{TierUser, "t1/users/u1/"},
		{TierShared, "t1/shared/"},
	} {
		loc, err := Resolve(id, tc.tier, "a/b.txt")
		if err != nil {
			t.Fatal(err)
		}
		if loc.Prefix != tc.prefix || loc.Key != tc.prefix+"a/b.txt" {
			t.Errorf("Resolve(%q) = %+v, want prefix %q", tc.tier, loc, tc.prefix)
		}
		if allocs := testing.AllocsPerRun(100, func() { _, _ = Resolve(id, tc.tier, "a/b.txt") }); allocs != 1 {
			t.Errorf("Resolve(%q): %v allocations, want 1", tc.tier, allocs)
		}
	}
}

// TestTokenCacheHitAllocatesNothing: a token found in the cache costs no
// allocation (its SHA-256 is taken from a copy on the stack), and a token
// too long for that buffer is hashed alike.
func TestTokenCacheHitAllocatesNothing(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	e := offlineEngine(t, func(c *Config) { c.Auth.CacheTTL = time.Minute })
	for _, pad := range []int{0, 2 * maxStackToken} {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"tenantId": "t1", "client_id": "app-a", "scope": "storage.private.read",
			"exp": time.Now().Add(time.Hour).Unix(), "pad": strings.Repeat("p", pad),
		}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tokenSum(tok), sha256.Sum256([]byte(tok)); got != want {
			t.Fatalf("%d-byte token: tokenSum %x, want %x", len(tok), got, want)
		}
		id, err := e.verifier.verify(tok) // verified, then cached
		if err != nil || id.Tenant != "t1" || id.App != "app-a" {
			t.Fatalf("%d-byte token: %+v, %v", len(tok), id, err)
		}
		if _, ok := e.verifier.cache.Get(tokenSum(tok)); !ok {
			t.Fatalf("%d-byte token is not cached", len(tok))
		}
		allocs := testing.AllocsPerRun(100, func() {
			if id, err := e.verifier.verify(tok); err != nil || id.App != "app-a" {
				t.Fatalf("cached token: %+v, %v", id, err)
			}
		})
		if want := 0.0; len(tok) > maxStackToken {
			want = 1 // the copy to hash
			if allocs > want {
				t.Errorf("%d-byte token: %v allocations on a cache hit, want at most %v", len(tok), allocs, want)
			}
		} else if allocs != want {
			t.Errorf("%d-byte token: %v allocations on a cache hit, want %v", len(tok), allocs, want)
		}
	}
}

// headerWriter is a ResponseWriter that keeps the header and body.
type headerWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (w *headerWriter) Header() http.Header { return w.h }
func (w *headerWriter) Write(b []byte) (int, error) {
	w.body = append(w.body, b...)
	return len(b), nil
}
func (w *headerWriter) WriteHeader(s int) { w.status = s }

// TestJSONResponseAllocatesNothing: a JSON answer reuses its buffer and
// sets its headers without a slice each, and still answers what
// encoding/json and Header.Set would: the same bytes (no HTML escaping),
// one value per header, the engine's headers independent of one another.
func TestJSONResponseAllocatesNothing(t *testing.T) {
	v := &struct {
		Value string `json:"value"`
		TTL   int64  `json:"ttl"`
	}{"<a&b> \u2028 \x01 é", 42}
	w := &headerWriter{h: http.Header{}}
	c := &call{w: w}
	if err := c.json(http.StatusOK, v); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(v)
	want = append(want, '\n')
	want = []byte(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(want)))
	if string(w.body) != string(want) || w.status != http.StatusOK {
		t.Fatalf("body %q status %d, want %q 200", w.body, w.status, want)
	}
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Cache-Control": "no-store",
		"X-Content-Type-Options": "nosniff", "Content-Length": jsonItoa(len(w.body)),
	} {
		if got := w.h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q, want [%q]", k, got, want)
		}
	}
	// A header added after the engine's must not reach its neighbour.
	w.h.Add("Cache-Control", "private")
	w.h.Add("Content-Type", "x")
	if got := w.h.Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
		t.Errorf("X-Content-Type-Options %q after adding to the others", got)
	}
	if got := w.h.Values("Cache-Control"); len(got) != 2 || got[0] != "no-store" {
		t.Errorf("Cache-Control %q, want no-store then private", got)
	}
	allocs := testing.AllocsPerRun(100, func() {
		clear(w.h)
		w.body = w.body[:0]
		if err := c.json(http.StatusOK, v); err != nil {
			t.Fatal(err)
		}
	})
	// 0 with a warm pool; under the race detector sync.Pool drops a
	// quarter of what is put back, and a new buffer costs one more.
	if allocs > 1 {
		t.Errorf("%v allocations per JSON answer, want 0 (1 under -race)", allocs)
	}
}

func jsonItoa(n int) string { b, _ := json.Marshal(n); return string(b) }
