package main

import (
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCORSOriginsSetting: CPOD_CORS_ORIGINS / -cors-origins is a
// comma-separated list handed to the engine, which answers preflights from
// those origins; an entry that is not an origin stops the server.
func TestCORSOriginsSetting(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, envFunc(map[string]string{"CPOD_CORS_ORIGINS": " https://app.example.com, http://localhost:3000 ,"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.CORSOrigins, []string{"https://app.example.com", "http://localhost:3000"}) {
		t.Errorf("CORSOrigins = %q", c.CORSOrigins)
	}
	if c, err = parseConfig(nil, envFunc(nil), io.Discard); err != nil || c.CORSOrigins != nil {
		t.Errorf("default CORSOrigins = %q, %v; want none", c.CORSOrigins, err)
	}

	srv := startServer(t, filepath.Join(t.TempDir(), "cpod-data"), "-cors-origins", "https://app.example.com")
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/v1/storage/kv/k", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "PUT")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := preflight("https://app.example.com"); res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("allowed origin: %d, Access-Control-Allow-Origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
	if res := preflight("https://evil.example.org"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin allowed: %q", res.Header.Get("Access-Control-Allow-Origin"))
	}

	code, _, stderr := runBinary(t, nil, "-addr", "127.0.0.1:0", "-data-dir", filepath.Join(t.TempDir(), "d"), "-cors-origins", "https://app.example.com/")
	if code != 1 || !strings.Contains(stderr, "CORSOrigins") {
		t.Errorf("origin with a path: exit %d, %q", code, stderr)
	}
}
