package storage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// owner is one identity's data in one tier, for the erase matrix.
type owner struct {
	tenant, app, user string
	tier              string
}

func (o owner) String() string {
	return fmt.Sprintf("%s/%s/%s/%s", o.tenant, o.app, o.user, o.tier)
}

func (o owner) token(srv *cpodtest.Server) string {
	return srv.Token(cpodtest.Claims{Tenant: o.tenant, App: o.app, User: o.user, Scopes: allScopes})
}

// seed stores one file, one document and one kv key (plus a counter,
// whose nonce keys an erase removes without counting) for o.
func (o owner) seed(t *testing.T, srv *cpodtest.Server) {
	t.Helper()
	tok, q := o.token(srv), "?tier="+o.tier
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/dir/f.txt"+q, tok, "file of "+o.String()), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/notes/k"+q, tok, map[string]string{"of": o.String()}), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k"+q, tok, map[string]any{"value": o.String()}), http.StatusNoContent, "")
}

// present reports which of o's file, document and kv key exist.
func (o owner) present(t *testing.T, srv *cpodtest.Server) [3]bool {
	t.Helper()
	tok, q := o.token(srv), "?tier="+o.tier
	var got [3]bool
	for i, p := range []string{"/v1/storage/files/dir/f.txt", "/v1/storage/db/notes/k", "/v1/storage/kv/k"} {
		r := do(t, srv, "GET", p+q, tok, nil)
		switch r.status {
		case http.StatusOK:
			got[i] = true
		case http.StatusNotFound:
		default:
			t.Fatalf("GET %s as %s: status %d %s", p, o, r.status, r.body)
		}
	}
	return got
}

type eraseResult struct {
	Files, Documents, KV int64
}

func adminErase(t *testing.T, srv *cpodtest.Server, path string) eraseResult {
	t.Helper()
	r := do(t, srv, "DELETE", path, srv.AdminToken, nil)
	wantStatus(t, r, http.StatusOK, "")
	var res eraseResult
	decode(t, r, &res)
	return res
}

// TestAdminEraseNeighbours is the isolation matrix: each erase scope (a
// user, an app, a tenant) removes exactly its data in files, documents and
// kv, and none of its neighbours' whose ids start the same (t1 and t10, u1
// and u10, app a and ab), nor the other tiers; a second call answers zeros.
func TestAdminEraseNeighbours(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	srv.RegisterApp(t, "ab", allScopes...)
	var all []owner
	for _, tenant := range []string{"t1", "t10"} {
		for _, app := range []string{"a", "ab"} {
			all = append(all, owner{tenant, app, "u1", "private"})
		}
		for _, user := range []string{"u1", "u10"} {
			all = append(all, owner{tenant, "a", user, "user"})
		}
		all = append(all, owner{tenant, "a", "u1", "shared"})
	}
	for _, o := range all {
		o.seed(t, srv)
	}
	// A counter's nonce keys go with the erase, uncounted.
	u1 := owner{"t1", "a", "u1", "user"}
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/counter?tier=user", u1.token(srv), nil), http.StatusOK, "")

	gone := map[owner]bool{}
	check := func(step string) {
		t.Helper()
		for _, o := range all {
			want := !gone[o]
			got := o.present(t, srv)
			for i, what := range []string{"file", "document", "kv key"} {
				if got[i] != want {
					t.Errorf("after %s: %s of %s present = %v, want %v", step, what, o, got[i], want)
				}
			}
		}
	}
	steps := []struct {
		path   string
		want   eraseResult
		erased func(o owner) bool
	}{
		{"/v1/admin/tenants/t1/users/u1/data", eraseResult{1, 1, 2}, func(o owner) bool { return o.tenant == "t1" && o.tier == "user" && o.user == "u1" }},
		{"/v1/admin/tenants/t1/apps/a/data", eraseResult{1, 1, 1}, func(o owner) bool { return o.tenant == "t1" && o.tier == "private" && o.app == "a" }},
		{"/v1/admin/tenants/t1", eraseResult{3, 3, 3}, func(o owner) bool { return o.tenant == "t1" }},
	}
	for _, s := range steps {
		equal(t, s.path, adminErase(t, srv, s.path), s.want)
		for _, o := range all {
			if s.erased(o) {
				gone[o] = true
			}
		}
		check(s.path)
		equal(t, s.path+" again", adminErase(t, srv, s.path), eraseResult{})
	}
	// Nothing of t1 is left in the kv store, counters' nonces included;
	// t10's keys stay.
	var t1Keys, t10Keys int
	for _, k := range kvLocations(t, srv) {
		switch {
		case strings.HasPrefix(k, "t1/"):
			t1Keys++
		case strings.HasPrefix(k, "t10/"):
			t10Keys++
		}
	}
	equal(t, "t1 kv keys", t1Keys, 0)
	equal(t, "t10 kv keys", t10Keys, 5)
}

// TestAdminEraseGlobIDs: ids holding SCAN MATCH's glob characters (* ? [ ])
// match only themselves: erasing tenant "t*" or user "u?" leaves "t1" and
// "u1" alone.
func TestAdminEraseGlobIDs(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	star, plain := owner{"t*", "a", "u[1]", "user"}, owner{"t1", "a", "u1", "user"}
	q := owner{"t1", "a", "u?", "user"}
	for _, o := range []owner{star, plain, q} {
		o.seed(t, srv)
	}
	equal(t, "erase u?", adminErase(t, srv, "/v1/admin/tenants/t1/users/u%3F/data"), eraseResult{1, 1, 1})
	equal(t, "u1 after erasing u?", plain.present(t, srv), [3]bool{true, true, true})
	equal(t, "erase t*", adminErase(t, srv, "/v1/admin/tenants/t%2A"), eraseResult{1, 1, 1})
	equal(t, "t1 after erasing t*", plain.present(t, srv), [3]bool{true, true, true})
	equal(t, "t*", star.present(t, srv), [3]bool{})
	equal(t, "erase t[1] (no such tenant)", adminErase(t, srv, "/v1/admin/tenants/t%5B1%5D"), eraseResult{})
	equal(t, "t1 after erasing t[1]", plain.present(t, srv), [3]bool{true, true, true})
}

// TestAdminAuthAndIDs: the admin routes need an admin token (an app's
// token is not one), refuse ids that are not token ids before any backend
// call, and never answer CORS.
func TestAdminAuthAndIDs(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.CORSOrigins = []string{"*"} }))
	srv.RegisterApp(t, "a", allScopes...)
	appTok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	paths := []struct{ method, path string }{
		{"DELETE", "/v1/admin/tenants/t1/users/u1/data"},
		{"GET", "/v1/admin/tenants/t1/users/u1/export"},
		{"DELETE", "/v1/admin/tenants/t1/apps/a/data"},
		{"DELETE", "/v1/admin/tenants/t1"},
	}
	for _, p := range paths {
		wantStatus(t, do(t, srv, p.method, p.path, "", nil), http.StatusUnauthorized, "invalid_token")
		wantStatus(t, do(t, srv, p.method, p.path, appTok, nil), http.StatusUnauthorized, "invalid_token")
		wantStatus(t, do(t, srv, p.method, p.path, srv.AdminToken+"x", nil), http.StatusUnauthorized, "invalid_token")
	}
	before := srv.Calls()
	for _, p := range []string{
		"/v1/admin/tenants/t1%2Fusers%2Fu1", // a '/' in the tenant
		"/v1/admin/tenants/t%251",           // a '%'
		"/v1/admin/tenants/t%5C1",           // a '\'
		"/v1/admin/tenants/%2E%2E",          // ".."
		"/v1/admin/tenants/t%201",           // a space
		"/v1/admin/tenants/" + strings.Repeat("t", 129),
		"/v1/admin/tenants/t1/users/u1%2F..%2Fu2/data",
		"/v1/admin/tenants/t1/apps/a%00/data",
	} {
		wantStatus(t, do(t, srv, "DELETE", p, srv.AdminToken, nil), http.StatusBadRequest, "invalid_request")
	}
	wantStatus(t, do(t, srv, "GET", "/v1/admin/tenants/t1/users/%2E/export", srv.AdminToken, nil), http.StatusBadRequest, "invalid_request")
	if after := srv.Calls(); after != before {
		t.Fatalf("refused ids reached a backend: %+v then %+v", before, after)
	}
	// No CORS, neither preflight nor actual.
	for _, method := range []string{"OPTIONS", "DELETE"} {
		req, _ := http.NewRequest(method, srv.URL+"/v1/admin/tenants/t9", nil)
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Access-Control-Request-Method", "DELETE")
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
		res, err := srv.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if v := res.Header.Get("Access-Control-Allow-Origin"); v != "" {
			t.Fatalf("%s answered CORS: Access-Control-Allow-Origin %q", method, v)
		}
	}
}

// TestAdminEraseResume: an erase stopped midway (its context cancelled
// after the first batch of files, then after the first batch of
// documents) is finished by running it again: everything is gone and the
// counts of the runs add up to what was stored.
func TestAdminEraseResume(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	o := owner{"t1", "a", "u1", "user"}
	tok := o.token(srv)
	const n = 5
	for i := range n {
		wantStatus(t, do(t, srv, "PUT", fmt.Sprintf("/v1/storage/files/f%d?tier=user", i), tok, "x"), http.StatusOK, "")
		wantStatus(t, do(t, srv, "PUT", fmt.Sprintf("/v1/storage/db/c%d/k%d?tier=user", i%2, i), tok, "1"), http.StatusOK, "")
		wantStatus(t, do(t, srv, "PUT", fmt.Sprintf("/v1/storage/kv/k%d?tier=user", i), tok, map[string]any{"value": "v"}), http.StatusNoContent, "")
	}
	neighbour := owner{"t1", "a", "u10", "user"}
	neighbour.seed(t, srv)

	var total [3]int64
	run := func(stopAfter string) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f, d, k, err := storage.EraseUserInBatches(ctx, srv.Engine, "t1", "u1", 2, func(p string) {
			if p == stopAfter {
				cancel()
			}
		})
		total[0] += f
		total[1] += d
		total[2] += k
		return err
	}
	if err := run("files"); err == nil {
		t.Fatal("an erase cancelled after its first batch of files succeeded")
	}
	if total != [3]int64{2, 0, 0} {
		t.Fatalf("counts after the first interrupted run: %v, want [2 0 0]", total)
	}
	if err := run("documents"); err == nil {
		t.Fatal("an erase cancelled after its first batch of documents succeeded")
	}
	if total[0] != n || total[1] != 2 || total[2] != 0 {
		t.Fatalf("counts after the second interrupted run: %v, want [%d 2 0]", total, n)
	}
	if err := run(""); err != nil {
		t.Fatal(err)
	}
	equal(t, "counts of the three runs", total, [3]int64{n, n, n})
	equal(t, "erase again", adminErase(t, srv, "/v1/admin/tenants/t1/users/u1/data"), eraseResult{})
	equal(t, "neighbour u10", neighbour.present(t, srv), [3]bool{true, true, true})
	r := do(t, srv, "GET", "/v1/storage/files?tier=user", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "files left", strings.Contains(string(r.body), `"items":[]`), true)
}

// readTar reads a whole tar into name -> content, in order.
func readTar(t *testing.T, b []byte) (map[string]string, []string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	files := map[string]string{}
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, names
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		c, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("tar %s: %v", h.Name, err)
		}
		if _, dup := files[h.Name]; dup {
			t.Fatalf("tar holds %s twice", h.Name)
		}
		files[h.Name] = string(c)
		names = append(names, h.Name)
	}
}

// TestAdminExport: the export tar holds exactly the user's user-tier
// files, documents (JSONL per collection, by key, values byte for byte)
// and kv keys with TTLs, and nothing of a neighbour (u10, t10) or of
// another tier.
func TestAdminExport(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	srv.RegisterApp(t, "b", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	tokB := srv.Token(cpodtest.Claims{Tenant: "t1", App: "b", User: "u1", Scopes: allScopes})
	for _, o := range []owner{{"t1", "a", "u10", "user"}, {"t10", "a", "u1", "user"}, {"t1", "a", "u1", "private"}, {"t1", "a", "u1", "shared"}} {
		o.seed(t, srv)
	}
	big := strings.Repeat("0123456789", 100_000) // 1 MB
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/docs/report.txt?tier=user", tok, "the report"), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/caf%C3%A9/"+strings.Repeat("n", 120)+"?tier=user", tokB, big), http.StatusOK, "")
	// "a" and "a-b": "a-b/..." sorts before "a/..." by _id.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/a/k2?tier=user", tok, `{"z":1,"a":[1.50,"<&>"]}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/a/k1?tier=user", tokB, `"one"`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/a-b/x?tier=user", tok, `null`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/session/1?tier=user", tok, map[string]any{"value": "s", "ttl": 600}), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/pref?tier=user", tok, map[string]any{"value": map[string]int{"x": 1}}), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/count?tier=user", tok, map[string]any{"by": 3}), http.StatusOK, "")

	r := do(t, srv, "GET", "/v1/admin/tenants/t1/users/u1/export", srv.AdminToken, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "content type", r.header.Get("Content-Type"), "application/x-tar")
	files, names := readTar(t, r.body)
	want := []string{"documents/a-b.jsonl", "documents/a.jsonl", "files/caf\u00e9/" + strings.Repeat("n", 120), "files/docs/report.txt", "kv.jsonl"}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	equal(t, "entries", strings.Join(sorted, " "), strings.Join(want, " "))
	equal(t, "documents/a.jsonl", files["documents/a.jsonl"], `{"key":"k1","value":"one"}`+"\n"+`{"key":"k2","value":{"z":1,"a":[1.50,"<&>"]}}`+"\n")
	equal(t, "documents/a-b.jsonl", files["documents/a-b.jsonl"], `{"key":"x","value":null}`+"\n")
	equal(t, "report", files["files/docs/report.txt"], "the report")
	equal(t, "big file", files["files/caf\u00e9/"+strings.Repeat("n", 120)] == big, true)
	type kvLine struct {
		Key, Value string
		TTL        int64
	}
	var kv []kvLine
	for _, l := range strings.Split(strings.TrimSuffix(files["kv.jsonl"], "\n"), "\n") {
		var x kvLine
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("kv line %q: %v", l, err)
		}
		kv = append(kv, x)
	}
	sort.Slice(kv, func(i, j int) bool { return kv[i].Key < kv[j].Key })
	if len(kv) != 3 || kv[0] != (kvLine{"count", "3", -1}) || kv[1] != (kvLine{"pref", `{"x":1}`, -1}) ||
		kv[2].Key != "session/1" || kv[2].Value != "s" || kv[2].TTL < 590 || kv[2].TTL > 600 {
		t.Fatalf("kv.jsonl: %+v", kv)
	}

	// A user with nothing: an empty kv.jsonl and nothing else.
	r = do(t, srv, "GET", "/v1/admin/tenants/t1/users/nobody/export", srv.AdminToken, nil)
	wantStatus(t, r, http.StatusOK, "")
	files, names = readTar(t, r.body)
	equal(t, "empty export", strings.Join(names, " "), "kv.jsonl")
	equal(t, "empty kv.jsonl", files["kv.jsonl"], "")
}

// TestAdminEraseBraceTenant: a tenant id may start with '}', whose kv keys
// take kvKey's other form (a hashed hash tag); erase and export find them
// there too, and only them: "}t1" is a neighbour of "}t".
func TestAdminEraseBraceTenant(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	brace, neighbour := owner{"}t", "a", "u}1", "user"}, owner{"}t1", "a", "u}1", "user"}
	for _, o := range []owner{brace, neighbour} {
		o.seed(t, srv)
		wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/n?tier=user", o.token(srv), map[string]any{"by": 2}), http.StatusOK, "")
	}
	r := do(t, srv, "GET", "/v1/admin/tenants/%7Dt/users/u%7D1/export", srv.AdminToken, nil)
	wantStatus(t, r, http.StatusOK, "")
	files, _ := readTar(t, r.body)
	kvLines := strings.Split(strings.TrimSuffix(files["kv.jsonl"], "\n"), "\n")
	sort.Strings(kvLines)
	equal(t, "kv.jsonl of }t", strings.Join(kvLines, "\n"), `{"key":"k","value":"}t/a/u}1/user","ttl":-1}`+"\n"+`{"key":"n","value":"2","ttl":-1}`)
	equal(t, "erase }t", adminErase(t, srv, "/v1/admin/tenants/%7Dt"), eraseResult{1, 1, 2})
	equal(t, "}t after its erase", brace.present(t, srv), [3]bool{})
	equal(t, "}t1 after erasing }t", neighbour.present(t, srv), [3]bool{true, true, true})
	for _, k := range kvLocations(t, srv) {
		if strings.HasPrefix(k, "}t/") {
			t.Errorf("key %q of }t is left after its erase", k)
		}
	}
}

// TestAdminEraseClaims: a version claim left by a crashed engine names its
// document (tenant, user, key); erasing the user removes it, and only it.
func TestAdminEraseClaims(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	mongoOnly(t, srv)
	srv.RegisterApp(t, "a", allScopes...)
	claims := srv.Mongo.Collection("cpod_documents_claims")
	ctx := context.Background()
	for _, id := range []string{"t1/users/u1/notes/k#v1#0", "t1/users/u10/notes/k#v1#0"} {
		if _, err := claims.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "exp", Value: time.Now().Add(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
	}
	equal(t, "erase u1", adminErase(t, srv, "/v1/admin/tenants/t1/users/u1/data"), eraseResult{})
	var left []string
	cur, err := claims.Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		left = append(left, d.ID)
	}
	equal(t, "claims left", strings.Join(left, " "), "t1/users/u10/notes/k#v1#0")
}
