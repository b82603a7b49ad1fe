package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// tryDo is do for goroutines other than the test's: it returns an error
// instead of failing the test, and gives up after timeout.
func tryDo(srv *cpodtest.Server, timeout time.Duration, method, path, token, body string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return sendBearer(ctx, srv, method, path, token, rd)
}

// sendBearer is one request with a bearer token that reports failures as an
// error, for goroutines that may not fail the test (tryDo, try).
func sendBearer(ctx context.Context, srv *cpodtest.Server, method, path, token string, rd io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// setOps is a batch body of n sets of keys k<from>..k<from+n-1>, each value
// carrying round so that a repeated batch really changes every document.
func setOps(from, n, round int) string {
	var b strings.Builder
	b.WriteString(`{"ops":[`)
	for i := from; i < from+n; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"op":"set","key":"k%04d","value":{"n":%d,"round":%d,"grp":"g%d"}}`, i, i, round, i%4)
	}
	b.WriteString(`]}`)
	return b.String()
}

// checkBatch fails unless a batch answer says n ops succeeded.
func checkBatch(status int, body []byte, n int) error {
	if status != http.StatusOK {
		return fmt.Errorf("status %d: %.300s", status, body)
	}
	var res struct{ Succeeded, Failed int }
	if err := json.Unmarshal(body, &res); err != nil {
		return err
	}
	if res.Succeeded != n || res.Failed != 0 {
		return fmt.Errorf("succeeded %d, failed %d, want %d and 0: %.300s", res.Succeeded, res.Failed, n, body)
	}
	return nil
}

// TestDocumentsBatchNoWedge is issue 11's check: a batch of 500 sets on
// existing keys, twice, then 8 concurrent batches of 100, and then normal
// requests of every primitive answer promptly. On FerretDB v1 an update
// command holds one backend pool connection per statement on an existing
// document until the command ends (and one more for each write), so a long
// update command (over 50 statements on PostgreSQL, 100 on SQLite), or a
// few concurrent ones, exhausted FerretDB's pool for good. Under the race
// detector, which slows the in-process FerretDB down many times, the
// batches are 60 and 8 of 12: that run looks for data races.
func TestDocumentsBatchNoWedge(t *testing.T) {
	t.Parallel()
	db := newDBServer(t) // BackendTimeout a minute, for -race on a busy machine
	srv, tok := db.srv, db.tok
	const prompt = 5 * time.Second
	size, conc := 500, 100
	if raceEnabled {
		size, conc = 60, 12
	}
	for round := 0; round < 3; round++ { // round 0 creates the keys
		start := time.Now()
		status, body, err := tryDo(srv, 2*time.Minute, "POST", "/v1/storage/db/wedge/batch", tok, setOps(0, size, round))
		if err == nil {
			err = checkBatch(status, body, size)
		}
		if err != nil {
			t.Fatalf("batch of %d, round %d: %v", size, round, err)
		}
		t.Logf("batch of %d sets, round %d: %v", size, round, time.Since(start))
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Overlapping ranges: concurrent batches also write the same keys.
			status, body, err := tryDo(srv, 2*time.Minute, "POST", "/v1/storage/db/wedge/batch", tok, setOps(g*conc/2, conc, 10+g))
			if err == nil {
				err = checkBatch(status, body, conc)
			}
			if err != nil {
				errs <- fmt.Errorf("concurrent batch %d: %v", g, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("8 concurrent batches of %d: %v", conc, time.Since(start))

	// Every primitive still answers, promptly.
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/v1/storage/kv/after", `{"value":"x"}`, 204},
		{"GET", "/v1/storage/kv/after", "", 200},
		{"PUT", "/v1/storage/files/after.txt", "hello", 200},
		{"GET", "/v1/storage/files/after.txt", "", 200},
		{"GET", "/v1/storage/db/wedge/k0007", "", 200},
		{"PUT", "/v1/storage/db/wedge/k0007", `{"n":7}`, 200},
		{"POST", "/v1/storage/db/wedge/query", `{"filter":{"grp":"g1"},"limit":5}`, 200},
		{"DELETE", "/v1/storage/db/wedge/k0008", "", 204},
	} {
		start := time.Now()
		status, body, err := tryDo(srv, prompt, c.method, c.path, tok, c.body)
		if err != nil || status != c.want {
			t.Fatalf("%s %s after the batches: %d %.200s %v (after %v), want %d within %v", c.method, c.path, status, body, err, time.Since(start), c.want, prompt)
		}
	}
	// The last writes won: round 2 everywhere but where the concurrent
	// batches wrote (keys below 4.5 conc).
	last := fmt.Sprintf("k%04d", size-1)
	v, _ := db.getValue("wedge", last)
	equal(t, last, v, fmt.Sprintf(`{"n":%d,"round":2,"grp":"g%d"}`, size-1, (size-1)%4))
}

// TestDocumentsConcurrentWriters: 64 clients overwriting documents at once
// (issue 11: on FerretDB some answered 503 after 10 s) all succeed, with
// the default backend timeout.
func TestDocumentsConcurrentWriters(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	const clients, writes = 64, 6
	// The documents exist: every write below is an update, FerretDB's
	// costly case.
	status, body, err := tryDo(srv, time.Minute, "POST", "/v1/storage/db/busy/batch", tok, setOps(0, clients, 0))
	if err == nil {
		err = checkBatch(status, body, clients)
	}
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients*writes)
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < writes; i++ {
				// Half of the writes go to the client's own key, half to a
				// key shared with another client.
				key := fmt.Sprintf("k%04d", (g+i%2)%clients)
				status, body, err := tryDo(srv, 30*time.Second, "PUT", "/v1/storage/db/busy/"+key, tok, fmt.Sprintf(`{"by":%d,"i":%d}`, g, i))
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("status %d: %.200s", status, body)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d write %d: %v", g, i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d writes failed", n, clients*writes)
	}
	t.Logf("%d clients, %d writes: %v", clients, clients*writes, time.Since(start))
}

// TestDocumentsLayout checks where documents land in each layout: the
// single layout keeps them all in Config.DocumentsCollection; the
// partitioned one (the default on FerretDB) gives each (location,
// collection) its own physical collection, named by hashes under a per
// tenant prefix, so that FerretDB's scans never cross into another
// tenant's documents. Identities with odd ids keep to their own documents
// in both.
func TestDocumentsLayout(t *testing.T) {
	t.Parallel()
	for _, layout := range []string{storage.DocumentsLayoutSingle, storage.DocumentsLayoutPartitioned} {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.DocumentsLayout = layout }))
			mongoOnly(t, srv)
			srv.RegisterApp(t, "app-a", allScopes...)
			type who struct{ tenant, user, tier, coll string }
			all := []who{
				{"t1", "", "", "notes"},
				{"t1", "", "", "other"},
				{"t1", "u1", "user", "notes"},
				{"t1", "", "shared", "notes"},
				{"t2", "", "", "notes"},
				{"t$.3", "", "", "notes"},    // ids may hold '$' and '.'
				{"t1x", "", "", "notes"},     // a tenant that t1 prefixes
				{"t1", "", "", "notes.more"}, // a collection that notes prefixes
			}
			views := make([]dbAs, len(all))
			for i, w := range all {
				views[i] = dbAs{t: t, srv: srv, tier: w.tier, tok: srv.Token(cpodtest.Claims{Tenant: w.tenant, App: "app-a", User: w.user, Scopes: allScopes})}
				views[i].mustSet(w.coll, "k", fmt.Sprintf(`{"who":%d}`, i))
				views[i].mustSet(w.coll, "k2", fmt.Sprintf(`{"who":%d}`, i))
				wantStatus(t, do(t, srv, "POST", views[i].url(w.coll, "/batch"), views[i].tok, fmt.Sprintf(`{"ops":[{"op":"set","key":"k3","value":{"who":%d}},{"op":"delete","key":"k2"}]}`, i)), 200, "")
			}
			for i, w := range all {
				v, _ := views[i].getValue(w.coll, "k")
				equal(t, fmt.Sprintf("%v: k", w), v, fmt.Sprintf(`{"who":%d}`, i))
				if _, found := views[i].getValue(w.coll, "k2"); found {
					t.Fatalf("%v: k2 was deleted", w)
				}
				p := views[i].page(w.coll, `{"filter":{"who":`+fmt.Sprint(i)+`}}`)
				equalKeys(t, fmt.Sprintf("%v: own query", w), keysOf(p.Items), []string{"k", "k3"})
				p = views[i].page(w.coll, `{}`)
				equalKeys(t, fmt.Sprintf("%v: query of all", w), keysOf(p.Items), []string{"k", "k3"})
			}

			names, err := srv.Mongo.ListCollectionNames(context.Background(), bson.D{})
			if err != nil {
				t.Fatal(err)
			}
			var docs []string
			for _, n := range names {
				if strings.HasPrefix(n, "cpod_documents") {
					docs = append(docs, n)
				}
			}
			if layout == storage.DocumentsLayoutSingle {
				equal(t, "collections", strings.Join(docs, " "), "cpod_documents")
				return
			}
			equal(t, "physical collections", len(docs), len(all))
			tenants := map[string]string{} // tenant hash -> tenant
			for _, n := range docs {
				parts := strings.SplitN(n, ".", 4)
				if len(parts) != 4 || parts[0] != "cpod_documents" || len(parts[1]) != 16 || len(parts[2]) != 16 || strings.Trim(parts[1]+parts[2], "0123456789abcdef") != "" {
					t.Fatalf("physical collection %q is not cpod_documents.<16 hex>.<16 hex>.<collection>", n)
				}
				tenants[parts[1]] = parts[3]
			}
			// t1's five locations and collections share one tenant prefix.
			equal(t, "tenant prefixes", len(tenants), 4)
		})
	}
}

// TestDocumentsLayoutConfig: an unknown layout, and a document depth above
// MaxDocumentDepthCeiling, are refused by New.
func TestDocumentsLayoutConfig(t *testing.T) {
	srv := cpodtest.NewServer(t)
	cfg := storage.Config{
		S3: srv.S3, Bucket: srv.Bucket, Mongo: srv.Mongo, SQL: srv.SQL, Redis: srv.Redis,
		Auth:            storage.AuthConfig{Keys: []storage.Key{{Secret: srv.TokenKey()}}},
		SigningKey:      []byte(strings.Repeat("s", 32)),
		DocumentsLayout: "sharded",
	}
	if _, err := storage.New(cfg); err == nil || !strings.Contains(err.Error(), "DocumentsLayout") {
		t.Fatalf("New with DocumentsLayout %q: %v, want an error naming the field", cfg.DocumentsLayout, err)
	}
	cfg.DocumentsLayout = storage.DocumentsLayoutPartitioned
	if _, err := storage.New(cfg); err != nil {
		t.Fatal(err)
	}
	// A depth MongoDB cannot store is refused, not silently lowered.
	cfg.Limits.MaxDocumentDepth = storage.MaxDocumentDepthCeiling + 1
	if _, err := storage.New(cfg); err == nil || !strings.Contains(err.Error(), "MaxDocumentDepth must be at most 96") {
		t.Fatalf("New with MaxDocumentDepth %d: %v, want an error naming the field", cfg.Limits.MaxDocumentDepth, err)
	}
	cfg.Limits.MaxDocumentDepth = storage.MaxDocumentDepthCeiling
	if _, err := storage.New(cfg); err != nil {
		t.Fatal(err)
	}
}

// TestDocumentsLayoutKeepsData: documents that an engine from before the
// partitioned layout wrote into the single collection stay readable (auto
// keeps the single layout then), and a fresh FerretDB gets the partitioned
// layout.
func TestDocumentsLayoutKeepsData(t *testing.T) {
	t.Parallel()
	// Auto only: another layout forced through the environment is not what
	// this test is about.
	auto := cpodtest.WithConfig(func(c *storage.Config) { c.DocumentsLayout = storage.DocumentsLayoutAuto })

	old := cpodtest.NewServer(t, auto)
	mongoOnly(t, old)
	old.RegisterApp(t, "app-a", allScopes...)
	// The stored form of doc.go, as the old engine wrote it.
	now := time.Now().UTC().Truncate(time.Millisecond)
	_, err := old.Mongo.Collection("cpod_documents").InsertOne(context.Background(), bson.D{
		{Key: "_id", Value: "t1/apps/app-a/notes/k"}, {Key: "loc", Value: "t1/apps/app-a/"},
		{Key: "coll", Value: "notes"}, {Key: "key", Value: "k"},
		{Key: "json", Value: `{"old":true}`}, {Key: "v", Value: bson.D{{Key: "old", Value: true}}},
		{Key: "created", Value: now}, {Key: "updated", Value: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	db := dbAs{t: t, srv: old, tok: old.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})}
	v, found := db.getValue("notes", "k")
	if !found || v != `{"old":true}` {
		t.Fatalf("a document of the single layout: found %v, value %s", found, v)
	}
	db.mustSet("notes", "k2", `2`)
	equalKeys(t, "query", keysOf(db.page("notes", `{}`).Items), []string{"k", "k2"})

	fresh := cpodtest.NewServer(t, auto)
	fresh.RegisterApp(t, "app-a", allScopes...)
	db = dbAs{t: t, srv: fresh, tok: fresh.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})}
	db.mustSet("notes", "k", `1`)
	var info bson.M
	if err := fresh.Mongo.RunCommand(context.Background(), bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		t.Fatal(err)
	}
	names, err := fresh.Mongo.ListCollectionNames(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	single := false
	for _, n := range names {
		single = single || n == "cpod_documents"
	}
	_, ferret := info["ferretdbVersion"]
	equal(t, "single layout on a fresh server", single, !ferret)
}
