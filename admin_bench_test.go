package storage_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cpod/storage/cpodtest"
)

// zeros is an endless reader of 'x' bytes that allocates nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// heapPeak samples the live heap every millisecond until stop, and
// returns the highest value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// BenchmarkAdminExport exports a user holding docs documents and one file
// of fileMiB MiB, and reports the export's peak heap growth (peak live heap
// during the export less the live heap before it) next to a small export
// in the same run: the ratio stays near 1 whatever the export's size.
func BenchmarkAdminExport(b *testing.B) {
	for _, sz := range []struct{ docs, fileMiB int }{{100, 1}, {10000, 200}} {
		b.Run(fmt.Sprintf("docs=%d/file=%dMiB", sz.docs, sz.fileMiB), func(b *testing.B) {
			srv := cpodtest.NewServer(b)
			srv.RegisterApp(b, "a", allScopes...)
			tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes, TTL: time.Hour})
			for from := 0; from < sz.docs; from += 500 {
				r := do(b, srv, "POST", "/v1/storage/db/items/batch?tier=user", tok, setOps(from, min(500, sz.docs-from), 0))
				if err := checkBatch(r.status, r.body, min(500, sz.docs-from)); err != nil {
					b.Fatal(err)
				}
			}
			size := int64(sz.fileMiB) << 20
			if _, err := srv.S3.PutObject(context.Background(), srv.Bucket, "t1/users/u1/big.bin", io.LimitReader(zeros{}, size), size, minio.PutObjectOptions{PartSize: 16 << 20}); err != nil {
				b.Fatal(err)
			}
			var total atomic.Int64
			var peakGrowth float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				runtime.GC()
				s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
				metrics.Read(s)
				base := s[0].Value.Uint64()
				stop := make(chan struct{})
				peak := heapPeak(stop)
				req, _ := http.NewRequest("GET", srv.URL+"/v1/admin/tenants/t1/users/u1/export", nil)
				req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
				res, err := srv.HTTP.Client().Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				close(stop)
				if err != nil || res.StatusCode != http.StatusOK || n < size {
					b.Fatalf("export: status %d, %d bytes, %v", res.StatusCode, n, err)
				}
				total.Add(n)
				if p := <-peak; p > base {
					peakGrowth = max(peakGrowth, float64(p-base)/(1<<20))
				}
			}
			b.ReportMetric(peakGrowth, "peak-heap-growth-MiB")
			b.ReportMetric(float64(total.Load())/float64(b.N)/(1<<20), "tar-MiB")
		})
	}
}
