package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// earlyAnswerBound is how soon a body refused from its Content-Length is
// answered: at once, plus slack for -race on busy cores. One that waited
// for the body would come only at the io timeout (a minute here), or
// never.
const earlyAnswerBound = 5 * time.Second

// hugeBodyStatus sends a request with a Content-Length of 6 GiB and only
// three bytes of body over a raw connection to addr, and returns the status
// line of the answer and how long it took. It never sends the rest.
func hugeBodyStatus(t *testing.T, addr, method, target, token string) (string, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	start := time.Now()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/octet-stream\r\nContent-Length: 6442450944\r\n\r\nabc", method, target, addr, auth)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("%s %s: no answer after %v: %v", method, target, time.Since(start), err)
	}
	return strings.TrimSpace(line), time.Since(start)
}

// TestEarlyAnswerThroughAccessLog: a handler that answers without reading
// the body is answered at once through accessLog, as net/http does without
// it. accessLog once replaced the server's own r.Body, so net/http then
// tried to read the unread body before answering, and waited for bytes
// that never came until the io timeout (60 s by default).
func TestEarlyAnswerThroughAccessLog(t *testing.T) {
	t.Parallel()
	h := accessLog{log: newLogger(io.Discard, "json", 0), ioTimeout: time.Minute, next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	status, took := hugeBodyStatus(t, srv.Listener.Addr().String(), "PUT", "/x", "")
	if status != "HTTP/1.1 413 Request Entity Too Large" || took > earlyAnswerBound {
		t.Fatalf("answer %q after %v, want 413 within %v", status, took, earlyAnswerBound)
	}
}

// TestEarlyAnswersFromServer: the built server answers a file upload whose
// Content-Length passes the size limit with 413 at once, and an upload
// without a valid token with 401 at once, without waiting for the body.
func TestEarlyAnswersFromServer(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir)
	token := setupApp(t, srv, dataDir)
	for _, tc := range []struct{ token, target, want string }{
		{token, "/v1/storage/files/big.bin", "HTTP/1.1 413 Request Entity Too Large"},
		{"", "/v1/storage/files/big.bin", "HTTP/1.1 401 Unauthorized"},
		{token, "/v1/storage/files/big.bin?TIER=user", "HTTP/1.1 400 Bad Request"},
		{token, "/v1/storage/kv/k", "HTTP/1.1 413 Request Entity Too Large"},
	} {
		status, took := hugeBodyStatus(t, srv.Addr, "PUT", tc.target, tc.token)
		if status != tc.want || took > earlyAnswerBound {
			t.Errorf("PUT %s (token %v): answer %q after %v, want %q within %v", tc.target, tc.token != "", status, took, tc.want, earlyAnswerBound)
		}
	}
}

func TestHostFromRequests(t *testing.T) {
	t.Parallel()
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		addr      string
		publicURL string
		presigned bool
		want      bool
	}{
		{"127.0.0.1:8080", "", false, false},
		{"127.0.0.2:8080", "", false, false},
		{"[::1]:8080", "", false, false},
		{"0.0.0.0:8080", "", false, true},
		{"[::]:8080", "", false, true},
		{"10.1.2.3:8080", "", false, true},
		{"192.168.1.5:443", "", false, true},
		{"0.0.0.0:8080", "https://api.example.com", false, false},
		{"10.1.2.3:8080", "", true, false},
	} {
		cfg := &serverConfig{PublicURL: tc.publicURL, S3Presigned: tc.presigned}
		if got := hostFromRequests(cfg, tcp(tc.addr)); got != tc.want {
			t.Errorf("hostFromRequests(%s, public URL %q, presigned %v) = %v, want %v", tc.addr, tc.publicURL, tc.presigned, got, tc.want)
		}
	}
}

// TestPublicURLWarning: the server warns at start when it listens beyond
// loopback without -public-url, and only then.
func TestPublicURLWarning(t *testing.T) {
	t.Parallel()
	const warning = "listening beyond loopback without a public URL"
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-addr", "0.0.0.0:0"}, true},
		{[]string{"-addr", "0.0.0.0:0", "-public-url", "https://files.example.com"}, false},
		{nil, false}, // 127.0.0.1
	} {
		dataDir := filepath.Join(t.TempDir(), "cpod-data")
		srv := startServer(t, dataDir, tc.args...)
		// The warning comes before the listening record, which startServer
		// waited for.
		logs := srv.stderr.String()
		if got := strings.Contains(logs, warning); got != tc.want {
			t.Errorf("%v: warning logged %v, want %v:\n%s", tc.args, got, tc.want, logs)
		}
		srv.stop(t, syscall.SIGTERM)
	}
}
