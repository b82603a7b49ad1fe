package storage

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPacedBodyCutsOnItsOwnClock: a body found behind its pace by Read's
// look at the clock, before its timer fired (timers fire late on a busy
// machine), is cut as the timer would cut it, once: errSlowBody alone
// left net/http waiting for the rest of the body before it answered.
func TestPacedBodyCutsOnItsOwnClock(t *testing.T) {
	cuts := 0
	p := &pacedBody{r: strings.NewReader(`{"k":1}`), start: time.Now().Add(-time.Second), grace: 300 * time.Millisecond, rate: 1000, cut: func() { cuts++ }}
	for i := 0; i < 2; i++ {
		if n, err := p.Read(make([]byte, 8)); n != 0 || !errors.Is(err, errSlowBody) {
			t.Fatalf("read %d: %d bytes, %v; want errSlowBody", i, n, err)
		}
	}
	if cuts != 1 {
		t.Errorf("cut %d times, want once", cuts)
	}
	// A body within its pace is read, uncut.
	cuts = 0
	p = &pacedBody{r: strings.NewReader(`{"k":1}`), start: time.Now(), grace: time.Hour, rate: 1000, cut: func() { cuts++ }}
	if n, err := p.Read(make([]byte, 8)); n != 7 || err != nil || cuts != 0 {
		t.Errorf("within its pace: %d bytes, %v, %d cuts", n, err, cuts)
	}
}

// TestPacedBodyTimerAfterTheRead: a timer that fires once readBody is done
// with the body (time.Timer.Stop cannot stop a callback already started)
// leaves the connection alone: its read deadline would end the next
// request's reads, or net/http's background read of this one.
func TestPacedBodyTimerAfterTheRead(t *testing.T) {
	cuts := 0
	p := &pacedBody{r: strings.NewReader(""), start: time.Now().Add(-time.Second), grace: 300 * time.Millisecond, rate: 1000, cut: func() { cuts++ }}
	p.timer = time.AfterFunc(time.Hour, func() {})
	defer p.timer.Stop()
	p.done = true
	p.check()
	if cuts != 0 {
		t.Errorf("a timer after the read cut the connection")
	}
	p.done = false
	p.check()
	if cuts != 1 {
		t.Errorf("a timer past the deadline, before the end of the read: %d cuts, want 1", cuts)
	}
}
