package storage_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// TestDocumentsReadSlots: queries and counts take read slots, a tenant at
// most half of them. With two slots, a tenant whose long read holds one
// (held here, as a scan of a large collection would) gets 503
// backend_unavailable with Retry-After for its next query or count within
// BackendTimeout, while another tenant's reads still answer at once; with
// every slot held, a third tenant waits and gets 503; a read queued for a
// slot runs as soon as one is released. A GET takes no read slot.
func TestDocumentsReadSlots(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	db := newDBServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxDocumentReads = 2
		c.BackendTimeout = timeout
	}))
	as := func(tenant string) dbAs {
		o := db
		o.tok = db.srv.Token(cpodtest.Claims{Tenant: tenant, App: "app-a", User: "u1", Scopes: allScopes})
		return o
	}
	t1, t2, t3 := as("t1"), as("t2"), as("t3")
	for _, c := range []dbAs{t1, t2, t3} {
		c.mustSet("c", "k", `{"n":1}`)
	}
	count := func(c dbAs) resp {
		return do(t, c.srv, "POST", c.url("c", "/count"), c.tok, `{"filter":{"n":1}}`)
	}
	hold := func(tenant string) func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		release, err := storage.HoldDocumentRead(ctx, db.srv.Engine, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return release
	}
	refused := func(what string, r resp, took time.Duration) {
		t.Helper()
		wantStatus(t, r, http.StatusServiceUnavailable, "backend_unavailable")
		equal(t, what+": Retry-After", r.header.Get("Retry-After"), "1")
		if took > 3*timeout {
			t.Fatalf("%s: refused after %v, BackendTimeout is %v", what, took, timeout)
		}
		for _, leak := range []string{"slot", "t1/", "context"} {
			if strings.Contains(string(r.body), leak) {
				t.Fatalf("%s: response %s leaks %q", what, r.body, leak)
			}
		}
	}
	timed := func(f func() resp) (resp, time.Duration) {
		start := time.Now()
		r := f()
		return r, time.Since(start)
	}
	served := func(what string, r resp, took time.Duration, body string) {
		t.Helper()
		wantStatus(t, r, http.StatusOK, "")
		if body != "" {
			equal(t, what, strings.TrimSpace(string(r.body)), body)
		}
		if took >= timeout {
			t.Fatalf("%s: answered after %v: it waited for a slot", what, took)
		}
	}

	releaseT1 := hold("t1") // t1's share: one of two
	r, took := timed(func() resp { return t1.query("c", `{}`) })
	refused("t1 query over its share", r, took)
	r, took = timed(func() resp { return count(t1) })
	refused("t1 count over its share", r, took)
	r, took = timed(func() resp { return t2.query("c", `{}`) })
	served("t2 query beside t1's", r, took, `{"items":[{"key":"k","value":{"n":1}}],"nextCursor":null}`)
	r, took = timed(func() resp { return count(t2) })
	served("t2 count beside t1's", r, took, `{"count":1}`)
	r, took = timed(func() resp { return t1.get("c", "k") })
	served("t1 get", r, took, `{"key":"k","value":{"n":1}}`)

	releaseT2 := hold("t2") // every slot held
	r, took = timed(func() resp { return t3.query("c", `{}`) })
	refused("t3 query with every slot held", r, took)

	// A read queued for a slot runs when one is released.
	done := make(chan resp, 1)
	go func() { done <- count(t3) }()
	time.Sleep(timeout / 5)
	releaseT1()
	r = <-done
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "t3 count after a release", strings.TrimSpace(string(r.body)), `{"count":1}`)
	releaseT2()
	r, took = timed(func() resp { return t1.query("c", `{}`) })
	served("t1 query after its release", r, took, "")
}

// TestDocumentsCountStreams: a count's memory does not grow with the
// documents it counts. The in-process FerretDB's memory is this process's,
// so the peak heap of POST /count over 800 documents of 16 KiB (400 under
// the race detector) is compared
// with CountDocuments' on the same collection (MongoDB's driver counts
// with $group, which FerretDB runs by holding every matching document):
// the engine's count must take well under half of it. A real server's
// memory is another process's: skipped there.
func TestDocumentsCountStreams(t *testing.T) {
	// Not parallel: the heap is the whole process's.
	if os.Getenv(cpodtest.EnvMongoURI) != "" {
		t.Skip("the count's memory is the MongoDB server's, not this process's")
	}
	db := newDBServer(t)
	mongoOnly(t, db.srv)
	const size = 16 << 10
	n := 800
	if raceEnabled {
		n = 400
	}
	pad := strings.Repeat("x", size)
	for from := 0; from < n; from += 50 {
		var body strings.Builder
		body.WriteString(`{"ops":[`)
		for i := from; i < from+50; i++ {
			if i > from {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"op":"set","key":"k%04d","value":{"i":%d,"pad":%q}}`, i, i, pad)
		}
		body.WriteString(`]}`)
		r := db.batch("big", body.String())
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"failed":0`) {
			t.Fatalf("load: %d %.300s", r.status, r.body)
		}
	}
	pc := physicalCollection(t, db.srv, "big")
	var r resp
	engine := peakHeap(func() { r = do(t, db.srv, "POST", db.url("big", "/count"), db.tok, `{}`) })
	equal(t, "count", strings.TrimSpace(string(r.body)), fmt.Sprintf(`{"count":%d}`, n))
	var got int64
	var err error
	group := peakHeap(func() { got, err = pc.CountDocuments(context.Background(), bson.D{}) })
	if err != nil || got != int64(n) {
		t.Fatalf("CountDocuments: %d, %v", got, err)
	}
	t.Logf("peak heap: count %.1f MB, CountDocuments %.1f MB", float64(engine)/(1<<20), float64(group)/(1<<20))
	if group < uint64(n*size) {
		t.Fatalf("CountDocuments peaked at %d bytes, less than the %d bytes counted: the measure is broken", group, n*size)
	}
	if engine > group/2 {
		t.Fatalf("the count's heap peaked at %d bytes, CountDocuments' at %d: it holds the documents it counts", engine, group)
	}
}

// TestDocumentsParseBudget: document bodies are parsed and held until
// written within a budget of body bytes (four values of MaxDocumentSize),
// so parallel large PUTs cannot each take 20-40 times their size at once.
// With the budget spent (held here, as four 1 MiB PUTs in flight would),
// a PUT, a PATCH and a batch wait and then get 503 backend_unavailable
// within BackendTimeout; one waiting when bytes are released goes on.
// A GET needs no budget. Each tenant holds at most a quarter of it:
// another tenant's writes go on while one tenant's share is taken.
func TestDocumentsParseBudget(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	db := newDBServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = timeout }))
	db.mustSet("c", "k", `{"n":1}`)
	e := db.srv.Engine
	budget := storage.DocumentParseBudget(e)
	equal(t, "budget", budget, int64(4<<20))
	// Tenant t1's share (a quarter of the budget) taken: t1's writes wait, then 503.
	release, err := storage.HoldDocumentParse(context.Background(), e, "t1", budget)
	if err != nil {
		t.Fatal(err)
	}
	// Another tenant's share is its own: its write goes through at once.
	db.srv.RegisterApp(t, "app-b", allScopes...)
	other := db
	other.tok = db.srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-b", User: "u1", Scopes: allScopes})
	start := time.Now()
	wantStatus(t, other.set("c", "k", `{"other":1}`), http.StatusOK, "")
	if took := time.Since(start); took > timeout/2 {
		t.Fatalf("another tenant's write waited %v for the budget t1 holds", took)
	}
	// Four shares taken: the whole budget; a fifth tenant waits too.
	for _, tenant := range []string{"t3", "t5", "t6"} {
		release, err := storage.HoldDocumentParse(context.Background(), e, tenant, budget)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
	}
	blocked := db
	blocked.tok = db.srv.Token(cpodtest.Claims{Tenant: "t4", App: "app-b", User: "u1", Scopes: allScopes})
	wantStatus(t, blocked.set("c", "k", `{"n":9}`), http.StatusServiceUnavailable, "backend_unavailable")
	for what, f := range map[string]func() resp{
		"put":   func() resp { return db.set("c", "k", `{"n":2}`) },
		"patch": func() resp { return do(t, db.srv, "PATCH", db.url("c", "/k"), db.tok, `{"n":3}`) },
		"batch": func() resp { return db.batch("c", `{"ops":[{"op":"set","key":"k","value":4}]}`) },
	} {
		start := time.Now()
		r := f()
		took := time.Since(start)
		wantStatus(t, r, http.StatusServiceUnavailable, "backend_unavailable")
		equal(t, what+": Retry-After", r.header.Get("Retry-After"), "1")
		if took < timeout/2 || took > 3*timeout {
			t.Fatalf("%s: refused after %v, BackendTimeout %v", what, took, timeout)
		}
	}
	v, _ := db.getValue("c", "k")
	equal(t, "value after the refused writes", v, `{"n":1}`)
	// A PUT waiting for the budget goes on when it is released.
	done := make(chan resp, 1)
	go func() { done <- db.set("c", "k", `{"n":5}`) }()
	time.Sleep(timeout / 5)
	release()
	wantStatus(t, <-done, http.StatusOK, "")
	v, _ = db.getValue("c", "k")
	equal(t, "value after the budget's release", v, `{"n":5}`)
}
