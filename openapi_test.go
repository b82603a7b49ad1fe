package storage_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"testing"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestOpenAPIServed: GET /v1/openapi.json answers without authentication
// the repository's openapi.json, byte for byte.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	r := do(t, srv, "GET", "/v1/openapi.json", "", nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "content type", r.header.Get("Content-Type"), "application/json")
	if !bytes.Equal(r.body, file) {
		t.Fatalf("served document (%d bytes) differs from openapi.json (%d bytes)", len(r.body), len(file))
	}
	var doc struct {
		OpenAPI string
		Paths   map[string]any
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	equal(t, "openapi version", doc.OpenAPI[:2], "3.")
	for _, p := range []string{"/v1/storage/files/{path}", "/v1/storage/kv/{key}", "/v1/storage/db/{collection}/query", "/v1/oauth/apps", "/v1/storage/signed-urls"} {
		if doc.Paths[p] == nil {
			t.Errorf("the document lacks %s", p)
		}
	}
	// Other methods are not routes.
	wantStatus(t, do(t, srv, "PUT", "/v1/openapi.json", "", "{}"), http.StatusMethodNotAllowed, "invalid_request")
}

// TestOpenAPIEncodedSlash: a client generated from the document sends the
// '/' of a file path or kv key as %2F (one path parameter); the engine reads
// it as '/', the same file or key as the raw form.
func TestOpenAPIEncodedSlash(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/docs%2Fr.txt", tok, "the report"), http.StatusOK, "")
	r := do(t, srv, "GET", "/v1/storage/files/docs/r.txt", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "file", string(r.body), "the report")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/session%2Fabc", tok, map[string]any{"value": "v"}), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/session/abc", tok, nil), http.StatusOK, "")
}

// TestOpenAPICORS: any origin may load /v1/openapi.json (Swagger UI served
// elsewhere), with or without Config.CORSOrigins: Access-Control-Allow-
// Origin "*", never credentials; a preflight is 204 allowing GET. The
// storage API's CORS stays as configured.
func TestOpenAPICORS(t *testing.T) {
	t.Parallel()
	for name, srv := range map[string]*cpodtest.Server{
		"no CORSOrigins":  cpodtest.NewServer(t),
		"one CORSOrigins": cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.CORSOrigins = []string{appOrigin} })),
	} {
		r := send(t, srv, "GET", "/v1/openapi.json", map[string]string{"Origin": "https://editor.swagger.io"}, "")
		wantStatus(t, r, http.StatusOK, "")
		equal(t, name+": Access-Control-Allow-Origin", r.header.Get("Access-Control-Allow-Origin"), "*")
		equal(t, name+": Access-Control-Allow-Credentials", r.header.Get("Access-Control-Allow-Credentials"), "")
		p := preflight(t, srv, "/v1/openapi.json", "https://editor.swagger.io", "GET", "accept,x-custom")
		equal(t, name+": preflight status", p.status, http.StatusNoContent)
		equal(t, name+": preflight origin", p.header.Get("Access-Control-Allow-Origin"), "*")
		equal(t, name+": preflight methods", p.header.Get("Access-Control-Allow-Methods"), "GET")
		equal(t, name+": preflight headers", p.header.Get("Access-Control-Allow-Headers"), "*")
		// The storage API is not opened by it.
		noCORS(t, name+": storage preflight from another origin", preflight(t, srv, "/v1/storage/kv/k", "https://editor.swagger.io", "GET", "authorization"))
	}
}
