package storage_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cpod/storage/cpodtest"
)

// BenchmarkRouterQuery measures routing plus the query check on requests
// that end at the bearer check (401, no backend call), so the router's share
// is as large as it gets: a file path without query, with ?tier=, and the
// file listing with its four parameters.
func BenchmarkRouterQuery(b *testing.B) {
	srv := cpodtest.NewServer(b)
	for _, bc := range []struct{ name, target string }{
		{"no-query", "/v1/storage/files/a/b.txt"},
		{"tier", "/v1/storage/files/a/b.txt?tier=user"},
		{"list-4-params", "/v1/storage/files?tier=user&prefix=a%2F&limit=10&cursor=v1.abc.def"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", bc.target, nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				srv.Engine.ServeHTTP(w, req)
				if w.Code != http.StatusUnauthorized {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
