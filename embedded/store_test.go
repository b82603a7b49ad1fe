package embedded_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/bson"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/embedded"
)

// The upgrade of a data directory from the previous layout (issue 21): an
// earlier release kept documents and apps in FerretDB on SQLite
// (documents/); this one imports them into cpod.db on its first start.

// logBuffer collects a logger's records.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// upgradeNode is an engine over a set of embedded backends, on HTTP, as
// httpserver runs it.
type upgradeNode struct {
	t   *testing.T
	b   *embedded.Backends
	e   *storage.Engine
	srv *httptest.Server
	key []byte
	log *logBuffer
}

// tokenSecret signs the tokens of every engine of these tests (httpserver
// keeps its secret in the data directory across versions).
var tokenSecret = []byte("upgrade-test-secret-0123456789abcdef")

// startNode starts the embedded backends on dir with cfg and an engine on
// them (layout applies to FerretDB only).
func startNode(t *testing.T, cfg embedded.Config, layout string) *upgradeNode {
	t.Helper()
	n := &upgradeNode{t: t, key: tokenSecret, log: &logBuffer{}}
	cfg.Logger = slog.New(slog.NewJSONHandler(n.log, nil))
	b, err := embedded.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v\nlog: %s", err, n.log)
	}
	n.b = b
	sc := storage.Config{
		S3: b.S3, Bucket: b.Bucket, Mongo: b.Mongo, SQL: b.SQL, Redis: b.Redis,
		Auth:       storage.AuthConfig{Keys: []storage.Key{{Secret: n.key}}},
		SigningKey: []byte("upgrade-test-signing-key-0123456789abcdef"),
		Logger:     slog.New(slog.DiscardHandler),
	}
	if b.Mongo != nil {
		sc.DocumentsLayout = layout
	}
	n.e, err = storage.New(sc)
	if err != nil {
		n.close()
		t.Fatal(err)
	}
	n.srv = httptest.NewServer(n.e)
	t.Cleanup(n.close)
	return n
}

// close stops the engine's server, then the backends; twice is fine.
func (n *upgradeNode) close() {
	if n.srv != nil {
		n.srv.Close()
		n.srv = nil
	}
	if n.b != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.b.Close(ctx); err != nil {
			n.t.Errorf("close: %v", err)
		}
		n.b = nil
	}
}

// who is the identity of a request.
type who struct{ tenant, app, user string }

var allStorageScopes = []string{
	"storage.private.read", "storage.private.write",
	"storage.user.read", "storage.user.write",
	"storage.shared.read", "storage.shared.write",
}

func (n *upgradeNode) token(w who, scopes []string) string {
	n.t.Helper()
	claims := jwt.MapClaims{
		"tenantId": w.tenant, "client_id": w.app, "scope": strings.Join(scopes, " "),
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}
	if w.user != "" {
		claims["sub"] = w.user
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(n.key)
	if err != nil {
		n.t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	etag   string
	body   []byte
}

// do sends a request as w with every scope (an app refuses those it did
// not declare).
func (n *upgradeNode) do(w who, method, path string, hdr map[string]string, body string) answer {
	return n.doScopes(w, allStorageScopes, method, path, hdr, body)
}

func (n *upgradeNode) doScopes(w who, scopes []string, method, path string, hdr map[string]string, body string) answer {
	n.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.srv.URL+path, rd)
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.token(w, scopes))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := n.srv.Client().Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		n.t.Fatal(err)
	}
	return answer{res.StatusCode, res.Header.Get("ETag"), b}
}

func (n *upgradeNode) must(w who, method, path string, hdr map[string]string, body string, status int) answer {
	n.t.Helper()
	a := n.do(w, method, path, hdr, body)
	if a.status != status {
		n.t.Fatalf("%s %s as %v: status %d, want %d: %s", method, path, w, a.status, status, a.body)
	}
	return a
}

// docRef names one document.
type docRef struct {
	w          who
	tier, coll string
	key        string
}

func (r docRef) path() string {
	p := "/v1/storage/db/" + r.coll + "/" + url.PathEscape(r.key)
	if r.tier != "" {
		p += "?tier=" + r.tier
	}
	return p
}

func collPath(coll, tier, op string) string {
	p := "/v1/storage/db/" + coll + "/" + op
	if tier != "" {
		p += "?tier=" + tier
	}
	return p
}

// The identities that write: two tenants, two users, two apps.
var (
	a1u1 = who{"t1", "app-a", "u1"}
	a1u2 = who{"t1", "app-a", "u2"}
	a2u1 = who{"t2", "app-a", "u1"}
	b1u1 = who{"t1", "app-b", "u1"}
)

// oddValues are values whose text, numbers and names a store could bend.
var oddValues = []string{
	`{"name":"Zoë 🚀 日本語 ﬁ","n":9223372036854775807,"neg":-9223372036854775808,"big":18446744073709551616,"f":1.5e300,"tiny":5e-324,"pi":3.14159265358979323846}`,
	`{"nested":[[1,[2,[3,[]]]],[],{},[{"a":[null,true,false]}]],"empty":{},"arr":[]}`,
	`{"a.b":1,"$set":{"$inc":2},"q\"uote":"x","back\\slash":"y","%41":"pct","":"empty name"," lead":1,"trail ":2,"nul\u0000name":"\u0000\u0001"}`,
	`{"esc":"tab\t nl\n \"q\" \\ \u2028 \u00e9 \ud83d\ude80","ctl":"\u001f","long":"` + strings.Repeat("λ", 3000) + `"}`,
	`[1,"two",{"three":3},[4]]`,
	`"just a string ü"`,
	`-0.0`,
	`1E+2`,
	`null`,
	`true`,
	`{"n":1.0,"m":100000000000000000000000,"k":-1e-7,"z":0.1}`,
}

// itemValue is document i of the items collections (tenant salt s):
// fields of every type, for filters and sorts.
func itemValue(i, s int) string {
	status := []string{"open", "closed", "review"}[(i+s)%3]
	var mixed string
	switch i % 6 {
	case 0:
		mixed = fmt.Sprintf(`,"mixed":%d`, i)
	case 1:
		mixed = fmt.Sprintf(`,"mixed":"s%03d"`, i)
	case 2:
		mixed = `,"mixed":true`
	case 3:
		mixed = `,"mixed":null`
	case 4:
		mixed = fmt.Sprintf(`,"mixed":%d.5`, i)
	}
	title := []string{"alpha", "Äpfel", "zebra", "émile", "日本", "Zulu", "apple"}[i%7]
	return fmt.Sprintf(`{"status":%q,"n":%d,"title":"%s %02d","tags":["t%d","x"],"meta":{"owner":"u%d","big":%d}%s}`,
		status, i*7%61+s, title, i, i%4, i%5, int64(9223372036854775000)+int64(i), mixed)
}

// upgradeQueries run on the items collections before and after the
// upgrade (paged with small limits, so cursors are crossed too).
var upgradeQueries = []string{
	`{"filter":{"status":"open"},"sort":{"n":-1},"limit":4}`,
	`{"filter":{"n":{"gte":10,"lt":40}},"sort":{"title":1},"limit":5}`,
	`{"filter":{"status":{"in":["open","review"]},"meta.owner":{"ne":"u1"}},"sort":{"mixed":1},"limit":7}`,
	`{"sort":{"mixed":-1,"n":1},"limit":9}`,
	`{"filter":{"mixed":null},"limit":50}`,
	`{"filter":{"tags.0":"t2"},"sort":{"meta.big":-1},"limit":3}`,
	`{"filter":{"meta.big":{"gt":9223372036854775010}},"sort":{"meta.big":1},"limit":100}`,
	`{"filter":{"title":{"gte":"Z","lt":"é"}},"sort":{"title":-1},"limit":6}`,
	`{"filter":{"mixed":{"gt":"s"}},"sort":{"mixed":1},"limit":5}`,
}

var upgradeCounts = []string{
	`{"filter":{"status":"open"}}`,
	`{"filter":{"mixed":{"ne":null}}}`,
	`{"filter":{"n":{"gt":30},"status":{"ne":"closed"}}}`,
	`{}`,
}

// queryAll walks every page of q and returns the pages' items, in order.
func (n *upgradeNode) queryAll(w who, coll, tier, q string) []json.RawMessage {
	n.t.Helper()
	var all []json.RawMessage
	var body map[string]any
	if err := json.Unmarshal([]byte(q), &body); err != nil {
		n.t.Fatal(err)
	}
	for pages := 0; ; pages++ {
		if pages > 200 {
			n.t.Fatalf("query %s: more than 200 pages", q)
		}
		b, _ := json.Marshal(body)
		a := n.must(w, "POST", collPath(coll, tier, "query"), nil, string(b), 200)
		var page struct {
			Items      []json.RawMessage
			NextCursor *string
		}
		if err := json.Unmarshal(a.body, &page); err != nil {
			n.t.Fatalf("query %s: %v: %s", q, err, a.body)
		}
		all = append(all, page.Items...)
		if page.NextCursor == nil {
			return all
		}
		body["cursor"] = *page.NextCursor
	}
}

// snapshot is what an engine answers for the data of writeUpgradeData.
type snapshot struct {
	docs    map[docRef]answer // GET: status, ETag, body
	queries map[string][]json.RawMessage
	counts  map[string]string
	apps    []storage.App
}

// upgradeState is what writeUpgradeData wrote.
type upgradeState struct {
	refs    []docRef // every document written, deleted ones included
	queries []upgradeQuery
}

// upgradeQuery is a query of a collection as w.
type upgradeQuery struct {
	w          who
	coll, tier string
	q          string
}

// writeUpgradeData registers the apps and writes the documents through
// n, as users of the previous release did: PUT, batch, PATCH, DELETE,
// every tier, two tenants.
func writeUpgradeData(t *testing.T, n *upgradeNode) *upgradeState {
	t.Helper()
	ctx := context.Background()
	for _, app := range []storage.App{
		{ClientID: "app-a", Name: "App A ✓", DeclaredScopes: allStorageScopes, AppType: "service"},
		{ClientID: "app-b", Name: "App B", DeclaredScopes: []string{"storage.private.read", "storage.private.write"}, AppType: "web"},
		{ClientID: "app-c", Name: "App C, no scopes", DeclaredScopes: []string{}, AppType: "service"},
	} {
		if _, err := n.e.RegisterApp(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	name := "App B renamed"
	if _, err := n.e.UpdateApp(ctx, "app-b", storage.AppUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}

	st := &upgradeState{}
	add := func(r docRef) { st.refs = append(st.refs, r) }
	put := func(r docRef, v string) {
		n.must(r.w, "PUT", r.path(), nil, v, 200)
		add(r)
	}
	// Odd values and keys, in every tier.
	for i, v := range oddValues {
		put(docRef{a1u1, "", "odd", fmt.Sprintf("odd-%02d", i)}, v)
	}
	for _, k := range []string{"ünïcødé ключ", "with space", "a:b@c", `quote"d`, "%2F", "dots.in.key", strings.Repeat("k", 512)} {
		put(docRef{a1u1, "", "odd", k}, fmt.Sprintf(`{"key":%q}`, k))
	}
	for _, w := range []who{a1u1, a1u2, a2u1} {
		put(docRef{w, "user", "notes", "same-key"}, fmt.Sprintf(`{"owner":%q,"tenant":%q}`, w.user, w.tenant))
		put(docRef{w, "shared", "notes", "board-" + w.user}, fmt.Sprintf(`{"by":%q}`, w.user))
		put(docRef{w, "", "notes", "same-key"}, fmt.Sprintf(`{"private":%q}`, w.tenant+"/"+w.user))
	}
	put(docRef{b1u1, "", "notes", "same-key"}, `{"app":"b"}`)
	put(docRef{a1u1, "", "notes", "Upper.Dot-Coll_1"}, `{"x":1}`)
	put(docRef{a1u1, "", "Upper.Dot-Coll_1", "k"}, `{"coll":"odd name"}`)

	// The items collections: the same keys in two tenants, other values.
	for s, w := range []who{a1u1, a2u1} {
		var ops []string
		for i := range 60 {
			ops = append(ops, fmt.Sprintf(`{"op":"set","key":"item-%03d","value":%s}`, i, itemValue(i, s)))
			add(docRef{w, "", "items", fmt.Sprintf("item-%03d", i)})
		}
		n.must(w, "POST", collPath("items", "", "batch"), nil, `{"ops":[`+strings.Join(ops, ",")+`]}`, 200)
	}
	// More documents in one collection than the import copies at once.
	for lo := 0; lo < 700; lo += 500 {
		var ops []string
		for i := lo; i < min(lo+500, 700); i++ {
			ops = append(ops, fmt.Sprintf(`{"op":"set","key":"b%05d","value":{"i":%d,"s":"%x"}}`, i, i, i*7919))
			add(docRef{a1u1, "shared", "big", fmt.Sprintf("b%05d", i)})
		}
		if lo == 500 {
			ops = append(ops, `{"op":"delete","key":"b00007"}`)
		}
		n.must(a1u1, "POST", collPath("big", "shared", "batch"), nil, `{"ops":[`+strings.Join(ops, ",")+`]}`, 200)
	}
	// PATCH, DELETE, conditional writes.
	patch := map[string]string{"Content-Type": "application/merge-patch+json"}
	n.must(a1u1, "PATCH", docRef{a1u1, "", "items", "item-005"}.path(), patch, `{"status":"patched","meta":{"owner":null,"new":[1,2]}}`, 200)
	n.must(a2u1, "PATCH", docRef{a2u1, "", "items", "item-006"}.path(), patch, `{"n":1000}`, 200)
	n.must(a1u1, "DELETE", docRef{a1u1, "", "items", "item-007"}.path(), nil, "", 204)
	g := n.must(a1u1, "GET", docRef{a1u1, "", "items", "item-008"}.path(), nil, "", 200)
	n.must(a1u1, "PUT", docRef{a1u1, "", "items", "item-008"}.path(), map[string]string{"If-Match": g.etag}, `{"status":"open","n":8,"cas":true}`, 200)

	// A document written before versions existed (no ver field).
	legacy := docRef{a1u1, "", "notes", "legacy"}
	put(legacy, `{"old":true}`)
	names, err := n.b.Mongo.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	unset := int64(0)
	for _, c := range names {
		if strings.HasPrefix(c, "cpod_documents") {
			res, err := n.b.Mongo.Collection(c).UpdateMany(ctx, bson.D{{Key: "loc", Value: "t1/apps/app-a/"}, {Key: "coll", Value: "notes"}, {Key: "key", Value: "legacy"}},
				bson.D{{Key: "$unset", Value: bson.D{{Key: "ver", Value: ""}}}})
			if err != nil {
				t.Fatal(err)
			}
			unset += res.ModifiedCount
		}
	}
	if unset != 1 {
		t.Fatalf("legacy document: %d modified, want 1", unset)
	}
	if a := n.must(a1u1, "GET", legacy.path(), nil, "", 200); !strings.HasPrefix(a.etag, `"0000000000000000`) {
		t.Fatalf("the legacy document's ETag is %s, want a version of zeros", a.etag)
	}

	for _, w := range []who{a1u1, a2u1} {
		for _, q := range upgradeQueries {
			st.queries = append(st.queries, upgradeQuery{w, "items", "", q})
		}
	}
	for _, q := range []string{`{"filter":{"n":9223372036854775807}}`, `{"filter":{"name":"Zoë 🚀 日本語 ﬁ"}}`, `{"filter":{"nested.0.0":1}}`, `{"sort":{"key":1},"limit":2}`} {
		st.queries = append(st.queries, upgradeQuery{a1u1, "odd", "", q})
	}
	st.queries = append(st.queries, upgradeQuery{a1u1, "big", "shared", `{"filter":{"i":{"gte":400,"lt":700}},"sort":{"i":-1},"limit":100}`})
	return st
}

// take records what n answers for st's documents, queries, counts and
// apps.
func take(t *testing.T, n *upgradeNode, st *upgradeState) snapshot {
	t.Helper()
	s := snapshot{docs: map[docRef]answer{}, queries: map[string][]json.RawMessage{}, counts: map[string]string{}}
	for _, r := range st.refs {
		a := n.do(r.w, "GET", r.path(), nil, "")
		if a.status != 200 && a.status != 404 {
			t.Fatalf("GET %s: %d %s", r.path(), a.status, a.body)
		}
		s.docs[r] = a
	}
	for _, q := range st.queries {
		s.queries[fmt.Sprint(q)] = n.queryAll(q.w, q.coll, q.tier, q.q)
	}
	for _, w := range []who{a1u1, a2u1} {
		for _, c := range upgradeCounts {
			a := n.must(w, "POST", collPath("items", "", "count"), nil, c, 200)
			s.counts[fmt.Sprint(w, c)] = string(a.body)
		}
	}
	apps, err := n.e.ListApps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range apps {
		apps[i].CreatedAt, apps[i].UpdatedAt = apps[i].CreatedAt.UTC(), apps[i].UpdatedAt.UTC()
	}
	s.apps = apps
	return s
}

// sameSnapshot fails the test where got differs from want.
func sameSnapshot(t *testing.T, what string, got, want snapshot) {
	t.Helper()
	bad := 0
	for r, w := range want.docs {
		g := got.docs[r]
		if g.status != w.status || g.etag != w.etag || !bytes.Equal(g.body, w.body) {
			if bad++; bad <= 10 {
				t.Errorf("%s: %v %s: got %d %s %.200s, want %d %s %.200s", what, r.w, r.path(), g.status, g.etag, g.body, w.status, w.etag, w.body)
			}
		}
	}
	for q, w := range want.queries {
		g := got.queries[q]
		if len(g) != len(w) {
			t.Errorf("%s: query %s: %d items, want %d", what, q, len(g), len(w))
			continue
		}
		for i := range w {
			if !bytes.Equal(g[i], w[i]) {
				t.Errorf("%s: query %s: item %d is %.200s, want %.200s", what, q, i, g[i], w[i])
				break
			}
		}
	}
	for c, w := range want.counts {
		if got.counts[c] != w {
			t.Errorf("%s: count %s = %s, want %s", what, c, got.counts[c], w)
		}
	}
	if !reflect.DeepEqual(got.apps, want.apps) {
		t.Errorf("%s: apps\n got %+v\nwant %+v", what, got.apps, want.apps)
	}
	if bad > 10 {
		t.Errorf("%s: %d documents differ", what, bad)
	}
}

// TestUpgradeImportsFerretDB: a data directory of the previous release
// (documents and apps in FerretDB on SQLite, documents/) is imported into
// cpod.db on the first start of this one, in both documents layouts:
// every document answers byte for byte with its ETag, queries, cursors and
// counts answer as FerretDB did, apps keep their scopes and dates, and
// documents/ becomes documents.imported. A second start imports nothing
// again: a write made after the upgrade is still there.
func TestUpgradeImportsFerretDB(t *testing.T) {
	t.Parallel()
	for _, layout := range []string{storage.DocumentsLayoutPartitioned, storage.DocumentsLayoutSingle} {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()

			// The previous release.
			old := startNode(t, embedded.Config{Dir: dir, FerretDB: true}, layout)
			st := writeUpgradeData(t, old)
			want := take(t, old, st)
			checkLayout(t, old, layout)
			old.close()
			if len(want.apps) != 3 {
				t.Fatalf("%d apps before the upgrade", len(want.apps))
			}
			found := 0
			for _, a := range want.docs {
				if a.status == 200 {
					found++
				}
			}
			if found < 800 {
				t.Fatalf("only %d documents before the upgrade", found)
			}

			// This release: imports.
			n := startNode(t, embedded.Config{Dir: dir}, "")
			if n.b.SQL == nil || n.b.Mongo != nil {
				t.Fatal("the default start does not run on the SQLite store")
			}
			if !strings.Contains(n.log.String(), "imported the documents of an earlier version") {
				t.Errorf("no import logged:\n%s", n.log)
			}
			if _, err := os.Stat(filepath.Join(dir, embedded.DocumentsDir)); !os.IsNotExist(err) {
				t.Errorf("%s is still there after the import: %v", embedded.DocumentsDir, err)
			}
			if _, err := os.Stat(filepath.Join(dir, embedded.DocumentsDir+".imported", "cpod.sqlite")); err != nil {
				t.Errorf("%s.imported: %v", embedded.DocumentsDir, err)
			}
			got := take(t, n, st)
			sameSnapshot(t, "after the import", got, want)
			checkAppScopes(t, n)

			// The imported ETags still guard writes.
			item := docRef{a1u1, "", "items", "item-001"}
			stale := want.docs[item].etag
			w := n.must(a1u1, "PUT", item.path(), map[string]string{"If-Match": stale}, `{"after":"upgrade"}`, 200)
			n.must(a1u1, "PUT", item.path(), map[string]string{"If-Match": stale}, `{"lost":true}`, 412)
			legacy := docRef{a1u1, "", "notes", "legacy"}
			n.must(a1u1, "PATCH", legacy.path(), map[string]string{"If-Match": want.docs[legacy].etag, "Content-Type": "application/merge-patch+json"}, `{"new":1}`, 200)
			gone := docRef{a1u1, "shared", "big", "b00001"}
			n.must(a1u1, "DELETE", gone.path(), nil, "", 204)
			after := take(t, n, st)
			if after.docs[item].etag != w.etag || after.docs[gone].status != 404 ||
				strings.TrimSpace(string(after.docs[legacy].body)) != `{"key":"legacy","value":{"old":true,"new":1}}` {
				t.Fatalf("after writes: %s %d %s", after.docs[item].etag, after.docs[gone].status, after.docs[legacy].body)
			}
			n.close()

			// A second start imports nothing again (an import would bring
			// the old values back): what was written since stays as it was.
			n = startNode(t, embedded.Config{Dir: dir}, "")
			if strings.Contains(n.log.String(), "imported") {
				t.Errorf("the second start imported again:\n%s", n.log)
			}
			again := take(t, n, st)
			sameSnapshot(t, "second start", again, after)
			n.close()
		})
	}
}

// checkLayout checks that the previous release stored the documents in
// layout, so both layouts are imported.
func checkLayout(t *testing.T, n *upgradeNode, layout string) {
	t.Helper()
	names, err := n.b.Mongo.ListCollectionNames(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	parts := 0
	single := false
	for _, c := range names {
		parts += boolInt(strings.HasPrefix(c, "cpod_documents."))
		single = single || c == "cpod_documents"
	}
	if layout == storage.DocumentsLayoutPartitioned && (parts < 10 || single) || layout == storage.DocumentsLayoutSingle && (parts > 0 || !single) {
		t.Fatalf("layout %s: collections %v", layout, names)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkAppScopes: the imported registry grants what each app declared,
// and refuses the rest.
func checkAppScopes(t *testing.T, n *upgradeNode) {
	t.Helper()
	r := docRef{b1u1, "", "notes", "same-key"}
	if a := n.doScopes(b1u1, []string{"storage.private.read"}, "GET", r.path(), nil, ""); a.status != 200 || strings.TrimSpace(string(a.body)) != `{"key":"same-key","value":{"app":"b"}}` {
		t.Errorf("app-b private read: %d %s", a.status, a.body)
	}
	if a := n.doScopes(b1u1, []string{"storage.user.read"}, "GET", docRef{b1u1, "user", "notes", "x"}.path(), nil, ""); a.status != 403 || !strings.Contains(string(a.body), "invalid_scope") {
		t.Errorf("app-b with a scope it did not declare: %d %s", a.status, a.body)
	}
	c := who{"t1", "app-c", "u1"}
	if a := n.doScopes(c, []string{"storage.private.read"}, "GET", docRef{c, "", "notes", "x"}.path(), nil, ""); a.status != 403 || !strings.Contains(string(a.body), "invalid_scope") {
		t.Errorf("app-c, which declared no scope: %d %s", a.status, a.body)
	}
	u := who{"t1", "app-unknown", "u1"}
	if a := n.doScopes(u, []string{"storage.private.read"}, "GET", docRef{u, "", "notes", "x"}.path(), nil, ""); a.status < 400 {
		t.Errorf("an app never registered: %d %s", a.status, a.body)
	}
}

// TestUpgradeFailedImportKeepsDocuments: an import that fails (here a
// corrupted FerretDB database) stops the start with an error and leaves
// documents/ where it was; once the file is sound again, the next start
// imports it.
func TestUpgradeFailedImportKeepsDocuments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := startNode(t, embedded.Config{Dir: dir, FerretDB: true}, storage.DocumentsLayoutPartitioned)
	if _, err := old.e.RegisterApp(context.Background(), storage.App{ClientID: "app-a", Name: "A", DeclaredScopes: allStorageScopes, AppType: "service"}); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for i := range 300 {
		ops = append(ops, fmt.Sprintf(`{"op":"set","key":"k%03d","value":{"i":%d,"pad":"%s"}}`, i, i, strings.Repeat("p", 200)))
	}
	old.must(a1u1, "POST", collPath("c", "", "batch"), nil, `{"ops":[`+strings.Join(ops, ",")+`]}`, 200)
	want := old.must(a1u1, "GET", docRef{a1u1, "", "c", "k123"}.path(), nil, "", 200)
	old.close()

	docs := filepath.Join(dir, embedded.DocumentsDir)
	file := filepath.Join(docs, "cpod.sqlite")
	sound, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(sound) < 16*4096 {
		t.Fatalf("the FerretDB database has %d bytes", len(sound))
	}
	entries, _ := os.ReadDir(docs)
	for _, e := range entries {
		if e.Name() != "cpod.sqlite" {
			t.Logf("also in %s: %s", docs, e.Name())
		}
	}
	// Every page but the first (the schema): the tables are garbage.
	bad := bytes.Clone(sound)
	for i := 4096; i < len(bad); i++ {
		bad[i] = byte(i*31 + 7)
	}
	// The second half of the pages (the documents; the schema and
	// FerretDB's metadata come first): the import fails midway.
	tail := bytes.Clone(sound)
	for i := len(tail) / 4096 / 2 * 4096; i < len(tail); i++ {
		tail[i] = byte(i*31 + 7)
	}
	for _, c := range []struct {
		name    string
		corrupt []byte
	}{
		{"header", append(bytes.Repeat([]byte("garbage!"), 512), sound[4096:]...)},
		{"pages", bad},
		{"tail", tail},
	} {
		name, corrupt := c.name, c.corrupt
		if err := os.WriteFile(file, corrupt, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := embedded.Start(context.Background(), embedded.Config{Dir: dir})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = b.Close(ctx)
			cancel()
			t.Fatalf("%s: the start succeeded over a corrupted FerretDB database", name)
		}
		t.Logf("%s: %v", name, err)
		if !strings.Contains(err.Error(), embedded.DocumentsDir) {
			t.Errorf("%s: the error does not name %s: %v", name, embedded.DocumentsDir, err)
		}
		if _, err := os.Stat(file); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := os.Stat(docs + ".imported"); !os.IsNotExist(err) {
			t.Fatalf("%s: %s.imported exists after a failed import: %v", name, embedded.DocumentsDir, err)
		}
	}

	if err := os.WriteFile(file, sound, 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, embedded.Config{Dir: dir}, "")
	if got := n.must(a1u1, "GET", docRef{a1u1, "", "c", "k123"}.path(), nil, "", 200); got.etag != want.etag || !bytes.Equal(got.body, want.body) {
		t.Fatalf("after the retried import: %s %s, want %s %s", got.etag, got.body, want.etag, want.body)
	}
	a := n.must(a1u1, "POST", collPath("c", "", "count"), nil, `{}`, 200)
	if strings.TrimSpace(string(a.body)) != `{"count":300}` {
		t.Fatalf("count after the retried import: %s", a.body)
	}
	if _, err := os.Stat(docs + ".imported"); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeAgainAfterDowngrade: a data directory upgraded once
// (documents.imported), then run by the previous release again (a new
// documents/), then upgraded again: the second import brings the new
// documents too, and both old FerretDB directories are kept.
func TestUpgradeAgainAfterDowngrade(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	register := func(n *upgradeNode, id string) {
		if _, err := n.e.RegisterApp(ctx, storage.App{ClientID: id, Name: id, DeclaredScopes: allStorageScopes, AppType: "service"}); err != nil {
			t.Fatal(err)
		}
	}
	old := startNode(t, embedded.Config{Dir: dir, FerretDB: true}, "")
	register(old, "app-a")
	first := old.must(a1u1, "PUT", docRef{a1u1, "", "c", "first"}.path(), nil, `{"v":1}`, 200)
	old.close()
	n := startNode(t, embedded.Config{Dir: dir}, "")
	n.close()

	// The previous release again: it knows nothing of cpod.db and starts
	// an empty FerretDB in documents/.
	old = startNode(t, embedded.Config{Dir: dir, FerretDB: true}, "")
	register(old, "app-a")
	second := old.must(a1u1, "PUT", docRef{a1u1, "", "c", "second"}.path(), nil, `{"v":2}`, 200)
	old.close()

	n = startNode(t, embedded.Config{Dir: dir}, "")
	for _, c := range []struct {
		key  string
		want answer
	}{{"first", first}, {"second", second}} {
		got := n.must(a1u1, "GET", docRef{a1u1, "", "c", c.key}.path(), nil, "", 200)
		if got.etag != c.want.etag || !bytes.Equal(got.body, c.want.body) {
			t.Errorf("%s: %s %s, want %s %s", c.key, got.etag, got.body, c.want.etag, c.want.body)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, embedded.DocumentsDir)); !os.IsNotExist(err) {
		t.Errorf("%s is still there after the second import: %v", embedded.DocumentsDir, err)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, embedded.DocumentsDir+".imported*", "cpod.sqlite"))
	if len(kept) != 2 {
		t.Errorf("FerretDB databases kept: %v, want both", kept)
	}
}
