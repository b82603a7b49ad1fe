// Package openapicheck validates HTTP exchanges against an OpenAPI 3
// document with github.com/getkin/kin-openapi/openapi3filter. cpodtest wraps
// every test server's handler with [Checker.Handler], so every request and
// response of the black-box tests is checked against the repository's
// openapi.json, and the document cannot drift from the engine.
//
// What is checked, for each request:
//
//   - Its operation is found by method and path. Path templates match one
//     segment per parameter, except the parameter a path item names in its
//     "x-cpod-rest-of-path" extension, which takes the rest of the path
//     (file paths and kv keys hold '/'). A literal segment wins over a
//     parameter (/db/{c}/query before /db/{c}/{key}).
//   - A request without a documented operation must have been answered 404
//     or 405 with the error schema (components/schemas/Error), or be a CORS
//     preflight answered 204 (CORS is a transport matter that the document
//     describes in words; the engine's CORS tests check its headers).
//   - The response is always validated: its status must be documented for
//     the operation (an undocumented status fails), its documented headers
//     present and valid, its JSON body valid against the schema (with
//     additionalProperties false, an undocumented field fails). HEAD is
//     checked for its status only, 304 for nothing more.
//   - The request is validated only when the engine accepted it (status
//     below 400): many tests send malformed requests on purpose, and those
//     are answered 4xx without matching the request schema. A batch that
//     answers 200 with failed ops (each op is judged on its own) is treated
//     like a refused request. Binary bodies (files) are not read: only JSON
//     request bodies are captured, up to maxCapture.
package openapicheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// maxCapture bounds the JSON body kept of one request or response; a larger
// one is not validated (no test of the suite comes near it).
const maxCapture = 16 << 20

// restOfPath is the path item extension naming the parameter that takes the
// rest of the path.
const restOfPath = "x-cpod-rest-of-path"

// Checker validates exchanges against one document.
type Checker struct {
	doc    *openapi3.T
	routes []pathRoute
}

type pathRoute struct {
	path     string
	item     *openapi3.PathItem
	re       *regexp.Regexp
	names    []string
	literals int
}

// New loads and validates the document.
func New(spec []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("openapicheck: load: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapicheck: the document is not valid OpenAPI 3: %w", err)
	}
	unrecurseJSONValue(doc)
	c := &Checker{doc: doc}
	for path, item := range doc.Paths.Map() {
		rest, _ := item.Extensions[restOfPath].(string)
		r := pathRoute{path: path, item: item}
		var re strings.Builder
		re.WriteString("^")
		for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
			re.WriteString("/")
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				name := seg[1 : len(seg)-1]
				r.names = append(r.names, name)
				if name == rest {
					re.WriteString("(.*)") // the engine routes an empty rest too (and refuses it)
				} else {
					re.WriteString("([^/]*)")
				}
				continue
			}
			r.literals++
			re.WriteString(regexp.QuoteMeta(seg))
		}
		re.WriteString("$")
		r.re = regexp.MustCompile(re.String())
		c.routes = append(c.routes, r)
	}
	sort.Slice(c.routes, func(i, j int) bool {
		if c.routes[i].literals != c.routes[j].literals {
			return c.routes[i].literals > c.routes[j].literals
		}
		return c.routes[i].path < c.routes[j].path
	})
	return c, nil
}

// unrecurseJSONValue keeps the validation of JSON values linear.
// kin-openapi validates the matched branch of an anyOf twice (and, for a
// request or response, copies the value for every branch it tries), so a
// schema that recurses through an anyOf costs 2^depth: a document of 32
// nested arrays took minutes. The array branch of JSONValue takes its items
// as JSONValue again, which accepts any JSON value, null included; in the
// loaded document (never in openapi.json, which the linters read) those
// items get the schema that kin reads as exactly that without recursing:
// nullable, with no type, which OpenAPI 3.0 itself disallows.
func unrecurseJSONValue(doc *openapi3.T) {
	const self = "#/components/schemas/JSONValue"
	jv := doc.Components.Schemas["JSONValue"]
	if jv == nil || jv.Value == nil {
		return
	}
	for _, b := range jv.Value.AnyOf {
		if b.Value != nil && b.Value.Items != nil && b.Value.Items.Ref == self {
			b.Value.Items = &openapi3.SchemaRef{Value: &openapi3.Schema{Nullable: true, Description: "any JSON value"}}
		}
	}
}

// Doc returns the loaded document.
func (c *Checker) Doc() *openapi3.T { return c.doc }

// Find returns the documented operation of a method and escaped path, with
// its path parameters percent-decoded once (as the engine decodes them), or
// nil.
func (c *Checker) Find(method, escapedPath string) (*routers.Route, map[string]string) {
	for _, r := range c.routes {
		m := r.re.FindStringSubmatch(escapedPath)
		if m == nil {
			continue
		}
		op := r.item.GetOperation(method)
		if op == nil {
			continue
		}
		params := map[string]string{}
		for i, name := range r.names {
			v, err := url.PathUnescape(m[i+1])
			if err != nil {
				v = m[i+1]
			}
			params[name] = v
		}
		return &routers.Route{Spec: c.doc, Path: r.path, PathItem: r.item, Method: method, Operation: op}, params
	}
	return nil, nil
}

// Handler wraps next: each exchange is checked once next has answered, and
// every mismatch goes to report (a test's Errorf).
func (c *Checker) Handler(next http.Handler, report func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, params := c.Find(r.Method, r.URL.EscapedPath())
		var reqBody *capture
		if route != nil && hasJSONBody(route.Operation) && r.Body != nil && r.Body != http.NoBody {
			reqBody = &capture{}
			// A shallow copy carries the tee: net/http answers an unread
			// oversized body at once only while the server's own request
			// keeps its own Body (it would otherwise read it to the end
			// before replying), and the early-413 tests rely on that.
			r = r.WithContext(r.Context())
			r.Body = &teeBody{ReadCloser: r.Body, c: reqBody}
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if err := c.Check(r, route, params, reqBody, rec.result()); err != nil {
			report(fmt.Errorf("%s %s: answered %d, which openapi.json does not allow: %w", r.Method, r.URL.EscapedPath(), rec.result().Status, err))
		}
	})
}

// Response is what the server answered.
type Response struct {
	Status int
	Header http.Header
	// Body is the JSON body, when the response was JSON and at most
	// maxCapture bytes; nil otherwise.
	Body []byte
}

// capture keeps the first maxCapture bytes of a body.
type capture struct {
	buf       bytes.Buffer
	truncated bool
}

func (c *capture) Write(p []byte) (int, error) {
	if c.buf.Len()+len(p) > maxCapture {
		c.truncated = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

type teeBody struct {
	io.ReadCloser
	c *capture
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	_, _ = t.c.Write(p[:n])
	return n, err
}

// Check validates one exchange; route and params come from Find, reqBody is
// the captured JSON request body (nil when the operation takes none or it
// was not captured).
func (c *Checker) Check(r *http.Request, route *routers.Route, params map[string]string, reqBody *capture, res Response) error {
	if route == nil {
		if isPreflight(r) && res.Status == http.StatusNoContent {
			return nil // CORS, checked by the engine's CORS tests, not an operation
		}
		if res.Status != http.StatusNotFound && res.Status != http.StatusMethodNotAllowed {
			return errors.New("no documented operation has this method and path")
		}
		if r.Method == http.MethodHead {
			return nil
		}
		var v any
		if err := json.Unmarshal(res.Body, &v); err != nil {
			return fmt.Errorf("the error body is not JSON: %q", truncate(string(res.Body)))
		}
		if err := c.doc.Components.Schemas["Error"].Value.VisitJSON(v); err != nil {
			return fmt.Errorf("the error body does not match the Error schema: %s", truncate(err.Error()))
		}
		return nil
	}
	if route.Operation.Responses.Status(res.Status) == nil {
		return fmt.Errorf("status %d is not documented for %s %s", res.Status, route.Method, route.Path)
	}
	req := r.Clone(context.Background())
	req.Body = http.NoBody
	if reqBody != nil {
		req.Body = io.NopCloser(bytes.NewReader(reqBody.buf.Bytes()))
		if req.Header.Get("Content-Type") == "" {
			// The engine reads JSON bodies whatever their Content-Type.
			req.Header.Set("Content-Type", "application/json")
		}
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			ExcludeRequestBody: reqBody == nil || reqBody.truncated,
			AuthenticationFunc: authenticate,
		},
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 res.Status,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(res.Body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("response: %s", truncate(err.Error()))
	}
	if res.Status >= 400 || partialBatch(route, res) {
		return nil
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		return fmt.Errorf("request (accepted by the engine, so the document must describe it): %s", truncate(err.Error()))
	}
	return nil
}

// isPreflight reports a CORS preflight: OPTIONS with Origin and
// Access-Control-Request-Method.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// partialBatch reports a document batch answered 200 with failed ops: its
// request holds ops that the engine refused one by one.
func partialBatch(route *routers.Route, res Response) bool {
	if route.Operation.OperationID != "batchDocuments" {
		return false
	}
	var b struct{ Failed int }
	return json.Unmarshal(res.Body, &b) == nil && b.Failed > 0
}

// authenticate checks that a request of an operation that needs a bearer
// token sent one; the engine verified it.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type == "http" && strings.EqualFold(s.Scheme, "bearer") {
		if h := in.RequestValidationInput.Request.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return nil
		}
		return errors.New("no bearer token")
	}
	return fmt.Errorf("security scheme %q is not supported by openapicheck", in.SecuritySchemeName)
}

// hasJSONBody reports whether the operation takes a JSON request body.
func hasJSONBody(op *openapi3.Operation) bool {
	return op.RequestBody != nil && op.RequestBody.Value != nil && op.RequestBody.Value.Content.Get("application/json") != nil &&
		op.RequestBody.Value.Content["*/*"] == nil
}

func truncate(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}

// recorder passes the response through and keeps its status, headers and
// JSON body.
type recorder struct {
	http.ResponseWriter
	mu     sync.Mutex
	status int
	header http.Header
	body   *capture
}

func (r *recorder) WriteHeader(status int) {
	r.mu.Lock()
	if r.status == 0 && status >= 200 {
		r.status = status
		r.header = r.ResponseWriter.Header().Clone()
		if isJSON(r.header.Get("Content-Type")) {
			r.body = &capture{}
		}
	}
	r.mu.Unlock()
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	if r.status == 0 {
		r.mu.Unlock()
		r.WriteHeader(http.StatusOK)
		r.mu.Lock()
	}
	if r.body != nil {
		_, _ = r.body.Write(p)
	}
	r.mu.Unlock()
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush passes a flush through.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) result() Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Response{Status: r.status, Header: r.header}
	if res.Status == 0 {
		// The handler wrote nothing: net/http answers 200 with no body.
		res.Status, res.Header = http.StatusOK, r.ResponseWriter.Header().Clone()
	}
	if r.body != nil && !r.body.truncated {
		res.Body = r.body.buf.Bytes()
	}
	return res
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}
