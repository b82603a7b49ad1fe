package embedded

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB's SQLite backend uses too
)

// FerretDB v1.24's SQLite backend looks documents up by _id with
// `_ferretdb_sjson->'$._id' = ?` (find, update and delete by _id), but
// indexes _id as `_ferretdb_sjson->"_id"`: SQLite matches index
// expressions textually, so every lookup by _id scans the whole table and
// parses each document's JSON. Under load, each write then costs O(number
// of documents), throughput falls as data grows, and requests time out.
//
// idIndexer adds the index those statements can use, `<table>_cpod_id` on
// `_ferretdb_sjson->'$._id'`, to every collection table of the databases
// in dir: at start, and then every interval for collections created since.
// FerretDB never sees it (its index list lives in its own metadata), and
// dropping a collection drops the table with its index.
type idIndexer struct {
	dir string
	log *slog.Logger

	mu  sync.Mutex
	dbs map[string]*indexedDB // by file name
}

type indexedDB struct {
	db *sql.DB
	fi os.FileInfo // to notice a dropped and recreated database file
}

const idIndexSuffix = "_cpod_id"

func newIDIndexer(dir string, log *slog.Logger) *idIndexer {
	return &idIndexer{dir: dir, log: log, dbs: map[string]*indexedDB{}}
}

// run indexes now, then every interval until ctx ends; it closes its
// database handles when it returns.
func (x *idIndexer) run(ctx context.Context, every time.Duration) {
	defer x.close()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		x.indexAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// indexAll adds the missing _id indexes of every database file.
func (x *idIndexer) indexAll(ctx context.Context) {
	files, _ := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	x.mu.Lock()
	defer x.mu.Unlock()
	seen := map[string]bool{}
	for _, f := range files {
		seen[f] = true
		fi, err := os.Stat(f)
		if err != nil {
			continue
		}
		d := x.dbs[f]
		if d != nil && !os.SameFile(d.fi, fi) {
			d.db.Close()
			d = nil
		}
		if d == nil {
			db, err := sql.Open("sqlite", "file:"+f+"?_pragma=busy_timeout(10000)")
			if err != nil {
				continue
			}
			db.SetMaxOpenConns(1)
			d = &indexedDB{db: db, fi: fi}
			x.dbs[f] = d
		}
		if err := indexTables(ctx, d.db); err != nil && ctx.Err() == nil {
			x.log.Warn("embedded FerretDB: cannot add an _id index", "file", f, "err", err)
		}
	}
	for f, d := range x.dbs {
		if !seen[f] {
			d.db.Close()
			delete(x.dbs, f)
		}
	}
}

// indexTables adds the missing indexes of one database.
func indexTables(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT c.table_name FROM _ferretdb_collections c
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = c.table_name || '`+idIndexSuffix+`')`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // a database FerretDB is still creating
		}
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		q := `CREATE INDEX IF NOT EXISTS ` + quoteIdent(t+idIndexSuffix) + ` ON ` + quoteIdent(t) + ` (_ferretdb_sjson->'$._id')`
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			return err
		}
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func (x *idIndexer) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for f, d := range x.dbs {
		d.db.Close()
		delete(x.dbs, f)
	}
}
