package storage_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestReadyzBackendFaults: /readyz reflects what requests see. Each backend
// in turn is frozen (accepts, never answers) or refuses connections; the
// answer is 503 naming that backend unavailable and the others ok, within
// BackendTimeout plus a margin, and 200 again once the backend is back.
func TestReadyzBackendFaults(t *testing.T) {
	const timeout = 500 * time.Millisecond
	rig := newFaultRig(t, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = timeout }))
	srv := rig.srv
	ready := func() bool { return do(t, srv, "GET", "/readyz", "", nil).status == 200 }
	eventually(t, 10*time.Second, ready)
	for _, backend := range []string{"mongodb", "redis", "s3"} {
		p := map[string]*faultProxy{"mongodb": rig.mongo, "redis": rig.redis, "s3": rig.s3}[backend]
		for _, mode := range []faultMode{freeze, refuse} {
			p.set(mode)
			start := time.Now()
			r := do(t, srv, "GET", "/readyz", "", nil)
			took := time.Since(start)
			// An error like any other, naming the backend, with each one's state.
			wantStatus(t, r, 503, "backend_unavailable")
			equal(t, "Retry-After", r.header.Get("Retry-After"), "1")
			var body struct {
				Status   string
				Message  string
				Backends map[string]string
			}
			decode(t, r, &body)
			equal(t, "message", body.Message, "not ready: "+backend+" unavailable")
			for _, b := range []string{"mongodb", "redis", "s3"} {
				want := "ok"
				if b == backend {
					want = "unavailable"
				}
				if body.Backends[b] != want {
					t.Fatalf("%s %s: %s is %q, want %q (%s)", backend, mode, b, body.Backends[b], want, r.body)
				}
			}
			if took > timeout+2*time.Second {
				t.Fatalf("%s %s: /readyz took %v", backend, mode, took)
			}
			p.set(pass)
			eventually(t, 15*time.Second, ready)
		}
	}
}

// stuckHook makes every Redis command hang for d, ignoring its context, as
// a client stuck in a call would.
type stuckHook struct{ d time.Duration }

func (h stuckHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h stuckHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		time.Sleep(h.d)
		return next(ctx, cmd)
	}
}
func (h stuckHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestReadyzClientIgnoresContext: a backend client that does not honour the
// context does not hold /readyz beyond BackendTimeout.
func TestReadyzClientIgnoresContext(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	redisOnly(t, srv, "a Redis client stuck in a call")
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	rc.AddHook(stuckHook{3 * time.Second})
	defer rc.Close()
	e, err := storage.New(storage.Config{
		S3: srv.S3, Bucket: srv.Bucket, Mongo: srv.Mongo, SQL: srv.SQL, Redis: rc,
		Auth:           storage.AuthConfig{Keys: []storage.Key{{Secret: srv.TokenKey()}}},
		SigningKey:     []byte(strings.Repeat("k", 32)),
		BackendTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("/readyz took %v", took)
	}
	equal(t, "status", w.Code, 503)
	equal(t, "body", strings.TrimSpace(w.Body.String()), `{"backends":`+backendsJSON(srv, map[string]string{"redis": "unavailable"})+`,"error":"backend_unavailable","message":"not ready: redis unavailable","status":"unavailable"}`)
}

// TestReadyzChecks: the checks of Config.ReadyChecks run with the backends'.
// /readyz reports each under "checks" with its facts, answers 503 naming a
// failing check and its reason while it fails (the backends still ok), and
// 200 once it passes again; a check that does not return in time counts as
// failed. The answers are validated against openapi.json (cpodtest's
// contract check). Names that are not check names are refused by New.
func TestReadyzChecks(t *testing.T) {
	t.Parallel()
	var free atomic.Int64
	free.Store(100 << 20)
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	var hang atomic.Bool
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		// Short enough for the hanging check to end the answer well
		// within 2 s; long enough for a backend's first ping under -race
		// on a loaded machine (300 ms was not: CI run 6 of the third wave
		// saw miniredis answer its first GET after it).
		c.BackendTimeout = time.Second
		c.ReadyChecks = map[string]storage.ReadyCheck{
			"disk": func(ctx context.Context) (map[string]int64, error) {
				f := free.Load()
				facts := map[string]int64{"freeBytes": f, "minFreeBytes": 64 << 20}
				if f < 64<<20 {
					return facts, fmt.Errorf("%d MiB free in the data directory, below the floor of 64 MiB", f>>20)
				}
				return facts, nil
			},
			"other": func(ctx context.Context) (map[string]int64, error) {
				if hang.Load() {
					<-stuck // ignores its context
				}
				return nil, nil
			},
		}
	}))
	type check struct {
		Status       string
		Message      string
		FreeBytes    int64
		MinFreeBytes int64
	}
	var body struct {
		Error, Message, Status string
		Backends               map[string]string
		Checks                 map[string]check
	}
	r := do(t, srv, "GET", "/readyz", "", nil)
	wantStatus(t, r, 200, "")
	decode(t, r, &body)
	equal(t, "disk", body.Checks["disk"], check{Status: "ok", FreeBytes: 100 << 20, MinFreeBytes: 64 << 20})
	equal(t, "other", body.Checks["other"], check{Status: "ok"})

	free.Store(3 << 20)
	r = do(t, srv, "GET", "/readyz", "", nil)
	wantStatus(t, r, 503, "backend_unavailable")
	body.Checks = nil
	decode(t, r, &body)
	equal(t, "message", body.Message, "not ready: disk: 3 MiB free in the data directory, below the floor of 64 MiB")
	equal(t, "disk", body.Checks["disk"], check{Status: "unavailable", Message: "3 MiB free in the data directory, below the floor of 64 MiB", FreeBytes: 3 << 20, MinFreeBytes: 64 << 20})
	for name, st := range body.Backends {
		equal(t, name, st, "ok")
	}

	free.Store(100 << 20)
	hang.Store(true)
	start := time.Now()
	r = do(t, srv, "GET", "/readyz", "", nil)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("/readyz took %v with a check that never returns", took)
	}
	wantStatus(t, r, 503, "backend_unavailable")
	decode(t, r, &body)
	equal(t, "message", body.Message, "not ready: other: no answer within the backend timeout")
	hang.Store(false)
	wantStatus(t, do(t, srv, "GET", "/readyz", "", nil), 200, "")

	for _, name := range []string{"", "Disk", "s3", "sqlite", "a b", strings.Repeat("x", 33)} {
		_, err := storage.New(storage.Config{
			S3: srv.S3, Bucket: srv.Bucket, Mongo: srv.Mongo, SQL: srv.SQL, Redis: srv.Redis,
			Auth:        storage.AuthConfig{Keys: []storage.Key{{Secret: srv.TokenKey()}}},
			SigningKey:  []byte(strings.Repeat("k", 32)),
			ReadyChecks: map[string]storage.ReadyCheck{name: func(context.Context) (map[string]int64, error) { return nil, nil }},
		})
		if err == nil || !strings.Contains(err.Error(), "ReadyChecks") {
			t.Errorf("ReadyChecks name %q: New = %v, want an error naming Config.ReadyChecks", name, err)
		}
	}
}
