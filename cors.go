package storage

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/rs/cors"
)

// CORS (browser apps), as in Config.CORSOrigins. The policy, in one place:
//
//   - Only the storage API answers CORS: paths under /v1/storage/, which
//     include signed URLs (/v1/storage/signed/...). The admin API
//     (/v1/oauth/apps, /v1/admin/...), /healthz and /readyz never carry a
//     CORS header, nor does a path that no route matches. The public
//     /v1/openapi.json answers any origin with "*" whatever this policy
//     (openapi.go).
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
//     answered before routing, so it never reaches authentication (browsers
//     send no Authorization header on a preflight). From an allowed origin,
//     for a method and headers the route accepts, it is 204 with
//     Access-Control-Allow-Origin: <origin>, Access-Control-Allow-Methods:
//     the methods of the routes that match the path, Access-Control-Allow-
//     Headers: corsRequestHeaders, Access-Control-Max-Age: corsMaxAge. From
//     any other origin, or for another method or header, it is 204 without
//     Access-Control-Allow-Origin, so the browser refuses the call, and the
//     engine logs the refusal at debug level with the origin and why (the
//     browser's console says only that CORS failed). Header names compare
//     without case or order (normalHeaderList). A signed URL's preflight
//     names only the methods it serves (signedMethods).
//   - An actual request from an allowed origin gets Access-Control-Allow-
//     Origin: <origin> and Access-Control-Expose-Headers: corsExposedHeaders
//     on every answer, errors included, so a browser app can read the error
//     code, ETag, Retry-After, the RateLimit-* headers and the request id.
//   - Every response of the storage API says Vary: Origin (preflights also
//     vary on the Access-Control-Request-* headers), so a shared cache
//     never serves one origin's answer to another.
//   - No Access-Control-Allow-Credentials: the API is called with a bearer
//     token that the app sends explicitly, never with cookies.
//   - "*" allows every origin; the answer still names the caller's origin
//     (never a literal "*"), as for a listed origin.
//
// The header logic is github.com/rs/cors. Its AllowedMethods is one list per
// handler, so the engine keeps one cors.Cors per distinct set of route
// methods and picks it by the routes that match the request path. rs/cors
// answers a preflight with only the requested method and headers; the
// contract asks for the route's methods and the API's headers, so the
// engine widens those two lists after rs/cors has decided to allow the
// preflight.

// corsMaxAge is how long, in seconds, a browser may cache a preflight answer:
// an hour (Chromium caps it at two hours, Firefox at a day), so a change of
// a route's methods reaches browsers within the hour.
const corsMaxAge = 3600

// corsRequestHeaders are the request headers the storage API reads; a
// preflight may ask for any of them.
var corsRequestHeaders = []string{
	"Authorization", "Content-Type", "Range", "If-Match", "If-None-Match",
	"If-Modified-Since", "If-Unmodified-Since", "If-Range", "X-Request-Id",
	"Last-Event-ID", // change feeds resume (realtime.go)
}

// corsExposedHeaders are the response headers a browser app may read.
var corsExposedHeaders = []string{
	"ETag", "Content-Range", "Content-Disposition", "Content-Length", "Last-Modified",
	"Accept-Ranges", "Cpod-Ttl", "Cpod-Error", "Retry-After", "X-Request-Id", "WWW-Authenticate", "Allow",
	"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", // Config.RateLimit
}

// corsPrefix is the part of the API that answers CORS.
const corsPrefix = "/v1/storage/"

// corsPolicy applies Config.CORSOrigins to requests.
type corsPolicy struct {
	opts   cors.Options     // the shared options; AllowedMethods set per handler
	routes []*compiledRoute // the storage routes, to find a path's methods
	actual *cors.Cors       // actual requests: every storage method
	log    *slog.Logger     // refused preflights, at debug level

	mu         sync.Mutex
	preflights map[string]http.Handler // by the joined method list
}

// checkCORSOrigins checks Config.CORSOrigins: each entry is "*" or an
// origin, scheme "://" host [":" port], exactly as a browser sends it in the
// Origin header (no path, not even "/"). A host may hold one '*' that stands
// for any characters, such as "https://*.example.com".
func checkCORSOrigins(origins []string) error {
	for i, o := range origins {
		if o == "*" {
			continue
		}
		scheme, rest, ok := strings.Cut(o, "://")
		u, err := url.Parse(scheme + "://" + strings.Replace(rest, "*", "x", 1))
		if !ok || err != nil || scheme == "" || u.Host == "" || strings.ContainsAny(scheme, "*") ||
			strings.Count(rest, "*") > 1 || strings.ContainsAny(rest, "/?#@\\ ") {
			return fmt.Errorf("CORSOrigins[%d] %q must be \"*\" or an origin such as https://app.example.com (scheme and host, no path)", i, o)
		}
	}
	return nil
}

// originAllowed reports whether origin is one of origins (checked by
// checkCORSOrigins), without case; a '*' in one stands for one or more DNS
// labels: letters, digits and '-', dot-separated.
func originAllowed(origins []string, origin string) bool {
	origin = strings.ToLower(origin)
	for _, o := range origins {
		o = strings.ToLower(o)
		prefix, suffix, wild := strings.Cut(o, "*")
		if !wild {
			if o == origin {
				return true
			}
			continue
		}
		if len(origin) <= len(prefix)+len(suffix) || !strings.HasPrefix(origin, prefix) || !strings.HasSuffix(origin, suffix) {
			continue
		}
		if hostLabels(origin[len(prefix) : len(origin)-len(suffix)]) {
			return true
		}
	}
	return false
}

// hostLabels reports whether s is one or more DNS labels (letters, digits,
// '-'), dot-separated, none empty.
func hostLabels(s string) bool {
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// newCORSPolicy returns the policy of the origins, or nil when there are
// none (no CORS header at all).
func newCORSPolicy(origins []string, routes []*compiledRoute, log *slog.Logger) *corsPolicy {
	if len(origins) == 0 {
		return nil
	}
	p := &corsPolicy{preflights: map[string]http.Handler{}, log: log}
	p.opts = cors.Options{
		AllowedOrigins: origins,
		AllowedHeaders: corsRequestHeaders,
		ExposedHeaders: corsExposedHeaders,
		MaxAge:         corsMaxAge,
		// The engine answers the preflight itself (see preflight), after
		// rs/cors has set the headers it decided on.
		OptionsPassthrough: true,
	}
	if slices.Contains(origins, "*") {
		// rs/cors would answer "*"; the contract names the caller's origin.
		p.opts.AllowedOrigins = nil
		p.opts.AllowOriginFunc = func(origin string) bool { return origin != "" }
	} else if slices.ContainsFunc(origins, func(o string) bool { return strings.Contains(o, "*") }) {
		// rs/cors matches "https://*.example.com" as a prefix and a suffix,
		// so "https://evil.org/.example.com" would pass; here the '*'
		// stands for host labels only.
		p.opts.AllowedOrigins = nil
		p.opts.AllowOriginFunc = func(origin string) bool { return originAllowed(origins, origin) }
	}
	var all []string
	for _, rt := range routes {
		if strings.HasPrefix(rt.pattern, corsPrefix) {
			p.routes = append(p.routes, rt)
			if !slices.Contains(all, rt.method) {
				all = append(all, rt.method)
			}
		}
	}
	o := p.opts
	o.AllowedMethods = all
	p.actual = cors.New(o)
	return p
}

// handle applies the policy before routing. It reports whether the request
// was a preflight that it answered; otherwise it has set the headers of an
// actual response and the request goes on to its route.
func (p *corsPolicy) handle(w http.ResponseWriter, r *http.Request) bool {
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, corsPrefix) {
		return false
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		p.actual.HandlerFunc(w, r)
		return false
	}
	var methods []string
	var sp spans
	for _, rt := range p.routes {
		if rt.signed && !slices.Contains(signedMethods, rt.method) {
			continue // routed only to answer 403 invalid_signature
		}
		if rt.match(path, &sp) && !slices.Contains(methods, rt.method) {
			methods = append(methods, rt.method)
		}
	}
	if len(methods) == 0 {
		p.refused(w, r, "no endpoint has this path")
		return false // no such endpoint: the router answers 404, without CORS
	}
	slices.Sort(methods)
	if h, ok := normalHeaderList(r.Header.Values("Access-Control-Request-Headers")); ok {
		r2 := *r
		r2.Header = r.Header.Clone()
		r2.Header.Set("Access-Control-Request-Headers", h)
		r = &r2
	}
	p.preflight(methods).ServeHTTP(w, r)
	if w.Header().Get("Access-Control-Allow-Origin") == "" {
		switch {
		case !p.actual.OriginAllowed(r):
			p.refused(w, r, "origin not allowed (Config.CORSOrigins)")
		case !slices.Contains(methods, r.Header.Get("Access-Control-Request-Method")):
			p.refused(w, r, "method not allowed here (allowed: "+strings.Join(methods, ", ")+")")
		default:
			p.refused(w, r, "request headers not allowed (allowed: "+strings.Join(corsRequestHeaders, ", ")+")")
		}
	}
	return true
}

// maxLoggedOrigin caps the Origin and Access-Control-Request-* values a
// refusal's log line quotes: they are the caller's text.
const maxLoggedOrigin = 256

// refused logs a refused preflight at debug level, with the origin, what
// it asked for and why: the browser tells the page only that CORS failed.
func (p *corsPolicy) refused(w http.ResponseWriter, r *http.Request, why string) {
	if !p.log.Enabled(r.Context(), slog.LevelDebug) {
		return
	}
	capped := func(s string) string {
		if len(s) > maxLoggedOrigin {
			return s[:maxLoggedOrigin] + "..."
		}
		return s
	}
	p.log.Debug("storage: CORS preflight refused", "request_id", w.Header().Get("X-Request-Id"),
		"origin", capped(r.Header.Get("Origin")), "method", capped(r.Header.Get("Access-Control-Request-Method")),
		"headers", capped(strings.Join(r.Header.Values("Access-Control-Request-Headers"), ",")), "reason", why)
}

// signedMethods are the methods a signed URL serves: GET and HEAD for a
// download URL, PUT for an upload URL.
var signedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPut}

// maxRequestHeadersList bounds the Access-Control-Request-Headers value that
// normalHeaderList rewrites; a longer one is left to rs/cors, which refuses
// it.
const maxRequestHeadersList = 1024

// normalHeaderList spells the header names of an Access-Control-Request-
// Headers value as rs/cors accepts them and browsers send them (Fetch:
// lower case, sorted, each once, comma-separated). Names are
// case-insensitive and their order means nothing, so a client that writes
// "Authorization, Content-Type" asks for the same headers as a browser.
// It reports false when there is nothing to rewrite.
func normalHeaderList(values []string) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	joined := strings.Join(values, ",")
	if len(joined) > maxRequestHeadersList {
		return "", false
	}
	var names []string
	for _, n := range strings.Split(joined, ",") {
		if n = strings.ToLower(strings.Trim(n, " \t")); n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ","), true
}

// preflight returns the preflight handler of one set of methods (sorted),
// made on first use: there are as many as distinct method sets of routes.
func (p *corsPolicy) preflight(methods []string) http.Handler {
	key := strings.Join(methods, ", ")
	p.mu.Lock()
	defer p.mu.Unlock()
	if h, ok := p.preflights[key]; ok {
		return h
	}
	o := p.opts
	o.AllowedMethods = methods
	allowHeaders := strings.Join(corsRequestHeaders, ", ")
	h := cors.New(o).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		if hdr.Get("Access-Control-Allow-Origin") != "" {
			hdr.Set("Access-Control-Allow-Methods", key)
			hdr.Set("Access-Control-Allow-Headers", allowHeaders)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	p.preflights[key] = h
	return h
}
