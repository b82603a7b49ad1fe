package storage

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Idle change feeds without a goroutine each (issue 25: 10,000 idle
// streams on one server, under 16 KiB of RSS per stream).
//
// Why: a stream whose handler waits costs net/http about 25 KiB however
// small the engine's own state (TestRealtimeIdleFloor): the connection's
// 4 KiB reader and 4 KiB writer, the response's 2 KiB buffer, the stack
// of the connection's goroutine (8 KiB at least under conn.serve's frame)
// and the goroutine of its background read. A hijacked connection costs
// about 0.4 KiB.
//
// What: once an HTTP/1.1 stream sent its headers, ": ok" and what comes
// first (its reset or its backlog), detach hijacks the connection and the
// handler returns. From then on the stream is an idleStream of a few
// hundred bytes, served by the engine's idleHub:
//
//   - one scheduler goroutine writes the events (the hub signals a stream
//     through rtSub.setNotify instead of a channel) and, on the streams'
//     check tick (realtime.check), the heartbeats; it writes without ever
//     blocking (a non-blocking write on the socket). A client that takes
//     fewer bytes than that, or a connection without a raw socket (TLS,
//     a listener's wrapper), gets the rest written by a goroutine of its
//     own for that write only, with the write deadline of today's streams
//     (rtWriteTimeout): a slow client never holds the others up;
//   - one checker goroutine runs streamRevoked for every stream on the same
//     cadence as a stream's own loop does (realtime.check), apart from the
//     writes, since an expired app cache makes it wait on the registry.
//     The streams of an app share one lookup per round. A registry that
//     stalls delays the next rounds (a round starts at a tick once the
//     last one is done), never the heartbeats or events;
//   - a stream that fell behind is resynced by a goroutine of its own (a
//     backend round trip), then comes back.
//
// The chunked encoding net/http began is continued by hand: each write is
// one chunk, "<hex length>\r\n<data>\r\n", and a clean end (token expired,
// scope lost, a failed resync, Engine.CloseStreams) writes the last chunk
// "0\r\n\r\n" and closes the connection (it cannot go back to net/http
// for another request). A stream whose request was not HTTP/1.1 (HTTP/2
// cannot be hijacked, HTTP/1.0 is not chunked) or whose ResponseWriter
// cannot hijack keeps today's path: a goroutine waiting in follow.
//
// A client that left: without a read on the connection, nothing notices a
// FIN at once. At each check tick the scheduler peeks at the socket
// without blocking (recv MSG_PEEK on unix): end of file or an error ends
// the stream, so a client that closed is seen within realtime.check (1 s
// by default) and its slot is freed then. Under TLS the peek is made on
// the TCP connection beneath: a client whose last bytes were a TLS alert
// (close_notify) looks alive to it until a heartbeat after its FIN draws
// a reset, which the next peek sees: within a heartbeat interval and a
// check (11 s by default). Without any socket (a listener's own conn
// type) a client that left is seen when a write fails, within two
// heartbeat intervals. A peer that vanished without a FIN is seen when a
// write stalls for rtWriteTimeout, as before.
//
// What it costs: the stream's metrics (requests_total, the duration) and
// the access log line of a middleware implementing StreamDetacher are
// recorded when the stream really ends, with its whole duration and
// bytes. A pipelined request after the stream's on the same connection is
// never answered (it never was: the stream does not end by itself).
//
// Shutdown: Engine.CloseStreams ends every stream, this path's and the
// goroutines', with the last chunk, so that the clients resume elsewhere
// with Last-Event-ID.

// StreamDetacher is implemented by a ResponseWriter of a middleware (found
// through the Unwrap chain) that records a request when its handler
// returns, such as an access log. A change feed that takes its connection
// over returns at once and serves the stream without the request's
// goroutine; it calls DetachStream just after the hijack, and the function
// it returns once the stream really ended, with the bytes of the response
// body written since the hijack. The middleware then records the request
// at that call instead of at the handler's return.
type StreamDetacher interface {
	DetachStream() (end func(bytesAfter int64))
}

// CloseStreams ends the engine's change feeds, as a graceful shutdown
// does: each gets the last chunk of its response (or, over HTTP/2, its
// handler returns), so its client resumes with Last-Event-ID. It returns
// once the streams served by the idle scheduler have ended or ctx is done;
// the others end as their handlers return (http.Server.Shutdown waits for
// them). Streams opened afterwards end at once.
func (e *Engine) CloseStreams(ctx context.Context) error {
	e.rt.closingOnce.Do(func() { close(e.rt.closing) })
	h := &e.rt.idle
	h.mu.Lock()
	h.closing = true
	for st := range h.streams {
		if st.why == nil {
			st.why = endClean
		}
		h.enqueueLocked(st)
	}
	h.mu.Unlock()
	h.signal()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		n := len(h.streams)
		h.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// idleHub serves the hijacked streams of an engine.
type idleHub struct {
	e *Engine

	mu       sync.Mutex
	streams  map[*idleStream]struct{}
	ready    []*idleStream // streams with something to do, in order
	running  bool          // the scheduler runs (while streams exist)
	checking bool          // the checker runs; checkBuf is its
	closing  bool          // CloseStreams was called
	checkBuf []*idleStream
	wake     chan struct{} // a token: ready is not empty
	// handoffs counts the writes and resyncs given a goroutine (tests).
	handoffs atomic.Int64

	// The scheduler's own (no lock).
	batch []*idleStream
	snap  []*idleStream
	sse   []byte
	out   []byte
}

// idleStream is a hijacked change feed.
type idleStream struct {
	h     *idleHub
	f     *feed
	sub   *rtSub
	conn  net.Conn
	raw   syscall.RawConn // conn's socket, for non-blocking writes; nil: none
	peek  syscall.RawConn // the socket to peek at (raw, or under TLS); nil: none
	sent  rtPos
	exp   time.Time
	scope string
	beat  time.Time // the next heartbeat is due
	bytes int64     // of the body since the hijack, for the metrics and log
	ended func(bytesAfter int64)

	// Guarded by h.mu.
	queued bool   // in h.ready
	busy   bool   // a goroutine of its own writes or resyncs for it
	done   bool   // ended: out of h.streams
	why    *Error // set: end with this error event (no code: the last chunk only)
	gone   bool   // close the connection now (the client left, or the last chunk was written)
}

// endClean ends a stream with its last chunk and no error event.
var endClean = &Error{}

// detach hands an HTTP/1.1 stream that started well over to the idle
// scheduler: false keeps it on the request's goroutine. It stays out of
// stream's frame (see stream).
//
//go:noinline
func (e *Engine) detach(c *call, st *rtStream) bool {
	if c.r.ProtoMajor != 1 || c.r.ProtoMinor != 1 || st.w.err != nil {
		return false
	}
	conn, _, err := st.w.rc.Hijack()
	if err != nil {
		return false // the writer cannot hijack (a test's recorder, HTTP/2)
	}
	h := &e.rt.idle
	is := &idleStream{h: h, f: st.f, sub: st.sub, conn: conn, sent: st.sent, exp: st.exp, scope: st.scope,
		beat: time.Now().Add(e.rt.heartbeat)}
	if sc, ok := conn.(syscall.Conn); ok && idleRawIO {
		is.raw, _ = sc.SyscallConn()
		is.peek = is.raw
	} else if tc, ok := conn.(*tls.Conn); ok && idleRawIO {
		if sc, ok := tc.NetConn().(syscall.Conn); ok {
			is.peek, _ = sc.SyscallConn()
		}
	}

	// What records the request once the stream ends.
	var logEnds []func(int64)
	for w := c.w; w != nil; {
		if d, ok := w.(StreamDetacher); ok {
			logEnds = append(logEnds, d.DetachStream())
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	c.detached = true
	release, m, rt, start, before := st.release, e.metrics, c.rt, c.start, c.mw.bytes
	is.ended = func(after int64) {
		release()
		if m != nil && rt != nil {
			m.routed(rt, time.Since(start).Seconds(), http.StatusOK, 0, before+after)
		}
		for _, end := range logEnds {
			end(after)
		}
	}
	h.add(is)
	return true
}

// add registers a stream, starts the scheduler if it was not running and
// routes the hub's signal to it.
func (h *idleHub) add(st *idleStream) {
	h.mu.Lock()
	if h.streams == nil {
		h.streams = map[*idleStream]struct{}{}
		h.wake = make(chan struct{}, 1)
	}
	h.streams[st] = struct{}{}
	if h.closing {
		st.why = endClean
		h.enqueueLocked(st)
	}
	if !h.running {
		h.running = true
		go h.run(h.e.rt.check, h.wake)
	}
	h.mu.Unlock()
	st.sub.setNotify(func() { h.enqueue(st) })
	h.signal()
}

func (h *idleHub) enqueue(st *idleStream) {
	h.mu.Lock()
	h.enqueueLocked(st)
	wake := h.wake
	h.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

func (h *idleHub) enqueueLocked(st *idleStream) {
	if !st.queued && !st.done {
		st.queued = true
		h.ready = append(h.ready, st)
	}
}

func (h *idleHub) signal() {
	h.mu.Lock()
	wake := h.wake
	h.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// run is the scheduler: it serves the ready streams as they are signalled
// and, at each check tick, peeks at every stream, sends the heartbeats due
// and starts the checker. It returns once no stream is left.
func (h *idleHub) run(check time.Duration, wake chan struct{}) {
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-wake:
			h.serveReady()
		case now := <-t.C:
			h.serveReady()
			if !h.tick(now) {
				return
			}
		}
	}
}

// serveReady serves the streams signalled since the last time.
func (h *idleHub) serveReady() {
	h.mu.Lock()
	batch := append(h.batch[:0], h.ready...)
	clear(h.ready)
	h.ready = h.ready[:0]
	for i, st := range batch {
		st.queued = false
		if st.busy || st.done {
			batch[i] = nil // it is signalled again when its goroutine is done
		}
	}
	h.mu.Unlock()
	for i, st := range batch {
		if st == nil {
			continue
		}
		h.mu.Lock()
		why, gone := st.why, st.gone
		h.mu.Unlock()
		switch {
		case gone:
			h.end(st, nil)
		case why != nil:
			h.end(st, why)
		default:
			h.pending(st)
		}
		batch[i] = nil
	}
	h.batch = batch[:0]
	// A burst's buffers are not kept.
	if cap(h.sse) > rtWriteStep {
		h.sse = nil
	}
	if cap(h.out) > rtWriteStep {
		h.out = nil
	}
}

// pending sends the events queued for st, as realtime.go's pending does.
func (h *idleHub) pending(st *idleStream) {
	evs, lagged := st.sub.take(nil)
	h.sse = h.sse[:0]
	for _, ev := range evs {
		if st.sent.less(ev.pos) {
			st.sent = ev.pos
			if st.f.wants(ev) {
				h.sse = appendEvent(h.sse, ev.pos, ev.typ, ev.data)
			}
		}
	}
	if lagged {
		h.resync(st, h.sse)
		return
	}
	if len(h.sse) > 0 {
		h.write(st, h.sse, false)
	}
}

// tick peeks at every stream not busy, writes the heartbeats due and
// starts the checker; false once no stream is left (the scheduler ends).
func (h *idleHub) tick(now time.Time) bool {
	h.mu.Lock()
	if len(h.streams) == 0 && len(h.ready) == 0 {
		h.running = false
		h.mu.Unlock()
		return false
	}
	snap := h.snap[:0]
	for st := range h.streams {
		if !st.busy {
			snap = append(snap, st)
		}
	}
	if !h.checking {
		h.checking = true
		list := h.checkBuf[:0]
		for st := range h.streams {
			list = append(list, st)
		}
		h.checkBuf = nil
		go h.check(list)
	}
	h.mu.Unlock()
	hb := h.e.rt.heartbeat
	for i, st := range snap {
		snap[i] = nil
		if idlePeerGone(st.peek) {
			h.end(st, nil)
			continue
		}
		if !now.Before(st.beat) {
			st.beat = st.beat.Add(hb)
			if st.beat.Before(now) {
				st.beat = now.Add(hb)
			}
			h.sse = append(h.sse[:0], ":\n\n"...)
			h.write(st, h.sse, false)
		}
	}
	h.snap = snap[:0]
	return true
}

// check runs streamRevoked for each stream of list (the checker): a
// stream revoked is given its error event and signalled. The streams of
// an app share one lookup of it per round: a round costs a lookup per
// app, not per stream, even without an app cache (AppCacheTTL < 0).
func (h *idleHub) check(list []*idleStream) {
	type found struct {
		app App
		err error
	}
	apps := map[string]found{}
	lookup := func(ctx context.Context, id string) (App, error) {
		r, ok := apps[id]
		if !ok {
			r.app, r.err = h.e.apps.lookup(ctx, id)
			apps[id] = r
		}
		return r.app, r.err
	}
	for i, st := range list {
		list[i] = nil
		if code, msg := h.e.streamRevokedBy(context.Background(), st.f, st.exp, st.scope, lookup); code != "" {
			h.mu.Lock()
			if st.why == nil {
				st.why = &Error{Code: code, Message: msg}
			}
			h.enqueueLocked(st)
			h.mu.Unlock()
			h.signal()
		}
	}
	h.mu.Lock()
	h.checking = false
	h.checkBuf = list[:0]
	h.mu.Unlock()
}

// write sends data (SSE text) to st as one chunk, and with last the last
// chunk, without blocking: what the socket does not take at once is
// written by a goroutine of st's own. data is not retained.
func (h *idleHub) write(st *idleStream, data []byte, last bool) {
	out := h.out[:0]
	if len(data) > 0 {
		out = strconv.AppendInt(out, int64(len(data)), 16)
		out = append(out, "\r\n"...)
		out = append(out, data...)
		out = append(out, "\r\n"...)
	}
	if last {
		out = append(out, "0\r\n\r\n"...)
	}
	h.out = out
	n, err := idleTryWrite(st.raw, out)
	if err != nil {
		h.finish(st) // the client is gone
		return
	}
	if n == len(out) {
		st.bytes += int64(len(data))
		if last {
			h.finish(st)
		}
		return
	}
	rest := append([]byte(nil), out[n:]...)
	h.handoff(st, func() bool {
		if !st.writeAll(rest) {
			return false
		}
		st.bytes += int64(len(data))
		return true
	}, last)
}

// rtWriteStep is what writeAll writes under one write deadline.
const rtWriteStep = 64 << 10

// writeAll writes b, blocking: a client that takes no bytes of a step for
// rtWriteTimeout is dropped (false), as sseWriter drops one that takes no
// event for as long, however much is pending.
func (st *idleStream) writeAll(b []byte) bool {
	for len(b) > 0 {
		step := b[:min(len(b), rtWriteStep)]
		_ = st.conn.SetWriteDeadline(time.Now().Add(rtWriteTimeout))
		if _, err := st.conn.Write(step); err != nil {
			return false
		}
		b = b[len(step):]
	}
	return true
}

// resync starts a stream that fell behind over from the topic's tail, on
// a goroutine of its own (a backend round trip): the events before it
// (sse) are sent, then the reset. Without the tail the stream ends with
// its last chunk, and the client resumes from the last event it got.
func (h *idleHub) resync(st *idleStream, sse []byte) {
	before := append([]byte(nil), sse...)
	h.handoff(st, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), h.e.cfg.BackendTimeout)
		pos, err := h.e.rt.hub.resync(ctx, st.sub)
		cancel()
		if err != nil {
			h.e.log.Warn("storage: realtime: a stream that fell behind could not start over", "err", err)
			h.mu.Lock()
			if st.why == nil {
				st.why = endClean
			}
			h.mu.Unlock()
			return true
		}
		st.sent = pos
		data := appendEvent(before, pos, "reset", []byte("{}"))
		chunk := strconv.AppendInt(nil, int64(len(data)), 16)
		chunk = append(chunk, "\r\n"...)
		chunk = append(chunk, data...)
		chunk = append(chunk, "\r\n"...)
		if !st.writeAll(chunk) {
			return false
		}
		st.bytes += int64(len(data))
		return true
	}, false)
}

// handoff runs f for st on a goroutine of its own; the scheduler leaves st
// alone meanwhile. f's false: the client is gone. last: the stream ends
// after f.
func (h *idleHub) handoff(st *idleStream, f func() bool, last bool) {
	h.mu.Lock()
	st.busy = true
	h.mu.Unlock()
	h.handoffs.Add(1)
	go func() {
		ok := f()
		h.mu.Lock()
		st.busy = false
		if !ok || last {
			// The client is gone, or the last chunk was written: the
			// scheduler closes the connection.
			st.gone = true
		}
		h.enqueueLocked(st)
		h.mu.Unlock()
		h.signal()
	}()
}

// end ends st: with why, its error event (if why has a code) and the last
// chunk; without, the connection is closed (the client is gone).
func (h *idleHub) end(st *idleStream, why *Error) {
	if why == nil {
		h.finish(st)
		return
	}
	h.sse = h.sse[:0]
	if why.Code != "" {
		h.sse = appendErrorEvent(h.sse, why.Code, why.Message)
	}
	h.write(st, h.sse, true)
}

// finish closes st's connection and lets everything it held go: its
// subscription, its slot, and records the request.
func (h *idleHub) finish(st *idleStream) {
	h.mu.Lock()
	if st.done {
		h.mu.Unlock()
		return
	}
	st.done = true
	delete(h.streams, st)
	h.mu.Unlock()
	_ = st.conn.Close()
	st.sub.done()
	st.ended(st.bytes)
}

// appendEvent appends an event as sseWriter.event writes it.
func appendEvent(b []byte, pos rtPos, typ string, data []byte) []byte {
	b = append(b, "id: "...)
	b = append(b, pos.String()...)
	b = append(b, "\nevent: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// appendErrorEvent appends an error event as sseWriter.errorEvent writes it.
func appendErrorEvent(b []byte, code Code, msg string) []byte {
	j, _ := json.Marshal(map[string]string{"error": string(code), "message": msg})
	b = append(b, "event: error\ndata: "...)
	b = append(b, j...)
	return append(b, "\n\n"...)
}
