package storage_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestAuthRefusesCrit: RFC 7515 section 4.1.11: a recipient that does not
// understand every extension listed in crit must refuse the token. The
// engine understands none, so any crit header (array, empty, null, string,
// naming a registered header) is 401 invalid_token, with configured keys
// and with a Keyfunc alike. jku and friends are refused with a Keyfunc too.
func TestAuthRefusesCrit(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"keys", "keyfunc"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			// With a Keyfunc, the key is the server's own token key, read
			// once the server exists (before any request).
			var key []byte
			var opts []cpodtest.Option
			if mode == "keyfunc" {
				opts = append(opts, cpodtest.WithConfig(func(c *storage.Config) {
					c.Auth = storage.AuthConfig{
						Keyfunc:    func(*jwt.Token) (any, error) { return key, nil },
						Algorithms: []string{"HS256"},
					}
				}))
			}
			srv := cpodtest.NewServer(t, opts...)
			key = srv.TokenKey()
			srv.RegisterApp(t, "app-a", allScopes...)
			headers := map[string]map[string]any{
				"crit unknown extension": {"crit": []any{"x-unknown"}, "x-unknown": true},
				"crit unknown, no value": {"crit": []any{"x-unknown"}},
				"crit empty array":       {"crit": []any{}},
				"crit null":              {"crit": nil},
				"crit string":            {"crit": "x-unknown"},
				"crit registered name":   {"crit": []any{"exp"}},
				"crit b64":               {"crit": []any{"b64"}, "b64": false},
				"jku":                    {"jku": "http://127.0.0.1:1/jwks"},
				"jwk":                    {"jwk": map[string]any{"kty": "oct", "k": "AAAA"}},
				"x5u":                    {"x5u": "http://127.0.0.1:1/cert"},
			}
			for name, h := range headers {
				tok := sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), h)
				r := do(t, srv, "GET", "/v1/storage/kv/k", tok, nil)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("%s: status %d, want 401; body %s", name, r.status, r.body)
				}
				wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
				// crit is a header the engine cannot honour; the others
				// name a key of the token's choosing, which it never uses.
				reason := "unknown key"
				if strings.HasPrefix(name, "crit") {
					reason = "malformed"
				}
				if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token", error_description="`+reason+`"` {
					t.Fatalf("%s: WWW-Authenticate = %q", name, got)
				}
			}
			// The same token without those headers is accepted (the key
			// and claims are right), and an unrelated extra header is ignored.
			wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), nil), nil), http.StatusNotFound, "not_found")
			wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), map[string]any{"Crit": []any{"x"}, "cty": "JWT"}), nil), http.StatusNotFound, "not_found")
		})
	}
}

// TestIDsRefusePercent: tenant, app and user ids may not contain '%' (see
// validID): a token with one is 401 invalid_token, such a client_id cannot
// be registered (admin API or Go API), and Resolve refuses it. Other
// printable characters that need escaping in URLs stay valid.
func TestIDsRefusePercent(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	key := srv.TokenKey()
	claims := func(field, value string) jwt.MapClaims {
		c := goodClaims(srv)
		c["scope"] = "storage.private.read storage.user.read"
		c[field] = value
		return c
	}
	for _, tc := range []struct{ field, value string }{
		{"tenantId", "t%2Fusers%2Fu1"},
		{"tenantId", "t1%"},
		{"tenantId", "%41"},
		{"sub", "u%31"},
		{"sub", "u1%2F..%2Fu2"},
	} {
		for _, path := range []string{"/v1/storage/kv/k", "/v1/storage/kv/k?tier=user"} {
			r := do(t, srv, "GET", path, sign(t, jwt.SigningMethodHS256, key, claims(tc.field, tc.value), nil), nil)
			if r.status != http.StatusUnauthorized {
				t.Fatalf("%s=%q on %s: status %d, want 401; body %s", tc.field, tc.value, path, r.status, r.body)
			}
			wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
		}
	}
	// Contrast: odd but valid ids work.
	for _, tc := range []struct{ field, value string }{{"tenantId", "t+1&=?#"}, {"sub", "u:1@x"}} {
		r := do(t, srv, "GET", "/v1/storage/kv/k?tier=user", sign(t, jwt.SigningMethodHS256, key, claims(tc.field, tc.value), nil), nil)
		wantStatus(t, r, http.StatusNotFound, "not_found")
	}

	// Registering a client_id with '%': 400 on the admin API and the Go API.
	for _, id := range []string{"app%2Fx", "app%", "%61pp"} {
		r := do(t, srv, "POST", "/v1/oauth/apps", srv.AdminToken, map[string]any{"client_id": id, "name": "x", "declared_scopes": allScopes, "app_type": "service"})
		if r.status != http.StatusBadRequest {
			t.Fatalf("register client_id %q: status %d, want 400; body %s", id, r.status, r.body)
		}
		wantStatus(t, r, http.StatusBadRequest, "invalid_request")
		_, err := srv.Engine.RegisterApp(context.Background(), storage.App{ClientID: id, Name: "x", DeclaredScopes: allScopes, AppType: "service"})
		if !errors.Is(err, storage.ErrInvalidRequest) {
			t.Fatalf("RegisterApp(%q) = %v, want invalid_request", id, err)
		}
	}

	// Resolve, the one location function, refuses it in every field.
	for _, tc := range []struct {
		id   storage.Identity
		tier storage.Tier
	}{
		{storage.Identity{Tenant: "t%31", App: "a", User: "u"}, storage.TierShared},
		{storage.Identity{Tenant: "t1", App: "a%2F..", User: "u"}, storage.TierPrivate},
		{storage.Identity{Tenant: "t1", App: "a", User: "u%2F..%2Fv"}, storage.TierUser},
	} {
		if loc, err := storage.Resolve(tc.id, tc.tier, "x"); err == nil {
			t.Fatalf("Resolve(%+v, %s) = %q, want an error", tc.id, tc.tier, loc.Key)
		}
	}
}

// TestQueryParameters: every route takes only the query parameters it
// declares, exactly as spelled and at most once; anything else is 400
// invalid_request naming the parameter, before any handler or backend call.
// The attack: "?TIER=user" once wrote silently to the private tier.
func TestQueryParameters(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})

	// The attack, on every primitive: a case variant of tier writes nothing.
	for _, w := range []struct{ method, path, body, read string }{
		{"PUT", "/v1/storage/kv/k", `{"value":"v"}`, "/v1/storage/kv/k"},
		{"PUT", "/v1/storage/db/c/k", `{"a":1}`, "/v1/storage/db/c/k"},
		{"PUT", "/v1/storage/files/f.txt", `x`, "/v1/storage/files/f.txt"},
	} {
		for _, q := range []string{"?TIER=user", "?Tier=user", "?tier=user&TIER=shared", "?tier=user&tier=user", "?tier=user&tier=private", "?tier%20=user", "?tier=user&x=1"} {
			r := do(t, srv, w.method, w.path+q, tok, w.body)
			wantStatus(t, r, http.StatusBadRequest, "invalid_request")
			for _, tier := range []string{"", "?tier=user", "?tier=shared"} {
				if r := do(t, srv, "GET", w.read+tier, tok, nil); r.status != http.StatusNotFound {
					t.Fatalf("%s %s%s was refused but wrote %s%s: %d %s", w.method, w.path, q, w.read, tier, r.status, r.body)
				}
			}
		}
	}

	// Every route: its declared parameters pass the router (whatever the
	// handler then answers), others are refused and named.
	routes := []struct {
		method, path string
		declared     []string
	}{
		{"GET", "/healthz", nil},
		{"GET", "/readyz", nil},
		{"POST", "/v1/oauth/apps", nil},
		{"GET", "/v1/oauth/apps", nil},
		{"GET", "/v1/oauth/apps/app-a", nil},
		{"PATCH", "/v1/oauth/apps/app-a", nil},
		{"DELETE", "/v1/oauth/apps/app-a", nil},
		{"PUT", "/v1/storage/kv/k", []string{"tier"}},
		{"GET", "/v1/storage/kv/k", []string{"tier"}},
		{"HEAD", "/v1/storage/kv/k", []string{"tier"}},
		{"POST", "/v1/storage/kv/k", []string{"tier"}},
		{"DELETE", "/v1/storage/kv/k", []string{"tier"}},
		{"PUT", "/v1/storage/db/c/k", []string{"tier"}},
		{"GET", "/v1/storage/db/c/k", []string{"tier"}},
		{"DELETE", "/v1/storage/db/c/k", []string{"tier"}},
		{"POST", "/v1/storage/db/c/query", []string{"tier"}},
		{"POST", "/v1/storage/db/c/batch", []string{"tier"}},
		{"PUT", "/v1/storage/files/f", []string{"tier"}},
		{"GET", "/v1/storage/files/f", []string{"tier"}},
		{"HEAD", "/v1/storage/files/f", []string{"tier"}},
		{"DELETE", "/v1/storage/files/f", []string{"tier"}},
		{"GET", "/v1/storage/files", []string{"tier", "prefix", "limit", "cursor"}},
		{"POST", "/v1/storage/signed-urls", nil},
	}
	for _, rt := range routes {
		refused := []string{"x", "TIER", "Tier", "tier ", "prefix", "cursor", "limit", "app", "sig", ""}
		for _, name := range refused {
			if slices.Contains(rt.declared, name) {
				continue
			}
			r := do(t, srv, rt.method, rt.path+"?"+url.QueryEscape(name)+"=1", tok, nil)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s %s?%s=1: status %d, want 400; body %s", rt.method, rt.path, name, r.status, r.body)
			}
			if rt.method != "HEAD" {
				wantStatus(t, r, http.StatusBadRequest, "invalid_request")
				if !strings.Contains(message(t, r), strconv.Quote(name)) {
					t.Fatalf("%s %s?%s=1: the message does not name the parameter: %s", rt.method, rt.path, name, r.body)
				}
			}
		}
		for _, name := range rt.declared {
			v := "1"
			if name == "tier" {
				v = "private"
			}
			r := do(t, srv, rt.method, rt.path+"?"+name+"="+v, tok, nil)
			if r.status == http.StatusBadRequest && strings.Contains(string(r.body), "query parameter") {
				t.Fatalf("%s %s?%s: refused: %s", rt.method, rt.path, name, r.body)
			}
			r = do(t, srv, rt.method, rt.path+"?"+name+"="+v+"&"+name+"="+v, tok, nil)
			wantStatus(t, r, http.StatusBadRequest, "")
		}
		wantStatus(t, do(t, srv, rt.method, rt.path+"?tier=%zz", tok, nil), http.StatusBadRequest, "")
	}
	// A refused query reaches no backend.
	before := srv.Calls()
	for _, p := range []string{"/v1/storage/kv/k?TIER=user", "/v1/storage/db/c/k?TIER=user", "/v1/storage/files/f?TIER=user"} {
		wantStatus(t, do(t, srv, "PUT", p, tok, `{"value":"v"}`), http.StatusBadRequest, "invalid_request")
	}
	if after := srv.Calls(); after != before {
		t.Fatalf("refused queries reached the backends: %+v, then %+v", before, after)
	}
	// Several unknown names are all named, in order.
	r := do(t, srv, "GET", "/v1/storage/kv/k?b=1&a=2&tier=private", tok, nil)
	wantStatus(t, r, http.StatusBadRequest, "invalid_request")
	if !strings.Contains(message(t, r), `"a", "b"`) {
		t.Fatalf("unknown names not listed: %s", r.body)
	}
	// The parameters still work when given right.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k?tier=user", tok, `{"value":"v"}`), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k?tier=user", tok, nil), http.StatusOK, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files?tier=user&prefix=a/&limit=5", tok, nil), http.StatusOK, "")
	// An empty query is no parameter at all.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k?", tok, nil), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "GET", "/healthz?", "", nil), http.StatusOK, "")
}

// message is the message of an error response.
func message(t testing.TB, r resp) string {
	t.Helper()
	var e struct{ Message string }
	decode(t, r, &e)
	return e.Message
}

// rawGet sends GET base+rawPath with the path and query on the wire exactly
// as given, and no Authorization header.
func rawGet(t testing.TB, base, rawPath string) resp {
	t.Helper()
	req, err := http.NewRequest("GET", base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque, req.URL.RawQuery, _ = strings.Cut(rawPath, "?")
	res, err := http.DefaultClient.Do(req)
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

// TestSignedURLExact: a signed URL verifies only as issued. Equivalent
// spellings of its path or query, which decode to the same values, are
// changes too: 403 invalid_signature.
func TestSignedURLExact(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	for _, p := range []string{"s/a.txt", "é;,.txt"} {
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/"+(&url.URL{Path: p}).EscapedPath(), tok, "x"), http.StatusOK, "")
	}
	sign := func(key string) (path, query string) {
		r := do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": key})
		wantStatus(t, r, http.StatusOK, "")
		var out struct{ URL string }
		decode(t, r, &out)
		u := strings.TrimPrefix(out.URL, srv.URL)
		path, query, _ = strings.Cut(u, "?")
		return path, query
	}
	p1, q1 := sign("s/a.txt")
	p2, q2 := sign("é;,.txt")
	equal(t, "path", p1, "/v1/storage/signed/t1/apps/app-a/s/a.txt")
	equal(t, "escaped path", p2, "/v1/storage/signed/t1/apps/app-a/%C3%A9%3B%2C.txt")
	wantStatus(t, rawGet(t, srv.URL, p1+"?"+q1), http.StatusOK, "")
	wantStatus(t, rawGet(t, srv.URL, p2+"?"+q2), http.StatusOK, "")

	v, err := url.ParseQuery(q1)
	if err != nil {
		t.Fatal(err)
	}
	sig := v.Get("sig")
	// The signature's last character carries 4 bits and 2 zero padding bits:
	// another character with the same 4 bits decodes to the same bytes.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	otherPadding := sig[:len(sig)-1] + string(alphabet[last|1])
	if len(sig) != 43 || last&3 != 0 {
		t.Fatalf("signature %q is not 32 bytes in unpadded base64url", sig)
	}
	set := func(name, value string) string {
		return strings.Replace(q1, name+"="+url.QueryEscape(v.Get(name)), name+"="+value, 1)
	}
	changed := map[string]string{
		"escaped slash":           strings.Replace(p1, "s/a.txt", "s%2Fa.txt", 1),
		"escaped letter":          strings.Replace(p1, "a.txt", "%61.txt", 1),
		"escaped tenant":          strings.Replace(p1, "/t1/", "/t%31/", 1),
		"escaped app":             strings.Replace(p1, "/app-a/", "/app%2Da/", 1),
		"escaped dot":             strings.Replace(p1, "a.txt", "a%2Etxt", 1),
		"lower-case hex":          strings.Replace(p2, "%C3%A9", "%c3%a9", 1),
		"raw semicolon and comma": strings.Replace(p2, "%3B%2C", ";,", 1),
	}
	for name, p := range changed {
		q := q1
		if strings.Contains(p, "C3") || strings.Contains(p, "c3") || strings.Contains(p, ";") {
			q = q2
		}
		r := rawGet(t, srv.URL, p+"?"+q)
		if r.status != http.StatusForbidden {
			t.Fatalf("%s (%s): status %d, want 403; body %s", name, p, r.status, r.body)
		}
		wantStatus(t, r, http.StatusForbidden, "invalid_signature")
	}
	changedQuery := map[string]string{
		"expires with a leading zero": set("expires", "0"+v.Get("expires")),
		"expires with a plus":         set("expires", "%2B"+v.Get("expires")),
		"sig with other padding bits": set("sig", otherPadding),
		"sig with = padding":          set("sig", sig+"%3D"),
		"escaped parameter name":      strings.Replace(q1, "tier=", "%74ier=", 1),
		"escaped app value":           set("app", "%61pp-a"),
		"escaped tier value":          set("tier", "priv%61te"),
		"parameters reordered":        "tier=" + v.Get("tier") + "&sig=" + sig + "&expires=" + v.Get("expires") + "&app=" + v.Get("app"),
		"trailing &":                  q1 + "&",
		"leading &":                   "&" + q1,
		"upper-case name":             strings.Replace(q1, "tier=", "TIER=", 1),
	}
	for name, q := range changedQuery {
		if q == q1 {
			t.Fatalf("%s: the query did not change", name)
		}
		r := rawGet(t, srv.URL, p1+"?"+q)
		if r.status != http.StatusForbidden {
			t.Fatalf("%s (%s): status %d, want 403; body %s", name, q, r.status, r.body)
		}
		wantStatus(t, r, http.StatusForbidden, "invalid_signature")
		equal(t, name+" Referrer-Policy", r.header.Get("Referrer-Policy"), "no-referrer")
	}
	// Still valid after the attempts.
	wantStatus(t, rawGet(t, srv.URL, p1+"?"+q1), http.StatusOK, "")
}

// earlyAnswerBound is how soon a body refused from its Content-Length is
// answered: at once, plus slack for a request with a token (an app lookup)
// under -race on busy cores.
const earlyAnswerBound = 5 * time.Second

// TestEarlyAnswersLibrary: the engine mounted directly on an http.Server
// answers a body it refuses from its Content-Length at once, without
// waiting for the body: a client that declares 6 GiB and sends three bytes
// gets 413 (a file over the limit, a JSON body over its cap) or 401 (no
// token) within earlyAnswerBound. An answer that waited for the body would
// never come (the test server has no timeouts).
func TestEarlyAnswersLibrary(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	addr := srv.HTTP.Listener.Addr().String()
	for _, tc := range []struct {
		method, target, token, want string
	}{
		{"PUT", "/v1/storage/files/big.bin", tok, "HTTP/1.1 413 Request Entity Too Large"},
		{"PUT", "/v1/storage/files/big.bin", "", "HTTP/1.1 401 Unauthorized"},
		{"PUT", "/v1/storage/kv/k", tok, "HTTP/1.1 413 Request Entity Too Large"},
		{"PUT", "/v1/storage/db/c/k", tok, "HTTP/1.1 413 Request Entity Too Large"},
		{"POST", "/v1/storage/kv/k", tok, "HTTP/1.1 413 Request Entity Too Large"},
		{"POST", "/v1/storage/db/c/query", tok, "HTTP/1.1 413 Request Entity Too Large"},
		{"POST", "/v1/storage/db/c/batch", tok, "HTTP/1.1 413 Request Entity Too Large"},
		{"POST", "/v1/storage/signed-urls", tok, "HTTP/1.1 413 Request Entity Too Large"},
		{"POST", "/v1/oauth/apps", srv.AdminToken, "HTTP/1.1 413 Request Entity Too Large"},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		auth := ""
		if tc.token != "" {
			auth = "Authorization: Bearer " + tc.token + "\r\n"
		}
		start := time.Now()
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: 6442450944\r\n\r\nabc", tc.method, tc.target, addr, auth)
		_ = conn.SetReadDeadline(start.Add(10 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		took := time.Since(start)
		conn.Close()
		if err != nil || strings.TrimSpace(line) != tc.want || took > earlyAnswerBound {
			t.Errorf("%s %s: answer %q (%v) after %v, want %q within %v", tc.method, tc.target, strings.TrimSpace(line), err, took, tc.want, earlyAnswerBound)
		}
	}
}

// TestJSONTypeErrors: a body field of the wrong JSON type is 400
// invalid_request that says, in JSON's words, which field and what it must
// be; never encoding/json's text, which names the engine's Go types.
func TestJSONTypeErrors(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	cases := []struct{ method, path, token, body, says string }{
		{"POST", "/v1/storage/signed-urls", tok, `[]`, "the request body must be an object, not an array"},
		{"POST", "/v1/storage/signed-urls", tok, `{"key":7}`, `the field "key" must be a string, not a number`},
		{"POST", "/v1/storage/signed-urls", tok, `{"key":"a","method":true}`, `the field "method" must be a string, not a boolean`},
		{"POST", "/v1/storage/db/c/query", tok, `"x"`, "the request body must be an object, not a string"},
		{"POST", "/v1/storage/db/c/batch", tok, `{"ops":{}}`, `the field "ops" must be an array, not an object`},
		{"POST", "/v1/oauth/apps", srv.AdminToken, `{"client_id":"app-b","name":"b","declared_scopes":"storage.user.read","app_type":"service"}`, `the field "declared_scopes" must be an array, not a string`},
		{"POST", "/v1/oauth/apps", srv.AdminToken, `{"client_id":["app-b"]}`, `the field "client_id" must be a string, not an array`},
	}
	for _, tc := range cases {
		r := do(t, srv, tc.method, tc.path, tc.token, tc.body)
		wantStatus(t, r, http.StatusBadRequest, "invalid_request")
		var e struct{ Message string }
		decode(t, r, &e)
		if !strings.Contains(e.Message, tc.says) {
			t.Errorf("%s %s %s: message %q, want it to say %q", tc.method, tc.path, tc.body, e.Message, tc.says)
		}
		for _, leak := range []string{"Go ", "struct", "*string", "json.RawMessage", "[]string", "json:"} {
			if strings.Contains(e.Message, leak) {
				t.Errorf("%s %s %s: message %q names Go (%q)", tc.method, tc.path, tc.body, e.Message, leak)
			}
		}
	}
}
