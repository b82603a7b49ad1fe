package storage_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// fileID is one identity of the files tests.
type fileID struct{ tenant, app, user string }

func (f fileID) String() string { return f.tenant + "/" + f.app + "/" + f.user }

// fileToken mints a token for id with every storage scope.
func fileToken(srv *cpodtest.Server, id fileID) string {
	return srv.Token(cpodtest.Claims{Tenant: id.tenant, App: id.app, User: id.user, Scopes: allScopes})
}

// fileServer starts a server with the apps "a", "ab" and "b" declaring every
// scope, and returns it with a token of t1/a/u1.
func fileServer(t *testing.T, opts ...cpodtest.Option) (*cpodtest.Server, string) {
	t.Helper()
	srv := cpodtest.NewServer(t, opts...)
	for _, app := range []string{"a", "ab", "b"} {
		srv.RegisterApp(t, app, allScopes...)
	}
	return srv, fileToken(srv, fileID{"t1", "a", "u1"})
}

// fileDo sends a request with headers; body may be nil or any io.Reader (a
// reader of unknown length is sent chunked).
func fileDo(t testing.TB, srv *cpodtest.Server, method, path, token string, hdr http.Header, body io.Reader) resp {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL, body)
	if err != nil {
		t.Fatal(err)
	}
	// The path goes on the wire exactly as given, even when it is not valid
	// percent-encoding.
	req.URL.Opaque, req.URL.RawQuery, _ = strings.Cut(path, "?")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return fileSend(t, srv.HTTP.Client(), req)
}

func fileSend(t testing.TB, c *http.Client, req *http.Request) resp {
	t.Helper()
	res, err := c.Do(req)
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

// chunked hides a reader's length, so it is sent with chunked encoding.
func chunked(r io.Reader) io.Reader { return struct{ io.Reader }{r} }

// putFile writes a file and fails the test unless it is stored.
func putFile(t testing.TB, srv *cpodtest.Server, token, path, tier, contentType, body string) fileWrite {
	t.Helper()
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	r := fileDo(t, srv, "PUT", "/v1/storage/files/"+path+tierQuery(tier, "?"), token, h, strings.NewReader(body))
	wantStatus(t, r, http.StatusOK, "")
	var w fileWrite
	decode(t, r, &w)
	return w
}

type fileWrite struct {
	Key, Tier, ContentType, ETag, LastModified string
	Size                                       int64
}

func tierQuery(tier, sep string) string {
	if tier == "" {
		return ""
	}
	return sep + "tier=" + tier
}

type fileListing struct {
	Items []struct {
		Key, ETag, LastModified string
		Size                    int64
	}
	NextCursor *string
}

func listKeys(l fileListing) []string {
	keys := []string{}
	for _, it := range l.Items {
		keys = append(keys, it.Key)
	}
	return keys
}

// signURL asks for a signed URL and returns it.
func signURL(t testing.TB, srv *cpodtest.Server, token string, body any) string {
	t.Helper()
	r := do(t, srv, "POST", "/v1/storage/signed-urls", token, body)
	wantStatus(t, r, http.StatusOK, "")
	var out struct{ URL, ExpiresAt string }
	decode(t, r, &out)
	return out.URL
}

// getURL fetches an absolute URL with no Authorization header.
func getURL(t testing.TB, method, u string, hdr http.Header) resp {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	return fileSend(t, http.DefaultClient, req)
}

// TestFilesSeed replays the seed's files snippets call for call.
func TestFilesSeed(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-myservice", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-myservice", User: "u1", Scopes: allScopes})

	// const result = await sdk.storage.files.write('config/settings.json', data, {contentType: 'application/json'})
	w := putFile(t, srv, tok, "config/settings.json", "", "application/json", `{"hello":"world"}`)
	equal(t, "result.key", w.Key, "config/settings.json")
	equal(t, "result.tier", w.Tier, "private")
	equal(t, "result.size", w.Size, 17)
	equal(t, "result.contentType", w.ContentType, "application/json")

	// await sdk.storage.files.write('avatar.png', imageBuffer, {contentType: 'image/png', tier: 'user'})
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("\x00", 32)
	w = putFile(t, srv, tok, "avatar.png", "user", "image/png", png)
	equal(t, "avatar tier", w.Tier, "user")

	// await sdk.storage.files.write('brand/logo.svg', svgBuffer, {contentType: 'image/svg+xml', tier: 'shared'})
	svg := `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`
	w = putFile(t, srv, tok, "brand/logo.svg", "shared", "image/svg+xml", svg)
	equal(t, "logo tier", w.Tier, "shared")

	// const stream = await sdk.storage.files.read('config/settings.json'); text → '{"hello":"world"}'
	r := do(t, srv, "GET", "/v1/storage/files/config/settings.json", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "read", string(r.body), `{"hello":"world"}`)
	equal(t, "read Content-Type", r.header.Get("Content-Type"), "application/json")

	// The other tiers read back as written.
	r = do(t, srv, "GET", "/v1/storage/files/avatar.png?tier=user", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "avatar", string(r.body), png)
	r = do(t, srv, "GET", "/v1/storage/files/brand/logo.svg?tier=shared", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "logo", string(r.body), svg)
	equal(t, "logo disposition", r.header.Get("Content-Disposition"), "attachment")

	// const url = await sdk.storage.files.url('exports/report.pdf', {expiresIn: 3600, tier: 'private'})
	// (the file must exist: 404 before it is written)
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "exports/report.pdf", "expiresIn": 3600, "tier": "private"}), http.StatusNotFound, "not_found")
	putFile(t, srv, tok, "exports/report.pdf", "", "application/pdf", "%PDF-1.7 report")
	u := signURL(t, srv, tok, map[string]any{"key": "exports/report.pdf", "expiresIn": 3600, "tier": "private"})
	// Send url to the user's browser — no auth header needed to download
	r = getURL(t, "GET", u, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "download", string(r.body), "%PDF-1.7 report")

	// const listing = await sdk.storage.files.list('exports/', {limit: 50})
	putFile(t, srv, tok, "exports/old-report.pdf", "", "application/pdf", "old")
	r = do(t, srv, "GET", "/v1/storage/files?prefix=exports/&limit=50", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	var l fileListing
	decode(t, r, &l)
	equal(t, "listing", strings.Join(listKeys(l), ","), "exports/old-report.pdf,exports/report.pdf")
	for _, it := range l.Items {
		if it.Size == 0 || it.LastModified == "" || it.ETag == "" {
			t.Fatalf("entry %+v lacks size, lastModified or etag", it)
		}
		if _, err := time.Parse(time.RFC3339, it.LastModified); err != nil {
			t.Fatalf("lastModified %q: %v", it.LastModified, err)
		}
	}
	if l.NextCursor != nil {
		t.Fatalf("nextCursor = %q, want null", *l.NextCursor)
	}

	// await sdk.storage.files.delete('exports/old-report.pdf')
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/exports/old-report.pdf", tok, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/exports/old-report.pdf", tok, nil), http.StatusNotFound, "not_found")
}

// TestFilesWriteRead covers the write result, the read headers, HEAD,
// overwrite and delete.
func TestFilesWriteRead(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)

	// No Content-Type: application/octet-stream.
	w := putFile(t, srv, tok, "a/b/c.bin", "", "", "0123456789")
	equal(t, "default contentType", w.ContentType, "application/octet-stream")
	equal(t, "size", w.Size, 10)
	if !strings.HasPrefix(w.ETag, `"`) || !strings.HasSuffix(w.ETag, `"`) {
		t.Fatalf("etag %q is not a quoted entity tag", w.ETag)
	}
	lm, err := time.Parse(time.RFC3339, w.LastModified)
	if err != nil || time.Since(lm) > time.Minute {
		t.Fatalf("lastModified %q: %v", w.LastModified, err)
	}

	for _, method := range []string{"GET", "HEAD"} {
		r := do(t, srv, method, "/v1/storage/files/a/b/c.bin", tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		equal(t, method+" Content-Type", r.header.Get("Content-Type"), "application/octet-stream")
		equal(t, method+" Content-Length", r.header.Get("Content-Length"), "10")
		equal(t, method+" ETag", r.header.Get("ETag"), w.ETag)
		equal(t, method+" nosniff", r.header.Get("X-Content-Type-Options"), "nosniff")
		equal(t, method+" Accept-Ranges", r.header.Get("Accept-Ranges"), "bytes")
		lmh, err := http.ParseTime(r.header.Get("Last-Modified"))
		if err != nil || !lmh.Equal(lm) {
			t.Fatalf("%s Last-Modified %q, want %s", method, r.header.Get("Last-Modified"), lm)
		}
		want := "0123456789"
		if method == "HEAD" {
			want = ""
		}
		equal(t, method+" body", string(r.body), want)
	}

	// Overwrite replaces the bytes and the type.
	w2 := putFile(t, srv, tok, "a/b/c.bin", "", "text/plain; charset=utf-8", "new")
	if w2.ETag == w.ETag {
		t.Fatal("etag unchanged after overwrite")
	}
	r := do(t, srv, "GET", "/v1/storage/files/a/b/c.bin", tok, nil)
	equal(t, "overwritten", string(r.body), "new")
	equal(t, "overwritten type", r.header.Get("Content-Type"), "text/plain; charset=utf-8")

	// Empty file.
	w = putFile(t, srv, tok, "empty", "", "", "")
	equal(t, "empty size", w.Size, 0)
	r = do(t, srv, "GET", "/v1/storage/files/empty", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "empty length", r.header.Get("Content-Length"), "0")

	// Delete: 204, then missing; 204 again.
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/a/b/c.bin", tok, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/a/b/c.bin", tok, nil), http.StatusNotFound, "not_found")
	r = do(t, srv, "HEAD", "/v1/storage/files/a/b/c.bin", tok, nil)
	wantStatus(t, r, http.StatusNotFound, "")
	equal(t, "HEAD 404 body", len(r.body), 0)
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/a/b/c.bin", tok, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/never/was", tok, nil), http.StatusNoContent, "")

	// A "directory" is not a file.
	putFile(t, srv, tok, "dir/file", "", "", "x")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/dir", tok, nil), http.StatusNotFound, "not_found")

	// Auth and scopes.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/dir/file", "", nil), http.StatusUnauthorized, "invalid_token")
	ro := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: []string{"storage.private.read"}})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/dir/file", ro, "x"), http.StatusForbidden, "insufficient_scope")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/dir/file", ro, nil), http.StatusForbidden, "insufficient_scope")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/dir/file", ro, nil), http.StatusOK, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/dir/file?tier=shared", ro, nil), http.StatusForbidden, "insufficient_scope")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/dir/file?tier=other", tok, nil), http.StatusBadRequest, "invalid_request")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/dir/file?tier=user&tier=user", tok, nil), http.StatusBadRequest, "invalid_request")
	cc := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/x?tier=user", cc, "x"), http.StatusForbidden, "user_required")
	// Method not allowed.
	r = do(t, srv, "POST", "/v1/storage/files/dir/file", tok, nil)
	wantStatus(t, r, http.StatusMethodNotAllowed, "invalid_request")
}

// TestFilesPathRules sends every encoding of an escape and every other
// refused path: 400 invalid_request, and no request reaches S3.
func TestFilesPathRules(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	// The raw, escaped paths as sent on the wire after /v1/storage/files/.
	// 1014 bytes, so that "t1/apps/a/" + long is exactly 1024; segments of
	// 100 bytes, as a file system backed S3 (versitygw) limits names to 255.
	long := strings.Repeat(strings.Repeat("x", 99)+"/", 10) + strings.Repeat("x", 14)
	refused := []string{
		"", "../x", "a/../x", "..", ".", "./x", "a/.", "a/..", "a/./b",
		"%2e%2e/x", "%2E%2E/x", ".%2e/x", "%2e./x", "a/%2e%2e", "%2e", "a/%2E/b",
		"%252e%252e/x", "%252e%252e%252fx", "a/%252F..", "x%2541", "%25%32%65", // %XX left after one decoding
		"a/%2F..", "a%2F..%2Fx", "..%2Fx", "%2F..%2Fetc%2Fpasswd",
		"..%5Cx", "a%5C..%5Cb", "%5C%5Cserver%5Cshare", "C:%5Cwindows", "a\\b",
		"/x", "%2Fx", "a//b", "a/%2F/b", "x/", "x%2F", "a/b//",
		"%00", "a%00b", "x%00.txt", "%01", "a%0Ab", "%0D", "%09", "%1F", "%7F", "%C2%80", "%C2%9F",
		"%FF", "%C0%AF", "%ED%A0%80", "a%C3", "%F8%88%80%80%80",
		long + "y",
	}
	// Not percent-encoding at all: net/http refuses the request line itself
	// (a plain-text 400), before the engine sees it.
	for _, p := range []string{"%zz", "100%", "a%2"} {
		r := fileDo(t, srv, "GET", "/v1/storage/files/"+p, tok, nil, nil)
		equal(t, p+" status", r.status, http.StatusBadRequest)
	}
	before := srv.Calls().S3
	for _, p := range refused {
		for _, method := range []string{"PUT", "GET", "HEAD", "DELETE"} {
			var body io.Reader
			if method == "PUT" {
				body = strings.NewReader("payload")
			}
			r := fileDo(t, srv, method, "/v1/storage/files/"+p, tok, nil, body)
			if method == "HEAD" {
				if r.status != http.StatusBadRequest {
					t.Fatalf("HEAD %q: status %d, want 400", p, r.status)
				}
				continue
			}
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"invalid_request"`) {
				t.Fatalf("%s %q: %d %s, want 400 invalid_request", method, p, r.status, r.body)
			}
		}
	}
	// The same rules for signed URLs (the key is in the JSON body).
	for _, k := range []string{"", "../x", "a/../x", "..", "./x", "a//b", "/x", "x/", "a\\b", "a\x00b", "a\nb", "a\x7fb",
		"%2e%2e/x", "a/%2F..", long + "y"} { // (JSON cannot carry invalid UTF-8: the decoder makes it U+FFFD)
		r := do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": k})
		if r.status != http.StatusBadRequest {
			t.Fatalf("signed-urls key %q: %d %s, want 400", k, r.status, r.body)
		}
	}
	// And for list prefixes (decoded once by the query parser).
	for _, p := range []string{"..%2F", "a%2F..%2F", "%2F", "%2Fa", "a%2F%2F", "%252e%252e", "a%5C", "%00", "%0A", "%FF",
		"%2e%2e%2Fx", "." + "%2Fx", url.QueryEscape(long + "y")} {
		r := do(t, srv, "GET", "/v1/storage/files?prefix="+p, tok, nil)
		if r.status != http.StatusBadRequest {
			t.Fatalf("list prefix %q: %d %s, want 400", p, r.status, r.body)
		}
	}
	if after := srv.Calls().S3; after != before {
		t.Fatalf("refused paths made %d S3 requests", after-before)
	}

	// Paths near the edges that are fine, and read back under their name.
	for _, p := range []struct{ raw, name string }{
		{"100%25.txt", "100%.txt"},
		{"..foo", "..foo"}, {".hidden", ".hidden"}, {"a/...", "a/..."}, {"a/b.c/d", "a/b.c/d"},
		{"caf%C3%A9", "café"}, {"with%20space", "with space"}, {"q%3Fx%23y", "q?x#y"},
		{"emoji-%F0%9F%98%80", "emoji-😀"}, {"C:/x", "C:/x"}, {"50%25off", "50%off"},
		{long, long},
	} {
		r := fileDo(t, srv, "PUT", "/v1/storage/files/"+p.raw, tok, nil, strings.NewReader(p.name))
		wantStatus(t, r, http.StatusOK, "")
		var w fileWrite
		decode(t, r, &w)
		equal(t, "key of "+p.raw, w.Key, p.name)
		r = fileDo(t, srv, "GET", "/v1/storage/files/"+p.raw, tok, nil, nil)
		wantStatus(t, r, http.StatusOK, "")
		equal(t, "content of "+p.raw, string(r.body), p.name)
	}
}

// TestFilesUnicodeNormalization documents the policy: paths are bytes, NFC
// and NFD forms are two different files.
func TestFilesUnicodeNormalization(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	nfc, nfd := "caf\u00e9", "cafe\u0301"
	putFile(t, srv, tok, url.PathEscape(nfc), "", "", "nfc")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/"+url.PathEscape(nfd), tok, nil), http.StatusNotFound, "not_found")
	putFile(t, srv, tok, url.PathEscape(nfd), "", "", "nfd")
	r := do(t, srv, "GET", "/v1/storage/files/"+url.PathEscape(nfc), tok, nil)
	equal(t, "nfc", string(r.body), "nfc")
}

// TestFilesIsolationMatrix writes as one identity and reads, heads, lists,
// signs and deletes as every other, in every tier. What is not visible
// answers exactly like a missing file, and list never shows it.
func TestFilesIsolationMatrix(t *testing.T) {
	t.Parallel()
	ids := []fileID{
		{"t1", "a", "u1"},
		{"t1", "a", "u2"},  // same app, other user
		{"t1", "ab", "u1"}, // app id with the other as prefix, same user
		{"t10", "a", "u1"}, // tenant id with the other as prefix
		{"t2", "b", "u3"},  // unrelated
	}
	tiers := []string{"private", "user", "shared"}
	visible := func(w, r fileID, tier string) bool {
		if w.tenant != r.tenant {
			return false
		}
		switch tier {
		case "private":
			return w.app == r.app
		case "user":
			return w.user == r.user
		}
		return true
	}
	for wi, w := range ids {
		t.Run("writer="+w.String(), func(t *testing.T) {
			t.Parallel()
			srv, _ := fileServer(t)
			wt := fileToken(srv, w)
			for _, tier := range tiers {
				putFile(t, srv, wt, "iso/f.txt", tier, "text/plain", fmt.Sprintf("%d:%s", wi, tier))
			}
			for _, rd := range ids {
				rt := fileToken(srv, rd)
				for _, tier := range tiers {
					vis := visible(w, rd, tier)
					what := fmt.Sprintf("reader %s tier %s", rd, tier)
					q := "?tier=" + tier
					missing := do(t, srv, "GET", "/v1/storage/files/iso/none.txt"+q, rt, nil)
					wantStatus(t, missing, http.StatusNotFound, "not_found")

					r := do(t, srv, "GET", "/v1/storage/files/iso/f.txt"+q, rt, nil)
					if vis {
						wantStatus(t, r, http.StatusOK, "")
						equal(t, what+" content", string(r.body), fmt.Sprintf("%d:%s", wi, tier))
					} else {
						wantStatus(t, r, http.StatusNotFound, "not_found")
						equal(t, what+" hidden body = missing body", string(r.body), string(missing.body))
					}

					r = do(t, srv, "HEAD", "/v1/storage/files/iso/f.txt"+q, rt, nil)
					equal(t, what+" HEAD", r.status, map[bool]int{true: 200, false: 404}[vis])

					for _, prefix := range []string{"", "iso/", "iso/f"} {
						r = do(t, srv, "GET", "/v1/storage/files?prefix="+prefix+"&tier="+tier, rt, nil)
						wantStatus(t, r, http.StatusOK, "")
						var l fileListing
						decode(t, r, &l)
						want := ""
						if vis {
							want = "iso/f.txt"
						}
						equal(t, what+" list "+prefix, strings.Join(listKeys(l), ","), want)
					}

					sm := do(t, srv, "POST", "/v1/storage/signed-urls", rt, map[string]any{"key": "iso/none.txt", "tier": tier})
					wantStatus(t, sm, http.StatusNotFound, "not_found")
					r = do(t, srv, "POST", "/v1/storage/signed-urls", rt, map[string]any{"key": "iso/f.txt", "tier": tier})
					if vis {
						wantStatus(t, r, http.StatusOK, "")
						var out struct{ URL string }
						decode(t, r, &out)
						d := getURL(t, "GET", out.URL, nil)
						wantStatus(t, d, http.StatusOK, "")
						equal(t, what+" signed content", string(d.body), fmt.Sprintf("%d:%s", wi, tier))
					} else {
						wantStatus(t, r, http.StatusNotFound, "not_found")
						equal(t, what+" hidden sign body = missing", string(r.body), string(sm.body))
					}

					if !vis {
						wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/iso/f.txt"+q, rt, nil), http.StatusNoContent, "")
					}
				}
			}
			// Deletes by those who cannot see it changed nothing.
			for _, tier := range tiers {
				r := do(t, srv, "GET", "/v1/storage/files/iso/f.txt?tier="+tier, wt, nil)
				wantStatus(t, r, http.StatusOK, "")
				equal(t, "after foreign deletes "+tier, string(r.body), fmt.Sprintf("%d:%s", wi, tier))
			}
			// A reader who sees it can delete it.
			for _, tier := range tiers {
				for _, rd := range ids {
					if rd != w && visible(w, rd, tier) {
						wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/iso/f.txt?tier="+tier, fileToken(srv, rd), nil), http.StatusNoContent, "")
						wantStatus(t, do(t, srv, "GET", "/v1/storage/files/iso/f.txt?tier="+tier, wt, nil), http.StatusNotFound, "not_found")
						break
					}
				}
			}
		})
	}
}

// TestFilesRange covers single ranges, 416 and the ranges that are ignored.
func TestFilesRange(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	w := putFile(t, srv, tok, "r.txt", "", "text/plain", "0123456789")
	putFile(t, srv, tok, "empty", "", "", "")
	for _, tc := range []struct {
		rng, ifRange  string
		status        int
		body, cRange  string
		contentLength string
	}{
		{"bytes=0-4", "", 206, "01234", "bytes 0-4/10", "5"},
		{"bytes=5-", "", 206, "56789", "bytes 5-9/10", "5"},
		{"bytes=-3", "", 206, "789", "bytes 7-9/10", "3"},
		{"bytes=-30", "", 206, "0123456789", "bytes 0-9/10", "10"},
		{"bytes=8-100", "", 206, "89", "bytes 8-9/10", "2"},
		{"bytes=9-9", "", 206, "9", "bytes 9-9/10", "1"},
		// Positions past int64 mean "past the end" (RFC 9110 14.1.1).
		{"bytes=2-99999999999999999999", "", 206, "23456789", "bytes 2-9/10", "8"},
		{"bytes=-99999999999999999999", "", 206, "0123456789", "bytes 0-9/10", "10"},
		{"bytes=0-0000000000000000000004", "", 206, "01234", "bytes 0-4/10", "5"},
		{"bytes=99999999999999999999-", "", 416, "", "bytes */10", ""},
		{"bytes=10-", "", 416, "", "bytes */10", ""},
		{"bytes=100-200", "", 416, "", "bytes */10", ""},
		{"bytes=5-2", "", 416, "", "bytes */10", ""},
		{"bytes=-0", "", 416, "", "bytes */10", ""},
		{"bytes=a-b", "", 416, "", "bytes */10", ""},
		{"bytes=0-1,3-4", "", 200, "0123456789", "", "10"}, // several ranges: ignored
		{"items=0-1", "", 200, "0123456789", "", "10"},     // other unit: ignored
		{"bytes=0-1", w.ETag, 206, "01", "bytes 0-1/10", "2"},
		{"bytes=0-1", `"other"`, 200, "0123456789", "", "10"},
		{"bytes=0-1", "W/" + w.ETag, 200, "0123456789", "", "10"}, // weak never matches If-Range
		{"bytes=0-1", "Sat, 01 Jan 2000 00:00:00 GMT", 200, "0123456789", "", "10"},
	} {
		h := http.Header{"Range": {tc.rng}}
		if tc.ifRange != "" {
			h.Set("If-Range", tc.ifRange)
		}
		r := fileDo(t, srv, "GET", "/v1/storage/files/r.txt", tok, h, nil)
		what := tc.rng + " / " + tc.ifRange
		equal(t, what+" status", r.status, tc.status)
		equal(t, what+" Content-Range", r.header.Get("Content-Range"), tc.cRange)
		if tc.status == 416 {
			wantStatus(t, r, 416, "invalid_request")
			continue
		}
		equal(t, what+" body", string(r.body), tc.body)
		equal(t, what+" Content-Length", r.header.Get("Content-Length"), tc.contentLength)
		equal(t, what+" Content-Type", r.header.Get("Content-Type"), "text/plain")
	}
	// HEAD with a range describes it.
	r := fileDo(t, srv, "HEAD", "/v1/storage/files/r.txt", tok, http.Header{"Range": {"bytes=2-3"}}, nil)
	equal(t, "HEAD range status", r.status, 206)
	equal(t, "HEAD range length", r.header.Get("Content-Length"), "2")
	// An empty file has no satisfiable range.
	r = fileDo(t, srv, "GET", "/v1/storage/files/empty", tok, http.Header{"Range": {"bytes=0-"}}, nil)
	wantStatus(t, r, 416, "invalid_request")
	// A range on a missing file is 404.
	r = fileDo(t, srv, "GET", "/v1/storage/files/nope", tok, http.Header{"Range": {"bytes=0-1"}}, nil)
	wantStatus(t, r, 404, "not_found")
}

// TestFilesConditional covers 304 and 412.
func TestFilesConditional(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	w := putFile(t, srv, tok, "c.txt", "", "text/plain", "content")
	lm, _ := time.Parse(time.RFC3339, w.LastModified)
	httpDate := func(t time.Time) string { return t.UTC().Format(http.TimeFormat) }
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"If-None-Match same", http.Header{"If-None-Match": {w.ETag}}, 304},
		{"If-None-Match weak", http.Header{"If-None-Match": {"W/" + w.ETag}}, 304},
		{"If-None-Match list", http.Header{"If-None-Match": {`"x", ` + w.ETag}}, 304},
		{"If-None-Match star", http.Header{"If-None-Match": {"*"}}, 304},
		{"If-None-Match other", http.Header{"If-None-Match": {`"other"`}}, 200},
		{"If-None-Match unquoted", http.Header{"If-None-Match": {strings.Trim(w.ETag, `"`)}}, 200},
		{"If-Modified-Since same", http.Header{"If-Modified-Since": {httpDate(lm)}}, 304},
		{"If-Modified-Since later", http.Header{"If-Modified-Since": {httpDate(lm.Add(time.Hour))}}, 304},
		{"If-Modified-Since earlier", http.Header{"If-Modified-Since": {httpDate(lm.Add(-time.Second))}}, 200},
		{"If-Modified-Since garbage", http.Header{"If-Modified-Since": {"yesterday"}}, 200},
		// If-None-Match takes precedence over If-Modified-Since.
		{"INM other + IMS later", http.Header{"If-None-Match": {`"other"`}, "If-Modified-Since": {httpDate(lm.Add(time.Hour))}}, 200},
		{"If-Match same", http.Header{"If-Match": {w.ETag}}, 200},
		{"If-Match other", http.Header{"If-Match": {`"other"`}}, 412},
		{"If-Match weak", http.Header{"If-Match": {"W/" + w.ETag}}, 412},
		{"If-Unmodified-Since earlier", http.Header{"If-Unmodified-Since": {httpDate(lm.Add(-time.Hour))}}, 412},
		{"If-Unmodified-Since same", http.Header{"If-Unmodified-Since": {httpDate(lm)}}, 200},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			r := fileDo(t, srv, method, "/v1/storage/files/c.txt", tok, tc.hdr, nil)
			what := method + " " + tc.name
			equal(t, what, r.status, tc.status)
			switch tc.status {
			case 304:
				equal(t, what+" body", len(r.body), 0)
				equal(t, what+" ETag", r.header.Get("ETag"), w.ETag)
			case 200:
				if method == "GET" {
					equal(t, what+" body", string(r.body), "content")
				}
			case 412:
				if method == "GET" {
					wantStatus(t, r, 412, "conflict")
				}
			}
		}
	}
}

// TestFilesContentTypes checks that browser-executable types cannot run on
// the engine's origin, and that the others are shown inline.
func TestFilesContentTypes(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	for i, tc := range []struct {
		ct         string
		attachment bool
		sandbox    bool
	}{
		{"text/html", true, true},
		{"TEXT/HTML; charset=utf-8", true, true},
		{"text/html;charset=UTF-8", true, true},
		{"image/svg+xml", true, true},
		{"application/xhtml+xml", true, true},
		{"text/xml", true, true},
		{"application/xml", true, true},
		{"application/rss+xml", true, true},
		{"text/javascript", true, true},
		{"application/javascript", true, true},
		{"application/ecmascript", true, true},
		{"text/xsl", true, true},
		{"application/x-shockwave-flash", true, true},
		{"multipart/x-mixed-replace; boundary=x", true, true},
		{"application/wasm", true, true},
		{"application/x-unknown", true, true},
		{"text/css", true, true},
		{"image/png", false, true},
		{"image/jpeg", false, true},
		{"video/mp4", false, true},
		{"audio/mpeg", false, true},
		{"text/plain; charset=utf-8", false, true},
		{"application/json", false, true},
		{"application/octet-stream", false, true},
		{"application/pdf", false, false},
	} {
		path := fmt.Sprintf("ct/%d", i)
		putFile(t, srv, tok, path, "", tc.ct, "<html><script>alert(document.domain)</script></html>")
		for _, get := range []func() resp{
			func() resp { return do(t, srv, "GET", "/v1/storage/files/"+path, tok, nil) },
			func() resp { return do(t, srv, "HEAD", "/v1/storage/files/"+path, tok, nil) },
			func() resp {
				return fileDo(t, srv, "GET", "/v1/storage/files/"+path, tok, http.Header{"Range": {"bytes=0-3"}}, nil)
			},
			func() resp {
				return getURL(t, "GET", signURL(t, srv, tok, map[string]any{"key": path}), nil)
			},
		} {
			r := get()
			equal(t, tc.ct+" Content-Type", r.header.Get("Content-Type"), tc.ct)
			equal(t, tc.ct+" nosniff", r.header.Get("X-Content-Type-Options"), "nosniff")
			equal(t, tc.ct+" attachment", r.header.Get("Content-Disposition") == "attachment", tc.attachment)
			equal(t, tc.ct+" sandbox", r.header.Get("Content-Security-Policy") == "sandbox", tc.sandbox)
		}
	}
	// Content-Type values that are not media types are refused.
	for _, ct := range []string{"text", "text/", "/plain", "text/plain; charset", "a b/c", strings.Repeat("a", 250) + "/plain"} {
		r := fileDo(t, srv, "PUT", "/v1/storage/files/bad-ct", tok, http.Header{"Content-Type": {ct}}, strings.NewReader("x"))
		wantStatus(t, r, http.StatusBadRequest, "invalid_request")
	}
	r := fileDo(t, srv, "PUT", "/v1/storage/files/bad-ct", tok, http.Header{"Content-Type": {"text/plain", "text/html"}}, strings.NewReader("x"))
	wantStatus(t, r, http.StatusBadRequest, "invalid_request")
}

// TestFilesSizeLimit checks Limits.MaxFileSize on the Content-Length and the
// chunked paths: 413, no object, no upload left behind, no S3 request when
// Content-Length already says too much.
func TestFilesSizeLimit(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Limits.MaxFileSize = 1000 }))
	ok := strings.Repeat("x", 1000)
	over := ok + "y"

	wantStatus(t, fileDo(t, srv, "PUT", "/v1/storage/files/exact", tok, nil, strings.NewReader(ok)), http.StatusOK, "")
	wantStatus(t, fileDo(t, srv, "PUT", "/v1/storage/files/exact-chunked", tok, nil, chunked(strings.NewReader(ok))), http.StatusOK, "")

	before := srv.Calls().S3
	r := fileDo(t, srv, "PUT", "/v1/storage/files/big", tok, nil, strings.NewReader(over))
	wantStatus(t, r, http.StatusRequestEntityTooLarge, "too_large")
	equal(t, "S3 requests for a too large Content-Length", srv.Calls().S3-before, 0)

	r = fileDo(t, srv, "PUT", "/v1/storage/files/big", tok, nil, chunked(strings.NewReader(over)))
	wantStatus(t, r, http.StatusRequestEntityTooLarge, "too_large")
	// The connection is still usable after an early 413 (no desync).
	wantStatus(t, fileDo(t, srv, "PUT", "/v1/storage/files/after", tok, nil, strings.NewReader("fine")), http.StatusOK, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/big", tok, nil), http.StatusNotFound, "not_found")
	wantNoUploads(t, srv)
}

// wantNoUploads fails unless the bucket holds no incomplete multipart upload.
func wantNoUploads(t testing.TB, srv *cpodtest.Server) {
	t.Helper()
	if hasUploads(t, srv) {
		t.Fatal("an incomplete multipart upload was left behind")
	}
}

// pattern is a deterministic body of n bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>10)
	}
	return b
}

// TestFilesChunkedMultipart streams chunked bodies larger than one part:
// stored intact, and past the limit aborted without leftovers.
func TestFilesChunkedMultipart(t *testing.T) {
	t.Parallel()
	const limit = 9<<20 + 100
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Limits.MaxFileSize = limit }))
	body := pattern(limit)
	before := srv.Calls().S3
	r := fileDo(t, srv, "PUT", "/v1/storage/files/multi.bin", tok, nil, chunked(bytes.NewReader(body)))
	wantStatus(t, r, http.StatusOK, "")
	var w fileWrite
	decode(t, r, &w)
	equal(t, "size", w.Size, int64(limit))
	// initiate + 2 parts + complete + stat
	if n := srv.Calls().S3 - before; n < 5 {
		t.Fatalf("%d S3 requests: the upload was not multipart", n)
	}
	r = do(t, srv, "GET", "/v1/storage/files/multi.bin", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	if !bytes.Equal(r.body, body) {
		t.Fatalf("read back %d bytes, differing from the %d written", len(r.body), len(body))
	}
	equal(t, "GET ETag = write etag", r.header.Get("ETag"), w.ETag)

	// One byte over the limit, detected in the second part.
	r = fileDo(t, srv, "PUT", "/v1/storage/files/over.bin", tok, nil, chunked(bytes.NewReader(pattern(limit+1))))
	wantStatus(t, r, http.StatusRequestEntityTooLarge, "too_large")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/over.bin", tok, nil), http.StatusNotFound, "not_found")
	wantNoUploads(t, srv)
}

// doneServer serves srv's engine on a second test server that reports each
// finished request on the returned channel.
func doneServer(t *testing.T, srv *cpodtest.Server) (*httptest.Server, <-chan struct{}) {
	done := make(chan struct{}, 16)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Engine.ServeHTTP(w, r)
		done <- struct{}{}
	}))
	t.Cleanup(ts.Close)
	return ts, done
}

// TestFilesClientDisconnect drops the connection mid-upload, with and
// without Content-Length: nothing is stored, no multipart upload is left.
func TestFilesClientDisconnect(t *testing.T) {
	t.Parallel()
	for _, withLength := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", withLength), func(t *testing.T) {
			t.Parallel()
			srv, tok := fileServer(t)
			ts, done := doneServer(t, srv)
			base := srv.Calls().S3
			conn, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			bw := bufio.NewWriter(conn)
			fmt.Fprintf(bw, "PUT /v1/storage/files/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n", tok)
			if withLength {
				fmt.Fprintf(bw, "Content-Length: %d\r\n\r\n", 64<<20)
			} else {
				fmt.Fprintf(bw, "Transfer-Encoding: chunked\r\n\r\n")
			}
			chunk := pattern(256 << 10)
			sent := 0
			write := func() {
				if withLength {
					bw.Write(chunk)
				} else {
					fmt.Fprintf(bw, "%x\r\n%s\r\n", len(chunk), chunk)
				}
				if err := bw.Flush(); err != nil {
					t.Fatal(err)
				}
				sent += len(chunk)
			}
			// Send until the store has seen the upload start.
			deadline := time.Now().Add(10 * time.Second)
			for {
				write()
				if withLength && srv.Calls().S3 > base {
					break
				}
				if !withLength && hasUploads(t, srv) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("upload did not reach S3 after %d bytes", sent)
				}
			}
			if !withLength {
				// Also have at least one part stored before leaving.
				for i := 0; i < 40; i++ {
					write()
				}
			}
			conn.Close()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the engine did not end the request after the client left")
			}
			time.Sleep(50 * time.Millisecond) // let the fake finish its side
			if _, err := srv.S3.StatObject(context.Background(), srv.Bucket, "t1/apps/a/cut.bin", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != minio.NoSuchKey {
				t.Fatalf("stat after disconnect: %v, want NoSuchKey", err)
			}
			wantNoUploads(t, srv)
		})
	}
}

func hasUploads(t testing.TB, srv *cpodtest.Server) bool {
	t.Helper()
	for up := range srv.S3.ListIncompleteUploads(context.Background(), srv.Bucket, "", true) {
		if up.Err != nil {
			// gofakes3 answers NoSuchUpload for a bucket that never had one.
			if minio.ToErrorResponse(up.Err).Code == "NoSuchUpload" {
				return false
			}
			t.Fatal(up.Err)
		}
		t.Logf("incomplete upload: %s", up.Key)
		return true
	}
	return false
}

// TestFilesList covers paging, limits and cursors.
func TestFilesList(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t)
	var want []string
	for i := range 5 {
		k := fmt.Sprintf("l/%d.txt", i)
		putFile(t, srv, tok, k, "", "", "x")
		want = append(want, k)
	}
	putFile(t, srv, tok, "l2/other.txt", "", "", "x")
	putFile(t, srv, tok, "l/0.txt", "shared", "", "x") // other tier
	t10 := fileToken(srv, fileID{"t10", "a", "u1"})
	putFile(t, srv, t10, "l/9.txt", "", "", "x") // other tenant

	var got []string
	cursor := ""
	for page := 0; ; page++ {
		q := "/v1/storage/files?prefix=l/&limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		r := do(t, srv, "GET", q, tok, nil)
		wantStatus(t, r, http.StatusOK, "")
		var l fileListing
		decode(t, r, &l)
		if len(l.Items) > 2 {
			t.Fatalf("page %d has %d items", page, len(l.Items))
		}
		got = append(got, listKeys(l)...)
		if l.NextCursor == nil {
			break
		}
		cursor = *l.NextCursor
		if page > 5 {
			t.Fatal("listing does not end")
		}
	}
	equal(t, "paged keys", strings.Join(got, ","), strings.Join(want, ","))

	// "l" (no slash) matches l/ and l2/.
	r := do(t, srv, "GET", "/v1/storage/files?prefix=l", tok, nil)
	var l fileListing
	decode(t, r, &l)
	equal(t, "prefix l", len(l.Items), 6)

	// A cursor from page 1.
	r = do(t, srv, "GET", "/v1/storage/files?prefix=l/&limit=2", tok, nil)
	decode(t, r, &l)
	cur := *l.NextCursor
	list := func(token, query string) resp {
		return do(t, srv, "GET", "/v1/storage/files?"+query, token, nil)
	}
	wantStatus(t, list(tok, "prefix=l/&limit=2&cursor="+url.QueryEscape(cur)), http.StatusOK, "")
	// The cursor is bound to the location and prefix, and to itself.
	bad := map[string]resp{
		"other tenant": list(t10, "prefix=l/&limit=2&cursor="+url.QueryEscape(cur)),
		"other app":    list(fileToken(srv, fileID{"t1", "ab", "u1"}), "prefix=l/&cursor="+url.QueryEscape(cur)),
		"other tier":   list(tok, "prefix=l/&tier=shared&cursor="+url.QueryEscape(cur)),
		"other prefix": list(tok, "prefix=l&cursor="+url.QueryEscape(cur)),
		"no prefix":    list(tok, "cursor="+url.QueryEscape(cur)),
		"truncated":    list(tok, "prefix=l/&cursor="+url.QueryEscape(cur[:len(cur)-1])),
		"garbage":      list(tok, "prefix=l/&cursor=garbage"),
		"v2":           list(tok, "prefix=l/&cursor="+url.QueryEscape("v2"+cur[2:])),
		"huge":         list(tok, "prefix=l/&cursor="+strings.Repeat("A", 5000)),
	}
	// Another key under the same MAC.
	parts := strings.Split(cur, ".")
	bad["other key"] = list(tok, "prefix=l/&cursor="+url.QueryEscape(parts[0]+".bC8wLnR4dA."+parts[2]))
	for name, r := range bad {
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"invalid_cursor"`) {
			t.Fatalf("%s cursor: %d %s, want 400 invalid_cursor", name, r.status, r.body)
		}
	}

	// Limits.
	for _, lim := range []string{"0", "-1", "1001", "abc", "1.5", "+2", " 2", "99999999999999999999"} {
		wantStatus(t, list(tok, "limit="+url.QueryEscape(lim)), http.StatusBadRequest, "invalid_request")
	}
	wantStatus(t, list(tok, "limit=1000"), http.StatusOK, "")
	wantStatus(t, list(tok, "prefix=a&prefix=b"), http.StatusBadRequest, "invalid_request")
	wantStatus(t, list("", ""), http.StatusUnauthorized, "invalid_token")
}

// TestFilesListDefaultLimit writes 101 files: the default page is 100, and a
// configured MaxListLimit caps limit.
func TestFilesListDefaultLimit(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Limits.MaxListLimit = 150 }))
	for i := range 101 {
		// Straight to S3 under the caller's location: the listing does not care how.
		if _, err := srv.S3.PutObject(context.Background(), srv.Bucket, fmt.Sprintf("t1/apps/a/d/%03d", i), strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r := do(t, srv, "GET", "/v1/storage/files", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	var l fileListing
	decode(t, r, &l)
	equal(t, "default page", len(l.Items), 100)
	equal(t, "first key", l.Items[0].Key, "d/000")
	if l.NextCursor == nil {
		t.Fatal("no nextCursor after a full page")
	}
	r = do(t, srv, "GET", "/v1/storage/files?cursor="+url.QueryEscape(*l.NextCursor), tok, nil)
	decode(t, r, &l)
	equal(t, "second page", strings.Join(listKeys(l), ","), "d/100")
	if l.NextCursor != nil {
		t.Fatal("nextCursor on the last page")
	}
	r = do(t, srv, "GET", "/v1/storage/files?limit=101", tok, nil)
	decode(t, r, &l)
	equal(t, "limit 101", len(l.Items), 101)
	if l.NextCursor != nil {
		t.Fatal("nextCursor when everything fit")
	}
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files?limit=151", tok, nil), http.StatusBadRequest, "invalid_request")
}

// TestFilesSignedURL covers creation, download, expiry, tampering, binding
// and revocation.
func TestFilesSignedURL(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.AppCacheTTL = -1 }))
	putFile(t, srv, tok, "docs/r.txt", "", "text/plain", "the report")
	putFile(t, srv, tok, "docs/other.txt", "", "text/plain", "other file")
	// The same relative path elsewhere.
	putFile(t, srv, fileToken(srv, fileID{"t10", "a", "u1"}), "docs/r.txt", "", "text/plain", "t10's report")
	putFile(t, srv, fileToken(srv, fileID{"t1", "ab", "u1"}), "docs/r.txt", "", "text/plain", "ab's report")
	putFile(t, srv, tok, "docs/r.txt", "shared", "text/plain", "shared report")

	start := srv.Now()
	r := do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "docs/r.txt"})
	end := srv.Now()
	wantStatus(t, r, http.StatusOK, "")
	var out struct{ URL, ExpiresAt string }
	decode(t, r, &out)
	exp, err := time.Parse(time.RFC3339, out.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	// 1h after the server's clock (in whole seconds) at some time during
	// the request, however long the request took (an app lookup each time
	// here, slow on a busy machine).
	if exp.Before(start.Add(time.Hour).Truncate(time.Second)) || exp.After(end.Add(time.Hour)) {
		t.Fatalf("default expiry %v, want 1h after the request (sent %v, answered %v)", exp, start, end)
	}
	u := out.URL
	if !strings.HasPrefix(u, srv.URL+"/v1/storage/signed/") {
		t.Fatalf("url %q is not absolute on the engine", u)
	}

	// Valid: no Authorization, Referrer-Policy, nosniff, Range, HEAD; a
	// stray Authorization header is ignored.
	d := getURL(t, "GET", u, nil)
	wantStatus(t, d, http.StatusOK, "")
	equal(t, "download", string(d.body), "the report")
	equal(t, "Referrer-Policy", d.header.Get("Referrer-Policy"), "no-referrer")
	equal(t, "nosniff", d.header.Get("X-Content-Type-Options"), "nosniff")
	d = getURL(t, "GET", u, http.Header{"Range": {"bytes=4-9"}})
	equal(t, "range status", d.status, 206)
	equal(t, "range body", string(d.body), "report")
	d = getURL(t, "HEAD", u, nil)
	equal(t, "HEAD", d.status, 200)
	equal(t, "HEAD length", d.header.Get("Content-Length"), "10")
	d = getURL(t, "GET", u, http.Header{"Authorization": {"Bearer garbage"}})
	equal(t, "with stray Authorization", d.status, 200)
	d = getURL(t, "GET", u, http.Header{"If-None-Match": {d.header.Get("ETag")}})
	equal(t, "signed 304", d.status, 304)

	// Tampering: every change is 403 invalid_signature.
	other := signURL(t, srv, tok, map[string]any{"key": "docs/other.txt"})
	pu, _ := url.Parse(u)
	po, _ := url.Parse(other)
	q := pu.Query()
	with := func(f func(p *url.URL, q url.Values)) string {
		p := *pu
		qq := url.Values{}
		for k, v := range q {
			qq[k] = append([]string(nil), v...)
		}
		f(&p, qq)
		p.RawQuery = qq.Encode()
		return p.String()
	}
	sig := q.Get("sig")
	tampered := map[string]string{
		"other tenant":     strings.Replace(u, "/t1/apps/a/", "/t10/apps/a/", 1),
		"other app":        strings.Replace(u, "/t1/apps/a/", "/t1/apps/ab/", 1),
		"other tier path":  strings.Replace(u, "/t1/apps/a/", "/t1/shared/", 1),
		"other key":        strings.Replace(u, "docs/r.txt", "docs/other.txt", 1),
		"trailing slash":   strings.Replace(u, "docs/r.txt", "docs/r.txt/", 1),
		"upper case":       strings.Replace(u, "docs/r.txt", "docs/R.txt", 1),
		"dot segment":      strings.Replace(u, "docs/r.txt", "docs/./r.txt", 1),
		"sig of other url": with(func(p *url.URL, q url.Values) { q.Set("sig", po.Query().Get("sig")) }),
		"truncated sig":    with(func(p *url.URL, q url.Values) { q.Set("sig", sig[:len(sig)-1]) }),
		"half sig":         with(func(p *url.URL, q url.Values) { q.Set("sig", sig[:len(sig)/2]) }),
		"empty sig":        with(func(p *url.URL, q url.Values) { q.Set("sig", "") }),
		"no sig":           with(func(p *url.URL, q url.Values) { q.Del("sig") }),
		"flipped sig":      with(func(p *url.URL, q url.Values) { q.Set("sig", flip(sig)) }),
		"padded sig":       with(func(p *url.URL, q url.Values) { q.Set("sig", sig+"=") }),
		"longer expiry":    with(func(p *url.URL, q url.Values) { q.Set("expires", bump(q.Get("expires"))) }),
		"no expiry":        with(func(p *url.URL, q url.Values) { q.Del("expires") }),
		"other tier":       with(func(p *url.URL, q url.Values) { q.Set("tier", "shared") }),
		"other app param":  with(func(p *url.URL, q url.Values) { q.Set("app", "ab") }),
		"extra param":      with(func(p *url.URL, q url.Values) { q.Set("x", "1") }),
		"double sig":       with(func(p *url.URL, q url.Values) { q.Add("sig", q.Get("sig")) }),
		"no query":         strings.Split(u, "?")[0],
	}
	for name, tu := range tampered {
		d := getURL(t, "GET", tu, nil)
		if d.status != http.StatusForbidden || !strings.Contains(string(d.body), `"invalid_signature"`) {
			t.Fatalf("%s: %d %s, want 403 invalid_signature", name, d.status, d.body)
		}
		equal(t, name+" Referrer-Policy", d.header.Get("Referrer-Policy"), "no-referrer")
	}
	// Only GET and HEAD.
	for _, m := range []string{"PUT", "POST", "DELETE", "PATCH"} {
		d := getURL(t, m, u, nil)
		if d.status != http.StatusForbidden || !strings.Contains(string(d.body), `"invalid_signature"`) {
			t.Fatalf("%s on a signed URL: %d %s, want 403 invalid_signature", m, d.status, d.body)
		}
	}
	equal(t, "still valid after the attempts", getURL(t, "GET", u, nil).status, 200)

	// Signed URLs of each tier open their own file only.
	su := signURL(t, srv, tok, map[string]any{"key": "docs/r.txt", "tier": "shared"})
	equal(t, "shared download", string(getURL(t, "GET", su, nil).body), "shared report")
	putFile(t, srv, tok, "docs/u.txt", "user", "", "user file")
	uu := signURL(t, srv, tok, map[string]any{"key": "docs/u.txt", "tier": "user"})
	if !strings.Contains(uu, "/t1/users/u1/") {
		t.Fatalf("user tier URL %q does not name the user location", uu)
	}
	equal(t, "user download", string(getURL(t, "GET", uu, nil).body), "user file")

	// Names and ids that need escaping in the URL.
	odd := fileID{"t+1x?#", "a", "u;1&="} // no '%' in ids (see validID)
	ot := fileToken(srv, odd)
	for _, tier := range []string{"private", "user", "shared"} {
		putFile(t, srv, ot, "dir%20x/100%25%20done%3F%23.txt", tier, "", "odd "+tier)
		ou := signURL(t, srv, ot, map[string]any{"key": "dir x/100% done?#.txt", "tier": tier})
		equal(t, "odd download "+tier, string(getURL(t, "GET", ou, nil).body), "odd "+tier)
	}

	// expiresIn.
	for _, v := range []any{0, -1, 604801, 1.5, "3600", json.RawMessage("1e3"), true, json.RawMessage("3600.0"), json.RawMessage("[1]")} {
		r := do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "docs/r.txt", "expiresIn": v})
		wantStatus(t, r, http.StatusBadRequest, "invalid_request")
	}
	for _, v := range []any{1, 604800, nil} {
		wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "docs/r.txt", "expiresIn": v}), http.StatusOK, "")
	}
	// Creation checks.
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"tier": "private"}), http.StatusBadRequest, "invalid_request")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "docs/r.txt", "extra": 1}), http.StatusBadRequest, "invalid_request")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "docs/r.txt", "tier": "all"}), http.StatusBadRequest, "invalid_request")
	// An empty tier is not the default: leave it out (or null) for that.
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "docs/r.txt", "tier": ""}), http.StatusBadRequest, "invalid_request")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "docs/missing"}), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", "", map[string]any{"key": "docs/r.txt"}), http.StatusUnauthorized, "invalid_token")
	wo := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: []string{"storage.private.write"}})
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", wo, map[string]any{"key": "docs/r.txt"}), http.StatusForbidden, "insufficient_scope")
	srv.RegisterApp(t, "writer-only", "storage.private.write")
	wn := srv.Token(cpodtest.Claims{Tenant: "t1", App: "writer-only", User: "u1", Scopes: allScopes})
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", wn, map[string]any{"key": "docs/r.txt"}), http.StatusForbidden, "invalid_scope")

	// Expiry on the engine's clock; a tampered expired URL is still a bad signature.
	short := signURL(t, srv, tok, map[string]any{"key": "docs/r.txt", "expiresIn": 60})
	srv.AdvanceClock(50 * time.Second)
	equal(t, "before expiry", getURL(t, "GET", short, nil).status, 200)
	srv.AdvanceClock(11 * time.Second)
	d = getURL(t, "GET", short, nil)
	wantStatus(t, d, http.StatusForbidden, "expired")
	equal(t, "WWW-Authenticate of an expired URL", d.header.Get("WWW-Authenticate"), `Bearer error="expired"`) // every 401 and 403 has one
	d = getURL(t, "GET", strings.Replace(short, "docs/r.txt", "docs/other.txt", 1), nil)
	wantStatus(t, d, http.StatusForbidden, "invalid_signature")
	equal(t, "WWW-Authenticate of a changed URL", d.header.Get("WWW-Authenticate"), `Bearer error="invalid_signature"`)
	equal(t, "hour URL still valid", getURL(t, "GET", u, nil).status, 200)

	// A deleted file: 404.
	gone := signURL(t, srv, tok, map[string]any{"key": "docs/other.txt"})
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/docs/other.txt", tok, nil), http.StatusNoContent, "")
	wantStatus(t, getURL(t, "GET", gone, nil), http.StatusNotFound, "not_found")

	// Revocation: the app loses the read scope, then is deleted.
	ctx := context.Background()
	keep := []string{"storage.private.write", "storage.shared.read", "storage.shared.write", "storage.user.read", "storage.user.write"}
	if _, err := srv.Engine.UpdateApp(ctx, "a", storage.AppUpdate{DeclaredScopes: &keep}); err != nil {
		t.Fatal(err)
	}
	// An app that no longer declares the scope: as for its tokens.
	wantStatus(t, getURL(t, "GET", u, nil), http.StatusForbidden, "invalid_scope")
	equal(t, "shared URL survives", getURL(t, "GET", su, nil).status, 200)
	if err := srv.Engine.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, getURL(t, "GET", su, nil), http.StatusForbidden, "invalid_signature")
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func bump(s string) string {
	n, _ := strconv.ParseInt(s, 10, 64)
	return strconv.FormatInt(n+3600, 10)
}

// TestFilesSignedURLBase checks Config.PublicURL and the Host-derived base.
func TestFilesSignedURLBase(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.PublicURL = "https://files.example.com/base/" }))
	putFile(t, srv, tok, "f", "", "", "x")
	u := signURL(t, srv, tok, map[string]any{"key": "f"})
	if !strings.HasPrefix(u, "https://files.example.com/base/v1/storage/signed/t1/apps/a/f?") {
		t.Fatalf("url %q does not start with PublicURL", u)
	}
	// Without PublicURL: the request's Host; X-Forwarded-* are not trusted.
	srv2, tok2 := fileServer(t)
	putFile(t, srv2, tok2, "f", "", "", "x")
	req, _ := http.NewRequest("POST", srv2.URL+"/v1/storage/signed-urls", strings.NewReader(`{"key":"f"}`))
	req.Header.Set("Authorization", "Bearer "+tok2)
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	r := fileSend(t, srv2.HTTP.Client(), req)
	wantStatus(t, r, http.StatusOK, "")
	var out struct{ URL string }
	decode(t, r, &out)
	if !strings.HasPrefix(out.URL, srv2.URL+"/") {
		t.Fatalf("url %q, want it on %s", out.URL, srv2.URL)
	}
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFilesSignatureNotLogged downloads a signed URL from an engine whose S3
// is down (so the failure is logged) and checks the log holds no signature;
// every files endpoint answers 503 backend_unavailable meanwhile.
func TestFilesSignatureNotLogged(t *testing.T) {
	t.Parallel()
	key := []byte(strings.Repeat("k", 32))
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.SigningKey = key }))
	putFile(t, srv, tok, "f.txt", "", "", "x")
	u := signURL(t, srv, tok, map[string]any{"key": "f.txt"})
	pu, _ := url.Parse(u)
	sig := pu.Query().Get("sig")

	dead, err := minio.New("127.0.0.1:1", &minio.Options{Creds: credentials.NewStaticV4("k", "s", ""), Region: "us-east-1", MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	down, _ := fileServer(t,
		cpodtest.WithConfig(func(c *storage.Config) { c.SigningKey = key; c.S3 = dead }),
		cpodtest.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	for _, h := range []http.Header{nil, {"Range": {"bytes=0-0"}}} {
		d := getURL(t, "GET", down.URL+pu.RequestURI(), h)
		wantStatus(t, d, http.StatusServiceUnavailable, "backend_unavailable")
		if d.header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	}
	// Every files endpoint answers 503 while S3 is down, naming no host.
	dt := fileToken(down, fileID{"t1", "a", "u1"})
	for _, r := range []resp{
		fileDo(t, down, "PUT", "/v1/storage/files/f.txt", dt, nil, strings.NewReader("x")),
		fileDo(t, down, "PUT", "/v1/storage/files/f.txt", dt, nil, chunked(bytes.NewReader(pattern(2<<20)))),
		do(t, down, "GET", "/v1/storage/files/f.txt", dt, nil),
		do(t, down, "DELETE", "/v1/storage/files/f.txt", dt, nil),
		do(t, down, "GET", "/v1/storage/files", dt, nil),
		do(t, down, "POST", "/v1/storage/signed-urls", dt, map[string]any{"key": "f.txt"}),
	} {
		wantStatus(t, r, http.StatusServiceUnavailable, "backend_unavailable")
		if strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), "t1/apps") {
			t.Fatalf("the error names a host or location: %s", r.body)
		}
	}
	equal(t, "HEAD while down", do(t, down, "HEAD", "/v1/storage/files/f.txt", dt, nil).status, http.StatusServiceUnavailable)
	l := logs.String()
	if !strings.Contains(l, "request_id") {
		t.Fatalf("nothing was logged: %q", l)
	}
	if strings.Contains(l, sig) || strings.Contains(l, "sig=") {
		t.Fatalf("the log holds the signature: %s", l)
	}
}

// TestFilesPresignedS3Mode checks the optional direct S3 presigned URLs.
func TestFilesPresignedS3Mode(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.S3PresignedURLs = true }))
	putFile(t, srv, tok, "p/page.html", "", "text/html", "<b>hi</b>")
	putFile(t, srv, tok, "p/img.png", "", "image/png", "png")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": "p/missing"}), http.StatusNotFound, "not_found")
	u := signURL(t, srv, tok, map[string]any{"key": "p/page.html", "expiresIn": 60})
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	if pu.Host != srv.S3.EndpointURL().Host || !strings.HasSuffix(pu.Path, "/"+srv.Bucket+"/t1/apps/a/p/page.html") {
		t.Fatalf("presigned URL %q is not the S3 object", u)
	}
	q := pu.Query()
	equal(t, "X-Amz-Expires", q.Get("X-Amz-Expires"), "60")
	equal(t, "forced attachment", q.Get("response-content-disposition"), "attachment")
	if q.Get("X-Amz-Signature") == "" {
		t.Fatal("no X-Amz-Signature")
	}
	d := getURL(t, "GET", u, nil)
	wantStatus(t, d, http.StatusOK, "")
	equal(t, "S3 download", string(d.body), "<b>hi</b>")
	equal(t, "S3 Content-Disposition", d.header.Get("Content-Disposition"), "attachment")
	img, _ := url.Parse(signURL(t, srv, tok, map[string]any{"key": "p/img.png"}))
	equal(t, "inline type not forced", img.Query().Get("response-content-disposition"), "")
}

// TestFilesPresignedS3Enforced checks, on a real S3, what the direct presign
// mode leaves to S3: a tampered URL and an expired one are refused. It is
// skipped on gofakes3, which checks neither signatures nor expiry
// (FIDELITY.md).
func TestFilesPresignedS3Enforced(t *testing.T) {
	t.Parallel()
	if os.Getenv(cpodtest.EnvS3URL) == "" {
		t.Skip("needs a real S3 (CPODTEST_S3_URL): gofakes3 enforces neither presigned signatures nor expiry")
	}
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.S3PresignedURLs = true }))
	putFile(t, srv, tok, "p/a.txt", "", "text/plain", "alpha")
	u := signURL(t, srv, tok, map[string]any{"key": "p/a.txt", "expiresIn": 1})
	wantStatus(t, getURL(t, "GET", u, nil), http.StatusOK, "")
	pu, _ := url.Parse(u)
	q := pu.Query()
	sig := q.Get("X-Amz-Signature")
	q.Set("X-Amz-Signature", strings.Repeat("0", len(sig)))
	pu.RawQuery = q.Encode()
	if r := getURL(t, "GET", pu.String(), nil); r.status != http.StatusForbidden {
		t.Fatalf("tampered presigned URL: status %d, want 403", r.status)
	}
	other := strings.Replace(u, "/t1/apps/a/p/a.txt", "/t1/apps/b/p/a.txt", 1)
	if r := getURL(t, "GET", other, nil); r.status != http.StatusForbidden {
		t.Fatalf("presigned URL moved to another location: status %d, want 403", r.status)
	}
	time.Sleep(2100 * time.Millisecond)
	if r := getURL(t, "GET", u, nil); r.status != http.StatusForbidden {
		t.Fatalf("expired presigned URL: status %d, want 403", r.status)
	}
}
