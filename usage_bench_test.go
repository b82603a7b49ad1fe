package storage_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// BenchmarkUsageCost measures what usage and quotas add to a write: the
// same request through ServeHTTP (no HTTP) of three engines, alternated in
// each iteration so that the machine's load drifts out of the ratios:
// "none" keeps no usage (storage.DisableUsage: the floor), "usage" keeps
// it with no quota (the default), "quota" keeps it and checks a quota on
// every write (high enough never to refuse). Requests: a kv PUT of a
// 30-byte value and a document PUT, each to one of 64 keys in turn (so
// they overwrite, as most writes do). Reported: microseconds per request
// of each, x-usage (usage / none) and x-quota (quota / usage, the goal's
// "with quotas on / without": at most 1.3). On cpodtest's default store
// (FerretDB and miniredis, or the real servers CPODTEST_* name) and on
// SQLite with CPODTEST_STORE=sqlite.
//
//	go test -run '^$' -bench 'BenchmarkUsageCost' -benchtime 2000x .
func BenchmarkUsageCost(b *testing.B) {
	none := usageBenchServer(b, storage.Quota{})
	storage.DisableUsage(b, none.srv.Engine)
	usage := usageBenchServer(b, storage.Quota{})
	quota := usageBenchServer(b, storage.Quota{
		Files: storage.Limit{Bytes: 1 << 40, Count: 1 << 40}, Documents: storage.Limit{Bytes: 1 << 40, Count: 1 << 40}, KV: storage.Limit{Bytes: 1 << 40, Count: 1 << 40}})
	for _, rq := range []struct{ what, path, body string }{
		{"kvSet", "/v1/storage/kv/k", `{"value":"a value of some thirty bytes."}`},
		{"docPut", "/v1/storage/db/c/k", `{"name":"a document","n":1}`},
	} {
		b.Run(rq.what, func(b *testing.B) {
			var t [3]time.Duration
			engines := [3]*rateBench{none, usage, quota}
			i := 0
			for b.Loop() {
				path := rq.path + strconv.Itoa(i%64)
				for j := range 3 {
					k := (i + j) % 3 // each goes first in turn
					t[k] += engines[k].put(b, path, rq.body)
				}
				i++
			}
			n := float64(b.N)
			b.ReportMetric(float64(t[0])/n/1e3, "us-none")
			b.ReportMetric(float64(t[1])/n/1e3, "us-usage")
			b.ReportMetric(float64(t[2])/n/1e3, "us-quota")
			b.ReportMetric(float64(t[1])/float64(t[0]), "x-usage")
			b.ReportMetric(float64(t[2])/float64(t[1]), "x-quota")
		})
	}
}

func usageBenchServer(b *testing.B, q storage.Quota) *rateBench {
	srv := cpodtest.NewServer(b, cpodtest.WithConfig(func(c *storage.Config) { c.DefaultQuota = q }))
	srv.RegisterApp(b, "app-a", allScopes...)
	return &rateBench{srv: srv, tok: srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})}
}

// put sends one PUT through ServeHTTP and returns how long it took.
func (rb *rateBench) put(b *testing.B, path, body string) time.Duration {
	r := httptest.NewRequest("PUT", path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+rb.tok)
	r.Header.Set("Content-Type", "application/json")
	w := &statusWriter{h: http.Header{}}
	start := time.Now()
	rb.srv.Engine.ServeHTTP(w, r)
	d := time.Since(start)
	if w.status != http.StatusOK && w.status != http.StatusNoContent {
		b.Fatalf("PUT %s: status %d", path, w.status)
	}
	return d
}
