package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	storage "github.com/cpod/storage"
)

// StoreFile is the SQLite database of the embedded store (documents, the
// app registry and kv) in Config.Dir.
const StoreFile = "cpod.db"

// OpenSQLite opens (creating it if missing) the SQLite database at path
// for storage.Config.SQL: WAL, synchronous NORMAL (a committed write
// survives the process being killed; power loss may take the last
// transactions, never corrupt the file), a 10 s busy timeout for other
// processes on the same file, and BEGIN IMMEDIATE for transactions. The
// caller closes it.
func OpenSQLite(path string) (*sql.DB, error) {
	u := url.URL{Scheme: "file", Path: path}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_txlock", "immediate")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	// Readers each take a connection; the engine writes on one at a time.
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// startSQLite opens the embedded store in b.dir (a temporary directory
// without Config.Dir), after importing the documents and apps of a
// FerretDB directory and the kv snapshot left by an earlier version.
func (b *Backends) startSQLite(ctx context.Context, cfg Config, sockDir string) error {
	path := filepath.Join(b.dir, StoreFile)
	db, err := OpenSQLite(path)
	if err != nil {
		return err
	}
	b.onClose(func(context.Context) error { return db.Close() })
	if cfg.Dir != "" {
		if err := b.importFerret(ctx, cfg, sockDir, db); err != nil {
			return fmt.Errorf("importing %s: %w", DocumentsDir, err)
		}
		if !cfg.NoKV {
			if err := b.importKVSnapshot(ctx, db, cfg.KVKeyPrefix); err != nil {
				return err
			}
		}
		b.Kinds["documents"] = "embedded SQLite store " + path + " (persistent)"
	} else {
		b.Kinds["documents"] = "embedded SQLite store in a temporary directory (ephemeral)"
	}
	if !cfg.NoKV {
		b.Kinds["kv"] = b.Kinds["documents"]
	}
	b.SQL = db
	return nil
}

// importFerret imports the documents and apps of DocumentsDir (FerretDB
// on SQLite, the store of earlier versions) into db, once: FerretDB runs
// on it for the import, then the directory is renamed
// DocumentsDir+".imported" (".imported.2", ".3" ... when that exists,
// after a downgrade and a second upgrade). An import that fails stops the start and
// leaves the directory as it was, to be imported again on the next start
// (the import overwrites what it copied before).
func (b *Backends) importFerret(ctx context.Context, cfg Config, sockDir string, db *sql.DB) error {
	dir := filepath.Join(b.dir, DocumentsDir)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	old := &Backends{Kinds: map[string]string{}, log: b.log, dir: b.dir}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = old.Close(cctx)
	}()
	if err := old.startMongo(ctx, cfg, sockDir); err != nil {
		return err
	}
	n, err := storage.ImportMongo(ctx, old.Mongo, db)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	_ = old.Close(cctx)
	cancel()
	// A data directory upgraded before, then run by an earlier version
	// again, holds a documents.imported already: this one gets the next
	// free name.
	to := dir + ".imported"
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s.imported.%d", dir, i)
	}
	if err := os.Rename(dir, to); err != nil {
		return err
	}
	b.log.Info("embedded store: imported the documents of an earlier version", "documents", n.Documents, "apps", n.Apps, "from", dir, "renamed to", to)
	return nil
}
