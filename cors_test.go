package storage_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

const (
	appOrigin     = "https://app.example.com"
	foreignOrigin = "https://evil.example.org"
)

// corsServer is an engine that allows the origins, with a token of alice
// (every storage scope) and a file to sign.
func corsServer(t *testing.T, origins ...string) (*cpodtest.Server, string) {
	t.Helper()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.CORSOrigins = origins }))
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "alice", Scopes: allScopes})
	return srv, tok
}

// send makes one request with extra headers and no Authorization unless
// hdr has one.
func send(t *testing.T, srv *cpodtest.Server, method, url string, hdr map[string]string, body string) resp {
	t.Helper()
	if strings.HasPrefix(url, "/") {
		url = srv.URL + url
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return fileSend(t, srv.HTTP.Client(), req)
}

func preflight(t *testing.T, srv *cpodtest.Server, url, origin, method, headers string) resp {
	t.Helper()
	hdr := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
	if headers != "" {
		hdr["Access-Control-Request-Headers"] = headers
	}
	return send(t, srv, http.MethodOptions, url, hdr, "")
}

// list splits a comma-separated header value.
func list(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func containsFold(xs []string, x string) bool {
	return slices.ContainsFunc(xs, func(s string) bool { return strings.EqualFold(s, x) })
}

// noCORS fails unless the response carries no CORS header at all.
func noCORS(t *testing.T, what string, r resp) {
	t.Helper()
	for name := range r.header {
		if strings.HasPrefix(strings.ToLower(name), "access-control-") {
			t.Errorf("%s: CORS header %s: %q, want none (status %d)", what, name, r.header.Get(name), r.status)
		}
	}
}

// TestCORSPreflight: an allowed origin gets 204 with the route's methods,
// the API's request headers and a max age, without any Authorization; a
// foreign origin, another method or an unknown header gets no
// Access-Control-Allow-Origin.
func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	srv, _ := corsServer(t, appOrigin, "http://localhost:3000")
	cases := []struct {
		path, method string
		methods      []string // the route's methods
	}{
		{"/v1/storage/files/docs/a%20b.txt?tier=user", "PUT", []string{"DELETE", "GET", "HEAD", "PUT"}},
		{"/v1/storage/files?prefix=docs/", "GET", []string{"GET"}},
		{"/v1/storage/signed-urls", "POST", []string{"POST"}},
		{"/v1/storage/signed/t1/apps/app-a/r.txt?tier=private&app=app-a&expires=1&sig=x", "GET", []string{"GET", "HEAD", "PUT"}}, // the methods a signed URL serves
		{"/v1/storage/kv/session:abc", "POST", []string{"DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"}},
		{"/v1/storage/db/prefs/theme", "DELETE", []string{"DELETE", "GET", "HEAD", "PATCH", "PUT"}},
		{"/v1/storage/db/prefs/theme?tier=user", "PATCH", []string{"DELETE", "GET", "HEAD", "PATCH", "PUT"}}, // a merge patch with If-Match
		{"/v1/storage/db/sessions/batch", "POST", []string{"DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"}}, // a document named "batch" too
	}
	for _, tc := range cases {
		r := preflight(t, srv, tc.path, appOrigin, tc.method, "authorization,content-type,if-match,range")
		if r.status != http.StatusNoContent {
			t.Fatalf("%s: status %d, want 204; body %s", tc.path, r.status, r.body)
		}
		equal(t, tc.path+" Access-Control-Allow-Origin", r.header.Get("Access-Control-Allow-Origin"), appOrigin)
		methods := list(r.header, "Access-Control-Allow-Methods")
		slices.Sort(methods)
		equal(t, tc.path+" Access-Control-Allow-Methods", strings.Join(methods, ","), strings.Join(tc.methods, ","))
		allowed := list(r.header, "Access-Control-Allow-Headers")
		for _, h := range []string{"Authorization", "Content-Type", "Range", "If-Match", "If-None-Match", "If-Modified-Since"} {
			if !containsFold(allowed, h) {
				t.Errorf("%s: Access-Control-Allow-Headers %q lacks %s", tc.path, allowed, h)
			}
		}
		equal(t, tc.path+" Access-Control-Max-Age", r.header.Get("Access-Control-Max-Age"), "3600")
		if !containsFold(list(r.header, "Vary"), "Origin") {
			t.Errorf("%s: Vary %q lacks Origin", tc.path, r.header.Values("Vary"))
		}
		if r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: credentials allowed", tc.path)
		}
	}
	// Header names are case-insensitive and their order means nothing:
	// browsers send them lower case and sorted, other clients need not.
	for _, h := range []string{"Authorization", "Authorization, Content-Type", "content-type,authorization",
		"Range", "RANGE ,If-Match,, authorization", "If-None-Match, if-none-match", "X-Request-Id,If-Modified-Since"} {
		r := preflight(t, srv, "/v1/storage/files/a.txt", appOrigin, "PUT", h)
		equal(t, "preflight with headers "+h, r.header.Get("Access-Control-Allow-Origin"), appOrigin)
	}
	// The second allowed origin, and origins compare without case.
	r := preflight(t, srv, "/v1/storage/kv/k", "http://localhost:3000", "PUT", "")
	equal(t, "second origin", r.header.Get("Access-Control-Allow-Origin"), "http://localhost:3000")

	refused := []struct{ what, path, origin, method, headers string }{
		{"foreign origin", "/v1/storage/kv/k", foreignOrigin, "PUT", "authorization"},
		{"origin prefix", "/v1/storage/kv/k", appOrigin + ".evil.org", "PUT", ""},
		{"other scheme", "/v1/storage/kv/k", "http://app.example.com", "PUT", ""},
		{"other port", "/v1/storage/kv/k", appOrigin + ":8443", "PUT", ""},
		{"null origin", "/v1/storage/kv/k", "null", "PUT", ""},
		{"method of no route", "/v1/storage/files/r.txt", appOrigin, "PATCH", ""},
		{"method of another route", "/v1/storage/files", appOrigin, "PUT", ""},
		{"header the API does not read", "/v1/storage/kv/k", appOrigin, "PUT", "authorization,x-forwarded-host"},
		{"header the API does not read, mixed case", "/v1/storage/kv/k", appOrigin, "PUT", "X-Forwarded-Host, Authorization"},
		{"header list over 1 KiB", "/v1/storage/kv/k", appOrigin, "PUT", strings.Repeat("authorization, ", 80) + "range"},
	}
	for _, tc := range refused {
		r := preflight(t, srv, tc.path, tc.origin, tc.method, tc.headers)
		for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"} {
			if v := r.header.Get(h); v != "" {
				t.Errorf("%s: %s: %q, want none", tc.what, h, v)
			}
		}
		if r.status >= 500 {
			t.Errorf("%s: status %d", tc.what, r.status)
		}
	}
}

// TestCORSActual: real responses to an allowed origin, errors included,
// name it and expose the API's headers; a foreign origin gets none.
func TestCORSActual(t *testing.T) {
	t.Parallel()
	srv, tok := corsServer(t, appOrigin)
	auth := "Bearer " + tok
	wantCORS := func(what string, r resp) {
		t.Helper()
		equal(t, what+" Access-Control-Allow-Origin", r.header.Get("Access-Control-Allow-Origin"), appOrigin)
		exposed := list(r.header, "Access-Control-Expose-Headers")
		for _, h := range []string{"ETag", "Content-Range", "Content-Disposition", "Last-Modified", "Cpod-Ttl", "Retry-After", "X-Request-Id"} {
			if !containsFold(exposed, h) {
				t.Errorf("%s: Access-Control-Expose-Headers %q lacks %s", what, exposed, h)
			}
		}
		if !containsFold(list(r.header, "Vary"), "Origin") {
			t.Errorf("%s: Vary %q lacks Origin", what, r.header.Values("Vary"))
		}
	}
	r := send(t, srv, "PUT", "/v1/storage/files/docs/r.txt", map[string]string{"Origin": appOrigin, "Authorization": auth, "Content-Type": "text/plain"}, "the report")
	wantStatus(t, r, http.StatusOK, "")
	wantCORS("file put", r)
	r = send(t, srv, "GET", "/v1/storage/files/docs/r.txt", map[string]string{"Origin": appOrigin, "Authorization": auth, "Range": "bytes=0-2"}, "")
	wantStatus(t, r, http.StatusPartialContent, "")
	wantCORS("file range", r)
	r = send(t, srv, "HEAD", "/v1/storage/kv/missing", map[string]string{"Origin": appOrigin, "Authorization": auth}, "")
	wantStatus(t, r, http.StatusNotFound, "")
	wantCORS("kv head", r)
	// An error answer is readable by the app too: no token at all.
	r = send(t, srv, "GET", "/v1/storage/db/prefs/theme", map[string]string{"Origin": appOrigin}, "")
	wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
	wantCORS("401", r)

	// The signed download path, with no Authorization header.
	u := signURL(t, srv, tok, map[string]any{"key": "docs/r.txt"})
	r = send(t, srv, "GET", u, map[string]string{"Origin": appOrigin}, "")
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "signed body", string(r.body), "the report")
	wantCORS("signed download", r)
	r = preflight(t, srv, u, appOrigin, "GET", "range")
	equal(t, "signed preflight status", r.status, http.StatusNoContent)
	equal(t, "signed preflight origin", r.header.Get("Access-Control-Allow-Origin"), appOrigin)

	// A foreign origin gets the answer (CORS is the browser's check) but
	// no header that would let its page read it.
	r = send(t, srv, "GET", "/v1/storage/files/docs/r.txt", map[string]string{"Origin": foreignOrigin, "Authorization": auth}, "")
	wantStatus(t, r, http.StatusOK, "")
	for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Expose-Headers"} {
		if v := r.header.Get(h); v != "" {
			t.Errorf("foreign origin: %s: %q", h, v)
		}
	}
	if !containsFold(list(r.header, "Vary"), "Origin") {
		t.Errorf("foreign origin: Vary %q lacks Origin", r.header.Values("Vary"))
	}
}

// TestCORSNotOutsideStorage: the admin API, operations and unknown paths
// never answer CORS, preflight or not, even for an allowed origin (the
// public OpenAPI document answers every origin: TestOpenAPICORS).
func TestCORSNotOutsideStorage(t *testing.T) {
	t.Parallel()
	srv, _ := corsServer(t, "*")
	admin := "Bearer " + srv.AdminToken
	for _, path := range []string{
		"/v1/oauth/apps", "/v1/oauth/apps/app-a", "/v1/admin/tenants/t1", "/v1/admin/tenants/t1/users/u1/data",
		"/healthz", "/readyz", "/v1/storage/nope", "/v1/storage", "/v1/other",
	} {
		for _, m := range []string{"GET", "POST", "DELETE"} {
			noCORS(t, "preflight "+m+" "+path, preflight(t, srv, path, appOrigin, m, "authorization"))
		}
	}
	r := send(t, srv, "GET", "/v1/oauth/apps", map[string]string{"Origin": appOrigin, "Authorization": admin}, "")
	wantStatus(t, r, http.StatusOK, "")
	noCORS(t, "admin list", r)
	r = send(t, srv, "POST", "/v1/oauth/apps", map[string]string{"Origin": appOrigin, "Authorization": admin},
		`{"client_id":"app-b","name":"B","declared_scopes":["storage.private.read"],"app_type":"spa"}`)
	wantStatus(t, r, http.StatusCreated, "")
	noCORS(t, "admin create", r)
	r = send(t, srv, "GET", "/v1/oauth/apps/app-b", map[string]string{"Origin": appOrigin}, "")
	wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
	noCORS(t, "admin 401", r)
	r = send(t, srv, "GET", "/healthz", map[string]string{"Origin": appOrigin}, "")
	wantStatus(t, r, http.StatusOK, "")
	noCORS(t, "healthz", r)
}

// TestCORSAnyOrigin: "*" allows every origin, and names it.
func TestCORSAnyOrigin(t *testing.T) {
	t.Parallel()
	srv, tok := corsServer(t, "*")
	for _, origin := range []string{appOrigin, foreignOrigin, "http://localhost:5173"} {
		r := preflight(t, srv, "/v1/storage/kv/k", origin, "PUT", "authorization,content-type")
		equal(t, origin+" preflight status", r.status, http.StatusNoContent)
		equal(t, origin+" preflight", r.header.Get("Access-Control-Allow-Origin"), origin)
		r = send(t, srv, "PUT", "/v1/storage/kv/k", map[string]string{"Origin": origin, "Authorization": "Bearer " + tok}, `{"value":"v"}`)
		wantStatus(t, r, http.StatusNoContent, "")
		equal(t, origin+" actual", r.header.Get("Access-Control-Allow-Origin"), origin)
	}
}

// TestCORSWildcardSubdomain: one '*' in an origin stands for any characters.
func TestCORSWildcardSubdomain(t *testing.T) {
	t.Parallel()
	srv, _ := corsServer(t, "https://*.example.com")
	for origin, ok := range map[string]bool{
		"https://app.example.com": true, "https://a.b.example.com": true,
		"https://example.com": false, "http://app.example.com": false, "https://app.example.com.evil.org": false,
		"https://APP.Example.com": true,
		// The '*' stands for host labels, never for a path, port or user.
		"https://evil.org/.example.com": false, "https://evil.org:1/.example.com": false,
		"https://u@evil.org/x.example.com": false, "https://.example.com": false, "https://a..example.com": false,
		"https://a_b.example.com": false, "https://evil.org?.example.com": false,
	} {
		r := preflight(t, srv, "/v1/storage/kv/k", origin, "GET", "authorization")
		if got := r.header.Get("Access-Control-Allow-Origin") == origin; got != ok {
			t.Errorf("%s: allowed = %v, want %v", origin, got, ok)
		}
	}
}

// TestCORSOffByDefault: without CORSOrigins there is no CORS header at all,
// and a preflight is an ordinary request (405).
func TestCORSOffByDefault(t *testing.T) {
	t.Parallel()
	srv, tok := corsServer(t)
	r := preflight(t, srv, "/v1/storage/kv/k", appOrigin, "PUT", "authorization")
	wantStatus(t, r, http.StatusMethodNotAllowed, "invalid_request")
	noCORS(t, "preflight", r)
	r = send(t, srv, "PUT", "/v1/storage/kv/k", map[string]string{"Origin": appOrigin, "Authorization": "Bearer " + tok}, `{"value":1}`)
	wantStatus(t, r, http.StatusNoContent, "")
	noCORS(t, "actual", r)
	if v := r.header.Get("Vary"); v != "" {
		t.Errorf("Vary %q without CORS", v)
	}
}

// TestCORSOriginsChecked: an entry that no browser would send as its Origin
// is a configuration error, not a silent mismatch.
func TestCORSOriginsChecked(t *testing.T) {
	t.Parallel()
	for _, o := range []string{
		"https://app.example.com/", "https://app.example.com/app", "app.example.com", "null", "",
		"https://*.*.example.com", "*://app.example.com", "https://user@app.example.com", "https://app.example.com?x",
	} {
		_, err := storage.New(storage.Config{CORSOrigins: []string{o}})
		if err == nil || !strings.Contains(err.Error(), "CORSOrigins[0]") {
			t.Errorf("CORSOrigins %q: err = %v, want it refused", o, err)
		}
	}
	for _, o := range []string{"*", "https://app.example.com", "http://localhost:3000", "https://*.example.com", "http://[::1]:8080"} {
		_, err := storage.New(storage.Config{CORSOrigins: []string{o}})
		if err != nil && strings.Contains(err.Error(), "CORSOrigins") {
			t.Errorf("CORSOrigins %q refused: %v", o, err)
		}
	}
}

// TestCORSRefusalLogged: a refused preflight is logged at debug level with
// the origin, what it asked for and why (the browser only says CORS
// failed); an allowed one is not, and nothing is logged at info level.
func TestCORSRefusalLogged(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var logs syncBuffer
		srv := cpodtest.NewServer(t,
			cpodtest.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))),
			cpodtest.WithConfig(func(c *storage.Config) { c.CORSOrigins = []string{appOrigin} }))
		refusal := func(r resp) map[string]any {
			t.Helper()
			for _, l := range strings.Split(logs.String(), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "storage: CORS preflight refused" && rec["request_id"] == r.header.Get("X-Request-Id") {
					return rec
				}
			}
			return nil
		}
		cases := []struct {
			origin, method, headers, reason string
		}{
			{foreignOrigin, "PUT", "authorization", "origin not allowed"},
			{appOrigin, "CONNECT", "authorization", "method not allowed here"},
			{appOrigin, "PUT", "authorization,x-secret-header", "request headers not allowed"},
		}
		for _, tc := range cases {
			r := preflight(t, srv, "/v1/storage/kv/k", tc.origin, tc.method, tc.headers)
			noCORS(t, tc.reason, r)
			rec := refusal(r)
			if level != slog.LevelDebug {
				if rec != nil {
					t.Errorf("logged at %v: %v", level, rec)
				}
				continue
			}
			if rec == nil {
				t.Fatalf("%s: no log line; logs:\n%s", tc.reason, logs.String())
			}
			equal(t, tc.reason+": level", rec["level"], any("DEBUG"))
			equal(t, tc.reason+": origin", rec["origin"], any(tc.origin))
			equal(t, tc.reason+": method", rec["method"], any(tc.method))
			if reason, _ := rec["reason"].(string); !strings.HasPrefix(reason, tc.reason) {
				t.Errorf("reason %q, want %q", reason, tc.reason)
			}
		}
		ok := preflight(t, srv, "/v1/storage/kv/k", appOrigin, "PUT", "authorization,content-type")
		equal(t, "allowed preflight", ok.header.Get("Access-Control-Allow-Origin"), appOrigin)
		if rec := refusal(ok); rec != nil {
			t.Errorf("an allowed preflight was logged as refused: %v", rec)
		}
	}
}
