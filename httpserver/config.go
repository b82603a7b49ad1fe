package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	storage "github.com/cpod/storage"
)

// setting is one configuration value, given by flag, environment variable or
// default, in that order of precedence.
type setting struct {
	flag   string // without the dash
	env    string
	def    string
	kind   string // "string", "bool", "duration", "size", "int", "list"
	secret bool   // never printed; prefer the environment variable
	group  string
	usage  string
}

// settings is the whole configuration reference, in README order. Every
// setting here appears in README.md (a test checks it).
var settings = []setting{
	// Server
	{"addr", "CPOD_ADDR", "127.0.0.1:8080", "string", false, "Server", "host:port to listen on"},
	{"data-dir", "CPOD_DATA_DIR", "./cpod-data", "string", false, "Server", "directory of the embedded backends' data and of generated secrets"},
	{"min-free-space", "CPOD_MIN_FREE_SPACE", "", "size", false, "Server", "/readyz answers 503 while the data directory's disk has less free space than this (bytes, or with KiB, MiB, GiB suffix; 0: never), and reports the free space; with embedded backends only (default: 1% of the disk, at least 64MiB)"},
	{"public-url", "CPOD_PUBLIC_URL", "", "string", false, "Server", "absolute URL the server is reachable at, used in signed download URLs (default: taken from each request)"},
	{"cors-origins", "CPOD_CORS_ORIGINS", "", "list", false, "Server", "comma-separated origins allowed to call /v1/storage/... from a browser (CORS), such as https://app.example.com; * allows any origin (default: none, no CORS headers)"},
	{"tls-cert-file", "CPOD_TLS_CERT_FILE", "", "string", false, "Server", "PEM certificate to serve HTTPS (with -tls-key-file)"},
	{"tls-key-file", "CPOD_TLS_KEY_FILE", "", "string", false, "Server", "PEM private key to serve HTTPS (with -tls-cert-file)"},
	{"log-format", "CPOD_LOG_FORMAT", "text", "string", false, "Server", "log format: text or json"},
	{"log-level", "CPOD_LOG_LEVEL", "info", "string", false, "Server", "log level: debug, info, warn or error"},
	{"read-header-timeout", "CPOD_READ_HEADER_TIMEOUT", "10s", "duration", false, "Server", "time to read a request's headers"},
	{"io-timeout", "CPOD_IO_TIMEOUT", "60s", "duration", false, "Server", "longest stall while reading a request body or writing a response; a transfer that keeps moving may take as long as it needs"},
	{"idle-timeout", "CPOD_IDLE_TIMEOUT", "120s", "duration", false, "Server", "how long an idle keep-alive connection stays open"},
	{"max-header-bytes", "CPOD_MAX_HEADER_BYTES", "65536", "int", false, "Server", "largest request header block, in bytes"},
	{"shutdown-timeout", "CPOD_SHUTDOWN_TIMEOUT", "30s", "duration", false, "Server", "on SIGINT/SIGTERM, how long the stop may take: in-flight requests, then the backends"},
	{"backend-timeout", "CPOD_BACKEND_TIMEOUT", "10s", "duration", false, "Server", "bound on each MongoDB and Redis call"},
	{"s3-timeout", "CPOD_S3_TIMEOUT", "", "duration", false, "Server", "longest S3 wait: for an answer to a call that moves no file bytes, or for the next byte of a transfer; a stalled S3 is then 503 (default: -backend-timeout)"},
	{"app-cache-ttl", "CPOD_APP_CACHE_TTL", "500ms", "duration", false, "Server", "how long this process remembers an app's registration: a change to an app (scopes, deletion) made through another replica applies here after at most this long (0s: every request looks its app up in MongoDB, and -app-stale-if-error has nothing to fall back on; at most 1s)"},
	{"app-stale-if-error", "CPOD_APP_STALE_IF_ERROR", "5m", "duration", false, "Server", "while MongoDB fails, how long an app this process served before is still served as it was (0s: never)"},
	{"metrics-addr", "CPOD_METRICS_ADDR", "", "string", false, "Server", "host:port of a second, plain-HTTP listener that serves GET /metrics in the Prometheus text format, such as 127.0.0.1:9090 (default: off, no metrics)"},

	// Authentication
	{"admin-tokens", "CPOD_ADMIN_TOKENS", "", "list", true, "Authentication", "comma-separated admin tokens for /v1/oauth/apps, at least 16 bytes each (default: one generated in <data-dir>/admin-token)"},
	{"url-signing-key", "CPOD_URL_SIGNING_KEY", "", "string", true, "Authentication", "key of signed download URLs and cursors, at least 32 bytes; every replica needs the same (default: generated in <data-dir>/url-signing-key)"},
	{"jwt-hmac-secret", "CPOD_JWT_HMAC_SECRET", "", "string", true, "Authentication", "HMAC secret (HS256/384/512) that verifies bearer tokens, at least 32 bytes"},
	{"jwt-public-key-file", "CPOD_JWT_PUBLIC_KEY_FILE", "", "string", false, "Authentication", "PEM public key or certificate (RSA, ECDSA, Ed25519) that verifies bearer tokens"},
	{"jwt-jwks-url", "CPOD_JWT_JWKS_URL", "", "string", false, "Authentication", "JWKS URL of the token issuer (https; http only on loopback), refreshed hourly and on an unknown kid"},
	{"jwt-algorithms", "CPOD_JWT_ALGORITHMS", "", "list", false, "Authentication", "algorithms accepted with -jwt-jwks-url (default: RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA)"},
	{"jwt-issuer", "CPOD_JWT_ISSUER", "", "string", false, "Authentication", "required iss of bearer tokens (default: not checked)"},
	{"jwt-audience", "CPOD_JWT_AUDIENCE", "", "string", false, "Authentication", "required aud of bearer tokens (default: not checked)"},
	{"jwt-leeway", "CPOD_JWT_LEEWAY", "0s", "duration", false, "Authentication", "clock skew tolerated on exp and nbf"},
	{"jwt-claim-tenant", "CPOD_JWT_CLAIM_TENANT", "tenantId", "string", false, "Authentication", "claim that carries the tenant"},
	{"jwt-claim-app", "CPOD_JWT_CLAIM_APP", "client_id", "string", false, "Authentication", "claim that carries the app"},
	{"jwt-claim-user", "CPOD_JWT_CLAIM_USER", "sub", "string", false, "Authentication", "claim that carries the user"},
	{"jwt-claim-scope", "CPOD_JWT_CLAIM_SCOPE", "scope", "string", false, "Authentication", "claim that carries the scopes"},
	{"jwt-cache-ttl", "CPOD_JWT_CACHE_TTL", "1s", "duration", false, "Authentication", "how long a verified bearer token is remembered so its signature is not checked again (exp and nbf still are, on every call); a JWKS key removed by the issuer keeps admitting the tokens it verified for that long (0s: never; at most 1m)"},

	// S3
	{"s3-endpoint", "CPOD_S3_ENDPOINT", "", "string", false, "Files (S3)", "S3 endpoint URL, such as https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000; https means TLS (default: embedded, in <data-dir>/files/)"},
	{"s3-access-key", "CPOD_S3_ACCESS_KEY", "", "string", true, "Files (S3)", "S3 access key (required with -s3-endpoint)"},
	{"s3-secret-key", "CPOD_S3_SECRET_KEY", "", "string", true, "Files (S3)", "S3 secret key (required with -s3-endpoint)"},
	{"s3-region", "CPOD_S3_REGION", "us-east-1", "string", false, "Files (S3)", "S3 region"},
	{"s3-bucket", "CPOD_S3_BUCKET", "cpod", "string", false, "Files (S3)", "bucket that holds every tenant's files; it must exist (see -s3-create-bucket)"},
	{"s3-bucket-lookup", "CPOD_S3_BUCKET_LOOKUP", "auto", "string", false, "Files (S3)", "bucket addressing: auto, path or dns"},
	{"s3-ca-file", "CPOD_S3_CA_FILE", "", "string", false, "Files (S3)", "PEM CA bundle trusted for an https S3 endpoint, in addition to the system roots"},
	{"s3-create-bucket", "CPOD_S3_CREATE_BUCKET", "false", "bool", false, "Files (S3)", "create the bucket at start when it does not exist"},
	{"s3-presigned-urls", "CPOD_S3_PRESIGNED_URLS", "false", "bool", false, "Files (S3)", "signed URLs are S3 presigned URLs of -s3-endpoint (which end users must reach) instead of the server's own"},

	// MongoDB
	{"mongo-uri", "CPOD_MONGO_URI", "", "string", true, "Documents (MongoDB)", "MongoDB URI, mongodb:// or mongodb+srv://, with a Redis (default: the embedded SQLite store <data-dir>/cpod.db, which holds documents, apps and kv)"},
	{"mongo-database", "CPOD_MONGO_DATABASE", "cpod", "string", false, "Documents (MongoDB)", "database of the documents and the app registry"},
	{"documents-layout", "CPOD_DOCUMENTS_LAYOUT", "auto", "string", false, "Documents (MongoDB)", "collections that hold the documents: single (one collection, for MongoDB and sharding), partitioned (one per location and collection, for FerretDB) or auto (partitioned on FerretDB, single on MongoDB; a FerretDB whose single collection holds documents keeps single); changing it hides the documents written in the other layout"},

	// Redis
	{"redis-url", "CPOD_REDIS_URL", "", "string", true, "KV (Redis)", "Redis URL, redis://, rediss:// (TLS) or unix://, with a MongoDB (default: the embedded SQLite store <data-dir>/cpod.db)"},
	{"redis-addrs", "CPOD_REDIS_ADDRS", "", "list", false, "KV (Redis)", "comma-separated host:port list instead of -redis-url: two or more make a Cluster client, with -redis-master-name they are Sentinels"},
	{"redis-cluster", "CPOD_REDIS_CLUSTER", "false", "bool", false, "KV (Redis)", "use a Cluster client even with a single -redis-addrs entry (a configuration endpoint)"},
	{"redis-master-name", "CPOD_REDIS_MASTER_NAME", "", "string", false, "KV (Redis)", "Sentinel master name (with -redis-addrs)"},
	{"redis-username", "CPOD_REDIS_USERNAME", "", "string", false, "KV (Redis)", "Redis ACL user (with -redis-addrs)"},
	{"redis-password", "CPOD_REDIS_PASSWORD", "", "string", true, "KV (Redis)", "Redis password (with -redis-addrs)"},
	{"redis-tls", "CPOD_REDIS_TLS", "false", "bool", false, "KV (Redis)", "connect to -redis-addrs with TLS"},
	{"redis-key-prefix", "CPOD_REDIS_KEY_PREFIX", "cpod:", "string", false, "KV (Redis)", "prefix of every Redis key the server writes (on the embedded store: of the keys in a <data-dir>/kv.snapshot an earlier version left, imported on start)"},

	// Limits
	{"max-file-size", "CPOD_MAX_FILE_SIZE", "5GiB", "size", false, "Limits", "largest file (bytes, or with KiB, MiB, GiB suffix)"},
	{"max-document-size", "CPOD_MAX_DOCUMENT_SIZE", "1MiB", "size", false, "Limits", "largest document value"},
	{"max-document-depth", "CPOD_MAX_DOCUMENT_DEPTH", "32", "int", false, "Limits", "deepest nesting of a document value (at most 96)"},
	{"max-kv-value-size", "CPOD_MAX_KV_VALUE_SIZE", "1MiB", "size", false, "Limits", "largest kv value"},
	{"max-document-nodes", "CPOD_MAX_DOCUMENT_NODES", "10000", "int", false, "Limits", "most JSON values in one document value, each object, array, string, number, boolean and null counting one"},
	{"max-document-array-items", "CPOD_MAX_DOCUMENT_ARRAY_ITEMS", "5000", "int", false, "Limits", "most items of any one array in a document value"},
	{"max-document-object-fields", "CPOD_MAX_DOCUMENT_OBJECT_FIELDS", "1000", "int", false, "Limits", "most fields of any one object in a document value"},
	{"max-batch-ops", "CPOD_MAX_BATCH_OPS", "500", "int", false, "Limits", "most operations in one document batch"},
	{"max-batch-nodes", "CPOD_MAX_BATCH_NODES", "20000", "int", false, "Limits", "most JSON values in the set values of one document batch together"},
	{"max-query-limit", "CPOD_MAX_QUERY_LIMIT", "1000", "int", false, "Limits", "most items in one document query page"},
	{"max-list-limit", "CPOD_MAX_LIST_LIMIT", "1000", "int", false, "Limits", "most items in one file listing page"},
	{"max-document-reads", "CPOD_MAX_DOCUMENT_READS", "0", "int", false, "Limits", "document queries and counts in flight at once, a tenant at most half; more wait, then 503 (0: the cores, at least 2, on the embedded SQLite store; 4 on FerretDB; 32 on MongoDB)"},
	{"body-grace", "CPOD_BODY_GRACE", "20s", "duration", false, "Limits", "time a JSON request body (kv, documents, queries, admin) may take before -min-body-rate applies"},
	{"min-body-rate", "CPOD_MIN_BODY_RATE", "1KiB", "size", false, "Limits", "bytes per second a JSON request body must average once -body-grace has passed; a slower one is cut with 400"},
	{"max-body-memory", "CPOD_MAX_BODY_MEMORY", "128MiB", "size", false, "Limits", "memory of the JSON request bodies read at once, counted twice (the body and its decoding; one tenant at most a quarter); a request past it waits, then 503 after the backend timeout"},
	{"max-upload-memory", "CPOD_MAX_UPLOAD_MEMORY", "256MiB", "size", false, "Limits", "part buffers of all uploads together (one tenant at most a quarter); an upload past it waits for a buffer, 503 when none is given back within the S3 timeout"},
	{"rate-limit", "CPOD_RATE_LIMIT", "", "string", false, "Limits", "requests per second of each tenant, and of each app within a tenant, written <n>/s[,burst=<m>], such as 100/s,burst=200 (burst: n rounded up); a request over either is 429 rate_limited with Retry-After (default: off)"},
	{"rate-limit-app", "CPOD_RATE_LIMIT_APP", "", "string", false, "Limits", "a lower limit for each app within its tenant, in the same form, so that no app takes its whole tenant's allowance (needs -rate-limit; default: -rate-limit's)"},
	{"default-quota", "CPOD_DEFAULT_QUOTA", "", "string", false, "Limits", "the quota of every tenant without its own (PUT /v1/admin/tenants/{tenant}/quota), comma-separated <files|documents|kv>.<bytes|count>=<n>, bytes with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB), such as files.bytes=1GiB,files.count=1e5,kv.bytes=64MiB; a write over a limit is 507 quota_exceeded (default: none, every limit unlimited)"},
}

// name names a setting in messages: the variable and the flag.
func (s setting) name() string { return s.env + " (-" + s.flag + ")" }

func lookupSetting(flagName string) setting {
	for _, s := range settings {
		if s.flag == flagName {
			return s
		}
	}
	panic("httpserver: no setting " + flagName)
}

// n names a setting by its flag, for messages.
func n(flagName string) string { return lookupSetting(flagName).name() }

// asymmetricAlgorithms are accepted with a JWKS URL unless -jwt-algorithms
// says otherwise. HMAC algorithms are never accepted with a JWKS: a key that
// verifies them would have to be published.
var asymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// serverConfig is the checked configuration of the server.
type serverConfig struct {
	Addr              string
	DataDir           string
	MinFreeSpace      int64 // negative: embedded.DefaultMinFreeSpace
	PublicURL         string
	CORSOrigins       []string
	TLSCertFile       string
	TLSKeyFile        string
	LogFormat         string
	LogLevel          slog.Level
	ReadHeaderTimeout time.Duration
	IOTimeout         time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	ShutdownTimeout   time.Duration
	BackendTimeout    time.Duration
	S3Timeout         time.Duration // 0: BackendTimeout
	AppCacheTTL       time.Duration // negative: off
	AppStaleIfError   time.Duration // negative: off
	MetricsAddr       string        // empty: no metrics

	// AdminTokens and URLSigningKey are empty when they are to be generated
	// in the data directory.
	AdminTokens   []string
	URLSigningKey string

	// JWT verification. All three empty: the local token secret of the data
	// directory (the token subcommand) is used.
	JWTHMACSecret    string
	JWTPublicKeyPEM  []byte
	JWTPublicKeyFile string
	JWKSURL          string
	JWTAlgorithms    []string
	JWTIssuer        string
	JWTAudience      string
	JWTLeeway        time.Duration
	Claims           storage.ClaimNames
	JWTCacheTTL      time.Duration // negative: off

	// S3: Endpoint empty means embedded.
	S3Endpoint     *url.URL
	S3AccessKey    string
	S3SecretKey    string
	S3Region       string
	S3Bucket       string
	S3BucketLookup string
	S3CAFile       string
	S3CreateBucket bool
	S3Presigned    bool

	// MongoDB: URI empty means embedded.
	MongoURI      string
	MongoDatabase string
	// DocumentsLayout is storage.DocumentsLayoutAuto, Single or Partitioned.
	DocumentsLayout string

	// Redis: URL and Addrs both empty means embedded.
	RedisURL        string
	RedisAddrs      []string
	RedisCluster    bool
	RedisMasterName string
	RedisUsername   string
	RedisPassword   string
	RedisTLS        bool
	RedisKeyPrefix  string

	Limits storage.Limits
	// RateLimit is storage.Config.RateLimit; zero is off.
	RateLimit storage.RateLimit
	// DefaultQuota is storage.Config.DefaultQuota; zero is unlimited.
	DefaultQuota storage.Quota

	// secrets lists every secret value given, to redact them from messages.
	secrets []string
}

// localJWT reports whether bearer tokens are verified with the data
// directory's own secret (no JWT verification configured).
func (c *serverConfig) localJWT() bool {
	return c.JWTHMACSecret == "" && c.JWTPublicKeyFile == "" && c.JWKSURL == ""
}

func (c *serverConfig) embeddedS3() bool    { return c.S3Endpoint == nil }
func (c *serverConfig) embeddedMongo() bool { return c.MongoURI == "" }
func (c *serverConfig) embeddedRedis() bool { return c.RedisURL == "" && len(c.RedisAddrs) == 0 }

// needsDataDir reports whether anything lives in the data directory.
func (c *serverConfig) needsDataDir() bool {
	return c.embeddedS3() || c.embeddedMongo() || c.embeddedRedis() ||
		c.localJWT() || len(c.AdminTokens) == 0 || c.URLSigningKey == ""
}

// redact replaces every secret value in s, a message of a library that may
// quote its input. (Messages of this package never quote a secret.)
func (c *serverConfig) redact(s string) string {
	for _, v := range c.secrets {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// configError lists every problem of a configuration; each names its setting.
type configError struct{ problems []string }

func (e *configError) Error() string {
	return "invalid configuration:\n  - " + strings.Join(e.problems, "\n  - ")
}

// values are the raw settings after flags and environment, by flag name.
type values struct {
	v   map[string]string
	set map[string]bool // given by flag or environment, not defaulted
}

func (v values) given(flagName string) bool { return v.set[flagName] }

// flagValue is a flag.Value that records whether it was set.
type flagValue struct {
	s      *string
	isBool bool
	set    bool
}

func (f *flagValue) String() string {
	if f == nil || f.s == nil {
		return ""
	}
	return *f.s
}
func (f *flagValue) Set(v string) error { *f.s, f.set = v, true; return nil }
func (f *flagValue) IsBoolFlag() bool   { return f.isBool }

// newFlagSet binds the settings whose flag names are in only (all when only
// is nil) to a FlagSet.
func newFlagSet(name string, out io.Writer, only []string) (*flag.FlagSet, map[string]*flagValue) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fvs := map[string]*flagValue{}
	for _, s := range settings {
		if only != nil && !slices.Contains(only, s.flag) {
			continue
		}
		raw := ""
		fv := &flagValue{s: &raw, isBool: s.kind == "bool"}
		fvs[s.flag] = fv
		usage := s.usage + " [$" + s.env + "]"
		if s.def != "" && !strings.Contains(s.usage, "(default") {
			usage += " (default " + s.def + ")"
		}
		if s.secret {
			usage += " (secret: prefer the environment variable)"
		}
		fs.Var(fv, s.flag, usage)
	}
	return fs, fvs
}

// environ is the process environment as the configuration reads it: the
// value of each variable, by name.
type environ map[string]string

// environFrom reads os.Environ's "NAME=value" list.
func environFrom(kv []string) environ {
	env := environ{}
	for _, e := range kv {
		if name, value, ok := strings.Cut(e, "="); ok {
			env[name] = value
		}
	}
	return env
}

func (e environ) get(name string) string { return e[name] }

// envReadOnPurpose are the CPOD_ variables that are not settings of this
// server but that the repository reads on purpose, so a server started in
// the same shell must not refuse them: the clients' (client.FromEnv,
// CpodClient.fromEnv), and those of tests, benchmarks and CI scripts. (The
// CPODTEST_ variables of cpodtest do not start with CPOD_.) A test checks
// that every CPOD_ name the code reads is a setting or listed here.
var envReadOnPurpose = []string{
	"CPOD_API_URL", "CPOD_TOKEN", // the Go client and the JavaScript SDK
	"CPOD_BENCH_LARGE", "CPOD_PAGINATION_DOCS", // Go tests and benchmarks
	"CPOD_QUERY_PROPERTY_DOCS", "CPOD_QUERY_PROPERTY_QUERIES", "CPOD_QUERY_PROPERTY_SEED",
	"CPOD_CI_STATE", "CPOD_CI_CACHE", "CPOD_CI_READY_TIMEOUT", // .ci/services.sh
	"CPOD_SDK_TEST_SERVER", "CPOD_SEED_FILE", "CPOD_CHROMIUM", // sdk/js tests
}

// settingByEnv returns the setting of an environment variable.
func settingByEnv(name string) (setting, bool) {
	for _, s := range settings {
		if s.env == name {
			return s, true
		}
	}
	return setting{}, false
}

// unknownSettings names every CPOD_ variable of env that is no setting (a
// typo, such as ..._ORIGIN for CPOD_CORS_ORIGINS, would otherwise be
// ignored in silence), each with the closest setting.
func (e environ) unknownSettings() []string {
	var problems []string
	for name := range e {
		if !strings.HasPrefix(name, "CPOD_") || slices.Contains(envReadOnPurpose, name) {
			continue
		}
		if _, ok := settingByEnv(name); ok {
			continue
		}
		envs := make([]string, len(settings))
		for i, s := range settings {
			envs[i] = s.env
		}
		near, _ := settingByEnv(closest(name, envs))
		problems = append(problems, fmt.Sprintf("%s is set but names no setting; did you mean %s?", name, near.name()))
	}
	slices.Sort(problems)
	return problems
}

// closest returns the candidate with the fewest single-character edits
// (Levenshtein distance) from s, the first of equals; a candidate that s
// begins (..._HMAC for CPOD_JWT_HMAC_SECRET), or that begins s, wins over
// any other.
func closest(s string, candidates []string) string {
	best, bestD, bestPrefix := "", -1, false
	for _, c := range candidates {
		d, prefix := editDistance(s, c), strings.HasPrefix(c, s) || strings.HasPrefix(s, c)
		if bestD < 0 || prefix && !bestPrefix || prefix == bestPrefix && d < bestD {
			best, bestD, bestPrefix = c, d, prefix
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parseFlags parses args with fs. -h or -help prints the whole usage and
// returns flag.ErrHelp; any other mistake is an error of one line, for an
// unknown flag naming the closest one, instead of the flag package's
// message followed by the whole usage.
func parseFlags(fs *flag.FlagSet, args []string, out io.Writer) error {
	usage := fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return err
	}
	if err == nil {
		return nil
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		return fmt.Errorf("unknown flag -%s; did you mean -%s? (-h lists every flag)", name, closest(name, names))
	}
	return err
}

// resolve applies flag > environment > default to the settings of fvs.
func resolve(fvs map[string]*flagValue, getenv func(string) string) values {
	v := values{v: map[string]string{}, set: map[string]bool{}}
	for _, s := range settings {
		fv, ok := fvs[s.flag]
		if !ok {
			continue
		}
		switch {
		case fv.set:
			v.v[s.flag], v.set[s.flag] = *fv.s, true
		case getenv(s.env) != "":
			v.v[s.flag], v.set[s.flag] = getenv(s.env), true
		default:
			v.v[s.flag] = s.def
		}
	}
	return v
}

// parseConfig reads the server's flags and environment and checks them. A
// configError lists every problem found, an unknown CPOD_ variable included.
func parseConfig(args []string, env environ, out io.Writer) (*serverConfig, error) {
	fs, fvs := newFlagSet("httpserver", out, nil)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: httpserver [flags]\n       httpserver token --tenant T --app A [--user U] --scope S,...\n\n"+
			"Runs cpod storage. With no configuration it listens on 127.0.0.1:8080 with embedded\n"+
			"backends under ./cpod-data. Every flag can also be set by the environment variable shown.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, out); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (subcommands: token)", fs.Arg(0))
	}
	c, err := checkConfig(resolve(fvs, env.get))
	if unknown := env.unknownSettings(); len(unknown) > 0 {
		var ce *configError
		if errors.As(err, &ce) {
			unknown = append(unknown, ce.problems...)
		}
		return nil, &configError{unknown}
	}
	return c, err
}

var (
	bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	claimName  = regexp.MustCompile(`^[A-Za-z0-9_:./-]{1,64}$`)
)

// checkConfig turns raw values into a serverConfig, collecting every problem.
func checkConfig(v values) (*serverConfig, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	c := &serverConfig{}
	for _, s := range settings {
		if s.secret && v.v[s.flag] != "" {
			c.secrets = append(c.secrets, v.v[s.flag])
			if s.kind == "list" {
				c.secrets = append(c.secrets, splitList(v.v[s.flag])...)
			}
			// A URI's password may show up alone in a parser's message.
			if u, err := url.Parse(v.v[s.flag]); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && len(pw) >= 4 {
					c.secrets = append(c.secrets, pw, url.QueryEscape(pw))
				}
			}
		}
	}
	str := func(f string) string { return v.v[f] }
	dur := func(f string, min time.Duration) time.Duration {
		d, err := time.ParseDuration(str(f))
		if err != nil {
			bad("%s: %q is not a duration, such as 30s or 2m", n(f), str(f))
			return 0
		}
		if d < min {
			bad("%s must be at least %s", n(f), min)
		}
		return d
	}
	integer := func(f string, min int64) int64 {
		i, err := strconv.ParseInt(str(f), 10, 64)
		if err != nil || i < min {
			bad("%s must be an integer of at least %d", n(f), min)
			return 0
		}
		return i
	}
	size := func(f string, min int64) int64 {
		i, err := parseSize(str(f))
		var ue unitError
		switch {
		case errors.As(err, &ue):
			bad("%s: %q: the unit %q is not one of KiB, MiB or GiB (powers of 1024; a size is bytes, or a whole number with one of those units, such as 5GiB)", n(f), str(f), string(ue))
		case err != nil || i < min:
			bad("%s must be a size of at least %d bytes, such as 1048576, 64KiB, 16MiB or 5GiB", n(f), min)
		default:
			return i
		}
		return 0
	}
	boolean := func(f string) bool {
		b, err := strconv.ParseBool(str(f))
		if err != nil {
			bad("%s must be true or false", n(f))
		}
		return b
	}
	// onlyWith reports a setting given without the one it belongs to.
	onlyWith := func(f, needs, why string) {
		if v.given(f) {
			bad("%s is set but %s is not; %s", n(f), n(needs), why)
		}
	}

	// Server.
	c.Addr = str("addr")
	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		bad("%s must be host:port, such as 127.0.0.1:8080 or :8080", n("addr"))
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		bad("%s has an invalid port", n("addr"))
	}
	c.DataDir = str("data-dir")
	if c.DataDir == "" {
		bad("%s must not be empty", n("data-dir"))
	}
	c.MinFreeSpace = -1
	if str("min-free-space") != "" {
		c.MinFreeSpace = size("min-free-space", 0)
	}
	c.PublicURL = strings.TrimSuffix(str("public-url"), "/")
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			bad("%s must be an absolute http(s) URL without user info or query, such as https://api.example.com/storage", n("public-url"))
		}
	}
	c.CORSOrigins = splitList(str("cors-origins")) // checked by storage.New
	c.TLSCertFile, c.TLSKeyFile = str("tls-cert-file"), str("tls-key-file")
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("%s and %s must be set together", n("tls-cert-file"), n("tls-key-file"))
	}
	c.LogFormat = str("log-format")
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("%s must be text or json", n("log-format"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(str("log-level"))); err != nil {
		bad("%s must be debug, info, warn or error", n("log-level"))
	}
	c.ReadHeaderTimeout = dur("read-header-timeout", time.Second)
	c.IOTimeout = dur("io-timeout", time.Second)
	c.IdleTimeout = dur("idle-timeout", time.Second)
	c.MaxHeaderBytes = int(integer("max-header-bytes", 4096))
	if c.MaxHeaderBytes > 1<<20 {
		bad("%s must be at most 1048576", n("max-header-bytes"))
	}
	c.ShutdownTimeout = dur("shutdown-timeout", 0)
	c.BackendTimeout = dur("backend-timeout", 100*time.Millisecond)
	if str("s3-timeout") != "" {
		c.S3Timeout = dur("s3-timeout", 100*time.Millisecond)
	}
	if c.AppCacheTTL = dur("app-cache-ttl", 0); c.AppCacheTTL == 0 {
		c.AppCacheTTL = -1 // storage.Config: negative disables, 0 means the default
	} else if c.AppCacheTTL > time.Second {
		bad("%s must be at most 1s", n("app-cache-ttl"))
	}
	if c.AppStaleIfError = dur("app-stale-if-error", 0); c.AppStaleIfError == 0 {
		c.AppStaleIfError = -1 // storage.Config: negative disables, 0 means the default
	} else if c.AppStaleIfError > time.Hour {
		bad("%s must be at most 1h", n("app-stale-if-error"))
	}
	if c.MetricsAddr = str("metrics-addr"); c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
			bad("%s must be host:port, such as 127.0.0.1:9090 or :9090", n("metrics-addr"))
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad("%s has an invalid port", n("metrics-addr"))
		} else if c.MetricsAddr == c.Addr && port != "0" {
			bad("%s must differ from %s", n("metrics-addr"), n("addr"))
		}
	}

	// Authentication.
	if v.given("admin-tokens") {
		c.AdminTokens = splitList(str("admin-tokens"))
		if len(c.AdminTokens) == 0 {
			bad("%s lists no token", n("admin-tokens"))
		}
		for i, t := range c.AdminTokens {
			if len(t) < 16 || strings.ContainsAny(t, " \t") {
				bad("%s: token %d must be at least 16 bytes without spaces", n("admin-tokens"), i+1)
			}
		}
	}
	c.URLSigningKey = str("url-signing-key")
	if c.URLSigningKey != "" && len(c.URLSigningKey) < 32 {
		bad("%s must be at least 32 bytes", n("url-signing-key"))
	}
	c.JWTHMACSecret = str("jwt-hmac-secret")
	c.JWTPublicKeyFile = str("jwt-public-key-file")
	c.JWKSURL = str("jwt-jwks-url")
	var modes []string
	for _, f := range []string{"jwt-hmac-secret", "jwt-public-key-file", "jwt-jwks-url"} {
		if str(f) != "" {
			modes = append(modes, n(f))
		}
	}
	if len(modes) > 1 {
		bad("%s are contradictory: set one way to verify bearer tokens", strings.Join(modes, " and "))
	}
	if c.JWTHMACSecret != "" {
		if len(c.JWTHMACSecret) < 32 {
			bad("%s must be at least 32 bytes", n("jwt-hmac-secret"))
		}
		if c.JWTHMACSecret == c.URLSigningKey {
			bad("%s and %s must differ", n("jwt-hmac-secret"), n("url-signing-key"))
		}
	}
	if c.JWTPublicKeyFile != "" {
		b, err := os.ReadFile(c.JWTPublicKeyFile)
		if err != nil {
			bad("%s: cannot read the file: %v", n("jwt-public-key-file"), errors.Unwrap(err))
		} else if err := checkPublicKeyPEM(b); err != nil {
			bad("%s: %v", n("jwt-public-key-file"), err)
		} else {
			c.JWTPublicKeyPEM = b
		}
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			bad("%s must be an https URL", n("jwt-jwks-url"))
		case u.Scheme == "http" && !loopbackHost(u.Hostname()):
			bad("%s must be https (http is accepted only for a loopback host)", n("jwt-jwks-url"))
		}
	}
	if v.given("jwt-algorithms") {
		if c.JWKSURL == "" {
			bad("%s is set but %s is not; with a secret or a public key the algorithms follow the key", n("jwt-algorithms"), n("jwt-jwks-url"))
		}
		c.JWTAlgorithms = splitList(str("jwt-algorithms"))
		if len(c.JWTAlgorithms) == 0 {
			bad("%s lists no algorithm", n("jwt-algorithms"))
		}
		for _, a := range c.JWTAlgorithms {
			if !slices.Contains(asymmetricAlgorithms, a) {
				bad("%s: %q is not accepted; use some of %s", n("jwt-algorithms"), a, strings.Join(asymmetricAlgorithms, ","))
			}
		}
	} else if c.JWKSURL != "" {
		c.JWTAlgorithms = asymmetricAlgorithms
	}
	c.JWTIssuer, c.JWTAudience = str("jwt-issuer"), str("jwt-audience")
	c.JWTLeeway = dur("jwt-leeway", 0)
	if c.JWTLeeway > 5*time.Minute {
		bad("%s must be at most 5m", n("jwt-leeway"))
	}
	if c.JWTCacheTTL = dur("jwt-cache-ttl", 0); c.JWTCacheTTL == 0 {
		c.JWTCacheTTL = -1 // storage.AuthConfig: negative disables, 0 means the default
	} else if c.JWTCacheTTL > time.Minute {
		bad("%s must be at most 1m", n("jwt-cache-ttl"))
	}
	c.Claims = storage.ClaimNames{Tenant: str("jwt-claim-tenant"), App: str("jwt-claim-app"), User: str("jwt-claim-user"), Scope: str("jwt-claim-scope")}
	for _, f := range []string{"jwt-claim-tenant", "jwt-claim-app", "jwt-claim-user", "jwt-claim-scope"} {
		if !claimName.MatchString(str(f)) {
			bad("%s must be 1 to 64 letters, digits or _:./-", n(f))
		}
	}

	// S3.
	if e := str("s3-endpoint"); e != "" {
		u, err := url.Parse(e)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("%s must be an http:// or https:// URL, such as https://s3.eu-west-1.amazonaws.com", n("s3-endpoint"))
		case u.User != nil:
			bad("%s must not carry credentials: use %s and %s", n("s3-endpoint"), n("s3-access-key"), n("s3-secret-key"))
		case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			bad("%s must be a bare endpoint without path or query, such as https://s3.eu-west-1.amazonaws.com", n("s3-endpoint"))
		default:
			c.S3Endpoint = u
		}
		c.S3AccessKey, c.S3SecretKey = str("s3-access-key"), str("s3-secret-key")
		if c.S3AccessKey == "" {
			bad("%s is required when %s is set", n("s3-access-key"), n("s3-endpoint"))
		}
		if c.S3SecretKey == "" {
			bad("%s is required when %s is set", n("s3-secret-key"), n("s3-endpoint"))
		}
		c.S3CAFile = str("s3-ca-file")
		if c.S3CAFile != "" && c.S3Endpoint != nil && c.S3Endpoint.Scheme != "https" {
			bad("%s is set but %s is not https", n("s3-ca-file"), n("s3-endpoint"))
		}
		c.S3CreateBucket = boolean("s3-create-bucket")
		c.S3Presigned = boolean("s3-presigned-urls")
	} else {
		why := "the embedded S3 needs none"
		onlyWith("s3-access-key", "s3-endpoint", why)
		onlyWith("s3-secret-key", "s3-endpoint", why)
		onlyWith("s3-region", "s3-endpoint", why)
		onlyWith("s3-bucket-lookup", "s3-endpoint", why)
		onlyWith("s3-ca-file", "s3-endpoint", why)
		onlyWith("s3-create-bucket", "s3-endpoint", "the embedded S3 always creates its bucket")
		onlyWith("s3-presigned-urls", "s3-endpoint", "the embedded S3 is not reachable by end users")
	}
	c.S3Region = str("s3-region")
	c.S3Bucket = str("s3-bucket")
	if !bucketName.MatchString(c.S3Bucket) || strings.Contains(c.S3Bucket, "..") {
		bad("%s must be a valid S3 bucket name (3 to 63 lowercase letters, digits, '.' or '-')", n("s3-bucket"))
	}
	c.S3BucketLookup = str("s3-bucket-lookup")
	if !slices.Contains([]string{"auto", "path", "dns"}, c.S3BucketLookup) {
		bad("%s must be auto, path or dns", n("s3-bucket-lookup"))
	}

	// MongoDB.
	c.MongoURI = str("mongo-uri")
	if c.MongoURI != "" {
		if !strings.HasPrefix(c.MongoURI, "mongodb://") && !strings.HasPrefix(c.MongoURI, "mongodb+srv://") {
			bad("%s must start with mongodb:// or mongodb+srv://", n("mongo-uri"))
		} else if err := options.Client().ApplyURI(c.MongoURI).Validate(); err != nil {
			bad("%s is not a valid MongoDB URI: %s", n("mongo-uri"), c.redact(err.Error()))
		}
	}
	c.MongoDatabase = str("mongo-database")
	if c.MongoDatabase == "" || len(c.MongoDatabase) > 63 || strings.ContainsAny(c.MongoDatabase, "/\\. \"$*<>:|?\x00") {
		bad("%s must be 1 to 63 characters without /\\. \"$*<>:|?", n("mongo-database"))
	}
	c.DocumentsLayout = str("documents-layout")
	if !slices.Contains([]string{storage.DocumentsLayoutAuto, storage.DocumentsLayoutSingle, storage.DocumentsLayoutPartitioned}, c.DocumentsLayout) {
		bad("%s must be auto, single or partitioned", n("documents-layout"))
	}

	// Redis.
	c.RedisURL = str("redis-url")
	c.RedisAddrs = splitList(str("redis-addrs"))
	c.RedisCluster = boolean("redis-cluster")
	c.RedisMasterName = str("redis-master-name")
	c.RedisUsername, c.RedisPassword = str("redis-username"), str("redis-password")
	c.RedisTLS = boolean("redis-tls")
	switch {
	case c.RedisURL != "" && v.given("redis-addrs"):
		bad("%s and %s are contradictory: set one", n("redis-url"), n("redis-addrs"))
	case c.RedisURL != "":
		if !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") && !strings.HasPrefix(c.RedisURL, "unix://") {
			bad("%s must start with redis://, rediss:// or unix://", n("redis-url"))
		} else if _, err := redis.ParseURL(c.RedisURL); err != nil {
			bad("%s is not a valid Redis URL: %s", n("redis-url"), c.redact(err.Error()))
		}
		for _, f := range []string{"redis-cluster", "redis-master-name", "redis-username", "redis-password", "redis-tls"} {
			if v.given(f) {
				bad("%s applies to %s only; with %s put it in the URL or use %s", n(f), n("redis-addrs"), n("redis-url"), n("redis-addrs"))
			}
		}
	case v.given("redis-addrs"):
		if len(c.RedisAddrs) == 0 {
			bad("%s lists no address", n("redis-addrs"))
		}
		for _, a := range c.RedisAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("%s: %q is not host:port", n("redis-addrs"), a)
			}
		}
		if c.RedisMasterName != "" && c.RedisCluster {
			bad("%s and %s are contradictory", n("redis-master-name"), n("redis-cluster"))
		}
	default:
		why := "the embedded store needs none"
		for _, f := range []string{"redis-cluster", "redis-master-name", "redis-username", "redis-password", "redis-tls"} {
			onlyWith(f, "redis-addrs", why)
		}
	}
	c.RedisKeyPrefix = str("redis-key-prefix")
	if c.RedisKeyPrefix == "" || strings.ContainsAny(c.RedisKeyPrefix, "{}") {
		bad("%s must be non-empty without '{' or '}'", n("redis-key-prefix"))
	}
	// The stores come as a set: MongoDB and Redis, or the embedded SQLite
	// store, which holds documents, apps and kv in one database.
	switch {
	case !c.embeddedMongo() && c.embeddedRedis():
		bad("%s needs a Redis for kv as well (%s or %s): MongoDB and Redis go together; without %s, documents, apps and kv live in the embedded SQLite store", n("mongo-uri"), n("redis-url"), n("redis-addrs"), n("mongo-uri"))
	case c.embeddedMongo() && !c.embeddedRedis():
		which := n("redis-url")
		if c.RedisURL == "" {
			which = n("redis-addrs")
		}
		bad("%s needs %s as well: MongoDB and Redis go together; without both, documents, apps and kv live in the embedded SQLite store", which, n("mongo-uri"))
	}

	if v.given("min-free-space") && !c.embeddedS3() && !c.embeddedMongo() && !c.embeddedRedis() {
		bad("%s is set but no embedded backend keeps data in %s: the free space of real backends is theirs to watch", n("min-free-space"), n("data-dir"))
	}

	// Limits.
	c.Limits = storage.Limits{
		MaxFileSize:      size("max-file-size", 1),
		MaxDocumentSize:  int(size("max-document-size", 64)),
		MaxDocumentDepth: int(integer("max-document-depth", 1)),
		MaxKVValueSize:   int(size("max-kv-value-size", 64)),
		MaxBatchOps:      int(integer("max-batch-ops", 1)),
		MaxQueryLimit:    int(integer("max-query-limit", 1)),
		MaxListLimit:     int(integer("max-list-limit", 1)),
		MaxUploadMemory:  size("max-upload-memory", 8<<20), // one upload part (storage.New checks it too)
		MaxBodyMemory:    size("max-body-memory", 1<<20),
	}
	// The structure caps of a document value; the engine reads 0 as its
	// default, so 0 is refused rather than silently becoming the default.
	c.Limits.MaxDocumentNodes = int(integer("max-document-nodes", 1))
	c.Limits.MaxDocumentArrayItems = int(integer("max-document-array-items", 1))
	c.Limits.MaxDocumentObjectFields = int(integer("max-document-object-fields", 1))
	c.Limits.MaxBatchNodes = int(integer("max-batch-nodes", 1))
	c.Limits.MaxDocumentReads = int(integer("max-document-reads", 0)) // 0: the backend's default
	c.Limits.BodyGrace = dur("body-grace", time.Second)
	c.Limits.MinBodyRate = size("min-body-rate", 1)
	if c.Limits.MaxDocumentDepth > storage.MaxDocumentDepthCeiling {
		bad("%s must be at most %d (MongoDB's nesting limit)", n("max-document-depth"), storage.MaxDocumentDepthCeiling)
	}
	if c.Limits.MaxDocumentSize > 16<<20-64<<10 {
		bad("%s must be below 16MiB (the MongoDB document limit)", n("max-document-size"))
	}

	if rl := str("rate-limit"); rl != "" {
		var err error
		if c.RateLimit.PerSecond, c.RateLimit.Burst, err = parseRateLimit(rl); err != nil {
			bad("%s: %v", n("rate-limit"), err)
		}
		if app := str("rate-limit-app"); app != "" {
			if c.RateLimit.AppPerSecond, c.RateLimit.AppBurst, err = parseRateLimit(app); err != nil {
				bad("%s: %v", n("rate-limit-app"), err)
			}
		}
	} else {
		onlyWith("rate-limit-app", "rate-limit", "the app's limit applies within its tenant's")
	}

	if q := str("default-quota"); q != "" {
		var err error
		if c.DefaultQuota, err = storage.ParseQuota(q); err != nil {
			bad("%s: %v", n("default-quota"), err)
		}
	}

	if len(problems) > 0 {
		return nil, &configError{problems}
	}
	return c, nil
}

// rateLimitForm is <n>/s[,burst=<m>]: n a decimal number, m a whole
// number; spaces are allowed around the comma and at the ends.
var rateLimitForm = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)/s\s*(?:,\s*burst=([0-9]+))?\s*$`)

// parseRateLimit reads a rate limit written <n>/s[,burst=<m>], such as
// 100/s or 100/s,burst=200, within the bounds of storage.RateLimit. A burst
// not given is 0 (the engine's default: n rounded up).
func parseRateLimit(s string) (perSecond float64, burst int, err error) {
	m := rateLimitForm.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("%q is not <n>/s[,burst=<m>], such as 100/s or 100/s,burst=200 (requests per second, and how many at once)", s)
	}
	perSecond, err = strconv.ParseFloat(m[1], 64)
	if err != nil || perSecond < 0.001 || perSecond > 1e6 {
		return 0, 0, fmt.Errorf("%q: the rate must be from 0.001/s to 1000000/s", s)
	}
	if m[2] != "" {
		b, err := strconv.Atoi(m[2])
		if err != nil || b < 1 || b > 1_000_000 {
			return 0, 0, fmt.Errorf("%q: the burst must be from 1 to 1000000", s)
		}
		burst = b
	}
	return perSecond, burst, nil
}

// init checks that asymmetricAlgorithms stays in step with the jwt package.
func init() {
	for _, a := range asymmetricAlgorithms {
		if jwt.GetSigningMethod(a) == nil {
			panic("httpserver: unknown JWT algorithm " + a)
		}
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// unitError is a size whose number is followed by a unit other than KiB,
// MiB or GiB (5GB, 5G, 5gib, 5 GiB): the unit is the mistake.
type unitError string

func (u unitError) Error() string { return fmt.Sprintf("unit %q is not KiB, MiB or GiB", string(u)) }

// parseSize parses a byte count with an optional KiB, MiB or GiB suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
	switch unit := s[digits:]; unit {
	case "":
	case "KiB":
		mult = 1 << 10
	case "MiB":
		mult = 1 << 20
	case "GiB":
		mult = 1 << 30
	default:
		if digits == 0 || strings.ContainsAny(unit[:1], ".,") {
			return 0, errors.New("not a size") // no number, or not a whole one
		}
		return 0, unitError(unit)
	}
	s = s[:digits]
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || i < 0 || i > (1<<62)/mult {
		return 0, errors.New("not a size")
	}
	return i * mult, nil
}

// checkPublicKeyPEM checks that b holds a public key the engine can use.
func checkPublicKeyPEM(b []byte) error {
	return storage.Key{PublicKeyPEM: b}.Validate()
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
