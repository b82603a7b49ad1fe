package storage_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cpod/storage/cpodtest"
)

// BenchmarkDocumentsValueShape measures what a value at the structure
// limits (Limits.MaxDocumentNodes, MaxDocumentArrayItems,
// MaxDocumentObjectFields, MaxBatchNodes at their defaults) costs the
// database, against the small value of BenchmarkDocumentsSet in the same
// run (a 500-op batch is left out: on FerretDB-SQLite each of its updates
// scans the collection, whatever the values): "set" overwrites one document (FerretDB reads the old value and
// writes the new one), "scan" is another tenant's query on a collection
// that holds that one document (FerretDB decodes every document of the
// collection for each query), "batch" sets two values of 10000 values (MaxBatchNodes)
// against two small ones, and "refused" is a 1 MiB array of 500k items, answered 413:
//
//	go test -run '^$' -bench 'BenchmarkDocumentsValueShape' -benchtime 10x -count 3 .
//
// CPODTEST_MONGO_URI runs it against FerretDB on PostgreSQL (or MongoDB).
func BenchmarkDocumentsValueShape(b *testing.B) {
	// maximal has all three caps at once: 10000 values, an array of 5000
	// items and an object of 1000 fields.
	maximal := `{"a":` + jsonArray(5000) + `,"o":` + jsonObject(1000) + `,"n":` + jsonNested(38, 100) + `}`
	shapes := []struct{ name, value string }{
		{"small", benchValue},
		{"nodes-10000", jsonNested(99, 100)},
		{"array-5000", jsonArray(5000)},
		{"object-1000", jsonObject(1000)},
		{"all-caps", maximal},
	}
	for _, s := range shapes {
		srv, tok := benchServer(b)
		other := srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", Scopes: allScopes})
		benchRequest(b, srv, "PUT", "/v1/storage/db/bench/k", tok, s.value, 200)
		benchRequest(b, srv, "PUT", "/v1/storage/db/bench/k", other, benchValue, 200)
		b.Run("set/"+s.name, func(b *testing.B) {
			for b.Loop() {
				benchRequest(b, srv, "PUT", "/v1/storage/db/bench/k", tok, s.value, 200)
			}
		})
		b.Run("scan/"+s.name, func(b *testing.B) {
			for b.Loop() {
				benchRequest(b, srv, "POST", "/v1/storage/db/bench/query", other, `{"filter":{"status":"none"}}`, 200)
			}
		})
	}

	batch := func(n int, value string) string {
		ops := make([]string, n)
		for i := range ops {
			ops[i] = fmt.Sprintf(`{"op":"set","key":"k%d","value":%s}`, i, value)
		}
		return `{"ops":[` + strings.Join(ops, ",") + `]}`
	}
	for _, bt := range []struct{ name, body string }{
		{"batch/2x10000", batch(2, jsonNested(99, 100))},
		{"batch/2xsmall", batch(2, benchValue)},
	} {
		srv, tok := benchServer(b)
		benchRequest(b, srv, "POST", "/v1/storage/db/bench/batch", tok, bt.body, 200)
		b.Run(bt.name, func(b *testing.B) {
			for b.Loop() {
				benchRequest(b, srv, "POST", "/v1/storage/db/bench/batch", tok, bt.body, 200)
			}
		})
	}
	srv, tok := benchServer(b)
	hostile := jsonArray(1<<19 - 1)
	b.Run("refused/array-500k", func(b *testing.B) {
		for b.Loop() {
			benchRequest(b, srv, "PUT", "/v1/storage/db/bench/h", tok, hostile, 413)
		}
	})
}
