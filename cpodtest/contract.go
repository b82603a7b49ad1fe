package cpodtest

import (
	"net/http"
	"sync"
	"testing"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/internal/openapicheck"
)

// checker is the OpenAPI checker of the engine's document, loaded once.
var checker = sync.OnceValues(func() (*openapicheck.Checker, error) {
	return openapicheck.New(storage.OpenAPIDocument())
})

// contractCheck wraps the engine so that every exchange is validated
// against its OpenAPI document (see WithContractCheck).
func contractCheck(t testing.TB, next http.Handler) http.Handler {
	t.Helper()
	c, err := checker()
	if err != nil {
		t.Fatalf("cpodtest: %v", err)
	}
	return c.Handler(next, func(err error) {
		t.Errorf("cpodtest: the engine and its OpenAPI document disagree: %v", err)
	})
}

func isBenchmark(t testing.TB) bool {
	_, ok := t.(*testing.B)
	return ok
}
