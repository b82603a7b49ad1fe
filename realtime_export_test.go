package storage

import (
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SetRealtimeIntervals sets how often the engine's change feeds send a
// heartbeat and check their token and app; call it before any stream.
func SetRealtimeIntervals(e *Engine, heartbeat, check time.Duration) {
	e.rt.heartbeat, e.rt.check = heartbeat, check
}

// HoldRealtimeReaders stops the engine's readers of Redis streams before
// their next read until release is called, so that its change feeds fall
// behind what Redis holds. ok is false on the in-process hub, which has no
// reader (an event reaches the streams as it is published).
func HoldRealtimeReaders(e *Engine) (release func(), ok bool) {
	h, ok := e.rt.hub.(*redisHub)
	if !ok {
		return nil, false
	}
	ch := make(chan struct{})
	h.hold.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			h.hold.Store(nil)
			close(ch)
		})
	}, true
}

// IsRealtimePublish reports whether cmd runs the change feeds' publish
// script (its own round trip after a write, see realtime_redis.go).
func IsRealtimePublish(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 2 {
		return false
	}
	s, _ := args[1].(string)
	switch cmd.Name() {
	case "evalsha", "evalsha_ro":
		return s == publishScript.Hash()
	case "eval":
		return s == publishScriptSource
	}
	return false
}

// RealtimeHandoffs is how many writes or resyncs of hijacked streams the
// idle scheduler gave a goroutine of their own (realtime_idle.go).
func RealtimeHandoffs(e *Engine) int64 { return e.rt.idle.handoffs.Load() }

// RealtimeHijacked is how many streams the idle scheduler serves.
func RealtimeHijacked(e *Engine) int {
	e.rt.idle.mu.Lock()
	defer e.rt.idle.mu.Unlock()
	return len(e.rt.idle.streams)
}
