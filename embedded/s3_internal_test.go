package embedded

import (
	"crypto/md5"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func testStore(t *testing.T) *fileStore {
	t.Helper()
	s, err := openFileStore(t.TempDir(), false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ensureBucket("cpod"); err != nil {
		t.Fatal(err)
	}
	return s
}

func do(s *fileStore, method, target, body string, h map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range h {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

// TestS3PayloadChecks: a body that does not match its Content-MD5,
// x-amz-content-sha256 or declared decoded length, or a malformed
// aws-chunked body, is refused with 400 and stores nothing.
func TestS3PayloadChecks(t *testing.T) {
	s := testStore(t)
	other := md5.Sum([]byte("other"))
	chunked := map[string]string{"X-Amz-Content-Sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked"}
	withLen := func(n string) map[string]string {
		m := map[string]string{"X-Amz-Decoded-Content-Length": n}
		for k, v := range chunked {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name, body string
		h          map[string]string
		code       string
	}{
		{"wrong Content-MD5", "hello", map[string]string{"Content-Md5": base64.StdEncoding.EncodeToString(other[:])}, "BadDigest"},
		{"bad Content-MD5", "hello", map[string]string{"Content-Md5": "nope"}, "InvalidDigest"},
		{"wrong sha256", "hello", map[string]string{"X-Amz-Content-Sha256": strings.Repeat("ab", 32)}, "XAmzContentSHA256Mismatch"},
		{"chunk size not hex", "zz;chunk-signature=x\r\nhello\r\n0;chunk-signature=y\r\n\r\n", chunked, "InvalidRequest"},
		{"chunk without CRLF", "5;chunk-signature=x\r\nhelloXX0;chunk-signature=y\r\n\r\n", chunked, "InvalidRequest"},
		{"truncated chunk", "a;chunk-signature=x\r\nhello", chunked, "IncompleteBody"},
		{"decoded length mismatch", "5;chunk-signature=x\r\nhello\r\n0;chunk-signature=y\r\n\r\n", withLen("6"), "IncompleteBody"},
		{"overlong chunk line", strings.Repeat("0", 5000) + "\r\n", chunked, "InvalidRequest"},
	}
	for _, c := range cases {
		w := do(s, "PUT", "/cpod/k", c.body, c.h)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "<Code>"+c.code+"</Code>") {
			t.Errorf("%s: %d %s, want 400 %s", c.name, w.Code, w.Body, c.code)
		}
		if g := do(s, "GET", "/cpod/k", "", nil); g.Code != http.StatusNotFound {
			t.Fatalf("%s: the refused body was stored (%d)", c.name, g.Code)
		}
	}
	// The same chunked body, well formed, with a trailer, is stored decoded.
	w := do(s, "PUT", "/cpod/k", "5;chunk-signature=x\r\nhello\r\n0;chunk-signature=y\r\nx-amz-checksum-crc32:abc=\r\n\r\n", withLen("5"))
	if w.Code != http.StatusOK {
		t.Fatalf("good chunked body: %d %s", w.Code, w.Body)
	}
	if g := do(s, "GET", "/cpod/k", "", nil); g.Body.String() != "hello" {
		t.Fatalf("good chunked body stored as %q", g.Body)
	}
}

// TestS3UploadIDsAreNotPaths: an upload id is a path component of the
// store; anything but the ids it made is an unknown upload.
func TestS3UploadIDsAreNotPaths(t *testing.T) {
	s := testStore(t)
	for _, id := range []string{"../../objects", "..", "%2e%2e", strings.Repeat("0", 32)} {
		w := do(s, "PUT", "/cpod/k?partNumber=1&uploadId="+id, "x", nil)
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "NoSuchUpload") {
			t.Errorf("upload id %q: %d %s", id, w.Code, w.Body)
		}
	}
}

// TestS3ListGroupsAnyBytes: keys under a common prefix are grouped once,
// whatever bytes follow it (here ones that sort after any UTF-8).
func TestS3ListGroupsAnyBytes(t *testing.T) {
	s := testStore(t)
	for _, k := range []string{"a/\x00", "a/x", "a/\xf4\x90", "a/\xff\xff", "b", "c/\xff/d"} {
		if w := do(s, "PUT", "/cpod/"+url.PathEscape(k), "v", nil); w.Code != http.StatusOK {
			t.Fatalf("put %q: %d", k, w.Code)
		}
	}
	for _, max := range []int{1, 2, 1000} {
		var got []string
		after := ""
		for {
			es, more, err := s.list("cpod", "", "/", after, max)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				got = append(got, e.key)
			}
			if !more {
				break
			}
			after = es[len(es)-1].key
		}
		if want := []string{"a/", "b", "c/"}; !slices.Equal(got, want) {
			t.Errorf("pages of %d: %q, want %q", max, got, want)
		}
	}
}
