package storage_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// jsonArray is [0,0,...] with n items.
func jsonArray(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("0,", n), ",") + "]"
}

// jsonObject is {"f0":0,"f1":0,...} with n fields.
func jsonObject(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"f%d":0`, i)
	}
	return b.String() + "}"
}

// jsonNested is an array of m arrays of n zeros: 1+m+m*n values.
func jsonNested(m, n int) string {
	parts := make([]string, m)
	for i := range parts {
		parts[i] = jsonArray(n)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// wantRefused checks a 413 too_large whose message names the limit.
func wantRefused(t *testing.T, what string, r resp, limit int) {
	t.Helper()
	wantStatus(t, r, http.StatusRequestEntityTooLarge, "too_large")
	if !strings.Contains(string(r.body), fmt.Sprint(limit)) {
		t.Fatalf("%s: message %s does not name the limit %d", what, r.body, limit)
	}
}

// TestDocumentsStructureLimits: a value's structure is capped (values,
// array items, object fields; a batch's values together) at the documented
// defaults; a value over a cap is 413 naming it, before any database call;
// values at the caps and ordinary ones are stored.
func TestDocumentsStructureLimits(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)

	// At the defaults: stored and read back.
	ok := map[string]string{
		"array of 5000 items":   jsonArray(5000),
		"object of 1000 fields": jsonObject(1000),
		"10000 values":          jsonNested(99, 100), // 1 + 99 + 9900
		"deep config":           strings.Repeat(`{"level":1,"list":[1,2,3],"next":`, 31) + `null` + strings.Repeat(`}`, 31),
		"seed session":          `{"status":"active","plan":"pro","createdAt":1700000000}`,
		"1 MiB string":          `"` + strings.Repeat("x", 1<<20-2) + `"`,
	}
	for name, v := range ok {
		wantStatus(t, db.set("c", "ok", v), http.StatusOK, "")
		got, _ := db.getValue("c", "ok")
		equal(t, name+": round trip", len(got), len(v))
	}
	p := db.page("c", `{"filter":{"nothere":0}}`)
	equalKeys(t, "query among maximal values", keysOf(p.Items), nil)

	// Over the defaults: 413 naming the limit, and no database call.
	items := strings.Replace(jsonNested(99, 100), "[0,", "[0,0,", 1) // 10001 values
	refused := []struct {
		what  string
		value string
		limit int
	}{
		{"array of 5001 items", jsonArray(5001), 5000},
		{"nested array of 5001 items", `{"a":{"b":` + jsonArray(5001) + `}}`, 5000},
		{"object of 1001 fields", jsonObject(1001), 1000},
		{"nested object of 1001 fields", `[1,` + jsonObject(1001) + `]`, 1000},
		{"10001 values", items, 10000},
		{"1 MiB array (500k items)", jsonArray(1<<19 - 1), 5000},
		{"1 MiB of small arrays", jsonNested(1<<17, 1), 10000},
	}
	for _, tc := range refused {
		before := db.srv.Calls().Documents
		wantRefused(t, tc.what, db.set("c", "bad", tc.value), tc.limit)
		equal(t, tc.what+": database calls", db.srv.Calls().Documents, before)
	}
	wantStatus(t, db.get("c", "bad"), http.StatusNotFound, "not_found")

	// In a batch, a value over a cap fails its op; the others are stored.
	r := db.batch("c", `{"ops":[{"op":"set","key":"b1","value":`+jsonArray(5001)+`},{"op":"set","key":"b2","value":[1]}]}`)
	wantStatus(t, r, http.StatusOK, "")
	var res struct {
		Succeeded, Failed int
		Results           []struct{ Key, Error, Message string }
	}
	decode(t, r, &res)
	equal(t, "batch succeeded", res.Succeeded, 1)
	equal(t, "batch op 0 error", res.Results[0].Error, "too_large")
	wantStatus(t, db.get("c", "b1"), http.StatusNotFound, "not_found")

	// The batch, 16 arrays of 20k items: every op fails, no call.
	var ops []string
	for i := 0; i < 16; i++ {
		ops = append(ops, fmt.Sprintf(`{"op":"set","key":"h%d","value":%s}`, i, jsonArray(20000)))
	}
	before := db.srv.Calls().Documents
	r = db.batch("c", `{"ops":[`+strings.Join(ops, ",")+`]}`)
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &res)
	equal(t, "hostile batch failed ops", res.Failed, 16)
	equal(t, "hostile batch: database calls", db.srv.Calls().Documents, before)

	// A batch's values together: two values of 10000 (20000) pass; one
	// value more is refused as a whole, before any database call.
	ops = []string{
		`{"op":"set","key":"m0","value":` + jsonNested(99, 100) + `}`,
		`{"op":"set","key":"m1","value":` + jsonNested(99, 100) + `}`,
	}
	r = db.batch("c", `{"ops":[`+strings.Join(ops, ",")+`]}`)
	wantStatus(t, r, http.StatusOK, "")
	decode(t, r, &res)
	equal(t, "batch of 20000 values: succeeded", res.Succeeded, 2)
	wantStatus(t, db.del("c", "m0"), http.StatusNoContent, "")
	ops = append(ops, `{"op":"set","key":"m2","value":1}`)
	before = db.srv.Calls().Documents
	wantRefused(t, "batch of 20001 values", db.batch("c", `{"ops":[`+strings.Join(ops, ",")+`]}`), 20000)
	equal(t, "big batch: database calls", db.srv.Calls().Documents, before)
	wantStatus(t, db.get("c", "m0"), http.StatusNotFound, "not_found")
}

// TestDocumentsStructureLimitsConfig checks that Config.Limits drive the
// structure caps, at their exact boundaries.
func TestDocumentsStructureLimitsConfig(t *testing.T) {
	t.Parallel()
	db := newDBServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxDocumentNodes = 6
		c.Limits.MaxDocumentArrayItems = 3
		c.Limits.MaxDocumentObjectFields = 2
		c.Limits.MaxBatchNodes = 8
	}))
	wantStatus(t, db.set("c", "k", `[1,2,3]`), http.StatusOK, "")
	wantRefused(t, "4 items", db.set("c", "k", `[1,2,3,4]`), 3)
	wantStatus(t, db.set("c", "k", `{"a":1,"b":2}`), http.StatusOK, "")
	wantRefused(t, "3 fields", db.set("c", "k", `{"a":1,"b":2,"c":3}`), 2)
	wantStatus(t, db.set("c", "k", `[[1,2],[3]]`), http.StatusOK, "") // 6 values
	wantRefused(t, "7 values", db.set("c", "k", `[[1,2],[3,4]]`), 6)
	wantStatus(t, db.batch("c", `{"ops":[{"op":"set","key":"a","value":[1,2,3]},{"op":"set","key":"b","value":[1,2,3]}]}`), http.StatusOK, "")
	wantRefused(t, "batch of 9 values", db.batch("c", `{"ops":[{"op":"set","key":"a","value":[1,2,3]},{"op":"set","key":"b","value":[1,2,3]},{"op":"set","key":"c","value":1}]}`), 8)
}

// TestDocumentsHostileNeighbour: a burst of hostile values from one tenant
// (the 1 MiB arrays, wide objects, batches of large arrays) is
// refused before any database call, and another tenant's query stays as
// fast as before the burst.
func TestDocumentsHostileNeighbour(t *testing.T) {
	t.Parallel()
	db := newDBServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.BackendTimeout = 5 * time.Second }))
	other := db
	other.tok = db.srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", User: "u2", Scopes: allScopes})
	for i := 0; i < 20; i++ {
		other.mustSet("notes", fmt.Sprintf("n%02d", i), fmt.Sprintf(`{"owner":"u2","n":%d}`, i))
	}
	query := func() time.Duration {
		start := time.Now()
		p := other.page("notes", `{"filter":{"owner":"u2"},"sort":{"n":-1},"limit":5}`)
		equalKeys(t, "neighbour's query", keysOf(p.Items), []string{"n19", "n18", "n17", "n16", "n15"})
		return time.Since(start)
	}
	baseline := query()

	before := db.srv.Calls().Documents
	hostile := []string{jsonArray(1<<19 - 1), jsonObject(60000), jsonNested(1<<16, 3), jsonNested(5000, 2)}
	var ops []string
	for i := 0; i < 16; i++ {
		ops = append(ops, fmt.Sprintf(`{"op":"set","key":"h%d","value":%s}`, i, jsonArray(20000)))
	}
	batch := `{"ops":[` + strings.Join(ops, ",") + `]}`
	for round := 0; round < 2; round++ {
		for i, v := range hostile {
			r := db.set("c", fmt.Sprintf("h%d", i), v)
			wantStatus(t, r, http.StatusRequestEntityTooLarge, "too_large")
		}
		r := db.batch("c", batch)
		wantStatus(t, r, http.StatusOK, "")
		var res struct{ Failed int }
		decode(t, r, &res)
		equal(t, "hostile batch failed ops", res.Failed, 16)
	}
	equal(t, "hostile burst: database calls", db.srv.Calls().Documents, before)

	after := query()
	// Nothing reached the database, so the neighbour's query costs what it
	// did; the bound is loose for a busy machine (the issue measured 2.4 s
	// to 8 s against 6 ms).
	if after > 10*baseline+time.Second {
		t.Fatalf("neighbour's query took %v after the burst, %v before", after, baseline)
	}
}

// TestDocumentsOddFieldNames walks FerretDB v1.24's field name and path
// restrictions (types/document_validation.go, types/path.go): a stored
// value with such a name is never a 500, and a filter or sort on it either
// works or is a 400 naming the field.
func TestDocumentsOddFieldNames(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	// query: "match" (a filter or sort on the name finds it), "400" (the
	// path is refused, naming the field) or "other" (the path means
	// something else: a dot separates segments).
	names := []struct {
		name, why, query string
	}{
		{"a b", "inner space", "match"},
		{" c", "leading space (path: TrimSpace)", "match"},
		{"c ", "trailing space (path: TrimSpace)", "match"},
		{"  both  ", "leading and trailing spaces", "match"},
		{" ", "only a space", "match"},
		{"\u00a0nbsp", "leading no-break space (unicode.IsSpace)", "match"},
		{"nbsp\u00a0", "trailing no-break space", "match"},
		{"\u3000", "ideographic space", "match"},
		{"x\u2028", "trailing line separator", "match"},
		{"%20c", "looks like an escaped leading space", "match"},
		{"%", "escape character", "match"},
		{"a%2Eb", "looks like an escaped dot", "match"},
		{"é ", "multi-byte then trailing space", "match"},
		{"$gt", "leading $ (document validation)", "400"},
		{"a.b", "dot (document validation, path)", "other"},
		{"", "empty (path)", "400"},
		{"nul\u0000", "NUL (BSON)", "400"},
		{"\t", "control character, white space", "400"},
		{"\u0085x", "C1 control, white space", "400"},
	}
	for i, n := range names {
		v, _ := json.Marshal(map[string]int{n.name: i})
		key := fmt.Sprintf("k%02d", i)
		r := db.set("names", key, v)
		wantStatus(t, r, http.StatusOK, "")
		got, _ := db.getValue("names", key)
		equal(t, n.why+": round trip", got, string(v))
		// The same name nested, under a name with spaces.
		nested, _ := json.Marshal(map[string]any{" x ": map[string]int{n.name: i}})
		db.mustSet("nested", key, string(nested))
	}
	for i, n := range names {
		filter, _ := json.Marshal(map[string]any{"filter": map[string]int{n.name: i}})
		sort, _ := json.Marshal(map[string]any{"sort": map[string]int{n.name: -1}, "limit": 1})
		nestedFilter, _ := json.Marshal(map[string]any{"filter": map[string]int{" x ." + n.name: i}})
		key := fmt.Sprintf("k%02d", i)
		switch n.query {
		case "other":
			equalKeys(t, n.why+": filter", keysOf(db.page("names", filter).Items), nil)
			continue
		case "400":
			for _, body := range [][]byte{filter, sort, nestedFilter} {
				r := db.query("names", body)
				wantStatus(t, r, http.StatusBadRequest, "invalid_request")
				if !strings.Contains(string(r.body), "field") {
					t.Fatalf("%s: message %s does not name the field", n.why, r.body)
				}
			}
			continue
		}
		equalKeys(t, n.why+": filter", keysOf(db.page("names", filter).Items), []string{key})
		equalKeys(t, n.why+": sort", keysOf(db.page("names", sort).Items), []string{key})
		equalKeys(t, n.why+": nested filter", keysOf(db.page("nested", nestedFilter).Items), []string{key})
	}
}

// TestDocumentsNULStrings: strings holding NUL (which FerretDB on
// PostgreSQL cannot store in jsonb) and U+0001 are stored, matched exactly
// by filters and sorted by their bytes.
func TestDocumentsNULStrings(t *testing.T) {
	t.Parallel()
	db := newDBServer(t)
	// In byte order.
	strs := []string{"", "\x00", "\x00\x00", "\x00\x01", "\x00\xc3\xa9", "\x01", "\x01\x00", "\x01\x01", "\x02", "a", "a\x00", "a\x00b", "a\x01", "ab"}
	for i, s := range strs {
		v, _ := json.Marshal(map[string]string{"s": s})
		db.mustSet("nul", fmt.Sprintf("k%02d", len(strs)-i), string(v))
		got, _ := db.getValue("nul", fmt.Sprintf("k%02d", len(strs)-i))
		equal(t, fmt.Sprintf("%q: round trip", s), got, string(v))
	}
	var want []string
	for i, s := range strs {
		key := fmt.Sprintf("k%02d", len(strs)-i)
		want = append(want, key)
		body, _ := json.Marshal(map[string]any{"filter": map[string]string{"s": s}})
		equalKeys(t, fmt.Sprintf("filter %q", s), keysOf(db.page("nul", body).Items), []string{key})
	}
	equalKeys(t, "sort by s", keysOf(db.page("nul", `{"sort":{"s":1}}`).Items), want)
	// Keyset pages across them.
	var got []string
	body := `{"sort":{"s":1},"limit":3}`
	for {
		p := db.page("nul", body)
		got = append(got, keysOf(p.Items)...)
		if p.NextCursor == nil {
			break
		}
		body = fmt.Sprintf(`{"cursor":%q,"limit":3}`, *p.NextCursor)
	}
	equalKeys(t, "sort by s, in pages", got, want)
}
