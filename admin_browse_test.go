package storage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// browsePage is one page of an admin listing.
type browsePage[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

// listAll pages through an admin listing with the limit, failing on a
// loop, and returns every item.
func listAll[T any](t *testing.T, srv *cpodtest.Server, path string, limit int) []T {
	t.Helper()
	var all []T
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatalf("%s: more than 100 pages", path)
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		q := fmt.Sprintf("%slimit=%d", sep, limit)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		r := do(t, srv, "GET", path+q, srv.AdminToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		var p browsePage[T]
		decode(t, r, &p)
		if len(p.Items) > limit {
			t.Fatalf("%s: %d items on a page of limit %d", path, len(p.Items), limit)
		}
		all = append(all, p.Items...)
		if p.NextCursor == nil {
			return all
		}
		cursor = *p.NextCursor
	}
}

// seedBrowse stores a file, a document and a kv key for each owner.
func seedBrowse(t *testing.T, srv *cpodtest.Server, owners []owner) {
	t.Helper()
	for _, o := range owners {
		o.seed(t, srv)
	}
}

// TestAdminBrowseAuth: every console route answers only the admin token
// (none, an app's JWT or a wrong admin token: 401 invalid_token, as the
// other admin routes), refuses bad ids with 400 before any backend call,
// and never answers CORS.
func TestAdminBrowseAuth(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.CORSOrigins = []string{"*"} }))
	srv.RegisterApp(t, "a", allScopes...)
	appTok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	userOnly := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: []string{"storage.user.read"}})
	const loc = "/v1/admin/tenants/t1/locations/private:a"
	// Each route, and its answer to the admin token with no body (a
	// write without one is refused by the storage handler, past the auth).
	routes := []struct {
		method, path string
		admin        int
	}{
		{"GET", "/v1/admin/tenants", http.StatusOK},
		{"GET", "/v1/admin/tenants/t1/locations", http.StatusOK},
		{"GET", loc + "/collections", http.StatusOK},
		{"GET", loc + "/kv?prefix=a", http.StatusOK},
		{"GET", loc + "/kv/k", http.StatusNotFound},
		{"HEAD", loc + "/kv/k", http.StatusNotFound},
		{"PUT", loc + "/kv/k", http.StatusBadRequest},
		{"PATCH", loc + "/kv/k", http.StatusBadRequest},
		{"DELETE", loc + "/kv/k", http.StatusNoContent},
		{"GET", loc + "/files?prefix=a", http.StatusOK},
		{"GET", loc + "/files/a.txt", http.StatusNotFound},
		{"HEAD", loc + "/files/a.txt", http.StatusNotFound},
		{"DELETE", loc + "/files/a.txt", http.StatusNoContent},
		{"PUT", loc + "/files/a.txt", http.StatusOK},
		{"GET", loc + "/db/notes/k", http.StatusNotFound},
		{"HEAD", loc + "/db/notes/k", http.StatusNotFound},
		{"PUT", loc + "/db/notes/k", http.StatusBadRequest},
		{"PATCH", loc + "/db/notes/k", http.StatusBadRequest},
		{"DELETE", loc + "/db/notes/k", http.StatusNoContent},
		{"POST", loc + "/db/notes/query", http.StatusOK},
		{"POST", loc + "/db/notes/count", http.StatusOK},
		{"GET", loc + "/db/notes/changes", http.StatusBadRequest}, // no Accept: text/event-stream
		{"GET", loc + "/kv/changes", http.StatusBadRequest},
		{"GET", loc + "/files/changes", http.StatusBadRequest},
	}
	for _, rt := range routes {
		if r := do(t, srv, rt.method, rt.path, srv.AdminToken, nil); r.status != rt.admin {
			t.Errorf("%s %s with the admin token: status %d, want %d; %s", rt.method, rt.path, r.status, rt.admin, r.body)
		}
		for name, tok := range map[string]string{"no token": "", "app token": appTok, "user token": userOnly, "wrong admin token": srv.AdminToken + "x", "admin token as JWT": "x" + srv.AdminToken} {
			r := do(t, srv, rt.method, rt.path, tok, nil)
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: status %d, want 401; %s", rt.method, rt.path, name, r.status, r.body)
				continue
			}
			if rt.method == "HEAD" {
				equal(t, "Cpod-Error", r.header.Get("Cpod-Error"), "invalid_token")
				continue
			}
			wantStatus(t, r, http.StatusUnauthorized, "invalid_token")
		}
	}
	before := srv.Calls()
	for _, p := range []string{
		"/v1/admin/tenants/%2E%2E/locations",
		"/v1/admin/tenants/t%251/locations",
		"/v1/admin/tenants/t1%2Fapps/locations",
		"/v1/admin/tenants/" + strings.Repeat("t", 129) + "/locations",
		"/v1/admin/tenants/t1/locations/private:/collections",
		"/v1/admin/tenants/t1/locations/private/collections",
		"/v1/admin/tenants/t1/locations/user:u1%2F..%2Fu2/kv",
		"/v1/admin/tenants/t1/locations/apps:a/kv",
		"/v1/admin/tenants/t1/locations/shared:x/kv",
		"/v1/admin/tenants/t1/locations/user:%2E%2E/db/notes/k",
		"/v1/admin/tenants/t1/locations/private:a%00/files/x",
		"/v1/admin/tenants/t1/locations/private:a/files/..%2Fx",
		"/v1/admin/tenants/t1/locations/private:a/db/no%2Fpe/k",
		"/v1/admin/tenants/t1/locations/private:a/kv?prefix=%01",
		"/v1/admin/tenants/t1/locations/private:a/kv?limit=0",
		"/v1/admin/tenants?limit=100000",
		"/v1/admin/tenants?limit=x",
		"/v1/admin/tenants?tier=user",
		"/v1/admin/tenants/t1/locations/private:a/files?tier=user",
	} {
		r := do(t, srv, "GET", p, srv.AdminToken, nil)
		wantStatus(t, r, http.StatusBadRequest, "invalid_request")
	}
	for _, p := range []string{"/v1/admin/tenants", "/v1/admin/tenants/t1/locations", loc + "/collections", loc + "/kv"} {
		wantStatus(t, do(t, srv, "GET", p+"?cursor=a1.AAAA.AAAA", srv.AdminToken, nil), http.StatusBadRequest, "invalid_cursor")
		wantStatus(t, do(t, srv, "GET", p+"?cursor=x", srv.AdminToken, nil), http.StatusBadRequest, "invalid_cursor")
	}
	if after := srv.Calls(); after != before {
		t.Fatalf("refused requests reached a backend: %+v then %+v", before, after)
	}
	req, _ := http.NewRequest("OPTIONS", srv.URL+"/v1/admin/tenants", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "GET")
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if v := res.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Fatalf("the admin listing answered CORS: %q", v)
	}
}

// TestAdminBrowse finds tenants, locations, collections and kv keys from
// the data written through the storage API, on every page size, with no
// neighbour mixed in (t1 and t10, app a and ab, user u1 and u10); a
// cursor of one listing is refused by another.
func TestAdminBrowse(t *testing.T) {
	t.Parallel()
	for _, layout := range []string{storage.DocumentsLayoutPartitioned, storage.DocumentsLayoutSingle} {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.DocumentsLayout = layout }))
			if srv.Mongo == nil && layout == storage.DocumentsLayoutSingle {
				t.Skip("one run on the SQLite store, which has no layouts")
			}
			testAdminBrowse(t, srv)
		})
	}
}

func testAdminBrowse(t *testing.T, srv *cpodtest.Server) {
	srv.RegisterApp(t, "a", allScopes...)
	srv.RegisterApp(t, "ab", allScopes...)
	var owners []owner
	for _, tenant := range []string{"t1", "t10", "t2"} {
		owners = append(owners, owner{tenant, "a", "u1", "private"}, owner{tenant, "a", "u1", "shared"})
	}
	owners = append(owners, owner{"t1", "ab", "u1", "private"}, owner{"t1", "a", "u1", "user"}, owner{"t1", "a", "u10", "user"})
	seedBrowse(t, srv, owners)
	// Only a file in one tenant, only a kv key in another: found too.
	tok := srv.Token(cpodtest.Claims{Tenant: "tf", App: "a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/x", tok, "x"), http.StatusOK, "")
	tok = srv.Token(cpodtest.Claims{Tenant: "tk", App: "ab", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/x", tok, map[string]any{"value": 1}), http.StatusNoContent, "")
	tok = srv.Token(cpodtest.Claims{Tenant: "td", App: "a", User: "u5", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c2/x?tier=user", tok, 1), http.StatusOK, "")

	for _, limit := range []int{1, 2, 3, 100} {
		type tenant struct{ ID string }
		seen := map[string]bool{}
		for _, it := range listAll[tenant](t, srv, "/v1/admin/tenants", limit) {
			seen[it.ID] = true
		}
		var got []string
		for id := range seen {
			got = append(got, id)
		}
		slices.Sort(got)
		if want := []string{"t1", "t10", "t2", "td", "tf", "tk"}; !slices.Equal(got, want) {
			t.Fatalf("limit %d: tenants %v, want %v", limit, got, want)
		}

		type location struct{ Location, Tier, App, User string }
		locs := map[string]location{}
		for _, it := range listAll[location](t, srv, "/v1/admin/tenants/t1/locations", limit) {
			locs[it.Location] = it
		}
		want := map[string]location{
			"shared":    {"shared", "shared", "", ""},
			"private:a": {"private:a", "private", "a", ""}, "private:ab": {"private:ab", "private", "ab", ""},
			"user:u1": {"user:u1", "user", "", "u1"}, "user:u10": {"user:u10", "user", "", "u10"},
		}
		if fmt.Sprint(locs) != fmt.Sprint(want) {
			t.Fatalf("limit %d: locations of t1 %v, want %v", limit, locs, want)
		}
		locs = map[string]location{}
		for _, it := range listAll[location](t, srv, "/v1/admin/tenants/td/locations", limit) {
			locs[it.Location] = it
		}
		if _, ok := locs["user:u5"]; !ok || len(locs) != 2 {
			t.Fatalf("limit %d: locations of td %v", limit, locs)
		}
	}

	// Collections of a location.
	for _, c := range []string{"a-b", "a", "b.c", "zz"} {
		wantStatus(t, do(t, srv, "PUT", "/v1/admin/tenants/t1/locations/private:a/db/"+c+"/k", srv.AdminToken, 1), http.StatusOK, "")
	}
	for _, limit := range []int{1, 2, 100} {
		type coll struct{ Name string }
		var got []string
		for _, c := range listAll[coll](t, srv, "/v1/admin/tenants/t1/locations/private:a/collections", limit) {
			got = append(got, c.Name)
		}
		slices.Sort(got)
		if want := []string{"a", "a-b", "b.c", "notes", "zz"}; !slices.Equal(got, want) {
			t.Fatalf("limit %d: collections %v, want %v", limit, got, want)
		}
	}
	type coll struct{ Name string }
	if got := listAll[coll](t, srv, "/v1/admin/tenants/t1/locations/private:ab/collections", 10); len(got) != 1 || got[0].Name != "notes" {
		t.Fatalf("collections of private:ab: %v", got)
	}
	if got := listAll[coll](t, srv, "/v1/admin/tenants/t9/locations/shared/collections", 10); len(got) != 0 {
		t.Fatalf("collections of an empty location: %v", got)
	}

	// kv keys with TTLs, by prefix.
	kv := "/v1/admin/tenants/t1/locations/user:u1/kv"
	wantStatus(t, do(t, srv, "PUT", kv+"/s:1", srv.AdminToken, map[string]any{"value": "v", "ttl": 60}), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", kv+"/s:2", srv.AdminToken, map[string]any{"value": "v"}), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", kv+"/s/3", srv.AdminToken, map[string]any{"value": "v"}), http.StatusNoContent, "")
	type kvItem struct {
		Key string
		TTL int64
	}
	for _, limit := range []int{1, 2, 100} {
		got := listAll[kvItem](t, srv, kv+"?prefix=s:", limit)
		slices.SortFunc(got, func(a, b kvItem) int { return strings.Compare(a.Key, b.Key) })
		if len(got) != 2 || got[0].Key != "s:1" || got[0].TTL < 59 || got[0].TTL > 60 || got[1] != (kvItem{"s:2", -1}) {
			t.Fatalf("limit %d: kv under s: %v", limit, got)
		}
		if got := listAll[kvItem](t, srv, kv, limit); len(got) != 4 {
			t.Fatalf("limit %d: kv of user:u1: %v", limit, got)
		}
	}
	if got := listAll[kvItem](t, srv, "/v1/admin/tenants/t1/locations/user:u10/kv", 10); len(got) != 1 || got[0] != (kvItem{"k", -1}) {
		t.Fatalf("kv of user:u10: %v", got)
	}

	// A cursor belongs to its listing.
	r := do(t, srv, "GET", "/v1/admin/tenants/t1/locations?limit=1", srv.AdminToken, nil)
	var p browsePage[struct{}]
	decode(t, r, &p)
	if p.NextCursor == nil {
		t.Fatal("no cursor after one location")
	}
	wantStatus(t, do(t, srv, "GET", "/v1/admin/tenants/t10/locations?cursor="+url.QueryEscape(*p.NextCursor), srv.AdminToken, nil), http.StatusBadRequest, "invalid_cursor")
	wantStatus(t, do(t, srv, "GET", "/v1/admin/tenants?cursor="+url.QueryEscape(*p.NextCursor), srv.AdminToken, nil), http.StatusBadRequest, "invalid_cursor")
}

// TestAdminActsOnLocation: the storage routes under a location read and
// write exactly the data an app, a user or the shared tier sees, with
// the storage API's answers (ETags and If-Match included), and stream its
// changes.
func TestAdminActsOnLocation(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	for _, o := range []owner{{"t1", "a", "u1", "private"}, {"t1", "a", "u1", "user"}, {"t1", "a", "u1", "shared"}} {
		loc := map[string]string{"private": "private:a", "user": "user:u1", "shared": "shared"}[o.tier]
		base := "/v1/admin/tenants/t1/locations/" + loc
		tok, q := o.token(srv), "?tier="+o.tier
		o.seed(t, srv)

		// Documents: read, conditional write, query, delete.
		r := do(t, srv, "GET", base+"/db/notes/k", srv.AdminToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), o.String()) {
			t.Fatalf("%s: admin read %s", o, r.body)
		}
		etag := r.header.Get("ETag")
		wantStatus(t, doHeader(t, srv, "PUT", base+"/db/notes/k", srv.AdminToken, map[string]string{"by": "admin"}, "If-Match", `"nope"`), http.StatusPreconditionFailed, "conflict")
		wantStatus(t, doHeader(t, srv, "PUT", base+"/db/notes/k", srv.AdminToken, map[string]string{"by": "admin"}, "If-Match", etag), http.StatusOK, "")
		r = do(t, srv, "GET", "/v1/storage/db/notes/k"+q, tok, nil)
		if !strings.Contains(string(r.body), `"by":"admin"`) {
			t.Fatalf("%s: the app reads %s after the admin's write", o, r.body)
		}
		r = do(t, srv, "POST", base+"/db/notes/query", srv.AdminToken, map[string]any{"filter": map[string]any{"by": "admin"}})
		wantStatus(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), `"key":"k"`) {
			t.Fatalf("%s: query %s", o, r.body)
		}
		wantStatus(t, do(t, srv, "DELETE", base+"/db/notes/k", srv.AdminToken, nil), http.StatusNoContent, "")
		wantStatus(t, do(t, srv, "GET", "/v1/storage/db/notes/k"+q, tok, nil), http.StatusNotFound, "not_found")

		// kv and files.
		r = do(t, srv, "GET", base+"/kv/k", srv.AdminToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		wantStatus(t, do(t, srv, "DELETE", base+"/kv/k", srv.AdminToken, nil), http.StatusNoContent, "")
		wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k"+q, tok, nil), http.StatusNotFound, "not_found")
		r = do(t, srv, "GET", base+"/files/dir/f.txt", srv.AdminToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		equal(t, "file", string(r.body), "file of "+o.String())
		r = do(t, srv, "GET", base+"/files?prefix=dir/", srv.AdminToken, nil)
		wantStatus(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), `"key":"dir/f.txt"`) {
			t.Fatalf("%s: file list %s", o, r.body)
		}
		wantStatus(t, do(t, srv, "PUT", base+"/files/up.txt", srv.AdminToken, "up"), http.StatusOK, "")
		r = do(t, srv, "GET", "/v1/storage/files/up.txt"+q, tok, nil)
		equal(t, "uploaded file", string(r.body), "up")
		wantStatus(t, do(t, srv, "DELETE", base+"/files/dir/f.txt", srv.AdminToken, nil), http.StatusNoContent, "")
		wantStatus(t, do(t, srv, "GET", "/v1/storage/files/dir/f.txt"+q, tok, nil), http.StatusNotFound, "not_found")
	}
	// Another tenant's same names are untouched.
	o := owner{"t2", "a", "u1", "private"}
	o.seed(t, srv)
	wantStatus(t, do(t, srv, "DELETE", "/v1/admin/tenants/t1/locations/private:a/db/notes/k", srv.AdminToken, nil), http.StatusNoContent, "")
	if got := o.present(t, srv); got != [3]bool{true, true, true} {
		t.Fatalf("t2's data after t1's admin deletes: %v", got)
	}

	// A change feed as admin.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/admin/tenants/t1/locations/shared/db/live/changes", nil)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	req.Header.Set("Accept", "text/event-stream")
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	equal(t, "stream status", res.StatusCode, http.StatusOK)
	sc := bufio.NewScanner(res.Body)
	sc.Scan() // ": ok"
	shared := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/live/x?tier=shared", shared, map[string]int{"n": 1}), http.StatusOK, "")
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			if !strings.Contains(sc.Text(), `"key":"x"`) {
				t.Fatalf("event %s", sc.Text())
			}
			return
		}
	}
	t.Fatalf("no event: %v", sc.Err())
}

// doHeader is do with a JSON body and one request header.
func doHeader(t testing.TB, srv *cpodtest.Server, method, path, token string, body any, name, value string) resp {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	r, err := doHdr(srv, method, path, token, string(b), map[string]string{name: value})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestAdminBrowseBounded: a listing request does bounded work whatever the
// data holds: with 40 tenants and a page of 5, each request makes at most
// a few S3 calls (one delimiter listing), one documents read per name
// (the single layout's seeks on _id; the SQLite store is not counted) and
// at most 10 SCAN calls on Redis (plus the kv store's own), and the pages
// add up to every tenant.
func TestAdminBrowseBounded(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.DocumentsLayout = storage.DocumentsLayoutSingle }))
	srv.RegisterApp(t, "a", allScopes...)
	want := map[string]bool{}
	for i := 0; i < 40; i++ {
		tenant := fmt.Sprintf("t%02d", i)
		want[tenant] = true
		tok := srv.Token(cpodtest.Claims{Tenant: tenant, App: "a", Scopes: allScopes})
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/f", tok, "x"), http.StatusOK, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k", tok, 1), http.StatusOK, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, map[string]any{"value": 1}), http.StatusNoContent, "")
	}
	const limit = 5
	got := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 40 {
			t.Fatal("more than 40 pages of 5 for 40 tenants in three stores")
		}
		path := fmt.Sprintf("/v1/admin/tenants?limit=%d", limit)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		before := srv.Calls()
		r := do(t, srv, "GET", path, srv.AdminToken, nil)
		after := srv.Calls()
		wantStatus(t, r, http.StatusOK, "")
		t.Logf("page %d: calls S3 %d, documents %d, Redis %d", pages, after.S3-before.S3, after.Documents-before.Documents, after.Redis-before.Redis)
		if d := after.S3 - before.S3; d > 3 {
			t.Errorf("page %d: %d S3 calls", pages, d)
		}
		if d := after.Documents - before.Documents; d > limit+3 {
			t.Errorf("page %d: %d documents calls", pages, d)
		}
		if d := after.Redis - before.Redis; d > 10+3 {
			t.Errorf("page %d: %d Redis calls", pages, d)
		}
		var p browsePage[struct{ ID string }]
		decode(t, r, &p)
		for _, it := range p.Items {
			got[it.ID] = true
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if len(got) != len(want) {
		t.Fatalf("found %d tenants, want %d: %v", len(got), len(want), got)
	}
}
