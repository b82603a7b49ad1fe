package storage_test

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

var (
	benchSubscribers = flag.Int("realtime.subs", 200, "subscribers of BenchmarkChangesLatency (the issue's figure: 1000)")
	benchWrites      = flag.Int("realtime.writes", 200, "writes of BenchmarkChangesLatency, at -realtime.rate per second")
	benchRate        = flag.Int("realtime.rate", 100, "writes per second of BenchmarkChangesLatency")
	benchIdle        = flag.Int("realtime.idle", 2000, "idle streams of BenchmarkChangesIdleStreams (the issue's figure: 10000)")
)

// BenchmarkChangesLatency: -realtime.subs streams follow one collection
// while one writer writes -realtime.writes documents at -realtime.rate per
// second; every event must reach every subscriber exactly once. It reports
// the write -> event latency (from sending the PUT to a subscriber reading
// the event) at p50 and p99, over all subscribers, on both hubs, the p99
// of the PUTs' own round trips (included in the latency), and the p99 of
// the time from a PUT's answer to its event (0 when the event came first).
//
//	go test -run '^$' -bench BenchmarkChangesLatency -benchtime 1x -realtime.subs 1000 .
func BenchmarkChangesLatency(b *testing.B) {
	for _, hub := range []struct {
		name string
		opts []cpodtest.Option
	}{{"redis", nil}, {"memory", []cpodtest.Option{cpodtest.WithSQLite()}}} {
		b.Run(hub.name, func(b *testing.B) {
			for range b.N {
				benchLatency(b, hub.opts...)
			}
		})
	}
}

func benchLatency(b *testing.B, opts ...cpodtest.Option) {
	srv := cpodtest.NewServer(b, append(opts, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxStreamsPerTenant = 1 << 20
		c.Limits.MaxStreams = 1 << 20
	}))...)
	srv.RegisterApp(b, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	subs, writes := *benchSubscribers, *benchWrites
	sent := make([]atomic.Int64, writes)
	lat := make([][]time.Duration, subs)
	var ready, done sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for i := range subs {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			req, _ := http.NewRequest("GET", srv.URL+"/v1/storage/db/bench/changes", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Accept", "text/event-stream")
			res, err := client.Do(req)
			if err != nil || res.StatusCode != 200 {
				b.Errorf("subscriber %d: %v %v", i, err, res)
				ready.Done()
				return
			}
			defer res.Body.Close()
			ready.Done()
			rd := bufio.NewReader(res.Body)
			for got := 0; got < writes; {
				line, err := rd.ReadString('\n')
				if err != nil {
					b.Errorf("subscriber %d after %d events: %v", i, got, err)
					return
				}
				if !strings.HasPrefix(line, `data: {"key":"k`) {
					if strings.HasPrefix(line, "event: reset") {
						b.Errorf("subscriber %d fell behind (reset)", i)
						return
					}
					continue
				}
				rest := line[len(`data: {"key":"k`):]
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, '"')])
				if n != got {
					b.Errorf("subscriber %d: event k%d, want k%d", i, n, got)
					return
				}
				lat[i] = append(lat[i], time.Duration(time.Now().UnixNano())) // arrival; see below
				got++
			}
		}()
	}
	ready.Wait()
	var msBefore runtime.MemStats
	runtime.ReadMemStats(&msBefore)
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(*benchRate))
	acks := make([]time.Duration, 0, writes) // each PUT's own round trip
	acked := make([]int64, writes)           // when each PUT was answered
	for n := range writes {
		<-tick.C
		t0 := time.Now()
		sent[n].Store(t0.UnixNano())
		r := do(b, srv, "PUT", fmt.Sprintf("/v1/storage/db/bench/k%d", n), tok, `{"text":"hello"}`)
		if r.status != 200 {
			b.Fatalf("write %d: %d %s", n, r.status, r.body)
		}
		acks = append(acks, time.Since(t0))
		acked[n] = time.Now().UnixNano()
	}
	tick.Stop()
	done.Wait()
	b.StopTimer()
	// lat[i][n] is when subscriber i read write n's event: the latency is
	// from sending the PUT; after its answer, what the event took beyond
	// the write's own round trip (0 when it came first: events are
	// published before the answer is sent).
	var all, afterAck []time.Duration
	for _, l := range lat {
		for n, at := range l {
			all = append(all, at-time.Duration(sent[n].Load()))
			afterAck = append(afterAck, max(0, at-time.Duration(acked[n])))
		}
	}
	if len(all) != subs*writes {
		b.Fatalf("%d events delivered, want %d", len(all), subs*writes)
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))]) / 1e6 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(all)), "events")
	// The write's own answer, which the latency above includes (an event
	// is published once the backend acknowledged the write).
	slices.Sort(acks)
	b.ReportMetric(float64(acks[int(0.99*float64(len(acks)-1))])/1e6, "write-p99-ms")
	slices.Sort(afterAck)
	b.ReportMetric(float64(afterAck[int(0.99*float64(len(afterAck)-1))])/1e6, "after-answer-p99-ms")
	b.ReportMetric(float64(rssKiB())/1024, "rss-MiB")
}

// BenchmarkChangesIdleStreams opens -realtime.idle idle streams on one
// server from raw connections (which hold no goroutine or buffer on the
// client side) and reports the memory each costs the process (heap and
// stacks in use, and RSS), on the in-process hub.
//
//	go test -run '^$' -bench BenchmarkChangesIdleStreams -benchtime 1x -realtime.idle 10000 .
func BenchmarkChangesIdleStreams(b *testing.B) {
	for range b.N {
		srv := cpodtest.NewServer(b, cpodtest.WithSQLite(), cpodtest.WithConfig(func(c *storage.Config) {
			c.Limits.MaxStreamsPerTenant = 1 << 20
			c.Limits.MaxStreams = 1 << 20
		}))
		srv.RegisterApp(b, "app-a", allScopes...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		addr := strings.TrimPrefix(srv.URL, "http://")
		req := "GET /v1/storage/db/idle/changes HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + tok + "\r\nAccept: text/event-stream\r\n\r\n"
		// Warm up (the first stream starts the shared tick and the hub).
		open := func() net.Conn {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write([]byte(req)); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 512)
			var got []byte
			for !strings.Contains(string(got), ": ok\n\n") {
				n, err := c.Read(buf)
				if err != nil {
					b.Fatalf("stream: %v (%q)", err, got)
				}
				got = append(got, buf[:n]...)
			}
			return c
		}
		first := open()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rssBefore := rssKiB()
		n := *benchIdle
		conns := make([]net.Conn, n)
		b.ResetTimer()
		for i := range conns {
			conns[i] = open()
		}
		b.StopTimer()
		for range 3 { // stacks shrink by half at each GC, as in a running server
			runtime.GC()
		}
		runtime.ReadMemStats(&after)
		rssAfter := rssKiB()
		inuse := func(m runtime.MemStats) float64 { return float64(m.HeapInuse + m.StackInuse) }
		b.ReportMetric((inuse(after)-inuse(before))/float64(n)/1024, "KiB-heap+stack/stream")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/float64(n)/1024, "KiB-stack/stream")
		b.ReportMetric(float64(rssAfter-rssBefore)/float64(n), "KiB-rss/stream")
		b.ReportMetric(float64(runtime.NumGoroutine())/float64(n), "goroutines/stream")
		for _, c := range append(conns, first) {
			c.Close()
		}
	}
}

// rssKiB is the process's resident set size in KiB (Linux), else 0.
func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
