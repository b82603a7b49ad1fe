package storage_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// Two replicas: the engine is stateless (design.md), so two engines on the
// same backends, with the same Config, must serve any request interchangeably.
// These tests alternate requests between two storage.New engines
// (cpodtest's NewReplica) on the same S3 bucket, MongoDB database and Redis
// (a cluster too, with CPODTEST_REDIS_ADDRS).

// replicaAppTTL is the replicas' AppCacheTTL.
const replicaAppTTL = 300 * time.Millisecond

// appChangeBound is how long a replica may take to see an app change made
// through another: its AppCacheTTL, plus slack for the requests themselves
// on a loaded machine.
const appChangeBound = replicaAppTTL + 700*time.Millisecond

// replicaPair starts two replicas with an app holding every scope and
// returns them with a token of that app.
func replicaPair(t *testing.T) (a, b *cpodtest.Server, tok string) {
	t.Helper()
	a = cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.AppCacheTTL = replicaAppTTL }))
	b = a.NewReplica(t)
	a.RegisterApp(t, "app-r", allScopes...)
	tok = a.Token(cpodtest.Claims{Tenant: "t1", App: "app-r", User: "u1", Scopes: allScopes})
	return a, b, tok
}

// alternate returns the replicas in turn, starting with the first.
func alternate(servers ...*cpodtest.Server) func() *cpodtest.Server {
	i := 0
	return func() *cpodtest.Server {
		s := servers[i%len(servers)]
		i++
		return s
	}
}

func TestReplicasDocumentCursor(t *testing.T) {
	t.Parallel()
	a, b, tok := replicaPair(t)
	next := alternate(a, b)
	var want []string
	for i := range 9 {
		k := fmt.Sprintf("d%02d", i)
		want = append(want, k)
		wantStatus(t, do(t, next(), "PUT", "/v1/storage/db/notes/"+k, tok, map[string]any{"n": i, "kind": "x"}), 200, "")
	}
	// Every page comes from the other replica than the one that minted its
	// cursor.
	var got []string
	body := map[string]any{"filter": map[string]any{"kind": "x"}, "sort": map[string]any{"n": 1}, "limit": 2}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the cursor never ends")
		}
		r := do(t, next(), "POST", "/v1/storage/db/notes/query", tok, body)
		wantStatus(t, r, 200, "")
		var p dbPage
		decode(t, r, &p)
		got = append(got, keysOf(p.Items)...)
		if p.NextCursor == nil {
			break
		}
		body["cursor"] = *p.NextCursor
	}
	equal(t, "keys across replicas", strings.Join(got, ","), strings.Join(want, ","))

	// The cursor is honoured because both replicas share Config.SigningKey;
	// an engine with another key refuses it, as it must.
	r := do(t, a, "POST", "/v1/storage/db/notes/query", tok, map[string]any{"filter": map[string]any{"kind": "x"}, "sort": map[string]any{"n": 1}, "limit": 2})
	var p dbPage
	decode(t, r, &p)
	if p.NextCursor == nil {
		t.Fatal("no cursor after a full page")
	}
	other := a.NewReplica(t, cpodtest.WithConfig(func(c *storage.Config) { c.SigningKey = []byte(strings.Repeat("k", 32)) }))
	wantStatus(t, do(t, other, "POST", "/v1/storage/db/notes/query", tok, map[string]any{"filter": map[string]any{"kind": "x"}, "sort": map[string]any{"n": 1}, "limit": 2, "cursor": *p.NextCursor}), 400, "invalid_cursor")
}

func TestReplicasFilesCursorAndSignedURL(t *testing.T) {
	t.Parallel()
	a, b, tok := replicaPair(t)
	next := alternate(a, b)
	var want []string
	for i := range 7 {
		k := fmt.Sprintf("dir/f%02d", i)
		want = append(want, k)
		wantStatus(t, do(t, next(), "PUT", "/v1/storage/files/"+k, tok, "content "+k), 200, "")
	}
	var got []string
	q := "/v1/storage/files?prefix=dir/&limit=2"
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the cursor never ends")
		}
		r := do(t, next(), "GET", q, tok, nil)
		wantStatus(t, r, 200, "")
		var l fileListing
		decode(t, r, &l)
		got = append(got, listKeys(l)...)
		if l.NextCursor == nil {
			break
		}
		q = "/v1/storage/files?prefix=dir/&limit=2&cursor=" + url.QueryEscape(*l.NextCursor)
	}
	equal(t, "files across replicas", strings.Join(got, ","), strings.Join(want, ","))

	// A signed URL minted on A downloads from B (behind a load balancer both
	// answer the same host; here only the host differs).
	signed := signURL(t, a, tok, map[string]any{"key": "dir/f03", "expiresIn": 60})
	if !strings.HasPrefix(signed, a.URL+"/") {
		t.Fatalf("signed URL %q is not on replica A (%s)", signed, a.URL)
	}
	onB := b.URL + strings.TrimPrefix(signed, a.URL)
	r := getURL(t, "GET", onB, nil)
	wantStatus(t, r, 200, "")
	equal(t, "download on B", string(r.body), "content dir/f03")
	// B checks it as strictly as A: a changed URL is refused.
	wantStatus(t, getURL(t, "GET", strings.Replace(onB, "f03", "f04", 1), nil), 403, "invalid_signature")
	// Expiry is on each replica's clock; they share one here.
	a.AdvanceClock(2 * time.Minute)
	wantStatus(t, getURL(t, "GET", onB, nil), 403, "expired")
}

// TestReplicasSignedURLRevokedOnOther: deleting the app through A's admin
// API ends its signed URLs on B within AppCacheTTL.
func TestReplicasSignedURLRevokedOnOther(t *testing.T) {
	t.Parallel()
	a, b, tok := replicaPair(t)
	wantStatus(t, do(t, a, "PUT", "/v1/storage/files/r.txt", tok, "r"), 200, "")
	onB := b.URL + strings.TrimPrefix(signURL(t, a, tok, map[string]any{"key": "r.txt"}), a.URL)
	wantStatus(t, getURL(t, "GET", onB, nil), 200, "") // B has the app cached now
	wantStatus(t, do(t, a, "DELETE", "/v1/oauth/apps/app-r", a.AdminToken, nil), 204, "")
	waitWithin(t, time.Now(), appChangeBound, "signed URL revoked on B", func() bool {
		return getURL(t, "GET", onB, nil).status == http.StatusForbidden
	})
	wantStatus(t, getURL(t, "GET", onB, nil), 403, "invalid_signature")
}

// waitWithin polls cond until it holds, failing the test if a poll that
// began more than limit after since still finds it false. A poll is timed
// from its start: a request sent within the limit and answered late on a
// busy machine may still have seen the old state.
func waitWithin(t *testing.T, since time.Time, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for {
		polled := time.Now()
		if cond() {
			return
		}
		if polled.Sub(since) > limit {
			t.Fatalf("%s: not within %v (a request sent %v after the change saw the old state)", what, limit, polled.Sub(since))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicasAppChanges: an app registered, changed or deleted through A's
// admin API is honoured by B within B's AppCacheTTL, although B cached the
// earlier state (an unknown client_id, the old scopes, the app).
func TestReplicasAppChanges(t *testing.T) {
	t.Parallel()
	a := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.AppCacheTTL = replicaAppTTL }))
	b := a.NewReplica(t)
	tok := a.Token(cpodtest.Claims{Tenant: "t1", App: "app-new", Scopes: allScopes})
	kv := "/v1/storage/kv/k"

	// B meets the client_id before it exists, and caches that.
	wantStatus(t, do(t, b, "GET", kv, tok, nil), 401, "invalid_token")
	wantStatus(t, do(t, a, "POST", "/v1/oauth/apps", a.AdminToken,
		`{"client_id":"app-new","name":"New","declared_scopes":["storage.private.read","storage.private.write"],"app_type":"service"}`), 201, "")
	waitWithin(t, time.Now(), appChangeBound, "registration seen by B", func() bool {
		return do(t, b, "PUT", kv, tok, `{"value":1}`).status == http.StatusNoContent
	})

	// B uses the app (cached with its write scope); A takes the write scope away.
	wantStatus(t, do(t, b, "PUT", kv, tok, `{"value":2}`), 204, "")
	wantStatus(t, do(t, a, "PATCH", "/v1/oauth/apps/app-new", a.AdminToken, `{"declared_scopes":["storage.private.read"]}`), 200, "")
	// A itself applies its own change at once.
	wantStatus(t, do(t, a, "PUT", kv, tok, `{"value":3}`), 403, "invalid_scope")
	waitWithin(t, time.Now(), appChangeBound, "scope change seen by B", func() bool {
		return do(t, b, "PUT", kv, tok, `{"value":4}`).status == http.StatusForbidden
	})
	wantStatus(t, do(t, b, "PUT", kv, tok, `{"value":5}`), 403, "invalid_scope")
	r := do(t, b, "GET", kv, tok, nil)
	wantStatus(t, r, 200, "")
	var v struct{ Value string }
	decode(t, r, &v)
	// B may still have taken a write while its cache held the old scopes
	// (within the TTL, as documented), never after it refused one.
	if v.Value != "2" && v.Value != "4" {
		t.Fatalf("value = %q, want 2, or 4 written within B's TTL", v.Value)
	}

	// Deleted through A: B refuses the token within its TTL.
	wantStatus(t, do(t, a, "DELETE", "/v1/oauth/apps/app-new", a.AdminToken, nil), 204, "")
	waitWithin(t, time.Now(), appChangeBound, "deletion seen by B", func() bool {
		return do(t, b, "GET", kv, tok, nil).status == http.StatusUnauthorized
	})
	wantStatus(t, do(t, b, "GET", kv, tok, nil), 401, "invalid_token")
}

// TestReplicasCountersAddUp: increments sent to both replicas at once all
// count, once each.
func TestReplicasCountersAddUp(t *testing.T) {
	t.Parallel()
	a, b, tok := replicaPair(t)
	const workers, each = 4, 25
	var mu sync.Mutex
	var seen []int64
	var wg sync.WaitGroup
	for w := range workers {
		srv := []*cpodtest.Server{a, b}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r := do(t, srv, "POST", "/v1/storage/kv/hits", tok, map[string]any{"by": 1})
				if r.status != 200 {
					t.Errorf("incr: status %d: %s", r.status, r.body)
					return
				}
				var v struct{ Value int64 }
				if err := json.Unmarshal(r.body, &v); err != nil {
					t.Errorf("incr: %s: %v", r.body, err)
					return
				}
				mu.Lock()
				seen = append(seen, v.Value)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.Sort(seen)
	for i, v := range seen {
		if v != int64(i+1) {
			t.Fatalf("increments answered %v, want 1..%d each once", seen, workers*each)
		}
	}
	for _, s := range []*cpodtest.Server{a, b} {
		r := do(t, s, "GET", "/v1/storage/kv/hits", tok, nil)
		var v struct{ Value string }
		decode(t, r, &v)
		equal(t, "counter on "+s.URL, v.Value, fmt.Sprint(workers*each))
	}
}
