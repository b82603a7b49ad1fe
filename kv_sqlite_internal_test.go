package storage

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestNewStoreSets: the stores come as one set, MongoDB and Redis or a
// SQLite database alone, and New says what is wrong with any other mix.
func TestNewStoreSets(t *testing.T) {
	t.Parallel()
	s3, err := minio.New("127.0.0.1:1", &minio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mongo.Connect() // no server is contacted
	if err != nil {
		t.Fatal(err)
	}
	db := openKVTestDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	base := Config{S3: s3, Bucket: "b", Auth: AuthConfig{Keys: []Key{{Secret: []byte(strings.Repeat("k", 32))}}}, SigningKey: []byte(strings.Repeat("s", 32))}
	for _, tc := range []struct {
		name  string
		mongo bool
		redis bool
		sql   bool
		want  string // "" accepted
	}{
		{"mongo and redis", true, true, false, ""},
		{"sql", false, false, true, ""},
		{"mongo alone", true, false, false, "Config.Redis is required with Config.Mongo"},
		{"sql and redis", false, true, true, "Config.Redis must be nil with Config.SQL"},
		{"mongo and sql", true, false, true, "Config.Mongo and Config.SQL cannot both be set"},
		{"all three", true, true, true, "Config.Mongo and Config.SQL cannot both be set"},
		{"redis alone", false, true, false, "a store is required"},
		{"none", false, false, false, "a store is required"},
	} {
		cfg := base
		if tc.mongo {
			cfg.Mongo = mc.Database("d")
		}
		if tc.redis {
			cfg.Redis = rdb
		}
		if tc.sql {
			cfg.SQL = db
		}
		_, err := New(cfg)
		if tc.sql && !tc.redis && err == nil {
			// A nil *redis.Client (embedded.Backends.Redis on SQLite) is no
			// Redis.
			var none *redis.Client
			cfg.Redis = none
			if _, err := New(cfg); err != nil {
				t.Errorf("%s with a nil *redis.Client: %v", tc.name, err)
			}
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// openKVTestDB opens a SQLite database in a temporary directory as the
// embedded store does (WAL, synchronous NORMAL, busy timeout).
func openKVTestDB(t testing.TB) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kv.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// kvTestStore is a SQLite kv driver on its own database with a clock the
// test moves (Unix ms).
func kvTestStore(t testing.TB) (*sqliteKV, *atomic.Int64) {
	t.Helper()
	var now atomic.Int64
	now.Store(1_700_000_000_000)
	cfg := Config{Now: func() time.Time { return time.UnixMilli(now.Load()) }, BackendTimeout: 10 * time.Second}
	cfg.Logger = slog.New(slog.DiscardHandler)
	return newSQLiteKV(newSQLStore(openKVTestDB(t), cfg.Logger), cfg), &now
}

// TestKVInt: a value counts as an integer exactly when Redis' INCRBY reads
// it as one (string2ll): the canonical decimal of an int64.
func TestKVInt(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808", "100"} {
		n, ok := kvInt(s)
		if !ok || strconv.FormatInt(n, 10) != s {
			t.Errorf("kvInt(%q) = %d, %v", s, n, ok)
		}
	}
	for _, s := range []string{"", "-", "+1", "01", "-0", "00", "-01", " 1", "1 ", "1.0", "1e3", "0x10", "9223372036854775808",
		"-9223372036854775809", "99999999999999999999", "１", "\u00001"} {
		if n, ok := kvInt(s); ok {
			t.Errorf("kvInt(%q) = %d, accepted", s, n)
		}
	}
	for _, tc := range []struct {
		n, by int64
		ok    bool
	}{
		{1, 2, true}, {math.MaxInt64, 1, false}, {math.MaxInt64 - 1, 1, true}, {math.MinInt64, -1, false},
		{math.MinInt64, 1, true}, {-1, math.MinInt64, false}, {0, math.MinInt64, true}, {1, math.MaxInt64, false},
	} {
		if sum, ok := kvAdd(tc.n, tc.by); ok != tc.ok || (ok && sum != tc.n+tc.by) {
			t.Errorf("kvAdd(%d, %d) = %d, %v", tc.n, tc.by, sum, ok)
		}
	}
}

// TestKVSQLiteDriver: each method's contract (kv_store.go) on the SQLite
// driver, at the edges of a TTL, with the engine's clock moved by hand.
func TestKVSQLiteDriver(t *testing.T) {
	t.Parallel()
	q, now := kvTestStore(t)
	ctx := context.Background()
	mustSet := func(key, v string, ttl time.Duration, cond kvCond) {
		t.Helper()
		if err := q.set(ctx, key, v, ttl, cond); err != nil {
			t.Fatalf("set %s: %v", key, err)
		}
	}
	get := func(key string) string {
		t.Helper()
		v, ttl, found, err := q.get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			return "missing"
		}
		return fmt.Sprintf("%s ttl %d", v, ttl)
	}
	isCode := func(err error, code Code) bool { e, ok := err.(*Error); return ok && e.Code == code }

	mustSet("t/apps/a/k", "v", 2*time.Second, kvCond{})
	equal(t, "fresh", get("t/apps/a/k"), "v ttl 2")
	now.Add(1001)
	equal(t, "after 1.001 s", get("t/apps/a/k"), "v ttl 1")
	now.Add(998)
	equal(t, "1 ms before the expiry", get("t/apps/a/k"), "v ttl 1")
	now.Add(1)
	equal(t, "at the expiry", get("t/apps/a/k"), "missing")
	if _, found, _ := q.ttl(ctx, "t/apps/a/k"); found {
		t.Fatal("HEAD found an expired key")
	}
	// The row is still there (not purged yet) and counts as missing for
	// every condition and for PATCH.
	if err := q.set(ctx, "t/apps/a/k", "w", 0, kvCond{hasValue: true, ifValue: "v"}); !isCode(err, CodeConflict) {
		t.Fatalf("ifValue on an expired key: %v", err)
	}
	if err := q.remove(ctx, "t/apps/a/k", kvCond{hasValue: true, ifValue: "v"}); !isCode(err, CodeConflict) {
		t.Fatalf("delete ifValue on an expired key: %v", err)
	}
	if found, err := q.expire(ctx, "t/apps/a/k", time.Minute); err != nil || found {
		t.Fatalf("expire of an expired key: found %v, %v", found, err)
	}
	mustSet("t/apps/a/k", "new", 0, kvCond{ifAbsent: true})
	equal(t, "ifAbsent over an expired key", get("t/apps/a/k"), "new ttl -1")
	if err := q.set(ctx, "t/apps/a/k", "x", 0, kvCond{ifAbsent: true}); !isCode(err, CodeConflict) {
		t.Fatalf("ifAbsent on a live key: %v", err)
	}
	equal(t, "after a refused ifAbsent", get("t/apps/a/k"), "new ttl -1")

	// INCR: an expired counter starts again from 0 without its TTL; a live
	// one keeps it; refusals write nothing.
	mustSet("t/apps/a/c", "5", time.Second, kvCond{})
	n, err := q.incr(ctx, "t/apps/a/c", 2)
	equal(t, "incr", fmt.Sprint(n, err), "7 <nil>")
	equal(t, "ttl kept", get("t/apps/a/c"), "7 ttl 1")
	now.Add(1000)
	n, err = q.incr(ctx, "t/apps/a/c", 2)
	equal(t, "incr of an expired counter", fmt.Sprint(n, err), "2 <nil>")
	equal(t, "no ttl", get("t/apps/a/c"), "2 ttl -1")
	for _, v := range []string{"9223372036854775807", "01", "+1", "-0", " 1", "abc", ""} {
		mustSet("t/apps/a/c", v, time.Minute, kvCond{})
		if _, err := q.incr(ctx, "t/apps/a/c", 1); !isCode(err, CodeNotInteger) {
			t.Errorf("incr of %q: %v, want not_integer", v, err)
		}
		equal(t, "unchanged "+v, get("t/apps/a/c"), v+" ttl 60")
	}
	mustSet("t/apps/a/c", "-9223372036854775807", 0, kvCond{})
	n, err = q.incr(ctx, "t/apps/a/c", -1)
	equal(t, "down to MinInt64", fmt.Sprint(n, err), "-9223372036854775808 <nil>")
	if _, err := q.incr(ctx, "t/apps/a/c", -1); !isCode(err, CodeNotInteger) {
		t.Errorf("below MinInt64: %v", err)
	}
	n, err = q.incr(ctx, "t/apps/a/c", math.MaxInt64)
	equal(t, "MinInt64 + MaxInt64", fmt.Sprint(n, err), "-1 <nil>")

	// PATCH ttl and its removal keep the value.
	found, err := q.expire(ctx, "t/apps/a/k", 90*time.Second)
	equal(t, "expire", fmt.Sprint(found, err), "true <nil>")
	equal(t, "after expire", get("t/apps/a/k"), "new ttl 90")
	found, err = q.expire(ctx, "t/apps/a/k", 0)
	equal(t, "persist", fmt.Sprint(found, err), "true <nil>")
	equal(t, "after persist", get("t/apps/a/k"), "new ttl -1")
	if err := q.remove(ctx, "t/apps/a/k", kvCond{hasValue: true, ifValue: "New"}); !isCode(err, CodeConflict) {
		t.Fatalf("delete ifValue of another value: %v", err)
	}
	if err := q.remove(ctx, "t/apps/a/k", kvCond{hasValue: true, ifValue: "new"}); err != nil {
		t.Fatal(err)
	}
	equal(t, "deleted", get("t/apps/a/k"), "missing")
	if err := q.remove(ctx, "t/apps/a/k", kvCond{}); err != nil {
		t.Fatalf("delete of a missing key: %v", err)
	}
}

// TestKVSQLiteEraseScan: erase and scan see exactly the prefix's keys, in
// batches; expired rows go with an erase but are neither counted nor
// exported.
func TestKVSQLiteEraseScan(t *testing.T) {
	t.Parallel()
	q, now := kvTestStore(t)
	ctx := context.Background()
	for _, k := range []string{"t1/users/u1/a", "t1/users/u1/b/c", "t1/users/u1/x", "t1/users/u10/a", "t1/users/u1", "t10/users/u1/a", "t1/apps/a/k"} {
		if err := q.set(ctx, k, "v of "+k, 0, kvCond{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.set(ctx, "t1/users/u1/gone", "expired", time.Second, kvCond{}); err != nil {
		t.Fatal(err)
	}
	if err := q.set(ctx, "t1/users/u1/x", "x", time.Hour, kvCond{}); err != nil {
		t.Fatal(err)
	}
	now.Add(2000)
	var got []string
	err := q.scan(ctx, "t1/users/u1/", func(key, value string, ttl int64) error {
		got = append(got, fmt.Sprintf("%s=%s/%d", key, value, ttl))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "scan", strings.Join(got, " "), "t1/users/u1/a=v of t1/users/u1/a/-1 t1/users/u1/b/c=v of t1/users/u1/b/c/-1 t1/users/u1/x=x/3598")
	var n int64
	batches := 0
	err = q.erase(ctx, "t1/users/u1/", eraseOptions{batch: 2, afterBatch: func(p string) { batches++ }}, &n)
	equal(t, "erase", fmt.Sprint(n, err), "3 <nil>")
	equal(t, "batches of 2 for 4 rows", batches, 2)
	n = 0
	err = q.erase(ctx, "t1/users/u1/", eraseOptions{}, &n)
	equal(t, "erase again", fmt.Sprint(n, err), "0 <nil>")
	var left []string
	rows, err := q.s.db.Query(`SELECT k FROM cpod_kv ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		rows.Scan(&k)
		left = append(left, k)
	}
	equal(t, "left", strings.Join(left, " "), "t1/apps/a/k t1/users/u1 t1/users/u10/a t10/users/u1/a")
}

// TestKVSQLitePurge: expired rows are removed at most a batch per step,
// earliest expiry first, and never a live one; the background loop then
// removes them all and stops once no row has an expiry.
func TestKVSQLitePurge(t *testing.T) {
	t.Parallel()
	q, now := kvTestStore(t)
	q.purgeBatch = 10
	ctx := context.Background()
	count := func() (all, expiring int) {
		t.Helper()
		if err := q.s.db.QueryRow(`SELECT count(*), count(nullif(exp, 0)) FROM cpod_kv`).Scan(&all, &expiring); err != nil {
			t.Fatal(err)
		}
		return all, expiring
	}
	// The loop is not started: steps by hand first.
	q.started.Store(true)
	q.purging = true
	for i := range 25 {
		if err := q.set(ctx, fmt.Sprintf("t/apps/a/e%02d", i), "v", time.Duration(i+1)*time.Second, kvCond{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.set(ctx, "t/apps/a/live", "v", time.Hour, kvCond{}); err != nil {
		t.Fatal(err)
	}
	if err := q.set(ctx, "t/apps/a/forever", "v", 0, kvCond{}); err != nil {
		t.Fatal(err)
	}
	now.Add(30_000) // all 25 expired
	deleted, next, err := q.purgeStep(ctx)
	equal(t, "first step", fmt.Sprint(deleted, err), "10 <nil>")
	equal(t, "next expiry", next, int64(1_700_000_011_000)) // e10's
	all, _ := count()
	equal(t, "rows after a step", all, 17)
	q.purgeStep(ctx)
	deleted, next, _ = q.purgeStep(ctx)
	equal(t, "third step", deleted, int64(5))
	equal(t, "next expiry: the live key's", next, now.Load()-30_000+3600_000)
	all, expiring := count()
	equal(t, "rows left", fmt.Sprint(all, expiring), "2 1")

	// The loop, started by a write with a TTL, removes what expires and
	// stops when no expiry is left.
	q.purging = false
	if err := q.set(ctx, "t/apps/a/soon", "v", time.Second, kvCond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.expire(ctx, "t/apps/a/live", 0); err != nil {
		t.Fatal(err)
	}
	now.Add(1000)
	deadline := time.Now().Add(30 * time.Second)
	for {
		q.purgeMu.Lock()
		running := q.purging
		q.purgeMu.Unlock()
		all, expiring := count()
		if !running && all == 2 && expiring == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: purge running %v, %d rows, %d with an expiry", running, all, expiring)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func equal[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}
