package main

import (
	"net/http"
	"strings"
	"time"

	"github.com/cpod/storage/console"
)

// consoleMux serves the web console (package console) at /console/ beside
// the engine, on the same origin. Development tokens are minted by the
// console's form only when the server verifies tokens with its data
// directory's secret (no -jwt-* setting: the embedded default), exactly as
// `httpserver token` mints them.
func consoleMux(cfg *serverConfig, engine http.Handler, adminTokens []string, localSecret string) http.Handler {
	o := console.Options{AdminTokens: adminTokens}
	if cfg.localJWT() && localSecret != "" {
		o.MintToken = func(tenant, app, user string, scopes []string, exp time.Time) (string, error) {
			return signDevToken(localSecret, cfg.Claims, cfg.JWTIssuer, cfg.JWTAudience, tenant, app, user, scopes, exp)
		}
	}
	c := console.Handler(o)
	// Not a ServeMux: it would clean the engine's paths and redirect
	// ("a/../b"), which the engine refuses itself instead.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/console" || strings.HasPrefix(p, "/console/") {
			c.ServeHTTP(w, r)
			return
		}
		engine.ServeHTTP(w, r)
	})
}
