package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/cpod/storage/client"
)

// TestDBVersions: ETag, IfMatch and IfAbsent on Set, Get and Delete, and
// Patch, against the engine.
func TestDBVersions(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	ctx := context.Background()
	docs := c.Storage.DB.Collection("versions", nil)

	var e1, e2, got string
	must(t, "Set IfAbsent", docs.Set(ctx, "k", map[string]int{"n": 1}, client.IfAbsent(), client.ETag(&e1)))
	err := docs.Set(ctx, "k", map[string]int{"n": 2}, client.IfAbsent())
	if !client.PreconditionFailed(err) {
		t.Fatalf("Set IfAbsent on an existing document: %v, want 412", err)
	}
	wantErr(t, "Set IfAbsent on an existing document", err, client.ErrConflict)
	if _, err := docs.Get(ctx, "k", nil, client.ETag(&got)); err != nil || got != e1 || e1 == "" {
		t.Fatalf("Get ETag = %q, %v; want %q", got, err, e1)
	}
	must(t, "Set IfMatch", docs.Set(ctx, "k", map[string]int{"n": 2}, client.IfMatch(e1), client.ETag(&e2)))
	if e2 == e1 || e2 == "" {
		t.Fatalf("the ETag did not change: %q then %q", e1, e2)
	}
	if err := docs.Set(ctx, "k", map[string]int{"n": 3}, client.IfMatch(e1)); !client.PreconditionFailed(err) {
		t.Fatalf("Set with a stale IfMatch: %v, want 412", err)
	}
	var v map[string]int
	if _, err := docs.Get(ctx, "k", &v); err != nil || v["n"] != 2 {
		t.Fatalf("after a stale IfMatch: %v, %v", v, err)
	}

	// Patch: merged value back, new ETag, stale IfMatch refused, missing
	// document ErrNotFound.
	var e3 string
	var merged json.RawMessage
	must(t, "Patch", docs.Patch(ctx, "k", map[string]any{"m": "x"}, &merged, client.IfMatch(e2), client.ETag(&e3)))
	if string(merged) != `{"n":2,"m":"x"}` || e3 == e2 || e3 == "" {
		t.Fatalf("Patch = %s, ETag %q (was %q)", merged, e3, e2)
	}
	if err := docs.Patch(ctx, "k", map[string]any{"n": nil}, nil, client.IfMatch(e2)); !client.PreconditionFailed(err) {
		t.Fatalf("Patch with a stale IfMatch: %v, want 412", err)
	}
	must(t, "Patch removing n", docs.Patch(ctx, "k", json.RawMessage(`{"n":null}`), &merged))
	if string(merged) != `{"m":"x"}` {
		t.Fatalf("Patch removing n = %s", merged)
	}
	wantErr(t, "Patch of a missing document", docs.Patch(ctx, "missing", map[string]int{"a": 1}, nil), client.ErrNotFound)

	// Delete with IfMatch: stale refused, current deletes.
	var e4 string
	if _, err := docs.Get(ctx, "k", nil, client.ETag(&e4)); err != nil {
		t.Fatal(err)
	}
	if err := docs.Delete(ctx, "k", client.IfMatch(e3)); !client.PreconditionFailed(err) {
		t.Fatalf("Delete with a stale IfMatch: %v, want 412", err)
	}
	must(t, "Delete IfMatch", docs.Delete(ctx, "k", client.IfMatch(e4)))
	if found, err := docs.Get(ctx, "k", nil); found || err != nil {
		t.Fatalf("after Delete: found %v, %v", found, err)
	}

	// Options that make no sense are refused before sending.
	wantErr(t, "Get IfMatch", func() error { _, err := docs.Get(ctx, "k", nil, client.IfMatch(e4)); return err }(), client.ErrInvalidRequest)
	wantErr(t, "Delete IfAbsent", docs.Delete(ctx, "k", client.IfAbsent()), client.ErrInvalidRequest)
	wantErr(t, "both", docs.Set(ctx, "k", 1, client.IfAbsent(), client.IfMatch(e4)), client.ErrInvalidRequest)
}

// TestDBIfMatchRace: clients that read the same version and write it back
// with IfMatch: exactly one wins each round.
func TestDBIfMatchRace(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	ctx := context.Background()
	docs := c.Storage.DB.Collection("race", nil)
	must(t, "Set", docs.Set(ctx, "counter", map[string]int{"n": 0}))
	const writers, rounds = 6, 3
	for round := 1; round <= rounds; round++ {
		var etag string
		if _, err := docs.Get(ctx, "counter", nil, client.ETag(&etag)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[w] = docs.Set(ctx, "counter", map[string]int{"n": round, "w": w}, client.IfMatch(etag))
			}()
		}
		wg.Wait()
		won := 0
		for w, err := range errs {
			switch {
			case err == nil:
				won++
			case !client.PreconditionFailed(err):
				t.Fatalf("round %d writer %d: %v", round, w, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, won)
		}
	}
}

// TestDBPatchConcurrent: concurrent patches of different fields all
// survive.
func TestDBPatchConcurrent(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	ctx := context.Background()
	docs := c.Storage.DB.Collection("profiles", nil)
	must(t, "Set", docs.Set(ctx, "p", map[string]any{}))
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = docs.Patch(ctx, "p", map[string]int{fmt.Sprintf("f%d", i): i}, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		must(t, fmt.Sprintf("Patch %d", i), err)
	}
	var got map[string]int
	if _, err := docs.Get(ctx, "p", &got); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if v, ok := got[fmt.Sprintf("f%d", i)]; !ok || v != i {
			t.Errorf("field f%d lost: %v", i, got)
		}
	}
}
