package storage_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// dbAs is one identity's view of the documents API on a server, in a tier.
type dbAs struct {
	t    testing.TB
	srv  *cpodtest.Server
	tok  string
	tier string // "" is the default, private
}

func (c dbAs) url(coll, rest string) string {
	p := "/v1/storage/db/" + url.PathEscape(coll) + rest
	if c.tier != "" {
		p += "?tier=" + c.tier
	}
	return p
}

func (c dbAs) set(coll, key string, value any) resp {
	c.t.Helper()
	return do(c.t, c.srv, "PUT", c.url(coll, "/"+url.PathEscape(key)), c.tok, value)
}

func (c dbAs) get(coll, key string) resp {
	c.t.Helper()
	return do(c.t, c.srv, "GET", c.url(coll, "/"+url.PathEscape(key)), c.tok, nil)
}

func (c dbAs) del(coll, key string) resp {
	c.t.Helper()
	return do(c.t, c.srv, "DELETE", c.url(coll, "/"+url.PathEscape(key)), c.tok, nil)
}

func (c dbAs) query(coll string, body any) resp {
	c.t.Helper()
	return do(c.t, c.srv, "POST", c.url(coll, "/query"), c.tok, body)
}

func (c dbAs) batch(coll string, body any) resp {
	c.t.Helper()
	return do(c.t, c.srv, "POST", c.url(coll, "/batch"), c.tok, body)
}

// mustSet stores value (JSON text) and checks the echo.
func (c dbAs) mustSet(coll, key, value string) {
	c.t.Helper()
	r := c.set(coll, key, value)
	wantStatus(c.t, r, http.StatusOK, "")
}

// getValue returns the stored JSON text of key; found is false on 404.
func (c dbAs) getValue(coll, key string) (value string, found bool) {
	c.t.Helper()
	r := c.get(coll, key)
	if r.status == http.StatusNotFound {
		wantStatus(c.t, r, http.StatusNotFound, "not_found")
		return "", false
	}
	wantStatus(c.t, r, http.StatusOK, "")
	var it dbItem
	decode(c.t, r, &it)
	equal(c.t, "key", it.Key, key)
	return string(it.Value), true
}

type dbItem struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

type dbPage struct {
	Items      []dbItem `json:"items"`
	NextCursor *string  `json:"nextCursor"`
}

func (c dbAs) page(coll string, body any) dbPage {
	c.t.Helper()
	r := c.query(coll, body)
	wantStatus(c.t, r, http.StatusOK, "")
	var p dbPage
	decode(c.t, r, &p)
	if p.Items == nil {
		c.t.Fatalf("items is not an array: %s", r.body)
	}
	return p
}

func keysOf(items []dbItem) []string {
	ks := make([]string, len(items))
	for i, it := range items {
		ks[i] = it.Key
	}
	return ks
}

func equalKeys(t testing.TB, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got %d keys %q\nwant %d keys %q", what, len(got), got, len(want), want)
	}
}

// newDBServer starts a server with app-a (all scopes) and returns the view
// of t1/app-a/u1 in the private tier.
//
// The backend timeout is a minute: FerretDB's writes scan the collection,
// and a 500-op batch under the race detector on a busy machine can take
// longer than the default 10 s.
func newDBServer(t *testing.T, opts ...cpodtest.Option) dbAs {
	t.Helper()
	slow := cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = time.Minute })
	srv := cpodtest.NewServer(t, append([]cpodtest.Option{slow}, opts...)...)
	srv.RegisterApp(t, "app-a", allScopes...)
	return dbAs{t: t, srv: srv, tok: srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})}
}

// TestDocumentsSeed replays the seed's sdk.storage.db snippets call for call.
func TestDocumentsSeed(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)

	// await prefs.set('theme', { mode: 'dark', accent: 'purple', fontSize: 14 })
	r := db.set("preferences", "theme", `{"mode":"dark","accent":"purple","fontSize":14}`)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "set response", strings.TrimSpace(string(r.body)), `{"key":"theme","value":{"mode":"dark","accent":"purple","fontSize":14}}`)

	// prefs.get('theme') → { mode: 'dark', accent: 'purple', fontSize: 14 }
	v, found := db.getValue("preferences", "theme")
	equal(t, "found", found, true)
	equal(t, "theme", v, `{"mode":"dark","accent":"purple","fontSize":14}`)

	// prefs.get('does-not-exist') → null (404 not_found on the wire)
	wantStatus(t, db.get("preferences", "does-not-exist"), http.StatusNotFound, "not_found")

	// sdk.storage.db.collection('preferences', { tier: 'user' }).set('layout', { sidebar: 'collapsed' })
	user := db
	user.tier = "user"
	user.mustSet("preferences", "layout", `{"sidebar":"collapsed"}`)
	v, _ = user.getValue("preferences", "layout")
	equal(t, "user layout", v, `{"sidebar":"collapsed"}`)
	wantStatus(t, db.get("preferences", "layout"), http.StatusNotFound, "not_found") // not in private

	// sessions.query({ filter: { status: 'active', plan: 'pro' }, sort: { createdAt: -1 }, limit: 20 })
	type session struct {
		key       string
		status    string
		plan      string
		createdAt int
	}
	var all []session
	for i := 0; i < 100; i++ {
		s := session{fmt.Sprintf("sess-%03d", i), "active", "free", 1700000000 + (i/3)*1000}
		if i%3 == 0 {
			s.status = "expired"
		}
		if i%2 == 0 {
			s.plan = "pro"
		}
		all = append(all, s)
		db.mustSet("sessions", s.key, fmt.Sprintf(`{"status":%q,"plan":%q,"createdAt":%d}`, s.status, s.plan, s.createdAt))
	}
	var want []string
	var match []session
	for _, s := range all {
		if s.status == "active" && s.plan == "pro" {
			match = append(match, s)
		}
	}
	sort.SliceStable(match, func(i, j int) bool {
		if match[i].createdAt != match[j].createdAt {
			return match[i].createdAt > match[j].createdAt
		}
		return match[i].key < match[j].key
	})
	for _, s := range match {
		want = append(want, s.key)
	}
	if len(want) <= 20 {
		t.Fatalf("the fixture needs more than one page, has %d matches", len(want))
	}
	active := db.page("sessions", `{"filter":{"status":"active","plan":"pro"},"sort":{"createdAt":-1},"limit":20}`)
	equalKeys(t, "page 1", keysOf(active.Items), want[:20])
	if active.NextCursor == nil {
		t.Fatal("page 1 has no nextCursor")
	}
	for _, it := range active.Items {
		var s struct{ Status, Plan string }
		if err := json.Unmarshal(it.Value, &s); err != nil || s.Status != "active" || s.Plan != "pro" {
			t.Fatalf("item %s = %s, want an active pro session", it.Key, it.Value)
		}
	}

	// sessions.query({ filter: { status: 'active' }, cursor: active.nextCursor, limit: 20 })
	// continues the original query: its filter (plan: 'pro' included) and sort.
	body, _ := json.Marshal(map[string]any{"filter": map[string]any{"status": "active"}, "cursor": *active.NextCursor, "limit": 20})
	page2 := db.page("sessions", body)
	equalKeys(t, "page 2", keysOf(page2.Items), want[20:])
	if page2.NextCursor != nil {
		t.Fatalf("last page has nextCursor %q", *page2.NextCursor)
	}

	// cache.batch([...]) → succeeded 3, failed 0
	r = db.batch("cache", `{"ops":[
		{"op":"set","key":"user:123","value":{"name":"Alice","plan":"pro"}},
		{"op":"set","key":"user:456","value":{"name":"Bob","plan":"free"}},
		{"op":"delete","key":"user:999"}]}`)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "batch response", strings.TrimSpace(string(r.body)),
		`{"succeeded":3,"failed":0,"results":[{"key":"user:123","op":"set","ok":true},{"key":"user:456","op":"set","ok":true},{"key":"user:999","op":"delete","ok":true}]}`)
	v, _ = db.getValue("cache", "user:456")
	equal(t, "user:456", v, `{"name":"Bob","plan":"free"}`)
}

// TestDocumentsValues checks that values round-trip byte for byte (as
// compact JSON) and that the field-name policy holds: any name round-trips,
// a name twice in one object is a 400 naming it.
func TestDocumentsValues(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	roundTrip := []struct{ name, in, want string }{
		{"field order", `{"z":1,"a":2,"m":{"y":1,"b":2}}`, ""},
		{"int64 edges", `{"max":9223372036854775807,"min":-9223372036854775808}`, ""},
		{"beyond int64 and float64", `{"big":123456789012345678901234567890,"huge":1e400,"tiny":-1e400,"sub":1e-400}`, ""},
		{"number spellings", `[1.0,1E+2,-0,0.1,1.5e-7,100,-0.0]`, ""},
		{"unicode", `{"é":"ünï","emoji":"😀","esc":"\u00e9\n\t\"\\\/","html":"<a href='x'>&amp;</a>"}`, ""},
		{"nested", `{"a":[[1,[2,[3,{"b":[]}]]],{}],"n":null,"t":true,"f":false}`, ""},
		{"top-level null", `null`, ""},
		{"top-level string", `"just a string"`, ""},
		{"top-level number", `-12.5e3`, ""},
		{"top-level array", `[{"a":1},"x",null]`, ""},
		{"names with dots and dollars", `{"a.b":1,"$gt":2,"$where":"x","":3,"%":4,"%2E":5,"nul\u0000":6,"$":{"$":{"a.":7}}}`, ""},
		{"case variants are distinct", `{"a":1,"A":2}`, ""},
		{"whitespace is compacted", " {\n \"a\" : [ 1 , 2 ] ,\t\"b\":{ } }\n", `{"a":[1,2],"b":{}}`},
	}
	for i, tc := range roundTrip {
		want := tc.want
		if want == "" {
			want = tc.in
		}
		key := fmt.Sprintf("v%d", i)
		r := db.set("values", key, tc.in)
		wantStatus(t, r, http.StatusOK, "")
		equal(t, tc.name+": set echo", strings.TrimSpace(string(r.body)), `{"key":"`+key+`","value":`+want+`}`)
		got, _ := db.getValue("values", key)
		equal(t, tc.name+": get", got, want)
	}

	// int64 filters are exact: a double would make these two equal.
	p := db.page("values", `{"filter":{"max":9223372036854775807}}`)
	equalKeys(t, "filter int64 max", keysOf(p.Items), []string{"v1"})
	p = db.page("values", `{"filter":{"max":9223372036854775806}}`)
	equalKeys(t, "filter int64 max-1", keysOf(p.Items), nil)
	// Names that need escaping are still addressed exactly.
	p = db.page("values", `{"filter":{"%":4,"%2E":5}}`)
	equalKeys(t, "filter on escaped names", keysOf(p.Items), []string{"v10"})
	// Numbers compare by value across spellings: 1.0 stored, 1 asked.
	db.mustSet("values", "num", `{"n":1.0}`)
	p = db.page("values", `{"filter":{"n":1}}`)
	equalKeys(t, "filter 1 matches 1.0", keysOf(p.Items), []string{"num"})

	bad := []struct{ name, in, code, inMessage string }{
		{"duplicate at top level", `{"a":1,"b":2,"a":3}`, "invalid_request", `"a"`},
		{"duplicate nested", `{"x":{"y":{"k":1,"k":2}}}`, "invalid_request", `"k"`},
		{"duplicate by escape", `{"\u0061":1,"a":2}`, "invalid_request", `"a"`},
		{"not JSON", `{"a":`, "invalid_request", ""},
		{"two values", `{} {}`, "invalid_request", ""},
		{"empty body", ``, "invalid_request", ""},
		{"invalid UTF-8", "\"\xff\"", "invalid_request", ""},
	}
	for _, tc := range bad {
		before := db.srv.Calls().Documents
		r := db.set("values", "bad", tc.in)
		wantStatus(t, r, http.StatusBadRequest, tc.code)
		if tc.inMessage != "" && !strings.Contains(string(r.body), strings.ReplaceAll(tc.inMessage, `"`, `\"`)) {
			t.Fatalf("%s: message %s does not name %s", tc.name, r.body, tc.inMessage)
		}
		equal(t, tc.name+": database calls", db.srv.Calls().Documents, before)
	}
	wantStatus(t, db.get("values", "bad"), http.StatusNotFound, "not_found")

	// Depth: 32 levels pass, 33 are refused.
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	wantStatus(t, db.set("values", "deep", deep(32)), http.StatusOK, "")
	wantStatus(t, db.set("values", "deep", `{"a":`+deep(31)+`}`), http.StatusOK, "")
	before := db.srv.Calls().Documents
	wantStatus(t, db.set("values", "deep", deep(33)), http.StatusBadRequest, "invalid_request")
	wantStatus(t, db.set("values", "deep", `{"a":`+deep(32)+`}`), http.StatusBadRequest, "invalid_request")
	equal(t, "deep: database calls", db.srv.Calls().Documents, before)

	// Size: 1 MiB of compact JSON passes, one byte more is 413; whitespace
	// does not count.
	str := func(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }
	wantStatus(t, db.set("values", "big", str(1<<20)), http.StatusOK, "")
	wantStatus(t, db.set("values", "big", " \n"+str(1<<20)+"\n "), http.StatusOK, "")
	got, _ := db.getValue("values", "big")
	equal(t, "1 MiB value", got, str(1<<20))
	before = db.srv.Calls().Documents
	wantStatus(t, db.set("values", "big", str(1<<20+1)), http.StatusRequestEntityTooLarge, "too_large")
	wantStatus(t, db.set("values", "big", str(3<<20)), http.StatusRequestEntityTooLarge, "too_large")
	equal(t, "big: database calls", db.srv.Calls().Documents, before)
}

// TestDocumentsLimitsConfig checks that Config.Limits drive the document
// limits.
func TestDocumentsLimitsConfig(t *testing.T) {
	t.Parallel()
	db := newDBServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxDocumentSize = 100
		c.Limits.MaxDocumentDepth = 3
		c.Limits.MaxBatchOps = 2
		c.Limits.MaxQueryLimit = 5
	}))
	wantStatus(t, db.set("c", "k", `"`+strings.Repeat("x", 98)+`"`), http.StatusOK, "")
	wantStatus(t, db.set("c", "k", `"`+strings.Repeat("x", 99)+`"`), http.StatusRequestEntityTooLarge, "too_large")
	wantStatus(t, db.set("c", "k", `[[[1]]]`), http.StatusOK, "")
	wantStatus(t, db.set("c", "k", `[[[[1]]]]`), http.StatusBadRequest, "invalid_request")
	wantStatus(t, db.query("c", `{"filter":{"a.b.c.d":1}}`), http.StatusBadRequest, "invalid_request")
	wantStatus(t, db.query("c", `{"limit":5}`), http.StatusOK, "")
	wantStatus(t, db.query("c", `{"limit":6}`), http.StatusBadRequest, "invalid_request")
	wantStatus(t, db.batch("c", `{"ops":[{"op":"delete","key":"a"},{"op":"delete","key":"b"}]}`), http.StatusOK, "")
	wantStatus(t, db.batch("c", `{"ops":[{"op":"delete","key":"a"},{"op":"delete","key":"b"},{"op":"delete","key":"c"}]}`), http.StatusBadRequest, "invalid_request")
}

// TestDocumentsNames checks collection names and keys: refused before any
// database call, never rewritten; keys named like the POST endpoints work.
func TestDocumentsNames(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	badColls := []string{"", "_x", ".x", "-x", "a/b", "a b", "système", "a$b", "$cmd", "x\x00", strings.Repeat("a", 65), "a:b"}
	for _, coll := range badColls {
		before := db.srv.Calls().Documents
		for _, r := range []resp{db.set(coll, "k", `1`), db.get(coll, "k"), db.del(coll, "k"), db.query(coll, `{}`), db.batch(coll, `{"ops":[]}`)} {
			if coll == "" && r.status == http.StatusNotFound {
				continue // "/db//k" is no route
			}
			wantStatus(t, r, http.StatusBadRequest, "invalid_request")
		}
		equal(t, fmt.Sprintf("collection %q: database calls", coll), db.srv.Calls().Documents, before)
	}
	for _, coll := range []string{"a", "Z9", "system.users", "a.b-c_d", strings.Repeat("a", 64)} {
		db.mustSet(coll, "k", `1`)
		v, _ := db.getValue(coll, "k")
		equal(t, "collection "+coll, v, `1`)
	}

	badKeys := []string{"a\x00b", "a\nb", "\x7f", "a\u0085b", "\xff\xfe", strings.Repeat("k", 513)}
	for _, key := range badKeys {
		before := db.srv.Calls().Documents
		wantStatus(t, db.set("c", key, `1`), http.StatusBadRequest, "invalid_request")
		wantStatus(t, db.get("c", key), http.StatusBadRequest, "invalid_request")
		wantStatus(t, db.del("c", key), http.StatusBadRequest, "invalid_request")
		equal(t, fmt.Sprintf("key %q: database calls", key), db.srv.Calls().Documents, before)
	}

	goodKeys := []string{"query", "batch", "a/b", "../x", ".", "..", "%2F", "$where", "a.b", "ключ", "😀", " spaced ", strings.Repeat("k", 512), "user:123"}
	for i, key := range goodKeys {
		db.mustSet("c", key, strconv.Itoa(i))
		v, found := db.getValue("c", key)
		if !found || v != strconv.Itoa(i) {
			t.Fatalf("key %q: got %q, %v", key, v, found)
		}
	}
	p := db.page("c", `{"limit":1000}`)
	want := append([]string(nil), goodKeys...)
	sort.Strings(want)
	equalKeys(t, "all keys in key order", keysOf(p.Items), want)
	// "query" and "batch" are still documents for PUT, GET, HEAD, PATCH
	// and DELETE; the other methods on a document are 405.
	wantStatus(t, db.del("c", "query"), http.StatusNoContent, "")
	wantStatus(t, db.get("c", "query"), http.StatusNotFound, "not_found")
	v, _ := db.getValue("c", "batch")
	equal(t, "key batch", v, "1")
	r := do(t, db.srv, "POST", "/v1/storage/db/c/somekey", db.tok, `{}`)
	wantStatus(t, r, http.StatusMethodNotAllowed, "invalid_request")
	r = do(t, db.srv, "PATCH", "/v1/storage/db/c/query", db.tok, `{}`)
	wantStatus(t, r, http.StatusNotFound, "not_found") // deleted above
	r = do(t, db.srv, "PATCH", "/v1/storage/db/c/batch", db.tok, `{"x":1}`)
	wantStatus(t, r, http.StatusOK, "")
	r = do(t, db.srv, "HEAD", "/v1/storage/db/c/somekey", db.tok, nil)
	equal(t, "HEAD on a missing document", r.status, http.StatusNotFound)
	r = do(t, db.srv, "HEAD", "/v1/storage/db/c/batch", db.tok, nil)
	equal(t, "HEAD on the document named batch", r.status, http.StatusOK)

	// Delete is idempotent.
	wantStatus(t, db.del("c", "a/b"), http.StatusNoContent, "")
	wantStatus(t, db.del("c", "a/b"), http.StatusNoContent, "")
	wantStatus(t, db.del("c", "never-was"), http.StatusNoContent, "")
	wantStatus(t, db.get("c", "a/b"), http.StatusNotFound, "not_found")
}

// TestDocumentsQueryRefused checks that operators, objects, arrays, bad
// paths, bad sorts and bad limits are 400 before any database call.
func TestDocumentsQueryRefused(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	db.mustSet("c", "k", `{"a":"x","b":{"c":1}}`)
	bodies := []string{
		`{"filter":{"a":{"$ne":""}}}`,
		`{"filter":{"a":{"$gt":""}}}`,
		`{"filter":{"a":{"$regex":".*"}}}`,
		`{"filter":{"$where":"sleep(1000)"}}`,
		`{"filter":{"$or":[{"a":"x"}]}}`,
		`{"filter":{"a":{"$eq":"x"}}}`,
		`{"filter":{"a":{}}}`,
		`{"filter":{"a":["x"]}}`,
		`{"filter":{"a.$gt":1}}`,
		`{"filter":{"a.$":1}}`,
		`{"filter":{"$a":1}}`,
		`{"filter":{"":1}}`,
		`{"filter":{"a..b":1}}`,
		`{"filter":{".a":1}}`,
		`{"filter":{"a.":1}}`,
		`{"filter":{"a\u0000":1}}`,
		`{"filter":{"a\n":1}}`,
		`{"filter":{"` + strings.Repeat("a", 257) + `":1}}`,
		`{"filter":{"` + strings.Repeat("a.", 32) + `a":1}}`,
		`{"filter":{"a":"` + strings.Repeat("x", 4097) + `"}}`,
		`{"filter":{"a":1,"a":2}}`,
		`{"filter":[]}`,
		`{"filter":"a"}`,
		`{"filter":{"f0":0,"f1":1,"f2":2,"f3":3,"f4":4,"f5":5,"f6":6,"f7":7,"f8":8,"f9":9,"f10":0,"f11":1,"f12":2,"f13":3,"f14":4,"f15":5,"f16":6}}`,
		`{"sort":{"a":2}}`,
		`{"sort":{"a":"asc"}}`,
		`{"sort":{"a":1.0}}`,
		`{"sort":{"a":{"$meta":"textScore"}}}`,
		`{"sort":{"$natural":1}}`,
		`{"sort":{"a":1,"a":-1}}`,
		`{"sort":{"a":1,"b":1,"c":1,"d":1,"e":1}}`,
		`{"sort":[["a",1]]}`,
		`{"limit":0}`,
		`{"limit":1001}`,
		`{"limit":-1}`,
		`{"limit":2.5}`,
		`{"limit":"20"}`,
		`{"skip":10}`,
		`{"Filter":{}}`,
		`{"filter":{},"filter":{}}`,
		`{"cursor":""}`,
		`{"cursor":"not-a-cursor"}`,
		`{"cursor":7}`,
		`[]`,
		`{`,
		"{\"filter\":{\"a\":\"\xff\"}}",
		`{"cursor":"x","filter":{"a":{"$ne":""}}}`,
	}
	for _, b := range bodies {
		before := db.srv.Calls().Documents
		r := db.query("c", b)
		if r.status != http.StatusBadRequest {
			t.Fatalf("query %s: status %d, want 400; body %s", b, r.status, r.body)
		}
		var e struct{ Error string }
		decode(t, r, &e)
		if e.Error != "invalid_request" && e.Error != "invalid_cursor" {
			t.Fatalf("query %s: error %q", b, e.Error)
		}
		equal(t, "query "+b+": database calls", db.srv.Calls().Documents, before)
	}
	// The accepted forms, for contrast.
	for _, b := range []string{``, `{}`, `{"filter":null,"sort":null}`, `{"filter":{"a":"x","b.c":1,"z":null,"t":true}}`, `{"sort":{"b.c":-1,"a":1},"limit":1000}`} {
		wantStatus(t, db.query("c", b), http.StatusOK, "")
	}
	p := db.page("c", `{"filter":{"b.c":1}}`)
	equalKeys(t, "dotted filter", keysOf(p.Items), []string{"k"})
	// null matches null and missing fields.
	p = db.page("c", `{"filter":{"missing":null}}`)
	equalKeys(t, "null matches missing", keysOf(p.Items), []string{"k"})
	// Strict equality: no array-element matching, objects are not scalars.
	db.mustSet("c", "arr", `{"a":["x","y"],"b":{"c":[1]}}`)
	p = db.page("c", `{"filter":{"a":"x"}}`)
	equalKeys(t, "no array element match", keysOf(p.Items), []string{"k"})
	p = db.page("c", `{"filter":{"a.1":"y"}}`)
	equalKeys(t, "array index path", keysOf(p.Items), []string{"arr"})
	p = db.page("c", `{"filter":{"b.c":1}}`)
	equalKeys(t, "no array match nested", keysOf(p.Items), []string{"k"})
}

// The identities of the isolation matrix: two tenants, two apps, two users.
type dbIdentity struct{ tenant, app, user string }

var dbIdentities = []dbIdentity{
	{"t1", "app-a", "u1"},
	{"t1", "app-a", "u2"},
	{"t1", "app-ab", "u1"},
	{"t10", "app-a", "u1"},
}

var dbTiers = []string{"private", "user", "shared"}

// dbVisible is the spec's rule: who sees what a writer stored in a tier.
func dbVisible(w dbIdentity, wt string, r dbIdentity, rt string) bool {
	if wt != rt || w.tenant != r.tenant {
		return false
	}
	switch wt {
	case "private":
		return w.app == r.app
	case "user":
		return w.user == r.user
	}
	return true
}

// TestDocumentsIsolation is the permission matrix: a document set by one
// identity in one tier, then read, queried, deleted and batched by every
// identity in every tier; what a caller may not see answers like missing.
func TestDocumentsIsolation(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	srv.RegisterApp(t, "app-ab", allScopes...)
	as := func(id dbIdentity, tier string) dbAs {
		return dbAs{t: t, srv: srv, tier: tier, tok: srv.Token(cpodtest.Claims{Tenant: id.tenant, App: id.app, User: id.user, Scopes: allScopes})}
	}
	n := 0
	for _, w := range dbIdentities {
		for _, wt := range dbTiers {
			n++
			coll := fmt.Sprintf("iso%d", n)
			value := fmt.Sprintf(`{"writer":"%s/%s/%s","tier":%q}`, w.tenant, w.app, w.user, wt)
			writer := as(w, wt)
			writer.mustSet(coll, "doc", value)
			for _, r := range dbIdentities {
				for _, rt := range dbTiers {
					reader := as(r, rt)
					what := fmt.Sprintf("%v/%s writes, %v/%s", w, wt, r, rt)
					visible := dbVisible(w, wt, r, rt)
					got, found := reader.getValue(coll, "doc")
					if found != visible || (found && got != value) {
						t.Fatalf("%s gets found=%v %s, want visible=%v", what, found, got, visible)
					}
					p := reader.page(coll, `{"filter":{"tier":"`+wt+`"}}`)
					if (len(p.Items) == 1) != visible || len(p.Items) > 1 || p.NextCursor != nil {
						t.Fatalf("%s queries %d items, want visible=%v", what, len(p.Items), visible)
					}
					if visible {
						continue
					}
					// Writes from outside touch only the caller's own location.
					wantStatus(t, reader.del(coll, "doc"), http.StatusNoContent, "")
					rb := reader.batch(coll, `{"ops":[{"op":"delete","key":"doc"},{"op":"set","key":"other","value":1}]}`)
					wantStatus(t, rb, http.StatusOK, "")
					equal(t, what+": batch", strings.Contains(string(rb.body), `"succeeded":2`), true)
					if got, found := writer.getValue(coll, "doc"); !found || got != value {
						t.Fatalf("%s: after the other's delete and batch the writer gets %v %s", what, found, got)
					}
				}
			}
			// The writer's own view never saw the others' "other" documents
			// unless they share the location.
			p := writer.page(coll, `{}`)
			wantOther := false
			for _, r := range dbIdentities {
				wantOther = wantOther || (r != w && dbVisible(w, wt, r, wt))
			}
			if got := len(p.Items); got != 1 && !(wantOther && got == 2) {
				t.Fatalf("%v/%s sees %d documents: %q", w, wt, got, keysOf(p.Items))
			}
		}
	}
}

// TestDocumentsCursor checks that a cursor continues only the query that
// made it: forged, truncated and foreign cursors are 400 invalid_cursor.
func TestDocumentsCursor(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-a", allScopes...)
	srv.RegisterApp(t, "app-b", allScopes...)
	tok := func(tenant, app, user string) string {
		return srv.Token(cpodtest.Claims{Tenant: tenant, App: app, User: user, Scopes: allScopes})
	}
	db := dbAs{t: t, srv: srv, tok: tok("t1", "app-a", "u1")}
	others := map[string]dbAs{
		"other collection": db, // uses "c2"
		"other tier":       {t: t, srv: srv, tok: db.tok, tier: "shared"},
		"user tier":        {t: t, srv: srv, tok: db.tok, tier: "user"},
		"other app":        {t: t, srv: srv, tok: tok("t1", "app-b", "u1")},
		"other tenant":     {t: t, srv: srv, tok: tok("t2", "app-a", "u1")},
		"other user":       {t: t, srv: srv, tok: tok("t1", "app-a", "u2"), tier: "user"},
	}
	for _, o := range others {
		for _, coll := range []string{"c", "c2"} {
			for i := 0; i < 3; i++ {
				o.mustSet(coll, fmt.Sprintf("k%d", i), fmt.Sprintf(`{"n":%d}`, i))
			}
		}
	}
	userDB := others["user tier"]
	userDB.mustSet("c", "k0", `{"n":0}`)
	p := db.page("c", `{"sort":{"n":1},"limit":1}`)
	if p.NextCursor == nil {
		t.Fatal("no cursor")
	}
	cur := *p.NextCursor
	p2 := db.page("c", map[string]any{"cursor": cur, "limit": 1})
	equalKeys(t, "page 2", keysOf(p2.Items), []string{"k1"})

	raw, err := base64.RawURLEncoding.DecodeString(cur)
	if err != nil {
		t.Fatalf("cursor %q is not base64url: %v", cur, err)
	}
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	bad := map[string]string{
		"truncated":         cur[:len(cur)-4],
		"truncated payload": base64.RawURLEncoding.EncodeToString(raw[:len(raw)/2]),
		"version":           flip(0),
		"payload byte":      flip(len(raw) / 2),
		"mac byte":          flip(len(raw) - 1),
		"appended":          cur + "AAAA",
		"padded":            cur + "==",
		"std base64":        base64.StdEncoding.EncodeToString(raw),
		"empty":             "",
	}
	for name, c := range bad {
		before := srv.Calls().Documents
		r := db.query("c", map[string]any{"cursor": c})
		wantStatus(t, r, http.StatusBadRequest, "invalid_cursor")
		equal(t, name+": database calls", srv.Calls().Documents, before)
	}
	for name, o := range others {
		coll := "c"
		if name == "other collection" {
			coll = "c2"
		}
		before := srv.Calls().Documents
		wantStatus(t, o.query(coll, map[string]any{"cursor": cur}), http.StatusBadRequest, "invalid_cursor")
		equal(t, name+": database calls", srv.Calls().Documents, before)
	}
	// The cursor still works after all that.
	p2 = db.page("c", map[string]any{"cursor": cur, "limit": 5})
	equalKeys(t, "page 2 again", keysOf(p2.Items), []string{"k1", "k2"})
}

// TestDocumentsCursorLargeSortValue pages through documents whose sort
// field holds an object too large to carry in the cursor: the cursor holds
// its hash, and is refused once the document at its position changed.
func TestDocumentsCursorLargeSortValue(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	pad := strings.Repeat("p", 2000)
	for i := 0; i < 5; i++ {
		db.mustSet("c", fmt.Sprintf("k%d", i), fmt.Sprintf(`{"o":{"pad":"%s%d"}}`, pad, 4-i))
	}
	var got []string
	body := map[string]any{"sort": map[string]int{"o": 1}, "limit": 2}
	for {
		p := db.page("c", body)
		got = append(got, keysOf(p.Items)...)
		if p.NextCursor == nil {
			break
		}
		if len(*p.NextCursor) > 1000 {
			t.Fatalf("cursor of %d bytes carries the large value", len(*p.NextCursor))
		}
		body = map[string]any{"cursor": *p.NextCursor, "limit": 2}
	}
	equalKeys(t, "pages", got, []string{"k4", "k3", "k2", "k1", "k0"})

	p := db.page("c", map[string]any{"sort": map[string]int{"o": 1}, "limit": 1})
	db.mustSet("c", "k4", `{"o":{"pad":"changed"}}`)
	wantStatus(t, db.query("c", map[string]any{"cursor": *p.NextCursor}), http.StatusBadRequest, "invalid_cursor")
	p = db.page("c", map[string]any{"sort": map[string]int{"o": -1}, "limit": 1})
	equalKeys(t, "first by o desc", keysOf(p.Items), []string{"k0"})
	wantStatus(t, db.del("c", "k0"), http.StatusNoContent, "")
	wantStatus(t, db.query("c", map[string]any{"cursor": *p.NextCursor}), http.StatusBadRequest, "invalid_cursor")
}

// TestDocumentsBatch checks per-op results: invalid ops fail on their own,
// the same key twice applies in order, 501 ops are refused whole.
func TestDocumentsBatch(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	db.mustSet("b", "existing", `"old"`)
	r := db.batch("b", `{"ops":[
		{"op":"set","key":"a","value":{"x":1}},
		{"op":"upsert","key":"b","value":1},
		{"op":"set","key":"c"},
		{"op":"delete","key":"existing"},
		{"op":"delete","key":"d","value":1},
		{"op":"set","key":"","value":1},
		{"op":"set","key":"e\u0000","value":1},
		{"op":"set","key":"f","value":{"k":1,"k":2}},
		{"op":"set","key":"g","value":"`+strings.Repeat("x", 1<<20)+`"},
		{"op":"set","key":"h","value":1,"ttl":5},
		{"op":"set","key":"i","value":1,"key":"j"},
		{"op":"set","Key":"k","value":1},
		"set",
		{"op":"set","key":7,"value":1},
		{"op":"set","key":"l","value":[1,2,3]},
		{"op":"delete","key":"never-was"}
	]}`)
	wantStatus(t, r, http.StatusOK, "")
	var res struct {
		Succeeded, Failed int
		Results           []struct {
			Key, Op        string
			OK             bool
			Error, Message string
		}
	}
	decode(t, r, &res)
	want := []struct {
		key, op string
		code    string // "" for ok
	}{
		{"a", "set", ""},
		{"b", "upsert", "invalid_request"},
		{"c", "set", "invalid_request"},
		{"existing", "delete", ""},
		{"d", "delete", "invalid_request"},
		{"", "set", "invalid_request"},
		{"e\x00", "set", "invalid_request"},
		{"f", "set", "invalid_request"},
		{"g", "set", "too_large"},
		{"h", "set", "invalid_request"},
		{"i", "set", "invalid_request"},
		{"", "set", "invalid_request"},
		{"", "", "invalid_request"},
		{"", "set", "invalid_request"},
		{"l", "set", ""},
		{"never-was", "delete", ""},
	}
	equal(t, "results", len(res.Results), len(want))
	okN := 0
	for i, w := range want {
		got := res.Results[i]
		if w.code == "" {
			okN++
		}
		if got.OK != (w.code == "") || (w.code != "" && (got.Error != w.code || got.Message == "")) || (w.code == "" && (got.Error != "" || got.Message != "")) {
			t.Fatalf("op %d: got %+v (error %+v), want %+v", i, got, got.Error, w)
		}
		if got.Key != w.key && got.Key != "" {
			t.Fatalf("op %d: key %q, want %q", i, got.Key, w.key)
		}
	}
	equal(t, "succeeded", res.Succeeded, okN)
	equal(t, "failed", res.Failed, len(want)-okN)
	if !strings.Contains(string(r.body), `twice`) {
		t.Fatalf("the duplicate-name op does not say why: %s", r.body)
	}
	v, _ := db.getValue("b", "a")
	equal(t, "a", v, `{"x":1}`)
	v, _ = db.getValue("b", "l")
	equal(t, "l", v, `[1,2,3]`)
	for _, k := range []string{"existing", "b", "c", "f", "g", "j", "k"} {
		if _, found := db.getValue("b", k); found {
			t.Fatalf("%s exists after the batch", k)
		}
	}

	// The same key more than once: ops apply in the order sent.
	r = db.batch("b", `{"ops":[
		{"op":"set","key":"k1","value":1},{"op":"set","key":"k1","value":2},
		{"op":"set","key":"k2","value":1},{"op":"delete","key":"k2"},
		{"op":"delete","key":"k3"},{"op":"set","key":"k3","value":3},
		{"op":"set","key":"k4","value":1},{"op":"delete","key":"k4"},{"op":"set","key":"k4","value":4},{"op":"set","key":"k4","value":44},
		{"op":"set","key":"k5","value":5},{"op":"set","key":"k5","value":{"a":1,"a":1}}]}`)
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &res)
	equal(t, "repeated: succeeded", res.Succeeded, 11)
	equal(t, "repeated: failed", res.Failed, 1)
	equal(t, "repeated: the invalid one", res.Results[11].OK, false)
	for k, want := range map[string]string{"k1": "2", "k2": "", "k3": "3", "k4": "44", "k5": "5"} {
		v, found := db.getValue("b", k)
		if found != (want != "") || v != want {
			t.Fatalf("%s = %q (found %v), want %q", k, v, found, want)
		}
	}

	// 500 ops pass, 501 are refused whole, before any database call.
	ops := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"ops":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"op":"set","key":"n%d","value":%d}`, i, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	before := db.srv.Calls().Documents
	for _, body := range []string{ops(501), `{"ops":{}}`, `{}`, `{"ops":[],"x":1}`, `[]`, `{"ops":null}`} {
		wantStatus(t, db.batch("many", body), http.StatusBadRequest, "invalid_request")
	}
	equal(t, "refused batches: database calls", db.srv.Calls().Documents, before)
	r = db.batch("many", ops(500))
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &res)
	equal(t, "500 ops: succeeded", res.Succeeded, 500)
	p := db.page("many", `{"limit":1000}`)
	equal(t, "500 ops: documents", len(p.Items), 500)
	r = db.batch("many", `{"ops":[]}`)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "empty batch", strings.TrimSpace(string(r.body)), `{"succeeded":0,"failed":0,"results":[]}`)
}

// ---------------------------------------------------------------------------
// The pagination property test and its reference order.

// jv is a JSON value in the engine's order model: arrays are objects keyed
// by index; numbers exact.
type jv struct {
	kind   int // 0 null or missing, 1 number, 2 string, 3 object or array, 4 bool
	num    *big.Float
	str    string
	b      bool
	fields []jfield
}

type jfield struct {
	name string
	val  jv
}

func parseJV(t testing.TB, s string) jv {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var rd func() jv
	rd = func() jv {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch x := tok.(type) {
		case json.Delim:
			v := jv{kind: 3}
			for i := 0; dec.More(); i++ {
				name := strconv.Itoa(i)
				if x == '{' {
					k, _ := dec.Token()
					name = k.(string)
				}
				v.fields = append(v.fields, jfield{name, rd()})
			}
			dec.Token()
			return v
		case json.Number:
			f, _, err := big.ParseFloat(string(x), 10, 200, big.ToNearestEven)
			if err != nil {
				t.Fatal(err)
			}
			return jv{kind: 1, num: f}
		case string:
			return jv{kind: 2, str: x}
		case bool:
			return jv{kind: 4, b: x}
		}
		return jv{}
	}
	return rd()
}

func (v jv) at(path string) jv {
	for _, seg := range strings.Split(path, ".") {
		if v.kind != 3 {
			return jv{}
		}
		found := false
		for _, f := range v.fields {
			if f.name == seg {
				v, found = f.val, true
				break
			}
		}
		if !found {
			return jv{}
		}
	}
	return v
}

func cmpJV(a, b jv) int {
	if a.kind != b.kind {
		return a.kind - b.kind
	}
	switch a.kind {
	case 1:
		return a.num.Cmp(b.num)
	case 2:
		return strings.Compare(a.str, b.str)
	case 4:
		if a.b == b.b {
			return 0
		} else if !a.b {
			return -1
		}
		return 1
	case 3:
		for i := 0; i < len(a.fields) && i < len(b.fields); i++ {
			fa, fb := a.fields[i], b.fields[i]
			if fa.val.kind != fb.val.kind {
				return fa.val.kind - fb.val.kind
			}
			if c := strings.Compare(fa.name, fb.name); c != 0 {
				return c
			}
			if c := cmpJV(fa.val, fb.val); c != 0 {
				return c
			}
		}
		return len(a.fields) - len(b.fields)
	}
	return 0
}

// randomSortValue is a value for a sort field: often repeated, sometimes
// missing, of every type the engine orders.
func randomSortValue(rng *rand.Rand) (string, bool) {
	switch rng.Intn(14) {
	case 0:
		return "", false // missing
	case 1:
		return "null", true
	case 2:
		return strconv.Itoa(rng.Intn(5)), true
	case 3:
		return []string{"2.0", "2.5", "-1.5", "1e1", "0.1", "-0.0"}[rng.Intn(6)], true
	case 4:
		return []string{"9007199254740993", "9007199254740992.0", "9223372036854775807", "-9223372036854775808", "1e300", "123456789012345678901234567890"}[rng.Intn(6)], true
	case 5, 6:
		return strconv.Quote([]string{"", "a", "b", "ab", "B", "é", "😀", "2"}[rng.Intn(8)]), true
	case 7:
		return []string{"true", "false"}[rng.Intn(2)], true
	case 8:
		return []string{`{}`, `{"a":1}`, `{"a":2}`, `{"a":"x"}`, `{"b":1}`, `{"a":1,"b":null}`, `{"a":{"c":true}}`, `{"a":null}`}[rng.Intn(8)], true
	case 9:
		return []string{`[]`, `[1]`, `[1,2]`, `[2]`, `["x"]`, `[[1]]`, `[null]`}[rng.Intn(7)], true
	default:
		return strconv.Itoa(rng.Intn(3)), true
	}
}

// TestDocumentsPagination walks every page of several queries over a
// collection of random, repeated, missing and mixed-type sort values, with
// several page sizes: each matching document comes exactly once, in the
// order of the reference ordering (and of one unpaginated query).
func TestDocumentsPagination(t *testing.T) {
	t.Parallel()
	// FerretDB v1 scans the whole collection for every query, so the
	// default walk is sized to keep the test near 10 s on an idle machine:
	// 1000 documents, every query walked in pages of 1000 and in pages of
	// its own smaller size. CPOD_PAGINATION_DOCS sets another size.
	n, small := 1000, []int{97, 89, 71, 23, 59}
	if testing.Short() {
		n, small = 250, []int{7, 11, 3, 13, 5}
	}
	if s := os.Getenv("CPOD_PAGINATION_DOCS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("CPOD_PAGINATION_DOCS=%q is not a positive number", s)
		}
	}
	db := newDBServer(t)
	rng := rand.New(rand.NewSource(4))
	type doc struct {
		key  string
		json string
		val  jv
	}
	docs := make([]doc, n)
	for i := range docs {
		var fields []string
		if v, ok := randomSortValue(rng); ok {
			fields = append(fields, `"f":`+v)
		}
		if v, ok := randomSortValue(rng); ok {
			fields = append(fields, `"g":`+v)
		}
		switch rng.Intn(4) {
		case 0:
		case 1:
			fields = append(fields, `"m":7`) // m.x through a scalar: null
		default:
			v, ok := randomSortValue(rng)
			if !ok {
				v = "null"
			}
			fields = append(fields, `"m":{"x":`+v+`}`)
		}
		fields = append(fields, fmt.Sprintf(`"grp":%q`, []string{"a", "b", "c"}[rng.Intn(3)]))
		rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
		// Keys in random order, some sharing prefixes.
		key := fmt.Sprintf("k%x/%d", rng.Intn(64), i)
		docs[i] = doc{key: key, json: "{" + strings.Join(fields, ",") + "}"}
		docs[i].val = parseJV(t, docs[i].json)
	}
	// In batches of 100: FerretDB's upserts scan the collection, and a busy
	// machine must stay within the 10 s backend timeout.
	for start := 0; start < n; start += 100 {
		var b strings.Builder
		b.WriteString(`{"ops":[`)
		for i := start; i < min(start+100, n); i++ {
			if i > start {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(docs[i].key)
			fmt.Fprintf(&b, `{"op":"set","key":%s,"value":%s}`, k, docs[i].json)
		}
		b.WriteString(`]}`)
		r := db.batch("p", b.String())
		wantStatus(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), `"failed":0`) {
			t.Fatalf("loading: %.300s", r.body)
		}
	}

	type sortField struct {
		path string
		dir  int
	}
	queries := []struct {
		filter map[string]string // path -> JSON scalar
		sort   []sortField
	}{
		{nil, nil},
		{nil, []sortField{{"f", 1}}},
		{nil, []sortField{{"f", -1}}},
		{map[string]string{"grp": `"a"`}, []sortField{{"g", 1}, {"f", -1}}},
		{nil, []sortField{{"m.x", -1}, {"g", 1}, {"f", 1}, {"grp", -1}}},
	}
	for qi, q := range queries {
		// The reference: filter and order in Go.
		var want []string
		var match []doc
		for _, d := range docs {
			ok := true
			for p, v := range q.filter {
				ok = ok && cmpJV(d.val.at(p), parseJV(t, v)) == 0
			}
			if ok {
				match = append(match, d)
			}
		}
		sort.Slice(match, func(i, j int) bool {
			for _, s := range q.sort {
				if c := cmpJV(match[i].val.at(s.path), match[j].val.at(s.path)); c != 0 {
					return c*s.dir < 0
				}
			}
			return match[i].key < match[j].key
		})
		for _, d := range match {
			want = append(want, d.key)
		}
		var body strings.Builder
		body.WriteString(`{"filter":{`)
		first := true
		for p, v := range q.filter {
			if !first {
				body.WriteByte(',')
			}
			first = false
			fmt.Fprintf(&body, "%q:%s", p, v)
		}
		body.WriteString(`},"sort":{`)
		for i, s := range q.sort {
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, "%q:%d", s.path, s.dir)
		}
		body.WriteString(`}`)
		for _, limit := range []int{1000, small[qi]} {
			var got []string
			req := body.String() + fmt.Sprintf(`,"limit":%d}`, limit)
			pages := 0
			for {
				p := db.page("p", req)
				pages++
				if len(p.Items) > limit || (p.NextCursor != nil && len(p.Items) != limit) {
					t.Fatalf("query %d limit %d page %d: %d items, cursor %v", qi, limit, pages, len(p.Items), p.NextCursor != nil)
				}
				got = append(got, keysOf(p.Items)...)
				if p.NextCursor == nil {
					break
				}
				// The page-2 form of the seed: a different filter and sort
				// with the cursor are ignored.
				req = fmt.Sprintf(`{"filter":{"grp":"zzz"},"sort":{"g":-1},"cursor":%q,"limit":%d}`, *p.NextCursor, limit)
			}
			equalKeys(t, fmt.Sprintf("query %d (%s) with limit %d", qi, body.String(), limit), got, want)
		}
	}
}

// TestDocumentsBackendTimeout: a MongoDB call that does not answer within
// BackendTimeout is 503 backend_unavailable with Retry-After, naming no
// location; the index is retried on the next request.
func TestDocumentsBackendTimeout(t *testing.T) {
	t.Parallel()
	db := newDBServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = time.Nanosecond }))
	for name, r := range map[string]resp{
		"set":    db.set("c", "k", `1`),
		"get":    db.get("c", "k"),
		"delete": db.del("c", "k"),
		"query":  db.query("c", `{}`),
		"batch":  db.batch("c", `{"ops":[{"op":"delete","key":"k"}]}`),
	} {
		wantStatus(t, r, http.StatusServiceUnavailable, "backend_unavailable")
		equal(t, name+": Retry-After", r.header.Get("Retry-After"), "1")
		for _, leak := range []string{"t1/apps", "cpod_documents", "mongo", "context"} {
			if strings.Contains(string(r.body), leak) {
				t.Fatalf("%s: response %s leaks %q", name, r.body, leak)
			}
		}
	}
}
