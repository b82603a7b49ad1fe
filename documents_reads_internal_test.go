package storage

import (
	"context"
	"testing"
	"time"
)

// TestReadSlotsShareAndOrder: a tenant holds at most half the slots; a
// released slot goes to the first waiter that may take it (not one whose
// tenant is at its share); a waiter whose context ends leaves the queue
// without a slot and without leaking one.
func TestReadSlotsShareAndOrder(t *testing.T) {
	s := newReadSlots(4)
	if s.share != 2 {
		t.Fatalf("share of 4 slots = %d, want 2", s.share)
	}
	if one := newReadSlots(1); one.share != 1 {
		t.Fatalf("share of 1 slot = %d, want 1", one.share)
	}
	bg := context.Background()
	must := func(tenant string) func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		rel, err := s.acquire(ctx, tenant, 1)
		if err != nil {
			t.Fatalf("%s: no slot: %v", tenant, err)
		}
		return rel
	}
	a1, a2 := must("a"), must("a")
	// a is at its share: its third read waits, though two slots are free.
	type got struct {
		rel func()
		err error
	}
	wait := func(ctx context.Context, tenant string) chan got {
		ch := make(chan got, 1)
		go func() {
			rel, err := s.acquire(ctx, tenant, 1)
			ch <- got{rel, err}
		}()
		return ch
	}
	queued := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			s.mu.Lock()
			l := len(s.queue)
			s.mu.Unlock()
			if l == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters queued, want %d", l, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	a3 := wait(bg, "a")
	queued(1)
	b1, b2 := must("b"), must("b") // b takes the other half
	c1 := wait(bg, "c")            // every slot taken
	queued(2)
	// A waiter that gives up leaves the queue with an error.
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	gone := wait(ctx, "d")
	if g := <-gone; g.err == nil || toError(g.err).Code != CodeBackendUnavailable {
		t.Fatalf("a waiter past its deadline: %v, want backend_unavailable", g.err)
	}
	cancel()
	queued(2)
	// b's slot cannot go to a (at its share), so it goes to c, queued after a.
	b1()
	g := <-c1
	if g.err != nil {
		t.Fatalf("c: %v", g.err)
	}
	select {
	case g := <-a3:
		t.Fatalf("a got a third slot (err %v)", g.err)
	case <-time.After(20 * time.Millisecond):
	}
	// a's own release lets its third read in.
	a1()
	if g := <-a3; g.err != nil {
		t.Fatalf("a3: %v", g.err)
	} else {
		g.rel()
	}
	a2()
	b2()
	g.rel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inUse != 0 || len(s.held) != 0 || len(s.queue) != 0 {
		t.Fatalf("after every release: %d in use, held %v, %d queued", s.inUse, s.held, len(s.queue))
	}
}

// TestReadCtxOutlivesClientOnFerret: on FerretDB a read's backend context
// is not canceled when the client leaves (FerretDB goes on working, so the
// read keeps its slot) but ends at the same deadline; elsewhere it is the
// request's own.
func TestReadCtxOutlivesClientOnFerret(t *testing.T) {
	parent, cancelClient := context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(parent, time.Hour)
	defer cancel()
	want, _ := ctx.Deadline()
	ferret, cancelF := readCtx(ctx, docsBackend{ferret: true})
	defer cancelF()
	mongo, cancelM := readCtx(ctx, docsBackend{})
	defer cancelM()
	cancelClient()
	if ferret.Err() != nil {
		t.Fatalf("FerretDB read canceled with the client: %v", ferret.Err())
	}
	if got, ok := ferret.Deadline(); !ok || !got.Equal(want) {
		t.Fatalf("FerretDB read deadline %v (%v), want %v", got, ok, want)
	}
	if mongo.Err() == nil {
		t.Fatal("MongoDB read outlived its client")
	}
	short, cancelS := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelS()
	f, cancelF2 := readCtx(short, docsBackend{ferret: true})
	defer cancelF2()
	select {
	case <-f.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("FerretDB read outlived its deadline")
	}
}
