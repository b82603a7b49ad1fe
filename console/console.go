// Package console serves the cpod storage web console: a single-page app
// built into the binary (plain HTML, CSS and JavaScript modules, no build
// step, nothing fetched from elsewhere) that signs in with an admin token
// and works only through the engine's HTTP API (the /v1/oauth/apps and
// /v1/admin/ routes, see admin_browse.go of the root package).
//
// Mount it beside the engine, on the same origin:
//
//	mux.Handle("/console/", console.Handler(console.Options{AdminTokens: tokens}))
//	mux.Handle("/", engine)
//
// # Security
//
// Every answer under /console/ carries a strict Content-Security-Policy
// (default-src 'self', no inline script or style, no framing, no
// plugins), X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer
// and Cache-Control: no-cache (revalidated with an ETag, so a new binary's
// index.html is never served stale). The admin token is kept in the
// browser's sessionStorage and sent only in the Authorization header,
// never in a URL. Data is rendered with textContent, never as HTML.
//
// The only routes of this package beside the files are under
// /console/api/, with the admin token: GET info (what the server offers)
// and, when Options.MintToken is set (httpserver's embedded default, which
// signs tokens with its data directory's secret), POST token, which mints
// a development token.
package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	storage "github.com/cpod/storage"
)

//go:embed static
var static embed.FS

// Options configures the console.
type Options struct {
	// AdminTokens are the engine's admin tokens: /console/api/ answers
	// only them (the console's own pages hold no data and need none).
	AdminTokens []string
	// MintToken, when set, signs a development bearer token for the
	// form of the console: tenant, app and user (user may be ""), the
	// scopes and the expiry. nil: no form, POST /console/api/token is 404.
	MintToken func(tenant, app, user string, scopes []string, exp time.Time) (string, error)
}

// CSP is the Content-Security-Policy of every /console/ answer.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console under /console/.
func Handler(o Options) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	h := &handler{o: o, files: sub, etags: map[string]string{}}
	for _, t := range o.AdminTokens {
		h.admins = append(h.admins, sha256.Sum256([]byte(t)))
	}
	_ = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(sub, p)
			sum := sha256.Sum256(b)
			h.etags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		}
		return nil
	})
	return h
}

// Size is the number of bytes of the console's embedded files.
func Size() int64 {
	var n int64
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

type handler struct {
	o      Options
	files  fs.FS
	etags  map[string]string
	admins [][sha256.Size]byte
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	p := r.URL.Path
	if p == "/console" {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
		return
	}
	rest, ok := strings.CutPrefix(p, "/console/")
	if !ok {
		writeError(w, http.StatusNotFound, "unknown_endpoint", "no such page of the console")
		return
	}
	if api, ok := strings.CutPrefix(rest, "api/"); ok {
		h.serveAPI(w, r, api)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "the console's files are read with GET")
		return
	}
	if rest == "" {
		rest = "index.html"
	}
	etag, ok := h.etags[rest]
	if !ok || rest != path.Clean(rest) {
		writeError(w, http.StatusNotFound, "unknown_endpoint", "no such file of the console")
		return
	}
	b, err := fs.ReadFile(h.files, rest)
	if err != nil {
		writeError(w, http.StatusNotFound, "unknown_endpoint", "no such file of the console")
		return
	}
	ct := mime.TypeByExtension(path.Ext(rest))
	if strings.HasSuffix(rest, ".js") {
		ct = "text/javascript; charset=utf-8"
	}
	hd.Set("Content-Type", ct)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

// admin reports whether the request carries one of the admin tokens,
// compared in constant time.
func (h *handler) admin(r *http.Request) bool {
	a := r.Header.Values("Authorization")
	if len(a) != 1 {
		return false
	}
	tok, ok := strings.CutPrefix(a[0], "Bearer ")
	if !ok || tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	match := 0
	for _, want := range h.admins {
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return match == 1
}

// maxTokenTTL caps a minted token's lifetime, as httpserver token does.
const maxTokenTTL = 30 * 24 * time.Hour

func (h *handler) serveAPI(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("Cache-Control", "no-store")
	if !h.admin(r) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "not an admin token")
		return
	}
	switch {
	case name == "info" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"devTokens": h.o.MintToken != nil, "scopes": storage.Scopes})
	case name == "token" && r.Method == http.MethodPost && h.o.MintToken != nil:
		h.mint(w, r)
	case name == "info" || (name == "token" && h.o.MintToken != nil):
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "method "+r.Method+" is not allowed here")
	default:
		writeError(w, http.StatusNotFound, "unknown_endpoint", "no such console endpoint (development tokens are minted only by the embedded default, which signs them with its data directory's secret)")
	}
}

// mint answers POST /console/api/token
// {"tenant","app","user"?,"scopes":[...],"ttl":seconds} with
// {"token","expiresAt"}.
func (h *handler) mint(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tenant string   `json:"tenant"`
		App    string   `json:"app"`
		User   string   `json:"user"`
		Scopes []string `json:"scopes"`
		TTL    int64    `json:"ttl"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the body must be {\"tenant\",\"app\",\"user\"?,\"scopes\":[...],\"ttl\":seconds}")
		return
	}
	bad := func(msg string) { writeError(w, http.StatusBadRequest, "invalid_request", msg) }
	if !storage.ValidID(req.Tenant) || !storage.ValidID(req.App) || (req.User != "" && !storage.ValidID(req.User)) {
		bad("tenant, app and user must be 1 to 128 printable ASCII characters without '/', '\\' or '%', and not '.' or '..' (user may be empty: no user)")
		return
	}
	if len(req.Scopes) == 0 {
		bad("scopes must list at least one scope")
		return
	}
	for _, s := range req.Scopes {
		if !slices.Contains(storage.Scopes, s) {
			bad("unknown scope; known scopes: " + strings.Join(storage.Scopes, ", "))
			return
		}
	}
	if req.TTL == 0 {
		req.TTL = 3600
	}
	ttl := time.Duration(req.TTL) * time.Second
	if req.TTL < 1 || ttl > maxTokenTTL {
		bad("ttl must be 1 to 2592000 seconds (30 days)")
		return
	}
	exp := time.Now().Add(ttl)
	tok, err := h.o.MintToken(req.Tenant, req.App, req.User, req.Scopes, exp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "the token could not be signed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok, "expiresAt": exp.UTC().Format(time.RFC3339)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}
