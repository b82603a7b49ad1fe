package main

import (
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// TestMetricsConfig: metrics are off by default; -metrics-addr must be
// host:port other than -addr.
func TestMetricsConfig(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, envFunc(nil), io.Discard)
	if err != nil || c.MetricsAddr != "" {
		t.Fatalf("default metrics addr %q (%v), want off", c.MetricsAddr, err)
	}
	c, err = parseConfig(nil, envFunc(map[string]string{"CPOD_METRICS_ADDR": "127.0.0.1:9090"}), io.Discard)
	if err != nil || c.MetricsAddr != "127.0.0.1:9090" {
		t.Fatalf("CPOD_METRICS_ADDR: %q (%v)", c.MetricsAddr, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-metrics-addr", "9090"}, "CPOD_METRICS_ADDR (-metrics-addr) must be host:port"},
		{[]string{"-metrics-addr", "127.0.0.1:99999"}, "CPOD_METRICS_ADDR (-metrics-addr) has an invalid port"},
		{[]string{"-addr", "127.0.0.1:8080", "-metrics-addr", "127.0.0.1:8080"}, "CPOD_METRICS_ADDR (-metrics-addr) must differ from CPOD_ADDR (-addr)"},
	} {
		_, err := parseConfig(tc.args, envFunc(nil), io.Discard)
		var ce *configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestMetricsEndpoint runs the built server with -metrics-addr: its second
// listener serves GET /metrics in the Prometheus text format, with the
// requests counted by route pattern, method and status, and no tenant, key
// or token anywhere; the public listener does not serve /metrics.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir, "-metrics-addr", "127.0.0.1:0")
	var metricsURL string
	for _, line := range strings.Split(srv.stderr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "metrics listening" {
			metricsURL, _ = rec["url"].(string)
		}
	}
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") || !strings.HasSuffix(metricsURL, "/metrics") {
		t.Fatalf("no metrics listening record with its URL:\n%s", srv.stderr)
	}

	adminToken := readFile(t, filepath.Join(dataDir, adminTokenFile))
	want(t, "healthz", call(t, "GET", srv.URL+"/healthz", "", nil, nil), 200)
	want(t, "register app", call(t, "POST", srv.URL+"/v1/oauth/apps", adminToken, nil, []byte(demoApp)), 201)
	token := mintToken(t, dataDir, "--tenant", "tenant-5e1f", "--app", "app-demo", "--user", "user-9b2c", "--scope", demoScopes)
	want(t, "kv set", call(t, "PUT", srv.URL+"/v1/storage/kv/secret-key-1?tier=user", token, nil, []byte(`{"value":"v"}`)), 204)
	want(t, "kv get", call(t, "GET", srv.URL+"/v1/storage/kv/secret-key-2?tier=user", token, nil, nil), 404)
	want(t, "no metrics on the public listener", call(t, "GET", srv.URL+"/metrics", "", nil, nil), 404)

	r := call(t, "GET", metricsURL, "", nil, nil)
	want(t, "metrics", r, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	body := string(r.body)
	for _, line := range []string{
		`# TYPE cpod_storage_requests_total counter`,
		`cpod_storage_requests_total{code="200",method="GET",route="/healthz"} 1`,
		`cpod_storage_requests_total{code="201",method="POST",route="/v1/oauth/apps"} 1`,
		`cpod_storage_requests_total{code="204",method="PUT",route="/v1/storage/kv/{key...}"} 1`,
		`cpod_storage_requests_total{code="404",method="GET",route="/v1/storage/kv/{key...}"} 1`,
		`cpod_storage_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`# TYPE cpod_storage_request_duration_seconds histogram`,
		`cpod_storage_request_duration_seconds_count{method="PUT",route="/v1/storage/kv/{key...}"} 1`,
		`cpod_storage_backend_errors_total{backend="sqlite"} 0`, // the embedded store: documents, apps and kv
		`cpod_storage_bytes_total{direction="in",primitive="kv"} 13`,
		`# TYPE go_goroutines gauge`,
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(body, `backend="redis"`) {
		t.Errorf("/metrics has a redis series on the SQLite store")
	}
	for _, leak := range []string{"tenant-5e1f", "user-9b2c", "secret-key", "tier=", token, adminToken} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics shows %q", leak)
		}
	}
	base := strings.TrimSuffix(metricsURL, "/metrics")
	want(t, "other path on the metrics listener", call(t, "GET", base+"/v1/storage/kv/x", "", nil, nil), 404)
	want(t, "POST /metrics", call(t, "POST", metricsURL, "", nil, nil), 405)
}
