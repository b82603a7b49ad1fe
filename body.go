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
	p := &pacedBody{r: http.MaxBytesReader(c.w, c.r.Body, limit), start: time.Now(), grace: c.limits.BodyGrace, rate: c.limits.MinBodyRate}
	// A Read blocked on a trickling client is interrupted through the
	// connection's read deadline (net/http's server supports it; where the
	// ResponseWriter does not, a Read ends at the server's own timeouts
	// and the pace is checked after it).
	rc := http.NewResponseController(c.w)
	p.mu.Lock()
	p.timer = time.AfterFunc(p.grace, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if time.Now().Before(p.deadline()) {
			p.timer.Reset(time.Until(p.deadline())) // bytes came meanwhile
			return
		}
		p.late = true
		_ = rc.SetReadDeadline(time.Now())
	})
	p.mu.Unlock()
	b, err := io.ReadAll(p)
	p.timer.Stop()
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
	timer *time.Timer

	mu   sync.Mutex
	n    int64 // bytes read so far
	late bool  // the timer found the body behind its pace
}

// deadline is when the body falls behind its pace if no more bytes come:
// grace, plus a second for each rate bytes read. Called with mu held.
func (p *pacedBody) deadline() time.Time {
	return p.start.Add(p.grace + time.Duration(p.n)*time.Second/time.Duration(p.rate))
}

func (p *pacedBody) Read(b []byte) (int, error) {
	p.mu.Lock()
	late := p.late || time.Now().After(p.deadline())
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
