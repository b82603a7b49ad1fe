package embedded_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/embedded"
)

// TestKVSurvivesRestart: keys, values (any bytes) and TTLs of every type
// are written to a 0600 snapshot by Close and restored by Start; a key that
// expired while the backends were down is not restored.
func TestKVSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	cfg := embedded.Config{Dir: dir, NoFiles: true, NoDocuments: true}
	b, err := embedded.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := b.Redis
	bin := "k\x00\xff:*?[]\\\n"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Set(ctx, "plain", "v", 0).Err())
	must(r.Set(ctx, bin, "\x00\x01\xfe\xff", 0).Err())
	must(r.Set(ctx, "ttl", "soon", time.Hour).Err())
	must(r.Set(ctx, "short", "gone", 300*time.Millisecond).Err())
	must(r.IncrBy(ctx, "counter", 41).Err())
	must(r.HSet(ctx, "hash", "f1", "a", "f\x002", "b").Err())
	must(r.RPush(ctx, "list", "x", "y", "x").Err())
	must(r.SAdd(ctx, "set", "m1", "m2").Err())
	must(r.ZAdd(ctx, "zset", redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: -2, Member: "b"}).Err())
	must(b.Close(ctx))

	snap := filepath.Join(dir, embedded.KVSnapshot)
	fi, err := os.Stat(snap)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot: %v, %v; want a 0600 file", fi, err)
	}
	time.Sleep(400 * time.Millisecond) // "short" expires while down

	b, err = embedded.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	r = b.Redis
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s after restart: %#v, want %#v", name, got, want)
		}
	}
	check("plain", r.Get(ctx, "plain").Val(), "v")
	check("binary", r.Get(ctx, bin).Val(), "\x00\x01\xfe\xff")
	check("plain ttl", r.TTL(ctx, "plain").Val(), time.Duration(-1))
	if ttl := r.TTL(ctx, "ttl").Val(); ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("ttl after restart: %v, want about 1h", ttl)
	}
	check("expired key", r.Exists(ctx, "short").Val(), int64(0))
	check("counter", r.IncrBy(ctx, "counter", 1).Val(), int64(42))
	check("hash", r.HGetAll(ctx, "hash").Val(), map[string]string{"f1": "a", "f\x002": "b"})
	check("list", r.LRange(ctx, "list", 0, -1).Val(), []string{"x", "y", "x"})
	check("set", r.SIsMember(ctx, "set", "m2").Val(), true)
	check("zset", r.ZRangeWithScores(ctx, "zset", 0, -1).Val(), []redis.Z{{Score: -2, Member: "b"}, {Score: 1.5, Member: "a"}})
}

// TestKVSnapshotRefusedWhenReadable: a snapshot others can read is refused
// at start, like the secrets beside it, rather than served.
func TestKVSnapshotRefusedWhenReadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	if err := os.WriteFile(filepath.Join(dir, embedded.KVSnapshot), []byte(`{"version":1,"keys":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := embedded.Start(ctx, embedded.Config{Dir: dir, NoFiles: true, NoDocuments: true})
	if err == nil {
		b.Close(ctx)
		t.Fatal("started with a kv snapshot readable by others")
	}
}

// TestKVPeriodicSnapshot: while kv changes, the snapshot is written every
// KVSnapshotInterval, so a crash loses at most that much.
func TestKVPeriodicSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := embedded.Start(ctx, embedded.Config{Dir: dir, NoFiles: true, NoDocuments: true, KVSnapshotInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if err := b.Redis.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, embedded.KVSnapshot)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if data, err := os.ReadFile(snap); err == nil && len(data) > 0 {
			// A copy of the directory as a crash would leave it restores k.
			crash := t.TempDir()
			if err := os.WriteFile(filepath.Join(crash, embedded.KVSnapshot), data, 0o600); err != nil {
				t.Fatal(err)
			}
			b2, err := embedded.Start(ctx, embedded.Config{Dir: crash, NoFiles: true, NoDocuments: true})
			if err != nil {
				t.Fatal(err)
			}
			defer b2.Close(ctx)
			if v := b2.Redis.Get(ctx, "k").Val(); v != "v" {
				t.Fatalf("restored from the periodic snapshot: %q", v)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no periodic snapshot within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKVTTLsRunOnTheWallClock: with no test clock, TTLs count down and keys
// expire on the wall clock, as in Redis (to within 10 ms). The bounds come
// from the wall clock measured around each command, not from what the
// sleep asked for: under -race on busy cores a 150 ms sleep can take
// 280 ms, and the TTL must have counted that time.
func TestKVTTLsRunOnTheWallClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := embedded.Start(ctx, embedded.Config{Dir: t.TempDir(), NoFiles: true, NoDocuments: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	r := b.Redis
	const ttl = 300 * time.Millisecond
	// lag is how far miniredis' clock may trail the wall clock
	// (wallClockStep), and 1 ms more for PTTL's whole milliseconds.
	const lag = 10*time.Millisecond + time.Millisecond
	t0 := time.Now()
	if err := r.Set(ctx, "k", "v", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := r.Set(ctx, "long", "v", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	t2 := time.Now()
	got, err := r.PTTL(ctx, "k").Result()
	t3 := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	// The TTL started between t0 and t1 and was read between t2 and t3:
	// it has counted down at least t2-t1 and at most t3-t0 (each within
	// lag). A test clock that stood still, or ran fast, falls outside.
	lo, hi := ttl-t3.Sub(t0)-lag, ttl-t2.Sub(t1)+lag
	t.Logf("PTTL %v, %v to %v after the SET", got, t2.Sub(t1), t3.Sub(t0))
	switch {
	case got == -2: // expired (go-redis' PTTL of a missing key)
		if lo > 0 {
			t.Errorf("PTTL %v to %v after a %v TTL: the key expired, want %v to %v left", t2.Sub(t1), t3.Sub(t0), ttl, lo, hi)
		}
	case got < lo || got > hi:
		t.Errorf("PTTL %v to %v after a %v TTL: %v, want %v to %v", t2.Sub(t1), t3.Sub(t0), ttl, got, lo, hi)
	}
	// 350 ms or more after the SET, whatever the sleeps took.
	time.Sleep(200 * time.Millisecond)
	if n := r.Exists(ctx, "k").Val(); n != 0 {
		t.Errorf("key still there %v after a %v TTL", time.Since(t1), ttl)
	}
	if n := r.Exists(ctx, "long").Val(); n != 1 {
		t.Errorf("a key with a 1h TTL expired")
	}
}

// TestKVSnapshotOnlyAfterWrites: the periodic snapshot is written only
// after a command that changes data. Reads (GET, PTTL, EXISTS, SCAN ...)
// and the engine's unauthenticated GET /readyz (a Redis GET) never rewrite
// it: a load balancer's health check used to rewrite and fsync the whole
// store every interval. A write after them still does.
func TestKVSnapshotOnlyAfterWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	const every = 20 * time.Millisecond
	b, err := embedded.Start(ctx, embedded.Config{Dir: dir, KVSnapshotInterval: every, FerretDB: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	e, err := storage.New(storage.Config{
		S3: b.S3, Bucket: b.Bucket, Mongo: b.Mongo, Redis: b.Redis,
		Auth:       storage.AuthConfig{Keys: []storage.Key{{Secret: []byte("snapshot-test-secret-0123456789ab")}}},
		SigningKey: []byte("snapshot-test-signing-key-0123456789"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e)
	defer ts.Close()
	r := b.Redis
	snap := filepath.Join(dir, embedded.KVSnapshot)
	// written reports whether the snapshot was rewritten since fi (a new
	// file is renamed over it each time).
	written := func(fi os.FileInfo) bool {
		now, err := os.Stat(snap)
		if err != nil {
			t.Fatal(err)
		}
		return !os.SameFile(fi, now) || !now.ModTime().Equal(fi.ModTime())
	}
	// stable waits for the snapshot of the last write, then for one that
	// no tick rewrites for 10 intervals.
	stable := func() os.FileInfo {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			fi, err := os.Stat(snap)
			if err == nil {
				time.Sleep(10 * every)
				if !written(fi) {
					return fi
				}
			} else {
				time.Sleep(every)
			}
		}
		t.Fatal("the snapshot did not settle within 10s")
		return nil
	}
	if err := r.Set(ctx, "k", "v", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	fi := stable()

	// 300 ms (15 intervals) of reads, with the engine's readyz among them.
	for end := time.Now().Add(15 * every); time.Now().Before(end); {
		resp, err := http.Get(ts.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz: %s", resp.Status)
		}
		if v := r.Get(ctx, "k").Val(); v != "v" {
			t.Fatalf("GET k: %q", v)
		}
		_ = r.Get(ctx, "missing").Err()
		_ = r.PTTL(ctx, "k").Val()
		_ = r.TTL(ctx, "k").Val()
		_ = r.Exists(ctx, "k").Val()
		_ = r.MGet(ctx, "k", "missing").Val()
		_, _ = r.Scan(ctx, 0, "*", 100).Val()
		_ = r.Ping(ctx).Err()
		time.Sleep(every / 4)
	}
	time.Sleep(3 * every)
	if written(fi) {
		t.Fatal("reads (GET, PTTL, TTL, EXISTS, MGET, SCAN, PING, GET /readyz) rewrote the kv snapshot")
	}

	// A write still brings a snapshot, holding it.
	if err := r.Set(ctx, "k", "v2", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !written(fi) {
		if time.Now().After(deadline) {
			t.Fatal("a write brought no snapshot within 5s")
		}
		time.Sleep(every)
	}
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), base64.StdEncoding.EncodeToString([]byte("v2"))) {
		t.Fatalf("the snapshot after the write does not hold it: %.200s", data)
	}
}
