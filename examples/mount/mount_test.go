package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

const adminToken = "admin-token-0123456789"

// fullEnv is a complete environment; tests change or remove entries.
func fullEnv() map[string]string {
	return map[string]string{
		"ADDR":                 "127.0.0.1:8080",
		"CPOD_S3_ENDPOINT":     "http://127.0.0.1:9000",
		"CPOD_S3_ACCESS_KEY":   "access",
		"CPOD_S3_SECRET_KEY":   "s3-secret-value",
		"CPOD_S3_BUCKET":       "cpod",
		"CPOD_MONGO_URI":       "mongodb://127.0.0.1:27017",
		"CPOD_REDIS_URL":       "redis://:redis-password@127.0.0.1:6379/0",
		"CPOD_JWT_HMAC_SECRET": strings.Repeat("j", 32),
		"CPOD_URL_SIGNING_KEY": strings.Repeat("s", 32),
		"CPOD_ADMIN_TOKENS":    adminToken,
	}
}

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// syncBuffer is a log destination that handlers write to concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMountedEngine runs the program's handler over the backends of a
// cpodtest server: the host app's routes still work, the engine answers
// under /storage-api/ (and only there), and the log has every request but
// no secret.
func TestMountedEngine(t *testing.T) {
	srv := cpodtest.NewServer(t)
	productionStores(t, srv)

	// The listener exists before the handler, so the public URL is known.
	ts := httptest.NewUnstartedServer(nil)
	env := fullEnv()
	env["CPOD_JWT_HMAC_SECRET"] = string(srv.TokenKey()) // so srv.Token mints valid tokens
	env["CPOD_PUBLIC_URL"] = "http://" + ts.Listener.Addr().String() + "/storage-api"
	cfg, err := loadConfig(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	h, err := newServer(cfg, &backends{S3: srv.S3, Bucket: srv.Bucket, Mongo: srv.Mongo, Redis: srv.Redis},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = h
	ts.Start()
	defer ts.Close()

	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	expect := func(method, path, token, body string, wantStatus int, wantBody string) {
		t.Helper()
		status, got := do(method, path, token, body)
		if status != wantStatus || !strings.Contains(got, wantBody) {
			t.Fatalf("%s %s: got %d %q, want %d with %q", method, path, status, got, wantStatus, wantBody)
		}
	}

	// The host app's own route.
	expect("GET", "/hello", "", "", 200, "hello from the host app")

	// The engine's operational endpoints, through the prefix.
	expect("GET", "/storage-api/healthz", "", "", 200, "")
	expect("GET", "/storage-api/readyz", "", "", 200, "")

	// Register an app with the admin API, through the prefix.
	expect("POST", "/storage-api/v1/oauth/apps", adminToken,
		`{"client_id":"app-mount","name":"Mount","declared_scopes":["storage.private.read","storage.private.write"],"app_type":"service"}`,
		201, `"client_id":"app-mount"`)

	// A tenant of its own: with a real Redis (CPODTEST_REDIS_URL) the keys
	// of this engine, prefixed "cpod:", are not cpodtest's to remove.
	claims := cpodtest.Claims{Tenant: "t-" + strconv.FormatInt(time.Now().UnixNano(), 36), App: "app-mount", User: "u1",
		Scopes: []string{"storage.private.read", "storage.private.write"}}
	tok := srv.Token(claims)

	// KV over the raw wire contract, through the prefix.
	expect("PUT", "/storage-api/v1/storage/kv/greeting", tok, `{"value":"hi"}`, 204, "")
	expect("GET", "/storage-api/v1/storage/kv/greeting", tok, "", 200, `"value":"hi"`)
	expect("GET", "/storage-api/v1/storage/kv/greeting", "", "", 401, `"error":"invalid_token"`)
	// The engine is mounted under the prefix only.
	expect("GET", "/v1/storage/kv/greeting", tok, "", 404, "")
	expect("DELETE", "/storage-api/v1/storage/kv/greeting", tok, "", 204, "")

	// The Go SDK with the prefix in its base URL, and a signed URL that
	// works through the prefix thanks to CPOD_PUBLIC_URL.
	c, err := client.New(ts.URL+"/storage-api", client.WithToken(tok))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Storage.Files.Write(ctx, "docs/readme.txt", strings.NewReader("file body"), nil); err != nil {
		t.Fatal(err)
	}
	signed, err := c.Storage.Files.URL(ctx, "docs/readme.txt", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(signed.URL, cfg.PublicURL+"/v1/storage/signed/") {
		t.Fatalf("signed URL %q does not start with the public URL %q", signed.URL, cfg.PublicURL)
	}
	resp, err := http.Get(signed.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "file body" {
		t.Fatalf("GET signed URL: %d %q", resp.StatusCode, body)
	}

	// Close waits for the handlers, so every log line is written.
	ts.Close()
	log := logs.String()
	for _, want := range []string{
		"msg=request method=GET path=/hello status=200",
		"method=GET path=/storage-api/healthz status=200",
		"method=POST path=/storage-api/v1/oauth/apps status=201",
		"method=PUT path=/storage-api/v1/storage/kv/greeting status=204",
		"method=GET path=/storage-api/v1/storage/kv/greeting status=401",
		"method=GET path=/storage-api/v1/storage/signed/",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// Storage lines carry the engine's request id, which its own logs use.
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "path=/storage-api/v1/") && (!strings.Contains(line, "request_id=") || strings.Contains(line, `request_id=""`)) {
			t.Errorf("log line without a request id: %s", line)
		}
	}
	for _, secret := range []string{tok, adminToken, "Bearer", "sig=", string(srv.TokenKey())} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains a secret (%.12s...):\n%s", secret, log)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	env := fullEnv()
	keyFile := filepath.Join(t.TempDir(), "issuer.pem")
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err := os.WriteFile(keyFile, []byte(keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	env["CPOD_JWT_PUBLIC_KEY_FILE"] = keyFile
	env["CPOD_ADMIN_TOKENS"] = adminToken + ", second-admin-token-xyz"

	cfg, err := loadConfig(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.S3Endpoint.Host != "127.0.0.1:9000" || cfg.S3Region != "us-east-1" || cfg.MongoDatabase != "cpod" {
		t.Errorf("endpoint or defaults: %+v", cfg)
	}
	if string(cfg.JWTPublicKeyPEM) != keyPEM || len(cfg.JWTSecret) != 32 {
		t.Errorf("JWT keys not loaded")
	}
	if len(cfg.AdminTokens) != 2 || cfg.AdminTokens[1] != "second-admin-token-xyz" {
		t.Errorf("admin tokens: %q", cfg.AdminTokens)
	}
	if cfg.PublicURL != "http://127.0.0.1:8080/storage-api" {
		t.Errorf("default public URL: %q", cfg.PublicURL)
	}

	// The engine accepts the configuration (New makes no backend call, and
	// connect dials nothing).
	b, err := connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := newServer(cfg, b, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfigMissing(t *testing.T) {
	// Each required variable, alone missing, is named in the error.
	for _, name := range []string{
		"CPOD_S3_ENDPOINT", "CPOD_S3_ACCESS_KEY", "CPOD_S3_SECRET_KEY", "CPOD_S3_BUCKET",
		"CPOD_MONGO_URI", "CPOD_REDIS_URL", "CPOD_URL_SIGNING_KEY", "CPOD_JWT_HMAC_SECRET",
	} {
		env := fullEnv()
		delete(env, name)
		_, err := loadConfig(getenv(env))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: error %v does not name it", name, err)
		}
	}

	// An empty environment reports every problem at once.
	_, err := loadConfig(getenv(nil))
	if err == nil {
		t.Fatal("empty environment accepted")
	}
	for _, name := range []string{"CPOD_S3_ENDPOINT", "CPOD_MONGO_URI", "CPOD_REDIS_URL", "CPOD_JWT_PUBLIC_KEY_FILE", "CPOD_URL_SIGNING_KEY"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}

	// run, what main calls, stops at the same error.
	if err := run(context.Background(), getenv(nil), slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "CPOD_MONGO_URI") {
		t.Errorf("run with an empty environment: %v", err)
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"CPOD_S3_ENDPOINT", "127.0.0.1:9000", "CPOD_S3_ENDPOINT must be an http:// or https:// URL"},
		{"CPOD_S3_ENDPOINT", "http://key:secret@127.0.0.1:9000", "without credentials"},
		{"CPOD_REDIS_URL", "tcp://:redis-password@127.0.0.1:6379", "CPOD_REDIS_URL is not a Redis URL"},
		{"CPOD_JWT_HMAC_SECRET", "short-secret", "CPOD_JWT_HMAC_SECRET must be at least 32 bytes"},
		{"CPOD_URL_SIGNING_KEY", "short-key", "CPOD_URL_SIGNING_KEY must be at least 32 bytes"},
		{"CPOD_ADMIN_TOKENS", "short", "CPOD_ADMIN_TOKENS"},
		{"CPOD_JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem", "CPOD_JWT_PUBLIC_KEY_FILE"},
		{"ADDR", "8080", "ADDR must be host:port"},
	}
	for _, tc := range cases {
		env := fullEnv()
		env[tc.name] = tc.value
		_, err := loadConfig(getenv(env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: error %v, want %q", tc.name, tc.value, err, tc.want)
			continue
		}
		// Never echo a secret.
		for _, secret := range []string{"redis-password", "short-secret", "short-key", "secret@"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s=%q: error repeats a secret: %v", tc.name, tc.value, err)
			}
		}
	}
}

// TestConnect builds the clients from the environment, the way main does,
// and talks to the S3 and Redis fakes of a cpodtest server through them.
func TestConnect(t *testing.T) {
	srv := cpodtest.NewServer(t)
	productionStores(t, srv)
	env := fullEnv()
	env["CPOD_S3_ENDPOINT"] = srv.S3.EndpointURL().String()
	env["CPOD_S3_ACCESS_KEY"], env["CPOD_S3_SECRET_KEY"] = "cpodtest", "cpodtest-secret"
	env["CPOD_S3_BUCKET"] = srv.Bucket
	env["CPOD_MONGO_DATABASE"] = "notes"
	env["CPOD_REDIS_URL"] = os.Getenv(cpodtest.EnvRedisURL)
	if m := srv.Miniredis(); m != nil {
		env["CPOD_REDIS_URL"] = "redis://" + m.Addr() + "/0"
	}
	// With real servers (CPODTEST_* set), use their keys.
	if u, err := url.Parse(os.Getenv(cpodtest.EnvS3URL)); err == nil && u.User != nil {
		env["CPOD_S3_ACCESS_KEY"] = u.User.Username()
		env["CPOD_S3_SECRET_KEY"], _ = u.User.Password()
	}
	cfg, err := loadConfig(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	b, err := connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	rc, ok := b.Redis.(*redis.Client)
	if !ok {
		t.Fatalf("one Redis address gave a %T, want *redis.Client", b.Redis)
	}
	if !rc.Options().ContextTimeoutEnabled {
		t.Error("the Redis client ignores context deadlines")
	}
	ctx := context.Background()
	if err := b.Redis.Ping(ctx).Err(); err != nil {
		t.Errorf("Redis: %v", err)
	}
	if ok, err := b.S3.BucketExists(ctx, b.Bucket); err != nil || !ok {
		t.Errorf("S3 bucket %s: exists %v, %v", b.Bucket, ok, err)
	}
	if b.Mongo.Name() != "notes" {
		t.Errorf("MongoDB database %q", b.Mongo.Name())
	}
}

func TestConnectRedactsMongoPassword(t *testing.T) {
	env := fullEnv()
	env["CPOD_MONGO_URI"] = "mongodb://user:mongo-pass%21@127.0.0.1:notaport/"
	cfg, err := loadConfig(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	_, err = connect(cfg)
	if err == nil {
		t.Fatal("bad MongoDB URI accepted")
	}
	if !strings.Contains(err.Error(), "CPOD_MONGO_URI") || strings.Contains(err.Error(), "mongo-pass") {
		t.Errorf("error %q should name CPOD_MONGO_URI and hide the password", err)
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ msg, uri string }{
		{"dial mongodb://u:p%40ss@db:27017/x failed", "mongodb://u:p%40ss@db:27017/x"},
		{"auth failed for u with p@ss", "mongodb://u:p%40ss@db1:27017,db2:27017/?replicaSet=rs"},
		{"bad uri mongodb+srv://admin:hunter2@cluster.example.com", "mongodb+srv://admin:hunter2@cluster.example.com"},
	} {
		got := redactURL(tc.msg, tc.uri)
		for _, secret := range []string{"p%40ss", "p@ss", "hunter2"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactURL(%q) = %q: still has %q", tc.msg, got, secret)
			}
		}
	}
	if got := redactURL("no secret here", "mongodb://db:27017"); got != "no secret here" {
		t.Errorf("message without user info changed: %q", got)
	}
}

// productionStores skips a test of this program, which mounts the engine
// on MongoDB and Redis, when the cpodtest server runs on the embedded
// SQLite store (CPODTEST_STORE=sqlite) and has neither.
func productionStores(t *testing.T, srv *cpodtest.Server) {
	t.Helper()
	if srv.Mongo == nil || srv.Redis == nil {
		t.Skip("this program mounts the engine on MongoDB and Redis; the cpodtest server runs on the SQLite store")
	}
}
