package storage

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The change feeds (realtime.go) carry events through a hub: the engine
// publishes an event on a topic after the backend acknowledged a write, and
// every stream that follows the topic receives it. A topic is one location
// and collection: "d|" + location prefix + collection for documents, "k|" +
// location prefix for kv, "f|" + location prefix for files (see
// docTopic, kvTopic, fileTopic). A stream follows exactly one topic, so it
// never sees another location's or collection's events.
//
// Two hubs implement it: memHub, in process, for the embedded store (every
// engine over the same *sql.DB shares one: one process owns the data
// directory), and redisHub, over Redis Streams, which carries events
// between replicas (realtime_redis.go).
//
// Both keep a topic's events only while the topic is watched: from its
// first subscriber until rtRetention after its last one left. A write to a
// topic nobody watched in that time costs nothing and stores nothing, which
// is also why an id from before that is answered with reset.
type rtHub interface {
	// publish records an event after the write was acknowledged. Errors
	// are logged by the caller: the write itself succeeded.
	publish(ctx context.Context, topic, typ, key string, data []byte) error
	// reset records a reset on every watched topic under the location
	// prefix (the admin erase), of every kind.
	reset(ctx context.Context, prefix string) error
	// subscribe follows topic. With after, the events after it come back
	// as backlog, or tooOld when the hub no longer has all of them.
	subscribe(ctx context.Context, topic string, after *rtPos) (s *rtSub, backlog []rtEvent, tooOld bool, err error)
	// resync starts s over from the topic's tail, for a reset: what s has
	// buffered is dropped and no event at or before the returned position
	// (the reset's id) reaches it afterwards. Called by the stream (tooOld,
	// an id it did not give, or s lagged).
	resync(ctx context.Context, s *rtSub) (rtPos, error)
}

// Retention and buffers.
const (
	rtRetainEvents = 1000             // at least this many events per topic
	rtRetention    = 10 * time.Minute // and kept this long after the last stream left
	rtSubBuffer    = 256              // events pending per stream before it is reset
	// rtMaxInlineValue is the largest value an event carries: a document
	// or kv value over it is sent without "value" (the client reads it),
	// so that the retained events of a topic stay small.
	rtMaxInlineValue = 16 << 10
)

// rtPos is an event's position in its topic: comparable, and printed as
// the opaque SSE id "a-b" (Redis stream ids have this form; the memory hub
// uses its epoch and a sequence).
type rtPos struct{ a, b uint64 }

func (p rtPos) String() string {
	return strconv.FormatUint(p.a, 10) + "-" + strconv.FormatUint(p.b, 10)
}

func (p rtPos) less(q rtPos) bool { return p.a < q.a || (p.a == q.a && p.b < q.b) }

// parsePos reads an id printed by rtPos.String.
func parsePos(s string) (rtPos, bool) {
	as, bs, ok := strings.Cut(s, "-")
	if !ok {
		return rtPos{}, false
	}
	a, err1 := strconv.ParseUint(as, 10, 64)
	b, err2 := strconv.ParseUint(bs, 10, 64)
	return rtPos{a, b}, err1 == nil && err2 == nil
}

// rtEvent is one event of a topic.
type rtEvent struct {
	pos  rtPos
	typ  string // set, delete, write or reset
	key  string
	data []byte // the JSON of the data line
}

// rtTopic is a topic with streams in this process.
type rtTopic struct {
	name string
	mu   sync.Mutex
	subs map[*rtSub]struct{}
	last rtPos     // the newest event delivered (or, before any, the start)
	left time.Time // when the last stream left; zero while one follows

	// memHub: the retained events (a ring), and floor: no id below it
	// can resume (the topic's start, or the newest event dropped).
	ring  []rtEvent
	head  int
	floor rtPos

	// redisHub: one reader per topic and process.
	ready    chan struct{} // closed once last is known
	initErr  error
	fetching bool
	dirty    bool
}

// rtSub is one stream's subscription. Its pending events are a queue
// that grows as events come and is handed over whole to the stream, so an
// idle stream holds no buffer (a channel of rtSubBuffer pointers cost each
// stream 2 KiB, idle or not).
type rtSub struct {
	t    *rtTopic
	wake chan struct{} // a token: events are queued, or the stream lagged
	done func()
	// notify, when set (setNotify), replaces wake.
	notify func()

	// Guarded by t.mu:
	q      []*rtEvent // delivered, not yet taken by the stream
	lagged bool       // the queue overflowed: dropped, the stream resets
	// from: events at or before it are not delivered (set by a reset).
	from rtPos
}

func newSub(t *rtTopic) *rtSub { return &rtSub{t: t, wake: make(chan struct{}, 1)} }

// deliver hands ev to every stream of t without ever blocking: a stream
// with rtSubBuffer events pending is marked lagged (it will get a reset)
// and gets nothing more until it caught up. Called with t.mu held.
func (t *rtTopic) deliver(ev *rtEvent) {
	t.last = ev.pos
	for s := range t.subs {
		if s.lagged || !s.from.less(ev.pos) {
			continue
		}
		if len(s.q) >= rtSubBuffer {
			s.lagged, s.q = true, nil
		} else {
			s.q = append(s.q, ev)
		}
		s.signal()
	}
}

// signal tells the stream that events are queued (or that it lagged).
// Called with t.mu held.
func (s *rtSub) signal() {
	if s.notify != nil {
		s.notify()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// setNotify makes f the stream's signal instead of wake (a stream served
// by the idle scheduler, realtime_idle.go, has no goroutine waiting on
// wake). f is called with the topic's lock held: it must not block. If
// events are already queued, f is called at once.
func (s *rtSub) setNotify(f func()) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.notify, s.wake = f, nil
	if len(s.q) > 0 || s.lagged {
		f()
	}
}

// take hands the stream its pending events, in order, and whether it
// lagged. spare (emptied, or nil) becomes the new queue.
func (s *rtSub) take(spare []*rtEvent) (evs []*rtEvent, lagged bool) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	evs, s.q = s.q, spare[:0]
	return evs, s.lagged
}

// resync clears a lagged stream and returns the position it continues
// from: the newest of tail (the topic's newest event in the backend) and
// the newest event delivered here. The events it missed or has pending
// are dropped, and none up to that position is delivered to it any more:
// the stream is told to reset and continues with what comes after.
func (s *rtSub) resync(tail rtPos) rtPos {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.q, s.lagged = nil, false
	pos := s.t.last
	if pos.less(tail) {
		pos = tail
	}
	if s.from.less(pos) {
		s.from = pos
	}
	return pos
}

// ---------------------------------------------------------------------------
// memHub

// memHub is the in-process hub. Every engine over the same *sql.DB shares
// one (see memHubFor), so replicas in one process see each other's writes.
type memHub struct {
	epoch uint64
	seq   atomic.Uint64
	now   func() time.Time

	mu     sync.Mutex
	topics map[string]*rtTopic
	swept  time.Time
}

var (
	memHubsMu sync.Mutex
	memHubs   = map[*sql.DB]*memHub{}
)

// memHubFor returns the memory hub of db (nil: a hub of its own).
func memHubFor(db *sql.DB) *memHub {
	if db == nil {
		return newMemHub()
	}
	memHubsMu.Lock()
	defer memHubsMu.Unlock()
	h := memHubs[db]
	if h == nil {
		h = newMemHub()
		memHubs[db] = h
	}
	return h
}

func newMemHub() *memHub {
	var b [8]byte
	_, _ = rand.Read(b[:])
	// The epoch tells this hub's ids from another process's (or an earlier
	// run's): those are answered with reset. It is kept below 2^52 so that
	// a JavaScript client may read it as a number.
	return &memHub{epoch: binary.BigEndian.Uint64(b[:]) >> 12, now: time.Now, topics: map[string]*rtTopic{}}
}

func (h *memHub) publish(_ context.Context, topic, typ, key string, data []byte) error {
	h.mu.Lock()
	t := h.topics[topic]
	h.mu.Unlock()
	if t == nil {
		return nil // not watched
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h.append(t, rtEvent{pos: rtPos{h.epoch, h.seq.Add(1)}, typ: typ, key: key, data: data})
	return nil
}

// append retains ev in t's ring and delivers it. Called with t.mu held.
func (h *memHub) append(t *rtTopic, ev rtEvent) {
	if len(t.ring) < rtRetainEvents {
		t.ring = append(t.ring, ev)
	} else {
		t.floor = t.ring[t.head].pos
		t.ring[t.head] = ev
		t.head = (t.head + 1) % len(t.ring)
	}
	t.deliver(&ev)
}

func (h *memHub) reset(_ context.Context, prefix string) error {
	h.mu.Lock()
	var ts []*rtTopic
	for name, t := range h.topics {
		if strings.HasPrefix(name[2:], prefix) {
			ts = append(ts, t)
		}
	}
	h.mu.Unlock()
	for _, t := range ts {
		t.mu.Lock()
		// What was erased is not kept for a resume either.
		pos := rtPos{h.epoch, h.seq.Add(1)}
		t.ring, t.head, t.floor = nil, 0, pos
		h.append(t, rtEvent{pos: pos, typ: "reset", data: []byte("{}")})
		t.mu.Unlock()
	}
	return nil
}

// resync: the memory hub delivers every event as it is published, under
// the topic's lock, so the newest delivered is the tail.
func (h *memHub) resync(_ context.Context, s *rtSub) (rtPos, error) {
	return s.resync(rtPos{}), nil
}

func (h *memHub) subscribe(_ context.Context, topic string, after *rtPos) (*rtSub, []rtEvent, bool, error) {
	h.mu.Lock()
	now := h.now()
	if now.Sub(h.swept) > time.Minute {
		h.swept = now
		for name, t := range h.topics {
			t.mu.Lock()
			if len(t.subs) == 0 && now.Sub(t.left) > rtRetention {
				delete(h.topics, name)
			}
			t.mu.Unlock()
		}
	}
	t := h.topics[topic]
	if t == nil {
		start := rtPos{h.epoch, h.seq.Load()}
		t = &rtTopic{name: topic, subs: map[*rtSub]struct{}{}, last: start, floor: start}
		h.topics[topic] = t
	}
	s := newSub(t)
	s.done = func() {
		t.mu.Lock()
		delete(t.subs, s)
		if len(t.subs) == 0 {
			t.left = h.now()
		}
		t.mu.Unlock()
	}
	// Registered before h.mu is let go, so that no sweep removes the topic
	// in between.
	t.mu.Lock()
	h.mu.Unlock()
	defer t.mu.Unlock()
	t.subs[s] = struct{}{}
	t.left = time.Time{}
	if after == nil {
		return s, nil, false, nil
	}
	if after.a != h.epoch || after.less(t.floor) || t.last.less(*after) {
		return s, nil, true, nil
	}
	var backlog []rtEvent
	for i := range t.ring {
		ev := t.ring[(t.head+i)%len(t.ring)]
		if after.less(ev.pos) {
			backlog = append(backlog, ev)
		}
	}
	return s, backlog, false, nil
}
