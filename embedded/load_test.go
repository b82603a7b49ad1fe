package embedded_test

import (
	"context"
	"flag"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
	"github.com/cpod/storage/embedded"
	"github.com/cpod/storage/internal/loadtest"
)

var loadDuration = flag.Duration("load.duration", 3*time.Second, "how long TestMixedLoad sends requests (the issue's figure: 60s)")

var loadScopes = []string{"storage.private.read", "storage.private.write"}

// checkLoad fails the test on any 5xx, transport error, unexpected status
// or stall.
func checkLoad(t *testing.T, r loadtest.Result) {
	t.Helper()
	t.Logf("%s", r)
	if r.Server5xx > 0 || r.Errors > 0 || r.Stalled > 0 || len(r.Unexpected) > 0 {
		t.Errorf("5xx %d, transport errors %d, stalled %d, unexpected %v", r.Server5xx, r.Errors, r.Stalled, r.Unexpected)
	}
	if r.LongestGap > 5*time.Second {
		t.Errorf("no request completed for %v", r.LongestGap)
	}
	if r.Requests < 20 {
		t.Errorf("only %d requests completed", r.Requests)
	}
}

// TestMixedLoad: kv, documents and small files at concurrency 64 finish
// with no 5xx and no stall, on the persistent embedded backends (what `go
// run ./httpserver` uses) and in cpodtest. 64 concurrent document writes
// used to wedge the embedded FerretDB (its SQLite pool exhausted, every
// request waiting in database/sql). -load.duration=60s gives the figures
// of the issue.
func TestMixedLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	t.Run("persistent", func(t *testing.T) {
		b, err := embedded.Start(context.Background(), embedded.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		secret := []byte("load-test-secret-0123456789abcdef")
		e, err := storage.New(storage.Config{
			S3: b.S3, Bucket: b.Bucket, SQL: b.SQL, Redis: b.Redis,
			Auth:        storage.AuthConfig{Keys: []storage.Key{{Secret: secret}}},
			AdminTokens: []string{"load-test-admin-token"},
			SigningKey:  []byte("load-test-signing-key-0123456789abcdef"),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := e.RegisterApp(ctx, storage.App{ClientID: "load", Name: "load", DeclaredScopes: loadScopes, AppType: "service"}); err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(e)
		defer ts.Close()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"tenantId": "t1", "client_id": "load", "sub": "u1", "scope": "storage.private.read storage.private.write",
			"exp": time.Now().Add(time.Hour + *loadDuration).Unix(),
		}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		checkLoad(t, loadtest.Run(ctx, loadtest.Config{URL: ts.URL, Token: tok, Concurrency: 64, Duration: *loadDuration}))
	})
	t.Run("cpodtest", func(t *testing.T) {
		srv := cpodtest.NewServer(t)
		srv.RegisterApp(t, "load", loadScopes...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "load", User: "u1", Scopes: loadScopes, TTL: time.Hour + *loadDuration})
		checkLoad(t, loadtest.Run(context.Background(), loadtest.Config{URL: srv.URL, Token: tok, Concurrency: 64, Duration: *loadDuration}))
	})
}
