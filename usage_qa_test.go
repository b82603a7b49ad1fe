package storage_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// Regression tests from the quota QA pass (branch quota-qa). Each runs on
// the default cpodtest server (MongoDB + Redis drivers) and on the SQLite
// store.
func qaStores(t *testing.T, f func(t *testing.T, srv *cpodtest.Server)) {
	for _, store := range []struct {
		name string
		opts []cpodtest.Option
	}{{"mongo-redis", nil}, {"sqlite", []cpodtest.Option{cpodtest.WithSQLite()}}} {
		t.Run(store.name, func(t *testing.T) {
			t.Parallel()
			srv := cpodtest.NewServer(t, store.opts...)
			srv.RegisterApp(t, "a", allScopes...)
			f(t, srv)
		})
	}
}

// TestQuotaBatchSameKeyTwice: a batch that sets one key twice stores one
// document, so it is admitted against the quota for one document (the last
// set), not for two. README: "a document batch (refused whole when its sets
// together would go over)"; "A write over an existing value counts only what
// it adds to the value it replaces".
func TestQuotaBatchSameKeyTwice(t *testing.T) {
	t.Parallel()
	qaStores(t, func(t *testing.T, srv *cpodtest.Server) {
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
		wantStatus(t, setQuota(t, srv, "t1", `{"documents":{"count":2}}`), http.StatusOK, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/a", tok, `1`), http.StatusOK, "")
		// At 1 of 2: a new key set twice adds one document.
		wantStatus(t, do(t, srv, "POST", "/v1/storage/db/c/batch", tok,
			`{"ops":[{"op":"set","key":"b","value":1},{"op":"set","key":"b","value":2}]}`), http.StatusOK, "")
		// At 2 of 2: an existing key set twice adds nothing.
		wantStatus(t, do(t, srv, "POST", "/v1/storage/db/c/batch", tok,
			`{"ops":[{"op":"set","key":"a","value":7},{"op":"set","key":"a","value":8}]}`), http.StatusOK, "")
		sameUsage(t, "after the batches", tenantUsage(t, srv, "t1"), usageJSON{Documents: figures{2, 2}})
		// At a bytes limit: rewriting a at its size twice adds nothing.
		wantStatus(t, setQuota(t, srv, "t1", `{"documents":{"count":null,"bytes":2}}`), http.StatusOK, "")
		wantStatus(t, do(t, srv, "POST", "/v1/storage/db/c/batch", tok,
			`{"ops":[{"op":"set","key":"a","value":5},{"op":"set","key":"a","value":6}]}`), http.StatusOK, "")
		sameUsage(t, "recounted", tenantUsage(t, srv, "t1"), recountUsage(t, srv, "t1"))
	})
}

// TestQuotaKVExpiredFreesRoomForWrites: once a kv value's TTL has ended, a
// tenant whose kv usage was at its limit because of it may write again, with
// no usage read in between (README: "A kv key stops counting when it
// expires"; on Redis "a kv value with a TTL leaves usage at its tenant's
// next write or usage read after it expired"; on the embedded store within
// seconds). The test polls with writes only, for up to 12 s.
func TestQuotaKVExpiredFreesRoomForWrites(t *testing.T) {
	t.Parallel()
	qaStores(t, func(t *testing.T, srv *cpodtest.Server) {
		if !srv.CanFastForward() {
			t.Skip("needs FastForward")
		}
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes, TTL: time.Hour})
		wantStatus(t, setQuota(t, srv, "t1", `{"kv":{"bytes":10}}`), http.StatusOK, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/short", tok, `{"value":"0123456789","ttl":2}`), http.StatusNoContent, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/other", tok, `{"value":"x"}`), http.StatusInsufficientStorage, "quota_exceeded")
		srv.FastForward(3 * time.Second)
		deadline := time.Now().Add(12 * time.Second)
		for {
			r := do(t, srv, "PUT", "/v1/storage/kv/other", tok, `{"value":"0123456789"}`)
			if r.status == http.StatusNoContent {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("12 s after the only value's TTL ended, a write of its size is still refused: %d %s", r.status, r.body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		sameUsage(t, "after", tenantUsage(t, srv, "t1"), usageJSON{KV: figures{10, 1}})
	})
}

// TestRateLimitUnregisteredApp: README, Rate limits: a token that fails
// verification spends nothing; one that verifies but names an app that is
// not registered is refused 401 after the check (its issuer is the
// tenant's own), so it spends its tenant's allowance, and the registry is
// never asked more often than the limit allows.
func TestRateLimitUnregisteredApp(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		srv, _ := rateServer(t, path, storage.RateLimit{PerSecond: 1, Burst: 3})
		forged := rateToken(srv, "t1", "app-a") + "x"
		for range 5 {
			r := do(t, srv, "GET", "/v1/storage/kv/k", forged, nil)
			wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
			wantNoRate(t, "401 of a forged token", r)
		}
		bad := rateToken(srv, "t1", "not-registered")
		for i := range 4 {
			r := do(t, srv, "GET", "/v1/storage/kv/k", bad, nil)
			if i < 3 {
				wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
			} else {
				wantStatus(t, r, http.StatusTooManyRequests, "rate_limited")
			}
		}
		tok := rateToken(srv, "t1", "app-a")
		wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), http.StatusTooManyRequests, "rate_limited")
	})
}

// TestQuotaConcurrentPuts: PUTs of different fields of one tenant's quota
// at once all survive ("fields optional (absent: unchanged)"): the update
// of the stored quota is atomic.
func TestQuotaConcurrentPuts(t *testing.T) {
	t.Parallel()
	qaStores(t, func(t *testing.T, srv *cpodtest.Server) {
		for rep := range 5 {
			tenant := fmt.Sprintf("q%d", rep)
			var wg sync.WaitGroup
			for _, f := range []string{`{"files":{"bytes":7}}`, `{"files":{"count":7}}`, `{"documents":{"bytes":7}}`,
				`{"documents":{"count":7}}`, `{"kv":{"bytes":7}}`, `{"kv":{"count":7}}`} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := do(t, srv, "PUT", "/v1/admin/tenants/"+tenant+"/quota", srv.AdminToken, f)
					if r.status != http.StatusOK {
						t.Errorf("PUT %s: %d %s", f, r.status, r.body)
					}
				}()
			}
			wg.Wait()
			r := do(t, srv, "GET", "/v1/admin/tenants/"+tenant+"/quota", srv.AdminToken, nil)
			want := `{"files":{"bytes":7,"count":7},"documents":{"bytes":7,"count":7},"kv":{"bytes":7,"count":7}}`
			if got := strings.TrimSpace(string(r.body)); got != want {
				t.Fatalf("after six concurrent PUTs of one field each: %s, want %s", got, want)
			}
		}
	})
}
