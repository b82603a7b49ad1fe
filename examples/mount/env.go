package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// config is the program's configuration, read from the environment by
// loadConfig. The variables are listed in the package documentation.
type config struct {
	Addr string

	S3Endpoint  *url.URL
	S3AccessKey string
	S3SecretKey string
	S3Bucket    string
	S3Region    string

	MongoURI      string
	MongoDatabase string

	RedisURL string

	JWTSecret       []byte
	JWTPublicKeyPEM []byte
	JWTIssuer       string
	JWTAudience     string

	SigningKey  []byte
	AdminTokens []string
	PublicURL   string
}

// loadConfig reads the configuration through getenv (os.Getenv in main).
// It reports every problem at once, each naming its variable, and never
// repeats a secret's value.
func loadConfig(getenv func(string) string) (config, error) {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	required := func(name, what string) string {
		v := getenv(name)
		if v == "" {
			bad("%s is not set: %s", name, what)
		}
		return v
	}
	or := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}

	cfg := config{
		Addr:          or("ADDR", ":8080"),
		S3AccessKey:   required("CPOD_S3_ACCESS_KEY", "the S3 access key"),
		S3SecretKey:   required("CPOD_S3_SECRET_KEY", "the S3 secret key"),
		S3Bucket:      required("CPOD_S3_BUCKET", "the bucket of every tenant's files"),
		S3Region:      or("CPOD_S3_REGION", "us-east-1"),
		MongoURI:      required("CPOD_MONGO_URI", "the MongoDB URI, such as mongodb://127.0.0.1:27017"),
		MongoDatabase: or("CPOD_MONGO_DATABASE", "cpod"),
		RedisURL:      required("CPOD_REDIS_URL", "the Redis URL, such as redis://127.0.0.1:6379/0"),
		JWTIssuer:     getenv("CPOD_JWT_ISSUER"),
		JWTAudience:   getenv("CPOD_JWT_AUDIENCE"),
		PublicURL:     getenv("CPOD_PUBLIC_URL"),
	}

	if v := required("CPOD_S3_ENDPOINT", "the S3 endpoint URL, such as https://s3.eu-west-1.amazonaws.com"); v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			bad("CPOD_S3_ENDPOINT must be an http:// or https:// URL without credentials, such as http://127.0.0.1:9000")
		} else {
			cfg.S3Endpoint = u
		}
	}
	if cfg.RedisURL != "" {
		// The URL may hold a password: say what is wrong, not what it is.
		if _, err := redis.ParseURL(cfg.RedisURL); err != nil {
			bad("CPOD_REDIS_URL is not a Redis URL: want redis://[user:password@]host:port[/db] or rediss://")
		}
	}

	if v := getenv("CPOD_JWT_HMAC_SECRET"); v != "" {
		if len(v) < 32 {
			bad("CPOD_JWT_HMAC_SECRET must be at least 32 bytes")
		}
		cfg.JWTSecret = []byte(v)
	}
	if path := getenv("CPOD_JWT_PUBLIC_KEY_FILE"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			bad("CPOD_JWT_PUBLIC_KEY_FILE: %w", err)
		}
		cfg.JWTPublicKeyPEM = pem
	}
	if getenv("CPOD_JWT_HMAC_SECRET") == "" && getenv("CPOD_JWT_PUBLIC_KEY_FILE") == "" {
		bad("neither CPOD_JWT_HMAC_SECRET nor CPOD_JWT_PUBLIC_KEY_FILE is set: one of them must verify bearer tokens")
	}

	if v := required("CPOD_URL_SIGNING_KEY", "32+ random bytes that sign download URLs and cursors"); v != "" {
		if len(v) < 32 {
			bad("CPOD_URL_SIGNING_KEY must be at least 32 bytes")
		}
		cfg.SigningKey = []byte(v)
	}
	for _, tok := range strings.Split(getenv("CPOD_ADMIN_TOKENS"), ",") {
		if tok = strings.TrimSpace(tok); tok == "" {
			continue
		}
		if len(tok) < 16 {
			bad("CPOD_ADMIN_TOKENS: each token must be at least 16 bytes")
			break
		}
		cfg.AdminTokens = append(cfg.AdminTokens, tok)
	}

	if cfg.PublicURL == "" {
		// Signed download URLs must carry the mount prefix, which the
		// engine cannot see behind http.StripPrefix.
		host, port, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			bad("ADDR must be host:port, such as :8080")
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		cfg.PublicURL = "http://" + net.JoinHostPort(host, port) + "/storage-api"
	}

	if len(problems) > 0 {
		return config{}, fmt.Errorf("configuration:\n%w", errors.Join(problems...))
	}
	return cfg, nil
}

// backends are the clients of the three backend servers, handed to the
// engine.
type backends struct {
	S3     *minio.Client
	Bucket string
	Mongo  *mongo.Database
	Redis  redis.UniversalClient

	mongoClient *mongo.Client
}

// connect builds the backend clients as a deployment does. None of them
// dials yet: the engine's /readyz tells when the servers answer.
func connect(cfg config) (*backends, error) {
	s3, err := minio.New(cfg.S3Endpoint.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.S3AccessKey, cfg.S3SecretKey, ""),
		Secure: cfg.S3Endpoint.Scheme == "https",
		Region: cfg.S3Region,
	})
	if err != nil {
		return nil, fmt.Errorf("CPOD_S3_ENDPOINT: %w", err)
	}

	// SetTimeout bounds every operation that has no earlier deadline; the
	// engine also bounds each call with its BackendTimeout (default 10s).
	mc, err := mongo.Connect(options.Client().
		ApplyURI(cfg.MongoURI).
		SetAppName("cpod-storage-mount-example").
		SetConnectTimeout(5 * time.Second).
		SetServerSelectionTimeout(5 * time.Second).
		SetTimeout(10 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("CPOD_MONGO_URI: %s", redactURL(err.Error(), cfg.MongoURI))
	}

	ro, err := redis.ParseURL(cfg.RedisURL)
	if err != nil { // checked by loadConfig; kept for callers that skip it
		return nil, errors.New("CPOD_REDIS_URL is not a Redis URL")
	}
	// A UniversalClient is a single node here; several Addrs would make it
	// a Cluster client, a MasterName a Sentinel one, with the same engine.
	rc := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:     []string{ro.Addr},
		Username:  ro.Username,
		Password:  ro.Password,
		DB:        ro.DB,
		TLSConfig: ro.TLSConfig,
		// Without it go-redis ignores context deadlines, and a stalled
		// Redis would hang requests past the engine's BackendTimeout.
		ContextTimeoutEnabled: true,
	})

	return &backends{
		S3:          s3,
		Bucket:      cfg.S3Bucket,
		Mongo:       mc.Database(cfg.MongoDatabase),
		Redis:       rc,
		mongoClient: mc,
	}, nil
}

// Close disconnects from MongoDB and Redis.
func (b *backends) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.mongoClient.Disconnect(ctx)
	_ = b.Redis.Close()
}

// redactURL removes the user info (password included) of rawURL from msg,
// even when rawURL does not parse: driver errors may quote the URI.
func redactURL(msg, rawURL string) string {
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return msg
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at <= 0 {
		return msg
	}
	userinfo := rest[:at]
	msg = strings.ReplaceAll(msg, userinfo, "xxxxx")
	if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
		if dec, err := url.PathUnescape(pw); err == nil && dec != "" {
			msg = strings.ReplaceAll(msg, dec, "xxxxx")
		}
	}
	return msg
}
