package storage_test

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// count posts a count and returns n.
func (c dbAs) count(coll string, body any) int64 {
	c.t.Helper()
	r := do(c.t, c.srv, "POST", c.url(coll, "/count"), c.tok, body)
	wantStatus(c.t, r, http.StatusOK, "")
	var out struct {
		Count *int64 `json:"count"`
	}
	decode(c.t, r, &out)
	if out.Count == nil {
		c.t.Fatalf("count without count: %s", r.body)
	}
	return *out.Count
}

// walk runs a query page by page and returns every key, checking that no
// page but the last is short.
func (c dbAs) walk(coll, body string, limit int) []string {
	c.t.Helper()
	var got []string
	req := body[:len(body)-1] + fmt.Sprintf(`,"limit":%d}`, limit)
	for pages := 1; ; pages++ {
		p := c.page(coll, req)
		if len(p.Items) > limit || (p.NextCursor != nil && len(p.Items) != limit) {
			c.t.Fatalf("%s limit %d page %d: %d items, cursor %v", body, limit, pages, len(p.Items), p.NextCursor != nil)
		}
		got = append(got, keysOf(p.Items)...)
		if p.NextCursor == nil {
			return got
		}
		if pages > 10000 {
			c.t.Fatalf("%s: endless pages", body)
		}
		// A filter and sort sent with a cursor are ignored.
		req = fmt.Sprintf(`{"filter":{"n":{"in":[-99]}},"sort":{"s":-1},"cursor":%q,"limit":%d}`, *p.NextCursor, limit)
	}
}

// TestDocumentsQueryOperators: ranges, sets and not-equal on a small
// collection, each result and count checked against keys written out by
// hand, including the type rule, null and missing fields.
func TestDocumentsQueryOperators(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	docs := map[string]string{
		"a": `{"n":1,"s":"apple","d":"2025-01-01","b":true}`,
		"b": `{"n":2.5,"s":"banana","d":"2025-01-03","b":false}`,
		"c": `{"n":3,"s":"cherry","d":"2025-02-01"}`,
		"d": `{"n":"2","s":"date","d":null}`,
		"e": `{"n":null,"s":"Elder"}`,
		"f": `{"s":"fig","m":{"x":5}}`,
		"g": `{"n":10,"s":"grape","m":{"x":"5"}}`,
		"h": `{"n":1.0,"s":"","m":7}`,
		"i": `{"n":{"gt":1},"s":"kiwi"}`,
		"j": `[1,2]`,
	}
	for k, v := range docs {
		db.mustSet("ops", k, v)
	}
	cases := []struct {
		filter string
		want   string // keys in key order
	}{
		{`{"n":{"gt":1}}`, "b c g"},
		{`{"n":{"gte":1}}`, "a b c g h"},
		{`{"n":{"gte":1,"lt":3}}`, "a b h"},
		{`{"n":{"gt":1,"lte":3}}`, "b c"},
		{`{"n":{"lt":2}}`, "a h"},
		{`{"n":{"lte":-1}}`, ""},
		{`{"n":{"gt":9007199254740992}}`, ""},
		{`{"n":{"gte":"1"}}`, "d"},            // strings with strings only
		{`{"n":{"gt":"1","lt":3}}`, ""},       // bounds of two types
		{`{"n":{"gte":null}}`, "e f j"},       // null and missing, not an object
		{`{"n":{"lte":null,"ne":null}}`, ""},  // nothing is both
		{`{"n":{"gt":null}}`, ""},             // no backend call
		{`{"n":{"lt":null}}`, ""},             // no backend call
		{`{"s":{"gte":"b","lt":"d"}}`, "b c"}, // byte order: "Elder" < "b"
		{`{"s":{"lt":"a"}}`, "e h"},           // "Elder" and ""
		{`{"d":{"gte":"2025-01-01","lt":"2025-02-01"}}`, "a b"},
		{`{"b":{"gt":false}}`, "a"},
		{`{"b":{"gte":false}}`, "a b"},
		{`{"b":{"lt":true}}`, "b"},
		{`{"n":{"in":[1,"2",10]}}`, "a d g h"}, // mixed types, 1 == 1.0
		{`{"n":{"in":[null]}}`, "e f j"},
		{`{"n":{"in":[null,3]}}`, "c e f j"},
		{`{"s":{"in":["fig"]}}`, "f"},
		{`{"m.x":{"in":[5,"5"]}}`, "f g"},
		{`{"n":{"ne":1}}`, "b c d e f g i j"},     // complement of {"n":1}
		{`{"n":{"ne":null}}`, "a b c d g h i"},    // complement of {"n":null}
		{`{"m.x":{"ne":5}}`, "a b c d e g h i j"}, // missing and through a scalar included
		{`{"n":{"gte":1,"ne":3}}`, "a b g h"},
		{`{"n":{"gt":0},"s":{"in":["apple","cherry","fig"]}}`, "a c"},
		{`{"n":{"gt":0},"s":"apple"}`, "a"},
		{`{"0":{"gte":1}}`, "j"}, // an array's index
		{`{"n.gt":1}`, "i"},      // a field named like an operator is a path
		{`{}`, "a b c d e f g h i j"},
	}
	for _, c := range cases {
		want := strings.Fields(c.want)
		body := `{"filter":` + c.filter + `}`
		got := keysOf(db.page("ops", `{"filter":`+c.filter+`,"limit":1000}`).Items)
		equalKeys(t, body, got, want)
		equal(t, body+" count", db.count("ops", body), int64(len(want)))
		for _, limit := range []int{2} {
			equalKeys(t, fmt.Sprintf("%s walked by %d", body, limit), db.walk("ops", `{"filter":`+c.filter+`,"sort":{"n":-1,"s":1}}`, limit), sortedLike(db, c.filter, want))
		}
	}
	// A filter that can match nothing makes no backend call.
	for _, f := range []string{`{"n":{"gt":null}}`, `{"n":{"gte":1,"lt":"9"}}`} {
		before := db.srv.Calls().Documents
		equal(t, f, len(db.page("ops", `{"filter":`+f+`}`).Items), 0)
		equal(t, f+" count", db.count("ops", `{"filter":`+f+`}`), 0)
		equal(t, f+": database calls", db.srv.Calls().Documents, before)
	}
	// No filter, or no body, counts the collection.
	equal(t, "count without body", db.count("ops", nil), int64(len(docs)))
	equal(t, "count of another collection", db.count("none", `{"filter":{"n":1}}`), 0)
}

// sortedLike returns want in the order {"n":-1,"s":1} then key, as the
// engine sorts: read from one unpaginated query with the same filter.
func sortedLike(db dbAs, filter string, want []string) []string {
	db.t.Helper()
	got := keysOf(db.page("ops", `{"filter":`+filter+`,"sort":{"n":-1,"s":1},"limit":1000}`).Items)
	a, b := append([]string(nil), got...), append([]string(nil), want...)
	sort.Strings(a)
	sort.Strings(b)
	equalKeys(db.t, filter+" sorted", a, b)
	return got
}

// TestDocumentsQueryOperatorsRefused: malformed operator objects are 400
// invalid_request naming the field and the operator, before any backend
// call, for a query and for a count.
func TestDocumentsQueryOperatorsRefused(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	db.mustSet("c", "k", `{"a":1}`)
	in31 := strings.TrimSuffix(strings.Repeat("1,", 31), ",")
	cases := []struct{ filter, mention string }{
		{`{"a":{}}`, `"a"`},
		{`{"a":{"$gt":1}}`, `"$gt"`},
		{`{"a":{"$in":[1]}}`, `"$in"`},
		{`{"a":{"$ne":""}}`, `"$ne"`},
		{`{"a":{"eq":1}}`, `"eq"`},
		{`{"a":{"GT":1}}`, `"GT"`},
		{`{"a":{"gt ":1}}`, `"gt "`},
		{`{"a":{"regex":".*"}}`, `"regex"`},
		{`{"a":{"where":"1"}}`, `"where"`},
		{`{"a":{"gt":1,"gt":2}}`, `"gt"`},
		{`{"a":{"gt":1,"gte":2}}`, `"gte"`},
		{`{"a":{"lt":1,"lte":2}}`, `"lte"`},
		{`{"a":{"in":[1],"ne":2}}`, `"in"`},
		{`{"a":{"gt":0,"in":[1]}}`, `"in"`},
		{`{"a":{"in":[]}}`, `"in"`},
		{`{"a":{"in":[` + in31 + `]}}`, `"in"`},
		{`{"a":{"in":1}}`, `"in"`},
		{`{"a":{"in":"x"}}`, `"in"`},
		{`{"a":{"in":null}}`, `"in"`},
		{`{"a":{"in":[[1]]}}`, `"in"`},
		{`{"a":{"in":[{"$gt":1}]}}`, `"in"`},
		{`{"a":{"gt":{"$gt":1}}}`, `"gt"`},
		{`{"a":{"gt":[1]}}`, `"gt"`},
		{`{"a":{"ne":{}}}`, `"ne"`},
		{`{"a":{"lte":"` + strings.Repeat("x", 4097) + `"}}`, `"lte"`},
		{`{"a":{"in":["` + strings.Repeat("x", 4097) + `"]}}`, `"in"`},
		{`{"a":{"gt":1,"$or":[]}}`, `"$or"`},
		{`{"a":{"gt":1}`, ``},
		{`{"a":{"gt":}}`, ``},
		{`{"a":["x"]}`, `"a"`},
		{`{"$or":[{"a":1}]}`, `"$or"`},
		{`{"a.$gt":1}`, `"a.$gt"`},
	}
	for _, c := range cases {
		for _, endpoint := range []string{"/query", "/count"} {
			before := db.srv.Calls().Documents
			r := do(t, db.srv, "POST", db.url("c", endpoint), db.tok, `{"filter":`+c.filter+`}`)
			if r.status != http.StatusBadRequest {
				t.Fatalf("%s %s: status %d, want 400; body %s", endpoint, c.filter, r.status, r.body)
			}
			var e struct{ Error, Message string }
			decode(t, r, &e)
			if e.Error != "invalid_request" {
				t.Fatalf("%s %s: error %q", endpoint, c.filter, e.Error)
			}
			if c.mention != "" && !strings.Contains(e.Message, c.mention) {
				t.Fatalf("%s %s: message %q does not name %s", endpoint, c.filter, e.Message, c.mention)
			}
			if c.mention != "" && c.mention != `"a"` && strings.HasPrefix(c.filter, `{"a":{`) && !strings.Contains(e.Message, `"a"`) {
				t.Fatalf("%s %s: message %q does not name the field", endpoint, c.filter, e.Message)
			}
			equal(t, endpoint+" "+c.filter+": database calls", db.srv.Calls().Documents, before)
		}
	}
	// The count takes only a filter.
	for _, b := range []string{`{"sort":{"a":1}}`, `{"limit":1}`, `{"cursor":"x"}`, `[]`, `{"filter":[]}`} {
		wantStatus(t, do(t, db.srv, "POST", db.url("c", "/count"), db.tok, b), http.StatusBadRequest, "invalid_request")
	}
}

// TestDocumentsCountScopes: a count needs the tier's read scope and sees
// only the caller's own location.
func TestDocumentsCountScopes(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	db.mustSet("c", "k1", `{"a":1}`)
	db.mustSet("c", "k2", `{"a":2}`)
	shared := dbAs{t: t, srv: db.srv, tok: db.tok, tier: "shared"}
	shared.mustSet("c", "k3", `{"a":3}`)
	equal(t, "private", db.count("c", `{"filter":{"a":{"gte":1}}}`), 2)
	equal(t, "shared", shared.count("c", `{"filter":{"a":{"gte":1}}}`), 1)
	db.srv.RegisterApp(t, "app-w", "storage.private.write", "storage.private.read")
	writeOnly := db.srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-w", User: "u1", Scopes: []string{"storage.private.write"}})
	r := do(t, db.srv, "POST", "/v1/storage/db/c/count", writeOnly, `{}`)
	wantStatus(t, r, http.StatusForbidden, "insufficient_scope")
	r = do(t, db.srv, "POST", "/v1/storage/db/c/count", "", `{}`)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("no token: status %d", r.status)
	}
}

// The property test: the engine's answer to random filters and sorts,
// walked page by page with random limits, equals the same query evaluated
// in memory (jv, cmpJV: the reference order of TestDocumentsPagination).

// randomScalar is a filter operand: mostly values the documents hold.
func randomScalar(rng *rand.Rand) string {
	for {
		if v, ok := randomSortValue(rng); ok && !strings.HasPrefix(v, "{") && !strings.HasPrefix(v, "[") {
			return v
		}
	}
}

// randomBound is a range bound: a number, string or boolean, sometimes null.
func randomBound(rng *rand.Rand, kind int) string {
	switch kind {
	case 0:
		return "null"
	case 1:
		return []string{"0", "1", "2", "1.5", "-1", "2.0", "10", "1e300", "9007199254740993"}[rng.Intn(9)]
	case 2:
		return strconv.Quote([]string{"", "a", "ab", "b", "B", "é", "2"}[rng.Intn(7)])
	}
	return []string{"true", "false"}[rng.Intn(2)]
}

type opTerm struct {
	path string
	ops  [][2]string // operator and operand (JSON); "" is equality
}

func (o opTerm) json() string {
	if len(o.ops) == 1 && o.ops[0][0] == "" {
		return fmt.Sprintf("%q:%s", o.path, o.ops[0][1])
	}
	var parts []string
	for _, op := range o.ops {
		parts = append(parts, fmt.Sprintf("%q:%s", op[0], op[1]))
	}
	return fmt.Sprintf("%q:{%s}", o.path, strings.Join(parts, ","))
}

// matchOp is the documented rule of one operator, in memory.
func matchOp(t testing.TB, v jv, op, operand string) bool {
	switch op {
	case "":
		return cmpJV(v, parseJV(t, operand)) == 0
	case "ne":
		return cmpJV(v, parseJV(t, operand)) != 0
	case "in":
		var items []json.RawMessage
		if err := json.Unmarshal([]byte(operand), &items); err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if cmpJV(v, parseJV(t, string(it))) == 0 {
				return true
			}
		}
		return false
	}
	b := parseJV(t, operand)
	if v.kind != b.kind {
		return false
	}
	c := cmpJV(v, b)
	switch op {
	case "gt":
		return c > 0 && b.kind != 0
	case "gte":
		return c >= 0
	case "lt":
		return c < 0 && b.kind != 0
	case "lte":
		return c <= 0
	}
	t.Fatalf("operator %q", op)
	return false
}

func randomOpTerm(rng *rand.Rand, path string) opTerm {
	o := opTerm{path: path}
	switch rng.Intn(6) {
	case 0:
		o.ops = append(o.ops, [2]string{"", randomScalar(rng)})
	case 1:
		o.ops = append(o.ops, [2]string{"ne", randomScalar(rng)})
	case 2:
		var items []string
		for i := 1 + rng.Intn(4); i > 0; i-- {
			items = append(items, randomScalar(rng))
		}
		o.ops = append(o.ops, [2]string{"in", "[" + strings.Join(items, ",") + "]"})
	default:
		kind := 1 + rng.Intn(2)
		if rng.Intn(8) == 0 {
			kind = rng.Intn(4)
		}
		lower, upper := rng.Intn(3) != 0, rng.Intn(3) != 0
		if !lower && !upper {
			lower = true
		}
		if lower {
			o.ops = append(o.ops, [2]string{[]string{"gt", "gte"}[rng.Intn(2)], randomBound(rng, kind)})
		}
		if upper {
			k := kind
			if rng.Intn(10) == 0 {
				k = rng.Intn(4) // sometimes another type: matches nothing
			}
			o.ops = append(o.ops, [2]string{[]string{"lt", "lte"}[rng.Intn(2)], randomBound(rng, k)})
		}
		if rng.Intn(4) == 0 {
			o.ops = append(o.ops, [2]string{"ne", randomBound(rng, kind)})
		}
	}
	return o
}

// TestDocumentsQueryProperty: random documents (mixed types per field,
// missing fields, paths through scalars), random filters of every operator
// and random sorts, walked with random limits, equal the in-memory answer;
// the count equals the number of matches. CPOD_QUERY_PROPERTY_DOCS and
// CPOD_QUERY_PROPERTY_QUERIES size it (defaults 300 and 30, about 10 s on
// the fakes; 150 and 15 with -short or -race); CPOD_QUERY_PROPERTY_SEED
// replays a seed, which the test logs.
func TestDocumentsQueryProperty(t *testing.T) {
	t.Parallel()
	n, nq := 300, 30
	if testing.Short() || raceEnabled {
		n, nq = 150, 15
	}
	envInt := func(name string, v *int) {
		if s := os.Getenv(name); s != "" {
			x, err := strconv.Atoi(s)
			if err != nil || x < 1 {
				t.Fatalf("%s=%q is not a positive number", name, s)
			}
			*v = x
		}
	}
	envInt("CPOD_QUERY_PROPERTY_DOCS", &n)
	envInt("CPOD_QUERY_PROPERTY_QUERIES", &nq)
	seed := int(rand.Int63() & 0xffffff)
	envInt("CPOD_QUERY_PROPERTY_SEED", &seed)
	t.Logf("seed %d (CPOD_QUERY_PROPERTY_SEED replays it)", seed)
	rng := rand.New(rand.NewSource(int64(seed)))

	db := newDBServer(t)
	// On SQLite, the first page of each query shape scans and the later
	// pages and queries of that shape run on the index it gets.
	storage.IndexEveryQuery(db.srv.Engine)
	type doc struct {
		key string
		val jv
	}
	docs := make([]doc, n)
	var batch strings.Builder
	flush := func() {
		if batch.Len() == 0 {
			return
		}
		r := db.batch("p", `{"ops":[`+batch.String()+`]}`)
		wantStatus(t, r, http.StatusOK, "")
		if !strings.Contains(string(r.body), `"failed":0`) {
			t.Fatalf("loading: %.300s", r.body)
		}
		batch.Reset()
	}
	for i := range docs {
		var fields []string
		for _, f := range []string{"f", "g"} {
			if v, ok := randomSortValue(rng); ok {
				fields = append(fields, fmt.Sprintf("%q:%s", f, v))
			}
		}
		switch rng.Intn(3) {
		case 0:
		case 1:
			fields = append(fields, `"m":7`)
		default:
			v, ok := randomSortValue(rng)
			if !ok {
				v = "null"
			}
			fields = append(fields, `"m":{"x":`+v+`}`)
		}
		rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
		js := "{" + strings.Join(fields, ",") + "}"
		docs[i] = doc{key: fmt.Sprintf("k%02x/%d", rng.Intn(256), i), val: parseJV(t, js)}
		if batch.Len() > 0 {
			batch.WriteByte(',')
		}
		k, _ := json.Marshal(docs[i].key)
		fmt.Fprintf(&batch, `{"op":"set","key":%s,"value":%s}`, k, js)
		if i%100 == 99 {
			flush()
		}
	}
	flush()

	paths := []string{"f", "g", "m.x", "m"}
	for qi := 0; qi < nq; qi++ {
		var terms []opTerm
		for _, i := range rng.Perm(3)[:1+rng.Intn(2)] {
			terms = append(terms, randomOpTerm(rng, paths[i]))
		}
		type sortField struct {
			path string
			dir  int
		}
		var sorts []sortField
		for _, i := range rng.Perm(len(paths))[:rng.Intn(3)] {
			sorts = append(sorts, sortField{paths[i], 1 - 2*rng.Intn(2)})
		}
		var match []doc
		for _, d := range docs {
			ok := true
			for _, tm := range terms {
				for _, op := range tm.ops {
					ok = ok && matchOp(t, d.val.at(tm.path), op[0], op[1])
				}
			}
			if ok {
				match = append(match, d)
			}
		}
		sort.Slice(match, func(i, j int) bool {
			for _, s := range sorts {
				if c := cmpJV(match[i].val.at(s.path), match[j].val.at(s.path)); c != 0 {
					return c*s.dir < 0
				}
			}
			return match[i].key < match[j].key
		})
		want := make([]string, len(match))
		for i, d := range match {
			want[i] = d.key
		}
		var fj, sj []string
		for _, tm := range terms {
			fj = append(fj, tm.json())
		}
		for _, s := range sorts {
			sj = append(sj, fmt.Sprintf("%q:%d", s.path, s.dir))
		}
		filter := "{" + strings.Join(fj, ",") + "}"
		body := `{"filter":` + filter + `,"sort":{` + strings.Join(sj, ",") + `}}`
		limit := 1 + rng.Intn(40)
		if rng.Intn(4) == 0 {
			limit = 1 + rng.Intn(4)
		}
		// At most about 12 pages a walk: each page is a scan on FerretDB.
		limit = max(limit, (len(want)+11)/12)
		equalKeys(t, fmt.Sprintf("seed %d query %d %s limit %d", seed, qi, body, limit), db.walk("p", body, limit), want)
		equal(t, fmt.Sprintf("seed %d query %d count %s", seed, qi, filter), db.count("p", `{"filter":`+filter+`}`), int64(len(want)))
	}
}
