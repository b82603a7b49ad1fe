package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	storage "github.com/cpod/storage"
)

func envFunc(env map[string]string) environ { return env }

// TestConfigDefaults: no configuration is the embedded newcomer setup.
func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig(nil, envFunc(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./cpod-data" || c.LogFormat != "text" {
		t.Errorf("defaults: addr %q, data dir %q, log format %q", c.Addr, c.DataDir, c.LogFormat)
	}
	if !c.embeddedS3() || !c.embeddedMongo() || !c.embeddedRedis() || !c.localJWT() || !c.needsDataDir() {
		t.Errorf("defaults are not all embedded: %+v", c)
	}
	if c.ShutdownTimeout != 30*time.Second || c.ReadHeaderTimeout != 10*time.Second || c.IOTimeout != time.Minute || c.MaxHeaderBytes != 65536 {
		t.Errorf("server timeouts: %+v", c)
	}
	if c.Limits.MaxFileSize != 5<<30 || c.Limits.MaxDocumentSize != 1<<20 || c.Limits.MaxUploadMemory != 256<<20 {
		t.Errorf("limits: %+v", c.Limits)
	}
	if c.S3Timeout != 0 || c.AppStaleIfError != 5*time.Minute || c.AppCacheTTL != 500*time.Millisecond {
		t.Errorf("S3 timeout %v (0: the backend timeout), app stale-if-error %v, app cache %v", c.S3Timeout, c.AppStaleIfError, c.AppCacheTTL)
	}
	if c.MinFreeSpace >= 0 {
		t.Errorf("min free space %d, want negative (embedded.DefaultMinFreeSpace: 1%% of the disk, at least 64 MiB)", c.MinFreeSpace)
	}
}

// TestConfigMinFreeSpace: -min-free-space / CPOD_MIN_FREE_SPACE is a size
// like the others, 0 included (report, never unready), and only makes
// sense with an embedded backend in the data directory.
func TestConfigMinFreeSpace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want int64
	}{
		{[]string{"-min-free-space", "16MiB"}, nil, 16 << 20},
		{nil, map[string]string{"CPOD_MIN_FREE_SPACE": "1GiB"}, 1 << 30},
		{[]string{"-min-free-space=0"}, nil, 0},
		{[]string{"-min-free-space", "4096"}, map[string]string{"CPOD_MIN_FREE_SPACE": "1GiB"}, 4096},
	} {
		c, err := parseConfig(tc.args, envFunc(tc.env), io.Discard)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if c.MinFreeSpace != tc.want {
			t.Errorf("%v %v: %d, want %d", tc.args, tc.env, c.MinFreeSpace, tc.want)
		}
	}
	if _, err := parseConfig([]string{"-min-free-space", "64MB"}, envFunc(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "CPOD_MIN_FREE_SPACE (-min-free-space): \"64MB\"") {
		t.Errorf("64MB: %v", err)
	}
	realOnly := map[string]string{
		"CPOD_S3_ENDPOINT": "http://127.0.0.1:9000", "CPOD_S3_ACCESS_KEY": "k", "CPOD_S3_SECRET_KEY": "s",
		"CPOD_MONGO_URI": "mongodb://127.0.0.1:27017", "CPOD_REDIS_URL": "redis://127.0.0.1:6379", "CPOD_MIN_FREE_SPACE": "1GiB",
	}
	if _, err := parseConfig(nil, envFunc(realOnly), io.Discard); err == nil || !strings.Contains(err.Error(), "CPOD_MIN_FREE_SPACE (-min-free-space) is set but no embedded backend") {
		t.Errorf("with real backends only: %v", err)
	}
}

// TestConfigEngineBounds: the engine's S3 bound, stale-if-error window and
// upload memory budget reach storage.Config as set; 0s turns the stale
// fallback off (the engine reads 0 as its default, so it becomes negative).
func TestConfigEngineBounds(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]string{"-s3-timeout", "2s", "-app-stale-if-error", "0s", "-max-upload-memory", "64MiB"}, envFunc(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.S3Timeout != 2*time.Second || c.AppStaleIfError >= 0 || c.Limits.MaxUploadMemory != 64<<20 {
		t.Errorf("S3 timeout %v, stale-if-error %v, upload memory %d", c.S3Timeout, c.AppStaleIfError, c.Limits.MaxUploadMemory)
	}
	for args, want := range map[string]string{
		"-s3-timeout=10ms":        "CPOD_S3_TIMEOUT (-s3-timeout) must be at least 100ms",
		"-app-stale-if-error=2h":  "CPOD_APP_STALE_IF_ERROR (-app-stale-if-error) must be at most 1h",
		"-max-upload-memory=1MiB": "CPOD_MAX_UPLOAD_MEMORY (-max-upload-memory) must be a size of at least 8388608 bytes",
		"-app-stale-if-error=-1m": "CPOD_APP_STALE_IF_ERROR (-app-stale-if-error) must be at least 0s",
		"-max-document-depth=97":  "CPOD_MAX_DOCUMENT_DEPTH (-max-document-depth) must be at most 96",
	} {
		if _, err := parseConfig([]string{args}, envFunc(nil), io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestConfigEngineOptions: the verified-token cache, the documents layout
// and the structure caps of document values default to the engine's
// documented defaults (AuthConfig.CacheTTL, Config.DocumentsLayout, Limits),
// and each is read from its flag and from its variable into the field of
// storage.AuthConfig, Config or Limits it sets. The engine reads a zero
// CacheTTL as its default, so 0s (off) reaches it as a negative one.
func TestConfigEngineOptions(t *testing.T) {
	t.Parallel()
	cacheTTL := func(c *serverConfig) any {
		a, err := authConfig(c, strings.Repeat("s", 32), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a.CacheTTL
	}
	c, err := parseConfig(nil, envFunc(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := cacheTTL(c); got != time.Second || c.DocumentsLayout != storage.DocumentsLayoutAuto {
		t.Errorf("defaults: token cache %v, documents layout %q; want 1s, auto", got, c.DocumentsLayout)
	}
	if l := c.Limits; l.MaxDocumentNodes != 10000 || l.MaxDocumentArrayItems != 5000 || l.MaxDocumentObjectFields != 1000 || l.MaxBatchNodes != 20000 ||
		l.MaxDocumentReads != 0 || l.BodyGrace != 20*time.Second || l.MinBodyRate != 1024 {
		t.Errorf("default structure caps: %+v", l)
	}
	for _, tc := range []struct {
		flag, value string
		got         func(*serverConfig) any
		want        any
	}{
		{"jwt-cache-ttl", "30s", cacheTTL, 30 * time.Second},
		{"jwt-cache-ttl", "1m", cacheTTL, time.Minute},
		{"jwt-cache-ttl", "250ms", cacheTTL, 250 * time.Millisecond},
		{"jwt-cache-ttl", "0s", cacheTTL, time.Duration(-1)},
		{"app-cache-ttl", "1s", func(c *serverConfig) any { return c.AppCacheTTL }, time.Second},
		{"app-cache-ttl", "50ms", func(c *serverConfig) any { return c.AppCacheTTL }, 50 * time.Millisecond},
		{"app-cache-ttl", "0s", func(c *serverConfig) any { return c.AppCacheTTL }, time.Duration(-1)},
		{"documents-layout", "single", func(c *serverConfig) any { return c.DocumentsLayout }, storage.DocumentsLayoutSingle},
		{"documents-layout", "partitioned", func(c *serverConfig) any { return c.DocumentsLayout }, storage.DocumentsLayoutPartitioned},
		{"documents-layout", "auto", func(c *serverConfig) any { return c.DocumentsLayout }, storage.DocumentsLayoutAuto},
		{"max-document-nodes", "7", func(c *serverConfig) any { return c.Limits.MaxDocumentNodes }, 7},
		{"max-document-array-items", "3", func(c *serverConfig) any { return c.Limits.MaxDocumentArrayItems }, 3},
		{"max-document-object-fields", "2", func(c *serverConfig) any { return c.Limits.MaxDocumentObjectFields }, 2},
		{"max-batch-nodes", "6", func(c *serverConfig) any { return c.Limits.MaxBatchNodes }, 6},
		{"max-batch-nodes", "1", func(c *serverConfig) any { return c.Limits.MaxBatchNodes }, 1},
		{"max-document-reads", "2", func(c *serverConfig) any { return c.Limits.MaxDocumentReads }, 2},
		{"max-document-reads", "0", func(c *serverConfig) any { return c.Limits.MaxDocumentReads }, 0},
		{"body-grace", "5s", func(c *serverConfig) any { return c.Limits.BodyGrace }, 5 * time.Second},
		{"min-body-rate", "64KiB", func(c *serverConfig) any { return c.Limits.MinBodyRate }, int64(64 << 10)},
		{"min-body-rate", "100", func(c *serverConfig) any { return c.Limits.MinBodyRate }, int64(100)},
	} {
		env := lookupSetting(tc.flag).env
		for how, in := range map[string]struct {
			args []string
			env  map[string]string
		}{
			"flag":     {[]string{"-" + tc.flag, tc.value}, nil},
			"variable": {nil, map[string]string{env: tc.value}},
		} {
			c, err := parseConfig(in.args, envFunc(in.env), io.Discard)
			if err != nil {
				t.Errorf("%s %s=%s: %v", how, tc.flag, tc.value, err)
				continue
			}
			if got := tc.got(c); got != tc.want {
				t.Errorf("%s %s=%s: got %v, want %v", how, tc.flag, tc.value, got, tc.want)
			}
		}
	}
}

// TestConfigEngineOptionsRefused: a value the engine would refuse, or would
// read as something other than what the operator wrote (0 as its default,
// "" as auto), stops the server with one message naming the setting, from
// the flag and from the variable alike. (An empty variable is unset.)
func TestConfigEngineOptionsRefused(t *testing.T) {
	t.Parallel()
	const (
		ttl    = "CPOD_JWT_CACHE_TTL (-jwt-cache-ttl)"
		layout = "CPOD_DOCUMENTS_LAYOUT (-documents-layout) must be auto, single or partitioned"
	)
	for _, tc := range []struct{ flag, value, want string }{
		{"jwt-cache-ttl", "2m", ttl + " must be at most 1m"},
		{"jwt-cache-ttl", "1m0.001s", ttl + " must be at most 1m"},
		{"jwt-cache-ttl", "-1s", ttl + " must be at least 0s"},
		{"jwt-cache-ttl", "5", ttl + `: "5" is not a duration`},
		{"app-cache-ttl", "2s", "CPOD_APP_CACHE_TTL (-app-cache-ttl) must be at most 1s"},
		{"app-cache-ttl", "1.001s", "CPOD_APP_CACHE_TTL (-app-cache-ttl) must be at most 1s"},
		{"app-cache-ttl", "-1ms", "CPOD_APP_CACHE_TTL (-app-cache-ttl) must be at least 0s"},
		{"documents-layout", "sharded", layout},
		{"documents-layout", "Single", layout},
		{"documents-layout", "single ", layout},
		{"documents-layout", "", layout},
		{"max-document-nodes", "0", "CPOD_MAX_DOCUMENT_NODES (-max-document-nodes) must be an integer of at least 1"},
		{"max-document-nodes", "1e4", "CPOD_MAX_DOCUMENT_NODES (-max-document-nodes) must be an integer of at least 1"},
		{"max-document-array-items", "-1", "CPOD_MAX_DOCUMENT_ARRAY_ITEMS (-max-document-array-items) must be an integer of at least 1"},
		{"max-document-object-fields", "ten", "CPOD_MAX_DOCUMENT_OBJECT_FIELDS (-max-document-object-fields) must be an integer of at least 1"},
		{"max-batch-nodes", "0", "CPOD_MAX_BATCH_NODES (-max-batch-nodes) must be an integer of at least 1"},
		{"max-document-reads", "-1", "CPOD_MAX_DOCUMENT_READS (-max-document-reads) must be an integer of at least 0"},
		{"body-grace", "500ms", "CPOD_BODY_GRACE (-body-grace) must be at least 1s"},
		{"min-body-rate", "0", "CPOD_MIN_BODY_RATE (-min-body-rate) must be a size of at least 1 bytes"},
		{"max-batch-nodes", "99999999999999999999", "CPOD_MAX_BATCH_NODES (-max-batch-nodes) must be an integer of at least 1"},
	} {
		ins := map[string]struct {
			args []string
			env  map[string]string
		}{"flag": {[]string{"-" + tc.flag + "=" + tc.value}, nil}}
		if tc.value != "" {
			ins["variable"] = struct {
				args []string
				env  map[string]string
			}{nil, map[string]string{lookupSetting(tc.flag).env: tc.value}}
		}
		for how, in := range ins {
			_, err := parseConfig(in.args, envFunc(in.env), io.Discard)
			var ce *configError
			if !errors.As(err, &ce) || len(ce.problems) != 1 || !strings.Contains(ce.problems[0], tc.want) {
				t.Errorf("%s %s=%q: %v, want the one problem %q", how, tc.flag, tc.value, err, tc.want)
			}
		}
	}
}

// TestConfigPrecedence: a flag beats the environment, which beats the default.
func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	env := envFunc(map[string]string{"CPOD_ADDR": "127.0.0.1:9000", "CPOD_DATA_DIR": "/srv/cpod"})
	c, err := parseConfig([]string{"-addr", "127.0.0.1:9001"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9001" || c.DataDir != "/srv/cpod" {
		t.Errorf("addr %q data dir %q", c.Addr, c.DataDir)
	}
}

// TestConfigRealBackends: every backend configured, nothing embedded or
// generated, so no data directory.
func TestConfigRealBackends(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"CPOD_S3_ENDPOINT":     "https://s3.example.com",
		"CPOD_S3_ACCESS_KEY":   "AKIA0000",
		"CPOD_S3_SECRET_KEY":   "secret-0000",
		"CPOD_MONGO_URI":       "mongodb://user:pw@db1:27017,db2:27017/?replicaSet=rs0",
		"CPOD_REDIS_ADDRS":     "r1:6379,r2:6379,r3:6379",
		"CPOD_JWT_JWKS_URL":    "https://issuer.example.com/.well-known/jwks.json",
		"CPOD_JWT_ISSUER":      "https://issuer.example.com",
		"CPOD_ADMIN_TOKENS":    "admin-token-0123456789,admin-token-abcdefghij",
		"CPOD_URL_SIGNING_KEY": strings.Repeat("k", 32),
	}
	c, err := parseConfig(nil, envFunc(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.embeddedS3() || c.embeddedMongo() || c.embeddedRedis() || c.localJWT() || c.needsDataDir() {
		t.Errorf("something is still embedded: %+v", c)
	}
	if len(c.AdminTokens) != 2 || len(c.JWTAlgorithms) == 0 || c.S3Endpoint.Host != "s3.example.com" {
		t.Errorf("parsed: %+v", c)
	}
}

// TestConfigProblems: each misconfiguration is refused with a message naming
// the setting, and no message repeats a secret.
func TestConfigProblems(t *testing.T) {
	t.Parallel()
	pemFile := filepath.Join(t.TempDir(), "not-a-key.pem")
	if err := os.WriteFile(pemFile, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	hmac := strings.Repeat("h", 32)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad mongo scheme", nil, map[string]string{"CPOD_MONGO_URI": "postgres://db:5432/x"}, "CPOD_MONGO_URI (-mongo-uri) must start with mongodb:// or mongodb+srv://"},
		{"bad mongo uri", nil, map[string]string{"CPOD_MONGO_URI": "mongodb://user:hunter2-secret@db:notaport/"}, "CPOD_MONGO_URI (-mongo-uri) is not a valid MongoDB URI"},
		{"s3 endpoint without secret", []string{"-s3-endpoint", "http://127.0.0.1:9000", "-s3-access-key", "minio"}, nil, "CPOD_S3_SECRET_KEY (-s3-secret-key) is required when CPOD_S3_ENDPOINT (-s3-endpoint) is set"},
		{"s3 endpoint without access key", nil, map[string]string{"CPOD_S3_ENDPOINT": "http://127.0.0.1:9000", "CPOD_S3_SECRET_KEY": "x"}, "CPOD_S3_ACCESS_KEY (-s3-access-key) is required"},
		{"s3 keys without endpoint", nil, map[string]string{"CPOD_S3_SECRET_KEY": "x"}, "CPOD_S3_SECRET_KEY (-s3-secret-key) is set but CPOD_S3_ENDPOINT (-s3-endpoint) is not"},
		{"s3 endpoint with credentials", nil, map[string]string{"CPOD_S3_ENDPOINT": "http://k:s@127.0.0.1:9000", "CPOD_S3_ACCESS_KEY": "k", "CPOD_S3_SECRET_KEY": "s"}, "must not carry credentials"},
		{"s3 endpoint without scheme", nil, map[string]string{"CPOD_S3_ENDPOINT": "127.0.0.1:9000", "CPOD_S3_ACCESS_KEY": "k", "CPOD_S3_SECRET_KEY": "s"}, "CPOD_S3_ENDPOINT (-s3-endpoint) must be an http:// or https:// URL"},
		{"s3 ca file on http", nil, map[string]string{"CPOD_S3_ENDPOINT": "http://127.0.0.1:9000", "CPOD_S3_ACCESS_KEY": "k", "CPOD_S3_SECRET_KEY": "s", "CPOD_S3_CA_FILE": "/ca.pem"}, "CPOD_S3_CA_FILE (-s3-ca-file) is set but CPOD_S3_ENDPOINT (-s3-endpoint) is not https"},
		{"presigned with embedded s3", []string{"-s3-presigned-urls"}, nil, "CPOD_S3_PRESIGNED_URLS (-s3-presigned-urls) is set but CPOD_S3_ENDPOINT"},
		{"bad bucket", []string{"-s3-bucket", "Bad_Bucket"}, nil, "CPOD_S3_BUCKET (-s3-bucket) must be a valid S3 bucket name"},
		{"jwks with hmac", nil, map[string]string{"CPOD_JWT_JWKS_URL": "https://issuer.example.com/jwks", "CPOD_JWT_HMAC_SECRET": hmac}, "CPOD_JWT_HMAC_SECRET (-jwt-hmac-secret) and CPOD_JWT_JWKS_URL (-jwt-jwks-url) are contradictory"},
		{"public key with hmac", nil, map[string]string{"CPOD_JWT_PUBLIC_KEY_FILE": pemFile, "CPOD_JWT_HMAC_SECRET": hmac}, "are contradictory"},
		{"short hmac", nil, map[string]string{"CPOD_JWT_HMAC_SECRET": "short-secret"}, "CPOD_JWT_HMAC_SECRET (-jwt-hmac-secret) must be at least 32 bytes"},
		{"hmac equals signing key", nil, map[string]string{"CPOD_JWT_HMAC_SECRET": hmac, "CPOD_URL_SIGNING_KEY": hmac}, "must differ"},
		{"not a pem", nil, map[string]string{"CPOD_JWT_PUBLIC_KEY_FILE": pemFile}, "CPOD_JWT_PUBLIC_KEY_FILE (-jwt-public-key-file): PublicKeyPEM holds no PEM block"},
		{"missing pem", nil, map[string]string{"CPOD_JWT_PUBLIC_KEY_FILE": pemFile + ".missing"}, "CPOD_JWT_PUBLIC_KEY_FILE (-jwt-public-key-file): cannot read the file"},
		{"http jwks", nil, map[string]string{"CPOD_JWT_JWKS_URL": "http://issuer.example.com/jwks"}, "must be https"},
		{"algorithms without jwks", nil, map[string]string{"CPOD_JWT_ALGORITHMS": "RS256"}, "CPOD_JWT_ALGORITHMS (-jwt-algorithms) is set but CPOD_JWT_JWKS_URL (-jwt-jwks-url) is not"},
		{"hmac algorithm with jwks", nil, map[string]string{"CPOD_JWT_JWKS_URL": "https://i.example.com/jwks", "CPOD_JWT_ALGORITHMS": "RS256,HS256"}, `"HS256" is not accepted`},
		{"short admin token", nil, map[string]string{"CPOD_ADMIN_TOKENS": "short"}, "CPOD_ADMIN_TOKENS (-admin-tokens): token 1 must be at least 16 bytes"},
		{"short signing key", nil, map[string]string{"CPOD_URL_SIGNING_KEY": "short"}, "CPOD_URL_SIGNING_KEY (-url-signing-key) must be at least 32 bytes"},
		{"redis url and addrs", nil, map[string]string{"CPOD_REDIS_URL": "redis://127.0.0.1:6379", "CPOD_REDIS_ADDRS": "127.0.0.1:6379"}, "CPOD_REDIS_URL (-redis-url) and CPOD_REDIS_ADDRS (-redis-addrs) are contradictory"},
		{"redis password with url", nil, map[string]string{"CPOD_REDIS_URL": "redis://127.0.0.1:6379", "CPOD_REDIS_PASSWORD": "pw"}, "CPOD_REDIS_PASSWORD (-redis-password) applies to CPOD_REDIS_ADDRS (-redis-addrs) only"},
		{"redis password alone", nil, map[string]string{"CPOD_REDIS_PASSWORD": "pw-1234"}, "CPOD_REDIS_PASSWORD (-redis-password) is set but CPOD_REDIS_ADDRS (-redis-addrs) is not"},
		{"bad redis url", nil, map[string]string{"CPOD_REDIS_URL": "http://127.0.0.1:6379"}, "CPOD_REDIS_URL (-redis-url) must start with redis://"},
		{"bad redis addr", nil, map[string]string{"CPOD_REDIS_ADDRS": "127.0.0.1"}, `CPOD_REDIS_ADDRS (-redis-addrs): "127.0.0.1" is not host:port`},
		{"sentinel and cluster", nil, map[string]string{"CPOD_REDIS_ADDRS": "a:1", "CPOD_REDIS_MASTER_NAME": "m", "CPOD_REDIS_CLUSTER": "true"}, "are contradictory"},
		{"bad addr", []string{"-addr", "8080"}, nil, "CPOD_ADDR (-addr) must be host:port"},
		{"bad duration", nil, map[string]string{"CPOD_SHUTDOWN_TIMEOUT": "soon"}, `CPOD_SHUTDOWN_TIMEOUT (-shutdown-timeout): "soon" is not a duration`},
		{"bad size", nil, map[string]string{"CPOD_MAX_FILE_SIZE": "five"}, "CPOD_MAX_FILE_SIZE (-max-file-size) must be a size"},
		{"size unit", nil, map[string]string{"CPOD_MAX_FILE_SIZE": "5GB"}, `CPOD_MAX_FILE_SIZE (-max-file-size): "5GB": the unit "GB" is not one of KiB, MiB or GiB`},
		{"bad log format", []string{"-log-format", "xml"}, nil, "CPOD_LOG_FORMAT (-log-format) must be text or json"},
		{"tls cert without key", []string{"-tls-cert-file", "/c.pem"}, nil, "CPOD_TLS_CERT_FILE (-tls-cert-file) and CPOD_TLS_KEY_FILE (-tls-key-file) must be set together"},
		{"bad public url", nil, map[string]string{"CPOD_PUBLIC_URL": "api.example.com"}, "CPOD_PUBLIC_URL (-public-url) must be an absolute http(s) URL"},
		{"bad bool", nil, map[string]string{"CPOD_S3_ENDPOINT": "http://h:1", "CPOD_S3_ACCESS_KEY": "k", "CPOD_S3_SECRET_KEY": "s", "CPOD_S3_CREATE_BUCKET": "yes please"}, "CPOD_S3_CREATE_BUCKET (-s3-create-bucket) must be true or false"},
		{"mongo without redis", nil, map[string]string{"CPOD_MONGO_URI": "mongodb://db:27017/"}, "CPOD_MONGO_URI (-mongo-uri) needs a Redis for kv as well"},
		{"redis without mongo", nil, map[string]string{"CPOD_REDIS_URL": "redis://127.0.0.1:6379"}, "CPOD_REDIS_URL (-redis-url) needs CPOD_MONGO_URI (-mongo-uri) as well"},
		{"redis addrs without mongo", nil, map[string]string{"CPOD_REDIS_ADDRS": "r1:6379,r2:6379"}, "CPOD_REDIS_ADDRS (-redis-addrs) needs CPOD_MONGO_URI (-mongo-uri) as well"},
		{"brace in redis prefix", nil, map[string]string{"CPOD_REDIS_KEY_PREFIX": "a{b}"}, "CPOD_REDIS_KEY_PREFIX (-redis-key-prefix) must be non-empty without '{' or '}'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, envFunc(tc.env), io.Discard)
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a configError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("message %q does not say %q", err, tc.want)
			}
			for _, secret := range []string{"hunter2-secret", hmac, "pw-1234", "secret-0000"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("message %q repeats a secret", err)
				}
			}
		})
	}
}

// TestConfigAllProblemsAtOnce: the operator sees every problem in one run.
func TestConfigAllProblemsAtOnce(t *testing.T) {
	t.Parallel()
	_, err := parseConfig([]string{"-addr", "x", "-log-format", "xml"}, envFunc(map[string]string{"CPOD_MONGO_URI": "mysql://x", "CPOD_REDIS_URL": "redis://127.0.0.1:6379"}), io.Discard)
	var ce *configError
	if !errors.As(err, &ce) || len(ce.problems) != 3 {
		t.Fatalf("err = %v, want 3 problems", err)
	}
}

// TestMisconfigurationExits runs the binary: a misconfiguration exits
// non-zero before anything starts, with a message naming the setting.
func TestMisconfigurationExits(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"bad mongo scheme", []string{"CPOD_MONGO_URI=postgres://db/x"}, nil, "CPOD_MONGO_URI (-mongo-uri) must start with mongodb://"},
		{"s3 endpoint without secret", []string{"CPOD_S3_ENDPOINT=http://127.0.0.1:9000", "CPOD_S3_ACCESS_KEY=minio"}, nil, "CPOD_S3_SECRET_KEY (-s3-secret-key) is required"},
		{"jwks with hmac", []string{"CPOD_JWT_JWKS_URL=https://issuer.example.com/jwks", "CPOD_JWT_HMAC_SECRET=" + strings.Repeat("s", 40)}, nil, "are contradictory"},
		{"unknown flag", nil, []string{"-cors-origin", "x"}, "unknown flag -cors-origin; did you mean -cors-origins?"},
		{"size unit", []string{"CPOD_MAX_FILE_SIZE=5GB"}, nil, `the unit "GB" is not one of KiB, MiB or GiB`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := runBinary(t, tc.env, append([]string{"-data-dir", dataDir, "-addr", "127.0.0.1:0"}, tc.args...)...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero")
			}
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("stderr %q does not say %q", stderr, tc.want)
			}
		})
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Errorf("a refused configuration created the data directory")
	}
}

// TestREADMEDocumentsEverySetting keeps the configuration reference in step.
func TestREADMEDocumentsEverySetting(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, s := range settings {
		row := "| `" + s.env + "` | `-" + s.flag + "` |"
		if !strings.Contains(readme, row) {
			t.Errorf("README.md has no row starting %s", row)
		}
	}
	for _, cmd := range []string{"go run ./httpserver", "go test ./..."} {
		if !strings.Contains(readme, cmd) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}

// TestStartFailures: a data directory in use and an address in use stop the
// second server with exit code 1 and a message naming the setting.
func TestStartFailures(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	first := startServer(t, dataDir)
	code, _, stderr := runBinary(t, nil, "-addr", "127.0.0.1:0", "-data-dir", dataDir)
	if code != 1 || !strings.Contains(stderr, "another cpod storage server is using it") || !strings.Contains(stderr, "CPOD_DATA_DIR (-data-dir)") {
		t.Errorf("same data directory: exit %d, %q", code, stderr)
	}
	code, _, stderr = runBinary(t, nil, "-addr", first.Addr, "-data-dir", filepath.Join(t.TempDir(), "other"))
	if code != 1 || !strings.Contains(stderr, "CPOD_ADDR (-addr)") || !strings.Contains(stderr, "address already in use") {
		t.Errorf("same address: exit %d, %q", code, stderr)
	}
	if code := first.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("the first server: exit %d", code)
	}
}
