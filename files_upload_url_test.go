package storage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// signUpload asks for an upload URL (method PUT) and returns it, checking
// the answer's shape.
func signUpload(t testing.TB, srv *cpodtest.Server, token string, body map[string]any) string {
	t.Helper()
	body["method"] = "PUT"
	r := do(t, srv, "POST", "/v1/storage/signed-urls", token, body)
	wantStatus(t, r, http.StatusOK, "")
	var out struct{ URL, ExpiresAt, Method string }
	decode(t, r, &out)
	equal(t, "method", out.Method, "PUT")
	if _, err := time.Parse(time.RFC3339, out.ExpiresAt); err != nil {
		t.Fatalf("expiresAt %q: %v", out.ExpiresAt, err)
	}
	return out.URL
}

// sendURL sends body to an absolute URL with no Authorization header and
// the Content-Type ct (none when ""). body may be nil.
func sendURL(t testing.TB, method, u, ct string, body io.Reader) resp {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return fileSend(t, http.DefaultClient, req)
}

// withQuery returns u with its query changed by f, re-encoded in the
// canonical order, so that only f's change differs.
func withQuery(t testing.TB, u string, f func(q url.Values)) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	f(q)
	pu.RawQuery = q.Encode()
	return pu.String()
}

// readFile reads a file with a token: its status and body.
func readFile(t testing.TB, srv *cpodtest.Server, token, path, tier string) resp {
	t.Helper()
	return do(t, srv, "GET", "/v1/storage/files/"+path+tierQuery(tier, "?"), token, nil)
}

// TestFilesUploadURL: an upload URL stores a file with no Authorization
// header, like an authenticated PUT, and nothing else: not another type,
// not more than maxSize, not after expiry, not as a download, not changed.
func TestFilesUploadURL(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.AppCacheTTL = -1 }))

	// The happy path: the answer is the authenticated PUT's file JSON.
	u := signUpload(t, srv, tok, map[string]any{"key": "up/a.png", "contentType": "image/png", "maxSize": 10, "expiresIn": 60})
	if !strings.HasPrefix(u, srv.URL+"/v1/storage/signed/t1/apps/a/up/a.png?") {
		t.Fatalf("upload URL %q is not the engine's signed URL of the location", u)
	}
	pu, _ := url.Parse(u)
	for name, want := range map[string]string{"method": "PUT", "contentType": "image/png", "maxSize": "10", "tier": "private", "app": "a"} {
		equal(t, "query "+name, pu.Query().Get(name), want)
	}
	r := sendURL(t, "PUT", u, "image/png", strings.NewReader("0123456789"))
	wantStatus(t, r, http.StatusOK, "")
	var w fileWrite
	decode(t, r, &w)
	equal(t, "key", w.Key, "up/a.png")
	equal(t, "tier", w.Tier, "private")
	equal(t, "size", w.Size, int64(10))
	equal(t, "contentType", w.ContentType, "image/png")
	got := readFile(t, srv, tok, "up/a.png", "")
	wantStatus(t, got, http.StatusOK, "")
	equal(t, "stored", string(got.body), "0123456789")
	equal(t, "ETag agrees", got.header.Get("ETag"), w.ETag)
	equal(t, "Referrer-Policy", r.header.Get("Referrer-Policy"), "no-referrer")
	// The same media type spelled with other letter case is the signed one;
	// the URL may be used again until it expires; chunked works too.
	r = sendURL(t, "PUT", u, "Image/PNG", chunked(strings.NewReader("abc")))
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "chunked stored", string(readFile(t, srv, tok, "up/a.png", "").body), "abc")

	// Misuse of the URL: nothing is stored, the file stays "abc".
	unchanged := func(what string) {
		t.Helper()
		if b := string(readFile(t, srv, tok, "up/a.png", "").body); b != "abc" {
			t.Fatalf("%s: the file is now %q", what, b)
		}
	}
	for _, ct := range []string{"", "text/html", "image/png; charset=utf-8", "image/pngx", "image/svg+xml", "not a type"} {
		r := sendURL(t, "PUT", u, ct, strings.NewReader("<script>"))
		wantStatus(t, r, http.StatusForbidden, "invalid_signature")
		unchanged("Content-Type " + ct)
	}
	// Over maxSize: by Content-Length (answered before the body is read)
	// and while streaming a chunked body.
	wantStatus(t, sendURL(t, "PUT", u, "image/png", strings.NewReader("0123456789X")), http.StatusRequestEntityTooLarge, "too_large")
	unchanged("Content-Length over maxSize")
	wantStatus(t, sendURL(t, "PUT", u, "image/png", chunked(strings.NewReader("0123456789X"))), http.StatusRequestEntityTooLarge, "too_large")
	unchanged("chunked over maxSize")
	// A PUT URL cannot read, a GET URL cannot write.
	wantStatus(t, sendURL(t, "GET", u, "", nil), http.StatusForbidden, "invalid_signature")
	equal(t, "HEAD with an upload URL", sendURL(t, "HEAD", u, "", nil).status, http.StatusForbidden)
	for _, m := range []string{"POST", "PATCH", "DELETE"} {
		wantStatus(t, sendURL(t, m, u, "image/png", strings.NewReader("0123")), http.StatusForbidden, "invalid_signature")
	}
	unchanged("other methods")
	dl := signURL(t, srv, tok, map[string]any{"key": "up/a.png"})
	wantStatus(t, sendURL(t, "PUT", dl, "image/png", strings.NewReader("0123")), http.StatusForbidden, "invalid_signature")
	unchanged("PUT with a download URL")
	equal(t, "download URL reads", string(sendURL(t, "GET", dl, "", nil).body), "abc")

	// Tampering: every change is 403 invalid_signature, and stores nothing.
	other := signUpload(t, srv, tok, map[string]any{"key": "up/b.png", "contentType": "image/png", "maxSize": 10})
	big := signUpload(t, srv, tok, map[string]any{"key": "up/a.png", "contentType": "image/png", "maxSize": 1000})
	tampered := map[string]string{
		"other key":            strings.Replace(u, "/up/a.png?", "/up/b.png?", 1),
		"other tenant":         strings.Replace(u, "/t1/apps/a/", "/t10/apps/a/", 1),
		"other app path":       strings.Replace(u, "/t1/apps/a/", "/t1/apps/ab/", 1),
		"other tier path":      strings.Replace(u, "/t1/apps/a/", "/t1/shared/", 1),
		"tier":                 withQuery(t, u, func(q url.Values) { q.Set("tier", "shared") }),
		"app":                  withQuery(t, u, func(q url.Values) { q.Set("app", "ab") }),
		"maxSize":              withQuery(t, u, func(q url.Values) { q.Set("maxSize", "1000") }),
		"maxSize removed":      withQuery(t, u, func(q url.Values) { q.Del("maxSize") }),
		"maxSize zero-padded":  withQuery(t, u, func(q url.Values) { q.Set("maxSize", "010") }),
		"contentType":          withQuery(t, u, func(q url.Values) { q.Set("contentType", "text/html") }),
		"contentType removed":  withQuery(t, u, func(q url.Values) { q.Del("contentType") }),
		"contentType empty":    withQuery(t, u, func(q url.Values) { q.Set("contentType", "") }),
		"contentType raw '/'":  strings.Replace(u, "image%2Fpng", "image/png", 1),
		"method GET":           withQuery(t, u, func(q url.Values) { q.Set("method", "GET") }),
		"method lower-case":    withQuery(t, u, func(q url.Values) { q.Set("method", "put") }),
		"method removed":       withQuery(t, u, func(q url.Values) { q.Del("method") }),
		"as a download URL":    withQuery(t, u, func(q url.Values) { q.Del("method"); q.Del("maxSize"); q.Del("contentType") }),
		"expires":              withQuery(t, u, func(q url.Values) { q.Set("expires", bump(q.Get("expires"))) }),
		"sig of other key":     withQuery(t, u, func(q url.Values) { q.Set("sig", mustQuery(t, other).Get("sig")) }),
		"sig of larger size":   withQuery(t, u, func(q url.Values) { q.Set("sig", mustQuery(t, big).Get("sig")) }),
		"sig of download URL":  withQuery(t, u, func(q url.Values) { q.Set("sig", mustQuery(t, dl).Get("sig")) }),
		"download URL + put":   withQuery(t, dl, func(q url.Values) { q.Set("method", "PUT"); q.Set("maxSize", "10") }),
		"extra parameter":      withQuery(t, u, func(q url.Values) { q.Set("x", "1") }),
		"doubled maxSize":      withQuery(t, u, func(q url.Values) { q.Add("maxSize", "10") }),
		"flipped sig":          withQuery(t, u, func(q url.Values) { q.Set("sig", flip(q.Get("sig"))) }),
		"reordered parameters": pu.Scheme + "://" + pu.Host + pu.EscapedPath() + "?tier=private&" + strings.Replace(pu.RawQuery, "&tier=private", "", 1),
	}
	for name, tu := range tampered {
		if tu == u {
			t.Fatalf("%s: the URL did not change", name)
		}
		r := sendURL(t, "PUT", tu, "image/png", strings.NewReader("0123"))
		if r.status != http.StatusForbidden || !strings.Contains(string(r.body), `"invalid_signature"`) {
			t.Fatalf("%s (%s): %d %s, want 403 invalid_signature", name, tu, r.status, r.body)
		}
		equal(t, name+" Referrer-Policy", r.header.Get("Referrer-Policy"), "no-referrer")
	}
	unchanged("tampered URLs")
	wantStatus(t, readFile(t, srv, tok, "up/b.png", ""), http.StatusNotFound, "not_found")
	for _, id := range []fileID{{"t10", "a", "u1"}, {"t1", "ab", "u1"}} {
		wantStatus(t, readFile(t, srv, fileToken(srv, id), "up/a.png", ""), http.StatusNotFound, "not_found")
	}
	wantStatus(t, readFile(t, srv, tok, "up/a.png", "shared"), http.StatusNotFound, "not_found")

	// No existence check, and no contentType: any valid type, stored as sent.
	free := signUpload(t, srv, tok, map[string]any{"key": "new/doc.txt"})
	equal(t, "default maxSize", mustQuery(t, free).Get("maxSize"), strconv.FormatInt(5<<30, 10))
	equal(t, "no contentType", mustQuery(t, free).Has("contentType"), false)
	r = sendURL(t, "PUT", free, "text/plain; charset=utf-8", strings.NewReader("free"))
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &w)
	equal(t, "free contentType", w.ContentType, "text/plain; charset=utf-8")
	wantStatus(t, sendURL(t, "PUT", free, "no-slash", strings.NewReader("x")), http.StatusBadRequest, "invalid_request")
	r = sendURL(t, "PUT", free, "", strings.NewReader("bin"))
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &w)
	equal(t, "default contentType", w.ContentType, "application/octet-stream")

	// Expiry, on the engine's clock.
	srv.AdvanceClock(61 * time.Second)
	wantStatus(t, sendURL(t, "PUT", u, "image/png", strings.NewReader("late")), http.StatusForbidden, "expired")
	unchanged("expired")
	wantStatus(t, sendURL(t, "PUT", tampered["maxSize"], "image/png", strings.NewReader("late")), http.StatusForbidden, "invalid_signature")
}

func mustQuery(t testing.TB, u string) url.Values {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Query()
}

// TestFilesUploadURLTiers: upload URLs of each tier write their own
// location, with names that need escaping, and answer the relative path.
func TestFilesUploadURLTiers(t *testing.T) {
	t.Parallel()
	srv, _ := fileServer(t)
	odd := fileID{"t+1x?#", "a", "u;1&="}
	ot := fileToken(srv, odd)
	for _, tier := range []string{"private", "user", "shared"} {
		name := "dir x/100% done?#é.txt"
		u := signUpload(t, srv, ot, map[string]any{"key": name, "tier": tier, "contentType": "text/plain"})
		r := sendURL(t, "PUT", u, "text/plain", strings.NewReader("odd "+tier))
		wantStatus(t, r, http.StatusOK, "")
		var w fileWrite
		decode(t, r, &w)
		equal(t, "key "+tier, w.Key, name)
		equal(t, "tier "+tier, w.Tier, tier)
		got := readFile(t, srv, ot, "dir%20x/100%25%20done%3F%23%C3%A9.txt", tier)
		wantStatus(t, got, http.StatusOK, "")
		equal(t, "stored "+tier, string(got.body), "odd "+tier)
	}
	// The user tier is the user's, whatever app reads it.
	r := readFile(t, srv, fileToken(srv, fileID{"t+1x?#", "b", "u;1&="}), "dir%20x/100%25%20done%3F%23%C3%A9.txt", "user")
	equal(t, "user tier from app b", string(r.body), "odd user")
}

// TestFilesUploadURLCreate: who may create an upload URL, and the checks of
// the request.
func TestFilesUploadURLCreate(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	create := func(token string, body map[string]any) resp {
		return do(t, srv, "POST", "/v1/storage/signed-urls", token, body)
	}
	// A read-only token, or an app that declares only reads, cannot.
	ro := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: []string{"storage.private.read", "storage.shared.write"}})
	wantStatus(t, create(ro, map[string]any{"key": "f", "method": "PUT"}), http.StatusForbidden, "insufficient_scope")
	wantStatus(t, create(ro, map[string]any{"key": "f", "method": "PUT", "tier": "shared"}), http.StatusOK, "")
	srv.RegisterApp(t, "reader", "storage.private.read", "storage.private.write", "storage.shared.read")
	rt := srv.Token(cpodtest.Claims{Tenant: "t1", App: "reader", User: "u1", Scopes: allScopes})
	wantStatus(t, create(rt, map[string]any{"key": "f", "method": "PUT", "tier": "shared"}), http.StatusForbidden, "invalid_scope")
	noUser := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", Scopes: allScopes})
	wantStatus(t, create(noUser, map[string]any{"key": "f", "method": "PUT", "tier": "user"}), http.StatusForbidden, "user_required")
	wantStatus(t, create("", map[string]any{"key": "f", "method": "PUT"}), http.StatusUnauthorized, "invalid_token")
	// A download URL still needs read and an existing file; it answers its method.
	wo := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: []string{"storage.private.write"}})
	wantStatus(t, create(wo, map[string]any{"key": "f", "method": "PUT"}), http.StatusOK, "")
	wantStatus(t, create(wo, map[string]any{"key": "f", "method": "GET"}), http.StatusForbidden, "insufficient_scope")
	wantStatus(t, create(tok, map[string]any{"key": "f"}), http.StatusNotFound, "not_found")
	putFile(t, srv, tok, "f", "", "", "x")
	for _, m := range []any{nil, "GET"} {
		r := create(tok, map[string]any{"key": "f", "method": m})
		wantStatus(t, r, http.StatusOK, "")
		var out struct{ Method string }
		decode(t, r, &out)
		equal(t, "download method", out.Method, "GET")
	}

	bad := []map[string]any{
		{"key": "f", "method": "put"},
		{"key": "f", "method": "DELETE"},
		{"key": "f", "method": "HEAD"},
		{"key": "f", "method": 1},
		{"key": "f", "maxSize": 10}, // GET with upload fields
		{"key": "f", "method": "GET", "contentType": "text/plain"},
		{"key": "f", "method": "PUT", "maxSize": 0},
		{"key": "f", "method": "PUT", "maxSize": -1},
		{"key": "f", "method": "PUT", "maxSize": 1.5},
		{"key": "f", "method": "PUT", "maxSize": "10"},
		{"key": "f", "method": "PUT", "maxSize": json.RawMessage("1e3")},
		{"key": "f", "method": "PUT", "maxSize": int64(5<<30) + 1},
		{"key": "f", "method": "PUT", "contentType": "nope"},
		{"key": "f", "method": "PUT", "contentType": "text/plain\n"},
		{"key": "f", "method": "PUT", "contentType": strings.Repeat("a", 250) + "/plain"},
		{"key": "f", "method": "PUT", "contentType": 5},
		{"key": "f", "method": "PUT", "expiresIn": 0},
		{"key": "f", "method": "PUT", "expiresIn": 604801},
		{"key": "../f", "method": "PUT"},
		{"key": "a//b", "method": "PUT"},
		{"key": "f/", "method": "PUT"},
		{"method": "PUT"},
		{"key": "f", "method": "PUT", "MaxSize": 10},
	}
	for _, b := range bad {
		r := create(tok, b)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"invalid_request"`) {
			t.Fatalf("%v: %d %s, want 400 invalid_request", b, r.status, r.body)
		}
	}
	for _, b := range []map[string]any{
		{"key": "f", "method": "PUT", "maxSize": 1, "contentType": ""},
		{"key": "f", "method": "PUT", "maxSize": int64(5 << 30), "contentType": nil, "expiresIn": 604800},
		{"key": "f", "method": "PUT", "maxSize": nil},
	} {
		wantStatus(t, create(tok, b), http.StatusOK, "")
	}
}

// TestFilesUploadURLRevoked: the signing app must still be registered (else
// 403 invalid_signature: the URL is revoked) and declare the tier's write
// scope when the upload comes (else 403 invalid_scope, as for its tokens).
func TestFilesUploadURLRevoked(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.AppCacheTTL = -1 }))
	priv := signUpload(t, srv, tok, map[string]any{"key": "r.txt"})
	shared := signUpload(t, srv, tok, map[string]any{"key": "r.txt", "tier": "shared"})
	wantStatus(t, sendURL(t, "PUT", priv, "", strings.NewReader("1")), http.StatusOK, "")

	// The app keeps read but loses the private write scope.
	ctx := context.Background()
	keep := []string{"storage.private.read", "storage.shared.read", "storage.shared.write", "storage.user.read", "storage.user.write"}
	if _, err := srv.Engine.UpdateApp(ctx, "a", storage.AppUpdate{DeclaredScopes: &keep}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, sendURL(t, "PUT", priv, "", strings.NewReader("2")), http.StatusForbidden, "invalid_scope")
	equal(t, "not overwritten", string(readFile(t, srv, tok, "r.txt", "").body), "1")
	wantStatus(t, sendURL(t, "PUT", shared, "", strings.NewReader("s")), http.StatusOK, "")
	if err := srv.Engine.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, sendURL(t, "PUT", shared, "", strings.NewReader("t")), http.StatusForbidden, "invalid_signature")
	srv.RegisterApp(t, "a", allScopes...)
	equal(t, "shared not overwritten", string(readFile(t, srv, tok, "r.txt", "shared").body), "s")
}

// TestFilesUploadURLLarge: an upload URL streams like an authenticated PUT:
// a chunked body beyond the first MiB goes through the multipart path, and
// one that passes maxSize there is refused with nothing stored.
func TestFilesUploadURLLarge(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	data := pattern(3<<20 + 5)
	u := signUpload(t, srv, tok, map[string]any{"key": "big.bin", "maxSize": len(data)})
	wantStatus(t, sendURL(t, "PUT", u, "", chunked(bytes.NewReader(data))), http.StatusOK, "")
	if got := readFile(t, srv, tok, "big.bin", ""); !bytes.Equal(got.body, data) {
		t.Fatalf("stored %d bytes, want the %d sent", len(got.body), len(data))
	}
	small := signUpload(t, srv, tok, map[string]any{"key": "over.bin", "maxSize": 2 << 20})
	wantStatus(t, sendURL(t, "PUT", small, "", chunked(bytes.NewReader(data))), http.StatusRequestEntityTooLarge, "too_large")
	wantStatus(t, readFile(t, srv, tok, "over.bin", ""), http.StatusNotFound, "not_found")
	wantStatus(t, sendURL(t, "PUT", small, "", bytes.NewReader(data)), http.StatusRequestEntityTooLarge, "too_large")
	wantStatus(t, readFile(t, srv, tok, "over.bin", ""), http.StatusNotFound, "not_found")
}

// TestFilesUploadURLPresignedMode: with Config.S3PresignedURLs, download
// URLs are S3's, upload URLs stay the engine's (S3 cannot enforce maxSize).
func TestFilesUploadURLPresignedMode(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.S3PresignedURLs = true }))
	u := signUpload(t, srv, tok, map[string]any{"key": "p.txt", "maxSize": 4, "contentType": "text/plain"})
	if !strings.HasPrefix(u, srv.URL+"/v1/storage/signed/") {
		t.Fatalf("upload URL %q is not the engine's", u)
	}
	wantStatus(t, sendURL(t, "PUT", u, "text/plain", strings.NewReader("12345")), http.StatusRequestEntityTooLarge, "too_large")
	wantStatus(t, sendURL(t, "PUT", u, "text/plain", strings.NewReader("1234")), http.StatusOK, "")
	d := signURL(t, srv, tok, map[string]any{"key": "p.txt"})
	if strings.HasPrefix(d, srv.URL) {
		t.Fatalf("download URL %q is not S3's", d)
	}
	equal(t, "download", string(sendURL(t, "GET", d, "", nil).body), "1234")
}

// TestFilesUploadURLCORS: a browser on an allowed origin may preflight and
// send a PUT with a Content-Type to an upload URL, and read the answer.
func TestFilesUploadURLCORS(t *testing.T) {
	t.Parallel()
	srv, tok := corsServer(t, appOrigin)
	u := signUpload(t, srv, tok, map[string]any{"key": "c.png", "contentType": "image/png"})
	r := preflight(t, srv, u, appOrigin, "PUT", "content-type")
	equal(t, "preflight status", r.status, http.StatusNoContent)
	equal(t, "preflight origin", r.header.Get("Access-Control-Allow-Origin"), appOrigin)
	if m := list(r.header, "Access-Control-Allow-Methods"); !containsFold(m, "PUT") {
		t.Fatalf("preflight methods %v lack PUT", m)
	}
	if h := list(r.header, "Access-Control-Allow-Headers"); !containsFold(h, "Content-Type") {
		t.Fatalf("preflight headers %v lack Content-Type", h)
	}
	r = send(t, srv, "PUT", u, map[string]string{"Origin": appOrigin, "Content-Type": "image/png"}, "png")
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "upload origin", r.header.Get("Access-Control-Allow-Origin"), appOrigin)
	if e := list(r.header, "Access-Control-Expose-Headers"); !containsFold(e, "X-Request-Id") {
		t.Fatalf("exposed headers %v", e)
	}
	r = send(t, srv, "PUT", u, map[string]string{"Origin": appOrigin, "Content-Type": "text/html"}, "<b>")
	wantStatus(t, r, http.StatusForbidden, "invalid_signature")
	equal(t, "refusal origin", r.header.Get("Access-Control-Allow-Origin"), appOrigin)
}

// TestFilesUploadURLS3Frozen: an upload URL goes through the upload path of
// an authenticated PUT, with its S3Timeout stall guard: S3 that accepts and
// never answers is 503 backend_unavailable within the bound.
func TestFilesUploadURLS3Frozen(t *testing.T) {
	t.Parallel()
	const timeout = 400 * time.Millisecond
	const bound = timeout + 4*time.Second // slack for -race on a busy machine
	srv, tok, proxy := proxiedServer(t, timeout)
	u := signUpload(t, srv, tok, map[string]any{"key": "frozen.bin"})
	proxy.frozen.Store(true)
	for name, body := range map[string]func() io.Reader{
		"content-length":    func() io.Reader { return strings.NewReader("new") },
		"chunked multipart": func() io.Reader { return chunked(bytes.NewReader(pattern(3 << 20))) },
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			r := sendURL(t, "PUT", u, "", body())
			wantUnavailable(t, r, time.Since(start), bound, false)
		})
	}
}

// TestFilesUploadURLMounted: an upload URL asked for through a mount prefix
// carries the prefix and uploads through it without a token.
func TestFilesUploadURLMounted(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	mux := http.NewServeMux()
	mux.Handle("/storage-api/", http.StripPrefix("/storage-api", srv.Engine))
	ts := httptest.NewServer(mux)
	defer ts.Close()
	req, _ := http.NewRequest("POST", ts.URL+"/storage-api/v1/storage/signed-urls", strings.NewReader(`{"key":"m.txt","method":"PUT"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	r := fileSend(t, http.DefaultClient, req)
	wantStatus(t, r, http.StatusOK, "")
	var out struct{ URL string }
	decode(t, r, &out)
	if !strings.HasPrefix(out.URL, ts.URL+"/storage-api/v1/storage/signed/") {
		t.Fatalf("upload URL %q does not carry the mount prefix", out.URL)
	}
	wantStatus(t, sendURL(t, "PUT", out.URL, "text/plain", strings.NewReader("mounted")), http.StatusOK, "")
	equal(t, "stored", string(readFile(t, srv, tok, "m.txt", "").body), "mounted")
}
