package openapicheck_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/internal/openapicheck"
)

func TestDocumentIsValidOpenAPI(t *testing.T) {
	if _, err := openapicheck.New(storage.OpenAPIDocument()); err != nil {
		t.Fatal(err)
	}
}

// TestDocumentLintRules keeps, without Node, the rules that broke the
// standard linters (.ci/run runs Redocly's): in OpenAPI 3.0 "nullable"
// needs a "type" beside it (Redocly's nullable-type-sibling; Spectral then
// failed to check every example that reached such a schema), and the
// licence names Apache-2.0 with its URL.
func TestDocumentLintRules(t *testing.T) {
	var doc any
	if err := json.Unmarshal(storage.OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if v["nullable"] == true && v["type"] == nil {
				t.Errorf("%s: nullable without type", at)
			}
			for k, e := range v {
				walk(e, at+"/"+k)
			}
		case []any:
			for i, e := range v {
				walk(e, fmt.Sprintf("%s/%d", at, i))
			}
		}
	}
	walk(doc, "#")
	license, _ := doc.(map[string]any)["info"].(map[string]any)["license"].(map[string]any)
	if license["name"] != "Apache-2.0" || license["url"] != "https://www.apache.org/licenses/LICENSE-2.0" {
		t.Errorf("info.license = %v, want Apache-2.0 with its URL", license)
	}
}

// deepArray is 96 nested arrays with a null at the bottom.
var deepArray = strings.Repeat("[", 96) + "null" + strings.Repeat("]", 96)

// answer is what a fake engine answers.
type answer struct {
	status int
	header map[string]string
	body   string
}

// TestCatchesDrift: a fake engine that answers outside the document, or
// accepts a request the document does not describe, is reported; one that
// keeps to it is not.
func TestCatchesDrift(t *testing.T) {
	c, err := openapicheck.New(storage.OpenAPIDocument())
	if err != nil {
		t.Fatal(err)
	}
	const bearer = "Bearer x.y.z"
	jsonH := map[string]string{"Content-Type": "application/json", "X-Request-Id": "r1"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	cases := []struct {
		name         string
		method, path string
		auth         string
		reqBody      string
		answer       answer
		wantReport   string // "" = no report
	}{
		// Exchanges that keep to the document.
		{"healthz", "GET", "/healthz", "", "", answer{200, jsonH, `{"status":"ok"}`}, ""},
		{"kv get", "GET", "/v1/storage/kv/a/b?tier=user", bearer, "", answer{200, jsonH, `{"value":"1","ttl":-1}`}, ""},
		{"kv set", "PUT", "/v1/storage/kv/k", bearer, `{"value":{"a":1},"ttl":60}`, answer{204, map[string]string{"X-Request-Id": "r1"}, ""}, ""},
		{"document named query", "PUT", "/v1/storage/db/c/query", bearer, `[1,2]`, answer{200, with(jsonH, "ETag", `"v1"`), `{"key":"query","value":[1,2]}`}, ""},
		{"document without its ETag", "PUT", "/v1/storage/db/c/k", bearer, `[1,2]`, answer{200, jsonH, `{"key":"k","value":[1,2]}`}, "ETag"},
		{"malformed request refused", "PUT", "/v1/storage/kv/k", bearer, `{"valu":1}`, answer{400, jsonH, `{"error":"invalid_request","message":"unknown field"}`}, ""},
		{"503", "GET", "/v1/storage/kv/k", bearer, "", answer{503, with(jsonH, "Retry-After", "1"), `{"error":"backend_unavailable","message":"try again"}`}, ""},
		{"unknown endpoint", "GET", "/v1/nope", "", "", answer{404, jsonH, `{"error":"unknown_endpoint","message":"no endpoint matches GET /v1/nope"}`}, ""},
		// null anywhere a JSON value may be (OpenAPI 3.0 has no null type:
		// JSONValue and Scalar each have a nullable branch).
		{"null document", "PUT", "/v1/storage/db/c/k", bearer, `null`, answer{200, with(jsonH, "ETag", `"v1"`), `{"key":"k","value":null}`}, ""},
		{"nulls in a document", "PUT", "/v1/storage/db/c/k", bearer, `{"a":null,"b":[null,1,"x",true,{"c":[null]}]}`, answer{200, with(jsonH, "ETag", `"v1"`), `{"key":"k","value":{"a":null,"b":[null,1,"x",true,{"c":[null]}]}}`}, ""},
		{"kv value null", "PUT", "/v1/storage/kv/k", bearer, `{"value":null}`, answer{204, map[string]string{"X-Request-Id": "r1"}, ""}, ""},
		{"null in filters", "POST", "/v1/storage/db/c/query", bearer, `{"filter":{"a":null,"b":{"ne":null},"c":{"in":[null,1,"x",false]}}}`, answer{200, jsonH, `{"items":[],"nextCursor":null}`}, ""},
		{"head of a document", "HEAD", "/v1/storage/db/c/k", bearer, "", answer{200, with(jsonH, "ETag", `"v1"`), ""}, ""},
		// Deep values are checked in linear time (JSONValue recurses
		// through an anyOf, which kin-openapi visits twice a level), nulls
		// at every depth included.
		{"96 nested arrays", "PUT", "/v1/storage/db/c/k", bearer, deepArray, answer{200, with(jsonH, "ETag", `"v1"`), `{"key":"k","value":` + deepArray + `}`}, ""},
		{"nulls in nested arrays", "PUT", "/v1/storage/kv/k", bearer, `{"value":[[null],[[null,{"a":[null]}]]]}`, answer{204, map[string]string{"X-Request-Id": "r1"}, ""}, ""},
		{"file bytes", "GET", "/v1/storage/files/a/b.txt", bearer, "", answer{200, map[string]string{"Content-Type": "text/html", "X-Request-Id": "r1", "ETag": `"e"`, "Last-Modified": "Mon, 02 Jan 2006 15:04:05 GMT", "Content-Length": "2", "Accept-Ranges": "bytes", "Content-Disposition": "attachment"}, "<>"}, ""},
		{"partial batch", "POST", "/v1/storage/db/c/batch", bearer, `{"ops":[{"op":"upsert","key":"k"}]}`, answer{200, jsonH, `{"succeeded":0,"failed":1,"results":[{"key":"k","op":"upsert","ok":false,"error":"invalid_request","message":"op must be set or delete"}]}`}, ""},

		// Drift.
		{"undocumented field", "GET", "/healthz", "", "", answer{200, jsonH, `{"status":"ok","uptime":3}`}, "uptime"},
		{"undocumented status", "GET", "/v1/storage/kv/k", bearer, "", answer{418, jsonH, `{"error":"invalid_request","message":"teapot"}`}, "418"},
		{"code of another status", "GET", "/v1/storage/kv/k", bearer, "", answer{404, jsonH, `{"error":"conflict","message":"x"}`}, "conflict"},
		{"unknown error code", "GET", "/v1/storage/kv/k", bearer, "", answer{400, jsonH, `{"error":"bad_thing","message":"x"}`}, "bad_thing"},
		{"error without message", "GET", "/v1/storage/kv/k", bearer, "", answer{400, jsonH, `{"error":"invalid_request"}`}, "message"},
		{"503 without Retry-After", "GET", "/v1/storage/kv/k", bearer, "", answer{503, jsonH, `{"error":"backend_unavailable","message":"try again"}`}, "Retry-After"},
		{"401 without WWW-Authenticate", "GET", "/v1/storage/kv/k", "", "", answer{401, jsonH, `{"error":"invalid_token","message":"x"}`}, "WWW-Authenticate"},
		{"wrong type", "GET", "/v1/storage/kv/k", bearer, "", answer{200, jsonH, `{"value":1,"ttl":-1}`}, "value"},
		{"object as a filter scalar", "POST", "/v1/storage/db/c/query", bearer, `{"filter":{"a":{"in":[{"x":1}]}}}`, answer{200, jsonH, `{"items":[],"nextCursor":null}`}, "filter"},
		{"missing field", "POST", "/v1/storage/kv/k", bearer, "", answer{200, jsonH, `{}`}, "value"},
		{"not JSON", "GET", "/healthz", "", "", answer{200, map[string]string{"Content-Type": "text/plain", "X-Request-Id": "r1"}, "ok"}, "Content-Type"},
		{"no request id", "GET", "/healthz", "", "", answer{200, map[string]string{"Content-Type": "application/json"}, `{"status":"ok"}`}, "X-Request-Id"},
		{"accepted undocumented request field", "PUT", "/v1/storage/kv/k", bearer, `{"value":1,"ifAbsnt":true}`, answer{204, map[string]string{"X-Request-Id": "r1"}, ""}, "ifAbsnt"},
		{"accepted undocumented query value", "GET", "/v1/storage/kv/k?tier=team", bearer, "", answer{200, jsonH, `{"value":"1","ttl":-1}`}, "tier"},
		{"accepted without token", "GET", "/v1/storage/kv/k", "", "", answer{200, jsonH, `{"value":"1","ttl":-1}`}, "bearer"},
		{"undocumented operation", "PATCH", "/v1/storage/files/a.txt", bearer, `{"ttl":1}`, answer{204, map[string]string{"X-Request-Id": "r1"}, ""}, "no documented operation"},
		{"206 without Content-Range", "GET", "/v1/storage/files/a.txt", bearer, "", answer{206, map[string]string{"Content-Type": "text/plain", "X-Request-Id": "r1", "ETag": `"e"`, "Last-Modified": "x", "Content-Length": "1", "Accept-Ranges": "bytes"}, "a"}, "Content-Range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body) // the engine reads the body
				for k, v := range tc.answer.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.answer.status)
				_, _ = io.WriteString(w, tc.answer.body)
			})
			var mu sync.Mutex
			var reports []string
			srv := httptest.NewServer(c.Handler(fake, func(err error) {
				mu.Lock()
				reports = append(reports, err.Error())
				mu.Unlock()
			}))
			defer srv.Close()
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.reqBody))
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			srv.Close() // waits for the handler, and so for the check
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tc.wantReport == "" && len(reports) > 0:
				t.Errorf("reported %q, want no report", reports)
			case tc.wantReport != "" && len(reports) == 0:
				t.Errorf("not reported, want a report naming %q", tc.wantReport)
			case tc.wantReport != "" && !strings.Contains(strings.Join(reports, "\n"), tc.wantReport):
				t.Errorf("reported %q, want it to name %q", reports, tc.wantReport)
			}
		})
	}
}
