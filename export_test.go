package storage

// SetAppCacheSize empties the engine's app caches and caps each at n
// entries, so a test can fill them.
func SetAppCacheSize(e *Engine, n int) { e.apps.resize(n) }

// AppCacheLen returns how many registered apps and unregistered client_ids
// the engine's app caches hold.
func AppCacheLen(e *Engine) (apps, missing int) { return e.apps.found.Len(), e.apps.missing.Len() }
