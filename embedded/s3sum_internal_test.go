package embedded

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects a store's log records.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sumStore is a store in dir served over HTTP (a cut connection is only
// visible on a real one), with its log.
func sumStore(t *testing.T, dir string) (*fileStore, *httptest.Server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	s, err := openFileStore(dir, false, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ensureBucket("cpod"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv, logs
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, srv *httptest.Server, key string, data []byte) {
	t.Helper()
	req, _ := http.NewRequest("PUT", srv.URL+"/cpod/"+key, bytes.NewReader(data))
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("PUT %s: %d", key, res.StatusCode)
	}
}

// got is a GET's answer: status, error code header, the body read until
// the end or the first error.
type got struct {
	status int
	code   string
	body   []byte
	err    error // reading the body
	length int64 // Content-Length
}

func get(t *testing.T, srv *httptest.Server, method, key string, h map[string]string) got {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+"/cpod/"+key, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return got{res.StatusCode, res.Header.Get("X-Minio-Error-Code"), b, err, res.ContentLength}
}

// flip changes one byte of a file in place.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// wantDamaged fails unless g is the answer to a damaged object before any
// byte of it: 410 XCpodObjectDamaged.
func wantDamaged(t *testing.T, what string, g got) {
	t.Helper()
	if g.status != http.StatusGone || g.code != "XCpodObjectDamaged" {
		t.Fatalf("%s: %d %q (%d bytes), want 410 XCpodObjectDamaged", what, g.status, g.code, len(g.body))
	}
}

// wantCut fails unless g sent status and the first n bytes of want, then
// the connection was cut: a body shorter than its Content-Length.
func wantCut(t *testing.T, what string, g got, status int, want []byte, n int) {
	t.Helper()
	if g.status != status || g.err == nil || g.length != int64(len(want)) {
		t.Fatalf("%s: status %d, read error %v, Content-Length %d, want %d cut short of %d bytes", what, g.status, g.err, g.length, status, len(want))
	}
	if len(g.body) != n || !bytes.Equal(g.body, want[:n]) {
		t.Fatalf("%s: %d bytes before the cut, want exactly the %d before the damaged block, all intact", what, len(g.body), n)
	}
}

// wantLogged fails unless the log has an ERROR naming the object by its
// key's hash, and never the key itself.
func wantLogged(t *testing.T, logs *logBuffer, key string) {
	t.Helper()
	out := logs.String()
	if !strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, keyHash(key)) {
		t.Fatalf("no ERROR naming the object %s:\n%s", keyHash(key), out)
	}
	if strings.Contains(out, key) {
		t.Fatalf("the log names the key %q:\n%s", key, out)
	}
}

// TestS3ChecksumsFindDamage: one byte changed anywhere in an object file
// (its data, its checksum table, its header) is never served as a complete
// answer. In the first block it is 410 before any byte; further on, the
// status and the intact blocks before it are sent, then the connection is
// cut (a body shorter than Content-Length, not one wrong byte); a range
// that touches it likewise, one that does not is served. HEAD, copy and a
// restart (the index) refuse a damaged header too. Each is logged at ERROR
// with the key's hash, never the key.
func TestS3ChecksumsFindDamage(t *testing.T) {
	t.Parallel()
	const size = 3*blockSize + 12345 // four blocks, the last short
	data := randomBytes(1, size)
	for _, tc := range []struct {
		name string
		off  func(path string) int64 // the byte to change
		// check the answers; before is the byte count of intact blocks
		// before the damage, -1 for damage outside the data.
		before int
	}{
		{"first block", func(string) int64 { return 100 }, 0},
		{"third block", func(string) int64 { return 2*blockSize + 7 }, 2 * blockSize},
		{"last byte", func(string) int64 { return size - 1 }, 3 * blockSize},
		{"checksum table", func(string) int64 { return size + 4*1 + 2 }, blockSize}, // block 1's entry
		{"header", func(p string) int64 { fi, _ := os.Stat(p); return fi.Size() - 12 - 20 }, -1},
		{"header checksum", func(p string) int64 { fi, _ := os.Stat(p); return fi.Size() - 11 }, -1},
		{"key in the header", func(string) int64 { return int64(size + 16 + len(`{"key":"`)) }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, srv, logs := sumStore(t, dir)
			key := "tenant-secret/apps/a/" + strings.ReplaceAll(tc.name, " ", "-") + ".bin"
			put(t, srv, key, data)
			put(t, srv, "other", data[:1000])
			if g := get(t, srv, "GET", key, nil); g.status != 200 || !bytes.Equal(g.body, data) || g.err != nil {
				t.Fatalf("intact: %d, %d bytes, %v", g.status, len(g.body), g.err)
			}
			path := objectPath(dir, "cpod", key)
			flip(t, path, tc.off(path))

			g := get(t, srv, "GET", key, nil)
			switch {
			case tc.before == 0 || tc.before == -1:
				wantDamaged(t, "GET", g)
			default:
				wantCut(t, "GET", g, 200, data, tc.before)
			}
			wantLogged(t, logs, key)
			if tc.before == -1 {
				wantDamaged(t, "HEAD", get(t, srv, "HEAD", key, nil))
			}
			if tc.before > 0 {
				// A range within the intact blocks is served; one that
				// starts in the damaged block is refused before its bytes.
				g := get(t, srv, "GET", key, map[string]string{"Range": fmt.Sprintf("bytes=10-%d", tc.before-1)})
				if g.status != 206 || g.err != nil || !bytes.Equal(g.body, data[10:tc.before]) {
					t.Fatalf("range before the damage: %d, %d bytes, %v", g.status, len(g.body), g.err)
				}
				wantDamaged(t, "range in the damaged block", get(t, srv, "GET", key, map[string]string{"Range": fmt.Sprintf("bytes=%d-", tc.before+3)}))
				g = get(t, srv, "GET", key, map[string]string{"Range": fmt.Sprintf("bytes=%d-", tc.before-5)})
				wantCut(t, "range across the damage", g, 206, data[tc.before-5:], 5)
			}
			// A copy does not give a damaged object fresh checksums.
			req, _ := http.NewRequest("PUT", srv.URL+"/cpod/copy", nil)
			req.Header.Set("X-Amz-Copy-Source", "/cpod/"+key)
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusGone {
				t.Fatalf("copy of a damaged object: %d", res.StatusCode)
			}
			if g := get(t, srv, "GET", "copy", nil); g.status != 404 {
				t.Fatalf("the damaged copy was stored: %d", g.status)
			}
			// The scrub finds it; the other object is intact.
			rep, err := s.scrub(context.Background())
			if err != nil || rep.Damaged != 1 || rep.Objects != 2 {
				t.Fatalf("scrub: %+v, %v", rep, err)
			}
			// After a restart the damage is still found (a damaged header
			// included: indexed, not forgotten).
			s2, srv2, logs2 := sumStore(t, dir)
			_ = s2
			g = get(t, srv2, "GET", key, nil)
			if tc.before <= 0 {
				wantDamaged(t, "GET after a restart", g)
			} else {
				wantCut(t, "GET after a restart", g, 200, data, tc.before)
			}
			wantLogged(t, logs2, key)
		})
	}
}

// TestS3ChecksumsSmallObjects: an object of at most one block is verified
// whole before the status, so any damage is 410 with no byte sent; the
// empty object has nothing to damage.
func TestS3ChecksumsSmallObjects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, srv, logs := sumStore(t, dir)
	for _, n := range []int{1, 100, blockSize} {
		key := fmt.Sprintf("small-%d", n)
		data := randomBytes(uint64(n), n)
		put(t, srv, key, data)
		flip(t, objectPath(dir, "cpod", key), int64(n-1))
		wantDamaged(t, key, get(t, srv, "GET", key, nil))
		wantLogged(t, logs, key)
	}
	put(t, srv, "empty", nil)
	if g := get(t, srv, "GET", "empty", nil); g.status != 200 || len(g.body) != 0 || g.err != nil {
		t.Fatalf("empty object: %d %d %v", g.status, len(g.body), g.err)
	}
}

// TestS3ChecksumsMultipart: a multipart upload's object has checksums like
// any other; a part damaged on disk before Complete fails the upload
// instead of being checksummed as it is.
func TestS3ChecksumsMultipart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, srv, logs := sumStore(t, dir)
	upload := func(key string, damage bool) int {
		req, _ := http.NewRequest("POST", srv.URL+"/cpod/"+key+"?uploads", nil)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var init struct {
			UploadID string `xml:"UploadId"`
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if err := xml.Unmarshal(b, &init); err != nil {
			t.Fatal(err)
		}
		var parts strings.Builder
		for n, data := range [][]byte{randomBytes(7, minPartSize), randomBytes(8, 1000)} {
			req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/cpod/%s?partNumber=%d&uploadId=%s", srv.URL, key, n+1, init.UploadID), bytes.NewReader(data))
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			fmt.Fprintf(&parts, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", n+1, res.Header.Get("ETag"))
		}
		if damage {
			flip(t, partFile(s.uploadDir(init.UploadID), 1), 12345)
		}
		req, _ = http.NewRequest("POST", srv.URL+"/cpod/"+key+"?uploadId="+init.UploadID, strings.NewReader("<CompleteMultipartUpload>"+parts.String()+"</CompleteMultipartUpload>"))
		res, err = srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := upload("good", false); st != 200 {
		t.Fatalf("complete: %d", st)
	}
	want := append(randomBytes(7, minPartSize), randomBytes(8, 1000)...)
	if g := get(t, srv, "GET", "good", nil); g.status != 200 || !bytes.Equal(g.body, want) {
		t.Fatalf("multipart object: %d, %d bytes", g.status, len(g.body))
	}
	flip(t, objectPath(dir, "cpod", "good"), blockSize+1)
	wantCut(t, "damaged multipart object", get(t, srv, "GET", "good", nil), 200, want, blockSize)
	if st := upload("bad", true); st != http.StatusGone {
		t.Fatalf("complete with a damaged part: %d, want 410", st)
	}
	if g := get(t, srv, "GET", "bad", nil); g.status != 404 {
		t.Fatalf("an upload with a damaged part was stored: %d", g.status)
	}
	wantLogged(t, logs, "bad")
}

// writeLegacy writes an object file as earlier versions did: data, JSON
// header, its length, "CPS3"; no checksums.
func writeLegacy(t *testing.T, dir, key string, data []byte, etag string) {
	t.Helper()
	h := objectHeader{Key: key, Size: int64(len(data)), ETag: etag, ContentType: "application/octet-stream", Modified: time.Now().UTC().Truncate(time.Millisecond)}
	hdr, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[:4], uint32(len(hdr)))
	copy(tail[4:], objectMagic)
	p := objectPath(dir, "cpod", key)
	if err := os.MkdirAll(p[:strings.LastIndexByte(p, '/')], 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(append(append([]byte(nil), data...), hdr...), tail[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// TestS3LegacyObjects: objects of an earlier version (no checksums) are
// still served; a full read of one whose ETag is its MD5 is verified
// against it (410 when small, cut before the last byte when large). The
// scrub gives intact ones checksums (checking the MD5 first, counting the
// multipart ones it cannot check as unverified), reports the damaged ones
// and leaves them be; from then on the adopted ones are verified.
func TestS3LegacyObjects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/objects/cpod", 0o700); err != nil {
		t.Fatal(err)
	}
	small, large, multi := randomBytes(1, 5000), randomBytes(2, 2*blockSize+10), randomBytes(3, blockSize+10)
	writeLegacy(t, dir, "small", small, md5hex(small))
	writeLegacy(t, dir, "large", large, md5hex(large))
	writeLegacy(t, dir, "multi", multi, "0123456789abcdef0123456789abcdef-2")
	writeLegacy(t, dir, "bad-small", small, md5hex(small))
	writeLegacy(t, dir, "bad-large", large, md5hex(large))
	flip(t, objectPath(dir, "cpod", "bad-small"), 10)
	flip(t, objectPath(dir, "cpod", "bad-large"), blockSize+10)
	s, srv, logs := sumStore(t, dir)
	for key, data := range map[string][]byte{"small": small, "large": large, "multi": multi} {
		if g := get(t, srv, "GET", key, nil); g.status != 200 || g.err != nil || !bytes.Equal(g.body, data) {
			t.Fatalf("legacy %s: %d, %d bytes, %v", key, g.status, len(g.body), g.err)
		}
	}
	wantDamaged(t, "legacy bad-small", get(t, srv, "GET", "bad-small", nil))
	// Without block checksums the damage is only known at the end: the
	// last byte is held back and the connection cut instead.
	if g := get(t, srv, "GET", "bad-large", nil); g.status != 200 || g.err == nil || len(g.body) != len(large)-1 {
		t.Fatalf("legacy bad-large: %d, %d of %d bytes, %v: want the connection cut before the last byte", g.status, len(g.body), len(large), g.err)
	}
	wantLogged(t, logs, "bad-large")

	rep, err := s.scrub(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (ScrubReport{Objects: 5, Bytes: rep.Bytes, Damaged: 2, Adopted: 3, Unverified: 1}); rep != want {
		t.Fatalf("scrub: %+v, want %+v", rep, want)
	}
	for key, data := range map[string][]byte{"small": small, "large": large, "multi": multi} {
		f, err := os.Open(objectPath(dir, "cpod", key))
		if err != nil {
			t.Fatal(err)
		}
		h, err := readHeader(f)
		f.Close()
		if err != nil || h.BlockSize != blockSize {
			t.Fatalf("%s after the scrub: %+v, %v", key, h, err)
		}
		if g := get(t, srv, "GET", key, nil); g.status != 200 || g.err != nil || !bytes.Equal(g.body, data) {
			t.Fatalf("adopted %s: %d, %d bytes, %v", key, g.status, len(g.body), g.err)
		}
	}
	flip(t, objectPath(dir, "cpod", "multi"), 3)
	wantDamaged(t, "adopted multi, damaged", get(t, srv, "GET", "multi", nil))
	if rep, _ := s.scrub(context.Background()); rep.Damaged != 3 || rep.Adopted != 0 {
		t.Fatalf("second scrub: %+v", rep)
	}
}

// TestS3DamagedKeyAfterRestart: an object whose header lost its key (so
// the restarted store cannot index it) still answers "damaged" to its key,
// HEAD included, is counted by the scrub, and can be deleted or
// overwritten.
func TestS3DamagedKeyAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, srv, _ := sumStore(t, dir)
	data := randomBytes(5, 3000)
	for _, k := range []string{"lost", "lost2"} {
		put(t, srv, k, data)
		flip(t, objectPath(dir, "cpod", k), int64(len(data))+4+int64(len(`{"key":"`)))
	}
	s, srv, logs := sumStore(t, dir)
	wantDamaged(t, "GET", get(t, srv, "GET", "lost", nil))
	wantDamaged(t, "HEAD", get(t, srv, "HEAD", "lost", nil))
	wantLogged(t, logs, "lost")
	if rep, err := s.scrub(context.Background()); err != nil || rep.Damaged != 2 || rep.Objects != 2 {
		t.Fatalf("scrub: %+v, %v", rep, err)
	}
	req, _ := http.NewRequest("DELETE", srv.URL+"/cpod/lost", nil)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if g := get(t, srv, "GET", "lost", nil); res.StatusCode != 204 || g.status != 404 {
		t.Fatalf("DELETE: %d, then GET %d", res.StatusCode, g.status)
	}
	put(t, srv, "lost2", data[:10])
	if g := get(t, srv, "GET", "lost2", nil); g.status != 200 || !bytes.Equal(g.body, data[:10]) {
		t.Fatalf("overwritten: %d %q", g.status, g.body)
	}
}
