package storage_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// The files benchmarks run only with -bench (they move hundreds of MiB):
//
//	go test -run '^$' -bench 'BenchmarkFilesThroughput' -benchtime 5x -count 5 . | tee files.txt && benchstat files.txt
//	go test -run '^$' -bench 'BenchmarkFilesUploadHeap' -benchtime 1x .
//
// BenchmarkFilesThroughput runs against cpodtest's S3: gofakes3 in process,
// or a real S3 through CPODTEST_S3_URL (for example versitygw in another
// process). BenchmarkFilesUploadHeap uses an in-test S3 endpoint that
// discards what it receives, so that the heap measured is the engine's (plus
// this process's small client and discarding handler), not the fake's copy
// of the bytes.

const benchObject = 64 << 20

// BenchmarkFilesThroughput uploads and downloads 64 MiB through the engine
// (with Content-Length, and chunked) and directly with minio-go to the same
// S3. Every iteration runs both, alternately, and reports engine/direct
// throughput as "ratio" (goal >= 0.7), so a noisy shared machine affects
// both sides alike.
func BenchmarkFilesThroughput(b *testing.B) {
	srv := cpodtest.NewServer(b, cpodtest.WithConfig(func(c *storage.Config) { c.Limits.MaxFileSize = 1 << 30 }))
	srv.RegisterApp(b, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes, TTL: 24 * time.Hour})
	data := pattern(benchObject)
	ctx := context.Background()
	client := srv.HTTP.Client()

	direct := func(b *testing.B, chunkedBody bool) {
		var err error
		if chunkedBody {
			_, err = srv.S3.PutObject(ctx, srv.Bucket, "direct/obj", chunked(bytes.NewReader(data)), -1, minio.PutObjectOptions{PartSize: 8 << 20})
		} else {
			_, err = srv.S3.PutObject(ctx, srv.Bucket, "direct/obj", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
		}
		if err != nil {
			b.Fatal(err)
		}
		obj, err := srv.S3.GetObject(ctx, srv.Bucket, "direct/obj", minio.GetObjectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, obj); err != nil || n < benchObject {
			b.Fatalf("direct read %d bytes: %v", n, err)
		}
		obj.Close()
	}
	engine := func(b *testing.B, chunkedBody bool) {
		var body io.Reader = bytes.NewReader(data)
		if chunkedBody {
			body = chunked(body)
		}
		req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/bench/obj", body)
		req.Header.Set("Authorization", "Bearer "+tok)
		benchDo(b, client, req, 200)
		req, _ = http.NewRequest("GET", srv.URL+"/v1/storage/files/bench/obj", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if n := benchDo(b, client, req, 200); n != benchObject {
			b.Fatalf("engine read %d bytes", n)
		}
	}
	for _, chunkedBody := range []bool{false, true} {
		name := "content-length"
		if chunkedBody {
			name = "chunked"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(2 * benchObject)
			var tDirect, tEngine time.Duration
			for b.Loop() {
				t0 := time.Now()
				direct(b, chunkedBody)
				t1 := time.Now()
				engine(b, chunkedBody)
				tDirect += t1.Sub(t0)
				tEngine += time.Since(t1)
			}
			mib := float64(2*benchObject) / (1 << 20) * float64(b.N)
			b.ReportMetric(mib/tDirect.Seconds(), "direct-MiB/s")
			b.ReportMetric(mib/tEngine.Seconds(), "engine-MiB/s")
			b.ReportMetric(tDirect.Seconds()/tEngine.Seconds(), "ratio")
		})
	}
}

// benchDo sends a request, checks its status and returns the body's length.
func benchDo(b *testing.B, c *http.Client, req *http.Request, want int) int64 {
	res, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil {
		b.Fatal(err)
	}
	if res.StatusCode != want {
		b.Fatalf("%s: status %d", req.Method, res.StatusCode)
	}
	return n
}

// BenchmarkFilesUploadHeap uploads 256 MiB and 1 GiB through the engine to
// a discarding S3 and reports the peak heap during the upload (goal: at most
// 64 MiB, and the same for both sizes). peak-heap-MiB is the largest live
// plus not yet collected heap sampled every millisecond, for the whole
// process; heap-growth-MiB is that peak minus the heap after a GC before the
// upload began.
func BenchmarkFilesUploadHeap(b *testing.B) {
	s3 := newDiscardS3(b)
	srv := cpodtest.NewServer(b, cpodtest.WithConfig(func(c *storage.Config) {
		c.S3, c.Bucket = s3.client, "discard"
		c.Limits.MaxFileSize = 2 << 30
	}))
	srv.RegisterApp(b, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes, TTL: 24 * time.Hour})
	for _, tc := range []struct {
		name        string
		size        int64
		chunkedBody bool
	}{
		{"chunked-256MiB", 256 << 20, true},
		{"chunked-1GiB", 1 << 30, true},
		{"content-length-1GiB", 1 << 30, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(tc.size)
			var peak, growth uint64
			for b.Loop() {
				runtime.GC()
				base := heapBytes()
				stop := sampleHeap()
				var body io.Reader = io.LimitReader(zeroReader{}, tc.size)
				if tc.chunkedBody {
					body = chunked(body)
				}
				req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/big.bin", body)
				if !tc.chunkedBody {
					req.ContentLength = tc.size
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				benchDo(b, srv.HTTP.Client(), req, 200)
				p := stop()
				peak = max(peak, p)
				growth = max(growth, p-min(p, base))
				if got := s3.size("t1/apps/app-a/big.bin"); got != tc.size {
					b.Fatalf("S3 received %d bytes, want %d", got, tc.size)
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(growth)/(1<<20), "heap-growth-MiB")
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// heapBytes is the heap held by objects, live or not yet collected
// (runtime.MemStats.HeapAlloc), read without stopping the world.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleHeap samples heapBytes every millisecond until the returned
// function is called; that returns the largest sample.
func sampleHeap() func() uint64 {
	var peak atomic.Uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-stopped
		return peak.Load()
	}
}

// discardS3 is an S3 endpoint that accepts PutObject, multipart uploads and
// HeadObject, counts the bytes and keeps none of them.
type discardS3 struct {
	client *minio.Client
	mu     sync.Mutex
	sizes  map[string]int64 // object key -> size
	parts  map[string]int64 // upload id -> bytes so far
	nextID int
}

func newDiscardS3(b *testing.B) *discardS3 {
	d := &discardS3{sizes: map[string]int64{}, parts: map[string]int64{}}
	ts := httptest.NewServer(d)
	b.Cleanup(ts.Close)
	u, _ := url.Parse(ts.URL)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4("k", "s", ""), Region: "us-east-1"})
	if err != nil {
		b.Fatal(err)
	}
	d.client = c
	return d
}

func (d *discardS3) size(key string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sizes[key]
}

// payload discards a request body and returns the size of the data it
// carried (without the chunk signatures of a streaming-signed body).
func payload(r *http.Request) int64 {
	n, _ := io.Copy(io.Discard, r.Body)
	if v := r.Header.Get("X-Amz-Decoded-Content-Length"); v != "" {
		n, _ = strconv.ParseInt(v, 10, 64)
	}
	return n
}

func (d *discardS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, key, _ := cutBucket(r.URL.Path)
	q := r.URL.Query()
	etag := `"0123456789abcdef0123456789abcdef"`
	xmlReply := func(v any) {
		w.Header().Set("Content-Type", "application/xml")
		_ = xml.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method == "PUT" && q.Has("uploadId"):
		n := payload(r)
		d.mu.Lock()
		d.parts[q.Get("uploadId")] += n
		d.mu.Unlock()
		w.Header().Set("ETag", etag)
	case r.Method == "PUT":
		n := payload(r)
		d.mu.Lock()
		d.sizes[key] = n
		d.mu.Unlock()
		w.Header().Set("ETag", etag)
	case r.Method == "POST" && q.Has("uploads"):
		d.mu.Lock()
		d.nextID++
		id := fmt.Sprintf("upload-%d", d.nextID)
		d.mu.Unlock()
		xmlReply(struct {
			XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
			Bucket   string
			Key      string
			UploadId string
		}{Bucket: "discard", Key: key, UploadId: id})
	case r.Method == "POST" && q.Has("uploadId"):
		io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.sizes[key] = d.parts[q.Get("uploadId")]
		delete(d.parts, q.Get("uploadId"))
		d.mu.Unlock()
		xmlReply(struct {
			XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
			Location string
			Bucket   string
			Key      string
			ETag     string
		}{Location: r.URL.Path, Bucket: "discard", Key: key, ETag: `"0123456789abcdef0123456789abcdef-2"`})
	case r.Method == "DELETE" && q.Has("uploadId"):
		d.mu.Lock()
		delete(d.parts, q.Get("uploadId"))
		d.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "HEAD":
		d.mu.Lock()
		n, ok := d.sizes[key]
		d.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/octet-stream")
	default:
		w.WriteHeader(http.StatusNotImplemented)
	}
}

// cutBucket splits a path-style S3 path into bucket and key.
func cutBucket(p string) (bucket, key string, ok bool) {
	if len(p) == 0 || p[0] != '/' {
		return "", "", false
	}
	p = p[1:]
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
	}
	return p, "", true
}

// BenchmarkFilesConcurrentUploads sends 64 chunked uploads of 64 MiB at
// once through the engine to a discarding S3 and reports the process's
// peak heap (sampled every millisecond) and peak RSS (VmHWM, reset before
// the burst through /proc/self/clear_refs where Linux allows it), plus the
// mean throughput per upload. Run it alone:
//
//	go test -run '^$' -bench 'BenchmarkFilesConcurrentUploads' -benchtime 1x .
func BenchmarkFilesConcurrentUploads(b *testing.B) {
	const uploads, size = 64, 64 << 20
	s3 := newDiscardS3(b)
	srv := cpodtest.NewServer(b, cpodtest.WithConfig(func(c *storage.Config) {
		c.S3, c.Bucket = s3.client, "discard"
		c.Limits.MaxFileSize = 1 << 30
	}))
	srv.RegisterApp(b, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes, TTL: 24 * time.Hour})
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: uploads}}
	b.SetBytes(uploads * size)
	var peak, hwm uint64
	var perUpload time.Duration
	for b.Loop() {
		runtime.GC()
		resetHWM()
		stop := sampleHeap()
		var wg sync.WaitGroup
		var total atomic.Int64
		for i := range uploads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/v1/storage/files/c/%d.bin", srv.URL, i), chunked(io.LimitReader(zeroReader{}, size)))
				req.Header.Set("Authorization", "Bearer "+tok)
				t0 := time.Now()
				benchDo(b, client, req, 200)
				total.Add(int64(time.Since(t0)))
			}()
		}
		wg.Wait()
		peak = max(peak, stop())
		hwm = max(hwm, vmHWM())
		perUpload += time.Duration(total.Load() / uploads)
		for i := range uploads {
			if got := s3.size(fmt.Sprintf("t1/apps/app-a/c/%d.bin", i)); got != size {
				b.Fatalf("upload %d: S3 received %d bytes", i, got)
			}
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(hwm)/(1<<20), "VmHWM-MiB")
	b.ReportMetric(float64(size)/(1<<20)/(perUpload.Seconds()/float64(b.N)), "MiB/s-per-upload")
}

// resetHWM resets the process's peak RSS (Linux 4.0+); a no-op elsewhere.
func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// vmHWM is the process's peak RSS in bytes from /proc/self/status, 0 when
// unknown.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
