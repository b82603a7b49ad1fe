package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLoggedPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ target, want string }{
		{"/v1/storage/files/a/b.txt?tier=user", "/v1/storage/files/a/b.txt"},
		{"/v1/storage/kv/k%20ey?x=1#frag", "/v1/storage/kv/k%20ey"},
		{"/v1/storage/signed/t1/apps/app/report.pdf?tier=private&app=a&expires=1&sig=SIGNATURE", "/v1/storage/signed/[redacted]"},
		{"/v1/storage/signed/t1/SIGNATURE-IN-PATH", "/v1/storage/signed/[redacted]"},
		{"/" + strings.Repeat("a", 2000), "/" + strings.Repeat("a", maxLoggedPath-1) + "..."},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		if got := loggedPath(r); got != tc.want {
			t.Errorf("loggedPath(%q) = %q, want %q", tc.target, got, tc.want)
		}
	}
}

// logRecords parses JSON log lines.
func logRecords(t *testing.T, s string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	return recs
}

// TestAccessLogRecord: the record has the request id the engine set, the
// method, the path without query, the status and byte counts; never the
// Authorization header, the query or a body.
func TestAccessLogRecord(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	h := accessLog{log: newLogger(&buf, "json", 0), ioTimeout: time.Minute, next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Request-Id", "req-123")
		w.WriteHeader(201)
		fmt.Fprintf(w, "echo:%s", b)
	})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/x.txt?sig=query-secret", strings.NewReader("body-secret"))
	req.Header.Set("Authorization", "Bearer token-secret")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	srv.Close()
	out := buf.String()
	for _, s := range []string{"query-secret", "body-secret", "token-secret", "Bearer"} {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %q: %s", s, out)
		}
	}
	recs := logRecords(t, out)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1: %s", len(recs), out)
	}
	r := recs[0]
	if r["msg"] != "request" || r["request_id"] != "req-123" || r["method"] != "PUT" || r["path"] != "/v1/storage/files/x.txt" ||
		r["status"] != 201.0 || r["bytes"] != float64(len("echo:body-secret")) || r["bytes_in"] != float64(len("body-secret")) || r["duration"] == nil {
		t.Errorf("record: %v", r)
	}
}

// TestAccessLogPanic: a panicking handler answers 500 without the panic
// value, and the log holds its type, not its value.
func TestAccessLogPanic(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	h := accessLog{log: newLogger(&buf, "json", 0), next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("panic-value-secret")
	})}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") || !strings.Contains(rec.Body.String(), `"internal"`) {
		t.Errorf("response %d %q", rec.Code, rec.Body)
	}
	if strings.Contains(buf.String(), "panic-value-secret") {
		t.Errorf("the log holds the panic value: %s", buf.String())
	}
	recs := logRecords(t, buf.String())
	if len(recs) != 2 || recs[1]["status"] != 500.0 {
		t.Errorf("records: %v", recs)
	}
}

// TestIOTimeout: a body that stalls longer than the io timeout ends the
// request; one that keeps moving may take longer than the timeout in all.
func TestIOTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	type result struct {
		n   int
		err error
	}
	results := make(chan result, 1)
	h := accessLog{log: newLogger(io.Discard, "json", 0), ioTimeout: timeout, next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		results <- result{len(b), err}
		if err == nil {
			w.WriteHeader(204)
		}
	})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	// Moving: 10 chunks 100ms apart (1s in all, over three timeouts), then
	// the last 10 bytes.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 110\r\n\r\n")
	// The longest gap between writes, as sent: on a busy machine a 100ms
	// sleep can take over 300ms, and then the body did stall.
	var gap time.Duration
	last := time.Now()
	for i := 0; i < 11; i++ {
		time.Sleep(100 * time.Millisecond)
		gap = max(gap, time.Since(last))
		conn.Write([]byte("0123456789"))
		last = time.Now()
	}
	if r := <-results; r.err != nil || r.n != 110 {
		if gap < timeout {
			t.Fatalf("a moving body (gaps of %v at most): %d bytes, %v", gap, r.n, r.err)
		}
		t.Logf("a body that stalled %v (a busy machine): %d bytes, %v", gap, r.n, r.err)
	}
	conn.Close()
	// Stalled: 10 of 110 bytes, then nothing.
	conn, err = net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 110\r\n\r\n0123456789")
	select {
	case r := <-results:
		if r.err == nil {
			t.Fatalf("a stalled body was read whole (%d bytes)", r.n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled body was not cut")
	}
	// Cut by the io timeout: not before it, and well before the 5s above
	// (2s of slack for a busy machine to wake the handler).
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Fatalf("the stalled body was cut after %v, want about %v", d, timeout)
	}
}
