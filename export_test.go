package storage

import "context"

// SetAppCacheSize empties the engine's app caches and caps each at n
// entries, so a test can fill them.
func SetAppCacheSize(e *Engine, n int) { e.apps.resize(n) }

// AppCacheLen returns how many registered apps and unregistered client_ids
// the engine's app caches hold.
func AppCacheLen(e *Engine) (apps, missing int) { return e.apps.found.Len(), e.apps.missing.Len() }

// IncrNoncesPerGeneration is how many nonces each of a counter's two nonce
// hashes holds at most.
const IncrNoncesPerGeneration = incrNoncesPerGeneration

// IncrWithNonce increments the Redis key k by one as POST /kv does, with a
// given nonce, so a test can replay a request.
func IncrWithNonce(ctx context.Context, e *Engine, k, nonce string) (int64, error) {
	n, _, err := e.kv.(*redisKV).incrNonce(ctx, k, 1, nonce)
	return n, err
}

// WithoutVersionClaims makes versioned document writes use MongoDB's
// filtered update on any server until the returned restore is called. Not
// for parallel tests: it is global.
func WithoutVersionClaims() (restore func()) {
	old := useClaims
	useClaims = func(docsBackend) bool { return false }
	return func() { useClaims = old }
}
