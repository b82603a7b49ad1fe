package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

type theme struct {
	Mode     string `json:"mode"`
	Accent   string `json:"accent"`
	FontSize int    `json:"fontSize"`
}

func TestDBSetGetDelete(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireDocuments(t, c)
	ctx := context.Background()
	prefs := c.Storage.DB.Collection("preferences", nil)

	want := theme{Mode: "dark", Accent: "purple", FontSize: 14}
	must(t, "Set", prefs.Set(ctx, "theme", want))
	var got theme
	found, err := prefs.Get(ctx, "theme", &got)
	if err != nil || !found || got != want {
		t.Errorf("Get = %+v, %v, %v; want %+v", got, found, err, want)
	}

	// A missing document is found == false, not an error, and dst is left
	// alone.
	keep := theme{Mode: "unchanged"}
	found, err = prefs.Get(ctx, "does-not-exist", &keep)
	if err != nil || found || keep.Mode != "unchanged" {
		t.Errorf("Get(missing) = %v, %v, dst %+v; want false, nil, untouched", found, err, keep)
	}
	if found, err := prefs.Get(ctx, "theme", nil); err != nil || !found {
		t.Errorf("Get(theme, nil) = %v, %v; want true", found, err)
	}

	// JSON text round-trips exactly: field order and int64 precision.
	raw := json.RawMessage(`{"z":1,"a":{"y":[1,2,{"b":null,"a":true}],"x":"s"},"big":9223372036854775807,"neg":-9223372036854775808,"f":1.5}`)
	must(t, "Set raw", prefs.Set(ctx, "raw", raw))
	var back json.RawMessage
	if _, err := prefs.Get(ctx, "raw", &back); err != nil || string(back) != string(raw) {
		t.Errorf("raw round trip = %s, %v\nwant %s", back, err, raw)
	}
	var n struct{ Big int64 }
	if _, err := prefs.Get(ctx, "raw", &n); err != nil || n.Big != math.MaxInt64 {
		t.Errorf("int64 = %d, %v", n.Big, err)
	}
	for _, v := range []any{"a string", 42, nil, []int{1, 2}, true} {
		must(t, "Set scalar", prefs.Set(ctx, "scalar", v))
		var b json.RawMessage
		want, _ := json.Marshal(v)
		if _, err := prefs.Get(ctx, "scalar", &b); err != nil || string(b) != string(want) {
			t.Errorf("Set(%#v) then Get = %s, %v", v, b, err)
		}
	}

	// Keys are opaque: a "/" or "." is just a character.
	for i, k := range []string{"a/b", "a%2Fb", ".", "..", "a b?c#d", "ü€😀", "query", "batch"} {
		must(t, fmt.Sprintf("Set(%q)", k), prefs.Set(ctx, k, i))
	}
	for i, k := range []string{"a/b", "a%2Fb", ".", "..", "a b?c#d", "ü€😀", "query", "batch"} {
		var got int
		if found, err := prefs.Get(ctx, k, &got); err != nil || !found || got != i {
			t.Errorf("Get(%q) = %d, %v, %v; want %d", k, got, found, err, i)
		}
	}

	must(t, "Delete", prefs.Delete(ctx, "theme"))
	if found, err := prefs.Get(ctx, "theme", nil); err != nil || found {
		t.Errorf("Get after Delete = %v, %v", found, err)
	}
	must(t, "Delete(missing)", prefs.Delete(ctx, "theme"))

	// Decoding into the wrong type is reported with found == true.
	must(t, "Set", prefs.Set(ctx, "n", 1))
	var s string
	if found, err := prefs.Get(ctx, "n", &s); err == nil || !found {
		t.Errorf("Get(number into string) = %v, %v; want found and a decoding error", found, err)
	}
}

func TestDBInvalid(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireDocuments(t, c)
	ctx := context.Background()
	for _, name := range []string{"-dash", "has space", "a/b", strings.Repeat("c", 65), "."} {
		wantErr(t, fmt.Sprintf("collection %q", name), c.Storage.DB.Collection(name, nil).Set(ctx, "k", 1), client.ErrInvalidRequest)
	}
	col := c.Storage.DB.Collection("c", nil)
	wantErr(t, "513-byte key", col.Set(ctx, strings.Repeat("k", 513), 1), client.ErrInvalidRequest)
	wantErr(t, "control character", col.Set(ctx, "a\x00b", 1), client.ErrInvalidRequest)
	wantErr(t, "value over 1 MiB", col.Set(ctx, "big", strings.Repeat("x", 1<<20)), client.ErrTooLarge)
	deep := strings.Repeat("[", 40) + strings.Repeat("]", 40)
	wantErr(t, "depth 40", col.Set(ctx, "deep", json.RawMessage(deep)), client.ErrInvalidRequest)
	_, err := col.Query(ctx, client.QueryOptions{Filter: map[string]any{"n": map[string]any{"$gt": 1}}})
	wantErr(t, "operator filter", err, client.ErrInvalidRequest)
	_, err = col.Query(ctx, client.QueryOptions{Filter: map[string]any{"tags": []string{"a"}}})
	wantErr(t, "array filter", err, client.ErrInvalidRequest)
	_, err = col.Query(ctx, client.QueryOptions{Limit: 1001})
	wantErr(t, "limit 1001", err, client.ErrInvalidRequest)
}

type session struct {
	Status    string `json:"status"`
	Plan      string `json:"plan"`
	CreatedAt int    `json:"createdAt"`
}

func TestDBQuery(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	requireDocuments(t, c)
	ctx := context.Background()
	sessions := c.Storage.DB.Collection("sessions", nil)

	// 30 sessions: s00..s29; active when i%3 != 0; pro for s00..s09 and
	// s20..s29; createdAt i%10, so sorting by it has ties (broken by key).
	pro := func(i int) bool { return i/10 != 1 }
	for i := range 30 {
		s := session{Status: "idle", Plan: "free", CreatedAt: i % 10}
		if i%3 != 0 {
			s.Status = "active"
		}
		if pro(i) {
			s.Plan = "pro"
		}
		must(t, "Set", sessions.Set(ctx, fmt.Sprintf("s%02d", i), s))
	}

	// The seed's query: active pro sessions, newest first, 20 a page.
	var want []string
	for ca := 9; ca >= 0; ca-- {
		for i := range 30 {
			if i%10 == ca && i%3 != 0 && pro(i) {
				want = append(want, fmt.Sprintf("s%02d", i))
			}
		}
	}
	got := queryAll(t, sessions, client.QueryOptions{
		Filter: map[string]any{"status": "active", "plan": "pro"},
		Sort:   []client.SortField{client.Desc("createdAt")},
		Limit:  3,
	})
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("active pro by createdAt desc:\n got %v\nwant %v", got, want)
	}

	// Sort fields apply in the order given.
	got = queryAll(t, sessions, client.QueryOptions{
		Sort:  []client.SortField{client.Asc("plan"), client.Desc("createdAt")},
		Limit: 7,
	})
	want = nil
	for _, plan := range []string{"free", "pro"} {
		for ca := 9; ca >= 0; ca-- {
			for i := range 30 {
				if i%10 == ca && (plan == "pro") == pro(i) {
					want = append(want, fmt.Sprintf("s%02d", i))
				}
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("plan asc, createdAt desc:\n got %v\nwant %v", got, want)
	}
	got = queryAll(t, sessions, client.QueryOptions{
		Sort:  []client.SortField{client.Desc("createdAt"), client.Asc("plan")},
		Limit: 7,
	})
	if strings.Join(got[:4], ",") != "s19,s09,s29,s18" {
		t.Errorf("createdAt desc, plan asc starts %v, want [s19 s09 s29 s18 ...]", got[:4])
	}

	// The default order is by key; the default limit is 20.
	page, err := sessions.Query(ctx, client.QueryOptions{})
	must(t, "Query", err)
	if len(page.Items) != 20 || page.Items[0].Key != "s00" || page.Items[19].Key != "s19" || page.NextCursor == "" {
		t.Errorf("default page: %d items from %s, next %q", len(page.Items), page.Items[0].Key, page.NextCursor)
	}
	var first session
	must(t, "Decode", page.Items[0].Decode(&first))
	if first != (session{Status: "idle", Plan: "pro", CreatedAt: 0}) {
		t.Errorf("s00 = %+v", first)
	}

	// As in the seed's page 2, a filter sent with a cursor is ignored: the
	// cursor carries its query.
	p1, err := sessions.Query(ctx, client.QueryOptions{Filter: map[string]any{"status": "active", "plan": "pro"}, Limit: 2})
	must(t, "page 1", err)
	p2, err := sessions.Query(ctx, client.QueryOptions{Filter: map[string]any{"status": "active"}, Cursor: p1.NextCursor, Limit: 2})
	must(t, "page 2", err)
	for _, it := range p2.Items {
		var s session
		must(t, "Decode", it.Decode(&s))
		if s.Plan != "pro" || s.Status != "active" {
			t.Errorf("page 2 item %s = %+v: the cursor's filter was not kept", it.Key, s)
		}
	}

	// A filter on a missing value, on null, on a number and a boolean.
	must(t, "Set", sessions.Set(ctx, "x1", map[string]any{"flag": true, "n": 1.5, "nil": nil}))
	// null equals null and also a missing field (the order of the sort puts
	// both together, as MongoDB does), so it is combined with flag here.
	for _, f := range []map[string]any{{"flag": true}, {"n": 1.5}, {"nil": nil, "flag": true}} {
		r, err := sessions.Query(ctx, client.QueryOptions{Filter: f})
		if err != nil || len(r.Items) != 1 || r.Items[0].Key != "x1" {
			t.Errorf("filter %v = %+v, %v; want [x1]", f, r.Items, err)
		}
	}
	nulls, err := sessions.Query(ctx, client.QueryOptions{Filter: map[string]any{"nil": nil}, Limit: 1000})
	must(t, "null filter", err)
	if n := len(nulls.Items); n < 2 || nulls.Items[n-1].Key != "x1" {
		t.Errorf("filter nil: null = %d items ending %v; want the documents without the field and x1", n, nulls.Items[n-1].Key)
	}
	empty, err := sessions.Query(ctx, client.QueryOptions{Filter: map[string]any{"status": "gone"}})
	if err != nil || len(empty.Items) != 0 || empty.NextCursor != "" {
		t.Errorf("no match = %+v, %v", empty, err)
	}

	// A tampered cursor, or one from another collection or app.
	tampered := p1.NextCursor[:len(p1.NextCursor)-2] + "xx"
	if tampered == p1.NextCursor {
		tampered = p1.NextCursor + "x"
	}
	_, err = sessions.Query(ctx, client.QueryOptions{Cursor: tampered})
	wantErr(t, "tampered cursor", err, client.ErrInvalidCursor)
	_, err = c.Storage.DB.Collection("other", nil).Query(ctx, client.QueryOptions{Cursor: p1.NextCursor})
	wantErr(t, "cursor of another collection", err, client.ErrInvalidCursor)
	other := alice
	other.App = "app-b"
	_, err = srv.Client(other).Storage.DB.Collection("sessions", nil).Query(ctx, client.QueryOptions{Cursor: p1.NextCursor})
	wantErr(t, "cursor of another app", err, client.ErrInvalidCursor)
}

// queryAll pages through a query and returns the keys in order.
func queryAll(t *testing.T, col *client.Collection, q client.QueryOptions) []string {
	t.Helper()
	var keys []string
	for pages := 0; ; pages++ {
		r, err := col.Query(context.Background(), q)
		must(t, "Query", err)
		if q.Limit > 0 && len(r.Items) > q.Limit {
			t.Fatalf("page of %d items with limit %d", len(r.Items), q.Limit)
		}
		for _, it := range r.Items {
			keys = append(keys, it.Key)
		}
		if r.NextCursor == "" {
			return keys
		}
		if pages > 100 {
			t.Fatal("query does not end")
		}
		q.Cursor = r.NextCursor
	}
}

func TestDBBatch(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireDocuments(t, c)
	ctx := context.Background()
	cache := c.Storage.DB.Collection("cache", nil)
	must(t, "Set", cache.Set(ctx, "user:999", "stale"))

	res, err := cache.Batch(ctx, []client.BatchOp{
		client.SetOp("user:123", map[string]any{"name": "Alice", "plan": "pro"}),
		client.SetOp("user:456", map[string]any{"name": "Bob", "plan": "free"}),
		client.DeleteOp("user:999"),
	})
	must(t, "Batch", err)
	if res.Succeeded != 3 || res.Failed != 0 || len(res.Results) != 3 {
		t.Fatalf("Batch = %+v, want 3 succeeded", res)
	}
	for i, want := range []struct{ key, op string }{{"user:123", "set"}, {"user:456", "set"}, {"user:999", "delete"}} {
		if r := res.Results[i]; r.Key != want.key || r.Op != want.op || !r.OK || r.Error != nil {
			t.Errorf("results[%d] = %+v", i, r)
		}
	}
	var u struct{ Name string }
	if found, err := cache.Get(ctx, "user:123", &u); err != nil || !found || u.Name != "Alice" {
		t.Errorf("user:123 = %+v, %v, %v", u, found, err)
	}
	if found, err := cache.Get(ctx, "user:999", nil); err != nil || found {
		t.Errorf("user:999 after delete: %v, %v", found, err)
	}

	// Each op stands alone: a bad one fails, the next still applies, in order.
	res, err = cache.Batch(ctx, []client.BatchOp{
		client.SetOp("k", 1),
		client.SetOp(strings.Repeat("k", 513), 1),
		client.SetOp("k", 2),
		client.DeleteOp(""),
	})
	must(t, "Batch with failures", err)
	if res.Succeeded != 2 || res.Failed != 2 || len(res.Results) != 4 {
		t.Fatalf("Batch = %+v, want 2 succeeded, 2 failed", res)
	}
	if r := res.Results[1]; r.OK || !errorsIsInvalid(r.Error) {
		t.Errorf("results[1] = %+v, want an invalid_request failure", r)
	}
	var k int
	if _, err := cache.Get(ctx, "k", &k); err != nil || k != 2 {
		t.Errorf("k = %d, %v; want 2 (ops in order)", k, err)
	}

	_, err = cache.Batch(ctx, make([]client.BatchOp, 501))
	if err == nil {
		t.Error("a batch of 501 ops succeeded")
	}
	res, err = cache.Batch(ctx, nil)
	if err != nil || res.Succeeded != 0 || res.Failed != 0 {
		t.Errorf("empty batch = %+v, %v", res, err)
	}
}

func errorsIsInvalid(e *client.Error) bool {
	return e != nil && e.Is(client.ErrInvalidRequest)
}

func TestDBTiers(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	requireDocuments(t, c)
	ctx := context.Background()
	tiers := []client.Tier{client.TierPrivate, client.TierUser, client.TierShared}
	for _, tier := range tiers {
		must(t, "Set", c.Storage.DB.Collection("preferences", &client.CollectionOptions{Tier: tier}).Set(ctx, "layout", string(tier)))
	}
	for _, tier := range tiers {
		var got string
		if _, err := c.Storage.DB.Collection("preferences", &client.CollectionOptions{Tier: tier}).Get(ctx, "layout", &got); err != nil || got != string(tier) {
			t.Errorf("tier %s: %q, %v", tier, got, err)
		}
		r, err := c.Storage.DB.Collection("preferences", &client.CollectionOptions{Tier: tier}).Query(ctx, client.QueryOptions{})
		if err != nil || len(r.Items) != 1 {
			t.Errorf("tier %s: query = %+v, %v; want its one document", tier, r.Items, err)
		}
	}
	bob := alice
	bob.User = "bob"
	var got string
	found, err := srv.Client(bob).Storage.DB.Collection("preferences", &client.CollectionOptions{Tier: client.TierUser}).Get(ctx, "layout", &got)
	if err != nil || found {
		t.Errorf("bob reads alice's user document: %q, %v, %v", got, found, err)
	}
	service := srv.Client(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	_, err = service.Storage.DB.Collection("preferences", &client.CollectionOptions{Tier: client.TierUser}).Get(ctx, "layout", nil)
	wantErr(t, "user tier without a user", err, client.ErrUserRequired)
}
