package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Config configures an Engine. The backends are the official clients, handed
// in by the embedder; the engine never holds or logs their credentials.
type Config struct {
	// S3 stores files, in Bucket. Required.
	S3 *minio.Client
	// Bucket is the S3 bucket that holds every tenant's files under its
	// location prefix. It must exist. Required.
	Bucket string

	// Mongo holds documents and the app registry: the production store,
	// with Redis for kv. Either Mongo and Redis, or SQL, is required.
	Mongo *mongo.Database
	// SQL is a SQLite database (modernc.org/sqlite, opened with WAL, such
	// as embedded.OpenSQLite returns) that holds documents, the app
	// registry and kv instead of Mongo and Redis: the embedded store of one
	// process (see "The embedded store" in doc.go). The engine creates its
	// tables (cpod_documents, cpod_apps, cpod_kv) on first use. Either
	// Mongo and Redis, or SQL (and neither of them), is required.
	SQL *sql.DB
	// DocumentsCollection is the physical collection of every app's
	// documents in the single layout, and the name prefix of the physical
	// collections in the partitioned layout. Default "cpod_documents".
	DocumentsCollection string
	// DocumentsLayout chooses how documents are laid out in MongoDB (see
	// "Documents layout" in doc.go): DocumentsLayoutSingle (one collection,
	// for MongoDB and sharding), DocumentsLayoutPartitioned (one collection
	// per location and logical collection, for FerretDB, which scans a whole
	// collection on every call) or DocumentsLayoutAuto, which picks
	// partitioned on FerretDB (unless its single collection already holds
	// documents) and single otherwise, asking the server once.
	// Default DocumentsLayoutAuto.
	DocumentsLayout string
	// AppsCollection is the app registry. Default "cpod_apps".
	AppsCollection string

	// Redis holds key-values beside Mongo: a single node, Sentinel or
	// Cluster client. Required with Mongo; must be nil with SQL, which
	// holds kv itself.
	Redis redis.UniversalClient
	// RedisKeyPrefix starts every Redis key the engine writes, so several
	// engines (or tests) can share one Redis. It must not contain '{' or '}'.
	// Default "cpod:". Unused with SQL.
	RedisKeyPrefix string

	// Auth says how bearer tokens are verified. Required.
	Auth AuthConfig

	// AdminTokens guard /v1/oauth/apps. Each must be at least 16 bytes.
	// Default none: the admin API then answers 401 to everyone.
	AdminTokens []string

	// SigningKey is the engine's own secret for signed URLs and
	// cursors; it must differ from any JWT key and be at least 32 bytes.
	// Required.
	SigningKey []byte
	// PublicURL is the absolute URL at which the engine is reachable, used to
	// build signed URLs, such as "https://api.example.com/storage".
	// Default: derived from each request (Host header and TLS state).
	PublicURL string
	// S3PresignedURLs makes POST /v1/storage/signed-urls return S3 presigned
	// GET URLs of the S3 endpoint instead of the engine's own signed
	// download URLs, for an S3 endpoint that end users can reach. They have
	// S3's guarantees, not the engine's (no revocation, S3's errors and
	// headers): see the notes in files.go. Upload (PUT) URLs are always the
	// engine's own, which enforce maxSize. Default false.
	S3PresignedURLs bool

	// CORSOrigins are the origins allowed to call /v1/storage/... (signed
	// URLs included) from a browser, such as "https://app.example.com";
	// "*" allows any origin. See cors.go. Default none: no CORS headers.
	CORSOrigins []string

	// Limits caps request sizes. Zero fields take their defaults.
	Limits Limits

	// DefaultQuota is the quota of every tenant that has none of its own
	// (PUT /v1/admin/tenants/{tenant}/quota), field by field: a write that
	// would take a tenant's usage of a primitive over a limit is 507
	// quota_exceeded and stores nothing (see usage.go). Usage is kept
	// whatever the quotas. Default zero: every limit unlimited.
	DefaultQuota Quota

	// RateLimit limits the requests of each tenant, and of each app within
	// a tenant, per second (GCRA; see ratelimit.go): over either, a request
	// is 429 rate_limited with Retry-After, and every rate-limited answer
	// carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset.
	// With Redis the allowances live there, shared by every replica, at
	// one round trip per request; without, in process. Default zero: no
	// limits, no headers, no cost.
	RateLimit RateLimit

	// BackendTimeout bounds each Redis, MongoDB and SQLite call (not file
	// streams).
	// A call that does not answer in time is 503 backend_unavailable.
	// Default 10s.
	BackendTimeout time.Duration
	// S3Timeout bounds each wait on S3: its answer to a call (stat, list,
	// delete, the headers of a download, each part of an upload, the
	// completion of a multipart upload), retries included, and during a
	// file transfer any stretch in which S3 takes or sends no byte while
	// the engine is not waiting for its own client. A transfer may last as
	// long as bytes move. A call that S3 leaves waiting longer is 503
	// backend_unavailable. Default BackendTimeout.
	S3Timeout time.Duration
	// AppCacheTTL is how long an app lookup is cached in process. A change to
	// an app's declared scopes applies to issued tokens after at most this
	// long. Default 500ms; at most 1s; negative disables the cache (and
	// AppStaleIfError with it). The cache is per process, at most 10000
	// apps and 10000 unregistered client_ids, least recently used first out.
	AppCacheTTL time.Duration
	// AppStaleIfError keeps kv and files serving while MongoDB fails: when
	// the registry lookup of an app fails (down, refused, no answer within
	// BackendTimeout, error), the app as this process last found it is used
	// for up to this long after that successful lookup, and meanwhile
	// without waiting for MongoDB again. Never once a successful lookup found
	// the app changed or gone; never for an app this process has not seen
	// (those get 503). The cache is per process: each replica falls back on
	// the apps it served itself. Default 5m; at most 1h; negative disables.
	AppStaleIfError time.Duration

	// Logger receives backend failures with the request id. Tokens and URL
	// signatures are never logged. Default slog.Default().
	Logger *slog.Logger
	// Now is the engine's clock (token expiry, signed URL expiry).
	// Default time.Now.
	Now func() time.Time

	// ReadyChecks are extra checks of GET /readyz, by name (1 to 32
	// lowercase letters, digits, '-' or '_'; not a backend's name), run
	// beside the backends' checks: /readyz reports each under "checks"
	// and answers 503 while one fails. httpserver adds "disk", the free
	// space of its data directory (-min-free-space). See ReadyCheck.
	// Default none.
	ReadyChecks map[string]ReadyCheck

	// Metrics, when set, receives the engine's Prometheus collectors:
	// cpod_storage_requests_total{route,method,code},
	// cpod_storage_request_duration_seconds{route,method},
	// cpod_storage_backend_errors_total{backend} and
	// cpod_storage_bytes_total{primitive,direction}. Labels are route
	// patterns, methods, status codes, backends and primitives, never a
	// tenant, key, path or token (see metrics.go). Engines sharing a
	// Registerer share the collectors. Default nil: no metrics, no cost.
	Metrics prometheus.Registerer
}

// ReadyCheck is an extra check of GET /readyz (Config.ReadyChecks). It
// returns facts to report under its name, numbers such as
// {"freeBytes": ..., "minFreeBytes": ...} (camelCase names other than
// "status" and "message"), and a non-nil error when the engine should not
// take traffic: /readyz then answers 503, quoting the error's text in its
// message and under the check's "message". /readyz needs no token, so
// neither may name a path, a host or anything secret. Checks run
// concurrently with each other and the backends' checks; one that has not
// returned within Config.BackendTimeout counts as failed.
type ReadyCheck func(ctx context.Context) (facts map[string]int64, err error)

// readyCheckName is the form of a Config.ReadyChecks name.
var readyCheckName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Limits caps request sizes. Zero fields take the defaults given.
type Limits struct {
	MaxFileSize      int64 // default 5 GiB
	MaxDocumentSize  int   // bytes of a document's JSON value; default 1 MiB
	MaxDocumentDepth int   // nesting depth of a document's value; default 32, at most MaxDocumentDepthCeiling
	MaxKVValueSize   int   // bytes of a stored kv value; default 1 MiB
	MaxBatchOps      int   // ops in one batch; default 500
	MaxQueryLimit    int   // items in one query page; default 1000
	MaxListLimit     int   // items in one file listing page; default 1000

	// A JSON request body (kv, documents, queries, batches, signed-URL
	// and admin requests; never a file upload) must keep arriving: once
	// BodyGrace has passed, it must have come at MinBodyRate bytes per
	// second or faster on average, or it is cut off with 400
	// invalid_request. Without it a client trickling one byte at a time
	// holds a request open for as long as the server's per-read stall
	// timeout allows, again and again. BodyGrace default 20s; MinBodyRate
	// default 1024 (a 16 MiB batch body may take 4.5 minutes).
	BodyGrace   time.Duration
	MinBodyRate int64

	// The structure of a document's value is capped as well as its bytes:
	// on FerretDB the cost of storing a value, and on FerretDB-SQLite of
	// every later query on the documents collection (it decodes every
	// document), grows with the JSON values it holds (a 1 MiB array holds
	// 500k) and faster than that with the items of one array or object;
	// FerretDB does not stop that work when BackendTimeout fires. A value
	// over a cap is 413 too_large naming it, before any backend call. The
	// defaults keep one write of a value at every cap at once to about
	// 0.2 s and a batch at MaxBatchNodes to about 0.3-0.5 s, on FerretDB
	// v1.24 over SQLite and PostgreSQL on a busy 2-core machine (see
	// BenchmarkDocumentsValueShape), while arrays of a few thousand items
	// and ordinary documents pass.
	//
	// MaxDocumentNodes caps the JSON values in one document value, each
	// object, array, string, number, boolean and null counting one.
	// Default 10000.
	MaxDocumentNodes int
	// MaxDocumentArrayItems caps the items of any one array in a value.
	// Default 5000.
	MaxDocumentArrayItems int
	// MaxDocumentObjectFields caps the fields of any one object in a
	// value. Default 1000.
	MaxDocumentObjectFields int
	// MaxBatchNodes caps the JSON values of all set values of one batch
	// together (two values at MaxDocumentNodes, or 500 of 40); a batch
	// over it is 413 too_large as a whole, before any backend call.
	// Default 20000.
	MaxBatchNodes int
	// MaxDocumentReads caps the document queries and counts one engine has
	// in flight; a tenant holds at most half of them (at least one), so one
	// tenant's scans cannot take them all. A read queues for a slot within
	// Config.BackendTimeout, then is 503 backend_unavailable. Default 4 on
	// FerretDB (which scans and sorts the caller's collection in memory on
	// every call), 32 on any other server.
	MaxDocumentReads int
	// MaxUploadMemory caps the part buffers of all uploads together, in
	// bytes: each chunked upload past its first MiB (read outside the
	// budget), and each one larger than a single S3 PUT, holds one or two
	// parts (8 MiB each by default) and waits for its first while the
	// budget is spent. The uploads of one tenant hold at most a quarter of
	// it (at least one part). A wait that sees no buffer given back for
	// Config.S3Timeout is answered 503 backend_unavailable. An upload with
	// Content-Length streams without a buffer. At least one part; default
	// 256 MiB.
	MaxUploadMemory int64
	// MaxBodyMemory caps the memory of the JSON request bodies read whole
	// at once (kv, documents, queries, batches, signed-URL and admin
	// requests), in bytes, counted as twice each body's buffer (the body
	// and what decoding it makes). A request reserves it as its body
	// arrives, so a slow sender holds only what it sent, and gives it
	// back when it ends. A tenant holds at most a quarter of it; over its
	// share, or with the budget spent, a request waits within
	// Config.BackendTimeout, then 503 backend_unavailable. Default
	// 128 MiB.
	MaxBodyMemory int64

	// MaxStreamsPerTenant caps the change feeds (realtime.go) one tenant
	// has open on one engine, MaxStreams those of the engine; over either
	// a new one is 429 rate_limited. Each replica counts its own.
	// Defaults 100 and 10000.
	MaxStreamsPerTenant int
	MaxStreams          int
}

func (l *Limits) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = 5 << 30
	}
	if l.MaxBodyMemory <= 0 {
		l.MaxBodyMemory = 128 << 20
	}
	if l.MaxUploadMemory <= 0 {
		l.MaxUploadMemory = 256 << 20
	}
	def(&l.MaxDocumentSize, 1<<20)
	def(&l.MaxDocumentDepth, 32)
	def(&l.MaxDocumentNodes, 10000)
	def(&l.MaxDocumentArrayItems, 5000)
	def(&l.MaxDocumentObjectFields, 1000)
	def(&l.MaxBatchNodes, 20000)
	def(&l.MaxKVValueSize, 1<<20)
	def(&l.MaxBatchOps, 500)
	def(&l.MaxQueryLimit, 1000)
	def(&l.MaxListLimit, 1000)
	def(&l.MaxStreamsPerTenant, defaultMaxStreamsPerTenant)
	def(&l.MaxStreams, defaultMaxStreams)
	if l.BodyGrace <= 0 {
		l.BodyGrace = 20 * time.Second
	}
	if l.MinBodyRate <= 0 {
		l.MinBodyRate = 1024
	}
}

// Engine is the cpod storage engine: an http.Handler serving /v1/...,
// /healthz and /readyz. It is stateless but for short caches of app
// lookups (AppCacheTTL, AppStaleIfError) and of verified tokens
// (AuthConfig.CacheTTL), so any number of replicas can serve the same
// backends. (Without Redis, its rate-limit allowances are kept in process
// too: that is the embedded store, which one process owns.)
type Engine struct {
	cfg         Config
	now         func() time.Time
	log         *slog.Logger
	verifier    *verifier
	adminTokens [][sha256.Size]byte
	apps        *appRegistry
	routes      []route
	cors        *corsPolicy // nil without Config.CORSOrigins
	uploads     *uploadBuffers
	router      []*compiledRoute // routes, compiled (see router.go)
	metrics     *metrics         // nil without Config.Metrics
	docs        *documents       // the documents area, for admin.go
	bodies      *tenantBudget    // Limits.MaxBodyMemory, see readBody
	sql         *sqlStore        // Config.SQL; nil on MongoDB
	kv          kvStore          // Redis, or SQLite with Config.SQL
	limiter     *rateLimiter     // nil without Config.RateLimit
	rt          *realtime        // the change feeds (realtime.go)
	usage       usageStore       // usage and quotas (usage.go)
	quotas      quotaCache       // the quotas, cached (usage.go)
	inflight    inflight         // writes admitted against a quota, not yet accounted (usage.go)
	locks       keyLocks         // one writer per file or document, for usage (usage_files.go)
}

var _ http.Handler = (*Engine)(nil)

// New checks cfg and returns an Engine. It makes no backend call: backends
// may come up later, /readyz tells when they answer.
func New(cfg Config) (*Engine, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if cfg.S3 == nil {
		bad("Config.S3 is required")
	}
	if cfg.Bucket == "" {
		bad("Config.Bucket is required")
	}
	if cfg.Redis != nil && reflect.ValueOf(cfg.Redis).Kind() == reflect.Pointer && reflect.ValueOf(cfg.Redis).IsNil() {
		cfg.Redis = nil // a nil *redis.Client, such as embedded.Backends.Redis on SQLite
	}
	switch {
	case cfg.Mongo != nil && cfg.SQL != nil:
		bad("Config.Mongo and Config.SQL cannot both be set: give either Config.Mongo and Config.Redis, or Config.SQL")
	case cfg.SQL != nil && cfg.Redis != nil:
		bad("Config.Redis must be nil with Config.SQL: the SQLite store holds kv itself")
	case cfg.Mongo != nil && cfg.Redis == nil:
		bad("Config.Redis is required with Config.Mongo")
	case cfg.Mongo == nil && cfg.SQL == nil:
		bad("a store is required: Config.Mongo and Config.Redis, or Config.SQL")
	}
	if cfg.DocumentsCollection == "" {
		cfg.DocumentsCollection = "cpod_documents"
	}
	if cfg.AppsCollection == "" {
		cfg.AppsCollection = "cpod_apps"
	}
	if cfg.DocumentsCollection == cfg.AppsCollection {
		bad("Config.DocumentsCollection and Config.AppsCollection must differ")
	}
	switch cfg.DocumentsLayout {
	case "":
		cfg.DocumentsLayout = DocumentsLayoutAuto
	case DocumentsLayoutAuto, DocumentsLayoutSingle, DocumentsLayoutPartitioned:
	default:
		bad("Config.DocumentsLayout must be %q, %q or %q", DocumentsLayoutAuto, DocumentsLayoutSingle, DocumentsLayoutPartitioned)
	}
	if cfg.RedisKeyPrefix == "" {
		cfg.RedisKeyPrefix = "cpod:"
	}
	if strings.ContainsAny(cfg.RedisKeyPrefix, "{}") {
		bad("Config.RedisKeyPrefix must not contain '{' or '}'")
	}
	if len(cfg.SigningKey) < 32 {
		bad("Config.SigningKey is required and must be at least 32 bytes")
	}
	for i, k := range cfg.Auth.Keys {
		if len(k.Secret) > 0 && len(cfg.SigningKey) > 0 && string(k.Secret) == string(cfg.SigningKey) {
			bad("Config.SigningKey must differ from Config.Auth.Keys[%d].Secret", i)
		}
	}
	for i, t := range cfg.AdminTokens {
		if len(t) < 16 {
			bad("Config.AdminTokens[%d] must be at least 16 bytes", i)
		}
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("Config.PublicURL must be an absolute http(s) URL without query, such as https://api.example.com/storage")
		}
	}
	if cfg.BackendTimeout <= 0 {
		cfg.BackendTimeout = 10 * time.Second
	}
	if cfg.S3Timeout <= 0 {
		cfg.S3Timeout = cfg.BackendTimeout
	}
	switch {
	case cfg.AppCacheTTL == 0:
		cfg.AppCacheTTL = 500 * time.Millisecond
	case cfg.AppCacheTTL > time.Second:
		bad("Config.AppCacheTTL must be at most 1s")
	case cfg.AppCacheTTL < 0:
		cfg.AppCacheTTL = 0
	}
	switch {
	case cfg.AppStaleIfError == 0:
		cfg.AppStaleIfError = 5 * time.Minute
	case cfg.AppStaleIfError > time.Hour:
		bad("Config.AppStaleIfError must be at most 1h")
	case cfg.AppStaleIfError < 0:
		cfg.AppStaleIfError = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for name, f := range cfg.ReadyChecks {
		switch {
		case !readyCheckName.MatchString(name):
			bad("Config.ReadyChecks: %q is not a check name (1 to 32 of a-z, 0-9, '-', '_')", name)
		case name == backendS3 || name == backendMongo || name == backendSQLite || name == backendRedis:
			bad("Config.ReadyChecks: %q is a backend's name", name)
		case f == nil:
			bad("Config.ReadyChecks: %q is nil", name)
		}
	}
	if err := checkCORSOrigins(cfg.CORSOrigins); err != nil {
		bad("Config.%s", err)
	}
	cfg.Limits.setDefaults()
	problems = append(problems, cfg.RateLimit.setDefaults()...)
	if cfg.Limits.MaxDocumentDepth > MaxDocumentDepthCeiling {
		bad("Config.Limits.MaxDocumentDepth must be at most %d (MongoDB nests at most 100 levels, the stored form adds some)", MaxDocumentDepthCeiling)
	}
	var partSize int64
	if cfg.S3 != nil {
		partSize = uploadPartSize(cfg.S3.UploadLimits(), cfg.Limits.MaxFileSize)
		if cfg.Limits.MaxUploadMemory < partSize {
			bad("Config.Limits.MaxUploadMemory must be at least one upload part (%d bytes)", partSize)
		}
	}
	v, err := newVerifier(cfg.Auth, cfg.Now)
	if err != nil {
		bad("Config.%s", err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("storage: invalid config: %s", strings.Join(problems, "; "))
	}
	e := &Engine{cfg: cfg, now: cfg.Now, log: cfg.Logger, verifier: v}
	if cfg.RateLimit.PerSecond > 0 {
		e.limiter = newRateLimiter(cfg.RateLimit, cfg.Redis, cfg.RedisKeyPrefix)
	}
	e.uploads = newUploadBuffers(cfg.Limits.MaxUploadMemory, partSize, cfg.S3Timeout)
	e.bodies = newTenantBudget("request body memory", cfg.Limits.MaxBodyMemory, cfg.Limits.MaxBodyMemory/4)
	for _, t := range cfg.AdminTokens {
		e.adminTokens = append(e.adminTokens, sha256.Sum256([]byte(t)))
	}
	if cfg.SQL != nil {
		e.sql = newSQLStore(cfg.SQL, cfg.Logger)
		e.kv = newSQLiteKV(e.sql, cfg)
		e.usage = &sqliteUsage{s: e.sql}
		e.locks = newLocalLocks()
	} else {
		e.kv = newRedisKV(cfg)
		e.usage = newRedisUsage(cfg)
		e.locks = newRedisLocks(cfg)
	}
	e.quotas.m = map[string]cachedQuota{}
	e.apps = newAppRegistry(cfg, e.sql)
	// Route groups are bound here, in one place; each area file lists its own.
	e.routes = append(e.routes,
		route{"GET", "/healthz", e.handleHealthz},
		route{"GET", "/readyz", e.handleReadyz},
		route{method: "GET", pattern: "/v1/openapi.json", handle: e.handleOpenAPI},
		route{method: "OPTIONS", pattern: "/v1/openapi.json", handle: e.handleOpenAPIPreflight},
	)
	e.routes = append(e.routes, e.appsRoutes()...)
	e.rt = e.newRealtime()
	e.routes = append(e.routes, e.realtimeRoutes()...) // before kv, files and documents: see realtime.go
	e.routes = append(e.routes, e.kvRoutes()...)
	e.routes = append(e.routes, e.filesRoutes()...)
	e.routes = append(e.routes, e.documentsRoutes()...)
	e.routes = append(e.routes, e.adminRoutes()...)
	e.routes = append(e.routes, e.usageRoutes()...)
	e.router = compileRoutes(e.routes)
	if cfg.Metrics != nil {
		if e.metrics, err = newMetrics(cfg.Metrics, e.apps.backend(), cfg.Redis != nil); err != nil {
			return nil, fmt.Errorf("storage: invalid config: %w", err)
		}
		e.metrics.bindRoutes(e.router)
		e.apps.metrics = e.metrics
	}
	e.cors = newCORSPolicy(cfg.CORSOrigins, e.router, e.log)
	return e, nil
}

// route is one endpoint: a method and a pattern of literal segments,
// {name} segments and a final {name...} that takes the rest of the path.
// Patterns are matched against the escaped path and never cleaned, so
// "a/../b" reaches the handler (and is refused there) instead of being
// redirected; values are percent-decoded exactly once.
//
// The pattern also declares the query parameters the route takes, after a
// '?' and separated by '&': "/v1/storage/files?tier&prefix&limit&cursor".
// A pattern without '?' takes none, so a route that declares nothing gets
// the strictest rule. ServeHTTP checks the query before the handler runs:
// every name must be one the route declares, exactly (case-sensitive), and
// given at most once; anything else is 400 invalid_request naming the
// parameters (a signed URL's query is part of its signature: 403
// invalid_signature there). So "?TIER=user" can never fall back silently to
// the default tier.
type route struct {
	method  string
	pattern string
	handle  func(*call) error
}

// call is one request on its way through a handler.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	ctx    context.Context
	reqID  string
	params map[string]string

	// With Config.Metrics: the route taken, the start, the response
	// measured (w is &mw) and the bytes of the request body read.
	rt     *compiledRoute
	start  time.Time
	mw     metricsWriter
	bodyIn int64

	limits *Limits // the engine's, for readBody

	// tenant is the caller's tenant once authorized ("" before, and for
	// the admin API): whose share of the budgets a request takes.
	tenant string
	// as is the location an admin route acts on (admin_browse.go): set
	// only after the admin token was checked, it stands in for the
	// bearer's identity and the ?tier= of the storage handler it calls.
	as *actAs
	// bodies is the engine's body memory budget; held what this request
	// holds of it, given back when the request ends (see readBody).
	bodies         *tenantBudget
	backendTimeout time.Duration // bounds a wait for the budget
	held           int64
	free           []func()
	// detached: a change feed took the connection over and serves it
	// after the handler returned (realtime_idle.go); it records its
	// metrics itself when the stream ends.
	detached bool

	// hdr backs the header values the engine sets on every response
	// (X-Request-Id, and those of json), so that they cost no allocation
	// each: Header.Set allocates a one-string slice per value.
	hdr [5]string
}

// setHeader sets the header key, which must be in canonical form, to the
// value hdr[i] of the call, as Header.Set would (one value, replacing any),
// without allocating. The slice's capacity is 1, so an Add appends to a
// copy and never to the next value.
func (c *call) setHeader(h http.Header, key string, i int, value string) {
	c.hdr[i] = value
	h[key] = c.hdr[i : i+1 : i+1]
}

// ServeHTTP routes a request to its endpoint.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{w: w, r: r, ctx: r.Context(), reqID: requestID(r), limits: &e.cfg.Limits, bodies: e.bodies, backendTimeout: e.cfg.BackendTimeout}
	defer c.releaseBody()
	if e.metrics != nil {
		e.metrics.begin(c)
		w = c.w
		defer e.metrics.end(e, c)
	}
	c.setHeader(w.Header(), "X-Request-Id", 0, c.reqID)
	if e.cors != nil && e.cors.handle(w, r) {
		return // a CORS preflight, answered
	}
	defer func() {
		// A bug must not take the connection down without an answer, nor
		// print a stack to the caller: it is a logged 500 internal.
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			e.writeError(c, &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("panic: %v\n%s", v, debug.Stack())})
		}
	}()
	path := r.URL.EscapedPath()
	var sp spans
	if rt, _ := findRoute(e.router, r.Method, path, &sp); rt != nil {
		c.rt = rt
		params, err := rt.params(path, &sp)
		if err == nil {
			if err = checkQuery(r.URL.RawQuery, rt.query); err != nil && rt.signed {
				err = signatureRefused(c)
			}
		}
		if err == nil {
			c.params = params
			err = rt.handle(c)
		}
		if err != nil {
			e.writeError(c, err)
		}
		return
	}
	if allowed := allowedMethods(e.router, path); len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		e.writeError(c, withStatus(errorf(CodeInvalidRequest, "method %s is not allowed here", r.Method), http.StatusMethodNotAllowed))
		return
	}
	e.writeError(c, unknownEndpoint(r.Method, path))
}

// maxQuotedPath caps the path an unknown_endpoint message quotes.
const maxQuotedPath = 256

// unknownEndpoint answers a request whose path no route matches: 404
// unknown_endpoint, never not_found, which clients read as "this file,
// document or key does not exist" (a base URL with /v1 twice, or a wrong
// prefix, would otherwise read as an empty store).
func unknownEndpoint(method, path string) error {
	if len(path) > maxQuotedPath {
		path = path[:maxQuotedPath] + "..."
	}
	return errorf(CodeUnknownEndpoint, "no endpoint matches %s %s: check the client's base URL, which ends before /v1 (the server's paths start with /v1/storage/, /v1/oauth/ or /v1/admin/)", method, path)
}

// requestID takes a well-formed X-Request-Id from the caller (a proxy or the
// embedder's middleware) or makes one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 {
		ok := true
		for i := 0; i < len(id) && ok; i++ {
			c := id[i]
			ok = c == '-' || c == '_' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		}
		if ok {
			return id
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jsonBufs recycles the buffers of JSON responses; one that grew beyond
// maxPooledJSON (a large listing) is left to the garbage collector.
var jsonBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledJSON = 64 << 10

// json writes v as the JSON response body with the status.
func (c *call) json(status int, v any) error {
	buf := jsonBufs.Get().(*bytes.Buffer)
	defer putJSONBuf(buf)
	// No HTML escaping: signed URLs keep their '&' (not \u0026), and the
	// body is served as application/json with nosniff, never as HTML.
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	h := c.w.Header()
	c.setHeader(h, "Content-Type", 1, "application/json")
	c.setHeader(h, "Cache-Control", 2, "no-store")
	c.setHeader(h, "X-Content-Type-Options", 3, "nosniff")
	c.setHeader(h, "Content-Length", 4, strconv.Itoa(buf.Len()))
	c.w.WriteHeader(status)
	_, _ = c.w.Write(buf.Bytes()) // Write does not retain the bytes (io.Writer)
	return nil
}

func putJSONBuf(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledJSON {
		buf.Reset()
		jsonBufs.Put(buf)
	}
}

// writeError is the one JSON error writer: {"error": code, "message": text}.
// Internal and backend failures are logged with the request id; their causes
// never reach the response.
func (e *Engine) writeError(c *call, err error) {
	ee := toError(err)
	e.metrics.backendError(ee.backend)
	status := ee.HTTPStatus()
	msg := ee.Message
	switch ee.Code {
	case CodeInternal:
		msg = "internal error (request id " + c.reqID + ")"
		e.log.Error("storage: request failed", "request_id", c.reqID, "method", c.r.Method, "code", ee.Code, "err", ee.Err)
	case CodeBackendUnavailable:
		c.w.Header().Set("Retry-After", "1")
		e.log.Warn("storage: backend unavailable", "request_id", c.reqID, "method", c.r.Method, "err", ee.Err)
	case CodeInsufficientStorage:
		// No Retry-After: nothing changes until someone frees space.
		e.log.Error("storage: backend out of space", "request_id", c.reqID, "method", c.r.Method, "backend", ee.backend, "err", ee.Err)
	}
	if msg == "" {
		msg = strings.ReplaceAll(string(ee.Code), "_", " ")
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		// Every 401 and 403, signed URLs' expired and invalid_signature too.
		// A 401 says why (a token's reason, see tokenRefused) in
		// error_description as well, and in the log: never the token.
		challenge := `Bearer error="` + string(ee.Code) + `"`
		if status == http.StatusUnauthorized {
			challenge += `, error_description="` + quotableText(msg) + `"`
			reason := msg
			if ee.logReason != "" {
				reason = ee.logReason
			}
			e.log.Info("storage: token refused", "request_id", c.reqID, "method", c.r.Method, "reason", reason)
		}
		c.w.Header().Set("WWW-Authenticate", challenge)
	}
	if c.r.Method == http.MethodHead {
		// No body to carry the code: Cpod-Error does, so that a client
		// tells a missing key (not_found) from a wrong URL
		// (unknown_endpoint) or a proxy's 404 (no Cpod-Error at all).
		c.w.Header().Set("Cpod-Error", string(ee.Code))
		c.w.Header().Set("X-Content-Type-Options", "nosniff")
		c.w.WriteHeader(status)
		return
	}
	_ = c.json(status, map[string]string{"error": string(ee.Code), "message": msg})
}

// quotableText is s as the quoted value of an RFC 6750 error_description,
// which allows only %x20-21 / %x23-5B / %x5D-7E: a double quote becomes a
// single one, a backslash a slash, and any other byte outside the range a
// question mark.
func quotableText(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c == '"':
			b[i] = '\''
		case c == '\\':
			b[i] = '/'
		case c < 0x20 || c > 0x7e:
			b[i] = '?'
		}
	}
	return string(b)
}

// decodeJSON reads a JSON request body of at most limit bytes into dst:
// exactly one JSON value; for a struct, an object whose field names match
// its json tags exactly (encoding/json alone would accept "VALUE" for
// "value" and let a repeated field win silently), each at most once. Too
// large is 413 too_large, anything malformed 400 invalid_request.
func decodeJSON(c *call, limit int64, dst any) error {
	if c.r.ContentLength > limit {
		return bodyTooLarge(limit)
	}
	b, err := c.readBody(limit)
	if err != nil {
		return jsonError(err)
	}
	return unmarshalStrict(b, dst)
}

func unmarshalStrict(b []byte, dst any) error {
	if err := checkFieldNames(b, dst); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return jsonError(err)
		}
		return errorf(CodeInvalidRequest, "the body must hold a single JSON value")
	}
	return nil
}

// checkFieldNames refuses, in a top-level JSON object decoded into a struct,
// a field name that is not exactly one of the struct's json names, or one
// given twice.
func checkFieldNames(b []byte, dst any) error {
	t := reflect.TypeOf(dst)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	names := map[string]bool{}
	for i := 0; i < t.Elem().NumField(); i++ {
		if name, _, _ := strings.Cut(t.Elem().Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names[name] = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // not an object: Decode reports it
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		if !names[key] {
			return errorf(CodeInvalidRequest, "unknown field %q", key)
		}
		if seen[key] {
			return errorf(CodeInvalidRequest, "field %q is given twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// decodeOptionalJSON is decodeJSON for a body that may also be empty, which
// leaves dst as it is.
func decodeOptionalJSON(c *call, limit int64, dst any) error {
	if c.r.ContentLength > limit {
		return bodyTooLarge(limit)
	}
	b, err := c.readBody(limit)
	if err != nil {
		return jsonError(err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return unmarshalStrict(b, dst)
}

// bodyTooLarge answers a body over limit bytes, known from its
// Content-Length before reading it (so the answer does not wait for a body
// that may never come) or found while reading.
func bodyTooLarge(limit int64) error {
	return errorf(CodeTooLarge, "the request body is larger than %d bytes", limit)
}

func jsonError(err error) error {
	var ee *Error
	if errors.As(err, &ee) {
		return err // the body budget's 503, as it is
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return bodyTooLarge(mbe.Limit)
	}
	if errors.Is(err, io.EOF) {
		return errorf(CodeInvalidRequest, "the request body must be JSON")
	}
	if errors.Is(err, errSlowBody) {
		return errorf(CodeInvalidRequest, "%v", err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// encoding/json's own text names Go types ("Go value of type
		// struct { Key *string ... }"): say it in JSON's words instead.
		got := te.Value
		if got == "bool" {
			got = "boolean"
		}
		if te.Field == "" {
			return errorf(CodeInvalidRequest, "the request body must be %s, not %s", jsonKind(te.Type), article(got))
		}
		return errorf(CodeInvalidRequest, "the field %q must be %s, not %s", te.Field, jsonKind(te.Type), article(got))
	}
	return &Error{Code: CodeInvalidRequest, Message: "malformed JSON body: " + err.Error()}
}

// jsonKind names, in JSON's words, what a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number of at least 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "a JSON value"
}

// article puts "a" or "an" before a JSON kind ("an array", "a number 1.5").
func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// maxQueryNames caps how many refused parameter names an error message
// quotes, and maxQueryName how much of each.
const (
	maxQueryNames = 5
	maxQueryName  = 40
)

// checkQuery checks a raw query against the names a route declares
// ("tier&prefix", see route): each given name must be declared, exactly,
// and given at most once.
func checkQuery(rawQuery, declared string) error {
	if rawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return errorf(CodeInvalidRequest, "the query string is not valid")
	}
	var unknown, repeated []string
	for name, vs := range q {
		switch {
		case !declaresName(declared, name):
			unknown = append(unknown, name)
		case len(vs) > 1:
			repeated = append(repeated, name)
		}
	}
	if len(unknown) == 0 && len(repeated) == 0 {
		return nil
	}
	quote := func(names []string) string {
		sort.Strings(names)
		more := ""
		if len(names) > maxQueryNames {
			names, more = names[:maxQueryNames], ", ..."
		}
		out := make([]string, len(names))
		for i, n := range names {
			if len(n) > maxQueryName {
				n = n[:maxQueryName] + "..."
			}
			out[i] = strconv.Quote(n)
		}
		return strings.Join(out, ", ") + more
	}
	if len(unknown) > 0 {
		takes := "no query parameters"
		if declared != "" {
			takes = "only the query parameters " + strings.ReplaceAll(declared, "&", ", ")
		}
		return errorf(CodeInvalidRequest, "unknown query parameter %s: this endpoint takes %s (names are case-sensitive)", quote(unknown), takes)
	}
	return errorf(CodeInvalidRequest, "the query parameter %s may be given once", quote(repeated))
}

// declaresName reports whether name is one of the '&'-separated names of
// declared.
func declaresName(declared, name string) bool {
	for declared != "" {
		var d string
		d, declared, _ = strings.Cut(declared, "&")
		if d == name {
			return true
		}
	}
	return false
}

// tierParam parses the ?tier= query parameter; it may be given once at most.
// Absent, it is the default (private); given, it must name a tier: an empty
// ?tier= is refused like any other word, not read as the default.
func tierParam(r *http.Request) (Tier, error) {
	v, given, err := queryValue(r, "tier")
	if err != nil {
		return "", err
	}
	if given && v == "" {
		return "", errorf(CodeInvalidRequest, "tier must be private, user or shared")
	}
	return ParseTier(v)
}

// queryParam returns a query parameter given at most once ("" when absent).
func queryParam(r *http.Request, name string) (string, error) {
	v, _, err := queryValue(r, name)
	return v, err
}

// queryValue returns a query parameter given at most once, and whether it
// was given.
func queryValue(r *http.Request, name string) (string, bool, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", false, errorf(CodeInvalidRequest, "the query string is not valid")
	}
	vs := q[name]
	if len(vs) > 1 {
		return "", false, errorf(CodeInvalidRequest, "the query parameter %s may be given once", name)
	}
	if len(vs) == 0 {
		return "", false, nil
	}
	return vs[0], true, nil
}

// validText reports whether s is valid UTF-8 without control characters
// (C0, DEL, C1).
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7F && r <= 0x9F) {
			return false
		}
	}
	return true
}

// backendCtx bounds one Redis or MongoDB call.
func (e *Engine) backendCtx(c *call) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, e.cfg.BackendTimeout)
}

func (e *Engine) handleHealthz(c *call) error {
	return c.json(http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 200 when every backend the engine uses answers (s3
// and mongodb and redis, or s3 and sqlite) and every Config.ReadyChecks
// passes, else 503 naming what failed (never a backend's address). Each
// backend check is a real round trip of the kind requests make, bounded by
// BackendTimeout, and every check runs concurrently, so the answer comes
// within BackendTimeout: the bucket's HEAD, a query on the app registry
// (every request needs it; a proxy such as FerretDB answers ping without
// its storage), and a kv read (a Redis GET; on SQLite a read of the kv
// table, in the same check as the registry's, one database).
func (e *Engine) handleReadyz(c *call) error {
	ctx, cancel := context.WithTimeout(c.ctx, e.cfg.BackendTimeout)
	defer cancel()
	type res struct {
		name  string
		extra bool // a Config.ReadyChecks check
		facts map[string]int64
		err   error
	}
	backends := map[string]func() error{
		"s3": func() error {
			ok, err := e.cfg.S3.BucketExists(ctx, e.cfg.Bucket)
			if err == nil && !ok {
				err = errors.New("bucket does not exist")
			}
			return err
		},
	}
	if e.sql != nil {
		backends[backendSQLite] = func() error {
			if err := e.apps.ping(ctx); err != nil {
				return err
			}
			return e.kv.ping(ctx)
		}
	} else {
		backends[e.apps.backend()] = func() error { return e.apps.ping(ctx) }
		backends[backendRedis] = func() error { return e.kv.ping(ctx) }
	}
	n := len(backends) + len(e.cfg.ReadyChecks)
	ch := make(chan res, n)
	for name, f := range backends {
		go func() { ch <- res{name: name, err: f()} }()
	}
	for name, f := range e.cfg.ReadyChecks {
		go func() {
			facts, err := f(ctx)
			ch <- res{name: name, extra: true, facts: facts, err: err}
		}()
	}
	status := map[string]string{}
	checks := map[string]map[string]any{}
	failed := map[string]string{} // failing extra checks: their messages
	ready := true
	for range n {
		var r res
		select {
		case r = <-ch:
		case <-ctx.Done():
			// A client that ignores its context must not hold the answer.
			select {
			case r = <-ch:
			case <-time.After(10 * time.Millisecond):
			}
		}
		if r.name == "" {
			break
		}
		if r.extra {
			out := map[string]any{}
			for k, v := range r.facts {
				if k != "status" && k != "message" {
					out[k] = v
				}
			}
			out["status"] = "ok"
			if r.err != nil {
				ready = false
				out["status"], out["message"] = "unavailable", r.err.Error()
				failed[r.name] = r.err.Error()
				e.log.Warn("storage: readiness check failed", "request_id", c.reqID, "check", r.name, "err", r.err)
			}
			checks[r.name] = out
			continue
		}
		status[r.name] = "ok"
		if r.err != nil {
			ready = false
			status[r.name] = "unavailable"
			e.log.Warn("storage: readiness check failed", "request_id", c.reqID, "backend", r.name, "err", r.err)
		}
	}
	for name := range backends {
		if status[name] == "" {
			ready = false
			status[name] = "unavailable"
			e.log.Warn("storage: readiness check failed", "request_id", c.reqID, "backend", name, "err", "no answer within the backend timeout")
		}
	}
	for name := range e.cfg.ReadyChecks {
		if checks[name] == nil {
			ready = false
			const msg = "no answer within the backend timeout"
			checks[name] = map[string]any{"status": "unavailable", "message": msg}
			failed[name] = msg
			e.log.Warn("storage: readiness check failed", "request_id", c.reqID, "check", name, "err", msg)
		}
	}
	body := map[string]any{"status": "ok", "backends": status}
	if len(e.cfg.ReadyChecks) > 0 {
		body["checks"] = checks
	}
	if !ready {
		// An error like every other (error, message, Retry-After), with the
		// state of each backend and check beside it.
		var down, why []string
		for name, st := range status {
			if st != "ok" {
				down = append(down, name)
			}
		}
		sort.Strings(down)
		if len(down) > 0 {
			why = append(why, strings.Join(down, ", ")+" unavailable")
		}
		var names []string
		for name := range failed {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			why = append(why, name+": "+failed[name])
		}
		body["error"], body["message"], body["status"] = CodeBackendUnavailable, "not ready: "+strings.Join(why, "; "), "unavailable"
		c.w.Header().Set("Retry-After", "1")
		return c.json(http.StatusServiceUnavailable, body)
	}
	return c.json(http.StatusOK, body)
}
