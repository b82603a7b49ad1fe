package storage_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestSlowBodies: a JSON body that falls behind Limits.MinBodyRate once
// Limits.BodyGrace has passed is cut off with 400 invalid_request, even
// while it trickles a byte now and then (which a per-read stall timeout
// never ends); a body that keeps its pace, however long it takes, is read.
func TestSlowBodies(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.BodyGrace, c.Limits.MinBodyRate = grace, 1000
	}))
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	addr := srv.HTTP.Listener.Addr().String()

	trickle := strings.Split(strings.Repeat(" ", 60), "")
	for _, tc := range []struct{ method, target, token string }{
		{"PUT", "/v1/storage/kv/k", tok},
		{"PUT", "/v1/storage/db/c/k", tok},
		{"POST", "/v1/storage/db/c/query", tok},
		{"POST", "/v1/oauth/apps", srv.AdminToken},
	} {
		// One byte at the start, then nothing: cut at the grace.
		line, took := sendSlowly(t, addr, tc.method, tc.target, tc.token, []string{"{"}, 0)
		if line != "HTTP/1.1 400 Bad Request" || took > grace+2*time.Second {
			t.Errorf("%s %s, one byte then silence: %q after %v, want 400 soon after %v", tc.method, tc.target, line, took, grace)
		}
		// A byte every 100 ms (10 bytes/s, under the 1000 asked for):
		// cut soon after the grace, although it never stalls.
		line, took = sendSlowly(t, addr, tc.method, tc.target, tc.token, trickle, 100*time.Millisecond)
		if line != "HTTP/1.1 400 Bad Request" || took > grace+2*time.Second {
			t.Errorf("%s %s, trickling: %q after %v, want 400 soon after %v", tc.method, tc.target, line, took, grace)
		}
	}
	// A body that keeps a pace of 5000 bytes/s for 1.2 s, four times the
	// grace, is read whole and answered.
	value := `{"value":"` + strings.Repeat("x", 6000) + `"}`
	var pieces []string
	for i := 0; i < len(value); i += 500 {
		pieces = append(pieces, value[i:min(i+500, len(value))])
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/storage/kv/paced HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", addr, tok, len(value))
	for _, p := range pieces {
		time.Sleep(100 * time.Millisecond)
		if _, err := io.WriteString(conn, p); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	equal(t, "paced body", res.StatusCode, http.StatusNoContent)
}

// TestBodyBudget: the JSON bodies read whole share one memory budget
// (Limits.MaxBodyMemory), a tenant at most a quarter of it. A tenant whose
// bodies hold its share waits, then gets 503; another tenant's requests go
// on at once; the share comes back when the bodies' requests end.
func TestBodyBudget(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxBodyMemory = 4 << 20 // a tenant's share: 1 MiB, that is 512 KiB of buffers
		c.BackendTimeout = timeout
	}))
	srv.RegisterApp(t, "app-a", allScopes...)
	tokA := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	tokB := srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", Scopes: allScopes})
	addr := srv.HTTP.Listener.Addr().String()

	// A body of tenant t1 that announces 600 KiB and stops after 300 KiB:
	// its buffer has grown to 512 KiB, twice that reserved: t1's share.
	var conns []net.Conn
	for i := 0; i < 1; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, "PUT /v1/storage/kv/big%d HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", i, addr, tokA, 600<<10)
		if _, err := io.WriteString(conn, `{"value":"`+strings.Repeat("x", 300<<10)); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	small := func(tok string) resp {
		return do(t, srv, "PUT", "/v1/storage/kv/small", tok, `{"value":"`+strings.Repeat("y", 100<<10)+`"}`)
	}
	// t1 waits for its own share, then 503; eventually, as the stalled
	// bodies take a moment to arrive.
	eventually(t, 10*time.Second, func() bool {
		return small(tokA).status == http.StatusServiceUnavailable
	})
	// t2 is not held back by t1's bodies.
	start := time.Now()
	wantStatus(t, small(tokB), http.StatusNoContent, "")
	if took := time.Since(start); took > timeout/2 {
		t.Fatalf("tenant t2 waited %v behind t1's bodies", took)
	}
	// The stalled requests end: t1's share comes back.
	for _, c := range conns {
		c.Close()
	}
	eventually(t, 10*time.Second, func() bool { return small(tokA).status == http.StatusNoContent })
}

// TestSlowBodiesWithoutReadDeadlines: behind a middleware whose
// ResponseWriter cannot set the connection's read deadline (no Unwrap), a
// trickling body is still answered 400 soon after the grace, once its next
// byte comes: net/http reads what a handler left of a body before it
// writes the answer, and used to wait there for the rest of the trickle
// (here for ever: the last byte never comes) before the 400 went out.
func TestSlowBodiesWithoutReadDeadlines(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.BodyGrace, c.Limits.MinBodyRate = grace, 1000
	}))
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
	wrapped := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Engine.ServeHTTP(opaqueWriter{w}, r)
	}))
	defer wrapped.Close()
	addr := wrapped.Listener.Addr().String()
	trickle := strings.Split(strings.Repeat(" ", 60), "")
	for _, tc := range []struct{ method, target, token string }{
		{"PUT", "/v1/storage/kv/k", tok},
		{"POST", "/v1/oauth/apps", srv.AdminToken},
	} {
		line, took := sendSlowly(t, addr, tc.method, tc.target, tc.token, trickle, 100*time.Millisecond)
		if line != "HTTP/1.1 400 Bad Request" || took > grace+2*time.Second {
			t.Errorf("%s %s, trickling, no read deadlines: %q after %v, want 400 soon after %v", tc.method, tc.target, line, took, grace)
		}
	}
}

// opaqueWriter hides the ResponseWriter it wraps from
// http.ResponseController, as a middleware without Unwrap does.
type opaqueWriter struct{ w http.ResponseWriter }

func (o opaqueWriter) Header() http.Header         { return o.w.Header() }
func (o opaqueWriter) Write(b []byte) (int, error) { return o.w.Write(b) }
func (o opaqueWriter) WriteHeader(status int)      { o.w.WriteHeader(status) }

// sendSlowly writes a request's head to addr, then its body in pieces,
// waiting every before each piece, and reads the status line; it reports
// how long the answer took. Content-Length counts one byte more than the
// pieces: the last byte never comes.
func sendSlowly(t *testing.T, addr, method, target, token string, pieces []string, every time.Duration) (string, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	length := 0
	for _, p := range pieces {
		length += len(p)
	}
	start := time.Now()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", method, target, addr, token, length+1)
	answered := make(chan string, 1)
	go func() {
		_ = conn.SetReadDeadline(start.Add(10 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- strings.TrimSpace(line)
	}()
	for _, p := range pieces {
		select {
		case line := <-answered:
			return line, time.Since(start)
		case <-time.After(every):
		}
		if _, err := io.WriteString(conn, p); err != nil {
			break // the server closed the connection
		}
	}
	line := <-answered
	return line, time.Since(start)
}
