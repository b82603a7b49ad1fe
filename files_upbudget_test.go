package storage_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// trickle starts a chunked upload that sends one byte and then nothing
// until the test ends (the audit's attack: a byte every 59 s keeps it open
// past any stall timeout). It returns once the byte left the client.
func trickle(t *testing.T, srv *cpodtest.Server, tok, path string) {
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
