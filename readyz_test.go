package storage_test

import (
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestReadyzBackendFaults: /readyz reflects what requests see. Each backend
// in turn is frozen (accepts, never answers) or refuses connections; the
// answer is 503 naming that backend unavailable and the others ok, within
// BackendTimeout plus a margin, and 200 again once the backend is back.
func TestReadyzBackendFaults(t *testing.T) {
	const timeout = 500 * time.Millisecond
	rig := newFaultRig(t, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = timeout }))
	srv := rig.srv
	ready := func() bool { return do(t, srv, "GET", "/readyz", "", nil).status == 200 }
	eventually(t, 10*time.Second, ready)
	for _, backend := range []string{"mongodb", "redis", "s3"} {
		p := map[string]*faultProxy{"mongodb": rig.mongo, "redis": rig.redis, "s3": rig.s3}[backend]
		for _, mode := range []faultMode{freeze, refuse} {
			p.set(mode)
			start := time.Now()
			r := do(t, srv, "GET", "/readyz", "", nil)
			took := time.Since(start)
			wantStatus(t, r, 503, "")
			equal(t, "Retry-After", r.header.Get("Retry-After"), "1")
			var body struct {
				Status   string
				Backends map[string]string
			}
			decode(t, r, &body)
			for _, b := range []string{"mongodb", "redis", "s3"} {
				want := "ok"
				if b == backend {
					want = "unavailable"
				}
				if body.Backends[b] != want {
					t.Fatalf("%s %s: %s is %q, want %q (%s)", backend, mode, b, body.Backends[b], want, r.body)
				}
			}
			if took > timeout+2*time.Second {
				t.Fatalf("%s %s: /readyz took %v", backend, mode, took)
			}
			p.set(pass)
			eventually(t, 15*time.Second, ready)
		}
	}
}
