package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// doHdr is do with request headers, a string body, and a transport error
// returned instead of failing the test (for use in goroutines).
func doHdr(srv *cpodtest.Server, method, path, token, body string, hdr map[string]string) (resp, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		return resp{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}, err
}

// docReq sends one request on the document key of coll with headers.
func (c dbAs) docReq(method, coll, key, body string, hdr map[string]string) resp {
	c.t.Helper()
	r, err := doHdr(c.srv, method, c.url(coll, "/"+url.PathEscape(key)), c.tok, body, hdr)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// etagOf returns the ETag of a 200 answer, failing unless it is a quoted,
// strong entity tag.
func etagOf(t testing.TB, r resp) string {
	t.Helper()
	wantStatus(t, r, http.StatusOK, "")
	e := r.header.Get("ETag")
	if len(e) < 3 || e[0] != '"' || e[len(e)-1] != '"' || strings.ContainsAny(e[1:len(e)-1], "\" ") {
		t.Fatalf("ETag %q is not a quoted strong entity tag", e)
	}
	return e
}

func ifMatch(etag string) map[string]string { return map[string]string{"If-Match": etag} }

// TestDocumentsETag: GET and PUT answer the document's ETag, the same for
// the same version, and every write changes it: a set of the same value, a
// batch set, a patch, and a delete then a set of the same value (a stale
// tag never matches a new incarnation).
func TestDocumentsETag(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	seen := map[string]string{}
	fresh := func(what, e string) {
		t.Helper()
		if prev, ok := seen[e]; ok {
			t.Fatalf("%s: ETag %s again (first after %s)", what, e, prev)
		}
		seen[e] = what
	}
	e1 := etagOf(t, db.docReq("PUT", "prefs", "theme", `{"a":1}`, nil))
	fresh("first set", e1)
	equal(t, "GET ETag", etagOf(t, db.get("prefs", "theme")), e1)
	e2 := etagOf(t, db.docReq("PUT", "prefs", "theme", `{"a":1}`, nil))
	fresh("same value again", e2)
	equal(t, "GET ETag after the second set", etagOf(t, db.get("prefs", "theme")), e2)

	wantStatus(t, db.batch("prefs", `{"ops":[{"op":"set","key":"theme","value":{"a":1}}]}`), http.StatusOK, "")
	e3 := etagOf(t, db.get("prefs", "theme"))
	fresh("batch set", e3)

	r := db.docReq("PATCH", "prefs", "theme", `{"b":2}`, nil)
	e4 := etagOf(t, r)
	fresh("patch", e4)
	equal(t, "GET ETag after the patch", etagOf(t, db.get("prefs", "theme")), e4)

	wantStatus(t, db.del("prefs", "theme"), http.StatusNoContent, "")
	e5 := etagOf(t, db.docReq("PUT", "prefs", "theme", `{"a":1,"b":2}`, nil))
	fresh("set after delete", e5)
	wantStatus(t, db.docReq("PUT", "prefs", "theme", `{"stale":true}`, ifMatch(e4)), http.StatusPreconditionFailed, "conflict")
	v, _ := db.getValue("prefs", "theme")
	equal(t, "value after a stale If-Match", v, `{"a":1,"b":2}`)

	// A query and a batch need no ETag and keep their shape.
	p := db.page("prefs", `{}`)
	equal(t, "query items", len(p.Items), 1)
	equal(t, "query item", string(p.Items[0].Value), `{"a":1,"b":2}`)
}

// TestDocumentsConditionalWrites: If-Match and If-None-Match on PUT and
// DELETE, met and not met; a condition not met is 412 conflict and leaves
// the document (or its absence) as it was; malformed headers are 400.
func TestDocumentsConditionalWrites(t *testing.T) {
	t.Parallel()
	testConditionalWrites(t, newDBServer(t))
}

// TestDocumentsConditionalWritesFiltered runs the conditional writes the
// way they run on MongoDB (the version in the write's filter, no claim),
// which the servers of the test suite, FerretDB, would not otherwise take.
// Not parallel: the switch is global.
func TestDocumentsConditionalWritesFiltered(t *testing.T) {
	defer storage.WithoutVersionClaims()()
	db := newDBServer(t)
	testConditionalWrites(t, db)
	db.mustSet("filtered", "k", `{"a":1}`)
	e := etagOf(t, db.get("filtered", "k"))
	etagOf(t, db.docReq("PATCH", "filtered", "k", `{"b":2}`, ifMatch(e)))
	wantStatus(t, db.docReq("PATCH", "filtered", "k", `{"c":3}`, ifMatch(e)), http.StatusPreconditionFailed, "conflict")
	v, _ := db.getValue("filtered", "k")
	equal(t, "patched", v, `{"a":1,"b":2}`)
}

func testConditionalWrites(t *testing.T, db dbAs) {
	const coll = "cond"
	value := func(key string) string {
		t.Helper()
		v, found := db.getValue(coll, key)
		if !found {
			return "<missing>"
		}
		return v
	}

	// If-None-Match: * creates only.
	e1 := etagOf(t, db.docReq("PUT", coll, "k", `1`, map[string]string{"If-None-Match": "*"}))
	wantStatus(t, db.docReq("PUT", coll, "k", `2`, map[string]string{"If-None-Match": "*"}), http.StatusPreconditionFailed, "conflict")
	equal(t, "after If-None-Match on an existing document", value("k"), `1`)

	// If-Match with the current tag writes and answers a new tag.
	e2 := etagOf(t, db.docReq("PUT", coll, "k", `2`, ifMatch(e1)))
	if e2 == e1 {
		t.Fatal("a conditional write kept the ETag")
	}
	equal(t, "after If-Match", value("k"), `2`)
	// The old tag is stale now.
	wantStatus(t, db.docReq("PUT", coll, "k", `3`, ifMatch(e1)), http.StatusPreconditionFailed, "conflict")
	equal(t, "after a stale If-Match", value("k"), `2`)
	// A list with the current tag matches; a weak form of it does not
	// (strong comparison); a tag of another form matches nothing.
	e3 := etagOf(t, db.docReq("PUT", coll, "k", `3`, ifMatch(`"nope", `+e1+`,`+e2)))
	for _, h := range []string{"W/" + e3, `"` + strings.ToUpper(e3[1:len(e3)-1]) + `"`, `"x"`, `""`} {
		wantStatus(t, db.docReq("PUT", coll, "k", `4`, ifMatch(h)), http.StatusPreconditionFailed, "conflict")
	}
	equal(t, "after If-Match that never matches", value("k"), `3`)
	// * means "exists".
	etagOf(t, db.docReq("PUT", coll, "k", `4`, ifMatch("*")))
	wantStatus(t, db.docReq("PUT", coll, "missing", `1`, ifMatch("*")), http.StatusPreconditionFailed, "conflict")
	wantStatus(t, db.docReq("PUT", coll, "missing", `1`, ifMatch(e3)), http.StatusPreconditionFailed, "conflict")
	equal(t, "a conditional set of a missing document", value("missing"), "<missing>")

	// DELETE with If-Match: stale is 412 and keeps it, current deletes it,
	// a missing document is 412.
	e5 := etagOf(t, db.get(coll, "k"))
	wantStatus(t, db.docReq("DELETE", coll, "k", "", ifMatch(e3)), http.StatusPreconditionFailed, "conflict")
	equal(t, "after a stale conditional delete", value("k"), `4`)
	wantStatus(t, db.docReq("DELETE", coll, "k", "", ifMatch(e5)), http.StatusNoContent, "")
	equal(t, "after a conditional delete", value("k"), "<missing>")
	wantStatus(t, db.docReq("DELETE", coll, "k", "", ifMatch(e5)), http.StatusPreconditionFailed, "conflict")
	wantStatus(t, db.docReq("DELETE", coll, "k", "", ifMatch("*")), http.StatusPreconditionFailed, "conflict")
	wantStatus(t, db.docReq("DELETE", coll, "k", "", nil), http.StatusNoContent, "") // unconditional: idempotent

	// Malformed or unsupported preconditions are 400, and nothing is written.
	db.mustSet(coll, "m", `1`)
	em := etagOf(t, db.get(coll, "m"))
	bad := []struct {
		method string
		hdr    map[string]string
	}{
		{"PUT", ifMatch(strings.Trim(em, `"`))},           // unquoted
		{"PUT", ifMatch(`"abc`)},                          // unterminated
		{"PUT", ifMatch(em + " x")},                       // junk after a tag
		{"PUT", ifMatch(" ")},                             // empty
		{"PUT", ifMatch(strings.Repeat(em+",", 17) + em)}, // too many tags
		{"PUT", map[string]string{"If-None-Match": em}},   // If-None-Match other than *
		{"PUT", map[string]string{"If-Match": em, "If-None-Match": "*"}},
		{"DELETE", map[string]string{"If-None-Match": "*"}},
		{"DELETE", ifMatch("W/")},
		{"PATCH", map[string]string{"If-None-Match": "*"}},
		{"PATCH", ifMatch("abc")},
	}
	for _, b := range bad {
		body := `2`
		if b.method == "DELETE" {
			body = ""
		}
		wantStatus(t, db.docReq(b.method, coll, "m", body, b.hdr), http.StatusBadRequest, "invalid_request")
	}
	equal(t, "after refused preconditions", value("m"), `1`)
	equal(t, "ETag after refused preconditions", etagOf(t, db.get(coll, "m")), em)
}

// TestDocumentsIfMatchRace: writers that all read the same ETag and write
// with If-Match: exactly one wins each round, the others get 412, and the
// stored value is the winner's.
func TestDocumentsIfMatchRace(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	const writers, rounds = 8, 4
	db.mustSet("race", "k", `{"round":-1}`)
	for round := 0; round < rounds; round++ {
		tag := etagOf(t, db.get("race", "k"))
		var wg sync.WaitGroup
		results := make([]resp, writers)
		errs := make([]error, writers)
		start := make(chan struct{})
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				method, body := "PUT", fmt.Sprintf(`{"round":%d,"writer":%d}`, round, w)
				if w%2 == 1 {
					method = "PATCH" // patches race with sets under the same tag
				}
				results[w], errs[w] = doHdr(db.srv, method, db.url("race", "/k"), db.tok, body, ifMatch(tag))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, r := range results {
			if errs[w] != nil {
				t.Fatal(errs[w])
			}
			switch r.status {
			case http.StatusOK:
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both won with If-Match %s", round, winner, w, tag)
				}
				winner = w
			case http.StatusPreconditionFailed:
				wantStatus(t, r, http.StatusPreconditionFailed, "conflict")
			default:
				t.Fatalf("round %d writer %d: status %d %s", round, w, r.status, r.body)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		v, _ := db.getValue("race", "k")
		equal(t, fmt.Sprintf("round %d value", round), v, fmt.Sprintf(`{"round":%d,"writer":%d}`, round, winner))
		equal(t, fmt.Sprintf("round %d ETag", round), etagOf(t, db.get("race", "k")), results[winner].header.Get("ETag"))
	}
}

// TestDocumentsPatch: RFC 7396 merge on the stored JSON text: untouched
// members keep their text and order, replaced ones their place, new ones
// are appended, null removes, a non-object patch replaces; 404 when
// missing; If-Match honoured; bad patches are 400 and a merged value over
// the limits 413, with nothing written.
func TestDocumentsPatch(t *testing.T) {
	t.Parallel()
	db := newDBServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Limits.MaxDocumentNodes = 40 }))
	const coll = "patch"
	patch := func(key, body string, hdr map[string]string) resp {
		t.Helper()
		return db.docReq("PATCH", coll, key, body, hdr)
	}
	db.mustSet(coll, "d", `{"z":1.0,"a":{"x":"\u00e9","y":[1,2]},"n":1e2,"s":"<&>","gone":true}`)
	r := patch("d", ` { "a" : { "y" : null, "w" : {"p":1,"q":null} }, "new":[null], "gone":null, "z":2 } `, nil)
	etag := etagOf(t, r)
	want := `{"z":2,"a":{"x":"\u00e9","w":{"p":1}},"n":1e2,"s":"<&>","new":[null]}`
	var it dbItem
	decode(t, r, &it)
	equal(t, "patch answer key", it.Key, "d")
	equal(t, "patch answer value", string(it.Value), want)
	v, _ := db.getValue(coll, "d")
	equal(t, "patched value", v, want)
	equal(t, "GET ETag after the patch", etagOf(t, db.get(coll, "d")), etag)

	// Non-object patches replace; an object patch on a non-object starts
	// from {}.
	for _, tc := range []struct{ patch, want string }{
		{`[1,{"a":null}]`, `[1,{"a":null}]`},
		{`{"b":{"c":null,"d":1}}`, `{"b":{"d":1}}`},
		{`"text"`, `"text"`},
		{`null`, `null`},
		{`{"e":{}}`, `{"e":{}}`},
		{`{}`, `{"e":{}}`},
	} {
		r := patch("d", tc.patch, nil)
		wantStatus(t, r, http.StatusOK, "")
		v, _ := db.getValue(coll, "d")
		equal(t, "after patch "+tc.patch, v, tc.want)
	}

	// Missing: 404, and nothing created.
	wantStatus(t, patch("nope", `{"a":1}`, nil), http.StatusNotFound, "not_found")
	if _, found := db.getValue(coll, "nope"); found {
		t.Fatal("a patch created a document")
	}
	wantStatus(t, patch("nope", `{"a":1}`, ifMatch("*")), http.StatusPreconditionFailed, "conflict")

	// If-Match: the current tag applies, a stale one is 412.
	db.mustSet(coll, "m", `{"a":1}`)
	e1 := etagOf(t, db.get(coll, "m"))
	e2 := etagOf(t, patch("m", `{"b":2}`, ifMatch(e1)))
	wantStatus(t, patch("m", `{"c":3}`, ifMatch(e1)), http.StatusPreconditionFailed, "conflict")
	etagOf(t, patch("m", `{"c":3}`, ifMatch(e2)))
	v, _ = db.getValue(coll, "m")
	equal(t, "after conditional patches", v, `{"a":1,"b":2,"c":3}`)

	// Bad patches and merged values over the limits change nothing.
	before := etagOf(t, db.get(coll, "m"))
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"a":`, http.StatusBadRequest, "invalid_request"},
		{``, http.StatusBadRequest, "invalid_request"},
		{`{"a":1,"a":2}`, http.StatusBadRequest, "invalid_request"},
		{`{"a":1} {"b":2}`, http.StatusBadRequest, "invalid_request"},
		{`{"big":[` + strings.Repeat(`1,`, 35) + `1]}`, http.StatusRequestEntityTooLarge, "too_large"}, // 38 nodes, 41 merged
	} {
		wantStatus(t, patch("m", tc.body, nil), tc.status, tc.code)
	}
	v, _ = db.getValue(coll, "m")
	equal(t, "after refused patches", v, `{"a":1,"b":2,"c":3}`)
	equal(t, "ETag after refused patches", etagOf(t, db.get(coll, "m")), before)

	// PATCH takes ?tier and no other query parameter.
	user := db
	user.tier = "user"
	user.mustSet(coll, "u", `{"a":1}`)
	etagOf(t, user.docReq("PATCH", coll, "u", `{"b":1}`, nil))
	v, _ = user.getValue(coll, "u")
	equal(t, "user tier patch", v, `{"a":1,"b":1}`)
	r, err := doHdr(db.srv, "PATCH", "/v1/storage/db/"+coll+"/m?tier=private&merge=1", db.tok, `{"x":1}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, r, http.StatusBadRequest, "invalid_request")
	// A token without the write scope may not patch.
	ro := db
	ro.tok = db.srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: []string{"storage.private.read"}})
	wantStatus(t, ro.docReq("PATCH", coll, "m", `{"x":1}`, nil), http.StatusForbidden, "insufficient_scope")
}

// TestDocumentsPatchConcurrent: concurrent merge patches of different
// fields of one document all survive (no lost update).
func TestDocumentsPatchConcurrent(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	const patchers, each = 8, 3
	db.mustSet("pc", "k", `{"base":true}`)
	var wg sync.WaitGroup
	errs := make(chan error, patchers*each)
	for p := 0; p < patchers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf(`{"f%d_%d":%d}`, p, i, p*100+i)
				r, err := doHdr(db.srv, "PATCH", db.url("pc", "/k"), db.tok, body, nil)
				if err == nil && r.status != http.StatusOK {
					err = fmt.Errorf("status %d %s", r.status, r.body)
				}
				if err != nil {
					errs <- fmt.Errorf("patcher %d patch %d: %v", p, i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	v, _ := db.getValue("pc", "k")
	var got map[string]any
	if err := json.Unmarshal([]byte(v), &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, `{"base":true,`) {
		t.Errorf("the first field moved: %s", v)
	}
	for p := 0; p < patchers; p++ {
		for i := 0; i < each; i++ {
			if got[fmt.Sprintf("f%d_%d", p, i)] != float64(p*100+i) {
				t.Errorf("field f%d_%d lost: %s", p, i, v)
			}
		}
	}
	equal(t, "fields", len(got), 1+patchers*each)
}

// TestDocumentsWritesRacePut: a PATCH, or a PUT with If-Match, racing a
// plain PUT of the same document ends in a state some serial order of the
// two gives, round after round: every write of a document serialises
// (design.md: the check and the write are one atomic step). On FerretDB a
// plain PUT used to land between a conditional writer's check and its
// write and be overwritten by it: acknowledged, then lost (9 of 40 rounds
// in the audit).
func TestDocumentsWritesRacePut(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	const rounds = 40
	for _, ifMatch := range []bool{false, true} {
		for round := 0; round < rounds; round++ {
			key := fmt.Sprintf("k%v-%d", ifMatch, round)
			r := db.docReq("PUT", "race", key, `{"base":0}`, nil)
			wantStatus(t, r, http.StatusOK, "")
			base := etagOf(t, r)
			var wg sync.WaitGroup
			var condStatus int
			wg.Add(2)
			go func() {
				defer wg.Done()
				var hdr map[string]string
				method, body := "PATCH", `{"patched":1}`
				if ifMatch {
					hdr = map[string]string{"If-Match": base}
					method, body = "PUT", `{"base":0,"patched":1}`
				}
				r, err := doHdr(db.srv, method, db.url("race", "/"+key), db.tok, body, hdr)
				if err != nil {
					t.Error(err)
					return
				}
				condStatus = r.status
			}()
			go func() {
				defer wg.Done()
				r, err := doHdr(db.srv, "PUT", db.url("race", "/"+key), db.tok, `{"put":1}`, nil)
				if err == nil && r.status != http.StatusOK {
					err = fmt.Errorf("plain PUT: status %d %s", r.status, r.body)
				}
				if err != nil {
					t.Error(err)
				}
			}()
			wg.Wait()
			v, _ := db.getValue("race", key)
			// The PUT is acknowledged: the end state holds it, alone (it
			// came last, or the conditional write found it and failed) or
			// merged under a PATCH that came after it. The conditional
			// write's base version is gone once the PUT landed, so a PUT
			// with If-Match after it is 412.
			ok := v == `{"put":1}` || (!ifMatch && v == `{"put":1,"patched":1}`)
			if !ok || (condStatus != http.StatusOK && condStatus != http.StatusPreconditionFailed) {
				t.Fatalf("round %d (If-Match %v): value %s, conditional write %d: no serial order of the two writes gives this", round, ifMatch, v, condStatus)
			}
		}
	}
}

// TestDocumentsLegacyVersion: a document written before versions existed
// (no ver field) has an ETag, is conditionally writable with it, and a
// write by an engine of that time (updated changes, no ver) changes the
// ETag.
func TestDocumentsLegacyVersion(t *testing.T) {
	t.Parallel()
	// Auto: a FerretDB whose single collection holds documents keeps the
	// single layout, where the document below is written.
	auto := cpodtest.WithConfig(func(c *storage.Config) { c.DocumentsLayout = storage.DocumentsLayoutAuto })
	srv := cpodtest.NewServer(t, auto)
	mongoOnly(t, srv)
	srv.RegisterApp(t, "app-a", allScopes...)
	coll := srv.Mongo.Collection("cpod_documents")
	ctx := context.Background()
	legacy := func(key, js string, v any, at time.Time) {
		t.Helper()
		_, err := coll.InsertOne(ctx, bson.D{
			{Key: "_id", Value: "t1/apps/app-a/notes/" + key}, {Key: "loc", Value: "t1/apps/app-a/"},
			{Key: "coll", Value: "notes"}, {Key: "key", Value: key},
			{Key: "json", Value: js}, {Key: "v", Value: v},
			{Key: "created", Value: at}, {Key: "updated", Value: at},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	legacy("a", `{"n":1}`, bson.D{{Key: "n", Value: int64(1)}}, at)
	legacy("b", `{"n":1}`, bson.D{{Key: "n", Value: int64(1)}}, at.Add(time.Millisecond))
	legacy("c", `{"n":1}`, bson.D{{Key: "n", Value: int64(1)}}, at.Add(2*time.Millisecond))
	db := dbAs{t: t, srv: srv, tok: srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})}

	ea := etagOf(t, db.get("notes", "a"))
	// An engine of before writes a: updated changes, no ver.
	_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "t1/apps/app-a/notes/a"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "json", Value: `{"n":2}`}, {Key: "v", Value: bson.D{{Key: "n", Value: int64(2)}}}, {Key: "updated", Value: at.Add(time.Second)}}}})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, db.docReq("PUT", "notes", "a", `{"n":3}`, ifMatch(ea)), http.StatusPreconditionFailed, "conflict")
	ea2 := etagOf(t, db.get("notes", "a"))
	if ea2 == ea {
		t.Fatal("an old engine's write kept the ETag")
	}
	etagOf(t, db.docReq("PUT", "notes", "a", `{"n":3}`, ifMatch(ea2)))
	v, _ := db.getValue("notes", "a")
	equal(t, "a", v, `{"n":3}`)

	eb := etagOf(t, db.get("notes", "b"))
	etagOf(t, db.docReq("PATCH", "notes", "b", `{"m":1}`, ifMatch(eb)))
	v, _ = db.getValue("notes", "b")
	equal(t, "b", v, `{"n":1,"m":1}`)

	ec := etagOf(t, db.get("notes", "c"))
	wantStatus(t, db.docReq("DELETE", "notes", "c", "", ifMatch(eb)), http.StatusPreconditionFailed, "conflict")
	wantStatus(t, db.docReq("DELETE", "notes", "c", "", ifMatch(ec)), http.StatusNoContent, "")
	if _, found := db.getValue("notes", "c"); found {
		t.Fatal("c survived its conditional delete")
	}
}

// TestDocumentsVersionClaims: on FerretDB a write from a version first
// claims it; a live claim (another writer mid-write) makes a conditional
// set 412, and a claim left behind by an engine that died expires and is
// taken over.
func TestDocumentsVersionClaims(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	mongoOnly(t, db.srv)
	var info bson.M
	if err := db.srv.Mongo.RunCommand(context.Background(), bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		t.Fatal(err)
	}
	if _, ferret := info["ferretdbVersion"]; !ferret {
		t.Skip("version claims are used on FerretDB only; MongoDB's filtered update is atomic")
	}
	claims := db.srv.Mongo.Collection("cpod_documents_claims")
	claim := func(key, etag string, n int, exp time.Time) {
		t.Helper()
		id := fmt.Sprintf("t1/apps/app-a/claims/%s#%s#%d", key, strings.Trim(etag, `"`), n)
		if _, err := claims.InsertOne(context.Background(), bson.D{{Key: "_id", Value: id}, {Key: "exp", Value: exp}}); err != nil {
			t.Fatal(err)
		}
	}
	now := db.srv.Now()

	db.mustSet("claims", "live", `1`)
	e := etagOf(t, db.get("claims", "live"))
	claim("live", e, 0, now.Add(time.Hour))
	wantStatus(t, db.docReq("PUT", "claims", "live", `2`, ifMatch(e)), http.StatusPreconditionFailed, "conflict")
	v, _ := db.getValue("claims", "live")
	equal(t, "value under a live claim", v, `1`)

	db.mustSet("claims", "dead", `1`)
	e = etagOf(t, db.get("claims", "dead"))
	claim("dead", e, 0, now.Add(-time.Second))
	etagOf(t, db.docReq("PUT", "claims", "dead", `2`, ifMatch(e)))
	v, _ = db.getValue("claims", "dead")
	equal(t, "value after taking over an expired claim", v, `2`)
	// Both claims, the expired one and the one taken over, are deleted
	// after the write (in the background).
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := claims.CountDocuments(context.Background(), bson.D{{Key: "_id", Value: bson.D{{Key: "$regex", Value: "/dead#"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d claims of dead left after the write", n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A PATCH waits out nobody forever: under a live claim of the stored
	// version it gives up with 409 conflict, writing nothing.
	db.mustSet("claims", "p", `{"a":1}`)
	e = etagOf(t, db.get("claims", "p"))
	for n := 0; n < 4; n++ {
		claim("p", e, n, now.Add(time.Hour))
	}
	wantStatus(t, db.docReq("PATCH", "claims", "p", `{"b":1}`, nil), http.StatusConflict, "conflict")
	v, _ = db.getValue("claims", "p")
	equal(t, "value after a patch under live claims", v, `{"a":1}`)
}
