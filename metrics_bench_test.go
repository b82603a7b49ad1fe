package storage_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// BenchmarkMetricsOverhead measures what Config.Metrics adds to a request:
// the same requests through ServeHTTP (no HTTP) of an engine without and
// with metrics, in the same run: a kv GET (token, app lookup, Redis), an
// unmatched path (the label's route scan) and /healthz (almost nothing but
// the hook).
//
//	go test -run '^$' -bench 'BenchmarkMetricsOverhead' -benchmem -count 6 . | tee m.txt && benchstat m.txt
func BenchmarkMetricsOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		var opts []cpodtest.Option
		if on {
			name = "on"
			reg := prometheus.NewRegistry()
			opts = append(opts, cpodtest.WithConfig(func(c *storage.Config) { c.Metrics = reg }))
		}
		srv := cpodtest.NewServer(b, opts...)
		srv.RegisterApp(b, "app-a", allScopes...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		benchRequest(b, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"a value of some thirty bytes."}`, 204)
		for _, rq := range []struct{ what, path string }{
			{"kvGet", "/v1/storage/kv/k"},
			{"unmatched", "/v1/storage/nothing/here"},
			{"healthz", "/healthz"},
		} {
			b.Run(rq.what+"/metrics="+name, func(b *testing.B) {
				r := httptest.NewRequest("GET", rq.path, nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				w := &statusWriter{h: http.Header{}}
				for b.Loop() {
					clear(w.h)
					w.status = 0
					srv.Engine.ServeHTTP(w, r)
					if w.status != 200 && w.status != 404 {
						b.Fatalf("status %d", w.status)
					}
				}
			})
		}
	}
}

// statusWriter is a ResponseWriter that discards the body and keeps the
// status.
type statusWriter struct {
	h      http.Header
	status int
}

func (w *statusWriter) Header() http.Header { return w.h }
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	return len(p), nil
}
