package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// TestKVConditional: SetIfAbsent, SetIfValue and DeleteIf report a condition
// that does not hold as ok == false with a nil error, and write nothing.
func TestKVConditional(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	kv := c.Storage.KV
	ctx := context.Background()
	ttl := &client.KVSetOptions{TTL: time.Minute}

	check := func(what string, ok bool, err error, want bool) {
		t.Helper()
		if err != nil || ok != want {
			t.Fatalf("%s = %v, %v; want %v, nil", what, ok, err, want)
		}
	}
	value := func(key, want string) {
		t.Helper()
		got, found, err := kv.Get(ctx, key)
		if err != nil || !found || got != want {
			t.Fatalf("Get(%s) = %q, %v, %v; want %q", key, got, found, err, want)
		}
	}
	ok, err := kv.SetIfAbsent(ctx, "lock", "me", ttl)
	check("SetIfAbsent on a missing key", ok, err, true)
	ok, err = kv.SetIfAbsent(ctx, "lock", "you", nil)
	check("SetIfAbsent on an existing key", ok, err, false)
	value("lock", "me")
	if d, err := kv.TTL(ctx, "lock"); err != nil || d != time.Minute {
		t.Fatalf("TTL = %v, %v; want 1m", d, err)
	}

	ok, err = kv.SetIfValue(ctx, "lock", "you", "not me", ttl)
	check("SetIfValue with another value", ok, err, false)
	ok, err = kv.SetIfValue(ctx, "missing", "you", "", nil)
	check("SetIfValue on a missing key", ok, err, false)
	if _, found, _ := kv.Get(ctx, "missing"); found {
		t.Fatal("SetIfValue created a missing key")
	}
	ok, err = kv.SetIfValue(ctx, "lock", "you", "me", nil)
	check("SetIfValue with the value", ok, err, true)
	value("lock", "you")
	if d, err := kv.TTL(ctx, "lock"); err != nil || d != client.NoExpiry {
		t.Fatalf("TTL after SetIfValue without TTL = %v, %v; want NoExpiry", d, err)
	}

	// A value that was not a string compares as its compact JSON text.
	must(t, "Set", kv.Set(ctx, "obj", map[string]int{"a": 1}, nil))
	ok, err = kv.SetIfValue(ctx, "obj", []int{1, 2}, `{"a":1}`, nil)
	check("SetIfValue on JSON text", ok, err, true)
	value("obj", "[1,2]")

	ok, err = kv.DeleteIf(ctx, "lock", "me")
	check("DeleteIf with another value", ok, err, false)
	value("lock", "you")
	ok, err = kv.DeleteIf(ctx, "lock", "you")
	check("DeleteIf with the value", ok, err, true)
	ok, err = kv.DeleteIf(ctx, "lock", "you")
	check("DeleteIf on a missing key", ok, err, false)

	// Errors other than a failed condition are errors.
	_, err = kv.SetIfAbsent(ctx, "", "v", nil)
	wantErr(t, "SetIfAbsent with an empty key", err, client.ErrInvalidRequest)
	_, err = kv.SetIfValue(ctx, "k", "v", "w", &client.KVSetOptions{TTL: -time.Second})
	wantErr(t, "SetIfValue with a negative TTL", err, client.ErrInvalidRequest)
}

// TestKVConditionalScopes: a token without the write scope gets
// ErrInsufficientScope, never ok == false.
func TestKVConditionalScopes(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	ctx := context.Background()
	must(t, "Set", c.Storage.KV.Set(ctx, "k", "v", nil))
	ro := srv.Client(cpodtest.Claims{Tenant: alice.Tenant, App: alice.App, User: alice.User, Scopes: []string{"storage.private.read"}}).Storage.KV
	_, err := ro.SetIfAbsent(ctx, "k2", "v", nil)
	wantErr(t, "SetIfAbsent", err, client.ErrInsufficientScope)
	_, err = ro.SetIfValue(ctx, "k", "w", "v", nil)
	wantErr(t, "SetIfValue", err, client.ErrInsufficientScope)
	_, err = ro.DeleteIf(ctx, "k", "v")
	wantErr(t, "DeleteIf", err, client.ErrInsufficientScope)
	wantErr(t, "Expire", ro.Expire(ctx, "k", time.Minute), client.ErrInsufficientScope)
}

// TestKVExpire: Expire sets and removes a TTL, keeps the value, and reports
// a missing key as ErrNotFound; a TTL that is neither positive nor NoExpiry
// is refused before any request.
func TestKVExpire(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	kv := c.Storage.KV
	ctx := context.Background()
	must(t, "Set", kv.Set(ctx, "k", "v", nil))
	start := time.Now()
	must(t, "Expire", kv.Expire(ctx, "k", 1500*time.Millisecond))
	// Rounded up: 2s while less than 500ms have passed. With a real Redis
	// the TTL runs on the wall clock, and a busy machine may take longer
	// between the two calls: then 1s is right too.
	d, err := kv.TTL(ctx, "k")
	if elapsed := time.Since(start); err != nil || d != 2*time.Second && (d != time.Second || elapsed < 500*time.Millisecond) {
		t.Fatalf("TTL = %v, %v %v after Expire(1.5s); want 2s (rounded up)", d, err, elapsed)
	}
	must(t, "Expire(NoExpiry)", kv.Expire(ctx, "k", client.NoExpiry))
	if d, err := kv.TTL(ctx, "k"); err != nil || d != client.NoExpiry {
		t.Fatalf("TTL = %v, %v; want NoExpiry", d, err)
	}
	if v, _, _ := kv.Get(ctx, "k"); v != "v" {
		t.Fatalf("value %q after Expire", v)
	}
	wantErr(t, "Expire on a missing key", kv.Expire(ctx, "missing", time.Minute), client.ErrNotFound)
	wantErr(t, "Expire(NoExpiry) on a missing key", kv.Expire(ctx, "missing", client.NoExpiry), client.ErrNotFound)
	for _, d := range []time.Duration{0, -2, -time.Second} {
		err := kv.Expire(ctx, "k", d)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != 0 || !errors.Is(err, client.ErrInvalidRequest) {
			t.Errorf("Expire(%v) = %v, want a local invalid_request", d, err)
		}
	}
	wantErr(t, "Expire over a year", kv.Expire(ctx, "k", 366*24*time.Hour), client.ErrInvalidRequest)
}

// TestKVLockTakers: workers race for a lock with SetIfAbsent; exactly one
// gets it each round.
func TestKVLockTakers(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	kv := c.Storage.KV
	ctx := context.Background()
	for round := range 5 {
		var wins atomic.Int32
		var holder atomic.Value
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				me := fmt.Sprintf("worker-%d", i)
				ok, err := kv.SetIfAbsent(ctx, "lock", me, &client.KVSetOptions{TTL: 30 * time.Second})
				if err != nil {
					errs <- err
					return
				}
				if ok {
					wins.Add(1)
					holder.Store(me)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d workers got the lock, want 1", round, n)
		}
		ok, err := kv.DeleteIf(ctx, "lock", holder.Load().(string))
		if err != nil || !ok {
			t.Fatalf("round %d: release = %v, %v", round, ok, err)
		}
	}
}
