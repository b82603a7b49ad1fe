package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
)

// newLogger makes the server's logger: text or JSON on w.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// maxLoggedPath caps the path in an access log line.
const maxLoggedPath = 512

// signedPathPrefixes are the routes whose path carries a signature: only the
// prefix is logged, never what follows it.
var signedPathPrefixes = []string{
	"/v1/storage/signed/",
}

// loggedPath is the request path as logged: escaped, without the query (which
// may carry a signature), without anything after a signed route's prefix, and
// capped in length.
func loggedPath(r *http.Request) string {
	p := r.URL.EscapedPath()
	for _, prefix := range signedPathPrefixes {
		if strings.HasPrefix(p, prefix) {
			return prefix + "[redacted]"
		}
	}
	if len(p) > maxLoggedPath {
		p = p[:maxLoggedPath] + "..."
	}
	return p
}

// accessLog logs one line per request: request id, method, path without
// query, status, bytes and duration; never a header, a query or a body. It
// also keeps transfers moving: a body read or a response write that stalls
// longer than ioTimeout ends the connection, however long the whole transfer
// takes.
type accessLog struct {
	next      http.Handler
	log       *slog.Logger
	ioTimeout time.Duration
}

func (a accessLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := http.NewResponseController(w)
	rw := &responseWriter{ResponseWriter: w, rc: rc, ioTimeout: a.ioTimeout}
	body := &bodyReader{rc: rc, ioTimeout: a.ioTimeout}
	if r.Body != nil && r.Body != http.NoBody {
		// The handler gets a shallow copy with the counting body; the
		// server's own *http.Request keeps its body. net/http decides
		// after the handler, from the type and state of that body, whether
		// to answer at once and close the connection (a large unread
		// body) or to read the rest first; with a foreign body type it
		// always reads, and a client that declared 6 GiB and stopped
		// sending got its 413 only after the io timeout.
		body.ReadCloser = r.Body
		r = r.WithContext(r.Context())
		r.Body = body
	}
	// A change feed that takes its connection over (storage.StreamDetacher)
	// is logged when the stream ends, with its whole duration and bytes.
	rw.detach = func() func(int64) {
		reqID, method, path := w.Header().Get("X-Request-Id"), r.Method, loggedPath(r)
		status, before, bytesIn := rw.status, rw.bytes, body.n.Load()
		if status == 0 {
			status = http.StatusOK
		}
		log := a.log
		return func(after int64) {
			log.LogAttrs(context.Background(), slog.LevelInfo, "request",
				slog.String("request_id", reqID),
				slog.String("method", method),
				slog.String("path", path),
				slog.Int("status", status),
				slog.Int64("bytes", before+after),
				slog.Int64("bytes_in", bytesIn),
				slog.Duration("duration", time.Since(start)),
			)
		}
	}
	if a.ioTimeout > 0 {
		deadline := start.Add(a.ioTimeout)
		_ = rc.SetReadDeadline(deadline)
		_ = rc.SetWriteDeadline(deadline)
	}
	defer func() {
		p := recover()
		if p != nil {
			if p == http.ErrAbortHandler {
				rw.aborted = true
			} else {
				a.log.Error("handler panic", "request_id", w.Header().Get("X-Request-Id"), "panic_type", typeName(p), "stack", string(debug.Stack()))
				if rw.status == 0 {
					w.Header().Set("Content-Type", "application/json")
					rw.WriteHeader(http.StatusInternalServerError)
					_, _ = io.WriteString(rw, `{"error":"internal","message":"internal error"}`+"\n")
				}
			}
		}
		if p == nil && rw.detached {
			return // logged when the stream ends (see rw.detach)
		}
		status := rw.status
		if status == 0 {
			status = http.StatusOK
		}
		level := slog.LevelInfo
		if status >= 500 || rw.aborted {
			level = slog.LevelWarn
		}
		a.log.LogAttrs(r.Context(), level, "request",
			slog.String("request_id", w.Header().Get("X-Request-Id")),
			slog.String("method", r.Method),
			slog.String("path", loggedPath(r)),
			slog.Int("status", status),
			slog.Int64("bytes", rw.bytes),
			slog.Int64("bytes_in", body.n.Load()),
			slog.Duration("duration", time.Since(start)),
		)
		if rw.aborted {
			panic(http.ErrAbortHandler)
		}
	}()
	a.next.ServeHTTP(rw, r)
}

// typeName names the type of a panic value; the value itself may hold data.
func typeName(v any) string { return fmt.Sprintf("%T", v) }

// responseWriter records the status and the bytes written, and pushes the
// write deadline forward while the response keeps moving.
type responseWriter struct {
	http.ResponseWriter
	rc         *http.ResponseController
	ioTimeout  time.Duration
	status     int
	bytes      int64
	lastExtend time.Time
	aborted    bool
	// detach makes the function that logs a detached stream's request;
	// detached: the handler's return is not logged.
	detach   func() func(int64)
	detached bool
}

// DetachStream implements storage.StreamDetacher: a change feed took the
// connection over, the line is logged when the stream ends.
func (w *responseWriter) DetachStream() func(int64) {
	w.detached = true
	return w.detach()
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.ioTimeout > 0 {
		if now := time.Now(); now.Sub(w.lastExtend) > w.ioTimeout/8 {
			w.lastExtend = now
			_ = w.rc.SetWriteDeadline(now.Add(w.ioTimeout))
		}
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets handlers stream; Unwrap lets http.ResponseController reach the
// connection.
func (w *responseWriter) Flush()                      { _ = w.rc.Flush() }
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bodyReader counts the body's bytes and pushes the read deadline forward
// while the body keeps arriving.
type bodyReader struct {
	io.ReadCloser
	rc         *http.ResponseController
	ioTimeout  time.Duration
	n          atomic.Int64
	lastExtend time.Time
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.ioTimeout > 0 {
		if now := time.Now(); now.Sub(b.lastExtend) > b.ioTimeout/8 {
			b.lastExtend = now
			_ = b.rc.SetReadDeadline(now.Add(b.ioTimeout))
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
