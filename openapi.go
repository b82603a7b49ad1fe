package storage

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPIDocument is openapi.json of the repository root: the OpenAPI 3
// document of the whole wire contract. The test suite validates every
// request and response of its black-box tests against it (see cpodtest), so
// it cannot drift from the engine.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI 3 document (JSON) of the engine's
// HTTP API, the one served at GET /v1/openapi.json.
func OpenAPIDocument() []byte { return append([]byte(nil), openAPIDocument...) }

// handleOpenAPI serves the OpenAPI document, without authentication: it
// describes the API, it holds no data. Any origin may read it
// (Access-Control-Allow-Origin: *, never with credentials), so that Swagger
// UI or another tool served from elsewhere can load it; Config.CORSOrigins
// is about the storage API, not this public document.
func (e *Engine) handleOpenAPI(c *call) error {
	h := c.w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(openAPIDocument)
	return nil
}

// handleOpenAPIPreflight answers a CORS preflight (or a plain OPTIONS) for
// the OpenAPI document: any origin may GET it, with any request headers
// (the "*" of Fetch, which holds without credentials).
func (e *Engine) handleOpenAPIPreflight(c *call) error {
	h := c.w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET")
	h.Set("Access-Control-Allow-Headers", "*")
	h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
	h.Set("Allow", "GET, OPTIONS")
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
