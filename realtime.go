package storage

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Realtime change feeds (design.md "Realtime change feeds"): a client
// follows a collection, its kv or its files as Server-Sent Events.
//
//	GET /v1/storage/db/{collection}/changes?tier=&key=
//	GET /v1/storage/kv/changes?tier=&prefix=
//	GET /v1/storage/files/changes?tier=&prefix=
//
// with Accept: text/event-stream and the tier's .read scope, authorized
// exactly like a read. Each event is
//
//	id: <opaque position>
//	event: set | delete (documents, kv), write | delete (files), reset
//	data: {"key","value"?,"etag"?,"size"?}
//
// published by the engine after the backend acknowledged the write (see
// the hubs in realtime_hub.go and realtime_redis.go). The stream ends with
// an "error" event when the token expires (the engine's clock) or the app
// no longer declares the scope.
//
// The literal "changes" routes come first in the route table, so a GET of a
// document keyed "changes" (or of the kv key or file path "changes") on
// these paths is a change feed. Such a document, key or file stays
// reachable: its other methods (PUT, DELETE, HEAD, PATCH, POST) are
// unchanged, and a GET with any letter percent-encoded
// (/v1/storage/db/c/%63hanges) is matched against the escaped path, misses
// the literal route and reads it; the clients do that for a key "changes".

// realtimeRoutes binds the change feeds; New puts them before the other
// storage routes.
func (e *Engine) realtimeRoutes() []route {
	return []route{
		{"GET", "/v1/storage/db/{collection}/changes?tier&key", e.changes(e.docFeed)},
		{"GET", "/v1/storage/kv/changes?tier&prefix", e.changes(e.kvFeed)},
		{"GET", "/v1/storage/files/changes?tier&prefix", e.changes(e.fileFeed)},
	}
}

// Defaults of the stream limits (Limits.MaxStreamsPerTenant, MaxStreams).
const (
	defaultMaxStreamsPerTenant = 100
	defaultMaxStreams          = 10000
	// rtHeartbeat is the default interval of heartbeat comments (design:
	// at least every 15 s).
	rtHeartbeat = 10 * time.Second
	// rtCheck is how often a stream checks its token's expiry (on the
	// engine's clock) and the app's scopes (cached for AppCacheTTL).
	rtCheck = time.Second
	// rtWriteTimeout drops a client that takes no bytes for this long.
	rtWriteTimeout = 30 * time.Second
)

// realtime is the engine's change-feed state: its hub, the stream counts
// and the shared tick that wakes every stream for its checks.
type realtime struct {
	hub       rtHub
	heartbeat time.Duration
	check     time.Duration

	mu       sync.Mutex
	total    int
	byTenant map[string]int

	tickMu sync.Mutex
	tickCh chan struct{}
	ticker bool

	// closing is closed by Engine.CloseStreams: every stream ends.
	closing     chan struct{}
	closingOnce sync.Once
	// idle serves the HTTP/1.1 streams without a goroutine each, once
	// they have hijacked their connection (realtime_idle.go).
	idle idleHub
}

// newRealtime picks the hub: in process on the embedded store (shared by
// every engine over the same database), Redis Streams otherwise.
func (e *Engine) newRealtime() *realtime {
	rt := &realtime{heartbeat: rtHeartbeat, check: rtCheck, byTenant: map[string]int{}, closing: make(chan struct{})}
	rt.idle.e = e
	if e.cfg.SQL != nil || e.cfg.Redis == nil {
		rt.hub = memHubFor(e.cfg.SQL)
	} else {
		rt.hub = newRedisHub(e.cfg.Redis, e.cfg.RedisKeyPrefix, e.cfg.BackendTimeout, e.log)
	}
	return rt
}

// tick returns a channel closed at the next check: one timer for all the
// streams of the engine, however many.
func (rt *realtime) tick() <-chan struct{} {
	rt.tickMu.Lock()
	defer rt.tickMu.Unlock()
	if rt.tickCh == nil {
		rt.tickCh = make(chan struct{})
	}
	if !rt.ticker {
		rt.ticker = true
		go func() {
			for {
				time.Sleep(rt.check)
				rt.tickMu.Lock()
				close(rt.tickCh)
				rt.tickCh = make(chan struct{})
				rt.mu.Lock()
				idle := rt.total == 0
				rt.mu.Unlock()
				if idle {
					rt.ticker = false
				}
				rt.tickMu.Unlock()
				if idle {
					return
				}
			}
		}()
	}
	return rt.tickCh
}

// acquire takes a stream slot of the tenant: 429 rate_limited over
// Limits.MaxStreamsPerTenant or Limits.MaxStreams.
func (rt *realtime) acquire(c *call, tenant string, l *Limits) (func(), error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.byTenant[tenant] >= l.MaxStreamsPerTenant || rt.total >= l.MaxStreams {
		c.w.Header().Set("Retry-After", "1")
		return nil, errorf(CodeRateLimited, "too many change streams open: at most %d per tenant and %d per server", l.MaxStreamsPerTenant, l.MaxStreams)
	}
	rt.byTenant[tenant]++
	rt.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			rt.mu.Lock()
			defer rt.mu.Unlock()
			rt.total--
			if rt.byTenant[tenant]--; rt.byTenant[tenant] <= 0 {
				delete(rt.byTenant, tenant)
			}
		})
	}, nil
}

// Topics (see rtHub).
func docTopic(loc, coll string) string { return "d|" + loc + coll }
func kvTopic(loc string) string        { return "k|" + loc }
func fileTopic(loc string) string      { return "f|" + loc }

// feed is what a change stream follows.
type feed struct {
	topic  string
	tier   Tier
	id     Identity
	key    string // documents: only this key, when set
	prefix string // kv, files: only keys with this prefix
	admin  bool   // an admin's stream (admin_browse.go): no token expiry, no app to check
}

func (f *feed) wants(ev *rtEvent) bool {
	switch {
	case ev.typ == "reset":
		return true
	case f.key != "":
		return ev.key == f.key
	default:
		return strings.HasPrefix(ev.key, f.prefix)
	}
}

// changes is the handler of a change feed: build makes the feed in a
// function of its own, then it streams, so what the building needed is off
// the stack while the stream waits (see stream).
func (e *Engine) changes(build func(*call) (*feed, error)) func(*call) error {
	return func(c *call) error {
		f, err := build(c)
		if err != nil {
			return err
		}
		return e.stream(c, f)
	}
}

func (e *Engine) docFeed(c *call) (*feed, error) {
	id, tier, err := e.authorizeCall(c, Read)
	if err != nil {
		return nil, err
	}
	coll := c.params["collection"]
	if err := validCollection(coll); err != nil {
		return nil, err
	}
	key, given, err := queryValue(c.r, "key")
	if err != nil {
		return nil, err
	}
	if given {
		if err := validDocKey(key); err != nil {
			return nil, err
		}
	}
	loc, err := Resolve(id, tier, coll)
	if err != nil {
		return nil, err
	}
	return &feed{topic: docTopic(loc.Prefix, coll), tier: tier, id: id, key: key, admin: c.as != nil}, nil
}

func (e *Engine) kvFeed(c *call) (*feed, error) {
	return e.prefixFeed(c, kvTopic, func(prefix string) error {
		if len(prefix) > maxKVKey || !validText(prefix) {
			return errorf(CodeInvalidRequest, "a kv prefix must be at most %d bytes of UTF-8 without control characters", maxKVKey)
		}
		return nil
	})
}

func (e *Engine) fileFeed(c *call) (*feed, error) {
	return e.prefixFeed(c, fileTopic, checkListPrefix)
}

// prefixFeed is the feed of a whole location, kv's or files' (topic), with
// an optional ?prefix= that check accepts.
func (e *Engine) prefixFeed(c *call, topic func(loc string) string, check func(prefix string) error) (*feed, error) {
	id, tier, err := e.authorizeCall(c, Read)
	if err != nil {
		return nil, err
	}
	prefix, err := queryParam(c.r, "prefix")
	if err != nil {
		return nil, err
	}
	if err := check(prefix); err != nil {
		return nil, err
	}
	loc, err := Resolve(id, tier, "")
	if err != nil {
		return nil, err
	}
	return &feed{topic: topic(loc.Prefix), tier: tier, id: id, prefix: prefix, admin: c.as != nil}, nil
}

// acceptsEventStream reports whether the Accept header lists
// text/event-stream (with a q above 0).
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "text/event-stream" {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// stream serves one change feed until the client leaves, the token
// expires or the app loses the scope.
//
// An idle stream waits on its connection's goroutine under net/http's
// frames, so what its frames hold is what each idle stream's stack costs:
// the garbage collector halves a goroutine's stack only while less than a
// quarter of it is in use. The work is therefore split: openStream (large
// frame) answers and sends what comes first, then returns; the state lives
// in an rtStream on the heap; follow, which waits, keeps a small frame and
// calls out for everything else. With it the stack of an idle stream's
// goroutine shrinks from 16 KiB to 8 KiB (TestRealtimeIdleStreams).
func (e *Engine) stream(c *call, f *feed) error {
	st, err := e.openStream(c, f)
	if st == nil {
		return err
	}
	if e.detach(c, st) {
		return nil // served by the idle scheduler from now on
	}
	defer st.close()
	e.follow(c, st)
	return nil
}

// rtStream is a change feed being served.
type rtStream struct {
	f      *feed
	sub    *rtSub
	w      sseWriter
	sent   rtPos // the newest event sent: live events up to it are repeats
	exp    time.Time
	scope  string
	beats  int // heartbeat every beats ticks
	ticks  int
	finish func()
	// release frees the stream's slot (part of finish).
	release func()
	spare   []*rtEvent // an emptied queue of the hub's, for the next (see pending)
}

// rtSpareQueue is the largest queue of events a stream keeps for reuse.
const rtSpareQueue = 16

func (st *rtStream) close() { st.finish() }

// openStream checks and subscribes, answers 200 and sends the stream's
// start (its reset, or the backlog after Last-Event-ID). A nil stream
// with nil error: the client left meanwhile.
func (e *Engine) openStream(c *call, f *feed) (*rtStream, error) {
	if !acceptsEventStream(c.r) {
		return nil, errorf(CodeInvalidRequest, `this is a change feed: send Accept: text/event-stream (to read a document, kv key or file named "changes", percent-encode a letter of it, such as %%63hanges)`)
	}
	// The token's expiry, for the error event that ends the stream.
	st := &rtStream{f: f, scope: Scope(f.tier, Read)}
	if !f.admin { // an admin's stream: the admin tokens do not expire
		tok, _ := bearer(c.r)
		st.exp = e.verifier.expiry(tok)
	}
	var after *rtPos
	last := c.r.Header.Get("Last-Event-ID")
	resetFirst := false
	if last != "" {
		if p, ok := parsePos(last); ok {
			after = &p
		} else {
			resetFirst = true // not an id this engine gave: re-read
		}
	}
	release, err := e.rt.acquire(c, f.id.Tenant, &e.cfg.Limits)
	if err != nil {
		return nil, err
	}
	ctx, cancel := e.backendCtx(c)
	sub, backlog, tooOld, err := e.rt.hub.subscribe(ctx, f.topic, after)
	cancel()
	if err != nil {
		release()
		return nil, rtUnavailable(err)
	}
	st.sub = sub
	st.release = release
	rc := http.NewResponseController(c.w)
	st.finish = func() {
		sub.done()
		release()
		_ = rc.SetWriteDeadline(time.Time{})
	}
	if after != nil {
		st.sent = *after
	}
	reset := tooOld || resetFirst
	if reset {
		// Continue from the topic's tail: nothing written before the
		// reset comes after it.
		ctx, cancel := e.backendCtx(c)
		st.sent, err = e.rt.hub.resync(ctx, sub)
		cancel()
		if err != nil {
			st.close()
			return nil, rtUnavailable(err)
		}
		backlog = nil
	}

	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	if c.r.ProtoMajor == 1 && c.r.ProtoMinor == 1 {
		// The stream will hijack its connection (realtime_idle.go) and
		// close it after the last chunk: no client may reuse it for
		// another request.
		h.Set("Connection", "close")
	}
	c.w.WriteHeader(http.StatusOK)
	// A stream has no request body and may last hours: no read deadline
	// (a server's, or a middleware's such as httpserver's I/O timeout,
	// would end it); a client that stops taking bytes is dropped by the
	// write deadline of each event instead. Nothing is left behind for a
	// next request on the connection.
	_ = rc.SetReadDeadline(time.Time{})
	st.w = sseWriter{w: c.w, rc: rc}
	st.w.comment("ok")
	if reset {
		st.w.event(st.sent, "reset", []byte("{}"))
	}
	for i := range backlog {
		if f.wants(&backlog[i]) {
			st.w.event(backlog[i].pos, backlog[i].typ, backlog[i].data)
		}
		st.sent = backlog[i].pos
	}
	if st.w.err != nil {
		st.close()
		return nil, nil
	}
	st.beats = max(1, int(e.rt.heartbeat/e.rt.check))
	return st, nil
}

// follow waits for events and ticks until the stream ends. It is the
// frame an idle stream waits in: keep it small (see stream).
func (e *Engine) follow(c *call, st *rtStream) {
	done := c.ctx.Done()
	for {
		select {
		case <-done:
			return
		case <-e.rt.closing:
			return // Engine.CloseStreams: the handler's return ends the stream
		case <-st.sub.wake:
			if !e.pending(c, st) {
				return
			}
		case <-e.rt.tick():
			if !e.checkStream(c, st) {
				return
			}
		}
		if st.w.err != nil {
			return // the client is gone
		}
	}
}

// live sends an event from the hub, unless it was sent already.
func (st *rtStream) live(ev *rtEvent) {
	if st.sent.less(ev.pos) {
		st.sent = ev.pos
		if st.f.wants(ev) {
			st.w.event(ev.pos, ev.typ, ev.data)
		}
	}
}

// pending sends the events the hub queued for the stream. One that fell
// behind by more than its buffer starts over from now, the topic's tail,
// with a reset. false ends the stream: without the tail (the backend
// failed) it ends without a reset, and the client resumes from the last
// event it got.
func (e *Engine) pending(c *call, st *rtStream) bool {
	evs, lagged := st.sub.take(st.spare)
	for _, ev := range evs {
		st.live(ev)
		if st.w.err != nil {
			return false
		}
	}
	// The queue is reused while it is small; a large one (a burst) is
	// let go, so that an idle stream holds none.
	st.spare = nil
	if cap(evs) <= rtSpareQueue {
		clear(evs)
		st.spare = evs[:0]
	}
	if !lagged {
		return true
	}
	ctx, cancel := e.backendCtx(c)
	pos, err := e.rt.hub.resync(ctx, st.sub)
	cancel()
	if err != nil {
		if c.ctx.Err() == nil {
			e.log.Warn("storage: realtime: a stream that fell behind could not start over", "request_id", c.reqID, "err", err)
		}
		return false
	}
	st.sent = pos
	st.w.event(pos, "reset", []byte("{}"))
	return true
}

// checkStream runs at each tick: it ends the stream when its token expired
// or the app lost the scope (false), and sends the heartbeat when due.
func (e *Engine) checkStream(c *call, st *rtStream) bool {
	st.ticks++
	if code, msg := e.streamRevoked(c.ctx, st.f, st.exp, st.scope); code != "" {
		st.w.errorEvent(code, msg)
		return false
	}
	if st.ticks%st.beats == 0 {
		st.w.comment("")
	}
	return true
}

// streamRevoked reports why a stream must end: its token expired (on the
// engine's clock, with the verifier's leeway), or the app no longer
// declares the scope or is gone. A failing registry does not end it.
func (e *Engine) streamRevoked(ctx context.Context, f *feed, exp time.Time, scope string) (Code, string) {
	return e.streamRevokedBy(ctx, f, exp, scope, e.apps.lookup)
}

// streamRevokedBy is streamRevoked with lookup finding the app (the idle
// scheduler's checker shares one lookup between the streams of an app).
func (e *Engine) streamRevokedBy(ctx context.Context, f *feed, exp time.Time, scope string, lookup func(context.Context, string) (App, error)) (Code, string) {
	if f.admin {
		return "", "" // the admin tokens are the engine's configuration
	}
	if !exp.IsZero() && !e.now().Before(exp.Add(e.verifier.leeway)) {
		return CodeInvalidToken, "the token expired: reconnect with a fresh token"
	}
	app, err := lookup(ctx, f.id.App)
	if err != nil {
		if ee := toError(err); ee.Code == CodeInvalidToken {
			return ee.Code, ee.Message
		}
		return "", ""
	}
	if !app.declares(scope) {
		return CodeInvalidScope, "app " + strconv.Quote(f.id.App) + " no longer declares the scope " + scope
	}
	return "", ""
}

// expiry returns the expiry of a token that verify accepted (zero if it
// cannot tell).
func (v *verifier) expiry(raw string) time.Time {
	if v.cache != nil {
		if t, ok := v.cache.Get(tokenSum(raw)); ok {
			return t.exp
		}
	}
	t, err := v.parse(raw)
	if err != nil {
		return time.Time{}
	}
	return t.exp
}

// sseWriter writes Server-Sent Events and flushes each; the first failed
// write is kept in err and ends the stream.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
	err error
}

func (s *sseWriter) flush() {
	if s.err != nil {
		return
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(rtWriteTimeout))
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
	} else if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	s.buf = s.buf[:0]
}

func (s *sseWriter) event(pos rtPos, typ string, data []byte) {
	s.buf = append(s.buf, "id: "...)
	s.buf = append(s.buf, pos.String()...)
	s.buf = append(s.buf, "\nevent: "...)
	s.buf = append(s.buf, typ...)
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	s.flush()
}

func (s *sseWriter) comment(text string) {
	s.buf = append(s.buf, ':')
	if text != "" {
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, text...)
	}
	s.buf = append(s.buf, "\n\n"...)
	s.flush()
}

func (s *sseWriter) errorEvent(code Code, msg string) {
	b, _ := json.Marshal(map[string]string{"error": string(code), "message": msg})
	s.buf = append(s.buf, "event: error\ndata: "...)
	s.buf = append(s.buf, b...)
	s.buf = append(s.buf, "\n\n"...)
	s.flush()
}

// rtUnavailable is a hub failure as the one error type.
func rtUnavailable(err error) error {
	var ee *Error
	if errors.As(err, &ee) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Code: CodeBackendUnavailable, Message: "the client left", Err: err}
	}
	return &Error{Code: CodeBackendUnavailable, Message: "the change feed is unavailable", Err: err, backend: "redis"}
}
