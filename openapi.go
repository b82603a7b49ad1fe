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
// describes the API, it holds no data.
func (e *Engine) handleOpenAPI(c *call) error {
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(openAPIDocument)
	return nil
}
