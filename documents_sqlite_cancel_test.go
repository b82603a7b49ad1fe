//go:build unix

package storage_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// processCPU is the CPU time (user and system) the whole test process used
// so far.
func processCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heavyFilterFields is how many fields the expensive filter has (the
// most a filter takes), each with an "in" list of heavyInValues.
const heavyFilterFields, heavyInValues = 16, 30

// heavyFilter matches no document of fillHeavy, but only its last field
// tells: every document is read, and every term of every other field
// compared, before it is dropped.
func heavyFilter() string {
	var f []string
	for i := range heavyFilterFields {
		var in []string
		for j := range heavyInValues {
			in = append(in, strconv.Itoa(1000+j))
		}
		f = append(f, fmt.Sprintf(`"f%02d":{"in":[%s]}`, i, strings.Join(in, ",")))
	}
	return "{" + strings.Join(f, ",") + "}"
}

// fillHeavy stores n documents in collection coll of tok's private tier,
// straight into the SQLite table (loc and coll read from a document
// written through the engine; the values are plain objects of integers,
// whose query form is their JSON text): each field f00..f14 holds the last
// value of its "in" list, f15 none of its list.
func fillHeavy(t testing.TB, srv *cpodtest.Server, tok, coll string, n int) {
	t.Helper()
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/"+coll+"/seed", tok, `{"seed":true}`), 200, "")
	ctx := context.Background()
	var loc string
	if err := srv.SQL.QueryRowContext(ctx, `SELECT loc FROM cpod_documents WHERE coll = ? AND key = 'seed'`, coll).Scan(&loc); err != nil {
		t.Fatal(err)
	}
	tx, err := srv.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO cpod_documents (loc, coll, key, json, v, ver, updated, created)
		VALUES (?, ?, ?, ?, jsonb(?), '0123456789abcdef', 1700000000000, 1700000000000)`)
	if err != nil {
		t.Fatal(err)
	}
	defer ins.Close()
	var b strings.Builder
	for i := range n {
		b.Reset()
		b.WriteString("{")
		for f := range heavyFilterFields {
			v := 1000 + heavyInValues - 1
			if f == heavyFilterFields-1 {
				v = 0
			}
			fmt.Fprintf(&b, `"f%02d":%d,`, f, v)
		}
		fmt.Fprintf(&b, `"n":%d}`, i)
		js := b.String()
		if _, err := ins.ExecContext(ctx, loc, coll, fmt.Sprintf("k%07d", i), js, js); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestSQLiteAbandonedReadsStopCPU: on the SQLite store, a query or count
// that hits Config.BackendTimeout is answered 503 backend_unavailable soon
// after the deadline, and one whose client leaves is dropped; either way
// SQLite stops working on it (FerretDB went on scanning for minutes, issue
// 21): the process uses a small fraction of the CPU in the second after
// the answer (or the client's leaving) that it used while the read ran.
//
// Not parallel, on purpose: it measures the CPU of the whole test process
// (getrusage), and Go runs the package's non-parallel tests one at a time,
// before any parallel test starts, so nothing else runs meanwhile.
func TestSQLiteAbandonedReadsStopCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100k documents")
	}
	const deadline = time.Second
	srv := cpodtest.NewServer(t, cpodtest.WithSQLite(), cpodtest.WithConfig(func(c *storage.Config) {
		c.BackendTimeout = deadline
	}))
	// Every read below scans: an index built for the first (in the
	// background, for its slow shape) would answer the later ones at once.
	storage.IndexNoQuery(srv.Engine)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	fill := time.Now()
	fillHeavy(t, srv, tok, "heavy", 100_000)
	t.Logf("100k documents stored in %v", time.Since(fill).Round(time.Millisecond))
	// A replica on the same store that waits a minute: its reads end when
	// their client leaves.
	patient := srv.NewReplica(t, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = time.Minute }))
	storage.IndexNoQuery(patient.Engine)

	filter := heavyFilter()
	reads := []struct{ op, body string }{
		{"query", `{"filter":` + filter + `,"sort":{"n":-1},"limit":20}`},
		{"count", `{"filter":` + filter + `}`},
	}
	for _, r := range reads {
		t.Run(r.op+"/deadline", func(t *testing.T) {
			before := processCPU(t)
			start := time.Now()
			res := do(t, srv, "POST", "/v1/storage/db/heavy/"+r.op, tok, r.body)
			took := time.Since(start)
			busy := processCPU(t) - before
			wantStatus(t, res, 503, "backend_unavailable")
			// Generous: the answer is due at the deadline; a read that
			// went on scanning would take many seconds.
			if took > deadline+2*time.Second {
				t.Errorf("answered after %v with a %v deadline", took, deadline)
			}
			checkIdle(t, busy, took)
		})
		t.Run(r.op+"/client-left", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			before := processCPU(t)
			start := time.Now()
			go func() {
				_, _, err := sendBearer(ctx, patient, "POST", "/v1/storage/db/heavy/"+r.op, tok, strings.NewReader(r.body))
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("the read ended before its client left: %v", err)
			case <-time.After(deadline):
			}
			busy := processCPU(t) - before
			took := time.Since(start)
			cancel()
			if err := <-done; err == nil {
				t.Fatal("the request did not fail when its client left")
			}
			checkIdle(t, busy, took)
		})
	}
	// The store still answers.
	wantStatus(t, do(t, srv, "GET", "/v1/storage/db/heavy/k0000042", tok, nil), 200, "")
}

// checkIdle measures the process's CPU in the second from now and fails
// the test unless it is well under a core-second and a small fraction of
// the rate while the read ran (busy CPU in wall time took): a read still
// scanning would burn about a core.
func checkIdle(t *testing.T, busy, took time.Duration) {
	t.Helper()
	before := processCPU(t)
	start := time.Now()
	time.Sleep(time.Second)
	idle := processCPU(t) - before
	wall := time.Since(start)
	busyRate := float64(busy) / float64(took)
	idleRate := float64(idle) / float64(wall)
	t.Logf("CPU while the read ran: %v in %v (%.2f cores); in the next %v: %v (%.2f cores)",
		busy.Round(time.Millisecond), took.Round(time.Millisecond), busyRate, wall.Round(time.Millisecond), idle.Round(time.Millisecond), idleRate)
	if busyRate < 0.2 {
		// The read itself got too little CPU to tell: the machine is
		// too busy for the comparison.
		t.Logf("the read ran on %.2f cores only: no comparison", busyRate)
	}
	if idle > 300*time.Millisecond || busyRate >= 0.2 && idleRate > busyRate/3 {
		t.Errorf("the process used %v of CPU in the second after the read ended (%.2f cores, %.2f while it ran): the read goes on",
			idle, idleRate, busyRate)
	}
}
