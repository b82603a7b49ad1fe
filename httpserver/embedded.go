package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"

	storage "github.com/cpod/storage"
)

// Files of the data directory.
const (
	tokenSecretFile   = "token-secret"    // HMAC secret of locally minted tokens
	urlSigningKeyFile = "url-signing-key" // Config.SigningKey
	adminTokenFile    = "admin-token"     // admin token of /v1/oauth/apps
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
	Mongo  *mongo.Database // or SQL
	SQL    *sql.DB
	Redis  redis.UniversalClient
	// ReadyChecks are the engine's extra /readyz checks: "disk", the free
	// space of the data directory, when an embedded backend keeps its data
	// there.
	ReadyChecks map[string]storage.ReadyCheck
	// Kinds describe each backend for the startup log, such as
	// "embedded S3 on the filesystem in ... (persistent)"; never an address
	// with credentials.
	Kinds map[string]string

	closers []func(context.Context)
}

// close stops the backends in reverse start order; a backend still busy
// when ctx ends is left behind (see embedded.Backends.Close).
func (b *backends) close(ctx context.Context) {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i](ctx)
	}
	b.closers = nil
}

func (b *backends) onClose(f func(context.Context)) { b.closers = append(b.closers, f) }
