package main

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	storage "github.com/cpod/storage"
)

// TestRateLimitSetting: CPOD_RATE_LIMIT / -rate-limit, written
// <n>/s[,burst=<m>], becomes the engine's Config.RateLimit (off by
// default), with -rate-limit-app for each app; anything else stops the
// server with one message naming the setting.
func TestRateLimitSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want storage.RateLimit
	}{
		{nil, nil, storage.RateLimit{}},
		{[]string{"-rate-limit", "100/s,burst=200"}, nil, storage.RateLimit{PerSecond: 100, Burst: 200}},
		{nil, map[string]string{"CPOD_RATE_LIMIT": "100/s"}, storage.RateLimit{PerSecond: 100}},
		{nil, map[string]string{"CPOD_RATE_LIMIT": " 2.5/s , burst=4 "}, storage.RateLimit{PerSecond: 2.5, Burst: 4}},
		{[]string{"-rate-limit=0.001/s"}, nil, storage.RateLimit{PerSecond: 0.001}},
		{[]string{"-rate-limit", "1000000/s,burst=1000000"}, nil, storage.RateLimit{PerSecond: 1e6, Burst: 1e6}},
		{[]string{"-rate-limit", "100/s,burst=200", "-rate-limit-app", "10/s"}, nil, storage.RateLimit{PerSecond: 100, Burst: 200, AppPerSecond: 10}},
		{[]string{"-rate-limit", "100/s"}, map[string]string{"CPOD_RATE_LIMIT_APP": "5/s,burst=8"}, storage.RateLimit{PerSecond: 100, AppPerSecond: 5, AppBurst: 8}},
		// A flag beats the variable.
		{[]string{"-rate-limit", "7/s"}, map[string]string{"CPOD_RATE_LIMIT": "9/s"}, storage.RateLimit{PerSecond: 7}},
	} {
		c, err := parseConfig(tc.args, envFunc(tc.env), io.Discard)
		if err != nil {
			t.Errorf("%q %v: %v", tc.args, tc.env, err)
			continue
		}
		if c.RateLimit != tc.want {
			t.Errorf("%q %v: RateLimit %+v, want %+v", tc.args, tc.env, c.RateLimit, tc.want)
		}
	}

	const form = "is not <n>/s[,burst=<m>], such as 100/s or 100/s,burst=200"
	for _, tc := range []struct{ flag, value, want string }{
		{"rate-limit", "100", form},
		{"rate-limit", "100/m", form},
		{"rate-limit", "100/s,", form},
		{"rate-limit", "100/s,burst=", form},
		{"rate-limit", "100/s,burst=1.5", form},
		{"rate-limit", "100/s;burst=2", form},
		{"rate-limit", "100/s,burst=2,burst=3", form},
		{"rate-limit", "-1/s", form},
		{"rate-limit", "1e3/s", form},
		{"rate-limit", ".5/s", form},
		{"rate-limit", "off", form},
		{"rate-limit", "0/s", "the rate must be from 0.001/s to 1000000/s"},
		{"rate-limit", "2000000/s", "the rate must be from 0.001/s to 1000000/s"},
		{"rate-limit", "100/s,burst=0", "the burst must be from 1 to 1000000"},
		{"rate-limit", "100/s,burst=99999999999999999999", "the burst must be from 1 to 1000000"},
	} {
		for how, in := range map[string]struct {
			args []string
			env  map[string]string
		}{
			"flag":     {[]string{"-" + tc.flag + "=" + tc.value}, nil},
			"variable": {nil, map[string]string{lookupSetting(tc.flag).env: tc.value}},
		} {
			_, err := parseConfig(in.args, envFunc(in.env), io.Discard)
			var ce *configError
			if !errors.As(err, &ce) || len(ce.problems) != 1 || !strings.Contains(ce.problems[0], "CPOD_RATE_LIMIT (-rate-limit): ") ||
				!strings.Contains(ce.problems[0], tc.want) {
				t.Errorf("%s %q: %v, want the one problem %q", how, tc.value, err, tc.want)
			}
		}
	}
	_, err := parseConfig([]string{"-rate-limit", "10/s", "-rate-limit-app", "1/h"}, envFunc(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CPOD_RATE_LIMIT_APP (-rate-limit-app): \"1/h\" "+form) {
		t.Errorf("bad -rate-limit-app: %v", err)
	}
	_, err = parseConfig([]string{"-rate-limit-app", "1/s"}, envFunc(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CPOD_RATE_LIMIT_APP (-rate-limit-app) is set but CPOD_RATE_LIMIT (-rate-limit) is not") {
		t.Errorf("-rate-limit-app alone: %v", err)
	}
}

// TestRateLimitServer: the built server with -rate-limit answers a tenant
// over its limit 429 rate_limited with Retry-After and the RateLimit-*
// headers, while another tenant is served; a malformed value stops it with
// exit code 2 naming the setting.
func TestRateLimitServer(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	// One request every 100 s, two at once: the test's own pace does not
	// matter.
	srv := startServer(t, dataDir, "-rate-limit", "0.01/s,burst=2")
	admin := readFile(t, filepath.Join(dataDir, adminTokenFile))
	want(t, "register app", call(t, "POST", srv.URL+"/v1/oauth/apps", admin, map[string]string{"Content-Type": "application/json"}, []byte(demoApp)), 201)
	t1 := mintToken(t, dataDir, "--tenant", "t1", "--app", "app-demo", "--scope", "storage.private.read")
	t2 := mintToken(t, dataDir, "--tenant", "t2", "--app", "app-demo", "--scope", "storage.private.read")
	for i := range 2 {
		r := call(t, "GET", srv.URL+"/v1/storage/kv/k", t1, nil, nil)
		want(t, "within the burst", r, 404)
		if got := r.header.Get("RateLimit-Remaining"); got != []string{"1", "0"}[i] {
			t.Errorf("request %d: RateLimit-Remaining %q", i+1, got)
		}
	}
	r := call(t, "GET", srv.URL+"/v1/storage/kv/k", t1, nil, nil)
	want(t, "over the limit", r, 429)
	if !strings.Contains(string(r.body), `"error":"rate_limited"`) {
		t.Errorf("429 body %s", r.body)
	}
	for h, v := range map[string]string{"Retry-After": "100", "RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "200"} {
		if got := r.header.Get(h); got != v {
			// Real time runs: a second may have passed.
			if !(h == "Retry-After" && got == "99" || h == "RateLimit-Reset" && got == "199") {
				t.Errorf("429 %s: %q, want %q", h, got, v)
			}
		}
	}
	want(t, "another tenant", call(t, "GET", srv.URL+"/v1/storage/kv/k", t2, nil, nil), 404)
	r = call(t, "GET", srv.URL+"/healthz", "", nil, nil)
	want(t, "healthz", r, 200)
	if r.header.Get("RateLimit-Limit") != "" {
		t.Errorf("healthz carries RateLimit-Limit")
	}

	code, _, stderr := runBinary(t, nil, "-addr", "127.0.0.1:0", "-data-dir", filepath.Join(t.TempDir(), "d"), "-rate-limit", "100/minute")
	if code != 2 || !strings.Contains(stderr, `CPOD_RATE_LIMIT (-rate-limit): "100/minute" is not <n>/s[,burst=<m>]`) {
		t.Errorf("malformed -rate-limit: exit %d, %q", code, stderr)
	}
}
