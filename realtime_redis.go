package storage

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisHub carries events between replicas through Redis Streams: one
// stream per topic (location and collection), at
// RedisKeyPrefix + "rt:{" + topic + "}", trimmed to about rtRetainEvents
// entries (XADD MAXLEN ~) and expiring rtRetention after its last event.
// The braces make the topic a Redis Cluster hash tag: the stream and its
// watch marker (the same key + ":w") share a slot, so the publish script
// runs on a cluster.
//
// A topic is recorded only while it is watched: each stream sets the
// marker when it starts and renews it while it runs, and it lives
// rtRetention after that, so a client that lost its connection can resume
// within it. The publish script appends only when the marker exists.
//
// Readers: the script also PUBLISHes the stream's key on one channel
// (RedisKeyPrefix + "rt"); each process holds one subscription to it and,
// for a topic with streams in this process, reads the new entries with one
// XRANGE after the last it has (one reader per topic and process, however
// many streams follow it). The entries are read in stream order, so
// events reach every stream in the order of the stream, and a notification
// lost (a reconnect) is made up by a poll of the watched topics every
// rtPoll.
type redisHub struct {
	rdb     redis.UniversalClient
	prefix  string
	channel string
	timeout time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	topics map[string]*rtTopic // by stream key
	// stop ends the subscription and the poll; nil while no stream
	// follows a topic in this process.
	stop func()
	// hold, when set (by a test), stops the readers before each read
	// until it is closed: the streams of the process fall behind Redis.
	hold atomic.Pointer[chan struct{}]
}

const (
	rtPoll      = 2 * time.Second
	rtFetchSize = 200
)

func newRedisHub(rdb redis.UniversalClient, prefix string, timeout time.Duration, log *slog.Logger) *redisHub {
	return &redisHub{rdb: rdb, prefix: prefix, channel: prefix + "rt", timeout: timeout, log: log, topics: map[string]*rtTopic{}}
}

func (h *redisHub) streamKey(topic string) string { return h.prefix + "rt:{" + topic + "}" }

// publishScript appends an event to a watched stream and notifies the
// readers. KEYS: stream, marker. ARGV: maxlen, type, key, data, expiry
// (ms), channel. A reset (the admin erase) first empties the stream, so
// what was erased is not kept for a resume either.
var publishScript = redis.NewScript(publishScriptSource)

const publishScriptSource = `
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
if ARGV[2] == 'reset' then redis.call('DEL', KEYS[1]) end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', ARGV[2], 'k', ARGV[3], 'd', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], KEYS[1])
return id
`

func (h *redisHub) run(ctx context.Context, key, typ, k string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	err := publishScript.Run(ctx, h.rdb, []string{key, key + ":w"},
		rtRetainEvents, typ, k, data, rtRetention.Milliseconds(), h.channel).Err()
	if errors.Is(err, redis.Nil) {
		return nil // not watched
	}
	return err
}

func (h *redisHub) publish(ctx context.Context, topic, typ, key string, data []byte) error {
	return h.run(ctx, h.streamKey(topic), typ, key, data)
}

func (h *redisHub) reset(ctx context.Context, prefix string) error {
	// Every watched stream under the prefix has its marker: find them on
	// every node (the '?' is the topic's kind).
	pattern := globEscape(h.prefix+"rt:{") + "?" + globEscape("|"+prefix) + "*"
	var keys []string
	var mu sync.Mutex
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			sctx, cancel := context.WithTimeout(ctx, h.timeout)
			found, next, err := c.Scan(sctx, cursor, pattern, 500).Result()
			cancel()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range found {
				if strings.HasSuffix(k, "}:w") {
					keys = append(keys, strings.TrimSuffix(k, ":w"))
				}
			}
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	switch c := h.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	case *redis.Ring:
		err = c.ForEachShard(ctx, func(ctx context.Context, s *redis.Client) error { return scan(ctx, s) })
	default:
		err = scan(ctx, h.rdb)
	}
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := h.run(ctx, k, "reset", "", []byte("{}")); err != nil {
			return err
		}
	}
	return nil
}

// start runs the process's one subscription and the poll while streams
// follow topics here. Called with h.mu held.
func (h *redisHub) start() {
	if h.stop != nil {
		return
	}
	ps := h.rdb.Subscribe(context.Background(), h.channel)
	// Wait for the subscription, so that a write right after the first
	// stream started is notified (the poll would find it later anyway).
	rctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	if _, err := ps.Receive(rctx); err != nil {
		h.log.Warn("storage: realtime: subscribing failed; polling", "err", err)
	}
	cancel()
	quit := make(chan struct{})
	h.stop = func() {
		close(quit)
		_ = ps.Close()
	}
	go func() {
		for m := range ps.Channel() {
			h.mu.Lock()
			t := h.topics[m.Payload]
			h.mu.Unlock()
			if t != nil {
				h.fetch(t)
			}
		}
	}()
	go func() {
		tick := time.NewTicker(rtPoll)
		defer tick.Stop()
		renew := 0
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			renew++
			h.mu.Lock()
			ts := make([]*rtTopic, 0, len(h.topics))
			for _, t := range h.topics {
				ts = append(ts, t)
			}
			h.mu.Unlock()
			for _, t := range ts {
				h.fetch(t)
				if renew%15 == 0 { // every 30 s
					h.watch(context.Background(), t.name)
				}
			}
		}
	}()
}

// watch sets the marker of a topic's stream.
func (h *redisHub) watch(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	return h.rdb.Set(ctx, key+":w", "1", rtRetention+time.Minute).Err()
}

// fetch reads the entries of t's stream after t.last and delivers them;
// one fetch per topic runs at a time, and a notification during one makes
// it read again.
func (h *redisHub) fetch(t *rtTopic) {
	t.mu.Lock()
	if t.ready == nil || t.fetching {
		t.dirty = true
		t.mu.Unlock()
		return
	}
	select {
	case <-t.ready:
	default:
		t.dirty = true
		t.mu.Unlock()
		return
	}
	t.fetching = true
	t.mu.Unlock()
	go func() {
		for {
			t.mu.Lock()
			t.dirty = false
			from := t.last
			t.mu.Unlock()
			if hold := h.hold.Load(); hold != nil {
				<-*hold
			}
			evs, err := h.read(context.Background(), t.name, "("+from.String(), "+", rtFetchSize)
			t.mu.Lock()
			if err != nil {
				h.log.Warn("storage: realtime: reading a stream failed", "err", err)
			}
			for i := range evs {
				if t.last.less(evs[i].pos) {
					t.deliver(&evs[i])
				}
			}
			if err != nil || (len(evs) < rtFetchSize && !t.dirty) {
				t.fetching = false
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
		}
	}()
}

// read returns the entries of a stream in [from, to] (XRANGE syntax).
func (h *redisHub) read(ctx context.Context, key, from, to string, count int64) ([]rtEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	msgs, err := h.rdb.XRangeN(ctx, key, from, to, count).Result()
	if err != nil {
		return nil, err
	}
	evs := make([]rtEvent, 0, len(msgs))
	for _, m := range msgs {
		pos, ok := parsePos(m.ID)
		if !ok {
			continue
		}
		typ, _ := m.Values["t"].(string)
		k, _ := m.Values["k"].(string)
		d, _ := m.Values["d"].(string)
		evs = append(evs, rtEvent{pos: pos, typ: typ, key: k, data: []byte(d)})
	}
	return evs, nil
}

// resync starts s over from the stream's newest entry in Redis: this
// process's reader of the stream may still be behind it (it reads in steps
// of rtFetchSize), and the entries it has yet to deliver were written
// before the reset, so they must not follow it.
func (h *redisHub) resync(ctx context.Context, s *rtSub) (rtPos, error) {
	tail, err := h.tail(ctx, s.t.name)
	if err != nil {
		return rtPos{}, err
	}
	return s.resync(tail), nil
}

// tail is the id of a stream's newest entry (zero when it has none).
func (h *redisHub) tail(ctx context.Context, key string) (rtPos, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	msgs, err := h.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		return rtPos{}, err
	}
	pos, _ := parsePos(msgs[0].ID)
	return pos, nil
}

func (h *redisHub) subscribe(ctx context.Context, topic string, after *rtPos) (*rtSub, []rtEvent, bool, error) {
	key := h.streamKey(topic)
	if err := h.watch(ctx, key); err != nil {
		return nil, nil, false, err
	}
	// The stream is registered with its topic before h.mu is let go, so
	// that the last stream of the topic leaving meanwhile cannot remove the
	// topic under it (it would never be read again).
	h.mu.Lock()
	h.start()
	t := h.topics[key]
	creator := t == nil
	if creator {
		t = &rtTopic{name: key, subs: map[*rtSub]struct{}{}, ready: make(chan struct{})}
		h.topics[key] = t
	}
	s := newSub(t)
	t.mu.Lock()
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	h.mu.Unlock()
	s.done = func() {
		h.mu.Lock()
		t.mu.Lock()
		delete(t.subs, s)
		if len(t.subs) == 0 && h.topics[key] == t {
			delete(h.topics, key)
		}
		t.mu.Unlock()
		if len(h.topics) == 0 && h.stop != nil {
			h.stop()
			h.stop = nil
		}
		h.mu.Unlock()
	}
	if creator {
		// The reader starts after the newest entry.
		pos, err := h.tail(ctx, key)
		t.mu.Lock()
		t.last, t.initErr = pos, err
		close(t.ready)
		again := t.dirty
		t.mu.Unlock()
		if again {
			h.fetch(t) // notified while starting
		}
	}
	select {
	case <-t.ready:
	case <-ctx.Done():
		s.done()
		return nil, nil, false, ctx.Err()
	}
	if t.initErr != nil {
		s.done()
		return nil, nil, false, t.initErr
	}
	if after == nil {
		return s, nil, false, nil
	}
	// The backlog: everything after the id, if the stream still holds the
	// entry after it.
	first, err := h.read(ctx, key, "-", "+", 1)
	if err != nil {
		s.done()
		return nil, nil, false, err
	}
	if len(first) == 0 || after.less(first[0].pos) {
		return s, nil, true, nil // trimmed, expired or erased since
	}
	backlog, err := h.read(ctx, key, "("+after.String(), "+", 2*rtRetainEvents)
	if err != nil {
		s.done()
		return nil, nil, false, err
	}
	return s, backlog, false, nil
}
