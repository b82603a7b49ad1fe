package storage

import (
	"maps"
	"net/url"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// offlineEngine is an Engine whose backends are never contacted.
func offlineEngine(t testing.TB, change func(*Config)) *Engine {
	t.Helper()
	s3, err := minio.New("127.0.0.1:1", &minio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mongo.Connect() // no server is contacted
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		S3: s3, Bucket: "b", Mongo: mc.Database("d"), Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		Auth: AuthConfig{Keys: []Key{{Secret: []byte(strings.Repeat("k", 32))}}}, SigningKey: []byte(strings.Repeat("s", 32)),
	}
	if change != nil {
		change(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// matchReference is the router's matching as it was before routes were
// compiled (split the pattern and the path, a map per route tried): the
// compiled router must decide exactly as it does, with one deliberate
// difference. The old matching returned at the first parameter that was not
// valid percent-encoding, reporting the route as fitting even when a later
// literal segment differed ("/v1/storage/db/%zz/k" fit the pattern
// "/v1/storage/db/{collection}/query"). Here, as in the compiled router, a
// route fits only if all its segments do; the encoding error is then
// reported. ServeHTTP never saw the difference: it matches
// r.URL.EscapedPath(), which is always valid percent-encoding.
func matchReference(pattern, path string) (map[string]string, bool, error) {
	pattern, _, _ = strings.Cut(pattern, "?")
	ps := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	xs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	params := map[string]string{}
	var bad error
	for i, p := range ps {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "...}") {
			if i >= len(xs) {
				return nil, false, nil
			}
			v, err := url.PathUnescape(strings.Join(xs[i:], "/"))
			if err != nil || bad != nil {
				return nil, true, errorf(CodeInvalidRequest, "the path is not valid percent-encoding")
			}
			params[p[1:len(p)-4]] = v
			return params, true, nil
		}
		if i >= len(xs) {
			return nil, false, nil
		}
		if strings.HasPrefix(p, "{") {
			v, err := url.PathUnescape(xs[i])
			if err != nil {
				bad = errorf(CodeInvalidRequest, "the path is not valid percent-encoding")
			}
			params[p[1:len(p)-1]] = v
			continue
		}
		if p != xs[i] {
			return nil, false, nil
		}
	}
	if len(xs) != len(ps) {
		return nil, false, nil
	}
	if bad != nil {
		return nil, true, bad
	}
	return params, true, nil
}

// routeReference is the old ServeHTTP loop: the index of the route chosen
// (-1 for none), its parameters and error, and the Allow list.
func routeReference(routes []route, method, path string) (int, map[string]string, error, []string) {
	var allowed []string
	for i, rt := range routes {
		params, ok, err := matchReference(rt.pattern, path)
		if !ok {
			continue
		}
		if rt.method != method {
			allowed = append(allowed, rt.method)
			continue
		}
		return i, params, err, nil
	}
	return -1, nil, nil, allowed
}

// routeCompiled is the same decision through the compiled router.
func routeCompiled(e *Engine, method, path string) (int, map[string]string, error, []string) {
	var sp spans
	rt, _ := findRoute(e.router, method, path, &sp)
	if rt == nil {
		return -1, nil, nil, allowedMethods(e.router, path)
	}
	params, err := rt.params(path, &sp)
	for i := range e.router {
		if e.router[i] == rt {
			return i, params, err, nil
		}
	}
	panic("route not in the table")
}

var routerSeeds = []string{
	"", "/", "//", "/healthz", "/healthz/", "healthz", "/readyz", "/v1/openapi.json", "/v1/openapi.json/x",
	"/v1/oauth/apps", "/v1/oauth/apps/", "/v1/oauth/apps/a", "/v1/oauth/apps/a/b", "/v1/oauth/apps/%zz",
	"/v1/storage/kv", "/v1/storage/kv/", "/v1/storage/kv/k", "/v1/storage/kv/a/b/c", "/v1/storage/kv/a%2Fb",
	"/v1/storage/kv//", "/v1/storage/kv/%", "/v1/storage/kv/a%2", "/v1/storage/kv/%252e", "/v1/storage/kv/a+b",
	"/v1/storage/files", "/v1/storage/files/", "/v1/storage/files/a.txt", "/v1/storage/files/a/../b",
	"/v1/storage/files/%2e%2e/x", "/v1/storage/files/a//b", "/v1/storage/files/x/", "/v1/storage/files/%zz",
	"/v1/storage/signed-urls", "/v1/storage/signed/t1/apps/a/x", "/v1/storage/signed/", "/v1/storage/signed",
	"/v1/storage/db/c/k", "/v1/storage/db/c/query", "/v1/storage/db/c/batch", "/v1/storage/db/c", "/v1/storage/db/c/",
	"/v1/storage/db//k", "/v1/storage/db/c/k/x", "/v1/storage/db/%zz/k", "/v1/storage/db/c/%zz", "/v1/storage/db/a%2Fb/k",
	"/V1/storage/kv/k", "/v1/storage/KV/k", "/v1/storage/./kv/k", "/v1/storage/%6Bv/k", "/v1//storage/kv/k",
}

var routerMethods = []string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "get"}

func checkSameRoute(t *testing.T, e *Engine, method, path string) {
	t.Helper()
	wi, wp, werr, wallow := routeReference(e.routes, method, path)
	gi, gp, gerr, gallow := routeCompiled(e, method, path)
	if gi != wi || (gerr == nil) != (werr == nil) || !maps.Equal(gp, wp) || strings.Join(gallow, ",") != strings.Join(wallow, ",") {
		t.Fatalf("%s %q: compiled router chose route %d %v (err %v, allow %q); the reference chose %d %v (err %v, allow %q)",
			method, path, gi, gp, gerr, gallow, wi, wp, werr, wallow)
	}
}

// TestRoutesCompiledMatchReference: on every method and a corpus of paths
// (traversal, double encoding, bad escapes, empty and extra segments, case
// variants), the compiled router chooses the same route, with the same
// decoded parameters, the same percent-encoding error and the same Allow
// list as the reference matching.
func TestRoutesCompiledMatchReference(t *testing.T) {
	e := offlineEngine(t, nil)
	for _, path := range routerSeeds {
		for _, m := range routerMethods {
			checkSameRoute(t, e, m, path)
		}
	}
	// The one-off match (FuzzFilePath's) agrees too.
	for _, path := range routerSeeds {
		for _, rt := range e.routes {
			wp, wok, werr := matchReference(rt.pattern, path)
			gp, gok, gerr := match(rt.pattern, path)
			if gok != wok || (gerr == nil) != (werr == nil) || !maps.Equal(gp, wp) {
				t.Fatalf("match(%q, %q) = %v %v %v, want %v %v %v", rt.pattern, path, gp, gok, gerr, wp, wok, werr)
			}
		}
	}
}

// FuzzRouter checks the compiled router against the reference on any path.
//
//	go test -run='^$' -fuzz=FuzzRouter -fuzztime=20s .
func FuzzRouter(f *testing.F) {
	for _, p := range routerSeeds {
		f.Add("GET", p)
	}
	e := offlineEngine(f, nil)
	f.Fuzz(func(t *testing.T, method, path string) {
		checkSameRoute(t, e, method, path)
	})
}

// TestRoutesMatchWithoutAllocating: finding a route allocates nothing,
// whether one fits, the path fits only other methods, or none fits (every
// route tried); only the chosen route's parameters are allocated.
func TestRoutesMatchWithoutAllocating(t *testing.T) {
	e := offlineEngine(t, nil)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/storage/kv/k"},
		{"POST", "/v1/storage/db/c/query"},
		{"PATCH", "/v1/storage/kv/k"},
		{"GET", "/v1/storage/nothing/here/at/all"},
	} {
		var sp spans
		allocs := testing.AllocsPerRun(100, func() { findRoute(e.router, tc.method, tc.path, &sp) })
		if allocs != 0 {
			t.Errorf("%s %s: %v allocations to find the route, want 0", tc.method, tc.path, allocs)
		}
	}
}
