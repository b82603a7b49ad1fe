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
// in package client speaks it. openapi.json in the repository root (served
// at GET /v1/openapi.json, see [OpenAPIDocument]) describes it for clients in
// other languages; Config.CORSOrigins lets browser apps call it (cors.go).
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
// answer. Every [Config] field documents its default. Config.Metrics takes a
// prometheus.Registerer for the engine's request, latency, backend-error and
// byte metrics, labelled by route pattern, never by tenant, key or token
// (see metrics.go).
//
// The engine is stateless (but for a sub-second cache of app lookups, see
// Config.AppCacheTTL, which also lets each replica keep serving the apps it
// served recently while MongoDB fails, see Config.AppStaleIfError, and a
// one-second cache of verified tokens, see AuthConfig.CacheTTL), so any
// number of replicas can serve the same backends;
// scale-out is the backends' job: S3, a MongoDB replica set or sharded
// cluster (see # Documents layout), Redis Cluster (every key the engine
// writes carries a hash tag, see kv.go).
//
// Set ContextTimeoutEnabled on the go-redis client and a timeout on the
// MongoDB client: the engine bounds each Redis and MongoDB call with
// Config.BackendTimeout through the request context, and go-redis ignores
// context deadlines without that option.
//
// A kv value is stored in Redis with its expiry in front of its text (byte
// 0xff, the expiry in Unix milliseconds, ':'; see kv_values.go), so that a
// kv GET answers value and ttl from one Redis GET; the key has the Redis TTL
// as well. Values written before that format are still read (with a second
// command). A tool that reads the engine's Redis keys directly must strip
// the prefix; the admin export (GET .../export) does. An engine built
// before this format would answer such a value with its prefix: do not mix
// older and newer replicas on one Redis.
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
// or "..", so a location can never reach into another. They hold no '%'
// either (narrower than design.md's charset, on purpose): locations travel
// percent-encoded, and without '%' an id means the same whether a component
// on the way decodes it once or twice. A token with such an id is 401
// invalid_token, and such a client_id cannot be registered (400).
//
// Deleting an app (DELETE /v1/oauth/apps/{client_id}) stops its tokens and
// keeps its data. A client_id registered again later is the same app as far
// as data goes: in every tenant it inherits the private tier of the old one
// (files, documents, kv keys) and its signed URLs work again until they
// expire, since both are bound to the location {tenant}/apps/{client_id}/;
// the user and shared tiers belong to users and tenants, not apps. To
// retire a client_id for good, erase its data in each tenant first
// (DELETE /v1/admin/tenants/{tenant}/apps/{client_id}/data, see admin.go).
//
// # Authorization
//
// Every storage call carries Authorization: Bearer <JWT>. Only the algorithms
// of the configured keys are accepted; exp is required; iss and aud are
// checked when configured; a token whose header has crit (RFC 7515: the
// engine understands no extension), jku, x5u, jwk or x5c is refused. The claims tenantId, client_id, sub and scope
// (names configurable) give the [Identity]. A needed scope that the app did
// not declare is 403 invalid_scope; one declared but not in the token is 403
// insufficient_scope; the user tier without a user in the token is 403
// user_required; an unregistered client_id is 401 invalid_token. A refused
// token's 401 names the check that failed, from a fixed list (malformed,
// unsupported algorithm, unknown key, bad signature, expired, not yet valid,
// wrong issuer, wrong audience, missing claim <name>, invalid id in claim
// <name>), as its message, in WWW-Authenticate's error_description and in
// the log line "storage: token refused" (never the token). Apps are
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
// with Retry-After; a backend out of space (ENOSPC, SQLITE_FULL, MongoDB's
// OutOfDiskSpace, S3's XMinioStorageFull, Redis' OOM or MISCONF) 507
// insufficient_storage without Retry-After; anything unexpected 500
// internal; the cause is logged with the request id (X-Request-Id) and
// never sent.
//
// # Rate limits
//
// [Config.RateLimit] (off by default) limits the requests per second of each
// tenant and of each app within a tenant (GCRA). Each storage request spends
// one request of both allowances, right after its token is verified and
// before any backend work; over either it is 429 rate_limited with
// Retry-After, and every answer to a verified token carries RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset. With Redis the allowances are
// shared by every replica at one round trip per request; without Redis they
// are kept in process. Signed URLs have allowances of their own; the admin
// API and the operations are not limited. See ratelimit.go for the keys,
// the clock and what happens when Redis fails.
//
// # Quotas and usage
//
// The engine keeps each location's usage (the bytes of the values and the
// count of files, documents and kv keys; names are not counted) in the
// store, so every replica reads the same figures: GET /v1/storage/usage
// answers the caller's location, GET /v1/admin/tenants/{tenant}/usage a
// tenant's totals with its quota, and POST .../usage/recount recomputes
// them from what is stored. [Config.DefaultQuota] (a [Quota], zero fields
// unlimited) limits every tenant without limits of its own, which PUT
// /v1/admin/tenants/{tenant}/quota sets (null: back to the default). A
// write that would take its tenant over a limit is 507 quota_exceeded
// without Retry-After and stores nothing; deletes are never refused. The
// check precedes the write, so with concurrent writers a tenant may
// overshoot a limit by at most the writes in flight; see usage.go.
//
// # Documents layout
//
// Each logical document is one MongoDB document, the same in every layout:
//
//	_id      location + collection + "/" + key, such as "t1/apps/app-a/prefs/theme"
//	loc      the location prefix from Resolve, tenant first: "t1/apps/app-a/"
//	coll     the logical collection name: "prefs"
//	key      the document key: "theme"
//	json     the value as compact JSON text, returned byte for byte
//	v        the value as BSON, used only by filters and sorts
//	created, updated   BSON dates
//	ver      a random version, new on every write; with updated, the ETag
//
// Locations end with "/" and collection names cannot hold one, so _id spells
// (location, collection, key) injectively. Set, get and delete address a
// document by _id alone; a query filters on loc and coll equality, an _id
// range of the same prefix, the caller's equalities on v, and the keyset
// position, never a skip. A set inserts the document and, when one of that
// _id exists, updates it (json, v, updated).
//
// Config.DocumentsLayout says which physical collections hold them:
//
//   - single (the default on MongoDB): every app's documents live in one
//     collection, Config.DocumentsCollection (default "cpod_documents"),
//     with the unique index loc_coll_key_unique on {loc: 1, coll: 1, key: 1},
//     created on first use. MongoDB's indexes bound each call to the
//     document or collection it names, and the collection shards (below).
//   - partitioned (the default on FerretDB): the documents of each
//     (location, logical collection) live in a collection of their own,
//     "cpod_documents.<h(tenant)>.<h(location)>.<collection>", where h is the
//     first 8 bytes of SHA-256 in hex (ids may hold characters that
//     collection names may not). FerretDB v1 uses no index for a query, an
//     update or a delete: it scans the whole collection on every call (only
//     an insert is checked against the _id index). One collection per
//     location and collection keeps those scans to the caller's own
//     documents, so another tenant's data costs nothing. The collection is
//     created by the first insert (measured: 4 to 6 ms on FerretDB-SQLite,
//     9 to 16 ms on FerretDB-PostgreSQL, against about 1 ms for a set into
//     an existing one; FerretDB creates one at a time); it needs no index
//     but _id's. The name prefixes group a tenant's, then a location's,
//     collections. As the documents and filters are those of the single
//     layout, two names whose hashes collided would share a collection,
//     never each other's data.
//   - auto (the default): partitioned when the server's buildInfo carries
//     ferretdbVersion, single otherwise, decided once per process. A
//     FerretDB whose single collection already holds documents (written by
//     an engine from before the partitioned layout) keeps single, with a
//     warning in the log: moving them is an export and import.
//
// Sharding (single layout): shard the collection on {_id: 1}, ranged. _id
// begins with the tenant (then the tier's app or user, then the collection),
// so the tenant leads the shard key: each tenant's documents form contiguous
// chunk ranges (zones can pin a tenant to a region), every set, get and
// delete targets one shard, and a query's _id range targets the shards of
// that one collection. MongoDB allows a unique index only on a shard key
// prefix, so on a sharded cluster create loc_coll_key_unique on
// {loc: 1, coll: 1, key: 1} yourself, without unique, before sharding; the
// engine accepts an index of that name with other options, and _id, unique
// as the shard key, keeps (location, collection, key) unique.
//
// FerretDB. Its scans make a set on an existing key, a delete or a query
// cost time in proportion to the caller's own collection (a GET by _id
// stops at the match); an insert does not grow. FerretDB v1 also holds a
// backend connection per update statement on an existing document until the
// whole command ends, plus one for the write, and waits for a connection
// with no deadline of its own: a long update command or many concurrent
// updates exhausted its pool (on PostgreSQL pool_max_conns, default 50) for
// good, and every later request of any kind timed out. So updates are
// updateMany on _id (FerretDB closes each statement's query before the
// next), batch commands carry at most 25 statements, and one engine keeps at
// most 8 write commands in flight on FerretDB, queueing the rest within
// Config.BackendTimeout. Keep engine replicas times 8 below FerretDB's pool
// size. Queries and counts take read slots (Limits.MaxDocumentReads: 4 on
// FerretDB, 32 on MongoDB), a tenant at most half of them, so one tenant's
// scans neither pile up in memory nor hold every slot; a read that finds
// none within Config.BackendTimeout is 503. On FerretDB a read keeps its
// slot until FerretDB answers or the deadline passes, even when the client
// has left, since FerretDB goes on working for it.
//
// # The embedded store
//
// With Config.SQL (a SQLite database, such as embedded.OpenSQLite opens;
// what `go run ./httpserver` and package embedded use by default) documents,
// the app registry and kv live in SQLite instead of MongoDB and Redis
// (Config.Redis must then be nil), through the same handlers:
// documents_store.go and kv_store.go are the driver interfaces (their docs
// say which error each method returns), documents_mongo.go and
// documents_sqlite.go, kv_redis.go and kv_sqlite.go their drivers,
// apps_store.go the registry's. The tables (sqlite.go): cpod_documents, one
// row per document keyed (loc, coll, key) in a WITHOUT ROWID table, with
// the exact JSON text and a JSONB query form; cpod_apps; cpod_doc_indexes;
// cpod_kv, one row per kv key (its location key, text and expiry on the
// engine's clock; expired rows are never read and are purged in the
// background). kv's conditional writes (ifAbsent, ifValue, PATCH ttl,
// INCR) are single statements too; INCR adds with the SQL function
// cpod_kv_incr, Redis' INCRBY rules. Every conditional write (If-Match,
// If-None-Match, PATCH) is one statement whose WHERE carries the
// condition, under the engine's write lock, so it serialises with every
// other write of the document; a query or count stops (SQLite is
// interrupted) when its request ends or reaches Config.BackendTimeout.
// Queries scan the caller's collection until a slow shape gets a partial
// index on that collection alone (documents_sqlite_index.go). Read slots:
// as many as the process has cores (at least 2), a tenant at most half.
// One process owns the database (httpserver locks the data directory);
// engines on other processes would share it only through SQLite's locks.
// The SQL function cpod_sortkey, registered by this package, is part of
// the indexes: a program that writes to cpod_documents without this
// package cannot.
//
// Versions. GET and PUT answer the ETag; If-Match and If-None-Match make a
// set or delete conditional and PATCH merges a JSON Merge Patch. On MongoDB
// the check is in the filter of the write itself. As FerretDB v1 runs a
// filtered write as a read then a write by _id, there a conditional write
// first claims the version it replaces by an insert into
// DocumentsCollection+"_claims", deleted after the write (see
// documents_versions.go).
//
// Values. The json field keeps the value exactly as sent, less insignificant
// whitespace: field order, number spelling (1.0, 1e2, integers beyond
// int64), escapes and any field name, including "", names with '.' or a
// leading '$'. A field name given twice in one object is 400 naming it. The
// v field is for matching and ordering: objects keep their order with names
// escaped ('%' to %25, '.' to %2E, NUL to %00, a leading '$' to %24, a
// leading or trailing white-space character to its %XX bytes, "" to %), so
// a filter or sort on a name such as " a" or "a " works on FerretDB too;
// arrays become objects keyed "0", "1", ... (so a path segment may be an
// index, and no MongoDB array semantics apply), integer literals in the
// int64 range are int64, other numbers float64 (clamped to ±MaxFloat64),
// and strings have NUL and U+0001 escaped in an order-preserving way
// (FerretDB on PostgreSQL cannot store NUL). A value's structure is capped
// (Limits.MaxDocumentNodes, MaxDocumentArrayItems, MaxDocumentObjectFields,
// and MaxBatchNodes for a batch): over a cap is 413 before any backend call.
// A value costs 20 to 40 times its size in memory from its parse to its
// write, so the bodies of sets, patches and batches in that stretch share a
// budget of four times Limits.MaxDocumentSize bytes, taken once a body is
// read (a slow sender holds none); a body that waits for it past
// Config.BackendTimeout is 503.
//
// Queries (query.go). A filter maps dotted paths to a scalar (equality:
// numbers match equal numbers of any spelling, null matches null and
// missing fields) or to an operator object: a range ({"gt"|"gte": x}
// and/or {"lt"|"lte": y}), matching only values of the bound's type
// bracket below, as Firestore; {"in": [1 to 30 scalars]}, equality with
// any; {"ne": x}, the exact complement of equality with x. The engine
// builds every MongoDB operator itself from the parsed terms; any other
// key is 400. POST /db/{collection}/count counts a filter's matches. A
// sort orders by up to four paths, ties broken by key; across types the
// order is MongoDB's: null and missing < numbers < strings < objects and
// arrays (compared as documents) < booleans. The cursor is HMAC-protected
// and bound to the caller's location and collection; it carries the query's
// filter, sort and the last item's sort values and key, so the next page is
// "after that position" in this order, spelled with explicit type brackets
// ($gt and $lt only compare within a type). A sort value over 1 KiB (a large
// object) travels as its hash and is read back from the document at the
// position; if that document changed meanwhile, the cursor is
// invalid_cursor.
//
// # Testing
//
// Package cpodtest starts the real engine over in-process fakes (package
// embedded: an S3 on a temporary directory, FerretDB on SQLite, miniredis;
// or the SQLite store with cpodtest.WithSQLite)
// in well under a second:
//
//	srv := cpodtest.NewServer(t)
//	srv.RegisterApp(t, "app-a", "storage.private.read", "storage.private.write")
//	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1",
//		Scopes: []string{"storage.private.read", "storage.private.write"}})
//
// The same tests run against real servers when CPODTEST_REDIS_URL,
// CPODTEST_MONGO_URI and CPODTEST_S3_URL are set. Every exchange with a
// cpodtest server is validated against openapi.json (see
// cpodtest.WithContractCheck).
package storage
