package storage_test

import (
	"fmt"
	"net/http"
	"testing"
)

// BenchmarkDocumentsConditional compares, in one run, an unconditional set
// (the baseline) with a set under If-Match (a version claim, the filtered
// update and the claim's release) and a merge patch (a read, the merge, a
// claim, the update, the release), each on 100 existing documents:
//
//	go test -run '^$' -bench BenchmarkDocumentsConditional -count 6 . | tee cond.txt && benchstat cond.txt
func BenchmarkDocumentsConditional(b *testing.B) {
	srv, tok := benchServer(b)
	etags := make([]string, 100)
	for i := range etags {
		r, err := doHdr(srv, "PUT", fmt.Sprintf("/v1/storage/db/bench/k%d", i), tok, benchValue, nil)
		if err != nil || r.status != http.StatusOK {
			b.Fatalf("setup: %v %d", err, r.status)
		}
		etags[i] = r.header.Get("ETag")
	}
	b.Run("put", func(b *testing.B) {
		i := 0
		for b.Loop() {
			benchRequest(b, srv, "PUT", fmt.Sprintf("/v1/storage/db/bench/k%d", i%100), tok, benchValue, 200)
			i++
		}
	})
	b.Run("put-if-match", func(b *testing.B) {
		for i := range etags { // the versions the put benchmark left
			r, err := doHdr(srv, "GET", fmt.Sprintf("/v1/storage/db/bench/k%d", i), tok, "", nil)
			if err != nil || r.status != http.StatusOK {
				b.Fatalf("get: %v %d", err, r.status)
			}
			etags[i] = r.header.Get("ETag")
		}
		i := 0
		for b.Loop() {
			k := i % 100
			r, err := doHdr(srv, "PUT", fmt.Sprintf("/v1/storage/db/bench/k%d", k), tok, benchValue, map[string]string{"If-Match": etags[k]})
			if err != nil || r.status != http.StatusOK {
				b.Fatalf("conditional put: %v %d %s", err, r.status, r.body)
			}
			etags[k] = r.header.Get("ETag")
			i++
		}
	})
	b.Run("patch", func(b *testing.B) {
		i := 0
		for b.Loop() {
			benchRequest(b, srv, "PATCH", fmt.Sprintf("/v1/storage/db/bench/k%d", i%100), tok, fmt.Sprintf(`{"plan":"p%d"}`, i), 200)
			i++
		}
	})
}
