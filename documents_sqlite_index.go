// Indexes of the SQLite documents store, made on demand per collection.
//
// A query or count scans the caller's collection (its rows lie together,
// see sqlite.go) and reads each value's sort keys: about 1 µs a document
// and a path, 15-20 ms for a filter on two fields and a sort over 20k
// documents. Firestore indexes every field; PocketBase has columns. Here,
// when a query or count of a collection took longer than indexAfter, the
// store adds, in the background, an index for that shape to that
// collection alone:
//
//	CREATE INDEX cpod_ix_<hash> ON cpod_documents (<sort key of each
//	equality and "in" path>, <sort key of each sort path>)
//	WHERE loc = '<location>' AND coll = '<collection>'
//
// so the next query of that shape reads only the rows it returns (an
// equality prefix, then the sort order: a page is LIMIT rows of the index;
// a count is a range of it), and no other collection's writes maintain it.
// Without equality or sort, the first range path is indexed.
//
// What an index costs: each write to that collection one more index entry
// (the sort keys of its paths computed once), and every write to the table
// one comparison of its location and collection with each index's WHERE
// (BenchmarkSQLiteIndexWriteCost). Hence the caps: maxIndexesPerCollection,
// maxIndexesPerTenant and maxIndexes in all; past them queries scan. An
// erase drops the indexes of the locations it empties. Index names and
// their collections are kept in cpod_doc_indexes, so a restart knows them.

package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// indexAfter is how long a query or count runs before its collection
	// gets an index for its shape.
	indexAfter = 3 * time.Millisecond
	// maxIndexColumns caps the paths of one index.
	maxIndexColumns         = 4
	maxIndexesPerCollection = 4
	maxIndexesPerTenant     = 32
	maxIndexes              = 512
	// indexBuildTimeout bounds one CREATE INDEX (it holds the write lock).
	indexBuildTimeout = 30 * time.Second
)

// docIndexes knows the indexes of the store and builds new ones.
type docIndexes struct {
	s   *sqlStore
	log *slog.Logger
	// every is a test knob: index every query shape at once, whatever it
	// took, without caps, before the query returns; off one that builds
	// none.
	every, off bool

	mu        sync.Mutex
	loaded    bool
	names     map[string]bool     // made (true) or being made (false)
	cols      map[string][]string // each index's columns, by name
	byColl    map[string][]string // the names of each collection's indexes
	perColl   map[string]int      // by loc + "\x00" + coll
	perTenant map[string]int
	total     int
}

// consider notes that a query or count of t with these terms and sort
// took took, and starts building an index for it when it was slow and
// none exists (see the top of this file).
func (x *docIndexes) consider(t target, terms []filterTerm, sort []sortTerm, took time.Duration) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.loaded || x.off || (took < indexAfter && !x.every) {
		return
	}
	name, cols := indexFor(t, terms, sort)
	if name == "" {
		return
	}
	coll, tenant := t.loc+"\x00"+t.coll, tenantOf(t)
	if _, ok := x.names[name]; ok {
		return
	}
	if !x.every && (x.perColl[coll] >= maxIndexesPerCollection || x.perTenant[tenant] >= maxIndexesPerTenant || x.total >= maxIndexes) {
		return
	}
	x.names[name] = false
	x.cols[name] = cols
	x.byColl[coll] = append(x.byColl[coll], name)
	x.perColl[coll]++
	x.perTenant[tenant]++
	x.total++
	if x.every {
		x.mu.Unlock()
		x.build(name, t, cols)
		x.mu.Lock()
		return
	}
	go x.build(name, t, cols)
}

// indexFor is the name and the columns of the index for a query shape:
// the sort keys of its equality and "in" paths, then of its sort paths;
// without either, of its first range path. "" when none fits.
func indexFor(t target, terms []filterTerm, sort []sortTerm) (string, []string) {
	var cols []string
	seen := map[string]bool{}
	add := func(p fieldPath) {
		if k := sortKeySQL(sqlPath(p)); !seen[k] && len(cols) < maxIndexColumns {
			seen[k] = true
			cols = append(cols, k)
		}
	}
	for _, f := range terms {
		if f.op == opEq || f.op == opIn {
			add(f.path)
		}
	}
	for _, s := range sort {
		add(s.path)
	}
	if len(cols) == 0 {
		for _, f := range terms {
			if f.op != opNe {
				add(f.path)
				break
			}
		}
	}
	if len(cols) == 0 {
		return "", nil
	}
	h := sha256.New()
	h.Write([]byte(t.loc + "\x00" + t.coll + "\x00" + strings.Join(cols, "\x00")))
	return "cpod_ix_" + hex.EncodeToString(h.Sum(nil)[:12]), cols
}

// use is the INDEXED BY clause for a query shape whose index is built, or
// "". SQLite's planner, without statistics, prefers the primary key's
// range of the collection to an index of expressions; the index built for
// exactly this shape is the better plan (its equality prefix, then the
// sort order, read LIMIT rows deep).
func (x *docIndexes) use(t target, terms []filterTerm, sort []sortTerm) string {
	if x == nil {
		return ""
	}
	name, want := indexFor(t, terms, sort)
	if name == "" {
		return ""
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.names[name] {
		return " INDEXED BY " + name
	}
	// An index whose columns start with the shape's: a count by the
	// equalities of a query with a sort, or a query by fewer equalities.
	for _, other := range x.byColl[t.loc+"\x00"+t.coll] {
		cols := x.cols[other]
		if x.names[other] && len(cols) >= len(want) && slices.Equal(cols[:len(want)], want) {
			return " INDEXED BY " + other
		}
	}
	return ""
}

// build creates one index in the background, under the write lock.
func (x *docIndexes) build(name string, t target, cols []string) {
	ctx, cancel := context.WithTimeout(context.Background(), indexBuildTimeout)
	defer cancel()
	start := time.Now()
	err := x.s.write(ctx, func() error {
		tx, err := x.s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS "+name+" ON cpod_documents ("+strings.Join(cols, ", ")+
			") WHERE loc = "+sqlQuote(t.loc)+" AND coll = "+sqlQuote(t.coll)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO cpod_doc_indexes (name, loc, coll, cols, created) VALUES (?, ?, ?, ?, ?)`,
			name, t.loc, t.coll, strings.Join(cols, "\x00"), time.Now().UnixMilli()); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		x.log.Warn("storage: a documents index was not built; queries of its shape scan", "index", name, "err", err)
		x.forget(name, t)
		return
	}
	x.mu.Lock()
	if _, ok := x.names[name]; ok {
		x.names[name] = true
	}
	x.mu.Unlock()
	x.log.Debug("storage: built a documents index", "index", name, "took", time.Since(start))
}

// forget drops what x counts of an index.
func (x *docIndexes) forget(name string, t target) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.names[name]; !ok {
		return
	}
	delete(x.names, name)
	delete(x.cols, name)
	coll := t.loc + "\x00" + t.coll
	x.byColl[coll] = slices.DeleteFunc(x.byColl[coll], func(n string) bool { return n == name })
	x.perColl[coll]--
	x.perTenant[tenantOf(t)]--
	x.total--
}

// load reads the indexes made before (by this or an earlier process).
func (x *docIndexes) load(ctx context.Context) error {
	rows, err := x.s.db.QueryContext(ctx, `SELECT name, loc, coll, cols FROM cpod_doc_indexes`)
	if err != nil {
		return err
	}
	defer rows.Close()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.names, x.cols, x.byColl = map[string]bool{}, map[string][]string{}, map[string][]string{}
	x.perColl, x.perTenant, x.total = map[string]int{}, map[string]int{}, 0
	for rows.Next() {
		var name, loc, coll, cols string
		if err := rows.Scan(&name, &loc, &coll, &cols); err != nil {
			return err
		}
		t := target{loc: loc, coll: coll}
		x.names[name] = true
		x.cols[name] = strings.Split(cols, "\x00")
		x.byColl[loc+"\x00"+coll] = append(x.byColl[loc+"\x00"+coll], name)
		x.perColl[loc+"\x00"+coll]++
		x.perTenant[tenantOf(t)]++
		x.total++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	x.loaded = true
	return nil
}

// dropUnder drops the indexes of the collections under prefix (an erase
// emptied them). Called under the write lock.
func (x *docIndexes) dropUnder(ctx context.Context, prefix string) error {
	rows, err := x.s.db.QueryContext(ctx, `SELECT name, loc, coll FROM cpod_doc_indexes WHERE loc >= ? AND loc < ?`, prefix, prefixEnd(prefix))
	if err != nil {
		return err
	}
	type ix struct {
		name string
		t    target
	}
	var found []ix
	for rows.Next() {
		var i ix
		if err := rows.Scan(&i.name, &i.t.loc, &i.t.coll); err != nil {
			rows.Close()
			return err
		}
		found = append(found, i)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, i := range found {
		if !strings.HasPrefix(i.name, "cpod_ix_") || strings.Trim(i.name[len("cpod_ix_"):], "0123456789abcdef") != "" {
			continue // never a name this file did not make
		}
		if _, err := x.s.db.ExecContext(ctx, "DROP INDEX IF EXISTS "+i.name); err != nil {
			return err
		}
		if _, err := x.s.db.ExecContext(ctx, `DELETE FROM cpod_doc_indexes WHERE name = ?`, i.name); err != nil {
			return err
		}
		x.forget(i.name, i.t)
	}
	return nil
}
