package openapicheck_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/internal/openapicheck"
)

// BenchmarkCheck measures what the check adds to one exchange (a document
// query: a JSON request and a JSON response), against the same handler
// unwrapped, in the same run: compare the two ns/op.
func BenchmarkCheck(b *testing.B) {
	c, err := openapicheck.New(storage.OpenAPIDocument())
	if err != nil {
		b.Fatal(err)
	}
	body := `{"items":[{"key":"k1","value":{"status":"active","n":1}},{"key":"k2","value":{"status":"active","n":2}}],"nextCursor":null}`
	fake := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "r1")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, body)
	})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"unchecked", fake},
		{"checked", c.Handler(fake, func(err error) { b.Fatal(err) })},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("POST", "/v1/storage/db/sessions/query?tier=user", strings.NewReader(`{"filter":{"status":"active"},"sort":{"n":-1},"limit":20}`))
				req.Header.Set("Authorization", "Bearer x")
				bc.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
