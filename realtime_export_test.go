package storage

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// SetRealtimeIntervals sets how often the engine's change feeds send a
// heartbeat and check their token and app; call it before any stream.
func SetRealtimeIntervals(e *Engine, heartbeat, check time.Duration) {
	e.rt.heartbeat, e.rt.check = heartbeat, check
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
