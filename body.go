package storage

import (
	"context"
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
// errSlowBody), within the body memory budget (Limits.MaxBodyMemory; a wait
// that ends is a 503 *Error). It counts the bytes read for the metrics.
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
	b, err := c.readAll(p, limit)
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
	return b, err
}

// readAll reads r to its end, at most limit bytes. The buffer grows as
// bytes arrive, and each growth first reserves twice the new size in the
// body budget for the caller's tenant: the memory a request holds is
// bounded by what its client has sent, and all of it by the budget.
func (c *call) readAll(r io.Reader, limit int64) ([]byte, error) {
	// The first buffer holds a small body whole (+1: the read that finds
	// the end); a larger one doubles as it arrives, whatever its
	// Content-Length says, so a client that announces much and sends
	// little holds little.
	size := int64(4 << 10)
	if cl := c.r.ContentLength; cl >= 0 {
		size = min(cl, limit, 64<<10) + 1
	}
	var b []byte
	for {
		if len(b) == cap(b) {
			if cap(b) > 0 {
				size = max(min(2*int64(cap(b)), limit+1), int64(cap(b))+1)
			}
			if err := c.reserveBody(2 * size); err != nil {
				return nil, err
			}
			nb := make([]byte, len(b), size)
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		c.bodyIn += int64(n)
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// reserveBody holds n bytes of the body memory budget in all for this
// request (more than it holds already), waiting at most BackendTimeout.
func (c *call) reserveBody(n int64) error {
	if c.bodies == nil {
		return nil
	}
	// One request holds at most its tenant's share (the body limits are
	// far below it by default): past it, it reads on within what it holds.
	if n = min(n, c.bodies.share); n <= c.held {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.backendTimeout)
	defer cancel()
	release, err := c.bodies.acquire(ctx, c.tenant, n-c.held)
	if err != nil {
		return err
	}
	c.held = n
	c.free = append(c.free, release)
	return nil
}

// releaseBody gives back what the request holds of the body budget.
func (c *call) releaseBody() {
	for _, f := range c.free {
		f()
	}
	c.free, c.held = nil, 0
}

// setTenant records the caller's tenant once authorized, on the call and
// in its context (for the budgets that backend calls take).
func (c *call) setTenant(tenant string) {
	c.tenant = tenant
	c.ctx = context.WithValue(c.ctx, tenantKey{}, tenant)
}

type tenantKey struct{}

// tenantFrom is the tenant of a request's context ("" for none).
func tenantFrom(ctx context.Context) string {
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
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
