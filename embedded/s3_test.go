package embedded_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cpod/storage/embedded"
)

// start runs the embedded backends on dir ("" for a temporary one) and
// closes them at the end of the test.
func start(t testing.TB, dir string) *embedded.Backends {
	t.Helper()
	b, err := embedded.Start(context.Background(), embedded.Config{Dir: dir, FerretDB: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// version is the content of version v of an object: every byte is v, so a
// body mixing versions is easy to spot.
func version(v byte, size int) []byte { return bytes.Repeat([]byte{v}, size) }

// TestS3ReadsSeeOneVersion: GETs racing overwrites of one object each
// return exactly one whole version, with that version's ETag (gofakes3 on
// bolt returned bytes of up to 8 versions in one 200 response).
func TestS3ReadsSeeOneVersion(t *testing.T) {
	t.Parallel()
	b := start(t, t.TempDir())
	checkReadsSeeOneVersion(t, b.S3, b.Bucket)
}

func checkReadsSeeOneVersion(t *testing.T, c *minio.Client, bucket string) {
	ctx := context.Background()
	const size = 2 << 20
	put := func(v byte) {
		if _, err := c.PutObject(ctx, bucket, "race/one", bytes.NewReader(version(v, size)), size, minio.PutObjectOptions{}); err != nil {
			t.Error(err)
		}
	}
	put(0)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := byte(1 + w*80); !stop.Load(); v++ {
				put(v)
			}
		}()
	}
	var reads atomic.Int64
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				obj, err := c.GetObject(ctx, bucket, "race/one", minio.GetObjectOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				// Slowly, so the object is overwritten during the read.
				body, err := readSlowly(obj, 128<<10, 2*time.Millisecond)
				info, _ := obj.Stat()
				obj.Close()
				if err != nil {
					t.Error(err)
					return
				}
				if len(body) != size || !bytes.Equal(body, version(body[0], size)) {
					t.Errorf("read %d: %d bytes mixing versions (first %d, last %d)", i, len(body), body[0], body[len(body)-1])
					return
				}
				sum := md5.Sum(body)
				if info.ETag != hex.EncodeToString(sum[:]) {
					t.Errorf("read %d: ETag %s is not the MD5 of the body read", i, info.ETag)
				}
				reads.Add(1)
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	for reads.Load() < 60 && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
}

// slowReader hands out body a little at a time.
func readSlowly(r io.Reader, chunk int, pause time.Duration) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(r, buf)
		out.Write(buf[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
		time.Sleep(pause)
	}
}

// TestS3SlowDownloadDuringUploads: a download that takes its time while
// large objects are written (which remapped gofakes3's bolt file under the
// reader: SIGSEGV) returns the whole object.
func TestS3SlowDownloadDuringUploads(t *testing.T) {
	t.Parallel()
	b := start(t, t.TempDir())
	checkSlowDownloadDuringUploads(t, b.S3, b.Bucket)
}

func checkSlowDownloadDuringUploads(t *testing.T, c *minio.Client, bucket string) {
	ctx := context.Background()
	const size = 8 << 20
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if _, err := c.PutObject(ctx, bucket, "slow/big", bytes.NewReader(want), size, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.GetObject(ctx, bucket, "slow/big", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		data := version(9, 16<<20)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			key := fmt.Sprintf("slow/up-%d", i%3)
			if _, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
				t.Error(err)
				return
			}
			// The object being read is overwritten and deleted too.
			if i%2 == 0 {
				_ = c.RemoveObject(ctx, bucket, "slow/big", minio.RemoveObjectOptions{})
			} else {
				_, _ = c.PutObject(ctx, bucket, "slow/big", bytes.NewReader(data[:1<<20]), 1<<20, minio.PutObjectOptions{})
			}
		}
	}()
	got, err := readSlowly(obj, 256<<10, 40*time.Millisecond)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("slow download: %d bytes, not the object as it was when the download began", len(got))
	}
}

// TestS3KeysAreNotPaths: object keys are arbitrary bytes; none may name a
// file of its own, and every one round-trips exactly.
func TestS3KeysAreNotPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := start(t, filepath.Join(dir, "data"))
	ctx := context.Background()
	keys := []string{
		"../../../escape", "a/../../b", "/abs/path", "%2e%2e/x", "..", ".", "a//b", `..\..\win`,
		"C:\\x", "sp ace+plus", "ünï/cödé", "trailing/", strings.Repeat("k", 1024),
		"files/objects/cpod/00/" + strings.Repeat("0", 64),
	}
	for i, k := range keys {
		body := fmt.Sprintf("body %d", i)
		if _, err := b.S3.PutObject(ctx, b.Bucket, k, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	for i, k := range keys {
		obj, err := b.S3.GetObject(ctx, b.Bucket, k, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || string(got) != fmt.Sprintf("body %d", i) {
			t.Errorf("get %q: %q, %v", k, got, err)
		}
	}
	listed := map[string]bool{}
	for o := range b.S3.ListObjectsIter(ctx, b.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		listed[o.Key] = true
	}
	for _, k := range keys {
		if !listed[k] {
			t.Errorf("key %q is not listed", k)
		}
	}
	if len(listed) != len(keys) {
		t.Errorf("listed %d keys, want %d", len(listed), len(keys))
	}
	// Only hashed object files exist, all inside the store.
	objRE := regexp.MustCompile(`^data/files/objects/cpod/[0-9a-f]{2}/[0-9a-f]{64}$`)
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "data/files/") {
			if !objRE.MatchString(rel) {
				t.Errorf("unexpected file %s", rel)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(keys) {
		t.Errorf("%d object files, want %d", n, len(keys))
	}
}

// TestS3API covers what the engine relies on beyond PUT and GET: streaming
// (aws-chunked) and multipart uploads, ranges, conditional requests,
// listings with pages and delimiters, copy, multi-delete, aborted uploads.
func TestS3API(t *testing.T) {
	t.Parallel()
	b := start(t, "")
	ctx := context.Background()
	data := make([]byte, 11<<20+123)
	for i := range data {
		data[i] = byte(i % 251)
	}
	// Size unknown: minio-go sends a multipart upload (5 MiB parts).
	info, err := b.S3.PutObject(ctx, b.Bucket, "mp/obj", io.MultiReader(bytes.NewReader(data)), -1, minio.PutObjectOptions{PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(info.ETag, "-3") {
		t.Errorf("multipart ETag %q, want a 3-part ETag", info.ETag)
	}
	read := func(key string, opts minio.GetObjectOptions) ([]byte, error) {
		obj, err := b.S3.GetObject(ctx, b.Bucket, key, opts)
		if err != nil {
			return nil, err
		}
		defer obj.Close()
		return io.ReadAll(obj)
	}
	if got, err := read("mp/obj", minio.GetObjectOptions{}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("multipart object: %d bytes, %v", len(got), err)
	}
	// Streaming signature (aws-chunked) single PUT, with Content-MD5.
	if _, err := b.S3.PutObject(ctx, b.Bucket, "st/obj", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{SendContentMd5: true, DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
	if got, err := read("st/obj", minio.GetObjectOptions{}); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("streamed object: %d bytes, %v", len(got), err)
	}
	// Ranges.
	var o minio.GetObjectOptions
	_ = o.SetRange(100, 199)
	if got, err := read("st/obj", o); err != nil || !bytes.Equal(got, data[100:200]) {
		t.Errorf("range 100-199: %d bytes, %v", len(got), err)
	}
	o = minio.GetObjectOptions{}
	_ = o.SetRange(0, -10)
	if got, err := read("st/obj", o); err != nil || !bytes.Equal(got, data[len(data)-10:]) {
		t.Errorf("suffix range: %d bytes, %v", len(got), err)
	}
	o = minio.GetObjectOptions{}
	_ = o.SetRange(int64(len(data)), 0)
	if _, err := read("st/obj", o); minio.ToErrorResponse(err).Code != minio.InvalidRange {
		t.Errorf("range past the end: %v, want InvalidRange", err)
	}
	// Conditional GET and PUT.
	st, err := b.S3.StatObject(ctx, b.Bucket, "st/obj", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o = minio.GetObjectOptions{}
	_ = o.SetMatchETag("0123")
	if _, err := read("st/obj", o); minio.ToErrorResponse(err).Code != "PreconditionFailed" {
		t.Errorf("If-Match other ETag: %v, want PreconditionFailed", err)
	}
	o = minio.GetObjectOptions{}
	_ = o.SetMatchETag(st.ETag)
	if _, err := read("st/obj", o); err != nil {
		t.Errorf("If-Match own ETag: %v", err)
	}
	var po minio.PutObjectOptions
	po.SetMatchETagExcept("*")
	if _, err := b.S3.PutObject(ctx, b.Bucket, "st/obj", strings.NewReader("x"), 1, po); minio.ToErrorResponse(err).Code != "PreconditionFailed" {
		t.Errorf("If-None-Match * over an existing object: %v, want PreconditionFailed", err)
	}
	// Missing key and bucket.
	if _, err := b.S3.StatObject(ctx, b.Bucket, "nope", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		t.Errorf("stat missing: %v", err)
	}
	if ok, err := b.S3.BucketExists(ctx, "other-bucket"); ok || err != nil {
		t.Errorf("BucketExists(other-bucket) = %v, %v", ok, err)
	}
	// Listings: pages and delimiters.
	for i := 0; i < 25; i++ {
		k := fmt.Sprintf("ls/%02d", i)
		if i%5 == 0 {
			k = fmt.Sprintf("ls/dir%d/f", i)
		}
		if _, err := b.S3.PutObject(ctx, b.Bucket, k, strings.NewReader("v"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	for o := range b.S3.ListObjectsIter(ctx, b.Bucket, minio.ListObjectsOptions{Prefix: "ls/", Recursive: true, MaxKeys: 7}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		all = append(all, o.Key)
	}
	if len(all) != 25 || all[0] != "ls/01" {
		t.Errorf("recursive listing in pages of 7: %d keys %v", len(all), all)
	}
	var prefixes, files int
	for o := range b.S3.ListObjectsIter(ctx, b.Bucket, minio.ListObjectsOptions{Prefix: "ls/", MaxKeys: 4}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if strings.HasSuffix(o.Key, "/") {
			prefixes++
		} else {
			files++
		}
	}
	if prefixes != 5 || files != 20 {
		t.Errorf("delimited listing: %d prefixes, %d files; want 5, 20", prefixes, files)
	}
	// Copy and multi-delete.
	if _, err := b.S3.CopyObject(ctx, minio.CopyDestOptions{Bucket: b.Bucket, Object: "cp/obj"}, minio.CopySrcOptions{Bucket: b.Bucket, Object: "mp/obj"}); err != nil {
		t.Fatal(err)
	}
	if got, err := read("cp/obj", minio.GetObjectOptions{}); err != nil || !bytes.Equal(got, data) {
		t.Errorf("copy: %d bytes, %v", len(got), err)
	}
	objs := make(chan minio.ObjectInfo, 30)
	for _, k := range all {
		objs <- minio.ObjectInfo{Key: k}
	}
	close(objs)
	for e := range b.S3.RemoveObjects(ctx, b.Bucket, objs, minio.RemoveObjectsOptions{}) {
		t.Errorf("remove %s: %v", e.ObjectName, e.Err)
	}
	for o := range b.S3.ListObjectsIter(ctx, b.Bucket, minio.ListObjectsOptions{Prefix: "ls/", Recursive: true}) {
		t.Errorf("left after multi-delete: %s %v", o.Key, o.Err)
	}
	// An aborted multipart upload leaves nothing behind.
	failing := io.MultiReader(bytes.NewReader(data), errReader{})
	if _, err := b.S3.PutObject(ctx, b.Bucket, "mp/failed", failing, -1, minio.PutObjectOptions{PartSize: 5 << 20}); err == nil {
		t.Fatal("upload of a failing body succeeded")
	}
	if _, err := b.S3.StatObject(ctx, b.Bucket, "mp/failed", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		t.Errorf("failed upload: stat %v, want NoSuchKey", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client went away") }

// TestS3Persists: objects survive a restart on the same directory, and a
// restart clears unfinished uploads.
func TestS3Persists(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := embedded.Start(ctx, embedded.Config{Dir: dir, NoDocuments: true, NoKV: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.S3.PutObject(ctx, b.Bucket, "keep/me", strings.NewReader("kept"), 4, minio.PutObjectOptions{ContentType: "text/plain"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err = embedded.Start(ctx, embedded.Config{Dir: dir, NoDocuments: true, NoKV: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	st, err := b.S3.StatObject(ctx, b.Bucket, "keep/me", minio.StatObjectOptions{})
	if err != nil || st.Size != 4 || st.ContentType != "text/plain" {
		t.Fatalf("after restart: %+v, %v", st, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, embedded.FilesDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("files directory: %v, %v", fi.Mode(), err)
	}
}

// TestS3StreamsWithFlatMemory: a 64 MiB object goes up (Content-Length and
// multipart) and down without the process's heap growing by anything near
// its size (gofakes3 held whole objects and parts in memory).
func TestS3StreamsWithFlatMemory(t *testing.T) {
	b := start(t, t.TempDir())
	checkStreamsWithFlatMemory(t, b.S3, b.Bucket)
}

func checkStreamsWithFlatMemory(t *testing.T, c *minio.Client, bucket string) {
	ctx := context.Background()
	const size = 64 << 20
	var peak atomic.Uint64
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
		}
	}()
	body := func() io.Reader { return io.LimitReader(zeros{}, size) }
	if _, err := c.PutObject(ctx, bucket, "mem/sized", body(), size, minio.PutObjectOptions{DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, bucket, "mem/parts", body(), -1, minio.PutObjectOptions{PartSize: 5 << 20}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mem/sized", "mem/parts"} {
		obj, err := c.GetObject(ctx, bucket, k, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, obj)
		obj.Close()
		if err != nil || n != size {
			t.Fatalf("%s: %d bytes, %v", k, n, err)
		}
	}
	close(stop)
	<-sampled
	// minio-go's own multipart buffer is one 5 MiB part.
	if grew := int64(peak.Load()) - int64(base); grew > 24<<20 {
		t.Fatalf("the heap grew by %d MiB moving a %d MiB object", grew>>20, size>>20)
	} else {
		t.Logf("heap grew by at most %.1f MiB", float64(grew)/(1<<20))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
