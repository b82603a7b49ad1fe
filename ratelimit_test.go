package storage_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// Rate limits (Config.RateLimit, see ratelimit.go). Every test runs on both
// paths: "redis" (cpodtest's Redis: miniredis, or the real Redis or Redis
// Cluster of CPODTEST_REDIS_URL / CPODTEST_REDIS_ADDRS) and "process" (the
// allowances in process, as an engine without Redis keeps them). The
// engine's clock is one the test moves and that stands still otherwise, so
// every header value is exact and nothing sleeps.

// rateClock is an engine clock (Config.Now) that only the test moves.
type rateClock struct{ at atomic.Int64 }

func newRateClock() *rateClock {
	c := &rateClock{}
	c.at.Store(time.Now().Truncate(time.Second).UnixNano())
	return c
}

func (c *rateClock) now() time.Time          { return time.Unix(0, c.at.Load()) }
func (c *rateClock) advance(d time.Duration) { c.at.Add(int64(d)) }

// ratePaths runs f, in parallel, on each path.
func ratePaths(t *testing.T, f func(t *testing.T, path string)) {
	t.Helper()
	for _, path := range []string{"redis", "process"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			f(t, path)
		})
	}
}

// rateServer starts an engine with the rate limit on the path (see
// usePath), with a clock of its own, and registers app-a and app-b with
// every scope.
func rateServer(t *testing.T, path string, rl storage.RateLimit, config ...func(*storage.Config)) (*cpodtest.Server, *rateClock) {
	t.Helper()
	clock := newRateClock()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.RateLimit = rl
		c.Now = clock.now
		for _, f := range config {
			f(c)
		}
	}))
	usePath(t, srv, path)
	srv.RegisterApp(t, "app-a", allScopes...)
	srv.RegisterApp(t, "app-b", allScopes...)
	return srv, clock
}

// usePath puts srv's rate limits on the path: "redis" skips the test when
// the engine has no Redis (on the SQLite store, which holds kv itself, the
// limits are kept in process: the "process" path tests that); "process"
// moves them in process; "" leaves them where the engine keeps them.
func usePath(t *testing.T, srv *cpodtest.Server, path string) {
	t.Helper()
	switch path {
	case "redis":
		if srv.Redis == nil {
			t.Skip("the engine has no Redis: its rate limits are kept in process, as on the process path")
		}
	case "process":
		storage.UseProcessRateLimits(srv.Engine)
	}
}

func rateToken(srv *cpodtest.Server, tenant, app string) string {
	return srv.Token(cpodtest.Claims{Tenant: tenant, App: app, User: "u1", Scopes: allScopes})
}

// wantRate fails unless r carries the RateLimit-* headers with these
// values.
func wantRate(t *testing.T, what string, r resp, limit, remaining, reset int) {
	t.Helper()
	for name, want := range map[string]int{"RateLimit-Limit": limit, "RateLimit-Remaining": remaining, "RateLimit-Reset": reset} {
		if got := r.header.Values(name); len(got) != 1 || got[0] != strconv.Itoa(want) {
			t.Fatalf("%s: %s %q, want %d (status %d, body %s)", what, name, got, want, r.status, r.body)
		}
	}
}

// wantNoRate fails if r carries any RateLimit-* header.
func wantNoRate(t *testing.T, what string, r resp) {
	t.Helper()
	for name := range r.header {
		if strings.HasPrefix(strings.ToLower(name), "ratelimit") {
			t.Fatalf("%s: unexpected header %s: %q", what, name, r.header.Values(name))
		}
	}
}

// want429 fails unless r is 429 rate_limited with Retry-After.
func want429(t *testing.T, what string, r resp, retryAfter int) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d, want 429; body %s", what, r.status, r.body)
	}
	wantStatus(t, r, http.StatusTooManyRequests, "rate_limited")
	equal(t, what+" Retry-After", r.header.Get("Retry-After"), strconv.Itoa(retryAfter))
}

// TestRateLimitTenants: a tenant driven over its limit gets 429 with
// Retry-After and the RateLimit-* headers, while another tenant (with the
// same app id) stays at 200; its burst refills on the engine's clock.
func TestRateLimitTenants(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		// 2 per second (T = 500 ms), 3 at once.
		srv, clock := rateServer(t, path, storage.RateLimit{PerSecond: 2, Burst: 3})
		t1, t2 := rateToken(srv, "t1", "app-a"), rateToken(srv, "t2", "app-a")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", t2, map[string]any{"value": "v"}), http.StatusNoContent, "")

		// Three at once: Remaining 2, 1, 0; whole again in 0.5, 1, 1.5 s.
		for i, reset := range []int{1, 1, 2} {
			r := do(t, srv, "GET", "/v1/storage/kv/missing", t1, nil)
			wantStatus(t, r, http.StatusNotFound, "not_found")
			wantRate(t, "burst "+strconv.Itoa(i), r, 3, 2-i, reset)
		}
		// The fourth: 429, the next one in 0.5 s.
		r := do(t, srv, "GET", "/v1/storage/kv/missing", t1, nil)
		want429(t, "over the limit", r, 1)
		wantRate(t, "over the limit", r, 3, 0, 2)
		// Another tenant, the same app id: untouched, and at 200.
		r = do(t, srv, "GET", "/v1/storage/kv/k", t2, nil)
		wantStatus(t, r, http.StatusOK, "")
		wantRate(t, "other tenant", r, 3, 1, 1)
		// Another app of the spent tenant: the tenant's limit holds it.
		want429(t, "other app of t1", do(t, srv, "GET", "/v1/storage/kv/missing", rateToken(srv, "t1", "app-b"), nil), 1)

		// Refill on the engine's clock: one request every 500 ms.
		clock.advance(499 * time.Millisecond)
		want429(t, "at +499ms", do(t, srv, "GET", "/v1/storage/kv/missing", t1, nil), 1)
		clock.advance(time.Millisecond)
		r = do(t, srv, "GET", "/v1/storage/kv/missing", t1, nil)
		wantStatus(t, r, http.StatusNotFound, "not_found")
		wantRate(t, "at +500ms", r, 3, 0, 2)
		want429(t, "then", do(t, srv, "GET", "/v1/storage/kv/missing", t1, nil), 1)
		// Idle for 1.5 s: the whole burst again.
		clock.advance(1500 * time.Millisecond)
		for range 3 {
			wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/missing", t1, nil), http.StatusNotFound, "not_found")
		}
		want429(t, "second burst spent", do(t, srv, "GET", "/v1/storage/kv/missing", t1, nil), 1)
	})
}

// TestRateLimitApps: an app over its own limit gets 429 while another app
// of the same tenant stays at 200; a refused request spends neither
// allowance (the tenant's is then whole for the other app).
func TestRateLimitApps(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		// The tenant: 3 at once; each app: 2 at once, one a second.
		srv, _ := rateServer(t, path, storage.RateLimit{PerSecond: 3, Burst: 3, AppPerSecond: 1, AppBurst: 2})
		a, b := rateToken(srv, "t1", "app-a"), rateToken(srv, "t1", "app-b")
		r := do(t, srv, "GET", "/v1/storage/kv/missing", a, nil)
		wantStatus(t, r, http.StatusNotFound, "not_found")
		wantRate(t, "app a, 1st: the app's is tighter", r, 2, 1, 1)
		wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/missing", a, nil), http.StatusNotFound, "not_found")
		for range 3 {
			r = do(t, srv, "GET", "/v1/storage/kv/missing", a, nil)
			want429(t, "app a over its limit", r, 1)
			wantRate(t, "app a over its limit", r, 2, 0, 2)
		}
		// App b: the tenant has one left (the refusals spent nothing).
		r = do(t, srv, "GET", "/v1/storage/kv/missing", b, nil)
		wantStatus(t, r, http.StatusNotFound, "not_found")
		wantRate(t, "app b: the tenant's is tighter", r, 3, 0, 1)
		r = do(t, srv, "GET", "/v1/storage/kv/missing", b, nil)
		want429(t, "app b, tenant spent", r, 1)
		wantRate(t, "app b, tenant spent", r, 3, 0, 1)
	})
}

// TestRateLimitConcurrent: concurrent requests of one tenant, through two
// apps, get exactly the burst between them, never one more: each decision
// reads and spends both allowances atomically.
func TestRateLimitConcurrent(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		srv, _ := rateServer(t, path, storage.RateLimit{PerSecond: 1, Burst: 10})
		toks := []string{rateToken(srv, "t1", "app-a"), rateToken(srv, "t1", "app-b")}
		var ok, limited atomic.Int64
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					r := do(t, srv, "GET", "/v1/storage/kv/k", toks[g%2], nil)
					switch r.status {
					case http.StatusNotFound:
						ok.Add(1)
					case http.StatusTooManyRequests:
						limited.Add(1)
					default:
						t.Errorf("status %d: %s", r.status, r.body)
					}
				}
			}()
		}
		wg.Wait()
		equal(t, "requests served", ok.Load(), 10)
		equal(t, "requests refused", limited.Load(), 38)
	})
}

// TestRateLimitBeforeBackends: a refused request does no backend work and
// stores nothing, for every primitive; the check itself is one Redis
// command on the Redis path and none in process.
func TestRateLimitBeforeBackends(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		srv, clock := rateServer(t, path, storage.RateLimit{PerSecond: 1, Burst: 2})
		tok := rateToken(srv, "t1", "app-a")
		// An allowed request: the check is one Redis command (one round
		// trip, even on a Redis that never saw the script: EVAL, not
		// EVALSHA then EVAL), none in process; a document GET sends none
		// of its own. (The first request opens the connection, whose
		// handshake go-redis counts as commands.)
		wantStatus(t, do(t, srv, "GET", "/v1/storage/db/c/missing", tok, nil), http.StatusNotFound, "not_found")
		before := srv.Calls()
		wantStatus(t, do(t, srv, "GET", "/v1/storage/db/c/missing", tok, nil), http.StatusNotFound, "not_found")
		wantRedis := int64(1)
		if path == "process" {
			wantRedis = 0
		}
		equal(t, "Redis commands of an allowed request", srv.Calls().Redis-before.Redis, wantRedis)
		for _, rq := range []struct {
			method, path string
			body         any
		}{
			{"PUT", "/v1/storage/files/f.txt", "contents"},
			{"PUT", "/v1/storage/db/c/k", map[string]any{"a": 1}},
			{"PUT", "/v1/storage/kv/k", map[string]any{"value": "v"}},
			{"POST", "/v1/storage/db/c/query", map[string]any{}},
			{"DELETE", "/v1/storage/files/f.txt", nil},
		} {
			before := srv.Calls()
			want429(t, rq.method+" "+rq.path, do(t, srv, rq.method, rq.path, tok, rq.body), 1)
			after := srv.Calls()
			if after.S3 != before.S3 || after.Documents != before.Documents || after.Redis-before.Redis != wantRedis {
				t.Fatalf("%s %s refused: backend calls %+v -> %+v, want only %d Redis", rq.method, rq.path, before, after, wantRedis)
			}
		}
		// Nothing was stored.
		clock.advance(10 * time.Second)
		for _, p := range []string{"/v1/storage/files/f.txt", "/v1/storage/db/c/k", "/v1/storage/kv/k"} {
			wantStatus(t, do(t, srv, "GET", p, tok, nil), http.StatusNotFound, "not_found")
			clock.advance(time.Second)
		}
	})
}

// TestRateLimitHeaders: every answer of the storage API to a token carries
// the RateLimit-* headers, errors and HEAD included (a HEAD 429 says its
// code in Cpod-Error); the operations, the OpenAPI document, the admin API
// and refused tokens carry none and spend nothing; without Config.RateLimit
// no answer has them.
func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		srv, clock := rateServer(t, path, storage.RateLimit{PerSecond: 1, Burst: 100})
		tok := rateToken(srv, "t1", "app-a")
		n := 0
		check := func(method, p string, body any, status int) resp {
			t.Helper()
			r := do(t, srv, method, p, tok, body)
			equal(t, method+" "+p+" status", r.status, status)
			n++
			wantRate(t, method+" "+p, r, 100, 100-n, n)
			return r
		}
		check("PUT", "/v1/storage/files/a.txt", "hello", 200)
		check("GET", "/v1/storage/files/a.txt", nil, 200)
		check("HEAD", "/v1/storage/files/a.txt", nil, 200)
		check("GET", "/v1/storage/files?prefix=a", nil, 200)
		check("GET", "/v1/storage/files/a/../b", nil, 400)
		check("PUT", "/v1/storage/db/c/k", map[string]any{"v": 1}, 200)
		check("GET", "/v1/storage/db/c/k", nil, 200)
		check("HEAD", "/v1/storage/db/c/nope", nil, 404)
		check("POST", "/v1/storage/db/c/count", map[string]any{}, 200)
		check("PUT", "/v1/storage/kv/k", map[string]any{"value": "v"}, 204)
		check("GET", "/v1/storage/kv/k?tier=shared", nil, 404)
		check("POST", "/v1/storage/signed-urls", map[string]any{"key": "a.txt"}, 200)

		// Refused before the tenant is known: no headers, nothing spent.
		forged := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"tenantId": "t1", "client_id": "app-a", "scope": "storage.private.read", "exp": clock.now().Add(time.Hour).Unix(),
		})
		forgedTok, err := forged.SignedString([]byte("not the server's key, 32 bytes or more"))
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"", forgedTok} {
			for range 5 {
				r := do(t, srv, "GET", "/v1/storage/kv/k", bad, nil)
				wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
				wantNoRate(t, "401", r)
			}
		}
		for _, p := range []string{"/healthz", "/readyz", "/v1/openapi.json"} {
			r := do(t, srv, "GET", p, "", nil)
			equal(t, p+" status", r.status, 200)
			wantNoRate(t, p, r)
		}
		r := do(t, srv, "GET", "/v1/oauth/apps", srv.AdminToken, nil)
		equal(t, "admin status", r.status, 200)
		wantNoRate(t, "admin", r)
		check("GET", "/v1/storage/kv/k", nil, 200) // one more than before the refusals

		// HEAD over the limit: no body, the code in Cpod-Error.
		srv2, _ := rateServer(t, path, storage.RateLimit{PerSecond: 1, Burst: 1})
		tok2 := rateToken(srv2, "t1", "app-a")
		wantStatus(t, do(t, srv2, "HEAD", "/v1/storage/kv/k", tok2, nil), http.StatusNotFound, "")
		r = do(t, srv2, "HEAD", "/v1/storage/kv/k", tok2, nil)
		equal(t, "HEAD status", r.status, http.StatusTooManyRequests)
		equal(t, "HEAD Cpod-Error", r.header.Get("Cpod-Error"), "rate_limited")
		equal(t, "HEAD Retry-After", r.header.Get("Retry-After"), "1")
		equal(t, "HEAD body", len(r.body), 0)
		wantRate(t, "HEAD 429", r, 1, 0, 1)
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		srv := cpodtest.NewServer(t)
		srv.RegisterApp(t, "app-a", allScopes...)
		tok := rateToken(srv, "t1", "app-a")
		for range 50 {
			r := do(t, srv, "GET", "/v1/storage/kv/k", tok, nil)
			wantStatus(t, r, http.StatusNotFound, "not_found")
			wantNoRate(t, "limits off", r)
		}
	})
}

// TestRateLimitSignedURLs: signed URLs spend allowances of their own (the
// signing tenant's and app's), never the API allowance of the tenant that
// signed them; a changed URL spends nothing.
func TestRateLimitSignedURLs(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		srv, clock := rateServer(t, path, storage.RateLimit{PerSecond: 1, Burst: 2})
		tok := rateToken(srv, "t1", "app-a")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/a.txt", tok, "hello"), http.StatusOK, "")
		r := do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "a.txt"})
		wantStatus(t, r, http.StatusOK, "")
		var signed struct{ URL string }
		decode(t, r, &signed)
		want429(t, "the API allowance is spent", do(t, srv, "GET", "/v1/storage/files/a.txt", tok, nil), 1)

		get := func(u string) resp {
			t.Helper()
			res, err := srv.HTTP.Client().Get(u)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			return resp{res.StatusCode, res.Header, b}
		}
		// A changed URL is refused for its signature and spends nothing.
		for range 5 {
			r = get(strings.Replace(signed.URL, "a.txt", "b.txt", 1))
			wantStatus(t, r, http.StatusForbidden, "invalid_signature")
			wantNoRate(t, "changed URL", r)
		}
		for i := range 2 {
			r = get(signed.URL)
			equal(t, "signed download status", r.status, http.StatusOK)
			equal(t, "signed download body", string(r.body), "hello")
			wantRate(t, "signed download", r, 2, 1-i, i+1)
		}
		r = get(signed.URL)
		want429(t, "signed downloads over the limit", r, 1)
		// The API allowance refills on its own clock, untouched.
		clock.advance(time.Second)
		r = do(t, srv, "GET", "/v1/storage/files/a.txt", tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		wantRate(t, "API after a second", r, 2, 0, 2)
	})
}

// TestRateLimitMetrics: each 429 counts once in
// cpod_storage_rate_limited_total, which has no label.
func TestRateLimitMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	srv, _ := rateServer(t, "", storage.RateLimit{PerSecond: 1, Burst: 2}, func(c *storage.Config) { c.Metrics = reg })
	got := series(t, reg, "cpod_storage_rate_limited_total")
	wantSeries(t, got, "", 0)
	for _, tenant := range []string{"t1", "t2"} {
		tok := rateToken(srv, tenant, "app-a")
		for range 5 {
			do(t, srv, "GET", "/v1/storage/kv/k", tok, nil)
		}
	}
	got = series(t, reg, "cpod_storage_rate_limited_total")
	if len(got) != 1 {
		t.Fatalf("cpod_storage_rate_limited_total has series %v, want one without labels", got)
	}
	wantSeries(t, got, "", 6)
	wantSeries(t, series(t, reg, "cpod_storage_requests_total"), "code=429,method=GET,route=/v1/storage/kv/{key...}", 6)
}

// TestRateLimitReplicas: on Redis the allowances are shared by every
// replica; in process each engine has its own (one process owns the
// embedded store).
func TestRateLimitReplicas(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		srv, _ := rateServer(t, path, storage.RateLimit{PerSecond: 1, Burst: 4})
		rep := srv.NewReplica(t)
		if path == "process" {
			storage.UseProcessRateLimits(rep.Engine)
		}
		tok := rateToken(srv, "t1", "app-a")
		for i := range 4 {
			s := []*cpodtest.Server{srv, rep}[i%2]
			wantStatus(t, do(t, s, "GET", "/v1/storage/kv/k", tok, nil), http.StatusNotFound, "not_found")
		}
		r := do(t, rep, "GET", "/v1/storage/kv/k", tok, nil)
		if path == "redis" {
			want429(t, "shared through Redis", r, 1)
		} else {
			wantStatus(t, r, http.StatusNotFound, "not_found")
			wantRate(t, "the replica's own allowance", r, 4, 1, 3)
		}
	})
}

// TestRateLimitFailOpen: when Redis fails, requests are served without a
// limit (and without RateLimit-* headers) rather than failing, the failure
// is counted, and the check is skipped for a second of the engine's clock.
func TestRateLimitFailOpen(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	srv, clock := rateServer(t, "redis", storage.RateLimit{PerSecond: 1, Burst: 1}, func(c *storage.Config) { c.Metrics = reg })
	if srv.Miniredis() == nil {
		t.Skip("injects Redis errors with miniredis")
	}
	tok := rateToken(srv, "t1", "app-a")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k", tok, map[string]any{"v": 1}), http.StatusOK, "")
	want429(t, "spent", do(t, srv, "GET", "/v1/storage/db/c/k", tok, nil), 1)
	srv.Miniredis().SetError("ERR injected failure")
	for range 3 {
		r := do(t, srv, "GET", "/v1/storage/db/c/k", tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		wantNoRate(t, "Redis failing", r)
	}
	wantSeries(t, series(t, reg, "cpod_storage_backend_errors_total"), "backend=redis", 1)
	srv.Miniredis().SetError("")
	clock.advance(999 * time.Millisecond)
	wantNoRate(t, "within the second", do(t, srv, "GET", "/v1/storage/db/c/k", tok, nil))
	clock.advance(time.Millisecond)
	r := do(t, srv, "GET", "/v1/storage/db/c/k", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	wantRate(t, "checked again", r, 1, 0, 1)
}

// TestRateLimitAdvanceClock: the limits follow cpodtest's own clock
// (AdvanceClock), with real time running, on a slow rate: a real second
// is nothing next to its interval of 1000 s.
func TestRateLimitAdvanceClock(t *testing.T) {
	t.Parallel()
	ratePaths(t, func(t *testing.T, path string) {
		srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
			c.RateLimit = storage.RateLimit{PerSecond: 0.001, Burst: 2}
		}))
		usePath(t, srv, path)
		srv.RegisterApp(t, "app-a", allScopes...)
		tok := rateToken(srv, "t1", "app-a")
		for range 2 {
			wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), http.StatusNotFound, "not_found")
		}
		r := do(t, srv, "GET", "/v1/storage/kv/k", tok, nil)
		wantStatus(t, r, http.StatusTooManyRequests, "rate_limited")
		if s, _ := strconv.Atoi(r.header.Get("Retry-After")); s < 990 || s > 1000 {
			t.Fatalf("Retry-After %q, want about 1000", r.header.Get("Retry-After"))
		}
		srv.AdvanceClock(1000 * time.Second)
		tok = rateToken(srv, "t1", "app-a")
		wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), http.StatusNotFound, "not_found")
		wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), http.StatusTooManyRequests, "rate_limited")
	})
}

// TestRateLimitConfigRefused: New refuses a malformed Config.RateLimit,
// naming the field.
func TestRateLimitConfigRefused(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	for _, c := range []struct {
		rl   storage.RateLimit
		want string
	}{
		{storage.RateLimit{PerSecond: -1}, "Config.RateLimit.PerSecond must be from 0.001 to 1000000 requests per second"},
		{storage.RateLimit{Burst: 10}, "Config.RateLimit.PerSecond is required"},
		{storage.RateLimit{PerSecond: 10, AppBurst: -2}, "Config.RateLimit.AppBurst must be from 1 to 1000000"},
	} {
		_, err := storage.New(storage.Config{
			S3: srv.S3, Bucket: srv.Bucket, Mongo: srv.Mongo, SQL: srv.SQL, Redis: srv.Redis,
			Auth:       storage.AuthConfig{Keys: []storage.Key{{Secret: srv.TokenKey()}}},
			SigningKey: []byte(strings.Repeat("k", 32)),
			RateLimit:  c.rl,
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.rl, err, c.want)
		}
	}
}

// TestClusterRateLimitOneSlot: the rate-limit script names its two keys in
// one hash slot, whatever braces a tenant or app id holds, and on a Redis
// Cluster it runs (the answers carry RateLimit-* headers: a CROSSSLOT error
// would have been served without them, see TestRateLimitFailOpen).
func TestClusterRateLimitOneSlot(t *testing.T) {
	t.Parallel()
	srv, _ := rateServer(t, "redis", storage.RateLimit{PerSecond: 10, Burst: 10})
	rec := &keyRecorder{t: t}
	srv.Redis.AddHook(rec)
	slots := map[int]bool{}
	for _, tenant := range []string{"t1", "}", "}t", "{", "{}", "}{", "a}b{c", "{{}}"} {
		for i, app := range []string{"app-a", "app-b"} {
			r := do(t, srv, "GET", "/v1/storage/db/c/k", rateToken(srv, tenant, app), nil)
			wantStatus(t, r, http.StatusNotFound, "not_found")
			wantRate(t, "tenant "+tenant, r, 10, 9-i, 1)
			var cmds [][]string
			for _, keys := range rec.take() {
				if len(keys) > 0 { // not a connection's HELLO or CLIENT
					cmds = append(cmds, keys)
				}
			}
			if len(cmds) != 1 || len(cmds[0]) != 2 {
				t.Fatalf("tenant %q: Redis commands %q, want one with two keys", tenant, cmds)
			}
			slots[oneSlot(t, "tenant "+tenant, cmds)] = true
		}
	}
	if len(slots) < 2 {
		t.Errorf("every tenant's allowances are in slot %v: the tag does not spread tenants", slots)
	}
}

// TestRateLimitCORS: a browser app reads the RateLimit-* headers and
// Retry-After of its answers, a 429 included.
func TestRateLimitCORS(t *testing.T) {
	t.Parallel()
	const origin = "https://app.example.com"
	srv, _ := rateServer(t, "", storage.RateLimit{PerSecond: 1, Burst: 1}, func(c *storage.Config) {
		c.CORSOrigins = []string{origin}
	})
	tok := rateToken(srv, "t1", "app-a")
	for _, status := range []int{http.StatusNotFound, http.StatusTooManyRequests} {
		req, err := http.NewRequest("GET", srv.URL+"/v1/storage/kv/k", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Origin", origin)
		res, err := srv.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		equal(t, "status", res.StatusCode, status)
		equal(t, "Access-Control-Allow-Origin", res.Header.Get("Access-Control-Allow-Origin"), origin)
		exposed := strings.ToLower(strings.Join(res.Header.Values("Access-Control-Expose-Headers"), ","))
		for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"} {
			if !strings.Contains(exposed, strings.ToLower(h)) {
				t.Errorf("%d: Access-Control-Expose-Headers %q lacks %s", status, exposed, h)
			}
		}
	}
}
