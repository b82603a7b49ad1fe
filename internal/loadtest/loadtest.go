// Package loadtest drives a mixed load (kv, documents, small files) against
// a cpod storage server and reports what it saw: every status, the 5xx and
// transport errors, latencies, and the longest time no request completed
// (a stall). It is used by the embedded backends' load tests.
package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	// URL is the server's base URL, such as http://127.0.0.1:8080.
	URL string
	// Token is a bearer token with storage.private.read and .write.
	Token string
	// Concurrency is the number of workers, each with one request in
	// flight. Default 64.
	Concurrency int
	// Duration is how long new requests are sent. Default 5s.
	Duration time.Duration
	// Drain bounds the wait for the requests in flight once Duration is
	// over; those still running then count as stalled. Default 30s.
	Drain time.Duration
	// Only, if set, restricts the mix to these operations (such as
	// "doc.set"). Default: all of them.
	Only []string
	// Client sends the requests. Default: a client with Concurrency idle
	// connections per host.
	Client *http.Client
}

// Result is what a run saw.
type Result struct {
	Requests   int64            // completed requests
	ByOp       map[string]int64 // completed requests per operation
	Status     map[int]int64    // responses per status code
	Server5xx  int64            // responses 500-599
	Errors     int64            // transport errors (no response)
	Unexpected []string         // first few unexpected answers
	Stalled    int64            // requests still in flight after Drain
	Elapsed    time.Duration    // from the first request to the last answer
	P50, P99   time.Duration
	Max        time.Duration
	LongestGap time.Duration // longest time with no request completing
}

// RPS is completed requests per second.
func (r Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r Result) String() string {
	ops := make([]string, 0, len(r.ByOp))
	for op, n := range r.ByOp {
		ops = append(ops, fmt.Sprintf("%s=%d", op, n))
	}
	sort.Strings(ops)
	return fmt.Sprintf("%d requests in %v (%.0f/s), 5xx %d, transport errors %d, stalled %d, latency p50 %v p99 %v max %v, longest gap %v, statuses %v, ops %s",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.RPS(), r.Server5xx, r.Errors, r.Stalled,
		r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond),
		r.LongestGap.Round(time.Millisecond), r.Status, strings.Join(ops, " "))
}

type op struct {
	name   string
	weight int
	// do builds the request of worker w, call i; ok tells whether a
	// status is an expected answer.
	do func(w, i int, rnd *rand.Rand) (method, path string, body []byte)
	ok func(status int) bool
}

func oneOf(codes ...int) func(int) bool {
	return func(s int) bool { return slices.Contains(codes, s) }
}

// ops is the mix: about a third each of kv, documents and files, with hot
// keys that every worker writes (counters, one shared document) besides
// each worker's own.
var ops = []op{
	{"kv.set", 10, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "PUT", fmt.Sprintf("/v1/storage/kv/w%d:k%d", w, rnd.IntN(50)), []byte(fmt.Sprintf(`{"value":"v%d","ttl":600}`, i))
	}, oneOf(204)},
	{"kv.get", 12, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "GET", fmt.Sprintf("/v1/storage/kv/w%d:k%d", w, rnd.IntN(50)), nil
	}, oneOf(200, 404)},
	{"kv.incr", 6, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "POST", fmt.Sprintf("/v1/storage/kv/counter:%d", rnd.IntN(4)), []byte(`{"by":1}`)
	}, oneOf(200)},
	{"doc.set", 10, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "PUT", fmt.Sprintf("/v1/storage/db/load/w%d-d%d", w, rnd.IntN(50)), []byte(fmt.Sprintf(`{"worker":%d,"i":%d,"tag":"t%d"}`, w, i, rnd.IntN(5)))
	}, oneOf(200)},
	{"doc.set.hot", 4, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "PUT", fmt.Sprintf("/v1/storage/db/load/hot-%d", rnd.IntN(3)), []byte(fmt.Sprintf(`{"worker":%d,"i":%d,"tag":"hot"}`, w, i))
	}, oneOf(200)},
	{"doc.get", 10, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "GET", fmt.Sprintf("/v1/storage/db/load/w%d-d%d", w, rnd.IntN(50)), nil
	}, oneOf(200, 404)},
	{"doc.query", 4, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "POST", "/v1/storage/db/load/query", []byte(fmt.Sprintf(`{"filter":{"tag":"t%d"},"sort":{"i":-1},"limit":20}`, rnd.IntN(5)))
	}, oneOf(200)},
	{"file.put", 8, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "PUT", fmt.Sprintf("/v1/storage/files/load/w%d/f%d.bin", w, rnd.IntN(20)), bytes.Repeat([]byte{byte(i)}, 1<<10+rnd.IntN(15<<10))
	}, oneOf(200)},
	{"file.get", 10, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "GET", fmt.Sprintf("/v1/storage/files/load/w%d/f%d.bin", w, rnd.IntN(20)), nil
	}, oneOf(200, 404)},
	{"file.list", 2, func(w, i int, rnd *rand.Rand) (string, string, []byte) {
		return "GET", fmt.Sprintf("/v1/storage/files?prefix=load/w%d/&limit=50", w), nil
	}, oneOf(200)},
}

// Run sends the load and reports; it returns early if ctx ends.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 30 * time.Second
	}
	if cfg.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Concurrency
		cfg.Client = &http.Client{Transport: tr}
	}
	mix := ops
	if len(cfg.Only) > 0 {
		mix = nil
		for _, o := range ops {
			if slices.Contains(cfg.Only, o.name) {
				mix = append(mix, o)
			}
		}
	}
	total := 0
	for _, o := range mix {
		total += o.weight
	}
	var (
		mu        sync.Mutex
		res       = Result{ByOp: map[string]int64{}, Status: map[int]int64{}}
		latencies []time.Duration
		lastDone  atomic.Int64 // unix nanos of the last completion
		inFlight  atomic.Int64
	)
	began := time.Now()
	lastDone.Store(began.UnixNano())
	stopSending := time.Now().Add(cfg.Duration)
	var gapMu sync.Mutex
	longest := time.Duration(0)
	watchDone := make(chan struct{})
	go func() { // the longest time with no completion, sampled
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-watchDone:
				return
			case now := <-t.C:
				if inFlight.Load() == 0 {
					continue
				}
				gap := now.Sub(time.Unix(0, lastDone.Load()))
				gapMu.Lock()
				longest = max(longest, gap)
				gapMu.Unlock()
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(began.UnixNano())))
			for i := 0; time.Now().Before(stopSending) && ctx.Err() == nil; i++ {
				pick := rnd.IntN(total)
				o := mix[0]
				for _, c := range mix {
					if pick < c.weight {
						o = c
						break
					}
					pick -= c.weight
				}
				method, path, body := o.do(w, i, rnd)
				var rd io.Reader
				if body != nil {
					rd = bytes.NewReader(body)
				}
				req, err := http.NewRequestWithContext(ctx, method, cfg.URL+path, rd)
				if err != nil {
					panic(err)
				}
				req.Header.Set("Authorization", "Bearer "+cfg.Token)
				t0 := time.Now()
				inFlight.Add(1)
				resp, err := cfg.Client.Do(req)
				status := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				d := time.Since(t0)
				inFlight.Add(-1)
				lastDone.Store(time.Now().UnixNano())
				mu.Lock()
				res.Requests++
				res.ByOp[o.name]++
				latencies = append(latencies, d)
				switch {
				case err != nil:
					res.Errors++
					if len(res.Unexpected) < 5 {
						res.Unexpected = append(res.Unexpected, fmt.Sprintf("%s %s: %v", method, path, err))
					}
				default:
					res.Status[status]++
					if status >= 500 {
						res.Server5xx++
					}
					if !o.ok(status) && len(res.Unexpected) < 5 {
						res.Unexpected = append(res.Unexpected, fmt.Sprintf("%s %s: %d", method, path, status))
					}
				}
				mu.Unlock()
			}
		}()
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Until(stopSending) + cfg.Drain):
		res.Stalled = inFlight.Load()
	case <-ctx.Done():
	}
	close(watchDone)
	mu.Lock()
	defer mu.Unlock()
	res.Elapsed = time.Since(began)
	gapMu.Lock()
	res.LongestGap = longest
	gapMu.Unlock()
	if res.Stalled > 0 {
		res.LongestGap = max(res.LongestGap, time.Since(time.Unix(0, lastDone.Load())))
	}
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		res.P50, res.P99, res.Max = latencies[n/2], latencies[n*99/100], latencies[n-1]
	}
	// Copies: workers left stalled may still write to the originals.
	res.ByOp, res.Status = maps.Clone(res.ByOp), maps.Clone(res.Status)
	res.Unexpected = slices.Clone(res.Unexpected)
	return res
}
