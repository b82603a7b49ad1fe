package storage_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/cpod/storage/cpodtest"
)

// BenchmarkFilesUploadURL compares an upload through an upload URL with an
// authenticated PUT of the same bytes to the same S3, alternately in every
// iteration, and reports signed/authenticated time as "ratio" (goal about
// 1: both take the same upload path; the URL trades the JWT check for an
// HMAC check):
//
//	go test -run '^$' -bench 'BenchmarkFilesUploadURL' -benchtime 200x -count 3 .
func BenchmarkFilesUploadURL(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			srv := cpodtest.NewServer(b)
			srv.RegisterApp(b, "app-a", allScopes...)
			tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes, TTL: 24 * time.Hour})
			u := signUpload(b, srv, tok, map[string]any{"key": "bench/signed.bin", "expiresIn": 86400, "contentType": "application/octet-stream"})
			data := pattern(size)
			client := srv.HTTP.Client()
			put := func(url, token string) {
				req, err := http.NewRequest("PUT", url, bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/octet-stream")
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				if r := fileSend(b, client, req); r.status != http.StatusOK {
					b.Fatalf("status %d: %s", r.status, r.body)
				}
			}
			var signed, authed time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				put(u, "")
				signed += time.Since(start)
				start = time.Now()
				put(srv.URL+"/v1/storage/files/bench/authed.bin", tok)
				authed += time.Since(start)
			}
			b.ReportMetric(float64(signed)/float64(authed), "ratio")
			b.ReportMetric(float64(signed.Microseconds())/float64(b.N), "signed-µs/op")
			b.ReportMetric(float64(authed.Microseconds())/float64(b.N), "authed-µs/op")
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "MiB"
	}
	return strconv.Itoa(n>>10) + "KiB"
}
