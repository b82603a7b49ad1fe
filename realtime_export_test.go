package storage

import "time"

// SetRealtimeIntervals sets how often the engine's change feeds send a
// heartbeat and check their token and app; call it before any stream.
func SetRealtimeIntervals(e *Engine, heartbeat, check time.Duration) {
	e.rt.heartbeat, e.rt.check = heartbeat, check
}
