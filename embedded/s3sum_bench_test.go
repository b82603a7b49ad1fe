package embedded

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// discardResponse is a ResponseWriter that throws the body away.
type discardResponse struct{ h http.Header }

func (d discardResponse) Header() http.Header         { return d.h }
func (d discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d discardResponse) WriteHeader(int)             {}

// BenchmarkS3GetVerify says what verifying checksums costs a GET of the
// embedded S3: each iteration serves the same object once verified and
// once not (alternating, so both see the same page cache and CPU state),
// and the run reports the throughput of each and their ratio
// (verified/unverified; 1 means free). "handler" calls the S3's handler
// directly (file read, checksum, no network: the worst case for the
// ratio); "minio-go" reads through the client the engine uses, over the
// S3's socket.
//
//	go test ./embedded -run '^$' -bench S3GetVerify -benchtime 20x
func BenchmarkS3GetVerify(b *testing.B) {
	for _, size := range []int{256 << 10, 4 << 20, 64 << 20} {
		for _, via := range []string{"handler", "minio-go"} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, via), func(b *testing.B) {
				bk, err := Start(context.Background(), Config{Dir: b.TempDir(), NoDocuments: true, NoKV: true, ScrubInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer bk.Close(context.Background())
				ctx := context.Background()
				data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
				if _, err := bk.S3.PutObject(ctx, bk.Bucket, "k", bytes.NewReader(data), int64(size), minio.PutObjectOptions{}); err != nil {
					b.Fatal(err)
				}
				get := func(verify bool) time.Duration {
					bk.files.noVerify.Store(!verify)
					start := time.Now()
					if via == "handler" {
						bk.files.ServeHTTP(discardResponse{http.Header{}}, httptest.NewRequest("GET", "/"+bk.Bucket+"/k", nil))
					} else {
						o, err := bk.S3.GetObject(ctx, bk.Bucket, "k", minio.GetObjectOptions{})
						if err != nil {
							b.Fatal(err)
						}
						n, err := io.Copy(io.Discard, o)
						o.Close()
						if err != nil || n != int64(size) {
							b.Fatal(n, err)
						}
					}
					return time.Since(start)
				}
				get(true)
				get(false)
				var on, off time.Duration
				b.SetBytes(int64(2 * size))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if i%2 == 0 {
						on += get(true)
						off += get(false)
					} else {
						off += get(false)
						on += get(true)
					}
				}
				b.StopTimer()
				mb := float64(size) * float64(b.N) / 1e6
				b.ReportMetric(mb/on.Seconds(), "verified-MB/s")
				b.ReportMetric(mb/off.Seconds(), "unverified-MB/s")
				b.ReportMetric(off.Seconds()/on.Seconds(), "ratio")
			})
		}
	}
}
