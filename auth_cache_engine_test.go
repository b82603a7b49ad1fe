package storage_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// The verified-token cache through the engine: the engine clock still
// expires a cached token exactly, and the app lookup is not cached with it.

// TestAuthCachedTokenExpiresOnEngineClock: with a CacheTTL longer than the
// token's life, a token that was accepted (and cached) is refused once the
// engine clock passes its exp; on real servers too (AdvanceClock moves only
// the engine's clock).
func TestAuthCachedTokenExpiresOnEngineClock(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Auth.CacheTTL = time.Minute }))
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes, TTL: 3 * time.Second})
	for range 2 {
		wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/missing", tok, nil), http.StatusNotFound, "not_found")
	}
	srv.AdvanceClock(4 * time.Second)
	r := do(t, srv, "GET", "/v1/storage/kv/missing", tok, nil)
	wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
	equal(t, "WWW-Authenticate", r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token", error_description="expired"`)
}

// TestAuthCachedTokenAppChange: a cached token does not cache its app: an
// app that stops declaring a scope refuses the next call with it, and an
// app that is deleted refuses the token.
func TestAuthCachedTokenAppChange(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Auth.CacheTTL = time.Minute }))
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/missing", tok, nil), http.StatusNotFound, "not_found")
	ctx := context.Background()
	write := []string{"storage.private.write"}
	if _, err := srv.Engine.UpdateApp(ctx, "app-a", storage.AppUpdate{DeclaredScopes: &write}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/missing", tok, nil), http.StatusForbidden, "invalid_scope")
	if err := srv.Engine.DeleteApp(ctx, "app-a"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/missing", tok, nil), http.StatusUnauthorized, "invalid_token")
}
