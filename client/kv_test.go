package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

func TestKVSetGet(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	kv := c.Storage.KV
	ctx := context.Background()

	tests := []struct {
		value any
		want  string
	}{
		{"plain text", "plain text"},
		{`{"already":"json"}`, `{"already":"json"}`},
		{[]byte("bytes"), "bytes"},
		{map[string]any{"userId": "usr-xxx", "plan": "pro"}, `{"plan":"pro","userId":"usr-xxx"}`},
		{struct {
			B int `json:"b"`
			A int `json:"a"`
		}{1, 2}, `{"b":1,"a":2}`},
		{json.RawMessage(`{ "z" : 1, "a" : [ 1, 2 ] }`), `{"z":1,"a":[1,2]}`},
		{int64(math.MaxInt64), "9223372036854775807"},
		{true, "true"},
		{nil, "null"},
	}
	for i, tc := range tests {
		key := fmt.Sprintf("k%d", i)
		must(t, "Set", kv.Set(ctx, key, tc.value, nil))
		got, found, err := kv.Get(ctx, key)
		if err != nil || !found || got != tc.want {
			t.Errorf("Set(%#v) then Get = %q, %v, %v; want %q", tc.value, got, found, err, tc.want)
		}
	}

	got, found, err := kv.Get(ctx, "missing")
	if err != nil || found || got != "" {
		t.Errorf("Get(missing) = %q, %v, %v; want \"\", false, nil", got, found, err)
	}
}

func TestKVKeysAreOpaque(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	kv := c.Storage.KV
	ctx := context.Background()
	keys := []string{"a", "a/b", "a%2Fb", "a b", "a?b=c", "a#b", ".", "..", "./a", "a/../b", "a/", "a//b", "ü€😀", "a+b", "%", strings.Repeat("x", 512)}
	for i, k := range keys {
		must(t, fmt.Sprintf("Set(%q)", k), kv.Set(ctx, k, fmt.Sprint(i), nil))
	}
	for i, k := range keys {
		got, found, err := kv.Get(ctx, k)
		if err != nil || !found || got != fmt.Sprint(i) {
			t.Errorf("Get(%q) = %q, %v, %v; want %q", k, got, found, err, fmt.Sprint(i))
		}
	}
	wantErr(t, "513-byte key", kv.Set(ctx, strings.Repeat("x", 513), "v", nil), client.ErrInvalidRequest)
	wantErr(t, "control character", kv.Set(ctx, "a\nb", "v", nil), client.ErrInvalidRequest)
}

func TestKVExistsTTLDel(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	kv := c.Storage.KV
	ctx := context.Background()

	must(t, "Set", kv.Set(ctx, "session:abc123", "s", &client.KVSetOptions{TTL: time.Hour}))
	must(t, "Set", kv.Set(ctx, "forever", "f", nil))

	if ok, err := kv.Exists(ctx, "session:abc123"); err != nil || !ok {
		t.Errorf("Exists = %v, %v; want true", ok, err)
	}
	if ok, err := kv.Exists(ctx, "nope"); err != nil || ok {
		t.Errorf("Exists(missing) = %v, %v; want false", ok, err)
	}
	if d, err := kv.TTL(ctx, "session:abc123"); err != nil || d != time.Hour {
		t.Errorf("TTL = %v, %v; want 1h", d, err)
	}
	if d, err := kv.TTL(ctx, "forever"); err != nil || d != client.NoExpiry {
		t.Errorf("TTL(no expiry) = %v, %v; want NoExpiry", d, err)
	}
	_, err := kv.TTL(ctx, "nope")
	wantErr(t, "TTL(missing)", err, client.ErrNotFound)

	srv.FastForward(10 * time.Minute)
	if d, err := kv.TTL(ctx, "session:abc123"); err != nil || d != 50*time.Minute {
		t.Errorf("TTL after 10m = %v, %v; want 50m", d, err)
	}
	srv.FastForward(time.Hour)
	if _, found, err := kv.Get(ctx, "session:abc123"); err != nil || found {
		t.Errorf("Get after expiry: found = %v, err = %v; want gone", found, err)
	}

	must(t, "Del", kv.Del(ctx, "forever"))
	if ok, err := kv.Exists(ctx, "forever"); err != nil || ok {
		t.Errorf("Exists after Del = %v, %v; want false", ok, err)
	}
	must(t, "Del(missing)", kv.Del(ctx, "forever"))

	// Set replaces the TTL too.
	must(t, "Set", kv.Set(ctx, "k", "1", &client.KVSetOptions{TTL: time.Minute}))
	must(t, "Set", kv.Set(ctx, "k", "2", nil))
	if d, err := kv.TTL(ctx, "k"); err != nil || d != client.NoExpiry {
		t.Errorf("TTL after Set without TTL = %v, %v; want NoExpiry", d, err)
	}

	for _, ttl := range []time.Duration{-time.Second, 366 * 24 * time.Hour} {
		wantErr(t, fmt.Sprintf("TTL %v", ttl), kv.Set(ctx, "k", "v", &client.KVSetOptions{TTL: ttl}), client.ErrInvalidRequest)
	}
}

func TestKVIncr(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	kv := c.Storage.KV
	ctx := context.Background()

	if n, err := kv.Incr(ctx, "fresh", 1); err != nil || n != 1 {
		t.Errorf("Incr(missing) = %d, %v; want 1", n, err)
	}
	must(t, "Set", kv.Set(ctx, "counter:api-calls", "0", &client.KVSetOptions{TTL: time.Hour}))
	if n, err := kv.Incr(ctx, "counter:api-calls", 1); err != nil || n != 1 {
		t.Errorf("Incr = %d, %v; want 1", n, err)
	}
	if n, err := kv.Incr(ctx, "counter:api-calls", 5); err != nil || n != 6 {
		t.Errorf("Incr by 5 = %d, %v; want 6", n, err)
	}
	if n, err := kv.Incr(ctx, "counter:api-calls", -10); err != nil || n != -4 {
		t.Errorf("Incr by -10 = %d, %v; want -4", n, err)
	}
	if d, err := kv.TTL(ctx, "counter:api-calls"); err != nil || d < 59*time.Minute || d > time.Hour {
		t.Errorf("TTL after Incr = %v, %v; want the TTL kept (about 1h)", d, err)
	}
	if v, _, err := kv.Get(ctx, "counter:api-calls"); err != nil || v != "-4" {
		t.Errorf("Get = %q, %v; want -4", v, err)
	}

	must(t, "Set", kv.Set(ctx, "text", "abc", nil))
	_, err := kv.Incr(ctx, "text", 1)
	wantErr(t, "Incr(text)", err, client.ErrNotInteger)

	must(t, "Set", kv.Set(ctx, "max", int64(math.MaxInt64), nil))
	_, err = kv.Incr(ctx, "max", 1)
	wantErr(t, "Incr overflow", err, client.ErrNotInteger)
}

// One client is shared by many goroutines; run with -race.
func TestKVConcurrentIncr(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	ctx := context.Background()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := c.Storage.KV.Incr(ctx, "hits", 1); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v, _, err := c.Storage.KV.Get(ctx, "hits"); err != nil || v != fmt.Sprint(workers*each) {
		t.Errorf("hits = %q, %v; want %d", v, err, workers*each)
	}
}

func TestKVTooLarge(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	ctx := context.Background()
	must(t, "1 MiB value", c.Storage.KV.Set(ctx, "big", strings.Repeat("x", 1<<20), nil))
	wantErr(t, "1 MiB + 1", c.Storage.KV.Set(ctx, "big", strings.Repeat("x", 1<<20+1), nil), client.ErrTooLarge)
}

func TestKVTiersAndIsolation(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	ctx := context.Background()
	tiers := []client.Tier{client.TierPrivate, client.TierUser, client.TierShared}
	for _, tier := range tiers {
		must(t, "Set", c.Storage.KV.WithTier(tier).Set(ctx, "k", string(tier), nil))
	}
	for _, tier := range tiers {
		if v, _, err := c.Storage.KV.WithTier(tier).Get(ctx, "k"); err != nil || v != string(tier) {
			t.Errorf("tier %s: Get = %q, %v", tier, v, err)
		}
	}
	// The default tier is private.
	if v, _, err := c.Storage.KV.Get(ctx, "k"); err != nil || v != "private" {
		t.Errorf("default tier: Get = %q, %v; want private", v, err)
	}

	// Bob, same app: his own user tier; the app's private and the tenant's
	// shared values are the same as Alice's.
	bob := alice
	bob.User = "bob"
	cb := srv.Client(bob)
	want := map[client.Tier]string{client.TierPrivate: "private", client.TierShared: "shared"}
	for _, tier := range tiers {
		v, found, err := cb.Storage.KV.WithTier(tier).Get(ctx, "k")
		if err != nil || v != want[tier] || found != (want[tier] != "") {
			t.Errorf("bob, tier %s: Get = %q, %v, %v; want %q", tier, v, found, err, want[tier])
		}
	}

	// Another app of the tenant, for Alice: her user tier ("visible to all
	// apps they use") and the tenant's shared tier are common, the private
	// tier is not.
	other := alice
	other.App = "app-b"
	co := srv.Client(other)
	want = map[client.Tier]string{client.TierUser: "user", client.TierShared: "shared"}
	for _, tier := range tiers {
		v, found, err := co.Storage.KV.WithTier(tier).Get(ctx, "k")
		if err != nil || v != want[tier] || found != (want[tier] != "") {
			t.Errorf("app-b, tier %s: Get = %q, %v, %v; want %q", tier, v, found, err, want[tier])
		}
	}

	// Another tenant sees nothing.
	stranger := alice
	stranger.Tenant = "t2"
	cs := srv.Client(stranger)
	for _, tier := range tiers {
		if _, found, err := cs.Storage.KV.WithTier(tier).Get(ctx, "k"); err != nil || found {
			t.Errorf("tenant t2, tier %s: found = %v, err = %v; want nothing", tier, found, err)
		}
	}

	wantErr(t, "bad tier", c.Storage.KV.WithTier("everyone").Set(ctx, "k", "v", nil), client.ErrInvalidRequest)
}

// Server.Client mints a fresh token per request, so moving the clock past
// the default token lifetime does not log the client out; an explicit TTL
// makes a token that expires.
func TestCpodtestClientTokens(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	ctx := context.Background()
	srv.AdvanceClock(48 * time.Hour)
	must(t, "Set after 48h", c.Storage.KV.Set(ctx, "k", "v", nil))

	short := alice
	short.TTL = time.Minute
	cs := srv.Client(short)
	must(t, "Set with a fresh 1m token", cs.Storage.KV.Set(ctx, "k", "v", nil))
	srv.AdvanceClock(2 * time.Minute)
	wantErr(t, "Set with an expired token", cs.Storage.KV.Set(ctx, "k", "v", nil), client.ErrInvalidToken)

	expired := alice
	expired.TTL = -time.Minute
	wantErr(t, "negative TTL", srv.Client(expired).Storage.KV.Del(ctx, "k"), client.ErrInvalidToken)
}

// Server.Client registers an app once and leaves an existing one alone.
func TestCpodtestClientRegistersOnce(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	ctx := context.Background()
	readOnly := cpodtest.Claims{Tenant: "t1", App: "ro", User: "u", Scopes: []string{"storage.private.read"}}
	c1 := srv.Client(readOnly)
	if _, _, err := c1.Storage.KV.Get(ctx, "k"); err != nil {
		t.Errorf("Get with the declared read scope: %v", err)
	}
	// The same app asked for again with more scopes keeps its declaration.
	more := readOnly
	more.Scopes = []string{"storage.private.read", "storage.private.write"}
	c2 := srv.Client(more)
	wantErr(t, "write scope never declared", c2.Storage.KV.Set(ctx, "k", "v", nil), client.ErrInvalidScope)

	// An app registered by the test first is not registered again.
	srv.RegisterApp(t, "pre", "storage.shared.read")
	c3 := srv.Client(cpodtest.Claims{Tenant: "t1", App: "pre", Scopes: []string{"storage.shared.read"}})
	if _, _, err := c3.Storage.KV.WithTier(client.TierShared).Get(ctx, "k"); err != nil {
		t.Errorf("Get as a pre-registered app: %v", err)
	}

	// Parallel calls for one new app register it once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "burst", Scopes: allScopes})
			if err := c.Storage.KV.Set(ctx, "k", "v", nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
