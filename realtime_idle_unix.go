//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package storage

import "syscall"

// idleRawIO: the idle scheduler writes to and peeks at sockets directly
// (realtime_idle.go).
const idleRawIO = true

// idleTryWrite writes b to the socket without blocking (Go keeps its
// sockets non-blocking): n is what the socket took; an error other than
// "would block" means the client is gone. Without a socket (raw nil) it
// writes nothing.
func idleTryWrite(raw syscall.RawConn, b []byte) (n int, err error) {
	if raw == nil {
		return 0, nil
	}
	werr := raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, e := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			switch e {
			case nil:
				if m <= 0 {
					return true
				}
			case syscall.EINTR:
			case syscall.EAGAIN:
				return true
			default:
				err = e
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}

// idlePeerGone reports whether the client closed its end or the
// connection failed, without blocking: a peek at what it sent (a stream's
// client sends nothing once its request is read, so end of file is all
// there is to see).
func idlePeerGone(raw syscall.RawConn) bool {
	if raw == nil {
		return false
	}
	var gone bool
	err := raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
		case e != nil:
			gone = true
		case n == 0:
			gone = true // end of file
		}
		return true
	})
	return gone || err != nil
}
