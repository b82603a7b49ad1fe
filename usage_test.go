package storage_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
	"github.com/prometheus/client_golang/prometheus"
)

// figures is one primitive's usage on the wire.
type figures struct {
	Bytes int64 `json:"bytes"`
	Count int64 `json:"count"`
}

// usageJSON is the usage answer; Quota only in the admin's.
type usageJSON struct {
	Files     figures `json:"files"`
	Documents figures `json:"documents"`
	KV        figures `json:"kv"`
	Quota     *struct {
		Files     figures `json:"files"`
		Documents figures `json:"documents"`
		KV        figures `json:"kv"`
	} `json:"quota"`
}

func tenantUsage(t testing.TB, srv *cpodtest.Server, tenant string) usageJSON {
	t.Helper()
	r := do(t, srv, "GET", "/v1/admin/tenants/"+tenant+"/usage", srv.AdminToken, nil)
	wantStatus(t, r, http.StatusOK, "")
	var u usageJSON
	decode(t, r, &u)
	return u
}

func recountUsage(t testing.TB, srv *cpodtest.Server, tenant string) usageJSON {
	t.Helper()
	r := do(t, srv, "POST", "/v1/admin/tenants/"+tenant+"/usage/recount", srv.AdminToken, nil)
	wantStatus(t, r, http.StatusOK, "")
	var u usageJSON
	decode(t, r, &u)
	return u
}

func myUsage(t testing.TB, srv *cpodtest.Server, tok, tier string) usageJSON {
	t.Helper()
	r := do(t, srv, "GET", "/v1/storage/usage?tier="+tier, tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	var u usageJSON
	decode(t, r, &u)
	if u.Quota != nil {
		t.Fatalf("GET /v1/storage/usage answered a quota: %s", r.body)
	}
	return u
}

func setQuota(t testing.TB, srv *cpodtest.Server, tenant string, body string) resp {
	t.Helper()
	return do(t, srv, "PUT", "/v1/admin/tenants/"+tenant+"/quota", srv.AdminToken, body)
}

func sameUsage(t testing.TB, what string, got, want usageJSON) {
	t.Helper()
	if got.Files != want.Files || got.Documents != want.Documents || got.KV != want.KV {
		t.Fatalf("%s: usage %+v %+v %+v, want %+v %+v %+v", what, got.Files, got.Documents, got.KV, want.Files, want.Documents, want.KV)
	}
}

// TestUsagePerLocation: each write counts at its location (private, user,
// shared) and in the tenant's totals, overwrites once, deletes back to
// zero; another tenant's writes never show.
func TestUsagePerLocation(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	srv.RegisterApp(t, "b", allScopes...)
	a := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	b := srv.Token(cpodtest.Claims{Tenant: "t1", App: "b", User: "u1", Scopes: allScopes})
	other := srv.Token(cpodtest.Claims{Tenant: "t10", App: "a", User: "u1", Scopes: allScopes})

	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/f.txt", a, "12345"), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/f.txt", a, "1234567890"), http.StatusOK, "") // overwrite
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k?tier=user", a, `{"a":1}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k?tier=shared", b, `{"value":"xyz"}`), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k?tier=shared", b, `{"value":"wxyz"}`), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/g.txt", other, "not t1's"), http.StatusOK, "")

	sameUsage(t, "a private", myUsage(t, srv, a, "private"), usageJSON{Files: figures{10, 1}})
	sameUsage(t, "b private", myUsage(t, srv, b, "private"), usageJSON{})
	sameUsage(t, "user (any app of u1)", myUsage(t, srv, b, "user"), usageJSON{Documents: figures{7, 1}})
	sameUsage(t, "shared", myUsage(t, srv, a, "shared"), usageJSON{KV: figures{4, 1}})
	want := usageJSON{Files: figures{10, 1}, Documents: figures{7, 1}, KV: figures{4, 1}}
	sameUsage(t, "tenant t1", tenantUsage(t, srv, "t1"), want)
	sameUsage(t, "tenant t1 recounted", recountUsage(t, srv, "t1"), want)
	sameUsage(t, "tenant t10", tenantUsage(t, srv, "t10"), usageJSON{Files: figures{8, 1}})

	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/f.txt", a, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/db/c/k?tier=user", a, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k?tier=shared", a, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k?tier=shared", a, nil), http.StatusNoContent, "") // missing: no change
	sameUsage(t, "t1 after the deletes", tenantUsage(t, srv, "t1"), usageJSON{})
	sameUsage(t, "t1 recounted after the deletes", recountUsage(t, srv, "t1"), usageJSON{})
}

// TestQuotaRoutes: PUT merges field by field, null removes, the answer is
// the effective quota; bad bodies are 400; only the admin token.
func TestQuotaRoutes(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	r := setQuota(t, srv, "t1", `{"files":{"bytes":1000},"kv":{"count":5}}`)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "PUT answer", strings.TrimSpace(string(r.body)), `{"files":{"bytes":1000,"count":0},"documents":{"bytes":0,"count":0},"kv":{"bytes":0,"count":5}}`)
	r = setQuota(t, srv, "t1", `{"files":{"count":3},"kv":null}`)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "PUT merge", strings.TrimSpace(string(r.body)), `{"files":{"bytes":1000,"count":3},"documents":{"bytes":0,"count":0},"kv":{"bytes":0,"count":0}}`)
	r = do(t, srv, "GET", "/v1/admin/tenants/t1/quota", srv.AdminToken, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "GET", strings.TrimSpace(string(r.body)), `{"files":{"bytes":1000,"count":3},"documents":{"bytes":0,"count":0},"kv":{"bytes":0,"count":0}}`)
	u := tenantUsage(t, srv, "t1")
	if u.Quota == nil || u.Quota.Files != (figures{1000, 3}) {
		t.Fatalf("admin usage's quota: %+v", u.Quota)
	}
	for _, bad := range []string{`{"files":{"bytes":-1}}`, `{"disk":{}}`, `{"files":{"size":1}}`, `{"files":1}`, `[]`, `null`, `{"files":{"bytes":1.5}}`, `{"files":{"bytes":"1"}}`} {
		wantStatus(t, setQuota(t, srv, "t1", bad), http.StatusBadRequest, "invalid_request")
	}
	for _, p := range []struct{ method, path string }{
		{"GET", "/v1/admin/tenants/t1/quota"}, {"PUT", "/v1/admin/tenants/t1/quota"},
		{"GET", "/v1/admin/tenants/t1/usage"}, {"POST", "/v1/admin/tenants/t1/usage/recount"},
	} {
		wantStatus(t, do(t, srv, p.method, p.path, "", `{}`), http.StatusUnauthorized, "invalid_token")
		wantStatus(t, do(t, srv, p.method, p.path, tok, `{}`), http.StatusUnauthorized, "invalid_token")
	}
	wantStatus(t, do(t, srv, "GET", "/v1/admin/tenants/%2E%2E/usage", srv.AdminToken, nil), http.StatusBadRequest, "invalid_request")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/usage", "", nil), http.StatusUnauthorized, "invalid_token")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/usage?tier=nope", tok, nil), http.StatusBadRequest, "invalid_request")
	ro := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: []string{"storage.private.write"}})
	wantStatus(t, do(t, srv, "GET", "/v1/storage/usage", ro, nil), http.StatusForbidden, "insufficient_scope")
	noUser := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", Scopes: allScopes})
	wantStatus(t, do(t, srv, "GET", "/v1/storage/usage?tier=user", noUser, nil), http.StatusForbidden, "user_required")
}

// TestQuotaExceeded fills each primitive's quota: the write over it is
// 507 quota_exceeded and stores nothing; an overwrite that does not grow
// and a delete still work; another tenant is unaffected.
func TestQuotaExceeded(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	other := srv.Token(cpodtest.Claims{Tenant: "t2", App: "a", User: "u1", Scopes: allScopes})
	wantStatus(t, setQuota(t, srv, "t1", `{"files":{"bytes":10,"count":2},"documents":{"count":2},"kv":{"bytes":8}}`), http.StatusOK, "")

	// files: bytes, with a Content-Length (refused before its body) and chunked.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/a", tok, "123456"), http.StatusOK, "")
	r := do(t, srv, "PUT", "/v1/storage/files/b", tok, "12345")
	wantStatus(t, r, http.StatusInsufficientStorage, "quota_exceeded")
	if r.header.Get("Retry-After") != "" {
		t.Fatalf("a 507 quota_exceeded carries Retry-After %q", r.header.Get("Retry-After"))
	}
	req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/b", io.MultiReader(strings.NewReader("12"), strings.NewReader("345")))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.ContentLength = -1
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	wantStatus(t, resp{res.StatusCode, res.Header, body}, http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/files/b", tok, nil), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/a", tok, "1234567890"), http.StatusOK, "") // overwrite within
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/b", tok, ""), http.StatusOK, "")           // count 2
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/c", tok, ""), http.StatusInsufficientStorage, "quota_exceeded")
	// documents: count.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/1", tok, `{}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/2", tok, `{}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/3", tok, `{}`), http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/db/c/batch", tok, `{"ops":[{"op":"set","key":"4","value":{}}]}`), http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/db/c/3", tok, nil), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/2", tok, `{"x":1}`), http.StatusOK, "") // overwrite at the count
	// kv: bytes.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"12345678"}`), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/j", tok, `{"value":"1"}`), http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/n", tok, nil), http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/j", tok, nil), http.StatusNotFound, "not_found")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"abcdefgh"}`), http.StatusNoContent, "") // same size

	// Another tenant writes on.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/c", other, "1234567890123"), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/3", other, `{}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/j", other, `{"value":"123456789"}`), http.StatusNoContent, "")

	// Deletes always work, and free room.
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k", tok, nil), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/j", tok, `{"value":"1"}`), http.StatusNoContent, "")
	sameUsage(t, "t1", tenantUsage(t, srv, "t1"), usageJSON{Files: figures{10, 2}, Documents: figures{2 + 7, 2}, KV: figures{1, 1}})
	sameUsage(t, "t1 recounted", recountUsage(t, srv, "t1"), usageJSON{Files: figures{10, 2}, Documents: figures{2 + 7, 2}, KV: figures{1, 1}})

	// Removing the limits lets the writes through.
	wantStatus(t, setQuota(t, srv, "t1", `{"files":null,"documents":null,"kv":null}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/3", tok, `{}`), http.StatusOK, "")
}

// TestUsageEqualsRecount is the property: after any mix of concurrent
// writes, overwrites, deletes, batches, patches, increments, TTL changes,
// chunked, multipart, upload-URL and failed uploads of a few keys, the
// usage kept equals a recount.
func TestUsageEqualsRecount(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	srv.RegisterApp(t, "b", allScopes...)
	toks := []string{
		srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes}),
		srv.Token(cpodtest.Claims{Tenant: "t1", App: "b", User: "u2", Scopes: allScopes}),
	}
	tiers := []string{"private", "user", "shared"}
	const workers, opsEach = 8, 60
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range opsEach {
				tok := toks[rng.IntN(len(toks))]
				q := "?tier=" + tiers[rng.IntN(len(tiers))]
				key := fmt.Sprint(rng.IntN(4))
				val := strings.Repeat("v", rng.IntN(40))
				switch rng.IntN(14) {
				case 0:
					do(t, srv, "PUT", "/v1/storage/files/"+key+q, tok, val)
				case 1:
					do(t, srv, "DELETE", "/v1/storage/files/"+key+q, tok, nil)
				case 2: // chunked
					req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/"+key+q, io.MultiReader(strings.NewReader(val), bytes.NewReader([]byte("tail"))))
					req.Header.Set("Authorization", "Bearer "+tok)
					req.ContentLength = -1
					if res, err := srv.HTTP.Client().Do(req); err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
				case 3: // a failed upload: the body ends before its Content-Length
					req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/"+key+q, strings.NewReader(val))
					req.Header.Set("Authorization", "Bearer "+tok)
					req.ContentLength = int64(len(val)) + 10
					if res, err := srv.HTTP.Client().Do(req); err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
				case 4:
					do(t, srv, "PUT", "/v1/storage/db/c/"+key+q, tok, map[string]string{"v": val})
				case 5:
					do(t, srv, "DELETE", "/v1/storage/db/c/"+key+q, tok, nil)
				case 6:
					do(t, srv, "PATCH", "/v1/storage/db/c/"+key+q, tok, map[string]string{"p": val})
				case 7:
					ops := []map[string]any{{"op": "set", "key": key, "value": map[string]string{"b": val}}, {"op": "delete", "key": fmt.Sprint(rng.IntN(4))}, {"op": "set", "key": fmt.Sprint(rng.IntN(4)), "value": val}}
					do(t, srv, "POST", "/v1/storage/db/c/batch"+q, tok, map[string]any{"ops": ops})
				case 8:
					body := map[string]any{"value": val}
					if rng.IntN(2) == 0 {
						body["ttl"] = 3600
					}
					do(t, srv, "PUT", "/v1/storage/kv/"+key+q, tok, body)
				case 9:
					do(t, srv, "DELETE", "/v1/storage/kv/"+key+q, tok, nil)
				case 10:
					do(t, srv, "POST", "/v1/storage/kv/n"+key+q, tok, map[string]int{"by": rng.IntN(2000) - 1000})
				case 12: // an upload URL, used once
					tier := tiers[rng.IntN(len(tiers))]
					r := do(t, srv, "POST", "/v1/storage/signed-urls", tok, map[string]any{"key": key, "tier": tier, "method": "PUT", "maxSize": 100})
					var out struct{ URL string }
					if json.Unmarshal(r.body, &out) == nil && out.URL != "" {
						if res, err := http.DefaultClient.Do(must(http.NewRequest("PUT", out.URL, strings.NewReader(val)))); err == nil {
							io.Copy(io.Discard, res.Body)
							res.Body.Close()
						}
					}
				case 13: // a multipart upload: chunked, over one part
					body := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), strings.NewReader(val))
					req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/"+key+q, body)
					req.Header.Set("Authorization", "Bearer "+tok)
					req.ContentLength = -1
					if res, err := srv.HTTP.Client().Do(req); err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
				case 11:
					ttl := any(nil)
					if rng.IntN(2) == 0 {
						ttl = 60 + rng.IntN(100)
					}
					do(t, srv, "PATCH", "/v1/storage/kv/"+key+q, tok, map[string]any{"ttl": ttl})
				}
			}
		}()
	}
	wg.Wait()
	kept := tenantUsage(t, srv, "t1")
	counted := recountUsage(t, srv, "t1")
	sameUsage(t, "usage kept vs recounted", kept, counted)
	if kept.Files.Count+kept.Documents.Count+kept.KV.Count == 0 {
		t.Fatal("the property ran on nothing: no data left")
	}
	// Per location too: each tier of each identity against a recount.
	for _, tok := range toks {
		for _, tier := range tiers {
			before := myUsage(t, srv, tok, tier)
			recountUsage(t, srv, "t1")
			sameUsage(t, "location "+tier, myUsage(t, srv, tok, tier), before)
		}
	}
	j, _ := json.Marshal(kept)
	t.Logf("usage after %d ops: %s", workers*opsEach, j)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestUsageAfterErase: the admin erase routes bring usage to zero.
func TestUsageAfterErase(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	for _, o := range []owner{{"t1", "a", "u1", "private"}, {"t1", "a", "u1", "user"}, {"t1", "a", "u1", "shared"}} {
		o.seed(t, srv)
	}
	tok := owner{"t1", "a", "u1", ""}.token(srv)
	wantStatus(t, do(t, srv, "DELETE", "/v1/admin/tenants/t1/apps/a/data", srv.AdminToken, nil), http.StatusOK, "")
	sameUsage(t, "private after the app's erase", myUsage(t, srv, tok, "private"), usageJSON{})
	if u := myUsage(t, srv, tok, "user"); u.Files.Count != 1 || u.Documents.Count != 1 || u.KV.Count != 1 {
		t.Fatalf("user tier after the app's erase: %+v", u)
	}
	wantStatus(t, do(t, srv, "DELETE", "/v1/admin/tenants/t1/users/u1/data", srv.AdminToken, nil), http.StatusOK, "")
	sameUsage(t, "user after the user's erase", myUsage(t, srv, tok, "user"), usageJSON{})
	wantStatus(t, do(t, srv, "DELETE", "/v1/admin/tenants/t1", srv.AdminToken, nil), http.StatusOK, "")
	sameUsage(t, "t1 after the tenant's erase", tenantUsage(t, srv, "t1"), usageJSON{})
	sameUsage(t, "t1 recounted", recountUsage(t, srv, "t1"), usageJSON{})
}

// TestQuotaOvershoot: 64 writers at once against a count quota of 16 (kv
// and documents, each writer its own key) on one server: every write is
// admitted or refused with 507 quota_exceeded, none past the limit (the
// overshoot README allows comes from other replicas' writes in flight),
// and usage counts exactly those that got in.
func TestQuotaOvershoot(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	const limit, writers = 16, 64
	wantStatus(t, setQuota(t, srv, "t1", fmt.Sprintf(`{"documents":{"count":%d},"kv":{"count":%d}}`, limit, limit)), http.StatusOK, "")
	for _, p := range []struct{ what, path, body string }{
		{"kv", "/v1/storage/kv/k", `{"value":"v"}`},
		{"documents", "/v1/storage/db/c/k", `{"v":1}`},
	} {
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		start := make(chan struct{})
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := do(t, srv, "PUT", fmt.Sprint(p.path, i), tok, p.body)
				if r.status == http.StatusInsufficientStorage {
					wantStatus(t, r, r.status, "quota_exceeded")
				}
				mu.Lock()
				codes[r.status]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		in := codes[http.StatusOK] + codes[http.StatusNoContent]
		if in+codes[http.StatusInsufficientStorage] != writers {
			t.Fatalf("%s: answers %v, want only successes and 507", p.what, codes)
		}
		// One server: the writes it admits are held against each other, so
		// none gets past the limit (a write counted while another's usage
		// read was on its way counts twice for it: it may refuse early).
		if in > limit || in < limit/2 {
			t.Fatalf("%s: %d writes got in against a limit of %d with %d writers", p.what, in, limit, writers)
		}
		u := tenantUsage(t, srv, "t1")
		got := u.KV.Count
		if p.what == "documents" {
			got = u.Documents.Count
		}
		if got != int64(in) {
			t.Fatalf("%s: usage counts %d, %d got in", p.what, got, in)
		}
		t.Logf("%s: %d of %d writers got in against a limit of %d: overshoot %d", p.what, in, writers, limit, in-limit)
	}
}

// TestQuotaAtTheLimit: at a bytes limit, a PATCH that shrinks a document
// and an INCR whose text keeps its length still work (they add nothing);
// growing ones are refused.
func TestQuotaAtTheLimit(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k", tok, `{"a":"0123456789","b":1}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/n", tok, `{"value":"5"}`), http.StatusNoContent, "")
	u := tenantUsage(t, srv, "t1")
	wantStatus(t, setQuota(t, srv, "t1", fmt.Sprintf(`{"documents":{"bytes":%d},"kv":{"bytes":%d}}`, u.Documents.Bytes, u.KV.Bytes)), http.StatusOK, "")
	patch := func(body string) resp {
		req, _ := http.NewRequest("PATCH", srv.URL+"/v1/storage/db/c/k", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/merge-patch+json")
		res, err := srv.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return resp{res.StatusCode, res.Header, b}
	}
	wantStatus(t, patch(`{"b":2,"c":3}`), http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, patch(`{"a":null}`), http.StatusOK, "")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/n", tok, `{"by":4}`), http.StatusOK, "") // 9
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/n", tok, `{"by":1}`), http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/m", tok, nil), http.StatusInsufficientStorage, "quota_exceeded")
	sameUsage(t, "t1", tenantUsage(t, srv, "t1"), recountUsage(t, srv, "t1"))
}

// TestUsageKVExpiry: a kv value whose TTL ends leaves usage without any
// write of its own: on Redis at the tenant's next usage read or write, on
// SQLite when the purge deletes it (within kvPurgeIdle of its expiry; the
// test waits up to 15 s).
func TestUsageKVExpiry(t *testing.T) {
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes, TTL: time.Hour})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/short", tok, `{"value":"gone soon","ttl":2}`), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/long", tok, `{"value":"stays","ttl":3600}`), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/moved", tok, `{"value":"ttl taken off","ttl":2}`), http.StatusNoContent, "")
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/moved", tok, `{"ttl":null}`), http.StatusNoContent, "")
	sameUsage(t, "before", myUsage(t, srv, tok, "private"), usageJSON{KV: figures{9 + 5 + 13, 3}})
	srv.FastForward(3 * time.Second)
	want := usageJSON{KV: figures{5 + 13, 2}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		u := myUsage(t, srv, tok, "private")
		if u.KV == want.KV {
			break
		}
		if time.Now().After(deadline) {
			sameUsage(t, "after the TTL ended", u, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sameUsage(t, "the tenant's", tenantUsage(t, srv, "t1"), want)
	sameUsage(t, "recounted", recountUsage(t, srv, "t1"), want)
}

// TestQuotaMetrics: each 507 quota_exceeded counts once in
// cpod_storage_quota_rejections_total, by primitive and nothing else.
func TestQuotaMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Metrics = reg
		c.DefaultQuota = storage.Quota{Files: storage.Limit{Count: 1}, KV: storage.Limit{Bytes: 3}}
	}))
	srv.RegisterApp(t, "a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "a", User: "u1", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/a", tok, "x"), http.StatusOK, "")
	for range 2 {
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/b", tok, "x"), http.StatusInsufficientStorage, "quota_exceeded")
	}
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"four"}`), http.StatusInsufficientStorage, "quota_exceeded")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k", tok, `{}`), http.StatusOK, "") // no documents limit
	got := series(t, reg, "cpod_storage_quota_rejections_total")
	if len(got) != 2 {
		t.Fatalf("cpod_storage_quota_rejections_total has series %v, want files and kv", got)
	}
	wantSeries(t, got, "primitive=files", 2)
	wantSeries(t, got, "primitive=kv", 1)
}
