package storage_test

import (
	"net/http"
	"testing"

	"github.com/cpod/storage/cpodtest"
)

// TestDocumentsHead: HEAD /db/{c}/{k} answers like GET without a body: 200
// with the document's current ETag, or 404 with the code not_found in
// Cpod-Error (a HEAD answer has no body); it needs the read scope, and sees
// only the caller's tier, like GET.
func TestDocumentsHead(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	put := do(t, srv, "PUT", "/v1/storage/db/notes/n1", tok, map[string]any{"text": "hello"})
	wantStatus(t, put, http.StatusOK, "")

	r := do(t, srv, "HEAD", "/v1/storage/db/notes/n1", tok, nil)
	equal(t, "status", r.status, http.StatusOK)
	equal(t, "body bytes", len(r.body), 0)
	equal(t, "ETag", r.header.Get("ETag"), put.header.Get("ETag"))
	if r.header.Get("ETag") == "" {
		t.Fatal("HEAD answered no ETag")
	}
	get := do(t, srv, "GET", "/v1/storage/db/notes/n1", tok, nil)
	equal(t, "Content-Length as GET's", r.header.Get("Content-Length"), get.header.Get("Content-Length"))

	// A write changes the ETag HEAD answers.
	put2 := do(t, srv, "PUT", "/v1/storage/db/notes/n1", tok, map[string]any{"text": "again"})
	equal(t, "ETag after a write", do(t, srv, "HEAD", "/v1/storage/db/notes/n1", tok, nil).header.Get("ETag"), put2.header.Get("ETag"))

	missing := func(path string) {
		t.Helper()
		r := do(t, srv, "HEAD", path, tok, nil)
		equal(t, path+" status", r.status, http.StatusNotFound)
		equal(t, path+" Cpod-Error", r.header.Get("Cpod-Error"), "not_found")
		equal(t, path+" body bytes", len(r.body), 0)
	}
	missing("/v1/storage/db/notes/n2")
	missing("/v1/storage/db/other/n1")
	missing("/v1/storage/db/notes/n1?tier=user")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/db/notes/n1", tok, nil), http.StatusNoContent, "")
	missing("/v1/storage/db/notes/n1")

	// The read scope is needed, as for GET.
	writeOnly := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: []string{"storage.private.write"}})
	r = do(t, srv, "HEAD", "/v1/storage/db/notes/n1", writeOnly, nil)
	equal(t, "write-only status", r.status, http.StatusForbidden)
	equal(t, "write-only Cpod-Error", r.header.Get("Cpod-Error"), "insufficient_scope")
	// Bad input is refused as for GET.
	r = do(t, srv, "HEAD", "/v1/storage/db/no$such/n1", tok, nil)
	equal(t, "bad collection", r.status, http.StatusBadRequest)
	equal(t, "bad collection Cpod-Error", r.header.Get("Cpod-Error"), "invalid_request")
}
