package cpodtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/embedded"
	"github.com/cpod/storage/internal/rediscount"
)

// Environment variables that replace a fake with a real server. Each test
// server then gets its own Redis key prefix, MongoDB database or S3 bucket,
// removed when the test ends.
const (
	// EnvRedisURL is a Redis URL, such as redis://127.0.0.1:6379/0.
	EnvRedisURL = "CPODTEST_REDIS_URL"
	// EnvRedisAddrs lists the nodes of a Redis Cluster, comma-separated,
	// such as 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002. When set it
	// wins over EnvRedisURL: the engine gets a redis.ClusterClient.
	EnvRedisAddrs = "CPODTEST_REDIS_ADDRS"
	// EnvMongoURI is a MongoDB URI, such as mongodb://127.0.0.1:27017/.
	EnvMongoURI = "CPODTEST_MONGO_URI"
	// EnvS3URL is an S3 endpoint with its keys as user info, such as
	// http://ACCESS_KEY:SECRET_KEY@127.0.0.1:9000 (https for TLS).
	EnvS3URL = "CPODTEST_S3_URL"
	// EnvDocumentsLayout sets the engine's Config.DocumentsLayout, such as
	// "single" to run a suite on FerretDB with the layout used on MongoDB.
	// Default: the engine's default (auto); WithConfig may still change it.
	EnvDocumentsLayout = "CPODTEST_DOCUMENTS_LAYOUT"
	// EnvStore set to "sqlite" runs every server on the embedded SQLite
	// store (documents, apps and kv) instead of FerretDB and miniredis, as
	// WithSQLite does, so a whole suite runs on those drivers. Default:
	// FerretDB (or CPODTEST_MONGO_URI) and miniredis (or
	// CPODTEST_REDIS_URL, CPODTEST_REDIS_ADDRS).
	EnvStore = "CPODTEST_STORE"
)

// Claims describe the identity of a token minted by [Server.Token].
type Claims struct {
	Tenant string
	App    string
	// User is the token's sub; empty makes a client-credentials token.
	User   string
	Scopes []string
	// TTL is the token's lifetime on the server's clock. Default one hour;
	// negative makes an expired token.
	TTL time.Duration
}

// Server is the real engine on an httptest.Server over in-process fakes (or
// real servers, see the Env* variables and options).
type Server struct {
	// URL is the base URL of the engine, such as http://127.0.0.1:port.
	URL string
	// Engine is the engine under test.
	Engine *storage.Engine
	// AdminToken guards /v1/oauth/apps.
	AdminToken string
	// HTTP is the underlying test server.
	HTTP *httptest.Server

	// Backends, handed to the engine.
	S3     *minio.Client
	Bucket string
	Mongo  *mongo.Database       // nil on SQLite
	SQL    *sql.DB               // the SQLite store, with WithSQLite; else nil
	Redis  redis.UniversalClient // nil on SQLite, which holds kv too

	mini      *miniredis.Miniredis
	fakes     *embedded.Backends
	keyPrefix string
	tokenKey  []byte
	offset    *atomic.Int64 // clock offset in nanoseconds, moved by FastForward; shared with replicas
	calls     *counters     // shared with replicas
	cfg       storage.Config
	contract  bool
	t         testing.TB
	appsMu    sync.Mutex
	appsKnown map[string]bool
}

// Option changes how NewServer builds a server.
type Option func(*settings)

type settings struct {
	redisURL, mongoURI, s3URL string
	redisAddrs                []string
	config                    func(*storage.Config)
	logger                    *slog.Logger
	contract                  bool
	sqlite                    bool
}

// WithRedisURL uses a real Redis instead of miniredis. Default: the
// CPODTEST_REDIS_URL variable, else miniredis. It replaces a Redis Cluster
// set by CPODTEST_REDIS_ADDRS or WithRedisAddrs.
func WithRedisURL(u string) Option {
	return func(s *settings) { s.redisURL, s.redisAddrs = u, nil }
}

// WithRedisAddrs uses a Redis Cluster (a redis.ClusterClient on these seed
// nodes, host:port) instead of miniredis. Default: CPODTEST_REDIS_ADDRS,
// comma-separated; it wins over CPODTEST_REDIS_URL. No addresses: no
// cluster.
func WithRedisAddrs(addrs ...string) Option {
	return func(s *settings) {
		s.redisAddrs = slices.Clone(addrs)
		if len(addrs) > 0 {
			s.redisURL = ""
		}
	}
}

// WithMongoURI uses a real MongoDB (or FerretDB) instead of the in-process
// FerretDB on SQLite. Default: CPODTEST_MONGO_URI, else in-process.
func WithMongoURI(u string) Option { return func(s *settings) { s.mongoURI = u } }

// WithS3URL uses a real S3 endpoint instead of the embedded one. Default:
// CPODTEST_S3_URL, else package embedded's S3 on a temporary directory.
func WithS3URL(u string) Option { return func(s *settings) { s.s3URL = u } }

// WithSQLite runs the engine's documents, app registry and kv on the
// embedded SQLite store (storage.Config.SQL, what `go run ./httpserver`
// uses) instead of the in-process FerretDB and miniredis (servers of the
// production drivers). It wins over WithMongoURI, WithRedisURL,
// WithRedisAddrs and their variables. Server.Redis and Miniredis are nil
// then; FastForward moves kv TTLs with the engine's clock, which is the
// store's. Default: the CPODTEST_STORE variable ("sqlite"), else FerretDB
// and miniredis.
func WithSQLite() Option { return func(s *settings) { s.sqlite = true } }

// WithConfig changes the engine's Config before New is called, for instance
// its Limits. Default: no change.
func WithConfig(f func(*storage.Config)) Option { return func(s *settings) { s.config = f } }

// WithLogger sets the engine's logger. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.logger = l } }

// WithContractCheck turns the OpenAPI check of every exchange on or off.
// On, each request and response that reaches the server is validated
// against the engine's OpenAPI document (openapi.json, see
// storage.OpenAPIDocument and internal/openapicheck), and a mismatch fails
// the test: a response whose status, headers or JSON body the document does
// not allow, or a request that the engine accepted (status below 400) but
// the document does not describe. Default on in tests, off in benchmarks
// (it would be part of what they measure).
func WithContractCheck(on bool) Option { return func(s *settings) { s.contract = on } }

// NewServer starts the engine over the fakes and registers its shutdown with
// t.Cleanup. Any setup failure fails the test.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	set := settings{
		redisURL:   os.Getenv(EnvRedisURL),
		redisAddrs: splitAddrs(os.Getenv(EnvRedisAddrs)),
		mongoURI:   os.Getenv(EnvMongoURI),
		s3URL:      os.Getenv(EnvS3URL),
		logger:     slog.New(slog.DiscardHandler),
		contract:   !isBenchmark(t),
		sqlite:     os.Getenv(EnvStore) == "sqlite",
	}
	if len(set.redisAddrs) > 0 {
		set.redisURL = ""
	}
	for _, o := range opts {
		o(&set)
	}
	s := &Server{t: t, appsKnown: map[string]bool{}, offset: new(atomic.Int64), calls: new(counters)}
	id := randomHex(6)
	s.tokenKey = []byte(randomHex(32))
	s.AdminToken = "admin-" + randomHex(16)

	if set.sqlite {
		set.redisURL, set.redisAddrs = "", nil
	}
	s.startFakes(t, set)
	if !set.sqlite {
		s.startRedis(t, set, id)
		s.startMongo(t, set.mongoURI, id)
	}
	s.startS3(t, set.s3URL, id)

	s.keyPrefix = "cpodtest:" + id + ":"
	cfg := storage.Config{
		S3:             s.S3,
		Bucket:         s.Bucket,
		Mongo:          s.Mongo,
		SQL:            s.SQL,
		Redis:          s.Redis,
		RedisKeyPrefix: s.keyPrefix,
		Auth:           storage.AuthConfig{Keys: []storage.Key{{Secret: s.tokenKey}}},
		AdminTokens:    []string{s.AdminToken},
		SigningKey:     []byte(randomHex(32)),
		Logger:         set.logger,
		Now:            s.Now,
		// The engine refuses a value other than its layouts.
		DocumentsLayout: os.Getenv(EnvDocumentsLayout),
	}
	if set.config != nil {
		set.config(&cfg)
	}
	s.cfg, s.contract = cfg, set.contract
	s.serve(t)
	return s
}

// serve starts s's engine on s.cfg and its test server.
func (s *Server) serve(t testing.TB) {
	t.Helper()
	e, err := storage.New(s.cfg)
	if err != nil {
		t.Fatalf("cpodtest: %v", err)
	}
	s.Engine = e
	var h http.Handler = e
	if s.contract {
		h = contractCheck(t, e)
	}
	s.HTTP = httptest.NewServer(h)
	s.URL = s.HTTP.URL
	t.Cleanup(s.HTTP.Close)
}

// NewReplica starts a second engine, as another replica behind a load
// balancer would run it: its own storage.New over the same backends (S3
// bucket, MongoDB database, Redis and key prefix) and the same Config
// (token keys, AdminToken, SigningKey, clock), on its own httptest.Server.
// Nothing in process is shared: each engine keeps its own app and token
// caches. The clock and Calls are shared with s (FastForward on either
// moves both). WithConfig options change the replica's Config only, for
// instance to give it another SigningKey; other options are ignored. Its
// shutdown is registered with t.Cleanup.
func (s *Server) NewReplica(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var set settings
	for _, o := range opts {
		o(&set)
	}
	r := &Server{
		S3: s.S3, Bucket: s.Bucket, Mongo: s.Mongo, SQL: s.SQL, Redis: s.Redis, AdminToken: s.AdminToken,
		mini: s.mini, fakes: s.fakes, keyPrefix: s.keyPrefix, tokenKey: s.tokenKey,
		offset: s.offset, calls: s.calls, cfg: s.cfg, contract: s.contract,
		t: t, appsKnown: map[string]bool{},
	}
	if set.config != nil {
		set.config(&r.cfg)
	}
	r.serve(t)
	return r
}

// Now is the server's clock: real time moved by FastForward.
func (s *Server) Now() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }

// FastForward moves the engine's clock (token and signed URL expiry) and
// the kv store's (TTLs) forward by d: miniredis' clock, or on SQLite the
// engine's own, which the store's TTLs run on. With a real Redis it cannot
// move Redis' clock, so it skips the calling test, naming the reason: call
// it from the test's goroutine.
func (s *Server) FastForward(d time.Duration) {
	if s.mini == nil && s.Redis != nil {
		s.t.Skipf("cpodtest: FastForward needs the in-process miniredis or the SQLite store; this server uses a real Redis (%s or %s)", EnvRedisURL, EnvRedisAddrs)
	}
	s.offset.Add(int64(d))
	if s.mini != nil {
		s.mini.FastForward(d)
	}
}

// CanFastForward reports whether FastForward moves kv TTLs (and so does
// not skip): true on miniredis and on the SQLite store, false on a real
// Redis.
func (s *Server) CanFastForward() bool { return s.mini != nil || s.Redis == nil }

// AdvanceClock moves only the engine's clock (token and signed URL expiry)
// forward by d, not Redis TTLs, so it works with real servers too. Use
// FastForward when key TTLs must move as well.
func (s *Server) AdvanceClock(d time.Duration) { s.offset.Add(int64(d)) }

// Miniredis returns the in-process Redis, or nil when a real Redis or the
// SQLite store is used.
func (s *Server) Miniredis() *miniredis.Miniredis { return s.mini }

// RedisKeys lists the Redis keys of this server's kv data (values, and
// counters' nonce hashes), on miniredis or a real Redis alike: the
// engine's own bookkeeping in Redis (usage, locks, rate limits: keys that
// start with "usage:", "lock:" or "rate:" after the key prefix) is left
// out. On the SQLite store, which keeps kv in its table cpod_kv instead,
// it skips the calling test, naming the reason: call it from the test's
// goroutine.
func (s *Server) RedisKeys(t testing.TB) []string {
	t.Helper()
	if s.Redis == nil {
		t.Skipf("cpodtest: RedisKeys needs Redis; this server keeps kv in the SQLite store (WithSQLite or %s=sqlite)", EnvStore)
	}
	var mu sync.Mutex
	var keys []string
	err := forEachNode(context.Background(), s.Redis, func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, s.keyPrefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			if rest := strings.TrimPrefix(k, s.keyPrefix); strings.HasPrefix(rest, "usage:") || strings.HasPrefix(rest, "lock:") || strings.HasPrefix(rest, "rate:") {
				continue
			}
			mu.Lock()
			keys = append(keys, k)
			mu.Unlock()
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatalf("cpodtest: scan keys: %v", err)
	}
	return keys
}

// forEachNode calls fn with each master of a Redis Cluster (concurrently),
// or once with the client itself: a SCAN sees the keys of one node only.
func forEachNode(ctx context.Context, c redis.UniversalClient, fn func(context.Context, redis.Cmdable) error) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return fn(ctx, n) })
	}
	return fn(ctx, c)
}

// splitAddrs splits a comma-separated list, dropping empty entries.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Token mints a token for the claims, signed with the server's key, valid
// for c.TTL on the server's clock.
func (s *Server) Token(c Claims) string {
	ttl := c.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	now := s.Now()
	claims := jwt.MapClaims{
		"tenantId":  c.Tenant,
		"client_id": c.App,
		"scope":     strings.Join(c.Scopes, " "),
		"iat":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
	}
	if c.User != "" {
		claims["sub"] = c.User
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.tokenKey)
	if err != nil {
		s.t.Fatalf("cpodtest: sign token: %v", err)
	}
	return tok
}

// TokenKey returns the HMAC secret that verifies the server's tokens, for
// tests that mint their own.
func (s *Server) TokenKey() []byte { return append([]byte(nil), s.tokenKey...) }

// RegisterApp registers an app that declares the scopes, through the
// engine's Go API. A failure (for instance a client_id already registered)
// fails the test.
func (s *Server) RegisterApp(t testing.TB, clientID string, scopes ...string) {
	t.Helper()
	if scopes == nil {
		scopes = []string{}
	}
	if _, err := s.Engine.RegisterApp(context.Background(), storage.App{ClientID: clientID, Name: clientID, DeclaredScopes: scopes, AppType: "service"}); err != nil {
		t.Fatalf("cpodtest: register app %q: %v", clientID, err)
	}
	s.appsMu.Lock()
	s.appsKnown[clientID] = true
	s.appsMu.Unlock()
}

// Calls counts the requests the engine sent to each backend so far: S3
// requests, MongoDB commands on the documents collection, Redis commands.
// Tests use it to prove that bad input was refused before any backend call.
// On the SQLite store, Documents and Redis stay 0.
type Calls struct {
	S3, Documents, Redis int64
}

type counters struct {
	s3, documents, redis atomic.Int64
}

// Calls returns the backend calls so far.
func (s *Server) Calls() Calls {
	return Calls{S3: s.calls.s3.Load(), Documents: s.calls.documents.Load(), Redis: s.calls.redis.Load()}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// startFakes starts the in-process backends that no real server replaces,
// through package embedded (the same code as httpserver's defaults), on a
// temporary directory and loopback ports.
func (s *Server) startFakes(t testing.TB, set settings) {
	t.Helper()
	realRedis := set.redisURL != "" || len(set.redisAddrs) > 0
	if realRedis && set.mongoURI != "" && !set.sqlite && set.s3URL != "" {
		return
	}
	mon := &event.CommandMonitor{Started: s.countDocuments}
	b, err := embedded.Start(context.Background(), embedded.Config{
		Loopback:      true,
		KVManualClock: true,
		Logger:        quietLog,
		MongoTimeout:  30 * time.Second,
		MongoMonitor:  mon,
		S3Transport:   func(rt http.RoundTripper) http.RoundTripper { return countingTransport{&s.calls.s3, rt} },
		NoFiles:       set.s3URL != "",
		NoDocuments:   set.mongoURI != "" && !set.sqlite,
		FerretDB:      !set.sqlite,
		NoKV:          realRedis || set.sqlite,
	})
	if err != nil {
		t.Fatalf("cpodtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	s.fakes = b
	s.SQL = b.SQL
}

// countDocuments counts the commands on the documents collection.
func (s *Server) countDocuments(_ context.Context, ev *event.CommandStartedEvent) {
	// The first element of a command names its collection.
	if el, err := ev.Command.IndexErr(0); err == nil {
		if v, ok := el.Value().StringValueOK(); ok && strings.HasPrefix(v, "cpod_documents") {
			s.calls.documents.Add(1)
		}
	}
}

func (s *Server) startRedis(t testing.TB, set settings, id string) {
	t.Helper()
	var c redis.UniversalClient
	switch {
	case len(set.redisAddrs) > 0:
		// The engine's BackendTimeout bounds each call only when go-redis
		// honours context deadlines.
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: set.redisAddrs, ContextTimeoutEnabled: true})
	case set.redisURL != "":
		o, err := redis.ParseURL(set.redisURL)
		if err != nil {
			t.Fatalf("cpodtest: %s: %v", EnvRedisURL, err)
		}
		o.ContextTimeoutEnabled = true
		c = redis.NewClient(o)
	default:
		s.mini = s.fakes.Miniredis
		s.fakes.Redis.AddHook(rediscount.Hook{N: &s.calls.redis})
		s.Redis = s.fakes.Redis
		return
	}
	c.AddHook(rediscount.Hook{N: &s.calls.redis})
	s.Redis = c
	// Cleanups run last-registered first: the keys go before the client.
	t.Cleanup(func() { _ = c.Close() })
	t.Cleanup(func() {
		// Remove this server's keys, on every master of a cluster: the
		// prefix is ours, never user input.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = forEachNode(ctx, c, func(ctx context.Context, n redis.Cmdable) error {
			iter := n.Scan(ctx, 0, "cpodtest:"+id+":*", 1000).Iterator()
			for iter.Next(ctx) {
				n.Del(ctx, iter.Val())
			}
			return iter.Err()
		})
	})
}

// quietLog keeps the fakes' logs out of test output.
var quietLog = slog.New(slog.DiscardHandler)

func (s *Server) startMongo(t testing.TB, mongoURI, id string) {
	t.Helper()
	if mongoURI == "" {
		s.Mongo = s.fakes.Mongo
		return
	}
	dbName := "cpodtest_" + id
	mon := &event.CommandMonitor{Started: s.countDocuments}
	c, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetMonitor(mon).SetTimeout(30 * time.Second))
	if err != nil {
		t.Fatalf("cpodtest: connect MongoDB: %v", err)
	}
	s.Mongo = c.Database(dbName)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Mongo.Drop(ctx)
		_ = c.Disconnect(ctx)
	})
}

// countingTransport counts the requests sent to the S3.
type countingTransport struct {
	n    *atomic.Int64
	next http.RoundTripper
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

func (s *Server) startS3(t testing.TB, s3URL, id string) {
	t.Helper()
	ctx := context.Background()
	if s3URL == "" {
		s.S3, s.Bucket = s.fakes.S3, s.fakes.Bucket
		return
	}
	u, err := url.Parse(s3URL)
	if err != nil || u.Host == "" || u.User == nil {
		t.Fatalf("cpodtest: %s must look like http://ACCESS_KEY:SECRET_KEY@host:port", EnvS3URL)
	}
	secret, _ := u.User.Password()
	c, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(u.User.Username(), secret, ""),
		Secure:    u.Scheme == "https",
		Region:    "us-east-1",
		Transport: countingTransport{&s.calls.s3, http.DefaultTransport},
	})
	if err != nil {
		t.Fatalf("cpodtest: S3 client: %v", err)
	}
	s.S3 = c
	s.Bucket = "cpodtest-" + id
	if err := c.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("cpodtest: create bucket %s: %v", s.Bucket, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for obj := range c.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if obj.Err == nil {
				_ = c.RemoveObject(ctx, s.Bucket, obj.Key, minio.RemoveObjectOptions{})
			}
		}
		for up := range c.ListIncompleteUploads(ctx, s.Bucket, "", true) {
			if up.Err == nil {
				_ = c.RemoveIncompleteUpload(ctx, s.Bucket, up.Key)
			}
		}
		_ = c.RemoveBucket(ctx, s.Bucket)
	})
}
