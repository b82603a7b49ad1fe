package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// The contract's error codes as the real engine sends them, each arriving as
// its sentinel. The file and document codes (invalid_cursor, expired,
// invalid_signature) are covered in files_test.go and db_test.go.
func TestEngineErrorsAreSentinels(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	ctx := context.Background()

	readOnlyApp := cpodtest.Claims{Tenant: "t1", App: "reader", User: "u1", Scopes: []string{"storage.private.read"}}
	srv.RegisterApp(t, readOnlyApp.App, readOnlyApp.Scopes...)
	srv.RegisterApp(t, "rw", "storage.private.read", "storage.private.write", "storage.user.read")

	full := srv.Client(alice)
	must(t, "Set", full.Storage.KV.Set(ctx, "text", "abc", nil))

	unregistered, err := client.New(srv.URL, client.WithToken(srv.Token(cpodtest.Claims{Tenant: "t1", App: "nobody", Scopes: allScopes})))
	must(t, "New", err)
	garbage, err := client.New(srv.URL, client.WithToken("not-a-jwt"))
	must(t, "New", err)
	anonymous, err := client.New(srv.URL)
	must(t, "New", err)

	tests := []struct {
		name   string
		call   func() error
		want   error
		status int
	}{
		{"invalid_request: unknown tier", func() error {
			return full.Storage.KV.WithTier("Private").Set(ctx, "k", "v", nil)
		}, client.ErrInvalidRequest, 400},
		{"invalid_token: garbage", func() error { return garbage.Storage.KV.Set(ctx, "k", "v", nil) }, client.ErrInvalidToken, 401},
		{"invalid_token: no token", func() error { _, _, err := anonymous.Storage.KV.Get(ctx, "k"); return err }, client.ErrInvalidToken, 401},
		{"invalid_token: app not registered", func() error { _, _, err := unregistered.Storage.KV.Get(ctx, "k"); return err }, client.ErrInvalidToken, 401},
		{"invalid_token: on HEAD", func() error { _, err := garbage.Storage.KV.Exists(ctx, "k"); return err }, client.ErrInvalidToken, 401},
		{"invalid_scope: write not declared", func() error {
			c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "reader", User: "u1", Scopes: allScopes})
			return c.Storage.KV.Set(ctx, "k", "v", nil)
		}, client.ErrInvalidScope, 403},
		{"invalid_scope: on HEAD", func() error {
			c := srv.Client(readOnlyApp)
			_, err := c.Storage.KV.WithTier(client.TierShared).Exists(ctx, "k")
			return err
		}, client.ErrInvalidScope, 403},
		{"insufficient_scope: write not granted", func() error {
			c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "rw", User: "u1", Scopes: []string{"storage.private.read"}})
			return c.Storage.KV.Del(ctx, "k")
		}, client.ErrInsufficientScope, 403},
		{"insufficient_scope: on HEAD", func() error {
			c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "rw", User: "u1", Scopes: []string{"storage.private.write"}})
			_, err := c.Storage.KV.TTL(ctx, "k")
			return err
		}, client.ErrInsufficientScope, 403},
		{"user_required: client-credentials token", func() error {
			c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "rw", Scopes: []string{"storage.user.read"}})
			_, _, err := c.Storage.KV.WithTier(client.TierUser).Get(ctx, "k")
			return err
		}, client.ErrUserRequired, 403},
		{"user_required: on HEAD", func() error {
			c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "rw", User: "rw", Scopes: []string{"storage.user.read"}})
			_, err := c.Storage.KV.WithTier(client.TierUser).Exists(ctx, "k")
			return err
		}, client.ErrUserRequired, 403},
		{"not_found: TTL of a missing key", func() error { _, err := full.Storage.KV.TTL(ctx, "missing"); return err }, client.ErrNotFound, 404},
		{"too_large: kv value", func() error {
			return full.Storage.KV.Set(ctx, "k", strings.Repeat("x", 1<<20+1), nil)
		}, client.ErrTooLarge, 413},
		{"not_integer: incr on text", func() error { _, err := full.Storage.KV.Incr(ctx, "text", 1); return err }, client.ErrNotInteger, 409},
	}
	for _, tc := range tests {
		err := tc.call()
		var e *client.Error
		if !errors.As(err, &e) {
			t.Errorf("%s: err = %v, want a *client.Error", tc.name, err)
			continue
		}
		if !errors.Is(err, tc.want) || e.Status != tc.status {
			t.Errorf("%s: got %d %q (%s), want %d %v", tc.name, e.Status, e.Code, e.Message, tc.status, tc.want)
		}
	}
}

// conflict has no storage call that sends it; registering an app twice does,
// and CheckResponse turns that response into ErrConflict.
func TestEngineConflictThroughCheckResponse(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "dup")
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/oauth/apps",
		strings.NewReader(`{"client_id":"dup","name":"Dup","declared_scopes":[],"app_type":"service"}`))
	must(t, "request", err)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, "POST /v1/oauth/apps", err)
	defer resp.Body.Close()
	err = client.CheckResponse(resp)
	var e *client.Error
	if !errors.As(err, &e) || !errors.Is(err, client.ErrConflict) || e.Status != http.StatusConflict {
		t.Errorf("second registration: %v, want 409 ErrConflict", err)
	}
}

// A backend that fails surfaces as ErrBackendUnavailable (with RetryAfter)
// or ErrInternal, never as a transport error.
func TestEngineBackendFailures(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	m := srv.Miniredis()
	if m == nil {
		t.Skip("needs the in-process miniredis")
	}
	ctx := context.Background()

	m.SetError("ERR injected failure")
	_, _, err := c.Storage.KV.Get(ctx, "k")
	var e *client.Error
	if !errors.As(err, &e) || !errors.Is(err, client.ErrInternal) || e.Status != 500 {
		t.Errorf("Redis error reply: err = %v, want 500 ErrInternal", err)
	} else if strings.Contains(e.Message, "injected") {
		t.Errorf("internal error leaks its cause: %q", e.Message)
	}
	m.SetError("")

	m.Close()
	start := time.Now()
	_, _, err = c.Storage.KV.Get(ctx, "k")
	if !errors.As(err, &e) || !errors.Is(err, client.ErrBackendUnavailable) || e.Status != 503 || e.RetryAfter <= 0 {
		t.Errorf("Redis down: err = %#v, want 503 ErrBackendUnavailable with RetryAfter (after %v)", err, time.Since(start))
	}
}
