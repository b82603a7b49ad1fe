package storage_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestRealtimeCloseStreams: Engine.CloseStreams ends an open feed cleanly
// (the last chunk: the client reads io.EOF) and returns once it ended.
func TestRealtimeCloseStreams(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		s := follow(t, srv, "/v1/storage/kv/changes", tok, "")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Engine.CloseStreams(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.nextErr(); err != io.EOF {
			t.Fatalf("after CloseStreams: %v, want io.EOF", err)
		}
	})
}

// TestRealtimeHijackedMetrics: a hijacked stream is counted in
// requests_total once, when it ends (its client left), not when its
// handler returned.
func TestRealtimeHijackedMetrics(t *testing.T) {
	t.Parallel()
	srv, reg := metricsServer(t, nil)
	storage.SetRealtimeIntervals(srv.Engine, 10*time.Second, 20*time.Millisecond)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	const key = "code=200,method=GET,route=/v1/storage/kv/changes"
	s := follow(t, srv, "/v1/storage/kv/changes", tok, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"one"}`), 204, "")
	s.expect(`set {"key":"k","value":"one"}`)
	if n := storage.RealtimeHijacked(srv.Engine); n != 1 {
		t.Fatalf("%d streams hijacked, want 1 (HTTP/1.1)", n)
	}
	if got := series(t, reg, "cpod_storage_requests_total")[key]; got != 0 {
		t.Fatalf("an open stream counted %v times", got)
	}
	s.close()
	deadline := time.Now().Add(5 * time.Second)
	for series(t, reg, "cpod_storage_requests_total")[key] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream was not counted 5 s after its client left: %v", series(t, reg, "cpod_storage_requests_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantSeries(t, series(t, reg, "cpod_storage_request_duration_seconds"), "method=GET,route=/v1/storage/kv/changes", 1)
}

// TestRealtimeSlowClient: a hijacked stream whose client stops reading
// does not hold the others up: its writes go to a goroutine of its own
// (6 MB of events, more than the socket buffers take), and once the
// client reads again it gets a well-formed chunked response: events in
// order, a reset where it fell behind (more than rtSubBuffer events
// pending), and the events after it.
func TestRealtimeSlowClient(t *testing.T) {
	t.Parallel()
	srv := rtServer(t, cpodtest.WithSQLite())
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	addr := strings.TrimPrefix(srv.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(conn, "GET /v1/storage/kv/changes HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", addr, tok)
	rd := bufio.NewReaderSize(conn, 512)
	if err := idleHeader(rd); err != nil {
		t.Fatal(err)
	}
	fast := follow(t, srv, "/v1/storage/kv/changes", tok, "")

	const n = 400
	value := strings.Repeat("v", 15<<10)
	handoffs := storage.RealtimeHandoffs(srv.Engine)
	// Written by 8 clients at once: the events come in the order of the
	// fast stream, which the slow one must follow.
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				wantStatus(t, do(t, srv, "PUT", fmt.Sprintf("/v1/storage/kv/k%03d", i), tok, map[string]any{"value": value}), 204, "")
			}
		}()
	}
	order := map[string]int{} // key: its place on the fast stream
	for i := range n {
		order[fast.next().key()] = i
	}
	wg.Wait()
	t.Logf("%d writes of %d KiB and their events in %v", n, len(value)>>10, time.Since(start).Round(time.Millisecond))
	if len(order) != n {
		t.Fatalf("the fast stream got %d keys of %d", len(order), n)
	}
	if storage.RealtimeHandoffs(srv.Engine) == handoffs {
		t.Fatal("the slow client's socket took every write: the test did not stall it")
	}
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/last", tok, `{"value":"last"}`), 204, "")
	// The slow client reads now.
	body := bufio.NewReader(httputil.NewChunkedReader(rd))
	next, events, resets := 0, 0, 0
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			t.Fatalf("slow stream after %d events and %d resets: %v", events, resets, err)
		}
		if line == "event: reset\n" {
			resets++
		}
		k, ok := strings.CutPrefix(line, "data: ")
		if !ok || k == "{}\n" {
			continue
		}
		if strings.HasPrefix(k, `{"key":"last"`) {
			break
		}
		var key string
		if _, err := fmt.Sscanf(k, `{"key":"k%03s"`, &key); err != nil {
			t.Fatalf("slow stream: %.40s", k)
		}
		i, ok := order["k"+key]
		if !ok || i < next {
			t.Fatalf("slow stream: %.40s after %d events", k, events)
		}
		if i > next && resets == 0 {
			t.Fatalf("slow stream: %.40s skips events without a reset", k)
		}
		next, events = i+1, events+1
	}
	t.Logf("slow stream: %d of %d events, %d resets, %d writes given a goroutine", events, n, resets, storage.RealtimeHandoffs(srv.Engine)-handoffs)
}

// TestRealtimeHTTP2: over HTTP/2, which cannot hijack, a feed keeps its
// goroutine: events reach it, and CloseStreams ends it cleanly.
func TestRealtimeHTTP2(t *testing.T) {
	t.Parallel()
	srv := rtServer(t, cpodtest.WithSQLite())
	h2 := httptest.NewUnstartedServer(srv.Engine)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	req, _ := http.NewRequest("GET", h2.URL+"/v1/storage/kv/changes", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	res, err := h2.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.ProtoMajor != 2 || res.StatusCode != 200 {
		t.Fatalf("%s %d, want HTTP/2 200", res.Proto, res.StatusCode)
	}
	s := &sseStream{t: t, res: res, rd: bufio.NewReader(res.Body), cancel: func() {}}
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v"}`), 204, "")
	s.expect(`set {"key":"k","value":"v"}`)
	if n := storage.RealtimeHijacked(srv.Engine); n != 0 {
		t.Fatalf("%d streams hijacked over HTTP/2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Engine.CloseStreams(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.nextErr(); err != io.EOF {
		t.Fatalf("after CloseStreams: %v, want io.EOF", err)
	}
}

// TestRealtimeTLS: over HTTP/1.1 with TLS a feed is hijacked too (every
// write of it goes through a goroutine of its own: no raw socket), gets
// its events, and its slot comes back once its client left (seen at a
// heartbeat at the latest).
func TestRealtimeTLS(t *testing.T) {
	t.Parallel()
	srv := rtServer(t, cpodtest.WithSQLite())
	storage.SetRealtimeIntervals(srv.Engine, 300*time.Millisecond, 20*time.Millisecond)
	ts := httptest.NewUnstartedServer(srv.Engine)
	ts.StartTLS()
	defer ts.Close()
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	req, _ := http.NewRequest("GET", ts.URL+"/v1/storage/kv/changes", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.ProtoMajor != 1 || res.TLS == nil || res.StatusCode != 200 {
		t.Fatalf("%s %d (TLS %v), want HTTP/1.1 200 over TLS", res.Proto, res.StatusCode, res.TLS != nil)
	}
	s := &sseStream{t: t, res: res, rd: bufio.NewReader(res.Body), cancel: func() {}}
	handoffs := storage.RealtimeHandoffs(srv.Engine)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v"}`), 204, "")
	s.expect(`set {"key":"k","value":"v"}`)
	if n := storage.RealtimeHijacked(srv.Engine); n != 1 {
		t.Fatalf("%d streams hijacked, want 1", n)
	}
	if storage.RealtimeHandoffs(srv.Engine) == handoffs {
		t.Fatal("a TLS stream's event was written without a goroutine")
	}
	res.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for storage.RealtimeHijacked(srv.Engine) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream still runs 5 s after its client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
