package storage_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cpod/storage/cpodtest"
)

// BenchmarkKVPaddedBodies: tenant t1 keeps 48 kv PUTs of padded 12 MiB
// bodies (a 1 MiB value and 11 MiB of whitespace: the largest body a kv
// PUT reads) in flight; reported are the peak Go heap above the level
// before (MB-peak: the process' memory for them, the body budget's bound
// being Limits.MaxBodyMemory, 128 MiB by default, a tenant a quarter of
// it), and tenant t2's kv GET beside them as a ratio to alone (x-alone).
// Before the body budget, 16 such bodies took RSS from 53 MB to 854 MB and
// 48 to 2.25 GB.
func BenchmarkKVPaddedBodies(b *testing.B) {
	srv := cpodtest.NewServer(b)
	srv.RegisterApp(b, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	tok2 := srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", Scopes: allScopes})
	if r := do(b, srv, "PUT", "/v1/storage/kv/k", tok2, `{"value":"v"}`); r.status != 204 {
		b.Fatalf("setup: %d %.200s", r.status, r.body)
	}
	body := `{"value":"` + strings.Repeat("x", 1<<20-64) + `"` + strings.Repeat(" ", 11<<20) + `}`
	get := func() time.Duration {
		s := time.Now()
		if r := do(b, srv, "GET", "/v1/storage/kv/k", tok2, nil); r.status != 200 {
			b.Errorf("GET: %d %.200s", r.status, r.body)
		}
		return time.Since(s)
	}
	var alone time.Duration
	for range 20 {
		alone += get()
	}
	alone /= 20
	stop := make(chan struct{})
	var peak uint64
	peakDone := make(chan struct{})
	go func() { peak = peakHeap(func() { <-stop }); close(peakDone) }()
	time.Sleep(50 * time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/v1/storage/kv/pad%d", srv.URL, i), strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					res.Body.Close()
					mu.Lock()
					codes[res.StatusCode]++
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Second)
	var busy time.Duration
	for b.Loop() {
		busy += get()
	}
	close(stop)
	wg.Wait()
	<-peakDone
	b.Logf("t1's padded PUTs answered: %v", codes)
	b.ReportMetric(float64(peak)/(1<<20), "MB-peak")
	b.ReportMetric(float64(alone)/1e6, "ms-alone")
	b.ReportMetric(float64(busy)/float64(b.N)/1e6, "ms-beside")
	b.ReportMetric(float64(busy)/float64(b.N)/float64(alone), "x-alone")
}
