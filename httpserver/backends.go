package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/embedded"
)

// openBackends connects the configured backends and starts the embedded ones.
// Real backends are not dialled here: the engine's /readyz tells when they
// answer, so the server may start before them.
func openBackends(cfg *serverConfig, dir *dataDir, log *slog.Logger) (*backends, error) {
	b := &backends{Kinds: map[string]string{}}
	ok := false
	defer func() {
		if !ok {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b.close(ctx)
		}
	}()
	quiet := log.With("component", "embedded")
	if cfg.embeddedS3() || cfg.embeddedMongo() || cfg.embeddedRedis() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		eb, err := embedded.Start(ctx, embedded.Config{
			Dir:          dir.path,
			Bucket:       cfg.S3Bucket,
			Database:     cfg.MongoDatabase,
			Logger:       quiet,
			MongoTimeout: mongoTimeout(cfg),
			NoFiles:      !cfg.embeddedS3(),
			NoDocuments:  !cfg.embeddedMongo(),
			NoKV:         !cfg.embeddedRedis(),
			KVKeyPrefix:  cfg.RedisKeyPrefix,
		})
		if err != nil {
			return nil, err
		}
		b.onClose(func(ctx context.Context) {
			if err := eb.Close(ctx); err != nil {
				log.Error("stopping the embedded backends", "err", err)
			}
		})
		for k, v := range eb.Kinds {
			b.Kinds[k] = v
		}
		b.ReadyChecks = map[string]storage.ReadyCheck{"disk": eb.DiskCheck(cfg.MinFreeSpace)}
		if eb.S3 != nil {
			b.S3, b.Bucket = eb.S3, eb.Bucket
		}
		if eb.SQL != nil {
			b.SQL = eb.SQL
		}
		if eb.Redis != nil {
			b.Redis = eb.Redis
		}
	}

	if !cfg.embeddedS3() {
		if err := b.openS3(cfg); err != nil {
			return nil, err
		}
	}

	if !cfg.embeddedMongo() {
		c, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoURI).SetAppName("cpod-storage").SetTimeout(mongoTimeout(cfg)))
		if err != nil {
			return nil, fmt.Errorf("%s: %s", n("mongo-uri"), cfg.redact(err.Error()))
		}
		b.onClose(func(ctx context.Context) { _ = c.Disconnect(ctx) })
		b.Mongo = c.Database(cfg.MongoDatabase)
		b.Kinds["documents"] = "MongoDB (" + n("mongo-uri") + "), database " + cfg.MongoDatabase
	}

	switch {
	case cfg.embeddedRedis():
	case cfg.RedisURL != "":
		o, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", n("redis-url"), cfg.redact(err.Error()))
		}
		o.ContextTimeoutEnabled = true // the engine bounds calls by context
		c := redis.NewClient(o)
		b.onClose(func(context.Context) { _ = c.Close() })
		b.Redis = c
		b.Kinds["kv"] = "Redis (" + n("redis-url") + ")"
	default:
		o := &redis.UniversalOptions{
			Addrs:         cfg.RedisAddrs,
			IsClusterMode: cfg.RedisCluster,
			MasterName:    cfg.RedisMasterName,
			Username:      cfg.RedisUsername,
			Password:      cfg.RedisPassword,
			// The engine bounds each call with BackendTimeout through
			// the context; go-redis ignores context deadlines without this.
			ContextTimeoutEnabled: true,
		}
		if cfg.RedisTLS {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c := redis.NewUniversalClient(o)
		b.onClose(func(context.Context) { _ = c.Close() })
		b.Redis = c
		kind := "Redis"
		switch c.(type) {
		case *redis.ClusterClient:
			kind = "Redis Cluster"
		case *redis.Client:
			if cfg.RedisMasterName != "" {
				kind = "Redis Sentinel (master " + cfg.RedisMasterName + ")"
			}
		}
		b.Kinds["kv"] = kind + " at " + strings.Join(cfg.RedisAddrs, ",")
	}
	ok = true
	return b, nil
}

// mongoTimeout is the MongoDB client's default operation timeout; the engine
// bounds its own calls with BackendTimeout through the context.
func mongoTimeout(cfg *serverConfig) time.Duration {
	return max(30*time.Second, cfg.BackendTimeout)
}

// openS3 makes the client of a real S3 endpoint.
func (b *backends) openS3(cfg *serverConfig) error {
	u := cfg.S3Endpoint
	o := &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.S3AccessKey, cfg.S3SecretKey, ""),
		Secure: u.Scheme == "https",
		Region: cfg.S3Region,
	}
	switch cfg.S3BucketLookup {
	case "path":
		o.BucketLookup = minio.BucketLookupPath
	case "dns":
		o.BucketLookup = minio.BucketLookupDNS
	}
	if cfg.S3CAFile != "" {
		pem, err := os.ReadFile(cfg.S3CAFile)
		if err != nil {
			return fmt.Errorf("%s: %w", n("s3-ca-file"), err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate in the file", n("s3-ca-file"))
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		o.Transport = tr
	}
	c, err := minio.New(u.Host, o)
	if err != nil {
		return fmt.Errorf("%s: %s", n("s3-endpoint"), cfg.redact(err.Error()))
	}
	b.S3, b.Bucket = c, cfg.S3Bucket
	b.Kinds["files"] = "S3 at " + u.Scheme + "://" + u.Host + ", bucket " + cfg.S3Bucket
	if cfg.S3CreateBucket {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		exists, err := c.BucketExists(ctx, cfg.S3Bucket)
		if err == nil && !exists {
			err = c.MakeBucket(ctx, cfg.S3Bucket, minio.MakeBucketOptions{Region: cfg.S3Region})
		}
		if err != nil {
			return fmt.Errorf("%s: cannot create bucket %s: %s", n("s3-create-bucket"), cfg.S3Bucket, cfg.redact(err.Error()))
		}
	}
	return nil
}

// authConfig builds the engine's token verification. With no JWT setting,
// tokens are verified with the data directory's local secret (the one the
// token subcommand signs with).
func authConfig(cfg *serverConfig, localSecret string, log *slog.Logger, b *backends) (storage.AuthConfig, error) {
	a := storage.AuthConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Leeway: cfg.JWTLeeway, Claims: cfg.Claims, CacheTTL: cfg.JWTCacheTTL}
	switch {
	case cfg.JWTHMACSecret != "":
		a.Keys = []storage.Key{{Secret: []byte(cfg.JWTHMACSecret)}}
	case cfg.JWTPublicKeyFile != "":
		a.Keys = []storage.Key{{PublicKeyPEM: cfg.JWTPublicKeyPEM}}
	case cfg.JWKSURL != "":
		ctx, cancel := context.WithCancel(context.Background())
		b.onClose(func(context.Context) { cancel() })
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
			HTTPTimeout: 10 * time.Second,
			RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					log.Warn("cannot refresh the JWKS", "setting", n("jwt-jwks-url"), "err", err)
				}
			},
		})
		if err != nil {
			cancel()
			return a, fmt.Errorf("%s: %w", n("jwt-jwks-url"), err)
		}
		a.Keyfunc = kf.Keyfunc
		a.Algorithms = cfg.JWTAlgorithms
	default:
		a.Keys = []storage.Key{{Secret: []byte(localSecret)}}
	}
	return a, nil
}
