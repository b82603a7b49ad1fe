package storage_test

import (
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpod/storage/cpodtest"
)

// The kv benchmarks of the embedded store (issue 22): the engine on the
// SQLite store as `go run ./httpserver` runs it (cpodtest.WithSQLite: the
// same OpenSQLite settings, a database file in a temporary directory),
//
//   - BenchmarkKVSQLiteGetRatio: a kv GET through the engine next to its
//     floor, an HTTP handler on the same kind of loopback server that runs
//     the same SELECT through database/sql on the same database (prepared,
//     as the engine's) and writes the same JSON; interleaved in a random
//     order each iteration so that load from other processes falls on both
//     alike. Goal: engine/floor <= 1.3.
//   - BenchmarkKVSQLiteWrites: kv SET (a new key each) and INCR (one
//     counter) from 16 concurrent clients, each its own keep-alive
//     connection; writes/s is the throughput. Goal: >= 2,000/s.
//
//	go test -run '^$' -bench 'BenchmarkKVSQLite' -count 5 . | tee kvsqlite.txt && benchstat kvsqlite.txt
//
// Measured (issue 22) on this 2-core machine shared with other work (load
// average 6 to 8), benchstat medians of 5 runs: floor 45.9 µs, engine
// 55.8 µs a GET; engine/floor 1.335 by means (1.22 to 1.48, the noise of
// the load), 1.270 by medians (1.255 to 1.274); SET 8,201 writes/s (5,383
// to 9,848), INCR of one counter 8,205 writes/s (6,479 to 12,883). In the
// same minutes the Redis path (BenchmarkHotPathKVGetRatio, miniredis)
// measured 1.27 to 1.43 by means and 1.22 to 1.25 by medians: the SQLite
// driver's part of a GET costs what its floor's SELECT costs, the rest is
// the engine's own work (token, app, routing, answer), the same on both.

// sqliteBenchServer is a cpodtest server on the SQLite store with one app
// and its token.
func sqliteBenchServer(b *testing.B) (*cpodtest.Server, string) {
	srv := cpodtest.NewServer(b, cpodtest.WithSQLite())
	srv.RegisterApp(b, "app-a", allScopes...)
	return srv, srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes, TTL: 24 * time.Hour})
}

// benchClient is an HTTP client that keeps up to 64 idle connections to a
// host (the default 2 would open a connection per request at 16 clients).
func benchClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr}
}

func BenchmarkKVSQLiteGetRatio(b *testing.B) {
	srv, tok := sqliteBenchServer(b)
	c := benchClient()
	benchRequest(b, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"a value of some thirty bytes."}`, 204)
	st, err := srv.SQL.Prepare(`SELECT v, exp FROM cpod_kv WHERE k = ?`)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	floor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v string
		var exp int64
		if err := st.QueryRowContext(r.Context(), "t1/apps/app-a/k").Scan(&v, &exp); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body, _ := json.Marshal(struct {
			Value string `json:"value"`
			TTL   int64  `json:"ttl"`
		}{v, -1})
		body = append(body, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	b.Cleanup(floor.Close)
	get := func(url, tok string) {
		req, _ := http.NewRequest("GET", url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n == 0 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
	reqs := []struct {
		name, url, tok string
		times          []time.Duration
	}{
		{name: "floor", url: floor.URL},
		{name: "engine", url: srv.URL + "/v1/storage/kv/k", tok: tok},
	}
	for i := range reqs { // warm both connections
		get(reqs[i].url, reqs[i].tok)
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for b.Loop() {
		first := rng.IntN(2)
		for _, i := range []int{first, 1 - first} {
			r := &reqs[i]
			start := time.Now()
			get(r.url, r.tok)
			r.times = append(r.times, time.Since(start))
		}
	}
	mean, p50 := map[string]float64{}, map[string]float64{}
	for _, r := range reqs {
		var total time.Duration
		for _, d := range r.times {
			total += d
		}
		mean[r.name] = float64(total) / float64(len(r.times))
		slices.Sort(r.times)
		p50[r.name] = float64(r.times[len(r.times)/2])
		b.ReportMetric(mean[r.name], r.name+"-ns/op")
	}
	b.ReportMetric(mean["engine"]/mean["floor"], "engine/floor")
	b.ReportMetric(p50["engine"]/p50["floor"], "engine/floor-p50")
}

func BenchmarkKVSQLiteWrites(b *testing.B) {
	const clients = 16
	for _, op := range []string{"set", "incr"} {
		b.Run(op, func(b *testing.B) {
			srv, tok := sqliteBenchServer(b)
			c := benchClient()
			var seq atomic.Int64
			b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var req *http.Request
					if op == "set" {
						req, _ = http.NewRequest("PUT", fmt.Sprintf("%s/v1/storage/kv/k%d", srv.URL, seq.Add(1)),
							strings.NewReader(`{"value":"a value of some thirty bytes.","ttl":3600}`))
					} else {
						req, _ = http.NewRequest("POST", srv.URL+"/v1/storage/kv/counter", nil)
					}
					req.Header.Set("Authorization", "Bearer "+tok)
					res, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode >= 300 {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}
