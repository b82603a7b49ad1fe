package storage

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// Request bodies read whole (JSON): bounded in size (http.MaxBytesReader)
// and in pace (Limits.BodyGrace, Limits.MinBodyRate). File uploads stream
// and have bounds of their own (files.go).

// errSlowBody ends a request body that does not keep up with
// Limits.MinBodyRate after Limits.BodyGrace.
var errSlowBody = errors.New("the request body arrived too slowly")

// readBody reads the whole request body, at most limit bytes (more is an
// *http.MaxBytesError), at the pace Limits asks for (slower is
// errSlowBody). It counts the bytes read for the metrics.
func (c *call) readBody(limit int64) ([]byte, error) {
	// A Read blocked on a trickling client is interrupted through the
	// connection's read deadline (net/http's server supports it; where the
	// ResponseWriter does not, a Read ends at the server's own timeouts
	// and the pace is checked after it).
	rc := http.NewResponseController(c.w)
	p := &pacedBody{r: http.MaxBytesReader(c.w, c.r.Body, limit), start: time.Now(), grace: c.limits.BodyGrace, rate: c.limits.MinBodyRate}
	// Every cut, by the timer or by Read's own look at the clock, puts the
	// connection's read deadline in the past: net/http reads what a handler
	// left of a body before it writes the answer (to keep the connection),
	// and would otherwise wait for the rest of a trickle, or for ever, before
	// the 400 goes out.
	p.cut = func() { _ = rc.SetReadDeadline(time.Now()) }
	p.mu.Lock()
	p.timer = time.AfterFunc(p.grace, p.check)
	p.mu.Unlock()
	b, err := io.ReadAll(p)
	p.mu.Lock()
	p.done = true // a timer that fires now leaves the connection alone
	p.mu.Unlock()
	p.timer.Stop()
	if errors.Is(err, errSlowBody) && c.r.ProtoMajor == 1 {
		// The rest of the body is still on the wire: the connection cannot
		// carry another request. Said explicitly, net/http also answers
		// without reading that rest where the read deadline cannot be set.
		// (HTTP/2 refuses the header: there a stream ends alone.)
		c.w.Header().Set("Connection", "close")
	}
	c.bodyIn += int64(len(b))
	return b, err
}

// pacedBody reads a body that must have come at rate bytes per second or
// faster, on average, once grace has passed since start.
type pacedBody struct {
	r     io.Reader
	start time.Time
	grace time.Duration
	rate  int64
	cut   func() // ends a Read in progress, and any later one; called with mu held

	mu    sync.Mutex
	timer *time.Timer
	n     int64 // bytes read so far
	late  bool  // the body fell behind its pace: cut was called
	done  bool  // readBody returned: the timer does nothing more
}

// deadline is when the body falls behind its pace if no more bytes come:
// grace, plus a second for each rate bytes read. Called with mu held.
func (p *pacedBody) deadline() time.Time {
	return p.start.Add(p.grace + time.Duration(p.n)*time.Second/time.Duration(p.rate))
}

// check is the timer's: it cuts the body at its deadline, or waits for
// the later deadline bytes that came meanwhile have earned.
func (p *pacedBody) check() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.late {
		return
	}
	if d := time.Until(p.deadline()); d > 0 {
		p.timer.Reset(d)
		return
	}
	p.late = true
	p.cut()
}

func (p *pacedBody) Read(b []byte) (int, error) {
	p.mu.Lock()
	if !p.late && time.Now().After(p.deadline()) {
		// Behind its pace before the timer said so (a timer fires late on
		// a busy machine): cut here, as the timer would have.
		p.late = true
		p.cut()
	}
	late := p.late
	p.mu.Unlock()
	if late {
		return 0, errSlowBody
	}
	n, err := p.r.Read(b)
	p.mu.Lock()
	p.n += int64(n)
	late = p.late
	p.mu.Unlock()
	if late {
		return n, errSlowBody
	}
	return n, err
}
