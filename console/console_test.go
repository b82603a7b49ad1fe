package console_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/console"
)

const admin = "admin-token-0123456789"

func get(t *testing.T, h http.Handler, method, path, token, body string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

func bodyOf(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFiles: every file is served with the strict headers, revalidated
// with its ETag; nothing but the embedded files is reachable.
func TestFiles(t *testing.T) {
	h := console.Handler(console.Options{AdminTokens: []string{admin}})
	for _, p := range []string{"/console/", "/console/index.html", "/console/app.js", "/console/views/location.js", "/console/style.css"} {
		r := get(t, h, "GET", p, "", "")
		if r.StatusCode != 200 {
			t.Fatalf("GET %s: %d", p, r.StatusCode)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": console.CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
			"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", p, k, got, want)
			}
		}
		ct := r.Header.Get("Content-Type")
		if strings.HasSuffix(p, ".js") && ct != "text/javascript; charset=utf-8" || strings.HasSuffix(p, "/") && !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		etag := r.Header.Get("ETag")
		if r := get(t, h, "GET", p, "", "", "If-None-Match", etag); r.StatusCode != http.StatusNotModified || etag == "" {
			t.Errorf("GET %s with If-None-Match %q: %d", p, etag, r.StatusCode)
		}
	}
	if !strings.Contains(console.CSP, "default-src 'self'") || strings.Contains(console.CSP, "unsafe") {
		t.Errorf("CSP %q", console.CSP)
	}
	for _, p := range []string{"/console/nope.js", "/console/views/../app.js", "/console/./app.js", "/console/views/", "/console//app.js", "/console/static/app.js", "/other"} {
		if r := get(t, h, "GET", p, "", ""); r.StatusCode != http.StatusNotFound || !strings.Contains(bodyOf(t, r), `"unknown_endpoint"`) {
			t.Errorf("GET %s: %d, want 404 unknown_endpoint", p, r.StatusCode)
		}
	}
	if r := get(t, h, "GET", "/console", "", ""); r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := get(t, h, "POST", "/console/", "", ""); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d", r.StatusCode)
	}
}

// TestNoInlineCodeNoHTMLSinks: the CSP forbids inline scripts and styles,
// so the page has none; and no script writes HTML from strings (data
// goes through textContent), nor puts the token anywhere but the
// Authorization header and sessionStorage.
func TestNoInlineCodeNoHTMLSinks(t *testing.T) {
	root := "static"
	index, err := os.ReadFile(filepath.Join(root, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(string(index), -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("inline script in index.html: %q", m[0])
		}
	}
	if regexp.MustCompile(`<style|\sstyle=|\son[a-z]+=`).Match(index) {
		t.Error("inline style or event handler in index.html")
	}
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|\.style\.|setAttribute\('style'`)
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(string(b), "\n") {
			if sinks.MatchString(l) && !strings.HasPrefix(strings.TrimSpace(l), "//") {
				t.Errorf("%s: %s", p, strings.TrimSpace(l))
			}
			if strings.Contains(l, "token.get()") && !strings.Contains(l, "'Bearer ' + token.get()") && !strings.Contains(l, "if (token.get())") && !strings.Contains(l, "if (!token.get())") {
				t.Errorf("%s: the token used outside the Authorization header: %s", p, strings.TrimSpace(l))
			}
		}
		return nil
	})
}

// TestAssetsSize: the console adds well under 1 MiB to the binary.
func TestAssetsSize(t *testing.T) {
	n := console.Size()
	t.Logf("console assets: %d bytes (%.1f KiB)", n, float64(n)/1024)
	if n <= 0 || n >= 1<<20 {
		t.Fatalf("console assets: %d bytes, want more than 0 and under 1 MiB", n)
	}
}

// TestAPI: /console/api/ answers only the admin token; the token form
// exists only with MintToken and checks what it signs.
func TestAPI(t *testing.T) {
	var got []any
	mint := func(tenant, app, user string, scopes []string, exp time.Time) (string, error) {
		got = []any{tenant, app, user, strings.Join(scopes, " "), exp.Sub(time.Now()).Round(time.Minute)}
		return "signed", nil
	}
	with := console.Handler(console.Options{AdminTokens: []string{"other-token-0123456789", admin}, MintToken: mint})
	without := console.Handler(console.Options{AdminTokens: []string{admin}})
	for _, tok := range []string{"", admin + "x", "x"} {
		r := get(t, with, "GET", "/console/api/info", tok, "")
		if r.StatusCode != http.StatusUnauthorized || !strings.Contains(bodyOf(t, r), `"invalid_token"`) {
			t.Errorf("info with %q: %d", tok, r.StatusCode)
		}
		if r := get(t, with, "POST", "/console/api/token", tok, `{"tenant":"t1","app":"a","scopes":["storage.private.read"]}`); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("token with %q: %d", tok, r.StatusCode)
		}
	}
	if b := bodyOf(t, get(t, with, "GET", "/console/api/info", admin, "")); !strings.Contains(b, `"devTokens":true`) {
		t.Errorf("info: %s", b)
	}
	if b := bodyOf(t, get(t, without, "GET", "/console/api/info", admin, "")); !strings.Contains(b, `"devTokens":false`) {
		t.Errorf("info without MintToken: %s", b)
	}
	if r := get(t, without, "POST", "/console/api/token", admin, `{"tenant":"t1","app":"a","scopes":["storage.private.read"]}`); r.StatusCode != http.StatusNotFound {
		t.Errorf("token without MintToken: %d", r.StatusCode)
	}
	for _, body := range []string{
		``, `{}`, `{"tenant":"t/1","app":"a","scopes":["storage.private.read"]}`, `{"tenant":"t1","app":"..","scopes":["storage.private.read"]}`,
		`{"tenant":"t1","app":"a","user":"u%2F","scopes":["storage.private.read"]}`, `{"tenant":"t1","app":"a","scopes":[]}`,
		`{"tenant":"t1","app":"a","scopes":["storage.admin"]}`, `{"tenant":"t1","app":"a","scopes":["storage.private.read"],"ttl":2592001}`,
		`{"tenant":"t1","app":"a","scopes":["storage.private.read"],"ttl":-1}`, `{"tenant":"t1","app":"a","scopes":["storage.private.read"],"exp":1}`,
	} {
		if r := get(t, with, "POST", "/console/api/token", admin, body); r.StatusCode != http.StatusBadRequest {
			t.Errorf("token %s: %d, want 400", body, r.StatusCode)
		}
	}
	if got != nil {
		t.Fatalf("a refused request was signed: %v", got)
	}
	r := get(t, with, "POST", "/console/api/token", admin, `{"tenant":"t1","app":"a","user":"u1","scopes":["storage.user.read","storage.user.write"],"ttl":7200}`)
	if b := bodyOf(t, r); r.StatusCode != 200 || !strings.Contains(b, `"token":"signed"`) || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %s", r.StatusCode, b)
	}
	want := []any{"t1", "a", "u1", "storage.user.read storage.user.write", 2 * time.Hour}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("signed %v, want %v", got, want)
		}
	}
}
