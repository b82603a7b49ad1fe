package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cpod/storage/client"
)

// TestWrongBaseURL: a base URL with /v1 twice or a wrong prefix reaches no
// endpoint. Every call is then an error naming the URL called, never the
// "missing" of a get or an exists (found == false, nil error), which would
// read as an empty store: the engine answers 404 unknown_endpoint, in the
// body or, for HEAD, in Cpod-Error.
func TestWrongBaseURL(t *testing.T) {
	t.Parallel()
	srv, good := newEngine(t)
	ctx := context.Background()
	must(t, "Set", good.Storage.KV.Set(ctx, "k", "v", nil))
	tok := srv.Token(alice)
	for _, suffix := range []string{"/v1", "/api", "/v1/storage"} {
		base := srv.URL + suffix
		c, err := client.New(base, client.WithToken(tok))
		must(t, "New", err)
		notes := c.Storage.DB.Collection("notes", nil)
		calls := []struct {
			name, path string
			call       func() error
		}{
			{"KV.Get", "/v1/storage/kv/k", func() error { _, _, err := c.Storage.KV.Get(ctx, "k"); return err }},
			{"KV.Exists", "/v1/storage/kv/k", func() error { _, err := c.Storage.KV.Exists(ctx, "k"); return err }},
			{"KV.TTL", "/v1/storage/kv/k", func() error { _, err := c.Storage.KV.TTL(ctx, "k"); return err }},
			{"Collection.Get", "/v1/storage/db/notes/n1", func() error { _, err := notes.Get(ctx, "n1", nil); return err }},
			{"Collection.Exists", "/v1/storage/db/notes/n1", func() error { _, err := notes.Exists(ctx, "n1"); return err }},
			{"Files.Read", "/v1/storage/files/a.txt", func() error { _, err := c.Storage.Files.Read(ctx, "a.txt", nil); return err }},
		}
		for _, tc := range calls {
			err := tc.call()
			what := suffix + " " + tc.name
			if err == nil {
				t.Errorf("%s: no error, want unknown_endpoint", what)
				continue
			}
			wantErr(t, what, err, client.ErrUnknownEndpoint)
			if errors.Is(err, client.ErrNotFound) {
				t.Errorf("%s: %v reads as not_found", what, err)
			}
			if url := base + tc.path; !strings.Contains(err.Error(), url) {
				t.Errorf("%s: %q does not name the URL called, %s", what, err, url)
			}
		}
	}
}

// TestForeignNotFound: a 404 that is not the engine's not_found (another
// server or a proxy in front, with or without a body) is an error naming the
// URL, for HEAD too, never "missing".
func TestForeignNotFound(t *testing.T) {
	t.Parallel()
	foreign := httptest.NewServer(http.NotFoundHandler())
	defer foreign.Close()
	c, err := client.New(foreign.URL+"/storage", client.WithToken("tok"))
	must(t, "New", err)
	ctx := context.Background()
	_, found, err := c.Storage.KV.Get(ctx, "k")
	checkForeign(t, "KV.Get", found, err, foreign.URL+"/storage/v1/storage/kv/k")
	found, err = c.Storage.KV.Exists(ctx, "k")
	checkForeign(t, "KV.Exists", found, err, foreign.URL+"/storage/v1/storage/kv/k")
	found, err = c.Storage.DB.Collection("c", nil).Exists(ctx, "d")
	checkForeign(t, "Collection.Exists", found, err, foreign.URL+"/storage/v1/storage/db/c/d")
	found, err = c.Storage.DB.Collection("c", nil).Get(ctx, "d", nil)
	checkForeign(t, "Collection.Get", found, err, foreign.URL+"/storage/v1/storage/db/c/d")
}

func checkForeign(t *testing.T, what string, found bool, err error, url string) {
	t.Helper()
	var e *client.Error
	switch {
	case found:
		t.Errorf("%s: found", what)
	case !errors.As(err, &e):
		t.Errorf("%s: err = %v, want a *client.Error", what, err)
	case errors.Is(err, client.ErrNotFound) || e.Status != http.StatusNotFound:
		t.Errorf("%s: %v, want a 404 that is not not_found", what, err)
	case !strings.Contains(e.Message, url) || !strings.Contains(e.Message, "base URL"):
		t.Errorf("%s: message %q names neither %s nor the base URL", what, e.Message, url)
	}
}

// TestCollectionExists: Exists is a HEAD: true with the version in ETag for
// a stored document, false with no error for a missing one.
func TestCollectionExists(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	ctx := context.Background()
	notes := c.Storage.DB.Collection("notes", nil)
	var setTag, headTag string
	must(t, "Set", notes.Set(ctx, "n1", map[string]string{"text": "hi"}, client.ETag(&setTag)))
	ok, err := notes.Exists(ctx, "n1", client.ETag(&headTag))
	if err != nil || !ok {
		t.Fatalf("Exists(n1) = %v, %v; want true", ok, err)
	}
	if headTag == "" || headTag != setTag {
		t.Errorf("Exists ETag %q, want the Set's %q", headTag, setTag)
	}
	ok, err = notes.Exists(ctx, "n2")
	if err != nil || ok {
		t.Fatalf("Exists(n2) = %v, %v; want false, nil", ok, err)
	}
	ok, err = c.Storage.DB.Collection("notes", &client.CollectionOptions{Tier: client.TierShared}).Exists(ctx, "n1")
	if err != nil || ok {
		t.Fatalf("Exists(n1) in the shared tier = %v, %v; want false, nil", ok, err)
	}
	if _, err := notes.Exists(ctx, "n1", client.IfMatch(setTag)); !errors.Is(err, client.ErrInvalidRequest) {
		t.Errorf("Exists with IfMatch: %v, want ErrInvalidRequest", err)
	}
}
