//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package storage

import "syscall"

// idleRawIO: without direct socket access, every write of the idle
// scheduler goes through a goroutine of the stream's own, and a client
// that left is seen when a write fails (realtime_idle.go).
const idleRawIO = false

func idleTryWrite(syscall.RawConn, []byte) (int, error) { return 0, nil }

func idlePeerGone(syscall.RawConn) bool { return false }
