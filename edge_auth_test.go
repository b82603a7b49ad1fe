package storage_test

import (
	"net/http"
	"testing"

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
				if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
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
