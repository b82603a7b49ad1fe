package storage_test

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestAuthRefusalReasons: with an issuer and an audience configured, a
// token is refused for the first check that fails, each a reason of
// design.md's fixed list: in the message, in WWW-Authenticate's
// error_description, and in the engine's log line with the request id,
// which never holds the token.
func TestAuthRefusalReasons(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv := cpodtest.NewServer(t,
		cpodtest.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		cpodtest.WithConfig(func(c *storage.Config) {
			c.Auth.Issuer = "https://id.example.com"
			c.Auth.Audience = "cpod-storage"
		}))
	srv.RegisterApp(t, "app-a", allScopes...)
	key := srv.TokenKey()
	claims := func(edit func(c jwt.MapClaims)) jwt.MapClaims {
		c := goodClaims(srv)
		c["iss"], c["aud"] = "https://id.example.com", []any{"other", "cpod-storage"}
		if edit != nil {
			edit(c)
		}
		return c
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, key, c, nil) }
	cases := []struct{ name, token, reason string }{
		{"wrong issuer", hs(claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" })), "wrong issuer"},
		{"missing issuer", hs(claims(func(c jwt.MapClaims) { delete(c, "iss") })), "missing claim iss"},
		{"wrong audience", hs(claims(func(c jwt.MapClaims) { c["aud"] = "other" })), "wrong audience"},
		{"missing audience", hs(claims(func(c jwt.MapClaims) { delete(c, "aud") })), "missing claim aud"},
		{"expired and wrong issuer", hs(claims(func(c jwt.MapClaims) {
			c["iss"], c["exp"] = "x", srv.Now().Add(-time.Minute).Unix()
		})), "expired"},
		{"missing client_id", hs(claims(func(c jwt.MapClaims) { delete(c, "client_id") })), "missing claim client_id"},
		{"exp of the wrong type", hs(claims(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })), "malformed"},
		{"garbage", "eyJnYXJiYWdlIjp0cnVl.eyJzZWNyZXQiOiJkYXRhIn0.c2lnbmF0dXJlLW9mLWdhcmJhZ2U", "malformed"},
	}
	for _, tc := range cases {
		r := do(t, srv, "GET", "/v1/storage/kv/k", tc.token, nil)
		wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
		var e struct{ Message string }
		decode(t, r, &e)
		equal(t, tc.name+": message", e.Message, tc.reason)
		equal(t, tc.name+": WWW-Authenticate", r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token", error_description="`+tc.reason+`"`)
		line := ""
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"request_id":"`+r.header.Get("X-Request-Id")+`"`) {
				line = l
			}
		}
		if !strings.Contains(line, "token refused") || !strings.Contains(line, `"reason":"`+tc.reason+`"`) {
			t.Errorf("%s: log line %q lacks the reason %q", tc.name, line, tc.reason)
		}
		if sig := tc.token[strings.LastIndex(tc.token, ".")+1:]; strings.Contains(logs.String(), sig) || strings.Contains(logs.String(), tc.token) {
			t.Fatalf("%s: the log holds the token", tc.name)
		}
	}
	// The good token passes all of those checks.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", hs(claims(nil)), nil), http.StatusNotFound, "not_found")
	// No token at all: logged too, in words that never hold "Bearer" (the
	// word a token follows), though the answer shows the header to send.
	r := do(t, srv, "GET", "/v1/storage/kv/k", "", nil)
	wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
	if !strings.Contains(logs.String(), `"request_id":"`+r.header.Get("X-Request-Id")+`","method":"GET","reason":"no Authorization header"`) {
		t.Errorf("no log line for a call without a token:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "Bearer") {
		t.Errorf("the log holds \"Bearer\":\n%s", logs.String())
	}
}

// TestAuthKeyfuncRefusal: a Keyfunc (a JWKS) that has no key for the token
// refuses it as "unknown key"; an algorithm outside Algorithms is
// "unsupported algorithm", before the Keyfunc is asked.
func TestAuthKeyfuncRefusal(t *testing.T) {
	t.Parallel()
	var key []byte
	asked := 0
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Auth = storage.AuthConfig{
			Keyfunc: func(tok *jwt.Token) (any, error) {
				asked++
				if tok.Header["kid"] != "k1" {
					return nil, errors.New("no such kid in the JWKS")
				}
				return key, nil
			},
			Algorithms: []string{"HS256"},
		}
	}))
	key = srv.TokenKey()
	srv.RegisterApp(t, "app-a", allScopes...)
	check := func(name, tok, reason string) {
		t.Helper()
		r := do(t, srv, "GET", "/v1/storage/kv/k", tok, nil)
		wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
		equal(t, name, r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token", error_description="`+reason+`"`)
	}
	check("kid not in the JWKS", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), map[string]any{"kid": "k9"}), "unknown key")
	n := asked
	check("HS512 not accepted", sign(t, jwt.SigningMethodHS512, key, goodClaims(srv), map[string]any{"kid": "k1"}), "unsupported algorithm")
	equal(t, "Keyfunc calls for a refused algorithm", asked, n)
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", sign(t, jwt.SigningMethodHS256, key, goodClaims(srv), map[string]any{"kid": "k1"}), nil), http.StatusNotFound, "not_found")
}
