package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// trickle starts a chunked upload that sends one byte and then nothing
// until the test ends (the audit's attack: a byte every 59 s keeps it open
// past any stall timeout). It returns once the byte left the client.
func trickle(t testing.TB, srv *cpodtest.Server, tok, path string) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		pw.CloseWithError(io.ErrUnexpectedEOF)
		<-done
	})
	req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+path, pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	go func() {
		defer close(done)
		if res, err := srv.HTTP.Client().Do(req); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	if _, err := pw.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
}

// putWithin sends a chunked PUT of data and fails the test unless it is
// answered within d.
func putWithin(t *testing.T, srv *cpodtest.Server, tok, path string, data []byte, d time.Duration) resp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+path, chunked(bytes.NewReader(data)))
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v (no answer within %v)", path, err, d)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// TestFilesUploadTricklersHoldNoBudget: as many idle chunked uploads as
// the memory budget has part buffers (each sent one byte) hold none of it:
// another tenant's small chunked upload, and one large enough to need a
// part buffer, are answered at once, and so is the idle tenant's own small
// upload. Before, each idle upload held a part buffer before reading a
// byte, and every other chunked upload waited for as long as they idled.
func TestFilesUploadTricklersHoldNoBudget(t *testing.T) {
	t.Parallel()
	srv, tokA := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxFileSize = 64 << 20
		c.Limits.MaxUploadMemory = 16 << 20 // two parts of 8 MiB
	}))
	tokB := fileToken(srv, fileID{"t2", "a", "u1"})
	for _, p := range []string{"/v1/storage/files/hold0", "/v1/storage/files/hold1"} {
		trickle(t, srv, tokA, p)
	}
	time.Sleep(300 * time.Millisecond) // the idle uploads reach the engine

	wantStatus(t, putWithin(t, srv, tokB, "/v1/storage/files/small.txt", []byte("hello"), 5*time.Second), http.StatusOK, "")
	wantStatus(t, putWithin(t, srv, tokA, "/v1/storage/files/own.txt", []byte("hello"), 5*time.Second), http.StatusOK, "")
	big := pattern(9<<20 + 3) // a multipart upload of two parts
	wantStatus(t, putWithin(t, srv, tokB, "/v1/storage/files/big.bin", big, 10*time.Second), http.StatusOK, "")
	if r := do(t, srv, "GET", "/v1/storage/files/big.bin", tokB, nil); !bytes.Equal(r.body, big) {
		t.Fatal("big.bin: stored file differs")
	}
	if r := do(t, srv, "GET", "/v1/storage/files/small.txt", tokB, nil); string(r.body) != "hello" {
		t.Fatalf("small.txt: %q", r.body)
	}
}

// holder starts a chunked upload that sends 1 MiB and one byte (past the
// start that is read outside the budget: it needs a part buffer) and then
// nothing until the test ends. Its answer, if one comes, goes to the
// channel with the time it took.
func holder(t *testing.T, srv *cpodtest.Server, tok, path string) <-chan timedResp {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan timedResp, 1)
	t.Cleanup(func() {
		cancel()
		pw.CloseWithError(io.ErrUnexpectedEOF)
	})
	req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+path, pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	go func() {
		res, err := srv.HTTP.Client().Do(req)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		out <- timedResp{resp{res.StatusCode, res.Header, b}, time.Since(start)}
	}()
	go pw.Write(pattern(1<<20 + 1))
	return out
}

type timedResp struct {
	resp
	took time.Duration
}

// wantBusy fails the test unless r is 503 backend_unavailable with
// Retry-After, answered within limit.
func wantBusy(t *testing.T, r timedResp, limit time.Duration) {
	t.Helper()
	wantStatus(t, r.resp, http.StatusServiceUnavailable, "backend_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if r.took > limit {
		t.Fatalf("503 after %v, want within %v", r.took, limit)
	}
}

// TestFilesUploadTenantShare: one tenant holds at most a quarter of the
// budget. Tenant A opens as many uploads that need a part buffer and then
// idle as the budget has buffers: one gets a buffer (its share), the
// others are answered 503 backend_unavailable with Retry-After once no
// buffer was given back for S3Timeout, and tenant B's multipart upload is
// stored at once. Before, A's uploads took the whole budget and B's upload
// waited for as long as they idled.
func TestFilesUploadTenantShare(t *testing.T) {
	t.Parallel()
	const bound = time.Second
	srv, tokA := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.S3Timeout = bound
		c.Limits.MaxFileSize = 64 << 20
		c.Limits.MaxUploadMemory = 32 << 20 // four parts of 8 MiB: a share of one
	}))
	tokB := fileToken(srv, fileID{"t2", "a", "u1"})
	var held []<-chan timedResp
	for _, p := range []string{"hold0", "hold1", "hold2", "hold3"} {
		held = append(held, holder(t, srv, tokA, "/v1/storage/files/"+p))
	}
	big := pattern(9<<20 + 3)
	wantStatus(t, putWithin(t, srv, tokB, "/v1/storage/files/big.bin", big, 10*time.Second), http.StatusOK, "")
	if r := do(t, srv, "GET", "/v1/storage/files/big.bin", tokB, nil); !bytes.Equal(r.body, big) {
		t.Fatal("big.bin: stored file differs")
	}
	// Three of A's uploads are over its share: 503 within the bound (plus
	// the time to send their first MiB); the one within it still holds.
	busy := 0
	deadline := time.After(bound + 8*time.Second)
	for busy < 3 {
		select {
		case <-deadline:
			t.Fatalf("%d of tenant A's uploads over its share answered, want 3", busy)
		default:
		}
		for _, ch := range held {
			select {
			case r := <-ch:
				wantBusy(t, r, bound+5*time.Second)
				busy++
			default:
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFilesUploadBudgetWaitBounded: with a budget of one part held by an
// idle upload of tenant A, tenant B's upload that needs a part buffer
// waits only until no buffer was given back for S3Timeout, and is then
// answered 503 backend_unavailable with Retry-After; a small chunked
// upload of B is still stored. Before, B's upload waited for as long as
// A's idled.
func TestFilesUploadBudgetWaitBounded(t *testing.T) {
	t.Parallel()
	const bound = time.Second
	srv, tokA := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.S3Timeout = bound
		c.Limits.MaxFileSize = 64 << 20
		c.Limits.MaxUploadMemory = 8 << 20 // one part
	}))
	tokB := fileToken(srv, fileID{"t2", "a", "u1"})
	a := holder(t, srv, tokA, "/v1/storage/files/hold")
	for try := 1; ; try++ {
		time.Sleep(300 * time.Millisecond) // A's upload takes the buffer
		start := time.Now()
		r := putWithin(t, srv, tokB, "/v1/storage/files/big.bin", pattern(2<<20), 10*time.Second)
		if r.status == http.StatusOK && try < 5 {
			continue // B came first: A's upload had not sent its first MiB yet
		}
		wantBusy(t, timedResp{r, time.Since(start)}, bound+3*time.Second)
		break
	}
	wantStatus(t, putWithin(t, srv, tokB, "/v1/storage/files/small.txt", []byte("hello"), 5*time.Second), http.StatusOK, "")
	select {
	case r := <-a:
		t.Fatalf("tenant A's upload within the budget was answered: %d %s", r.status, r.body)
	default:
	}
}

// BenchmarkFilesIdleChunkedUploads opens 32 chunked uploads that send one
// byte and idle (the audit's attack, as many as the default budget has
// part buffers) and reports the heap they hold, per upload, once the
// engine has read their byte. Run it alone:
//
//	go test -run '^$' -bench 'BenchmarkFilesIdleChunkedUploads' -benchtime 1x .
func BenchmarkFilesIdleChunkedUploads(b *testing.B) {
	const uploads = 32
	srv := cpodtest.NewServer(b)
	srv.RegisterApp(b, "a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", Scopes: allScopes, TTL: 24 * time.Hour})
	var perUpload float64
	for b.Loop() {
		runtime.GC()
		before := heapBytes()
		tb := &idleTB{TB: b}
		for i := range uploads {
			trickle(tb, srv, tok, fmt.Sprintf("/v1/storage/files/idle/%d", i))
		}
		time.Sleep(500 * time.Millisecond) // the engine reads every byte
		runtime.GC()
		perUpload = float64(heapBytes()-min(before, heapBytes())) / uploads
		tb.cleanup()
	}
	b.ReportMetric(perUpload/(1<<10), "heap-KiB-per-idle-upload")
}

// idleTB runs the cleanups of one benchmark round at its end.
type idleTB struct {
	testing.TB
	fns []func()
}

func (t *idleTB) Cleanup(f func()) { t.fns = append(t.fns, f) }
func (t *idleTB) cleanup() {
	for _, f := range t.fns {
		f()
	}
}
