package embedded_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/embedded"
)

// TestKVSurvivesRestart: with Dir, kv lives in the SQLite store
// (cpod.db): keys, values and TTLs written through the engine are there
// after Close and Start, counters count on, and no miniredis runs.
func TestKVSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	secret := []byte("kv-restart-test-secret-0123456789ab")
	engine := func(b *embedded.Backends) http.Handler {
		t.Helper()
		if b.Redis != nil || b.Miniredis != nil {
			t.Fatal("miniredis runs beside the SQLite store")
		}
		e, err := storage.New(storage.Config{
			S3: b.S3, Bucket: b.Bucket, SQL: b.SQL,
			Auth:       storage.AuthConfig{Keys: []storage.Key{{Secret: secret}}},
			SigningKey: []byte("kv-restart-test-signing-key-0123456789"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.RegisterApp(ctx, storage.App{ClientID: "app-a", Name: "a", DeclaredScopes: storage.Scopes, AppType: "service"}); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
		return e
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"tenantId": "t1", "client_id": "app-a", "exp": time.Now().Add(time.Hour).Unix(),
		"scope": "storage.private.read storage.private.write",
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	call := func(h http.Handler, method, path, body string) string {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return fmt.Sprintf("%d %s", w.Code, strings.TrimSpace(w.Body.String()))
	}
	cfg := embedded.Config{Dir: dir}
	b, err := embedded.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := engine(b)
	for _, c := range [][3]string{
		{"PUT", "/v1/storage/kv/plain", `{"value":"v"}`},
		{"PUT", "/v1/storage/kv/ttl", `{"value":"soon","ttl":3600}`},
		{"POST", "/v1/storage/kv/counter", `{"by":41}`},
	} {
		if got := call(e, c[0], c[1], c[2]); got[0] != '2' {
			t.Fatalf("%s %s: %s", c[0], c[1], got)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err = embedded.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	e = engine(b)
	for _, c := range [][2]string{
		{"GET /v1/storage/kv/plain", `200 {"value":"v","ttl":-1}`},
		{"GET /v1/storage/kv/ttl", `200 {"value":"soon","ttl":3600}`},
		{"POST /v1/storage/kv/counter", `200 {"value":42}`},
	} {
		method, path, _ := strings.Cut(c[0], " ")
		got := call(e, method, path, "")
		if got != c[1] && !(strings.HasSuffix(path, "/ttl") && got == `200 {"value":"soon","ttl":3599}`) {
			t.Errorf("%s after a restart: %s, want %s", c[0], got, c[1])
		}
	}
}

// TestKVTTLsRunOnTheWallClock: miniredis (kv beside FerretDB or without
// documents) with no test clock: TTLs count down and keys expire on the
// wall clock, as in Redis (to within 10 ms). The bounds come from the wall
// clock measured around each command, not from what the sleep asked for:
// under -race on busy cores a 150 ms sleep can take 280 ms, and the TTL
// must have counted that time.
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
