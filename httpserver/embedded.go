package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/alicebob/miniredis/v2"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Files of the data directory.
const (
	tokenSecretFile   = "token-secret"    // HMAC secret of locally minted tokens
	urlSigningKeyFile = "url-signing-key" // Config.SigningKey
	adminTokenFile    = "admin-token"     // admin token of /v1/oauth/apps
	filesDBFile       = "files.bolt"      // embedded S3 objects
	documentsDir      = "documents"       // embedded FerretDB SQLite databases
	lockFile          = "LOCK"
)

// dataDir is the data directory, locked against a second server.
type dataDir struct {
	path   string
	unlock func()
}

// openDataDir creates (0700) and locks the data directory.
func openDataDir(path string) (*dataDir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s (%s): %w", path, n("data-dir"), err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data directory %s (%s): %w", path, n("data-dir"), err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("data directory %s (%s) is not a directory", path, n("data-dir"))
	}
	unlock, err := lockDir(filepath.Join(path, lockFile))
	if err != nil {
		return nil, fmt.Errorf("data directory %s (%s): %w", path, n("data-dir"), err)
	}
	return &dataDir{path: path, unlock: unlock}, nil
}

// loosePermissions reports whether the data directory is open to others.
func (d *dataDir) loosePermissions() bool {
	fi, err := os.Stat(d.path)
	return err == nil && fi.Mode().Perm()&0o077 != 0
}

// readSecret reads a secret file of the data directory. A missing file is
// fs.ErrNotExist; a file others can read, or an empty one, is refused.
func readSecret(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by other users (mode %#o): run chmod 600 %s", p, fi.Mode().Perm(), p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 32 {
		return "", fmt.Errorf("%s is shorter than 32 bytes: remove it to have a new one generated", p)
	}
	return s, nil
}

// secret returns the secret stored in the file name of the data directory,
// generating it (0600) on first use. created tells whether it was generated.
func (d *dataDir) secret(name, prefix string) (value string, created bool, err error) {
	v, err := readSecret(d.path, name)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return v, false, err
	}
	v = prefix + randomToken()
	tmp, err := os.CreateTemp(d.path, "."+name+".tmp*")
	if err != nil {
		return "", false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", false, err
	}
	if _, err := tmp.WriteString(v + "\n"); err != nil {
		tmp.Close()
		return "", false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", false, err
	}
	if err := tmp.Close(); err != nil {
		return "", false, err
	}
	// Link fails if another process created the file meanwhile: use theirs.
	if err := os.Link(tmp.Name(), filepath.Join(d.path, name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			v, err := readSecret(d.path, name)
			return v, false, err
		}
		return "", false, err
	}
	return v, true, nil
}

// randomToken returns 256 random bits, base64url without padding (43 bytes).
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// backends are the three stores handed to the engine, and how to stop them.
type backends struct {
	S3     *minio.Client
	Bucket string
	Mongo  *mongo.Database
	Redis  redis.UniversalClient
	// Kinds describe each backend for the startup log, such as
	// "embedded gofakes3 (bolt, persistent)"; never an address with
	// credentials.
	Kinds map[string]string

	closers []func(context.Context)
}

// close stops the backends in reverse start order.
func (b *backends) close(ctx context.Context) {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i](ctx)
	}
	b.closers = nil
}

func (b *backends) onClose(f func(context.Context)) { b.closers = append(b.closers, f) }

// socketDir makes a private directory for the embedded backends' Unix
// sockets: they listen on no TCP port, so no other local user can reach
// them. It is <data-dir>/sockets (the data directory is locked, so stale
// sockets of a killed server are safely replaced), or a temporary directory
// when that path is too long for a socket address.
func (b *backends) socketDir(dataDir string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(dataDir, "sockets"))
	if err != nil {
		return "", err
	}
	if len(dir)+len("/mongodb.sock") < 100 {
		if err := os.RemoveAll(dir); err != nil {
			return "", err
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", err
		}
	} else if dir, err = os.MkdirTemp("", "cpod-"); err != nil {
		return "", err
	}
	b.onClose(func(context.Context) { _ = os.RemoveAll(dir) })
	return dir, nil
}

// startEmbeddedS3 serves gofakes3 on a bolt file of the data directory (files
// survive restarts) over a Unix socket, and returns a client for it.
func (b *backends) startEmbeddedS3(dataDir, sockDir, bucket string, log *slog.Logger) error {
	path := filepath.Join(dataDir, filesDBFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("embedded S3: open %s: %w", path, err)
	}
	b.onClose(func(context.Context) { _ = db.Close() })
	backend := s3bolt.New(db)
	ok, err := backend.BucketExists(bucket)
	if err == nil && !ok {
		err = backend.CreateBucket(bucket)
	}
	if err != nil {
		return fmt.Errorf("embedded S3: bucket %s: %w", bucket, err)
	}
	faker := gofakes3.New(backend, gofakes3.WithLogger(fakeS3Log{log}), gofakes3.WithoutVersioning())
	sock := filepath.Join(sockDir, "s3.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("embedded S3: %w", err)
	}
	srv := &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	b.onClose(func(ctx context.Context) {
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
	})
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}
	// The host name is never resolved: every connection goes to the socket.
	c, err := minio.New("localhost", &minio.Options{
		Creds:     credentials.NewStaticV4("cpod-embedded", "cpod-embedded-secret", ""),
		Region:    "us-east-1",
		Transport: tr,
	})
	if err != nil {
		return fmt.Errorf("embedded S3: %w", err)
	}
	b.S3, b.Bucket = c, bucket
	b.Kinds["files"] = "embedded gofakes3 on " + path + " (persistent)"
	return nil
}

// fakeS3Log passes gofakes3's errors to the log and drops the rest (it logs
// every object name at info level).
type fakeS3Log struct{ log *slog.Logger }

func (l fakeS3Log) Print(level gofakes3.LogLevel, v ...any) {
	if level == gofakes3.LogErr {
		l.log.Error("embedded S3: " + fmt.Sprint(v...))
	}
}

// startEmbeddedMongo runs FerretDB on SQLite files of the data directory
// (documents survive restarts) over a Unix socket, and connects to it.
func (b *backends) startEmbeddedMongo(dataDir, sockDir, database string, timeout time.Duration, log *slog.Logger) error {
	dir, err := filepath.Abs(filepath.Join(dataDir, documentsDir))
	if err != nil {
		return fmt.Errorf("embedded MongoDB: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("embedded MongoDB: %w", err)
	}
	sock := filepath.Join(sockDir, "mongodb.sock")
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: sock},
		Handler:   "sqlite",
		SQLiteURL: (&url.URL{Scheme: "file", Path: dir + "/"}).String(),
		Logger:    log,
	})
	if err != nil {
		return fmt.Errorf("embedded MongoDB (FerretDB on %s): %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.Run(ctx); close(done) }()
	b.onClose(func(context.Context) { cancel(); <-done })
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + url.PathEscape(sock) + "/").SetAppName("cpod-storage").SetTimeout(timeout))
	if err != nil {
		return fmt.Errorf("embedded MongoDB: %w", err)
	}
	b.onClose(func(ctx context.Context) { _ = c.Disconnect(ctx) })
	b.Mongo = c.Database(database)
	b.Kinds["documents"] = "embedded FerretDB on SQLite in " + dir + " (persistent)"
	return nil
}

// startEmbeddedRedis runs miniredis in process, reached over in-memory pipes
// (no port). Its values live in memory only: they are lost when the server
// stops.
func (b *backends) startEmbeddedRedis() {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true) // TTLs run on the wall clock, as in Redis
	c := redis.NewClient(&redis.Options{
		Dialer:                func(context.Context, string, string) (net.Conn, error) { return m.Dial() },
		ContextTimeoutEnabled: true,
	})
	b.onClose(func(context.Context) { _ = c.Close(); m.Close() })
	b.Redis = c
	b.Kinds["kv"] = "embedded miniredis in memory (EPHEMERAL: kv values are lost when the server stops)"
}
