package main

import (
	"context"
	"flag"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cpod/storage/internal/loadtest"
)

var loadDuration = flag.Duration("load.duration", 3*time.Second, "how long TestMixedLoadServer sends requests (the issue's figure: 60s)")

// TestMixedLoadServer: the built server on its embedded defaults answers a
// mixed load (kv, documents, small files) at concurrency 64 with no 5xx
// and no stall, then stops cleanly. It used to wedge: FerretDB scanned a
// whole collection for every upsert and requests piled up into timeouts.
func TestMixedLoadServer(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir)
	token := setupApp(t, srv, dataDir)
	r := loadtest.Run(context.Background(), loadtest.Config{URL: srv.URL, Token: token, Concurrency: 64, Duration: *loadDuration})
	t.Logf("%s", r)
	if r.Server5xx > 0 || r.Errors > 0 || r.Stalled > 0 || len(r.Unexpected) > 0 {
		t.Errorf("5xx %d, transport errors %d, stalled %d, unexpected %v", r.Server5xx, r.Errors, r.Stalled, r.Unexpected)
	}
	if r.LongestGap > 5*time.Second || r.Requests < 20 {
		t.Errorf("longest gap %v, %d requests", r.LongestGap, r.Requests)
	}
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after the load:\n%s", code, srv.stderr)
	}
}
