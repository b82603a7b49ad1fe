package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConsoleSetting: -console / CPOD_CONSOLE defaults to on when -addr is
// a loopback address and off otherwise; either way it can be set.
func TestConsoleSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, true},
		{[]string{"-addr", "localhost:8080"}, nil, true},
		{[]string{"-addr", "[::1]:8080"}, nil, true},
		{[]string{"-addr", ":8080"}, nil, false},
		{[]string{"-addr", "0.0.0.0:8080"}, nil, false},
		{[]string{"-addr", "10.1.2.3:8080"}, nil, false},
		{[]string{"-addr", ":8080", "-console"}, nil, true},
		{[]string{"-console=false"}, nil, false},
		{[]string{"-addr", ":8080"}, map[string]string{"CPOD_CONSOLE": "true"}, true},
		{nil, map[string]string{"CPOD_CONSOLE": "false"}, false},
		{[]string{"-console=true"}, map[string]string{"CPOD_CONSOLE": "false"}, true},
	} {
		c, err := parseConfig(tc.args, envFunc(tc.env), io.Discard)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if c.Console != tc.want {
			t.Errorf("%v %v: console %v, want %v", tc.args, tc.env, c.Console, tc.want)
		}
	}
	_, err := parseConfig(nil, envFunc(map[string]string{"CPOD_CONSOLE": "maybe"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CPOD_CONSOLE (-console) must be true or false") {
		t.Errorf("CPOD_CONSOLE=maybe: %v", err)
	}
}

// TestConsoleServed: the server serves the console beside the engine
// (the engine's paths untouched, a cleaned-looking path still refused by
// the engine), its form mints a token the engine accepts, and with
// -console=false /console/ is the engine's unknown_endpoint.
func TestConsoleServed(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dir)
	b, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	admin := strings.TrimSpace(string(b))
	r := call(t, "GET", srv.URL+"/console/", "", nil, nil)
	if r.status != 200 || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") || !strings.Contains(string(r.body), `<script type="module" src="app.js">`) {
		t.Fatalf("GET /console/: %d %v %s", r.status, r.header, r.body)
	}
	if r := call(t, "GET", srv.URL+"/v1/storage/files/a/../b", admin, nil, nil); r.status == http.StatusMovedPermanently || r.status == 200 {
		t.Fatalf("the engine's path was rewritten beside the console: %d", r.status)
	}
	if r := call(t, "GET", srv.URL+"/healthz", "", nil, nil); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
	// Register an app, mint a token with the console's form, use it.
	r = call(t, "POST", srv.URL+"/v1/oauth/apps", admin, nil, []byte(`{"client_id":"app-c","declared_scopes":["storage.private.read","storage.private.write"]}`))
	if r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	r = call(t, "POST", srv.URL+"/console/api/token", admin, nil, []byte(`{"tenant":"t1","app":"app-c","scopes":["storage.private.write"],"ttl":60}`))
	var minted struct{ Token string }
	if err := json.Unmarshal(r.body, &minted); err != nil || r.status != 200 || minted.Token == "" {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	if r := call(t, "PUT", srv.URL+"/v1/storage/kv/hello", minted.Token, nil, []byte(`{"value":"world"}`)); r.status != http.StatusNoContent {
		t.Fatalf("the minted token: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", srv.URL+"/v1/storage/kv/hello", minted.Token, nil, nil); r.status != http.StatusForbidden {
		t.Fatalf("the minted token read without the read scope: %d %s", r.status, r.body)
	}
	if r := call(t, "POST", srv.URL+"/console/api/token", minted.Token, nil, []byte(`{"tenant":"t1","app":"app-c","scopes":["storage.private.read"]}`)); r.status != http.StatusUnauthorized {
		t.Fatalf("mint with an app's token: %d", r.status)
	}

	off := startServer(t, filepath.Join(t.TempDir(), "cpod-data"), "-console=false")
	r = call(t, "GET", off.URL+"/console/", "", nil, nil)
	if r.status != http.StatusNotFound || !strings.Contains(string(r.body), `"unknown_endpoint"`) {
		t.Fatalf("GET /console/ with -console=false: %d %s", r.status, r.body)
	}
}

// TestConsoleNoDevTokensWithJWT: with a JWT setting the server's tokens
// come from an issuer, so the console offers no token form.
func TestConsoleNoDevTokensWithJWT(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServerEnv(t, []string{"CPOD_JWT_HMAC_SECRET=" + strings.Repeat("j", 32), "CPOD_ADMIN_TOKENS=admin-token-0123456789"}, dir)
	r := call(t, "GET", srv.URL+"/console/api/info", "admin-token-0123456789", nil, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"devTokens":false`) {
		t.Fatalf("info: %d %s", r.status, r.body)
	}
	r = call(t, "POST", srv.URL+"/console/api/token", "admin-token-0123456789", nil, []byte(`{"tenant":"t1","app":"a","scopes":["storage.private.read"]}`))
	if r.status != http.StatusNotFound {
		t.Fatalf("token with a JWT setting: %d %s", r.status, r.body)
	}
}
