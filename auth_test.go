package storage_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// sign mints a token with any method and key, for attacks.
func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func goodClaims(srv *cpodtest.Server) jwt.MapClaims {
	return jwt.MapClaims{
		"tenantId": "t1", "client_id": "app-a", "sub": "u1",
		"scope": "storage.private.read storage.private.write",
		"exp":   srv.Now().Add(time.Hour).Unix(),
	}
}

// unsigned builds "header.payload." with any alg spelling.
func unsigned(t testing.TB, alg string, claims jwt.MapClaims) string {
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	p, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "."
}

// stripSig keeps "header.payload." of a token.
func stripSig(tok string) string { return tok[:strings.LastIndex(tok, ".")+1] }

func TestAuthRejectsBadTokens(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	key := srv.TokenKey()
	with := func(edit func(c jwt.MapClaims)) jwt.MapClaims {
		c := goodClaims(srv)
		edit(c)
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})

	// Each is refused for its reason, from design.md's fixed list, in the
	// message and in WWW-Authenticate's error_description alike.
	cases := []struct {
		name   string
		token  string
		reason string
	}{
		{"alg none", unsigned(t, "none", goodClaims(srv)), "unsupported algorithm"},
		{"alg None", unsigned(t, "None", goodClaims(srv)), "unsupported algorithm"},
		{"alg NONE", unsigned(t, "NONE", goodClaims(srv)), "unsupported algorithm"},
		{"alg nOnE", unsigned(t, "nOnE", goodClaims(srv)), "unsupported algorithm"},
		{"HS256 with the signature removed", stripSig(sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), nil)), "bad signature"},
		{"HS256 signed with an RSA public key", sign(t, jwt.SigningMethodHS256, rsaPEM, goodClaims(srv), nil), "bad signature"},
		{"RS256 with a key we do not know", sign(t, jwt.SigningMethodRS256, rsaKey, goodClaims(srv), nil), "unsupported algorithm"},
		{"other HMAC secret", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), goodClaims(srv), nil), "bad signature"},
		{"unknown kid", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), map[string]any{"kid": "k2"}), "unknown key"},
		{"path-like kid", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), map[string]any{"kid": "../../dev/null"}), "unknown key"},
		{"jku header", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), map[string]any{"jku": "http://127.0.0.1:1/jwks"}), "unknown key"},
		{"missing exp", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { delete(c, "exp") }), nil), "missing claim exp"},
		{"expired", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["exp"] = srv.Now().Add(-time.Second).Unix() }), nil), "expired"},
		{"expired with bad signature", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("z", 32)), with(func(c jwt.MapClaims) { c["exp"] = srv.Now().Add(-time.Hour).Unix() }), nil), "bad signature"},
		{"nbf in the future", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["nbf"] = srv.Now().Add(time.Minute).Unix() }), nil), "not yet valid"},
		{"unregistered client_id", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["client_id"] = "app-zz" }), nil), "the token's client_id is not a registered app"},
		{"tenant with slash", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = "t1/apps/x" }), nil), "invalid id in claim tenantId"},
		{"tenant ..", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = ".." }), nil), "invalid id in claim tenantId"},
		{"tenant .", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = "." }), nil), "invalid id in claim tenantId"},
		{"tenant empty", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = "" }), nil), "invalid id in claim tenantId"},
		{"tenant missing", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { delete(c, "tenantId") }), nil), "missing claim tenantId"},
		{"tenant 129 bytes", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = strings.Repeat("t", 129) }), nil), "invalid id in claim tenantId"},
		{"tenant control char", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = "t\x01" }), nil), "invalid id in claim tenantId"},
		{"tenant with space", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = "t 1" }), nil), "invalid id in claim tenantId"},
		{"tenant with backslash", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = `t\1` }), nil), "invalid id in claim tenantId"},
		{"tenant not a string", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["tenantId"] = 7 }), nil), "invalid id in claim tenantId"},
		{"user with slash", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["sub"] = "u1/../u2" }), nil), "invalid id in claim sub"},
		{"user ..", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["sub"] = ".." }), nil), "invalid id in claim sub"},
		// Only a missing sub (or one equal to client_id) means no user; an
		// empty one is an invalid id like any other.
		{"user empty", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["sub"] = "" }), nil), "invalid id in claim sub"},
		{"user not a string", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["sub"] = 7 }), nil), "invalid id in claim sub"},
		{"app with slash", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["client_id"] = "app-a/x" }), nil), "invalid id in claim client_id"},
		{"scope of numbers", sign(t, jwt.SigningMethodHS256, key, with(func(c jwt.MapClaims) { c["scope"] = []any{1, 2} }), nil), "malformed"},
		{"not a JWT", "hello", "malformed"},
		{"1 MB of dots", strings.Repeat(".", 1<<20), "the Authorization header is too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, "GET", "/v1/storage/kv/k", tc.token, nil)
			wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
			var e struct{ Message string }
			decode(t, r, &e)
			equal(t, "message", e.Message, tc.reason)
			equal(t, "WWW-Authenticate", r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token", error_description="`+strings.ReplaceAll(tc.reason, `"`, `'`)+`"`)
		})
	}
	// The good token, for contrast: the cases above fail for their reason.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), nil), nil), http.StatusNotFound, "not_found")
}

func TestAuthHeaderShapes(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	for _, h := range []string{"", "Bearer", "Bearer ", "Basic " + tok, "Bearer  " + tok, tok, "Bearer " + tok + " x"} {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/storage/kv/k", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %.20q: status %d, want 401", h, res.StatusCode)
		}
	}
	// "bearer" is case-insensitive (RFC 6750 follows RFC 7235).
	req, _ := http.NewRequest("GET", srv.URL+"/v1/storage/kv/k", nil)
	req.Header.Set("Authorization", "bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	equal(t, "lower-case bearer status", res.StatusCode, http.StatusNotFound)
}

// TestAuthHugeHeaderIsFast sends a 1 MB Authorization header: it must be
// refused before any parsing (the 8 KiB cap), not after splitting it.
func TestAuthHugeHeaderIsFast(t *testing.T) {
	srv := cpodtest.NewServer(t)
	req, _ := http.NewRequest("GET", "/v1/storage/kv/k", nil)
	req.Header.Set("Authorization", "Bearer "+strings.Repeat(".", 1<<20))
	allocs := testing.AllocsPerRun(20, func() {
		w := &discardWriter{h: http.Header{}}
		srv.Engine.ServeHTTP(w, req)
		if w.status != http.StatusUnauthorized {
			t.Fatalf("status %d", w.status)
		}
	})
	if allocs > 100 {
		t.Fatalf("%v allocations to refuse a 1 MB header; it should be refused before parsing", allocs)
	}
}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

func TestScopes(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-p", "storage.private.read", "storage.private.write", "storage.user.read", "storage.user.write")
	key := srv.TokenKey()
	claims := func(scope any, sub string) jwt.MapClaims {
		c := jwt.MapClaims{"tenantId": "t1", "client_id": "app-p", "scope": scope, "exp": srv.Now().Add(time.Hour).Unix()}
		if sub != "" {
			c["sub"] = sub
		}
		return c
	}
	tok := func(scope any, sub string) string {
		return sign(t, jwt.SigningMethodHS256, key, claims(scope, sub), nil)
	}
	cases := []struct {
		name, method, path, token string
		status                    int
		code                      string
	}{
		{"granted, string form", "GET", "/v1/storage/kv/k", tok("storage.private.read", "u1"), 404, "not_found"},
		{"granted, array form", "GET", "/v1/storage/kv/k", tok([]any{"storage.private.read"}, "u1"), 404, "not_found"},
		{"undeclared shared read", "GET", "/v1/storage/kv/k?tier=shared", tok("storage.shared.read", "u1"), 403, "invalid_scope"},
		{"undeclared shared write", "PUT", "/v1/storage/kv/k?tier=shared", tok("storage.shared.write", "u1"), 403, "invalid_scope"},
		{"declared, not granted", "PUT", "/v1/storage/kv/k", tok("storage.private.read", "u1"), 403, "insufficient_scope"},
		{"read does not grant write", "DELETE", "/v1/storage/kv/k", tok([]any{"storage.private.read"}, "u1"), 403, "insufficient_scope"},
		{"case variant refused", "GET", "/v1/storage/kv/k", tok("Storage.Private.Read", "u1"), 403, "insufficient_scope"},
		{"wildcard refused", "GET", "/v1/storage/kv/k", tok("storage.*", "u1"), 403, "insufficient_scope"},
		{"prefix refused", "GET", "/v1/storage/kv/k", tok("storage.private", "u1"), 403, "insufficient_scope"},
		{"comma list is one scope", "GET", "/v1/storage/kv/k", tok("storage.private.read,storage.private.write", "u1"), 403, "insufficient_scope"},
		{"no scope claim", "GET", "/v1/storage/kv/k", tok(nil, "u1"), 403, "insufficient_scope"},
		{"user tier without sub", "GET", "/v1/storage/kv/k?tier=user", tok("storage.user.read", ""), 403, "user_required"},
		{"user tier with sub = client_id", "GET", "/v1/storage/kv/k?tier=user", tok("storage.user.read", "app-p"), 403, "user_required"},
		{"user tier with user", "GET", "/v1/storage/kv/k?tier=user", tok("storage.user.read", "u1"), 404, "not_found"},
		{"private tier without user works", "GET", "/v1/storage/kv/k", tok("storage.private.read", ""), 404, "not_found"},
		{"unknown tier", "GET", "/v1/storage/kv/k?tier=global", tok("storage.private.read", "u1"), 400, "invalid_request"},
		{"tier given twice", "GET", "/v1/storage/kv/k?tier=private&tier=shared", tok("storage.private.read", "u1"), 400, "invalid_request"},
		{"tier case variant", "GET", "/v1/storage/kv/k?tier=Private", tok("storage.private.read", "u1"), 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, tc.method, tc.path, tc.token, nil)
			wantStatus(t, r, tc.status, tc.code)
			if tc.status == 403 {
				equal(t, "WWW-Authenticate", r.header.Get("WWW-Authenticate"), `Bearer error="`+tc.code+`"`)
			}
		})
	}
}

// TestAuthKeyTypes checks each kind of configured key, and that only its
// algorithms are accepted.
func TestAuthKeyTypes(t *testing.T) {
	t.Parallel()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pemOf := func(pub any) []byte {
		b, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: b})
	}
	cases := []struct {
		name   string
		key    storage.Key
		good   func(c jwt.MapClaims) string
		others []func(c jwt.MapClaims) string
	}{
		{"RSA", storage.Key{PublicKeyPEM: pemOf(&rsaKey.PublicKey)},
			func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodPS256, rsaKey, c, nil) },
			[]func(c jwt.MapClaims) string{
				func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, pemOf(&rsaKey.PublicKey), c, nil) },
				func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodES256, ecKey, c, nil) },
			}},
		{"ECDSA P-256", storage.Key{ID: "ec1", PublicKeyPEM: pemOf(&ecKey.PublicKey)},
			func(c jwt.MapClaims) string {
				return sign(t, jwt.SigningMethodES256, ecKey, c, map[string]any{"kid": "ec1"})
			},
			[]func(c jwt.MapClaims) string{
				func(c jwt.MapClaims) string {
					return sign(t, jwt.SigningMethodES256, ecKey, c, map[string]any{"kid": "EC1"})
				},
				func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, rsaKey, c, nil) },
			}},
		{"Ed25519", storage.Key{PublicKeyPEM: pemOf(edPub)},
			func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodEdDSA, edKey, c, nil) },
			[]func(c jwt.MapClaims) string{
				func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(edPub), c, nil) },
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
				c.Auth = storage.AuthConfig{Keys: []storage.Key{tc.key}, Issuer: "https://issuer.example", Audience: "cpod-storage", Leeway: 30 * time.Second}
			}))
			srv.RegisterApp(t, "app-a", allScopes...)
			claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
				c := goodClaims(srv)
				c["iss"], c["aud"] = "https://issuer.example", "cpod-storage"
				if edit != nil {
					edit(c)
				}
				return c
			}
			wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tc.good(claims(nil)), nil), 404, "not_found")
			for i, other := range tc.others {
				r := do(t, srv, "GET", "/v1/storage/kv/k", other(claims(nil)), nil)
				if r.status != 401 {
					t.Errorf("other #%d: status %d, want 401", i, r.status)
				}
			}
			// Claims hold whole seconds: Unix() drops up to 1 s, and the
			// request is verified a little after now. An nbf only 31 s
			// ahead could fall within the 30 s leeway by then (a CI flake),
			// so the "beyond" cases stand 10 s clear of the leeway. The exact
			// boundaries, to the nanosecond, are TestAuthCacheExpiresExactly's,
			// on a clock the test sets.
			now := srv.Now()
			rejected := map[string]func(jwt.MapClaims){
				"wrong iss":              func(c jwt.MapClaims) { c["iss"] = "https://evil.example" },
				"missing iss":            func(c jwt.MapClaims) { delete(c, "iss") },
				"wrong aud":              func(c jwt.MapClaims) { c["aud"] = "other" },
				"missing aud":            func(c jwt.MapClaims) { delete(c, "aud") },
				"aud array without ours": func(c jwt.MapClaims) { c["aud"] = []any{"a", "b"} },
				"exp beyond leeway":      func(c jwt.MapClaims) { c["exp"] = now.Add(-40 * time.Second).Unix() },
				"nbf beyond leeway":      func(c jwt.MapClaims) { c["nbf"] = now.Add(40 * time.Second).Unix() },
			}
			for name, edit := range rejected {
				if r := do(t, srv, "GET", "/v1/storage/kv/k", tc.good(claims(edit)), nil); r.status != 401 {
					t.Errorf("%s: status %d, want 401", name, r.status)
				}
			}
			accepted := map[string]func(jwt.MapClaims){
				"exp within leeway":   func(c jwt.MapClaims) { c["exp"] = now.Add(-20 * time.Second).Unix() },
				"nbf within leeway":   func(c jwt.MapClaims) { c["nbf"] = now.Add(20 * time.Second).Unix() },
				"aud array with ours": func(c jwt.MapClaims) { c["aud"] = []any{"x", "cpod-storage"} },
			}
			for name, edit := range accepted {
				if r := do(t, srv, "GET", "/v1/storage/kv/k", tc.good(claims(edit)), nil); r.status != 404 {
					t.Errorf("%s: status %d, want 404 (accepted)", name, r.status)
				}
			}
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	_, err := storage.New(storage.Config{})
	if err == nil {
		t.Fatal("New accepted an empty Config")
	}
	for _, field := range []string{"Config.S3", "Config.Bucket", "Config.Mongo", "Config.Redis", "Config.SigningKey", "Auth.Keys"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	_, err = storage.New(storage.Config{Auth: storage.AuthConfig{Keys: []storage.Key{{Secret: []byte("short")}}}, AdminTokens: []string{"x"}})
	for _, want := range []string{"Auth.Keys[0]", "AdminTokens[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
