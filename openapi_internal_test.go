package storage

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestOpenAPICoversEveryRoute: every route of the route table is an
// operation of openapi.json, and every operation is a route, with the same
// rest-of-path parameter. The black-box tests validate what they exchange;
// this catches a route that no test calls.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	s3, err := minio.New("127.0.0.1:1", &minio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mongo.Connect() // no server is contacted
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{
		S3: s3, Bucket: "b", Mongo: mc.Database("d"), Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}),
		Auth: AuthConfig{Keys: []Key{{Secret: []byte(strings.Repeat("k", 32))}}}, SigningKey: []byte(strings.Repeat("s", 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage
		Components struct {
			Parameters map[string]openAPIParam
		}
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]*\}`)
	// The document's operations as "METHOD /path/{}" (parameter names aside),
	// and the rest-of-path parameter's position.
	documented := map[string]bool{}
	restOfPath := map[string]bool{}
	// The query parameters each operation documents, sorted and joined by
	// '&' like a route pattern's declared names.
	queryOf := map[string]string{}
	queryNames := func(raws ...json.RawMessage) []string {
		var names []string
		for _, raw := range raws {
			var ps []openAPIParam
			_ = json.Unmarshal(raw, &ps)
			for _, p := range ps {
				if p.Ref != "" {
					p = doc.Components.Parameters[p.Ref[strings.LastIndexByte(p.Ref, '/')+1:]]
				}
				if p.In == "query" {
					names = append(names, p.Name)
				}
			}
		}
		slices.Sort(names)
		return names
	}
	for path, item := range doc.Paths {
		norm := param.ReplaceAllString(path, "{}")
		for m, raw := range item {
			switch m {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				key := strings.ToUpper(m) + " " + norm
				documented[key] = true
				var op struct{ Parameters json.RawMessage }
				_ = json.Unmarshal(raw, &op)
				queryOf[key] = strings.Join(queryNames(item["parameters"], op.Parameters), "&")
			case "x-cpod-rest-of-path":
				var name string
				_ = json.Unmarshal(raw, &name)
				if !strings.HasSuffix(path, "/{"+name+"}") {
					t.Errorf("%s: x-cpod-rest-of-path %q is not its last segment", path, name)
				}
				restOfPath[norm] = true
			}
		}
	}
	served := map[string]bool{}
	for _, rt := range e.routes {
		// A pattern declares its query parameters after '?' (see route).
		pattern, declared, _ := strings.Cut(rt.pattern, "?")
		names := strings.Split(declared, "&")
		if declared == "" {
			names = nil
		}
		slices.Sort(names)
		norm := param.ReplaceAllString(pattern, "{}")
		key := rt.method + " " + norm
		served[key] = true
		if !documented[key] {
			t.Errorf("route %s %s is not in openapi.json", rt.method, pattern)
			continue
		}
		if got := strings.Join(names, "&"); got != queryOf[key] {
			t.Errorf("route %s %s takes the query parameters %q, openapi.json documents %q", rt.method, pattern, got, queryOf[key])
		}
		if strings.HasSuffix(pattern, "...}") != restOfPath[norm] {
			t.Errorf("route %s: the engine takes the rest of the path = %v, openapi.json says %v", pattern, strings.HasSuffix(pattern, "...}"), restOfPath[norm])
		}
	}
	for key := range documented {
		if !served[key] {
			t.Errorf("openapi.json documents %s, which no route serves", key)
		}
	}
	if !slices.ContainsFunc(e.routes, func(r route) bool { return r.pattern == "/v1/openapi.json" }) {
		t.Error("GET /v1/openapi.json is not routed")
	}
}

// openAPIParam is a parameter object of openapi.json, or a $ref to one.
type openAPIParam struct {
	Ref  string `json:"$ref"`
	Name string
	In   string
}
