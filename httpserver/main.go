// Command httpserver runs cpod storage as an HTTP server.
//
//	go run ./httpserver
//
// With no configuration it listens on 127.0.0.1:8080 and keeps its data under
// ./cpod-data: files in an embedded S3 (files on disk), documents, apps and
// kv values in the embedded SQLite store (cpod.db; package embedded runs
// both). On first start it generates a token-signing secret,
// a URL-signing key and an admin token in the data directory.
//
//	go run ./httpserver token --tenant t1 --app app-demo --user u1 --scope storage.private.read,storage.private.write,storage.user.read,storage.user.write
//
// mints a bearer token signed with that secret. Flags and environment
// variables select real S3, MongoDB, Redis and JWT verification instead; run
// with -h or see README.md for the reference.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	storage "github.com/cpod/storage"
)

func main() {
	os.Exit(run(os.Args[1:], environFrom(os.Environ()), os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(args []string, env environ, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "token" {
		return tokenCommand(args[1:], env, stdout, stderr)
	}
	cfg, err := parseConfig(args, env, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cpod storage: %v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	// From here on, a signal during start-up is a graceful stop too.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	srv, err := start(cfg, log, stderr)
	if err != nil {
		log.Error("cpod storage cannot start: " + cfg.redact(err.Error()))
		return 1
	}
	return srv.serve(signals)
}

// server is a started server: listening, not yet serving.
type server struct {
	cfg      *serverConfig
	log      *slog.Logger
	http     *http.Server
	ln       net.Listener
	backends *backends
	dir      *dataDir
	// engine's change feeds are ended at shutdown (CloseStreams).
	engine *storage.Engine
	// stopBy is the shutdown deadline once a signal arrived: the backends
	// stop by then too, whatever they are doing.
	stopBy  time.Time
	stopNow atomic.Bool
	// metrics serves GET /metrics on metricsLn; nil without -metrics-addr.
	metrics   *http.Server
	metricsLn net.Listener
}

// start prepares everything the server needs, in order: data directory,
// secrets, backends, engine, listener. Any failure names its setting.
func start(cfg *serverConfig, log *slog.Logger, stderr io.Writer) (_ *server, err error) {
	s := &server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.stopBackends()
		}
	}()

	var localSecret string
	signingKey := cfg.URLSigningKey
	adminTokens := cfg.AdminTokens
	var generated []string
	if cfg.needsDataDir() {
		if s.dir, err = openDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
		if s.dir.loosePermissions() {
			log.Warn("the data directory is readable by other users; chmod 700 it", "data_dir", cfg.DataDir)
		}
		secret := func(file, prefix string) (string, error) {
			v, created, err := s.dir.secret(file, prefix)
			if err != nil {
				return "", fmt.Errorf("%s (%s): %w", file, n("data-dir"), err)
			}
			if created {
				generated = append(generated, file)
			}
			return v, nil
		}
		if cfg.localJWT() {
			if localSecret, err = secret(tokenSecretFile, ""); err != nil {
				return nil, err
			}
		}
		if signingKey == "" {
			if signingKey, err = secret(urlSigningKeyFile, ""); err != nil {
				return nil, err
			}
		}
		if len(adminTokens) == 0 {
			t, err := secret(adminTokenFile, "cpod-admin-")
			if err != nil {
				return nil, err
			}
			adminTokens = []string{t}
		}
	}

	if s.backends, err = openBackends(cfg, s.dir, log); err != nil {
		return nil, err
	}
	auth, err := authConfig(cfg, localSecret, log, s.backends)
	if err != nil {
		return nil, err
	}
	var registry *prometheus.Registry
	if cfg.MetricsAddr != "" {
		registry = prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	engine, err := storage.New(storage.Config{
		S3:              s.backends.S3,
		Bucket:          s.backends.Bucket,
		Mongo:           s.backends.Mongo,
		SQL:             s.backends.SQL,
		DocumentsLayout: cfg.DocumentsLayout,
		Redis:           s.backends.Redis,
		RedisKeyPrefix:  cfg.RedisKeyPrefix,
		Auth:            auth,
		AdminTokens:     adminTokens,
		SigningKey:      []byte(signingKey),
		PublicURL:       cfg.PublicURL,
		CORSOrigins:     cfg.CORSOrigins,
		S3PresignedURLs: cfg.S3Presigned,
		Limits:          cfg.Limits,
		RateLimit:       cfg.RateLimit,
		DefaultQuota:    cfg.DefaultQuota,
		BackendTimeout:  cfg.BackendTimeout,
		S3Timeout:       cfg.S3Timeout,
		AppCacheTTL:     cfg.AppCacheTTL,
		AppStaleIfError: cfg.AppStaleIfError,
		Logger:          log.With("component", "storage"),
		Metrics:         metricsRegisterer(registry),
		ReadyChecks:     s.backends.ReadyChecks,
	})
	if err != nil {
		return nil, err
	}

	s.engine = engine
	var handler http.Handler = engine
	if cfg.Console {
		handler = consoleMux(cfg, engine, adminTokens, localSecret)
	}
	s.http = &http.Server{
		Handler:           accessLog{next: handler, log: log, ioTimeout: cfg.IOTimeout},
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		// No ReadTimeout or WriteTimeout: a large upload or download may
		// take as long as it keeps moving; accessLog ends a transfer that
		// stalls for IOTimeout.
		IdleTimeout:    cfg.IdleTimeout,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s / %s: %w", n("tls-cert-file"), n("tls-key-file"), err)
		}
		s.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("%s: %w", n("addr"), err)
	}
	if registry != nil {
		if s.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("%s: %w", n("metrics-addr"), err)
		}
		s.metrics = metricsServer(cfg, registry, log)
	}
	s.announce(generated, stderr)
	return s, nil
}

// baseURL is where a local client reaches the server.
func (s *server) baseURL() string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if s.http.TLSConfig != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// announce logs where the server listens, what each backend is, and how to
// use the generated credentials (their file names, never their values).
func (s *server) announce(generated []string, stderr io.Writer) {
	kinds := make([]string, 0, len(s.backends.Kinds))
	for k := range s.backends.Kinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		s.log.Info("backend", "store", k, "backend", s.backends.Kinds[k])
	}
	if len(generated) > 0 {
		s.log.Info("generated secrets in the data directory (0600 files)", "data_dir", s.cfg.DataDir, "files", strings.Join(generated, ","))
	}
	if s.dir != nil && !s.cfg.embeddedS3() && s.cfg.URLSigningKey == "" {
		s.log.Warn("the URL-signing key was taken from the data directory: every replica must use the same one; set CPOD_URL_SIGNING_KEY", "data_dir", s.cfg.DataDir)
	}
	if hostFromRequests(s.cfg, s.ln.Addr()) {
		s.log.Warn("listening beyond loopback without a public URL: signed download URLs take their host from each request's Host header, which the client chooses; set CPOD_PUBLIC_URL (-public-url) to the URL clients reach", "addr", s.ln.Addr().String())
	}
	if check := s.backends.ReadyChecks["disk"]; check != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.BackendTimeout)
		if _, err := check(ctx); err != nil {
			s.log.Warn("/readyz answers 503 until the data directory's disk has more free space: "+err.Error()+"; free some, or lower the floor with CPOD_MIN_FREE_SPACE (-min-free-space)", "data_dir", s.cfg.DataDir)
		}
		cancel()
	}
	if s.metricsLn != nil {
		s.log.Info("metrics listening", "addr", s.metricsLn.Addr().String(), "url", "http://"+s.metricsLn.Addr().String()+"/metrics")
	}
	base := s.baseURL()
	s.log.Info("cpod storage listening", "addr", s.ln.Addr().String(), "url", base, "data_dir", s.cfg.DataDir)
	if s.cfg.Console {
		s.log.Info("web console", "url", base+"/console/")
	}

	if s.dir == nil || s.cfg.LogFormat != "text" {
		return
	}
	// A how-to for people, on stderr beside the log. Paths only: the
	// secrets stay in their files.
	dirFlag := ""
	if s.cfg.DataDir != lookupSetting("data-dir").def {
		dirFlag = " --data-dir " + shellQuote(s.cfg.DataDir)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ncpod storage is running at %s\n\n", base)
	if len(s.cfg.AdminTokens) == 0 {
		fmt.Fprintf(&b, "  Admin token (registers apps):\n    export ADMIN_TOKEN=\"$(cat %s)\"\n", shellQuote(s.dir.path+"/"+adminTokenFile))
		fmt.Fprintf(&b, "    curl -X POST %s/v1/oauth/apps -H \"Authorization: Bearer $ADMIN_TOKEN\" \\\n", base)
		fmt.Fprintf(&b, "      -d '%s'\n\n", demoApp)
	}
	if s.cfg.localJWT() {
		fmt.Fprintf(&b, "  Bearer token for an app and user (signed with %s):\n", shellQuote(s.dir.path+"/"+tokenSecretFile))
		fmt.Fprintf(&b, "    export TOKEN=\"$(go run ./httpserver token%s --tenant t1 --app app-demo --user u1 --scope %s)\"\n", dirFlag, demoScopes)
		fmt.Fprintf(&b, "    curl -X PUT %s/v1/storage/kv/hello -H \"Authorization: Bearer $TOKEN\" -d '{\"value\":\"world\"}'\n\n", base)
	}
	if s.cfg.Console {
		fmt.Fprintf(&b, "  Web console: %s/console/ (sign in with the admin token)\n\n", base)
	}
	fmt.Fprintf(&b, "  Walk-through: README.md. Stop with Ctrl-C.\n\n")
	_, _ = io.WriteString(stderr, b.String())
}

// hostFromRequests reports whether the server's signed URLs take their host
// from request Host headers (no public URL, the server's own URLs rather
// than S3 presigned ones) while it listens on an address other hosts can
// reach: then a client, or anything between it and the server, chooses the
// host of the URLs it is handed.
func hostFromRequests(cfg *serverConfig, addr net.Addr) bool {
	if cfg.PublicURL != "" || cfg.S3Presigned {
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return true
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// demoApp and demoScopes are the app the start-up how-to registers and the
// scopes of the token it mints: the same as README.md's walk-through (steps
// 1 and 2), which TestWalkthrough runs, so following either works, in any
// order (registering twice answers 409 conflict).
const (
	demoApp    = `{"client_id":"app-demo","name":"Demo","declared_scopes":["storage.private.read","storage.private.write","storage.user.read","storage.user.write"],"app_type":"service"}`
	demoScopes = "storage.private.read,storage.private.write,storage.user.read,storage.user.write"
)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./_-:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// serve serves until a signal, then shuts down gracefully: the listener
// closes at once (new connections are refused), in-flight requests finish
// until ShutdownTimeout, then the backends stop. A second signal stops at
// once. The exit code is 0 after a clean shutdown.
func (s *server) serve(signals chan os.Signal) int {
	defer s.stopBackends()
	errc := make(chan error, 1)
	go func() {
		if s.http.TLSConfig != nil {
			errc <- s.http.ServeTLS(s.ln, "", "")
		} else {
			errc <- s.http.Serve(s.ln)
		}
	}()
	if s.metrics != nil {
		go func() {
			if err := s.metrics.Serve(s.metricsLn); err != http.ErrServerClosed {
				s.log.Error("metrics server failed", "err", err)
			}
		}()
		defer s.metrics.Close() // scrapes are short; none is waited for
	}
	select {
	case err := <-errc:
		s.log.Error("server failed", "err", err)
		return 1
	case sig := <-signals:
		s.log.Info("shutting down: finishing in-flight requests", "signal", sig.String(), "timeout", s.cfg.ShutdownTimeout)
	}
	s.stopBy = time.Now().Add(s.cfg.ShutdownTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), s.stopBy)
	defer cancel()
	go func() {
		select {
		case sig := <-signals:
			s.log.Warn("second signal: stopping now", "signal", sig.String())
			s.stopNow.Store(true)
			cancel()
		case <-ctx.Done():
		}
	}()
	// The change feeds never end by themselves: they end now, with the
	// last chunk, and their clients resume elsewhere with Last-Event-ID.
	// Those on hijacked connections are not in-flight requests for
	// Shutdown, which does not wait for them: CloseStreams does.
	streamsClosed := make(chan struct{})
	go func() {
		defer close(streamsClosed)
		if err := s.engine.CloseStreams(ctx); err != nil {
			s.log.Warn("change feeds were cut off", "err", err)
		}
	}()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("in-flight requests were cut off", "err", err)
		_ = s.http.Close()
		<-streamsClosed
		return 1
	}
	<-streamsClosed
	<-errc
	s.log.Info("stopped")
	return 0
}

// stopBackends stops the backends: by the shutdown deadline after a signal
// (at once after a second one), or
// within 10 s after a failed start.
func (s *server) stopBackends() {
	if s.backends != nil {
		by := time.Now().Add(10 * time.Second)
		if !s.stopBy.IsZero() {
			by = s.stopBy
		}
		if s.stopNow.Load() {
			by = time.Now()
		}
		ctx, cancel := context.WithDeadline(context.Background(), by)
		s.backends.close(ctx)
		cancel()
		s.backends = nil
	}
	if s.dir != nil {
		s.dir.unlock()
		s.dir = nil
	}
}

// metricsRegisterer is reg as Config.Metrics: nil (no metrics) when reg is.
func metricsRegisterer(reg *prometheus.Registry) prometheus.Registerer {
	if reg == nil {
		return nil
	}
	return reg
}

// metricsServer serves GET /metrics of reg in the Prometheus text format
// (or what the scraper negotiates), with the engine's metrics and the Go
// runtime's and the process's; anything else is 404. It is plain HTTP, on
// its own listener (-metrics-addr), so the public listener never exposes
// it.
func metricsServer(cfg *serverConfig, reg *prometheus.Registry, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Registry: reg, // promhttp_metric_handler_* about the scrapes themselves
	}))
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.IOTimeout,
		WriteTimeout:      cfg.IOTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
