package storage_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cpod/storage/cpodtest"
)

// peakHeap runs f and returns how far the Go heap (live and not yet swept
// objects) rose above its level before f, sampled every 200 µs. With the
// in-process FerretDB that includes the backend's own memory.
func peakHeap(f func()) (peak uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			if v := read(); v > base && v-base > peak {
				peak = v - base
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return peak
}

// physicalCollection is the one physical collection of the partitioned
// layout that holds coll's documents on srv's database.
func physicalCollection(tb testing.TB, srv *cpodtest.Server, coll string) *mongo.Collection {
	tb.Helper()
	names, err := srv.Mongo.ListCollectionNames(context.Background(), bson.D{})
	if err != nil {
		tb.Fatal(err)
	}
	var found []string
	for _, n := range names {
		if strings.HasPrefix(n, "cpod_documents.") && strings.HasSuffix(n, "."+coll) {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		tb.Skipf("no single partitioned collection for %q (layout single?): %q", coll, found)
	}
	return srv.Mongo.Collection(found[0])
}

// BenchmarkDocumentsCount times POST /db/{c}/count {} over 20k small
// documents (200k with CPOD_BENCH_LARGE=1) and the heap it takes at its
// peak, against the same count as CountDocuments (the driver's pipeline,
// $group, which the engine used before) on the same collection in the same
// iteration. With the in-process FerretDB the heap is the backend's; with
// CPODTEST_MONGO_URI only the times mean anything.
//
//	go test -run '^$' -bench 'BenchmarkDocumentsCount$' -benchtime 5x .
func BenchmarkDocumentsCount(b *testing.B) {
	n := 20000
	if os.Getenv("CPOD_BENCH_LARGE") != "" {
		n = 200000
	}
	srv, tok := largeBenchServer(b, true)
	loadDocs(b, srv, tok, "cnt", n, 500)
	pc := physicalCollection(b, srv, "cnt")
	want := fmt.Sprintf(`{"count":%d}`, n)
	var tEng, tGrp time.Duration
	var mEng, mGrp uint64
	for b.Loop() {
		var r resp
		s := time.Now()
		mEng = max(mEng, peakHeap(func() { r = do(b, srv, "POST", "/v1/storage/db/cnt/count", tok, `{}`) }))
		tEng += time.Since(s)
		if strings.TrimSpace(string(r.body)) != want {
			b.Fatalf("count: %d %s, want %s", r.status, r.body, want)
		}
		s = time.Now()
		var got int64
		var err error
		mGrp = max(mGrp, peakHeap(func() { got, err = pc.CountDocuments(context.Background(), bson.D{}) }))
		tGrp += time.Since(s)
		if err != nil || got != int64(n) {
			b.Fatalf("CountDocuments: %d, %v", got, err)
		}
	}
	b.ReportMetric(float64(tEng)/float64(b.N)/1e6, "ms-count")
	b.ReportMetric(float64(tGrp)/float64(b.N)/1e6, "ms-group")
	b.ReportMetric(float64(mEng)/(1<<20), "MB-peak-count")
	b.ReportMetric(float64(mGrp)/(1<<20), "MB-peak-group")
	b.ReportMetric(float64(mEng)/float64(mGrp), "x-mem-group")
}

// BenchmarkDocumentsLargeSets measures the peak heap of eight parallel
// PUTs of a 1 MiB value (an array of 4900 strings of 200 bytes) against
// that of one such PUT, in the same iteration: x-one is how many values'
// worth of memory the engine holds at once (at most about four with the
// parse budget). With the in-process FerretDB the heap includes the
// backend's.
//
//	go test -run '^$' -bench 'BenchmarkDocumentsLargeSets' -benchtime 3x .
func BenchmarkDocumentsLargeSets(b *testing.B) {
	srv, tok := largeBenchServer(b, true)
	var v strings.Builder
	v.WriteByte('[')
	for i := range 4900 {
		if i > 0 {
			v.WriteByte(',')
		}
		fmt.Fprintf(&v, "%q", strings.Repeat(string(rune('a'+i%26)), 200))
	}
	v.WriteByte(']')
	value := v.String()
	put := func(key string) {
		r := do(b, srv, "PUT", "/v1/storage/db/big/"+key, tok, value)
		if r.status != 200 {
			b.Errorf("put: %d %.200s", r.status, r.body)
		}
	}
	const par = 8
	var one, all uint64
	var tOne, tAll time.Duration
	for b.Loop() {
		s := time.Now()
		one = max(one, peakHeap(func() { put("k0") }))
		tOne += time.Since(s)
		s = time.Now()
		all = max(all, peakHeap(func() {
			var wg sync.WaitGroup
			for i := range par {
				wg.Add(1)
				go func() { defer wg.Done(); put(fmt.Sprintf("k%d", i)) }()
			}
			wg.Wait()
		}))
		tAll += time.Since(s)
	}
	b.ReportMetric(float64(one)/(1<<20), "MB-peak-one")
	b.ReportMetric(float64(all)/(1<<20), "MB-peak-8")
	b.ReportMetric(float64(all)/float64(one), "x-one")
	b.ReportMetric(float64(tOne)/float64(b.N)/1e6, "ms-one")
	b.ReportMetric(float64(tAll)/float64(b.N)/1e6, "ms-8")
}

// BenchmarkDocumentsCountNeighbor: while tenant t1 keeps eight {} counts
// over 20k documents running at once, tenant t2 counts its 10 documents;
// x-alone is t2's time over its time with t1 idle, measured in the same
// run, and MB-peak the heap's peak while t1's counts run (the in-process
// FerretDB's included). The read slots keep t1 to half of them.
//
//	go test -run '^$' -bench 'BenchmarkDocumentsCountNeighbor' -benchtime 20x .
func BenchmarkDocumentsCountNeighbor(b *testing.B) {
	srv, tok := largeBenchServer(b, true)
	loadDocs(b, srv, tok, "cnt", 20000, 500)
	tok2 := srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", Scopes: allScopes})
	loadDocs(b, srv, tok2, "small", 10, 10)
	count := func(tok, coll string) time.Duration {
		s := time.Now()
		r := do(b, srv, "POST", "/v1/storage/db/"+coll+"/count", tok, `{}`)
		if r.status != 200 {
			b.Errorf("count %s: %d %.200s", coll, r.status, r.body)
		}
		return time.Since(s)
	}
	var alone time.Duration
	for range 20 {
		alone += count(tok2, "small")
	}
	alone /= 20
	stop := make(chan struct{})
	var peak uint64
	peakDone := make(chan struct{})
	go func() { peak = peakHeap(func() { <-stop }); close(peakDone) }()
	time.Sleep(50 * time.Millisecond) // the peak counts from the heap before
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				count(tok, "cnt")
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	var busy time.Duration
	for b.Loop() {
		busy += count(tok2, "small")
	}
	close(stop)
	wg.Wait()
	<-peakDone
	b.ReportMetric(float64(alone)/1e6, "ms-alone")
	b.ReportMetric(float64(busy)/float64(b.N)/1e6, "ms-beside")
	b.ReportMetric(float64(busy)/float64(b.N)/float64(alone), "x-alone")
	b.ReportMetric(float64(peak)/(1<<20), "MB-peak")
}

// BenchmarkDocumentsPatchNeighbor: tenant t2's small PUT beside tenant
// t1's eight concurrent ~600 KiB merge patches, as a ratio to the same PUT
// alone in the same run (x-alone). Before the parse budget and the write
// slots had a share per tenant, the audit measured 324-397x (5 ms to
// 1.6-2.1 s) on FerretDB.
func BenchmarkDocumentsPatchNeighbor(b *testing.B) {
	srv, tok := largeBenchServer(b, true)
	tok2 := srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", Scopes: allScopes})
	big := `{"pad":"` + strings.Repeat("p", 600<<10) + `","n":0}`
	for i := range 8 {
		if r := do(b, srv, "PUT", fmt.Sprintf("/v1/storage/db/big/k%d", i), tok, big); r.status != 200 {
			b.Fatalf("setup: %d %.200s", r.status, r.body)
		}
	}
	put := func() time.Duration {
		s := time.Now()
		if r := do(b, srv, "PUT", "/v1/storage/db/small/k", tok2, `{"a":1}`); r.status != 200 {
			b.Errorf("small put: %d %.200s", r.status, r.body)
		}
		return time.Since(s)
	}
	var alone time.Duration
	for range 20 {
		alone += put()
	}
	alone /= 20
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				patch := fmt.Sprintf(`{"pad":"%s","n":%d}`, strings.Repeat(string(rune('a'+n%26)), 600<<10), n)
				do(b, srv, "PATCH", fmt.Sprintf("/v1/storage/db/big/k%d", i), tok, patch)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	var busy time.Duration
	for b.Loop() {
		busy += put()
	}
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(alone)/1e6, "ms-alone")
	b.ReportMetric(float64(busy)/float64(b.N)/1e6, "ms-beside")
	b.ReportMetric(float64(busy)/float64(b.N)/float64(alone), "x-alone")
}

// BenchmarkDocumentsQueryNeighbor: tenant t2's kv GET and document GET
// beside tenant t1's 16 concurrent worst-case queries over 20k documents
// (a filter no index serves, a sort on one of eight paths, so that past
// the per-collection index cap most shapes scan), as a ratio to the same
// GETs alone in the same run (x-alone), and the process' CPU in the second
// after t1's clients went away, in per cent of a core (cpu-after-%): a
// backend that goes on scanning for clients that left shows there. On
// FerretDB each scan runs to its end; on SQLite it stops with its request.
func BenchmarkDocumentsQueryNeighbor(b *testing.B) {
	srv, tok := largeBenchServer(b, true)
	loadDocs(b, srv, tok, "big", 20000, 500)
	tok2 := srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", Scopes: allScopes})
	if r := do(b, srv, "PUT", "/v1/storage/db/small/k", tok2, `{"a":1}`); r.status != 200 {
		b.Fatalf("setup: %d %.200s", r.status, r.body)
	}
	if r := do(b, srv, "PUT", "/v1/storage/kv/k", tok2, `{"value":"v"}`); r.status != 204 {
		b.Fatalf("setup: %d %.200s", r.status, r.body)
	}
	gets := func() time.Duration {
		s := time.Now()
		for _, p := range []string{"/v1/storage/kv/k", "/v1/storage/db/small/k"} {
			if r := do(b, srv, "GET", p, tok2, nil); r.status != 200 {
				b.Errorf("GET %s: %d %.200s", p, r.status, r.body)
			}
		}
		return time.Since(s)
	}
	var alone time.Duration
	for range 20 {
		alone += gets()
	}
	alone /= 20
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := i; ctx.Err() == nil; n++ {
				body := fmt.Sprintf(`{"filter":{"n":{"ne":-1}},"sort":{"f%d":1,"n":-1},"limit":1000}`, n%8)
				req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/storage/db/big/query", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				if res, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
		}()
	}
	time.Sleep(time.Second)
	var busy time.Duration
	for b.Loop() {
		busy += gets()
	}
	cancel() // t1's clients go away mid-query
	wg.Wait()
	before := cpuTime()
	time.Sleep(time.Second)
	after := cpuTime()
	b.ReportMetric(float64(alone)/1e6, "ms-alone")
	b.ReportMetric(float64(busy)/float64(b.N)/1e6, "ms-beside")
	b.ReportMetric(float64(busy)/float64(b.N)/float64(alone), "x-alone")
	b.ReportMetric(100*(after-before).Seconds(), "cpu-after-%")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
