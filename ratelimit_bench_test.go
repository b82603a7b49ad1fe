package storage_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// BenchmarkRateLimitCheck measures what Config.RateLimit adds to a
// request: the same request through ServeHTTP (no HTTP) of an engine
// without limits and of one with them (high enough never to refuse),
// alternated in each iteration so that the machine's load drifts out of
// the ratio x-off (on / off). Paths: "redis" (the Redis script: one EVAL,
// on cpodtest's Redis, miniredis unless CPODTEST_REDIS_URL or
// CPODTEST_REDIS_ADDRS name a real one) and "process" (no Redis, as on the
// embedded store). Requests: a kv GET (one Redis GET of its own) and a
// document GET (no Redis of its own). redis-off/op and redis-on/op are
// the Redis commands of one request without and with limits: on the Redis
// path the check adds exactly one, in process none.
//
//	go test -run '^$' -bench 'BenchmarkRateLimitCheck' -benchtime 2000x .
func BenchmarkRateLimitCheck(b *testing.B) {
	for _, path := range []string{"redis", "process"} {
		off := rateBenchServer(b, storage.RateLimit{})
		on := rateBenchServer(b, storage.RateLimit{PerSecond: 1e6, Burst: 1e6})
		if path == "process" {
			storage.UseProcessRateLimits(on.srv.Engine)
		}
		for _, rq := range []struct{ what, path string }{
			{"kvGet", "/v1/storage/kv/k"},
			{"docGet", "/v1/storage/db/c/k"},
		} {
			b.Run(rq.what+"/path="+path, func(b *testing.B) {
				var tOff, tOn time.Duration
				offCalls, onCalls := off.srv.Calls().Redis, on.srv.Calls().Redis
				first := false
				for b.Loop() {
					// Which engine goes first alternates, so neither
					// gains from the other's warm caches.
					first = !first
					if first {
						tOff += off.serve(b, rq.path)
					}
					tOn += on.serve(b, rq.path)
					if !first {
						tOff += off.serve(b, rq.path)
					}
				}
				b.ReportMetric(float64(tOff)/float64(b.N)/1e3, "us-off")
				b.ReportMetric(float64(tOn)/float64(b.N)/1e3, "us-on")
				b.ReportMetric(float64(tOn)/float64(tOff), "x-off")
				b.ReportMetric(float64(off.srv.Calls().Redis-offCalls)/float64(b.N), "redis-off/op")
				b.ReportMetric(float64(on.srv.Calls().Redis-onCalls)/float64(b.N), "redis-on/op")
			})
		}
	}
}

// rateBench is an engine of BenchmarkRateLimitCheck and a token for it.
type rateBench struct {
	srv *cpodtest.Server
	tok string
}

// rateBenchServer starts an engine with the rate limit, with a kv value and
// a document to read.
func rateBenchServer(b *testing.B, rl storage.RateLimit) *rateBench {
	srv := cpodtest.NewServer(b, cpodtest.WithConfig(func(c *storage.Config) { c.RateLimit = rl }))
	srv.RegisterApp(b, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	rb := &rateBench{srv: srv, tok: tok}
	benchRequest(b, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"a value of some thirty bytes."}`, 204)
	benchRequest(b, srv, "PUT", "/v1/storage/db/c/k", tok, `{"name":"a document","n":1}`, 200)
	return rb
}

// serve sends one GET of path through ServeHTTP and returns how long it took.
func (rb *rateBench) serve(b *testing.B, path string) time.Duration {
	r := httptest.NewRequest("GET", path, nil)
	r.Header.Set("Authorization", "Bearer "+rb.tok)
	w := &statusWriter{h: http.Header{}}
	start := time.Now()
	rb.srv.Engine.ServeHTTP(w, r)
	d := time.Since(start)
	if w.status != http.StatusOK {
		b.Fatalf("GET %s: status %d", path, w.status)
	}
	return d
}
