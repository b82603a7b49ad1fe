// Package storage is the cpod storage engine: it gives every app on the cpod
// platform three isolated storage primitives — files (blobs in S3), documents
// (collections in MongoDB) and key-values (ephemeral, in Redis) — without the
// app ever holding database credentials.
//
// The engine is one [http.Handler]. Tenant, app and user come only from a
// verified JWT; the tier of each call (private, user or shared) maps it to an
// isolated location; the scopes an app declared at registration cap what any
// of its tokens can do. The HTTP wire contract (paths, JSON shapes, status
// and error codes) is the one of the cpod SDK's storage chapter; the Go SDK
// in package client speaks it.
//
// # Mounting
//
// Hand the engine the official clients of your backends and mount it:
//
//	engine, err := storage.New(storage.Config{
//		S3:         minioClient,            // *minio.Client, any S3
//		Bucket:     "cpod-files",
//		Mongo:      mongoClient.Database("cpod"),
//		Redis:      redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, ContextTimeoutEnabled: true}),
//		Auth:       storage.AuthConfig{Keys: []storage.Key{{PublicKeyPEM: issuerPEM}}, Issuer: iss},
//		SigningKey: urlSigningKey,          // 32+ random bytes, not a JWT key
//		AdminTokens: []string{adminToken},
//	})
//	mux.Handle("/v1/", engine)
//	// or under a prefix:
//	mux.Handle("/storage-api/", http.StripPrefix("/storage-api", engine))
//
// [New] makes no backend call; GET /readyz answers 200 once all three backends
// answer. Every [Config] field documents its default.
//
// The engine is stateless (but for a sub-second cache of app lookups, see
// Config.AppCacheTTL), so any number of replicas can serve the same backends;
// scale-out is the backends' job: S3, a MongoDB replica set or sharded
// cluster (see # Documents layout), Redis Cluster (every key the engine
// writes carries a hash tag, see kv.go).
//
// Set ContextTimeoutEnabled on the go-redis client and a timeout on the
// MongoDB client: the engine bounds each Redis and MongoDB call with
// Config.BackendTimeout through the request context, and go-redis ignores
// context deadlines without that option.
//
// # Tiers and locations
//
// [Resolve] is the one function that maps (identity, tier, relative name) to a
// location; the same location prefixes are used in S3 object keys, the
// MongoDB location field and Redis keys:
//
//	private (default)  {tenant}/apps/{app}/
//	user               {tenant}/users/{user}/     (every app of that user sees it)
//	shared             {tenant}/shared/
//
// Ids are 1 to 128 bytes of printable ASCII without '/' or '\', and never "."
// or "..", so a location can never reach into another.
//
// # Authorization
//
// Every storage call carries Authorization: Bearer <JWT>. Only the algorithms
// of the configured keys are accepted; exp is required; iss and aud are
// checked when configured. The claims tenantId, client_id, sub and scope
// (names configurable) give the [Identity]. A needed scope that the app did
// not declare is 403 invalid_scope; one declared but not in the token is 403
// insufficient_scope; the user tier without a user in the token is 403
// user_required; an unregistered client_id is 401 invalid_token. Apps are
// registered over /v1/oauth/apps with an admin token, or from Go with
// [Engine.RegisterApp].
//
// # Errors
//
// Every error response is {"error": code, "message": text}. [Code] is the one
// error-code type; [Code.Status] is the one place that maps codes to HTTP
// statuses; [Error] is the one error type, and the sentinels ([ErrNotFound],
// [ErrInvalidScope], ...) match any *Error of their code with errors.Is, also
// for the Go API ([Engine.RegisterApp] returns ErrConflict for a duplicate).
// Backend errors are translated once, in the adapter that called the
// backend: connection failures and timeouts become 503 backend_unavailable
// with Retry-After, anything unexpected 500 internal; the cause is logged with
// the request id (X-Request-Id) and never sent.
//
// # Testing
//
// Package cpodtest starts the real engine over in-process fakes (gofakes3,
// FerretDB on SQLite, miniredis) in well under a second:
//
//	srv := cpodtest.NewServer(t)
//	srv.RegisterApp(t, "app-a", "storage.private.read", "storage.private.write")
//	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1",
//		Scopes: []string{"storage.private.read", "storage.private.write"}})
//
// The same tests run against real servers when CPODTEST_REDIS_URL,
// CPODTEST_MONGO_URI and CPODTEST_S3_URL are set.
package storage
