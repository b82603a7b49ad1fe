package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// TestRateLimited: a call over the engine's rate limit (Config.RateLimit)
// is an *Error matching ErrRateLimited, with the Retry-After the engine
// sent as RetryAfter, on GET and on HEAD (no body: the code comes from
// Cpod-Error) alike; another tenant's calls still succeed.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	// The engine's clock stands still: one request every 2 s, one at once.
	frozen := time.Now()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.RateLimit = storage.RateLimit{PerSecond: 0.5, Burst: 1}
		c.Now = func() time.Time { return frozen }
	}))
	ctx := context.Background()
	c := srv.Client(alice)
	must(t, "Set", c.Storage.KV.Set(ctx, "k", "v", nil))
	for what, call := range map[string]func() error{
		"Get":    func() error { _, _, err := c.Storage.KV.Get(ctx, "k"); return err },
		"Exists": func() error { _, err := c.Storage.KV.Exists(ctx, "k"); return err },
		"Files.Write": func() error {
			_, err := c.Storage.Files.Write(ctx, "a.txt", strings.NewReader("x"), nil)
			return err
		},
	} {
		err := call()
		var e *client.Error
		if !errors.As(err, &e) || !errors.Is(err, client.ErrRateLimited) {
			t.Fatalf("%s: %v, want ErrRateLimited", what, err)
		}
		if e.Status != http.StatusTooManyRequests || e.Code != "rate_limited" || e.RetryAfter != 2*time.Second {
			t.Errorf("%s: status %d code %q RetryAfter %v, want 429 rate_limited 2s", what, e.Status, e.Code, e.RetryAfter)
		}
	}
	other := srv.Client(cpodtest.Claims{Tenant: "t2", App: alice.App, User: "bob", Scopes: allScopes})
	_, found, err := other.Storage.KV.Get(ctx, "k")
	if err != nil || found {
		t.Errorf("another tenant: found %v, %v; want a clean miss", found, err)
	}
}

// TestCheckResponseRateLimited: CheckResponse reads a 429 from anything on
// the way (a proxy's, without the contract body) with its Retry-After, and
// a bodyless HEAD 429 as rate_limited.
func TestCheckResponseRateLimited(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, "http://example.com/v1/storage/kv/k", nil)
		resp := &http.Response{
			StatusCode: http.StatusTooManyRequests, Request: req,
			Header: http.Header{"Retry-After": {"7"}}, Body: io.NopCloser(strings.NewReader("")),
		}
		err := client.CheckResponse(resp)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != 429 || e.RetryAfter != 7*time.Second {
			t.Fatalf("%s: %#v, want 429 with RetryAfter 7s", method, err)
		}
		if got := errors.Is(err, client.ErrRateLimited); got != (method == "HEAD") {
			t.Errorf("%s: errors.Is(ErrRateLimited) = %v", method, got)
		}
	}
}
