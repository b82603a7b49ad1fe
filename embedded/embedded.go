// Package embedded runs the zero-install backends of cpod storage in
// process and hands back the clients the engine takes: an S3 on the local
// filesystem (storage.Config.S3) and the SQLite store of documents, apps
// and kv (storage.Config.SQL); for tests, FerretDB on SQLite (MongoDB wire
// protocol, storage.Config.Mongo) and miniredis (storage.Config.Redis)
// instead, the servers of the production drivers.
//
//	b, err := embedded.Start(ctx, embedded.Config{Dir: "./cpod-data"})
//	if err != nil { ... }
//	defer b.Close(context.Background())
//	engine, err := storage.New(storage.Config{S3: b.S3, Bucket: b.Bucket, SQL: b.SQL, ...})
//
// It is the one home of these backends: `go run ./httpserver` uses it for
// its defaults and cpodtest for its fakes.
//
// # Data directory
//
// With Config.Dir set, everything persists there:
//
//	files/                 the embedded S3 (objects as files, see below)
//	cpod.db                the SQLite store: documents, apps and kv (WAL:
//	                       cpod.db-wal and cpod.db-shm beside it)
//	documents/             FerretDB's SQLite databases, with Config.FerretDB;
//	                       left by an earlier version, it is imported into
//	                       cpod.db on start and renamed documents.imported
//	kv.snapshot.imported   the kv snapshot of an earlier version, once
//	                       imported into cpod.db (kv.snapshot before that)
//	sockets/               the Unix sockets of the S3 and FerretDB (0700)
//
// Without it (tests), a temporary directory is used and removed by Close.
// The directory is not locked here: a program that may run twice on one
// directory must lock it itself (httpserver does).
//
// # Files
//
// The S3 writes each object to a temporary file and renames it into place,
// so a reader sees exactly one whole version, and streams uploads and
// downloads, so memory stays flat whatever the file size (multipart parts
// are files too). Object keys are hashed into file names: no key can name a
// path. It serves the S3 API that minio-go and the engine use (objects,
// ranges, conditional GET and PUT, copy, multipart, listings V1/V2,
// multi-delete) and checks Content-MD5 and x-amz-content-sha256, but not
// request signatures or presigned URL expiry: only this process can reach
// it (a Unix socket in a 0700 directory, or loopback with Config.Loopback).
//
// Each object file carries the CRC-32C of every 1 MiB block and of its
// metadata; reads verify what they serve, so damaged bytes are never a
// complete answer (410 XCpodObjectDamaged before any byte, or a connection
// cut before the damaged block), each logged at ERROR by the hash of the
// key; a scrub (Backends.Scrub, and in the background after Start, see
// Config.ScrubInterval) finds damaged objects and gives checksums to those
// of earlier versions. A write that meets a full disk is MinIO's 507
// XMinioStorageFull, and stores nothing; Backends.DiskCheck is a readiness
// check of the free space (storage.Config.ReadyChecks).
//
// # Documents, apps and kv
//
// The SQLite store (OpenSQLite): one database file, WAL, synchronous
// NORMAL, so a write the engine acknowledged survives the process being
// killed. An earlier version's data directory is taken over on Start, once:
// FerretDB's documents/ (documents and apps) and kv.snapshot (kv keys,
// values and TTLs), each then renamed *.imported. A kv.snapshot that is
// damaged stops Start with a message saying so, and nothing of it is
// imported (its format has no checksum: see readKVSnapshot for what is
// checked).
//
// With Config.FerretDB, documents and apps are in FerretDB v1 on SQLite
// instead. Its SQLite pool holds at most 100 connections and an update
// holds two of them (a read cursor while it writes), so 100 concurrent
// updates (the MongoDB driver's default pool) can deadlock in database/sql.
// The MongoDB client made here therefore opens at most [MongoMaxPoolSize]
// connections, which bounds FerretDB's concurrent commands; requests
// beyond it queue in the driver. FerretDB's lookups by _id could not use
// its own _id index on SQLite (a full scan per upsert); Start adds an index
// they can use to every collection table, at start and for collections
// created later.
//
// With Config.FerretDB or NoDocuments, kv is in miniredis, in memory only
// (nothing of it persists, Dir or not), reached through in-memory pipes or
// loopback: a test double, not a store for users' data.
package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/alicebob/miniredis/v2"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// MongoMaxPoolSize bounds the connections the MongoDB client of the
// embedded FerretDB opens, so FerretDB runs at most that many commands at
// once: below half of FerretDB's SQLite pool (100), since one update holds
// two SQLite connections (a read cursor while it writes): 100 concurrent
// updates, each holding one and waiting for a second, deadlock in
// database/sql. The client opens
// 4*GOMAXPROCS connections, at least 8, at most this: SQLite runs one write
// at a time, and commands waiting in the driver's queue (first come, first
// served) fare better than writers retrying in SQLite's busy handler (no
// order): at concurrency 64 on 2 cores, 8 connections gave a 2.8 s worst
// latency over 30 s where 32 gave 9.8 s, close to the engine's 10 s
// backend timeout.
const MongoMaxPoolSize = 48

func mongoPoolSize() uint64 {
	return uint64(min(MongoMaxPoolSize, max(8, 4*runtime.GOMAXPROCS(0))))
}

// idIndexInterval is how often new FerretDB collections get their _id index.
const idIndexInterval = 250 * time.Millisecond

// Files and directories of Config.Dir.
const (
	FilesDir     = "files"
	DocumentsDir = "documents"
	KVSnapshot   = "kv.snapshot"
	SocketsDir   = "sockets"
)

// Config says where and how to run the embedded backends. The zero value
// runs them on a temporary directory, removed by Close.
type Config struct {
	// Dir is the data directory (created 0700 if missing). Default: a
	// temporary directory removed by Close; nothing persists and writes
	// are not fsynced.
	Dir string
	// Bucket is the S3 bucket, created if missing. Default "cpod".
	Bucket string
	// Database is the MongoDB database handed back. Default "cpod".
	Database string
	// Logger receives the backends' errors. Default: discarded.
	Logger *slog.Logger
	// Loopback serves the S3, FerretDB and miniredis on 127.0.0.1 ports
	// (any local user can reach them: for tests that hand the addresses to
	// another process) instead of Unix sockets and pipes. Default false.
	Loopback bool
	// MongoTimeout is the MongoDB client's operation timeout. Default 30s.
	MongoTimeout time.Duration
	// MongoMonitor, if set, watches the MongoDB client's commands. Default nil.
	MongoMonitor *event.CommandMonitor
	// S3Transport, if set, wraps the S3 client's transport (to count or
	// fail requests in tests). Default nil.
	S3Transport func(http.RoundTripper) http.RoundTripper
	// FerretDB keeps documents and apps in FerretDB on SQLite (the
	// store of earlier versions, and cpodtest's default: a MongoDB server
	// in process, for the production driver) in Backends.Mongo instead of
	// the SQLite store in Backends.SQL. Default false.
	FerretDB bool
	// NoFiles, NoDocuments and NoKV leave that backend out (its field of
	// Backends stays nil), for a program that uses a real one instead.
	// Default false: all three start.
	NoFiles, NoDocuments, NoKV bool
	// KVManualClock makes miniredis' TTLs move only through
	// Miniredis.FastForward, for deterministic tests. Default false: TTLs
	// run on the wall clock, as in Redis.
	KVManualClock bool
	// ScrubInterval is how often the embedded S3 reads every object to
	// find damaged ones (each logged at ERROR) and gives checksums to the
	// objects of earlier versions (see Backends.Scrub), with Dir set. The
	// first scrub starts right after Start, in the background. Default 0:
	// only that one; negative: never.
	ScrubInterval time.Duration
	// KVSnapshotInterval is how often the kv snapshot is written while kv
	// changes (a command of Backends.Redis that may change data: reads
	// never bring one; with Loopback, other clients' writes are not seen),
	// with Dir set; Close always writes it. Default 30s; negative writes
	// it only on Close.
	KVSnapshotInterval time.Duration
	// KVKeyPrefix is the Redis key prefix (storage.Config.RedisKeyPrefix)
	// of the engine that wrote the kv.snapshot found in Dir, which Start
	// imports into the SQLite store. Default "cpod:".
	KVKeyPrefix string
}

// Backends are the running embedded backends and their clients.
type Backends struct {
	// S3 and Bucket are for storage.Config.S3 and Bucket.
	S3     *minio.Client
	Bucket string
	// SQL is for storage.Config.SQL: the SQLite store of documents, apps
	// and kv (Dir/cpod.db); nil with Config.FerretDB or NoDocuments.
	SQL *sql.DB
	// Mongo is for storage.Config.Mongo, with Config.FerretDB; else nil.
	Mongo *mongo.Database
	// Redis is for storage.Config.Redis, with Config.FerretDB or
	// NoDocuments (and not NoKV); else nil: the SQLite store holds kv.
	Redis *redis.Client
	// Miniredis is the in-process Redis behind Redis, for clock control
	// and fault injection in tests; nil when Redis is.
	Miniredis *miniredis.Miniredis
	// Kinds describe each backend for a startup log ("files",
	// "documents", "kv"), with paths but no credentials.
	Kinds map[string]string

	log     *slog.Logger
	dir     string
	files   *fileStore // nil with Config.NoFiles
	closeMu sync.Mutex
	closers []func(context.Context) error
}

// ferretMu serialises ferretdb.New, which writes package-level state.
var ferretMu sync.Mutex

// NewFerretDB is ferretdb.New, serialised with every other FerretDB this
// package starts: ferretdb.New writes package-level state, so two at once
// race (seen under -race in httpserver's tests). Anything in the process
// that starts a FerretDB of its own should start it through this.
func NewFerretDB(c *ferretdb.Config) (*ferretdb.FerretDB, error) {
	ferretMu.Lock()
	defer ferretMu.Unlock()
	return ferretdb.New(c)
}

// Start starts the backends and connects their clients, after importing
// what an earlier version left in Dir (see Data directory). A ctx that
// ends stops the start between backends (the ones started are closed).
func Start(ctx context.Context, cfg Config) (_ *Backends, err error) {
	if cfg.Bucket == "" {
		cfg.Bucket = "cpod"
	}
	if cfg.Database == "" {
		cfg.Database = "cpod"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MongoTimeout <= 0 {
		cfg.MongoTimeout = 30 * time.Second
	}
	if cfg.KVKeyPrefix == "" {
		cfg.KVKeyPrefix = "cpod:"
	}
	b := &Backends{Kinds: map[string]string{}, log: cfg.Logger}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = b.Close(cctx)
		}
	}()
	durable := cfg.Dir != ""
	if durable {
		if b.dir, err = filepath.Abs(cfg.Dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(b.dir, 0o700); err != nil {
			return nil, err
		}
	} else {
		if b.dir, err = os.MkdirTemp("", "cpod-embedded-"); err != nil {
			return nil, err
		}
		tmp := b.dir
		b.onClose(func(context.Context) error { return os.RemoveAll(tmp) })
	}
	var sockDir string
	if !cfg.Loopback && !(cfg.NoFiles && (cfg.NoDocuments || !cfg.FerretDB && cfg.Dir == "")) {
		if sockDir, err = b.socketDir(); err != nil {
			return nil, fmt.Errorf("embedded backends: %w", err)
		}
	}
	// kv is in the SQLite store, unless documents are elsewhere.
	if !cfg.NoKV && (cfg.FerretDB || cfg.NoDocuments) {
		if err := b.startKV(cfg); err != nil {
			return nil, fmt.Errorf("embedded Redis: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !cfg.NoFiles {
		if err := b.startS3(ctx, cfg, durable, sockDir); err != nil {
			return nil, fmt.Errorf("embedded S3: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case cfg.NoDocuments:
	case cfg.FerretDB:
		if err := b.startMongo(ctx, cfg, sockDir); err != nil {
			return nil, fmt.Errorf("embedded MongoDB (FerretDB): %w", err)
		}
	default:
		if err := b.startSQLite(ctx, cfg, sockDir); err != nil {
			return nil, fmt.Errorf("embedded SQLite store: %w", err)
		}
	}
	return b, nil
}

// Close disconnects the clients and stops the servers, giving up waiting
// for them when ctx ends (whatever a backend is doing, Close returns by
// ctx's deadline; SQLite and the S3's renames are crash-safe). It returns
// the first error.
func (b *Backends) Close(ctx context.Context) error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	var first error
	for i := len(b.closers) - 1; i >= 0; i-- {
		if err := b.closers[i](ctx); err != nil && first == nil {
			first = err
		}
	}
	b.closers = nil
	return first
}

func (b *Backends) onClose(f func(context.Context) error) { b.closers = append(b.closers, f) }

// socketDir makes the private directory of the Unix sockets: Dir/sockets,
// or a temporary directory when that path is too long for a socket address.
func (b *Backends) socketDir() (string, error) {
	dir := filepath.Join(b.dir, SocketsDir)
	if len(dir)+len("/mongodb.sock") < 100 {
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", err
		}
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "cpod-"); err != nil {
			return "", err
		}
	}
	b.onClose(func(context.Context) error { return os.RemoveAll(dir) })
	return dir, nil
}

// listen listens on the Unix socket name in sockDir, or on loopback.
func listen(sockDir, name string) (net.Listener, error) {
	if sockDir == "" {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	return net.Listen("unix", filepath.Join(sockDir, name))
}

// startS3 serves the filesystem S3 and makes its client.
func (b *Backends) startS3(ctx context.Context, cfg Config, durable bool, sockDir string) error {
	dir := filepath.Join(b.dir, FilesDir)
	store, err := openFileStore(dir, durable, cfg.Logger)
	if err != nil {
		return err
	}
	if err := store.ensureBucket(cfg.Bucket); err != nil {
		return err
	}
	if durable {
		if err := migrateBolt(store, filepath.Join(b.dir, legacyBoltFile), cfg.Bucket, cfg.Logger); err != nil {
			return fmt.Errorf("import %s: %w", legacyBoltFile, err)
		}
	}
	ln, err := listen(sockDir, "s3.sock")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: store, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	b.onClose(func(ctx context.Context) error {
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
		return nil
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.IdleConnTimeout = time.Minute
	host := ln.Addr().String()
	if sockDir != "" {
		sock := host
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		// The host name is never resolved: every connection goes to the socket.
		host = "localhost"
	}
	var rt http.RoundTripper = tr
	if cfg.S3Transport != nil {
		rt = cfg.S3Transport(tr)
	}
	c, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4("cpod-embedded", "cpod-embedded-secret", ""),
		Region:    "us-east-1",
		Transport: rt,
	})
	if err != nil {
		return err
	}
	b.S3, b.Bucket, b.files = c, cfg.Bucket, store
	if durable && cfg.ScrubInterval >= 0 {
		b.scrubLoop(cfg.ScrubInterval)
	}
	if durable {
		b.Kinds["files"] = "embedded S3 on the filesystem in " + dir + " (persistent)"
	} else {
		b.Kinds["files"] = "embedded S3 on a temporary directory (ephemeral)"
	}
	return nil
}

// startMongo runs FerretDB on SQLite and connects to it.
func (b *Backends) startMongo(ctx context.Context, cfg Config, sockDir string) error {
	dir := filepath.Join(b.dir, DocumentsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lc := ferretdb.ListenerConfig{TCP: "127.0.0.1:0"}
	if sockDir != "" {
		lc = ferretdb.ListenerConfig{Unix: filepath.Join(sockDir, "mongodb.sock")}
	}
	f, err := NewFerretDB(&ferretdb.Config{
		Listener:  lc,
		Handler:   "sqlite",
		SQLiteURL: (&url.URL{Scheme: "file", Path: dir + "/"}).String(),
		Logger:    ferretLog(cfg.Logger),
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.Run(runCtx); close(done) }()
	b.onClose(func(ctx context.Context) error {
		stop()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			b.log.Warn("embedded FerretDB did not stop before the shutdown deadline; leaving it (SQLite is crash-safe)")
			return nil
		}
	})
	// Indexes FerretDB's _id lookups can use (see idIndexer); stopped
	// before FerretDB.
	ixCtx, ixStop := context.WithCancel(context.Background())
	ixDone := make(chan struct{})
	go func() { newIDIndexer(dir, cfg.Logger).run(ixCtx, idIndexInterval); close(ixDone) }()
	b.onClose(func(ctx context.Context) error {
		ixStop()
		select {
		case <-ixDone:
		case <-ctx.Done():
		}
		return nil
	})
	uri := f.MongoDBURI()
	if sockDir != "" {
		uri = "mongodb://" + url.PathEscape(lc.Unix) + "/"
	}
	o := options.Client().ApplyURI(uri).SetAppName("cpod-storage").
		SetTimeout(cfg.MongoTimeout).SetMaxPoolSize(mongoPoolSize())
	if cfg.MongoMonitor != nil {
		o.SetMonitor(cfg.MongoMonitor)
	}
	c, err := mongo.Connect(o)
	if err != nil {
		return err
	}
	b.onClose(func(ctx context.Context) error { _ = c.Disconnect(ctx); return nil })
	b.Mongo = c.Database(cfg.Database)
	if cfg.Dir != "" {
		b.Kinds["documents"] = "embedded FerretDB on SQLite in " + dir + " (persistent)"
	} else {
		b.Kinds["documents"] = "embedded FerretDB on SQLite in a temporary directory (ephemeral)"
	}
	return nil
}

// ferretLog is the embedded FerretDB's logger: errors only, and never its
// dumps of wire messages, which may carry document contents.
func ferretLog(l *slog.Logger) *slog.Logger {
	return slog.New(filterHandler{l.Handler(), slog.LevelError, func(r slog.Record) bool {
		for _, p := range []string{"Request ", "Response ", "Proxy ", "Header diff"} {
			if len(r.Message) >= len(p) && r.Message[:len(p)] == p {
				return true
			}
		}
		return false
	}})
}

// filterHandler drops records below min, and those drop reports.
type filterHandler struct {
	slog.Handler
	min  slog.Level
	drop func(slog.Record) bool
}

func (h filterHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h filterHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.drop != nil && h.drop(r) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}
func (h filterHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return filterHandler{h.Handler.WithAttrs(a), h.min, h.drop}
}
func (h filterHandler) WithGroup(g string) slog.Handler {
	return filterHandler{h.Handler.WithGroup(g), h.min, h.drop}
}

// startKV runs miniredis, in memory only.
func (b *Backends) startKV(cfg Config) error {
	m := miniredis.NewMiniRedis()
	// TTLs run on the wall clock, as in Redis. miniredis' own ClockTTL
	// sorts every key on every command; through our client, the clock
	// moves at most every wallClockStep instead (see wallClock).
	var clock *wallClock
	switch {
	case cfg.KVManualClock:
	case cfg.Loopback: // other clients may come: miniredis keeps time
		m.ClockTTL(true)
	default:
		clock = &wallClock{m: m}
		clock.last.Store(time.Now().UnixNano())
	}
	opts := &redis.Options{ContextTimeoutEnabled: true}
	if cfg.Loopback {
		if err := m.Start(); err != nil {
			return err
		}
		opts.Addr = m.Addr()
	} else {
		opts.Dialer = func(context.Context, string, string) (net.Conn, error) { return m.Dial() }
	}
	c := redis.NewClient(opts)
	b.Redis, b.Miniredis = c, m
	if clock != nil {
		c.AddHook(clock)
	}
	b.onClose(func(context.Context) error {
		_ = c.Close()
		m.Close()
		return nil
	})
	b.Kinds["kv"] = "embedded miniredis in memory (ephemeral)"
	return nil
}

// wallClockStep is the most a TTL may lag behind the wall clock.
const wallClockStep = 10 * time.Millisecond

// wallClock moves miniredis' TTLs with the wall clock, before a command of
// the client when at least wallClockStep passed since the last move.
type wallClock struct {
	m    *miniredis.Miniredis
	mu   sync.Mutex
	last atomic.Int64 // unix nanos of the last move
}

// tick moves TTLs by the time elapsed since the last move, if at least
// step; nil does nothing.
func (c *wallClock) tick(step time.Duration) {
	if c == nil || time.Now().UnixNano()-c.last.Load() < int64(step) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UnixNano()
	if d := now - c.last.Load(); d > 0 && d >= int64(step) {
		c.m.FastForward(time.Duration(d))
		c.last.Store(now)
	}
}

func (c *wallClock) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *wallClock) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.tick(wallClockStep)
		return next(ctx, cmd)
	}
}
func (c *wallClock) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.tick(wallClockStep)
		return next(ctx, cmds)
	}
}
