package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// allScopes declares and grants every storage scope.
var allScopes = []string{
	"storage.private.read", "storage.private.write",
	"storage.user.read", "storage.user.write",
	"storage.shared.read", "storage.shared.write",
}

// alice is the identity most tests act as.
var alice = cpodtest.Claims{Tenant: "t1", App: "app-a", User: "alice", Scopes: allScopes}

// newEngine starts the real engine and returns a client acting as alice.
func newEngine(t *testing.T) (*cpodtest.Server, *client.Client) {
	t.Helper()
	srv := cpodtest.NewServer(t)
	return srv, srv.Client(alice)
}

// requireFiles skips the test when the engine has no files endpoints yet
// (they answer 404 "no such endpoint"); with the endpoints in place it never
// skips.
func requireFiles(t *testing.T, c *client.Client) {
	t.Helper()
	_, err := c.Storage.Files.List(context.Background(), "", nil)
	if errors.Is(err, client.ErrNotFound) {
		t.Skipf("the engine has no files endpoints yet: %v", err)
	}
}

// requireDocuments skips the test when the engine has no documents
// endpoints yet.
func requireDocuments(t *testing.T, c *client.Client) {
	t.Helper()
	_, err := c.Storage.DB.Collection("probe", nil).Query(context.Background(), client.QueryOptions{Limit: 1})
	if errors.Is(err, client.ErrNotFound) {
		t.Skipf("the engine has no documents endpoints yet: %v", err)
	}
}

// wantErr fails the test unless err matches the sentinel.
func wantErr(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: err = %v, want %v", what, err, sentinel)
	}
}

// must fails the test at once on an error.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
