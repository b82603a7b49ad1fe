package storage_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// metricsServer is a cpodtest server whose engine registers its metrics on
// a fresh registry; config, when not nil, changes the rest of its Config.
func metricsServer(t testing.TB, config func(*storage.Config)) (*cpodtest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Metrics = reg
		if config != nil {
			config(c)
		}
	})), reg
}

// families gathers reg, by metric name.
func families(t testing.TB, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// series returns the samples of one metric (a histogram's count), keyed by
// their labels as "name=value,..." in label-name order.
func series(t testing.TB, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mf := families(t, reg)[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.GetMetric() {
		var parts []string
		for _, l := range m.GetLabel() {
			parts = append(parts, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(parts)
		key := strings.Join(parts, ",")
		switch {
		case m.Counter != nil:
			out[key] = m.Counter.GetValue()
		case m.Histogram != nil:
			out[key] = float64(m.Histogram.GetSampleCount())
		}
	}
	return out
}

func wantSeries(t *testing.T, got map[string]float64, key string, want float64) {
	t.Helper()
	if got[key] != want {
		t.Errorf("%s = %v, want %v; all: %v", key, got[key], want, got)
	}
}

const kvRoute = "/v1/storage/kv/{key...}"

// TestMetricsRequests: each request is counted once under its route
// pattern, method and status, with its duration; a path that fits no route
// is "unmatched", an unknown method "other"; a 405 and a CORS preflight
// count under the pattern their path fits. kv bytes are the request and
// response bodies of kv routes.
func TestMetricsRequests(t *testing.T) {
	t.Parallel()
	srv, reg := metricsServer(t, func(c *storage.Config) {
		c.CORSOrigins = []string{"https://app.example.com"}
	})
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})

	const value = `{"value":"v"}`
	var kvOut int
	kv := func(method, path, token string, body any, status int) {
		t.Helper()
		r := do(t, srv, method, path, token, body)
		wantStatus(t, r, status, "")
		kvOut += len(r.body)
	}
	kv("PUT", "/v1/storage/kv/a", tok, value, 204)
	kv("GET", "/v1/storage/kv/a", tok, nil, 200)
	kv("GET", "/v1/storage/kv/missing", tok, nil, 404)
	kv("GET", "/v1/storage/kv/a", "", nil, 401)
	kv("GET", "/v1/storage/kv/a?TIER=user", tok, nil, 400)
	wantStatus(t, do(t, srv, "GET", "/no/such/endpoint", tok, nil), 404, "unknown_endpoint")
	wantStatus(t, do(t, srv, "BREW", "/v1/storage/kv/a", tok, nil), 405, "invalid_request")
	req, _ := http.NewRequest("OPTIONS", srv.URL+"/v1/storage/kv/a", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	equal(t, "preflight status", res.StatusCode, 204)

	got := series(t, reg, "cpod_storage_requests_total")
	wantSeries(t, got, "code=204,method=PUT,route="+kvRoute, 1)
	wantSeries(t, got, "code=200,method=GET,route="+kvRoute, 1)
	wantSeries(t, got, "code=404,method=GET,route="+kvRoute, 1)
	wantSeries(t, got, "code=401,method=GET,route="+kvRoute, 1)
	wantSeries(t, got, "code=400,method=GET,route="+kvRoute, 1)
	wantSeries(t, got, "code=404,method=GET,route=unmatched", 1)
	wantSeries(t, got, "code=405,method=other,route="+kvRoute, 1)
	wantSeries(t, got, "code=204,method=OPTIONS,route="+kvRoute, 1)
	if len(got) != 8 {
		t.Errorf("%d series, want 8: %v", len(got), got)
	}
	dur := series(t, reg, "cpod_storage_request_duration_seconds")
	wantSeries(t, dur, "method=GET,route="+kvRoute, 4)
	wantSeries(t, dur, "method=PUT,route="+kvRoute, 1)
	wantSeries(t, dur, "method=GET,route=unmatched", 1)

	b := series(t, reg, "cpod_storage_bytes_total")
	wantSeries(t, b, "direction=in,primitive=kv", float64(len(value)))
	wantSeries(t, b, "direction=out,primitive=kv", float64(kvOut))
	wantSeries(t, b, "direction=in,primitive=files", 0)
	// No backend failed.
	for k, v := range series(t, reg, "cpod_storage_backend_errors_total") {
		if v != 0 {
			t.Errorf("backend errors %s = %v without a failure", k, v)
		}
	}
	if srv.Redis == nil {
		if n := testutil.CollectAndCount(reg, "cpod_storage_backend_errors_total"); n != 2 {
			t.Errorf("%d backend series, want s3, sqlite", n)
		}
	} else if n := testutil.CollectAndCount(reg, "cpod_storage_backend_errors_total"); n != 3 {
		t.Errorf("%d backend series, want s3, %s, redis", n, docsBackend(srv))
	}
}

// TestMetricsLabelsBounded: requests to 1000 distinct keys, 1000 distinct
// unknown paths and 1000 distinct signed URLs of one tenant give a handful
// of series, none of whose labels holds a tenant, key, path, query or token.
func TestMetricsLabelsBounded(t *testing.T) {
	t.Parallel()
	srv, reg := metricsServer(t, nil)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "tenant-7f3a", App: "app-a", User: "user-c41d", Scopes: allScopes})
	serve := func(method, target string, status int) {
		t.Helper()
		r := httptest.NewRequest(method, target, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		srv.Engine.ServeHTTP(w, r)
		if w.Code != status {
			t.Fatalf("%s %s: %d, want %d: %s", method, target, w.Code, status, w.Body)
		}
	}
	for i := range 1000 {
		serve("GET", fmt.Sprintf("/v1/storage/kv/secret-key-%d?tier=user", i), 404)
		serve("GET", fmt.Sprintf("/secret-path-%d/x", i), 404)
		serve("GET", fmt.Sprintf("/v1/storage/signed/secret-file-%d?app=app-a&expires=1&sig=secret-sig-%d&tier=private", i, i), 403)
	}
	got := series(t, reg, "cpod_storage_requests_total")
	if len(got) != 3 {
		t.Errorf("%d series after 3000 distinct paths: %v", len(got), got)
	}
	wantSeries(t, got, "code=404,method=GET,route="+kvRoute, 1000)
	wantSeries(t, got, "code=404,method=GET,route=unmatched", 1000)
	wantSeries(t, got, "code=403,method=GET,route=/v1/storage/signed/{key...}", 1000)
	for name, mf := range families(t, reg) {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				for _, leak := range []string{"secret", "tenant-7f3a", "user-c41d", "app-a", "?", "=", tok[:20]} {
					if strings.Contains(v, leak) {
						t.Errorf("%s has label %s=%q", name, l.GetName(), v)
					}
				}
			}
		}
	}
}

// TestMetricsFileBytes: files count the file bytes streamed in and out,
// not the JSON of results and listings, and nothing for HEAD.
func TestMetricsFileBytes(t *testing.T) {
	t.Parallel()
	srv, reg := metricsServer(t, nil)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	file := strings.Repeat("0123456789", 30_000)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/a/b.bin", tok, file), 200, "")
	r := do(t, srv, "GET", "/v1/storage/files/a/b.bin", tok, nil)
	wantStatus(t, r, 200, "")
	equal(t, "downloaded bytes", len(r.body), len(file))
	wantStatus(t, do(t, srv, "HEAD", "/v1/storage/files/a/b.bin", tok, nil), 200, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files?prefix=a/", tok, nil), 200, "")
	b := series(t, reg, "cpod_storage_bytes_total")
	wantSeries(t, b, "direction=in,primitive=files", float64(len(file)))
	wantSeries(t, b, "direction=out,primitive=files", float64(len(file)))
	wantSeries(t, b, "direction=in,primitive=kv", 0)

	// A document's bytes are its request and response bodies.
	doc := `{"n":1}`
	r = do(t, srv, "PUT", "/v1/storage/db/things/one", tok, doc)
	wantStatus(t, r, 200, "")
	b = series(t, reg, "cpod_storage_bytes_total")
	wantSeries(t, b, "direction=in,primitive=documents", float64(len(doc)))
	wantSeries(t, b, "direction=out,primitive=documents", float64(len(r.body)))
}

// TestMetricsSharedRegistry: a second engine on the same registry reuses
// the collectors (no panic, no error) and its requests add up with the
// first's; a registry that holds another collector under one of the names
// makes New fail, naming Config.Metrics.
func TestMetricsSharedRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	shared := cpodtest.WithConfig(func(c *storage.Config) { c.Metrics = reg })
	a := cpodtest.NewServer(t, shared)
	b := cpodtest.NewServer(t, shared)
	wantStatus(t, do(t, a, "GET", "/healthz", "", nil), 200, "")
	wantStatus(t, do(t, b, "GET", "/healthz", "", nil), 200, "")
	wantSeries(t, series(t, reg, "cpod_storage_requests_total"), "code=200,method=GET,route=/healthz", 2)

	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cpod_storage_bytes_total", Help: "not ours"}))
	_, err := storage.New(storage.Config{
		S3: a.S3, Bucket: a.Bucket, Mongo: a.Mongo, SQL: a.SQL, Redis: a.Redis,
		Auth:       storage.AuthConfig{Keys: []storage.Key{{Secret: a.TokenKey()}}},
		SigningKey: []byte(strings.Repeat("k", 32)),
		Metrics:    clash,
	})
	if err == nil || !strings.Contains(err.Error(), "Config.Metrics") {
		t.Fatalf("New with a clashing collector: %v", err)
	}
}

// TestMetricsBackendErrors: a backend that refuses connections is counted
// once per failed request under its backend, on the fakes and on real
// servers; client errors count nothing.
func TestMetricsBackendErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	rig := newFaultRig(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Metrics = reg
		c.BackendTimeout = time.Second
		c.AppCacheTTL = -1 // every request looks its app up in MongoDB
	}))
	srv := rig.srv
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/f.txt", tok, "hello"), 200, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/nope.txt", tok, nil), 404, "not_found")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/nope", tok, nil), 404, "not_found")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/db/c/nope", tok, nil), 404, "not_found")
	const errs = "cpod_storage_backend_errors_total"
	want := map[string]float64{"backend=s3": 0, "backend=mongodb": 0, "backend=redis": 0}
	check := func(what string) {
		t.Helper()
		got := series(t, reg, errs)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", what, k, got[k], v)
			}
		}
	}
	check("no failure")

	rig.redis.set(refuse)
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), 503, "backend_unavailable")
	rig.redis.set(pass)
	want["backend=redis"] = 1
	check("redis refused")

	rig.s3.set(refuse)
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/f.txt", tok, nil), 503, "backend_unavailable")
	rig.s3.set(pass)
	want["backend=s3"] = 1
	check("s3 refused")

	rig.mongo.set(refuse)
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), 503, "backend_unavailable")
	rig.mongo.set(pass)
	want["backend=mongodb"] = 1 // the app lookup
	check("mongodb refused")
}

// TestMetricsConcurrent: requests of one route answered with different
// statuses at once are each counted exactly once (the per-route status
// counters are bound on first use, concurrently).
func TestMetricsConcurrent(t *testing.T) {
	t.Parallel()
	srv, reg := metricsServer(t, nil)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	cases := []struct {
		target, token string
		status        int
	}{
		{"/v1/storage/kv/missing", tok, 404},
		{"/v1/storage/kv/k", "", 401},
		{"/v1/storage/kv/k?nope=1", tok, 400},
		{"/v1/storage/kv/k?tier=shared&tier=user", tok, 400},
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				c := cases[(g+i)%len(cases)]
				r := httptest.NewRequest("GET", c.target, nil)
				if c.token != "" {
					r.Header.Set("Authorization", "Bearer "+c.token)
				}
				w := httptest.NewRecorder()
				srv.Engine.ServeHTTP(w, r)
				if w.Code != c.status {
					t.Errorf("%s: %d, want %d", c.target, w.Code, c.status)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := series(t, reg, "cpod_storage_requests_total")
	total := float64(workers * each)
	wantSeries(t, got, "code=404,method=GET,route="+kvRoute, total/4)
	wantSeries(t, got, "code=401,method=GET,route="+kvRoute, total/4)
	wantSeries(t, got, "code=400,method=GET,route="+kvRoute, total/2)
	wantSeries(t, series(t, reg, "cpod_storage_request_duration_seconds"), "method=GET,route="+kvRoute, total)
}

// TestMetricsEarlyTooLarge: with the response measured, a body found too
// large while it is read is still 413 too_large, its bytes read are
// counted, and the connection serves the next request (no desync).
func TestMetricsEarlyTooLarge(t *testing.T) {
	t.Parallel()
	srv, reg := metricsServer(t, func(c *storage.Config) { c.Limits.MaxKVValueSize = 64 })
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	big := `{"value":"` + strings.Repeat("x", 1<<20) + `"}`
	r := fileDo(t, srv, "PUT", "/v1/storage/kv/big", tok, nil, chunked(strings.NewReader(big)))
	wantStatus(t, r, http.StatusRequestEntityTooLarge, "too_large")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/small", tok, `{"value":"v"}`), 204, "")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/big", tok, nil), 404, "not_found")
	got := series(t, reg, "cpod_storage_requests_total")
	wantSeries(t, got, "code=413,method=PUT,route="+kvRoute, 1)
	wantSeries(t, got, "code=204,method=PUT,route="+kvRoute, 1)
	in := series(t, reg, "cpod_storage_bytes_total")["direction=in,primitive=kv"]
	if limit := 12*64 + 4096; in <= float64(limit) || in > float64(limit+1+len(`{"value":"v"}`)) {
		t.Errorf("kv bytes in %v: want the limit+1 read of the large body and the small one", in)
	}
}
