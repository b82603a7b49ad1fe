package storage_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestAppLookupMongoDown: with MongoDB frozen (accepts, never answers) or
// refusing, kv and files keep working for an app this engine served
// recently, without waiting for MongoDB on every request; an app it never
// served gets 503 within BackendTimeout (not the driver's 30 s); /readyz
// says MongoDB is unavailable; all recovers when MongoDB is back.
func TestAppLookupMongoDown(t *testing.T) {
	const timeout = time.Second
	for _, mode := range []faultMode{freeze, refuse} {
		t.Run(mode.String(), func(t *testing.T) {
			rig := newFaultRig(t, cpodtest.WithConfig(func(c *storage.Config) {
				c.BackendTimeout = timeout
				c.AppCacheTTL = 100 * time.Millisecond
			}))
			srv := rig.srv
			srv.RegisterApp(t, "app-seen", allScopes...)
			srv.RegisterApp(t, "app-new", allScopes...)
			seen := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-seen", Scopes: allScopes})
			fresh := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-new", Scopes: allScopes})
			wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", seen, `{"value":"v"}`), 204, "")
			wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/f.txt", seen, "hello"), 200, "")

			rig.mongo.set(mode)
			time.Sleep(200 * time.Millisecond) // past AppCacheTTL

			// The first request after the cache expired waits for the
			// lookup (bounded), then falls back on the app it had.
			start := time.Now()
			wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", seen, nil), 200, "")
			if took := time.Since(start); took > timeout+2*time.Second {
				t.Fatalf("first kv call with MongoDB down took %v", took)
			}
			// The next ones do not wait for MongoDB again: four calls that
			// each waited for the lookup would take four timeouts.
			start = time.Now()
			for range 2 {
				wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", seen, nil), 200, "")
				r := do(t, srv, "GET", "/v1/storage/files/f.txt", seen, nil)
				wantStatus(t, r, 200, "")
				equal(t, "file", string(r.body), "hello")
			}
			if took := time.Since(start); took > 2*timeout {
				t.Fatalf("4 calls of a recently seen app took %v with MongoDB down", took)
			}

			// An app this engine never served: 503 within the timeout.
			start = time.Now()
			r := do(t, srv, "GET", "/v1/storage/kv/k", fresh, nil)
			wantStatus(t, r, 503, "backend_unavailable")
			if took := time.Since(start); took > timeout+2*time.Second {
				t.Fatalf("new app: 503 after %v, want within %v plus a margin", took, timeout)
			}
			equal(t, "Retry-After", r.header.Get("Retry-After"), "1")
			_, port, _ := net.SplitHostPort(rig.mongo.addr)
			for _, leak := range []string{port, "mongo", "apps", "server selection", "context"} {
				if strings.Contains(string(r.body), leak) {
					t.Fatalf("response %s leaks %q", r.body, leak)
				}
			}

			start = time.Now()
			r = do(t, srv, "GET", "/readyz", "", nil)
			if took := time.Since(start); took > timeout+2*time.Second {
				t.Fatalf("/readyz took %v", took)
			}
			wantStatus(t, r, 503, "")
			equal(t, "readyz", strings.TrimSpace(string(r.body)), `{"backends":{"mongodb":"unavailable","redis":"ok","s3":"ok"},"error":"backend_unavailable","message":"not ready: mongodb unavailable","status":"unavailable"}`)

			// MongoDB is back: the new app is served, /readyz is 200.
			rig.mongo.set(pass)
			eventually(t, 15*time.Second, func() bool {
				return do(t, srv, "GET", "/v1/storage/kv/k", fresh, nil).status == http.StatusNotFound
			})
			eventually(t, 15*time.Second, func() bool { return do(t, srv, "GET", "/readyz", "", nil).status == http.StatusOK })
		})
	}
}

// TestAppStaleNeverAfterChange: the fallback serves an app only as the last
// successful lookup found it, never once a lookup found it changed or gone
// (here changed by another replica, so this engine learns it only from
// MongoDB), and only for AppStaleIfError.
func TestAppStaleNeverAfterChange(t *testing.T) {
	const (
		timeout = 500 * time.Millisecond
		ttl     = 100 * time.Millisecond
		stale   = 2 * time.Second
	)
	rig := newFaultRig(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.BackendTimeout = timeout
		c.AppCacheTTL = ttl
		c.AppStaleIfError = stale
	}))
	srv := rig.srv
	other, err := storage.New(storage.Config{
		S3: srv.S3, Bucket: srv.Bucket, Mongo: srv.Mongo, SQL: srv.SQL, Redis: srv.Redis,
		Auth:       storage.AuthConfig{Keys: []storage.Key{{Secret: srv.TokenKey()}}},
		SigningKey: []byte(strings.Repeat("k", 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv.RegisterApp(t, "app-a", allScopes...)
	srv.RegisterApp(t, "app-b", allScopes...)
	srv.RegisterApp(t, "app-c", allScopes...)
	tokA := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	tokB := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-b", Scopes: allScopes})
	tokC := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-c", Scopes: allScopes})
	for _, tok := range []string{tokA, tokB, tokC} {
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v"}`), 204, "")
	}

	// Another replica narrows app-a and deletes app-b; this engine sees both.
	readOnly := []string{"storage.private.read"}
	if _, err := other.UpdateApp(ctx, "app-a", storage.AppUpdate{DeclaredScopes: &readOnly}); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteApp(ctx, "app-b"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tokA, `{"value":"w"}`), 403, "invalid_scope")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tokB, nil), 401, "invalid_token")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tokC, nil), 200, "")
	seen := time.Now()

	rig.mongo.set(freeze)
	time.Sleep(ttl)
	// app-a as last found: reads yes, writes still refused.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tokA, nil), 200, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tokA, `{"value":"w"}`), 403, "invalid_scope")
	// app-b is gone: never served from the fallback.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tokB, nil), 503, "backend_unavailable")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tokC, nil), 200, "")

	// After AppStaleIfError the fallback ends.
	time.Sleep(time.Until(seen.Add(stale + 100*time.Millisecond)))
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tokC, nil), 503, "backend_unavailable")
}

// TestAppCacheBounded: tokens of ever new client_ids do not grow the app
// cache beyond its size, nor push the registered apps out of it.
func TestAppCacheBounded(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	storage.SetAppCacheSize(srv.Engine, 4)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v"}`), 204, "")
	for i := range 20 {
		bogus := srv.Token(cpodtest.Claims{Tenant: "t1", App: "nope-" + string(rune('a'+i)), Scopes: allScopes})
		wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", bogus, nil), 401, "invalid_token")
	}
	apps, missing := storage.AppCacheLen(srv.Engine)
	if missing > 4 {
		t.Fatalf("%d unregistered client_ids cached, want at most 4", missing)
	}
	equal(t, "cached apps", apps, 1)
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
