// Command mount shows how an existing net/http server embeds the cpod
// storage engine: the server keeps its own routes (GET /hello) and its own
// logging middleware, and serves the engine's whole API under /storage-api/:
//
//	mux.HandleFunc("GET /hello", hello)
//	mux.Handle("/storage-api/", http.StripPrefix("/storage-api", engine))
//	http.ListenAndServe(addr, logRequests(log, mux))
//
// The backends are real servers, reached with their official clients, built
// the way a deployment builds them (see connect): minio.New for any S3,
// mongo.Connect with an operation timeout, redis.NewUniversalClient with
// ContextTimeoutEnabled so the engine's per-call deadlines hold. Nothing is
// dialled at start: the program comes up before its backends, and
// GET /storage-api/readyz answers 200 once all three answer.
//
// # Environment
//
// The variable names are those of the runnable server (go run ./httpserver).
//
//	ADDR                      host:port to listen on (default :8080)
//	CPOD_S3_ENDPOINT          S3 endpoint URL; https means TLS (required),
//	                          e.g. https://s3.eu-west-1.amazonaws.com, http://minio:9000
//	CPOD_S3_ACCESS_KEY        S3 access key (required)
//	CPOD_S3_SECRET_KEY        S3 secret key (required)
//	CPOD_S3_BUCKET            bucket of every tenant's files; it must exist (required)
//	CPOD_S3_REGION            S3 region (default us-east-1)
//	CPOD_MONGO_URI            MongoDB URI, mongodb:// or mongodb+srv:// (required)
//	CPOD_MONGO_DATABASE       database of documents and apps (default cpod)
//	CPOD_REDIS_URL            redis://[user:password@]host:port[/db], rediss:// for TLS (required)
//	CPOD_JWT_HMAC_SECRET      HMAC secret that verifies bearer tokens, 32+ bytes
//	CPOD_JWT_PUBLIC_KEY_FILE  PEM public key (RSA, ECDSA, Ed25519) that verifies bearer tokens
//	                          (one of the two JWT keys is required; both may be set)
//	CPOD_JWT_ISSUER           required iss of tokens (default: not checked)
//	CPOD_JWT_AUDIENCE         required aud of tokens (default: not checked)
//	CPOD_URL_SIGNING_KEY      key of signed download URLs and cursors, 32+ bytes, the
//	                          same on every replica, not a JWT key (required)
//	CPOD_ADMIN_TOKENS         comma-separated admin tokens for /storage-api/v1/oauth/apps,
//	                          16+ bytes each (default none: the admin API answers 401)
//	CPOD_PUBLIC_URL           URL the engine is reached at, prefix included, such as
//	                          https://api.example.com/storage-api (default
//	                          http://$ADDR/storage-api, localhost when ADDR has no host)
//
// CPOD_PUBLIC_URL matters because of the prefix: the engine builds signed
// download URLs from it, and behind http.StripPrefix it cannot see the
// /storage-api it was mounted under.
//
// # Running
//
//	export CPOD_S3_ENDPOINT=http://127.0.0.1:9000 CPOD_S3_ACCESS_KEY=minioadmin \
//		CPOD_S3_SECRET_KEY=minioadmin CPOD_S3_BUCKET=cpod \
//		CPOD_MONGO_URI=mongodb://127.0.0.1:27017 CPOD_REDIS_URL=redis://127.0.0.1:6379/0 \
//		CPOD_JWT_HMAC_SECRET=$(openssl rand -hex 32) CPOD_URL_SIGNING_KEY=$(openssl rand -hex 32) \
//		CPOD_ADMIN_TOKENS=$(openssl rand -hex 16)
//	go run ./examples/mount
//	curl localhost:8080/hello
//	curl localhost:8080/storage-api/readyz
//
// Its test (mount_test.go) runs the same handler over the in-process fakes
// of package cpodtest, so it needs no server.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	storage "github.com/cpod/storage"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, log); err != nil {
		fmt.Fprintln(os.Stderr, "mount:", err) // plain text: a configuration error spans lines
		os.Exit(1)
	}
}

// run reads the configuration from getenv, builds the backend clients,
// serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, getenv func(string) string, log *slog.Logger) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	b, err := connect(cfg)
	if err != nil {
		return err
	}
	defer b.Close()

	h, err := newServer(cfg, b, log)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              cfg.Addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: file downloads may take as long as they need.
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", cfg.Addr, "storage", cfg.PublicURL)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newServer is the existing application: its own routes, plus the storage
// engine over the backends b, mounted under /storage-api/, all behind the
// application's logging middleware.
func newServer(cfg config, b *backends, log *slog.Logger) (http.Handler, error) {
	auth := storage.AuthConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
	if cfg.JWTSecret != nil {
		auth.Keys = append(auth.Keys, storage.Key{Secret: cfg.JWTSecret})
	}
	if cfg.JWTPublicKeyPEM != nil {
		auth.Keys = append(auth.Keys, storage.Key{PublicKeyPEM: cfg.JWTPublicKeyPEM})
	}
	engine, err := storage.New(storage.Config{
		S3:          b.S3,
		Bucket:      b.Bucket,
		Mongo:       b.Mongo,
		Redis:       b.Redis,
		Auth:        auth,
		SigningKey:  cfg.SigningKey,
		AdminTokens: cfg.AdminTokens,
		PublicURL:   cfg.PublicURL,
		Logger:      log.With("component", "storage"),
	})
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from the host app")
	})
	// The engine serves /v1/..., /healthz and /readyz: StripPrefix hands it
	// /storage-api/v1/storage/kv/x as /v1/storage/kv/x.
	mux.Handle("/storage-api/", http.StripPrefix("/storage-api", engine))
	return logRequests(log, mux), nil
}

// logRequests logs one line per request: method, path, status, size,
// duration and the engine's request id (the id of its own log lines). It
// never logs headers or the query string: Authorization carries bearer
// tokens and a signed download URL carries its signature in the query.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		log.Info("request",
			"method", r.Method,
			"path", r.URL.Path,
			"status", sw.status,
			"bytes", sw.bytes,
			"duration", time.Since(start),
			"request_id", w.Header().Get("X-Request-Id"),
		)
	})
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer (flush,
// deadlines) through the middleware.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
