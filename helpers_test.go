package storage_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cpod/storage/cpodtest"
)

// resp is a response read whole.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to the server; body may be nil, a string, []byte or
// any value sent as JSON.
func do(t testing.TB, srv *cpodtest.Server, method, path, token string, body any) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, b}
}

// wantStatus fails the test unless r has the status and, for errors, the code.
func wantStatus(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if code == "" {
		return
	}
	var e struct{ Error, Message string }
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if e.Error != code {
		t.Fatalf("error code %q, want %q; body %s", e.Error, code, r.body)
	}
	if e.Message == "" {
		t.Fatalf("error without message: %s", r.body)
	}
}

// decode unmarshals the response body into v.
func decode(t testing.TB, r resp, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// equal fails the test unless got == want.
func equal[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// allScopes is every storage scope.
var allScopes = []string{
	"storage.private.read", "storage.private.write",
	"storage.user.read", "storage.user.write",
	"storage.shared.read", "storage.shared.write",
}

// mongoOnly skips a test that looks into MongoDB's own collections (the
// layouts, version claims, FerretDB's plans) when srv runs on the SQLite
// store (CPODTEST_STORE=sqlite): what it checks does not exist there. Its
// black-box behaviour is covered by the tests that run on both drivers.
func mongoOnly(t testing.TB, srv *cpodtest.Server) {
	t.Helper()
	if srv.Mongo == nil {
		t.Skip("inspects MongoDB's collections; the server runs on the SQLite store")
	}
}

// redisOnly skips a test of the Redis kv driver's own workings (its key
// format, scripts, stored form, increment nonces, round trips) on the
// SQLite store, which has none of them (FIDELITY.md lists these tests).
func redisOnly(t testing.TB, srv *cpodtest.Server, what string) {
	t.Helper()
	if srv.Redis == nil {
		t.Skipf("tests the Redis kv driver (%s); the server keeps kv in the SQLite store", what)
	}
}

// kvLocations lists the location keys (tiers.go) of every kv key the
// server's store holds: on Redis each of the engine's keys (a counter's
// nonce keys too, with their suffix, such as "t1/apps/a/c:nonces"), on
// SQLite each row of cpod_kv, expired or not.
func kvLocations(t testing.TB, srv *cpodtest.Server) []string {
	t.Helper()
	var out []string
	if srv.Redis == nil {
		rows, err := srv.SQL.Query(`SELECT k FROM cpod_kv ORDER BY k`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				t.Fatal(err)
			}
			out = append(out, k)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, k := range srv.RedisKeys(t) {
		// prefix "{" location "}" suffix, or prefix "}{" hash "}" location "}" suffix
		rest := k[strings.IndexAny(k, "{}"):]
		if strings.HasPrefix(rest, "}{") {
			rest = rest[2+16+1:]
		} else {
			rest = rest[1:]
		}
		i := strings.LastIndexByte(rest, '}')
		out = append(out, rest[:i]+rest[i+1:])
	}
	return out
}

// docsBackend is the name /readyz and the metrics give srv's documents
// store: "mongodb", or "sqlite" on the SQLite store.
func docsBackend(srv *cpodtest.Server) string {
	if srv.Mongo == nil {
		return "sqlite"
	}
	return "mongodb"
}

// backendsJSON is the "backends" object /readyz answers for srv: each
// backend's state, "ok" unless states says otherwise: s3, mongodb and
// redis, or s3 and sqlite on the SQLite store, which holds kv too (keys
// sorted, as encoding/json writes).
func backendsJSON(srv *cpodtest.Server, states map[string]string) string {
	m := map[string]string{"s3": "ok", docsBackend(srv): "ok"}
	if srv.Redis != nil {
		m["redis"] = "ok"
	}
	for k, v := range states {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}
