package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // to hold the embedded FerretDB's database locked
)

// setupApp registers app-demo on a fresh server and returns a token for it.
func setupApp(t *testing.T, srv *proc, dataDir string) string {
	t.Helper()
	admin := readFile(t, filepath.Join(dataDir, adminTokenFile))
	app := `{"client_id":"app-demo","name":"Demo","declared_scopes":["storage.private.read","storage.private.write"],"app_type":"service"}`
	want(t, "register app", call(t, "POST", srv.URL+"/v1/oauth/apps", admin, nil, []byte(app)), 201)
	return mintToken(t, dataDir, "--tenant", "t1", "--app", "app-demo", "--user", "u1", "--scope", "storage.private.read,storage.private.write")
}

// startUpload opens a connection and sends a file upload's headers and the
// first half of its body, leaving the request in flight.
func startUpload(t *testing.T, srv *proc, token string, body []byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "PUT /v1/storage/files/slow.bin HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", srv.Addr, token, len(body))
	if _, err := conn.Write(body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	// Let the server start the handler: the request is in flight.
	time.Sleep(300 * time.Millisecond)
	return conn
}

// TestGracefulShutdown: an upload in flight when SIGTERM arrives completes
// and is stored, while new connections are refused; the exit code is 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir, "-shutdown-timeout", "20s")
	token := setupApp(t, srv, dataDir)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	conn := startUpload(t, srv, token, body)

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", srv.Addr, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		switch {
		case err == nil:
			c.Close()
		case errors.Is(err, syscall.ECONNRESET):
			// Accepted by the kernel as the listener closed: try again.
		default:
			t.Fatalf("new connection after SIGTERM: %v, want connection refused", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("new connections are still accepted 10s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-srv.done:
		t.Fatalf("the server exited with an upload in flight:\n%s", srv.stderr)
	default:
	}

	// The rest of the body arrives slowly; the upload completes.
	rest := body[len(body)/2:]
	for i := 0; i < 4; i++ {
		chunk := rest[i*len(rest)/4 : (i+1)*len(rest)/4]
		if _, err := conn.Write(chunk); err != nil {
			t.Fatalf("writing the rest of the upload: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the upload's response: %v", err)
	}
	var w struct{ Size int64 }
	err = json.NewDecoder(res.Body).Decode(&w)
	res.Body.Close()
	if res.StatusCode != 200 || err != nil || w.Size != int64(len(body)) {
		t.Fatalf("upload during shutdown: status %d, size %d (%v)", res.StatusCode, w.Size, err)
	}
	if code := srv.wait(t); code != 0 {
		t.Fatalf("exit code %d after a graceful shutdown:\n%s", code, srv.stderr)
	}

	// The file was stored whole.
	srv2 := startServer(t, dataDir)
	r := call(t, "GET", srv2.URL+"/v1/storage/files/slow.bin", token, nil, nil)
	want(t, "read the upload after restart", r, 200)
	if !bytes.Equal(r.body, body) {
		t.Fatalf("the upload was stored with %d bytes, want %d", len(r.body), len(body))
	}
	srv2.stop(t, syscall.SIGTERM)
}

// TestShutdownDeadline: an upload that does not finish within
// -shutdown-timeout is cut off and the exit code says so.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir, "-shutdown-timeout", "1s")
	token := setupApp(t, srv, dataDir)
	startUpload(t, srv, token, make([]byte, 1<<20))
	start := time.Now()
	code := srv.stop(t, syscall.SIGTERM)
	if code != 1 {
		t.Fatalf("exit code %d, want 1 after cutting off a request:\n%s", code, srv.stderr)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 10*time.Second {
		t.Fatalf("the shutdown took %v with -shutdown-timeout 1s", d)
	}
}

// TestShutdownDeadlineBusyDocuments: SIGTERM ends the process within
// -shutdown-timeout even while the embedded FerretDB is stuck in a command
// (a write waiting for a SQLite lock held elsewhere); its shutdown used to
// ignore the deadline and keep the process alive long after "stopped".
func TestShutdownDeadlineBusyDocuments(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir, "-shutdown-timeout", "1s")
	token := setupApp(t, srv, dataDir)
	want(t, "document", call(t, "PUT", srv.URL+"/v1/storage/db/c/first", token, nil, []byte(`{"a":1}`)), 200)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "cpod.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		conn.Close()
	}()
	go func() {
		req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/db/c/stuck", strings.NewReader(`{"a":2}`))
		req.Header.Set("Authorization", "Bearer "+token)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	time.Sleep(500 * time.Millisecond) // the write waits for SQLite
	began := time.Now()
	srv.stop(t, syscall.SIGTERM)
	if d := time.Since(began); d > 4*time.Second {
		t.Fatalf("the process took %v to exit with -shutdown-timeout 1s:\n%s", d, srv.stderr)
	}
}

// TestShutdownEndsStreams: a change feed open when SIGTERM arrives ends
// cleanly (its chunked response's last chunk: the client reads io.EOF and
// resumes elsewhere), the server exits 0 well before the shutdown timeout,
// and the feed's access log line is written once, when it ended, with its
// duration.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir, "-shutdown-timeout", "20s")
	token := setupApp(t, srv, dataDir)
	req, _ := http.NewRequest("GET", srv.URL+"/v1/storage/kv/changes", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("stream: status %d, transfer encoding %v", res.StatusCode, res.TransferEncoding)
	}
	rd := bufio.NewReader(res.Body)
	if l, err := rd.ReadString('\n'); err != nil || l != ": ok\n" {
		t.Fatalf("stream began %q (%v)", l, err)
	}
	time.Sleep(300 * time.Millisecond) // the stream is idle
	if strings.Contains(srv.stderr.String(), `"path":"/v1/storage/kv/changes"`) {
		t.Fatal("the stream's access log line was written before it ended")
	}
	start := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, rd)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("the stream ended with %v, want a clean end", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the stream was still open 10 s after SIGTERM:\n%s", srv.stderr)
	}
	if code := srv.wait(t); code != 0 {
		t.Fatalf("exit code %d with a stream open at shutdown:\n%s", code, srv.stderr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("shutdown took %v with a stream open", took)
	}
	var lines int
	for _, l := range strings.Split(srv.stderr.String(), "\n") {
		if !strings.Contains(l, `"path":"/v1/storage/kv/changes"`) {
			continue
		}
		lines++
		var rec struct {
			Status   int
			Bytes    int64
			Duration int64
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("access log line %q: %v", l, err)
		}
		if rec.Status != 200 || rec.Bytes < int64(len(": ok\n\n")) || time.Duration(rec.Duration) < 300*time.Millisecond {
			t.Fatalf("the stream's access log line: %s", l)
		}
	}
	if lines != 1 {
		t.Fatalf("%d access log lines for the stream, want 1:\n%s", lines, srv.stderr)
	}
}
