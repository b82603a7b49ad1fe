package storage_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	_ "modernc.org/sqlite"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

func TestRoutes(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "GET", "/healthz", "", nil), 200, "")
	r := do(t, srv, "GET", "/readyz", "", nil)
	wantStatus(t, r, 200, "")
	equal(t, "readyz body", strings.TrimSpace(string(r.body)), `{"backends":`+backendsJSON(srv, nil)+`,"status":"ok"}`)
	wantStatus(t, do(t, srv, "GET", "/v1/nope", tok, nil), 404, "unknown_endpoint")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv", tok, nil), 404, "unknown_endpoint")
	r = do(t, srv, "TRACE", "/v1/storage/kv/k", tok, nil)
	wantStatus(t, r, 405, "invalid_request")
	equal(t, "Allow", r.header.Get("Allow"), "PUT, GET, HEAD, POST, DELETE, PATCH")
	equal(t, "content type", r.header.Get("Content-Type"), "application/json")
	if r.header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
}

// TestUnknownEndpoint: a path that matches no route is 404 unknown_endpoint
// naming the method and path, never not_found (which clients read as a
// missing file, document or key), under /v1/storage/ too: a client with /v1
// twice in its base URL or a wrong prefix must not read an empty store. A
// HEAD, which has no body, carries the code in Cpod-Error. A missing key
// stays not_found, in the body and in Cpod-Error.
func TestUnknownEndpoint(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/v1/storage/kv/k"},
		{"HEAD", "/v1/v1/storage/kv/k"},
		{"GET", "/api/v1/storage/db/notes/n1"},
		{"GET", "/v1/v1/storage/files/a.txt"},
		{"POST", "/v1/storage/v1/storage/db/notes/query"},
		{"GET", "/v1/storage/nope"},
		{"GET", "/v1/storage/db/notes"},
		{"GET", "/v1/storage/db/notes/n1/extra"},
		{"DELETE", "/v1/storage"},
		{"GET", "/"},
		{"GET", "/v2/storage/kv/k"},
		{"GET", "/v1/oauth/apps/a/b"},
		{"GET", "/v1/admin/nope"}, // GET /v1/admin/tenants lists tenants (admin_browse.go)
		{"GET", "/v1/admin/tenants/t1/nope"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := do(t, srv, tc.method, tc.path, tok, nil)
			equal(t, "status", r.status, http.StatusNotFound)
			if tc.method == "HEAD" {
				equal(t, "Cpod-Error", r.header.Get("Cpod-Error"), "unknown_endpoint")
				return
			}
			wantStatus(t, r, http.StatusNotFound, "unknown_endpoint")
			var e struct{ Message string }
			decode(t, r, &e)
			if !strings.Contains(e.Message, tc.method+" "+tc.path) || !strings.Contains(e.Message, "base URL") {
				t.Fatalf("message %q names neither the call nor the base URL", e.Message)
			}
		})
	}
	// What is missing at a real endpoint stays not_found.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/missing", tok, nil), 404, "not_found")
	equal(t, "HEAD of a missing key", do(t, srv, "HEAD", "/v1/storage/kv/missing", tok, nil).header.Get("Cpod-Error"), "not_found")
	// A long path is quoted in part.
	r := do(t, srv, "GET", "/x/"+strings.Repeat("a", 5000), tok, nil)
	wantStatus(t, r, http.StatusNotFound, "unknown_endpoint")
	if len(r.body) > 1000 {
		t.Fatalf("the answer to a long path is %d bytes", len(r.body))
	}
}

// TestMountUnderPrefix mounts the engine with http.StripPrefix.
func TestMountUnderPrefix(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	mux := http.NewServeMux()
	mux.Handle("/storage-api/", http.StripPrefix("/storage-api", srv.Engine))
	mux.HandleFunc("/own", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "mine") })
	ts := httptest.NewServer(mux)
	defer ts.Close()
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	req, _ := http.NewRequest("PUT", ts.URL+"/storage-api/v1/storage/kv/a%2Fb", strings.NewReader(`{"value":"v"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	equal(t, "PUT through prefix", res.StatusCode, 204)
	// The escaped slash reached the engine as part of one key.
	r := do(t, srv, "GET", "/v1/storage/kv/a%2Fb", tok, nil)
	wantStatus(t, r, 200, "")
	// A signed URL asked for through the prefix carries the prefix, and
	// downloads through it without a token.
	req, _ = http.NewRequest("PUT", ts.URL+"/storage-api/v1/storage/files/doc.txt", strings.NewReader("hello"))
	req.Header.Set("Authorization", "Bearer "+tok)
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	equal(t, "file PUT through prefix", res.StatusCode, 200)
	req, _ = http.NewRequest("POST", ts.URL+"/storage-api/v1/storage/signed-urls", strings.NewReader(`{"key":"doc.txt"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	var signed struct{ URL string }
	if err := json.NewDecoder(res.Body).Decode(&signed); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if !strings.HasPrefix(signed.URL, ts.URL+"/storage-api/v1/") {
		t.Fatalf("signed URL %q does not carry the mount prefix", signed.URL)
	}
	if res, err = http.Get(signed.URL); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	equal(t, "signed download", string(body), "hello")

	res, err = http.Get(ts.URL + "/own")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	equal(t, "own route", string(b), "mine")
}

// TestBackendDown: a Redis that refuses connections, or accepts and never
// answers, gives 503 backend_unavailable with Retry-After within the
// deadline, and the response names no host.
func TestBackendDown(t *testing.T) {
	t.Parallel()
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	go func() {
		for {
			c, err := stalled.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, never answer
		}
	}()
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	refused.Close()
	for name, addr := range map[string]string{"refused": refusedAddr, "stalled": stalled.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			srv := cpodtest.NewServer(t, cpodtest.WithRedisURL("redis://"+addr+"/0"),
				cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = 300 * time.Millisecond }))
			redisOnly(t, srv, "a Redis that refuses or never answers; the SQLite store runs in process")
			srv.RegisterApp(t, "app-a", allScopes...)
			tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
			start := time.Now()
			r := do(t, srv, "GET", "/v1/storage/kv/k", tok, nil)
			wantStatus(t, r, 503, "backend_unavailable")
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("took %v", took)
			}
			equal(t, "Retry-After", r.header.Get("Retry-After"), "1")
			host, port, _ := net.SplitHostPort(addr)
			for _, leak := range []string{host, port, "t1/apps", "cpodtest:", "redis", "dial"} {
				if strings.Contains(string(r.body), leak) {
					t.Fatalf("response %s leaks %q", r.body, leak)
				}
			}
			wantStatus(t, do(t, srv, "GET", "/readyz", "", nil), 503, "")
		})
	}
}

// TestConfigDocumentsStore: New takes exactly one store, MongoDB (with
// Redis) or SQLite (TestNewStoreSets tries every mix with Redis).
func TestConfigDocumentsStore(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	base := storage.Config{
		S3: srv.S3, Bucket: srv.Bucket,
		Auth:       storage.AuthConfig{Keys: []storage.Key{{Secret: srv.TokenKey()}}},
		SigningKey: []byte(strings.Repeat("k", 32)),
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// New calls no backend: a client that never connects will do.
	mc, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(context.Background())
	mdb := mc.Database("unused")
	for _, tc := range []struct {
		name  string
		set   func(c *storage.Config)
		valid bool
	}{
		{"neither", func(c *storage.Config) {}, false},
		{"both", func(c *storage.Config) { c.Mongo, c.SQL = mdb, db }, false},
		{"mongodb", func(c *storage.Config) { c.Mongo, c.Redis = mdb, rdb }, true},
		{"sqlite", func(c *storage.Config) { c.SQL = db }, true},
	} {
		c := base
		tc.set(&c)
		_, err := storage.New(c)
		if (err == nil) != tc.valid || (err != nil && !(strings.Contains(err.Error(), "Config.Mongo") && strings.Contains(err.Error(), "Config.SQL"))) {
			t.Errorf("%s: New: %v, want valid %v", tc.name, err, tc.valid)
		}
	}
}
