// The drivers' side of the console's admin listings (admin_browse.go):
// segments (tenants and locations found from the data) and collections
// of the documents drivers, segments and list of the kv drivers, and the
// files' segments on S3. Every method does bounded work per call, as
// admin_browse.go describes.

package storage

import (
	"context"
	"database/sql"
	"errors"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ---- files (S3) ----

// fileSegments lists the common prefixes one level under prefix (S3's
// delimiter listing), after the segment pos, at most limit: one bounded
// listing of at most limit entries.
func (e *Engine) fileSegments(ctx context.Context, prefix, pos string, limit int) ([]string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.S3Timeout)
	defer cancel()
	start := ""
	if pos != "" {
		// Past every key of segment pos: they start with pos + "/", and
		// '0' follows '/'. The key pos + "0" itself has no segment.
		start = prefix + pos + "0"
	}
	noOwner := false
	var names []string
	for obj := range e.cfg.S3.ListObjectsIter(ctx, e.cfg.Bucket, minio.ListObjectsOptions{
		Prefix:     prefix,
		Recursive:  false,
		StartAfter: start,
		MaxKeys:    min(limit, maxListPerRequest),
		FetchOwner: &noOwner,
	}) {
		if obj.Err != nil {
			return nil, "", s3Error("list", obj.Err)
		}
		if !strings.HasPrefix(obj.Key, prefix) || !strings.HasSuffix(obj.Key, "/") {
			continue // a file directly under prefix: never at these levels
		}
		seg := obj.Key[len(prefix) : len(obj.Key)-1]
		if seg == "" || strings.Contains(seg, "/") || (start != "" && obj.Key <= start) {
			continue
		}
		names = append(names, seg)
		if len(names) == limit {
			return names, seg, nil
		}
	}
	return names, "", nil
}

// ---- documents: MongoDB ----

// segments: in the single layout, one indexed seek on _id (location +
// collection + "/" + key) per name; in the partitioned layout, by
// physical collection (see partitionSegments).
func (m mongoDocs) segments(ctx context.Context, prefix, pos string, limit int) ([]string, string, error) {
	b, err := m.d.readyBounded(ctx)
	if err != nil {
		return nil, "", err
	}
	if b.partitioned {
		return m.partitionSegments(ctx, prefix, pos, limit)
	}
	return seekSegments(ctx, m.firstID, prefix, pos, limit)
}

// firstID returns the smallest _id in [from, end) of the single layout.
func (m mongoDocs) firstID(ctx context.Context, from, end string) (string, bool, error) {
	r := bson.D{{Key: "$gte", Value: from}}
	if end != "" {
		r = append(r, bson.E{Key: "$lt", Value: end})
	}
	bctx, cancel := context.WithTimeout(ctx, m.d.e.cfg.BackendTimeout)
	defer cancel()
	raw, err := m.d.coll.FindOne(bctx, bson.D{{Key: "_id", Value: r}},
		options.FindOne().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "_id", Value: 1}})).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", false, nil
	}
	if err != nil {
		return "", false, docsBackendError("documents list", err)
	}
	id, ok := raw.Lookup("_id").StringValueOK()
	return id, ok, nil
}

// partitionNames matches the physical collections of the partitioned
// layout: base.<16 hex>.<16 hex>.<collection>.
func (m mongoDocs) partitionNames(ctx context.Context, namePrefix string) ([]string, error) {
	base := m.d.e.cfg.DocumentsCollection
	shape := regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `\.[0-9a-f]{16}\.[0-9a-f]{16}\.`)
	bctx, cancel := context.WithTimeout(ctx, m.d.e.cfg.BackendTimeout)
	defer cancel()
	names, err := m.d.e.cfg.Mongo.ListCollectionNames(bctx,
		bson.D{{Key: "name", Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(namePrefix)}}}})
	if err != nil {
		return nil, docsBackendError("documents list collections", err)
	}
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, namePrefix) && shape.MatchString(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// partitionSegments walks the physical collections that can hold
// documents under prefix, in name order after pos (a physical name),
// reading the location of one document of each: at most
// adminPartitionReads reads. Names repeat across pages (a location has a
// collection per logical collection); walk removes repeats within one.
func (m mongoDocs) partitionSegments(ctx context.Context, prefix, pos string, limit int) ([]string, string, error) {
	namePrefix := m.d.e.cfg.DocumentsCollection + "."
	if tenant, _, ok := strings.Cut(prefix, "/"); ok {
		namePrefix = m.d.partitionPrefix(tenantPrefix(tenant))
	}
	all, err := m.partitionNames(ctx, namePrefix)
	if err != nil {
		return nil, "", err
	}
	i, _ := slices.BinarySearch(all, pos)
	if i < len(all) && all[i] == pos {
		i++
	}
	var names []string
	seen := map[string]bool{}
	for reads := 0; i < len(all) && len(names) < limit && reads < adminPartitionReads; i, reads = i+1, reads+1 {
		bctx, cancel := context.WithTimeout(ctx, m.d.e.cfg.BackendTimeout)
		raw, err := m.d.e.cfg.Mongo.Collection(all[i]).FindOne(bctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: fieldLoc, Value: 1}})).Raw()
		cancel()
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue // emptied; dropped by the next erase
		}
		if err != nil {
			return nil, "", docsBackendError("documents list", err)
		}
		loc, _ := raw.Lookup(fieldLoc).StringValueOK()
		if !strings.HasPrefix(loc, prefix) {
			continue
		}
		seg, _, ok := strings.Cut(loc[len(prefix):], "/")
		if ok && seg != "" && !seen[seg] {
			seen[seg] = true
			names = append(names, seg)
		}
	}
	if i < len(all) {
		return names, all[i-1], nil
	}
	return names, "", nil
}

// collections: in the single layout a seek per name (the collection is
// the segment after the location in _id, in _id order); in the
// partitioned layout the names of the location's physical collections
// (one catalog listing), by name.
func (m mongoDocs) collections(ctx context.Context, loc, after string, limit int) ([]string, string, error) {
	b, err := m.d.readyBounded(ctx)
	if err != nil {
		return nil, "", err
	}
	if !b.partitioned {
		return seekSegments(ctx, m.firstID, loc, after, limit)
	}
	all, err := m.d.partitions(ctx, loc)
	if err != nil {
		return nil, "", err
	}
	p := m.d.partitionPrefix(loc)
	var names []string
	for _, n := range all {
		c := n[len(p):]
		if validCollection(c) != nil || c <= after {
			continue
		}
		if len(names) == limit {
			return names, names[len(names)-1], nil
		}
		names = append(names, c)
	}
	return names, "", nil
}

// ---- documents: SQLite ----

// segments seeks the primary key (loc, coll, key) once per name.
func (q sqliteDocs) segments(ctx context.Context, prefix, pos string, limit int) ([]string, string, error) {
	if err := q.s.ready(ctx); err != nil {
		return nil, "", err
	}
	first := func(ctx context.Context, from, end string) (string, bool, error) {
		query, args := `SELECT loc FROM cpod_documents WHERE loc >= ? ORDER BY loc LIMIT 1`, []any{from}
		if end != "" {
			query, args = `SELECT loc FROM cpod_documents WHERE loc >= ? AND loc < ? ORDER BY loc LIMIT 1`, []any{from, end}
		}
		return q.firstString(ctx, query, args...)
	}
	return seekSegments(ctx, first, prefix, pos, limit)
}

// collections seeks the primary key once per name, in name order.
func (q sqliteDocs) collections(ctx context.Context, loc, after string, limit int) ([]string, string, error) {
	if err := q.s.ready(ctx); err != nil {
		return nil, "", err
	}
	var names []string
	for len(names) < limit {
		c, ok, err := q.firstString(ctx, `SELECT coll FROM cpod_documents WHERE loc = ? AND coll > ? ORDER BY coll LIMIT 1`, loc, after)
		if err != nil {
			return nil, "", err
		}
		if !ok {
			return names, "", nil
		}
		names = append(names, c)
		after = c
	}
	return names, after, nil
}

func (q sqliteDocs) firstString(ctx context.Context, query string, args ...any) (string, bool, error) {
	bctx, cancel := context.WithTimeout(ctx, q.d.e.cfg.BackendTimeout)
	defer cancel()
	var s string
	err := q.s.db.QueryRowContext(bctx, query, args...).Scan(&s)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, nil
		}
		return "", false, sqlError("documents list", err)
	}
	return s, true, nil
}

// ---- kv: SQLite ----

// segments seeks the primary key once per name, over live keys.
func (q *sqliteKV) segments(ctx context.Context, prefix, pos string, limit int) ([]string, string, error) {
	if err := q.s.ready(ctx); err != nil {
		return nil, "", err
	}
	now := q.now().UnixMilli()
	first := func(ctx context.Context, from, end string) (string, bool, error) {
		query, args := `SELECT k FROM cpod_kv WHERE k >= ? AND (exp = 0 OR exp > ?) ORDER BY k LIMIT 1`, []any{from, now}
		if end != "" {
			query, args = `SELECT k FROM cpod_kv WHERE k >= ? AND k < ? AND (exp = 0 OR exp > ?) ORDER BY k LIMIT 1`, []any{from, end, now}
		}
		bctx, cancel := context.WithTimeout(ctx, q.timeout)
		defer cancel()
		var k string
		err := q.s.db.QueryRowContext(bctx, query, args...).Scan(&k)
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, nil
		}
		if err != nil {
			return "", false, sqlError("kv list", err)
		}
		return k, true, nil
	}
	return seekSegments(ctx, first, prefix, pos, limit)
}

// list reads up to limit live keys under prefix after the location key
// pos, in key order, with one query.
func (q *sqliteKV) list(ctx context.Context, prefix, pos string, limit int) ([]kvEntry, string, error) {
	if err := q.s.ready(ctx); err != nil {
		return nil, "", err
	}
	// The range of the prefix's location (which ends with '/'), read
	// from prefix or after pos; the rows of prefix come first in it.
	loc := prefix[:strings.LastIndexByte(prefix, '/')+1]
	query, from := `SELECT k, exp FROM cpod_kv WHERE k >= ? AND k < ? AND (exp = 0 OR exp > ?) ORDER BY k LIMIT ?`, prefix
	if pos != "" {
		query, from = `SELECT k, exp FROM cpod_kv WHERE k > ? AND k < ? AND (exp = 0 OR exp > ?) ORDER BY k LIMIT ?`, pos
	}
	bctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	now := q.now().UnixMilli()
	rows, err := q.s.db.QueryContext(bctx, query, from, prefixEnd(loc), now, limit+1)
	if err != nil {
		return nil, "", sqlError("kv list", err)
	}
	defer rows.Close()
	var out []kvEntry
	for rows.Next() {
		var k string
		var exp int64
		if err := rows.Scan(&k, &exp); err != nil {
			return nil, "", sqlError("kv list", err)
		}
		if !strings.HasPrefix(k, prefix) {
			break // past the prefix's keys
		}
		if len(out) == limit {
			return out, out[len(out)-1].key, nil
		}
		out = append(out, kvEntry{k, kvTTLAt(exp, now)})
	}
	if err := rows.Err(); err != nil {
		return nil, "", sqlError("kv list", err)
	}
	return out, "", nil
}

// ---- kv: Redis ----

// redisNodes are the nodes SCAN must visit, in a stable order (by
// address): the client itself, or every master of a Cluster, every shard
// of a Ring.
func (r *redisKV) redisNodes(ctx context.Context) ([]redis.Cmdable, error) {
	type node struct {
		addr string
		c    redis.Cmdable
	}
	var nodes []node
	collect := func(_ context.Context, c *redis.Client) error {
		nodes = append(nodes, node{c.Options().Addr, c})
		return nil
	}
	var err error
	switch c := r.rdb.(type) {
	case *redis.ClusterClient:
		var mu chanMutex = make(chan struct{}, 1)
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { mu.lock(); defer mu.unlock(); return collect(ctx, m) })
	case *redis.Ring:
		var mu chanMutex = make(chan struct{}, 1)
		err = c.ForEachShard(ctx, func(ctx context.Context, s *redis.Client) error { mu.lock(); defer mu.unlock(); return collect(ctx, s) })
	default:
		return []redis.Cmdable{r.rdb}, nil
	}
	if err != nil {
		return nil, kvBackendError("list", err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].addr < nodes[j].addr })
	out := make([]redis.Cmdable, len(nodes))
	for i, n := range nodes {
		out[i] = n.c
	}
	return out, nil
}

type chanMutex chan struct{}

func (m chanMutex) lock()   { m <- struct{}{} }
func (m chanMutex) unlock() { <-m }

// scanPage runs at most adminScanCalls SCAN calls of pattern from pos
// ("<node>:<cursor>:<skip>", "" from the start) and returns up to limit
// items: extract turns each SCAN batch into its items, sorted and without
// repeats, and skip says how many of the batch at cursor were handed out
// already (SCAN's COUNT is a hint: a batch may hold more than a page; a
// batch read again from the same cursor is the same while Redis does not
// rehash). next is "" once every node was scanned.
func (r *redisKV) scanPage(ctx context.Context, pattern, pos string, limit int, extract func(keys []string) []string) (items []string, next string, err error) {
	nodes, err := r.redisNodes(ctx)
	if err != nil {
		return nil, "", err
	}
	node, cursor, skip := 0, uint64(0), 0
	if pos != "" {
		parts := strings.Split(pos, ":")
		bad := len(parts) != 3
		var n, sk int
		var cu uint64
		var err1, err2, err3 error
		if !bad {
			n, err1 = strconv.Atoi(parts[0])
			cu, err2 = strconv.ParseUint(parts[1], 10, 64)
			sk, err3 = strconv.Atoi(parts[2])
		}
		if bad || err1 != nil || err2 != nil || err3 != nil || n < 0 || n >= len(nodes) || sk < 0 {
			return nil, "", errorf(CodeInvalidCursor, "the cursor is not valid for this listing (the Redis nodes changed?)")
		}
		node, cursor, skip = n, cu, sk
	}
	for calls := 0; calls < adminScanCalls && len(items) < limit; calls++ {
		sctx, cancel := context.WithTimeout(ctx, r.timeout)
		keys, nextCursor, err := nodes[node].Scan(sctx, cursor, pattern, int64(limit)).Result()
		cancel()
		if err != nil {
			return nil, "", kvBackendError("list", err)
		}
		batch := extract(keys)
		if skip < len(batch) {
			batch = batch[skip:]
		} else {
			batch = nil
		}
		if want := limit - len(items); len(batch) > want {
			items = append(items, batch[:want]...)
			skip += want
			return items, strconv.Itoa(node) + ":" + strconv.FormatUint(cursor, 10) + ":" + strconv.Itoa(skip), nil
		}
		items = append(items, batch...)
		cursor, skip = nextCursor, 0
		if cursor == 0 {
			node++
			if node == len(nodes) {
				return items, "", nil
			}
		}
	}
	return items, strconv.Itoa(node) + ":" + strconv.FormatUint(cursor, 10) + ":0", nil
}

// segments SCANs the keys under prefix ("" for every key of the engine,
// in both forms of redisKey).
func (r *redisKV) segments(ctx context.Context, prefix, pos string, limit int) ([]string, string, error) {
	forms := []kvKeys{r.kvKeysUnder(prefix)}
	pattern := forms[0].pattern
	if prefix == "" {
		forms = append(forms, r.kvKeysUnder("}"))
		forms[1].prefix = ""
		pattern = globEscape(r.prefix) + "*"
	}
	return r.scanPage(ctx, pattern, pos, limit, func(keys []string) []string {
		var names []string
		for _, k := range keys {
			for _, f := range forms {
				if loc, isValue, ok := f.locationKey(k); ok && isValue && strings.HasPrefix(loc, prefix) {
					if seg, _, ok := strings.Cut(loc[len(prefix):], "/"); ok && seg != "" {
						names = append(names, seg)
					}
					break
				}
			}
		}
		slices.Sort(names)
		return slices.Compact(names)
	})
}

// list SCANs the keys under prefix and reads the TTLs of a page's keys
// (one pipelined PTTL); each page is sorted.
func (r *redisKV) list(ctx context.Context, prefix, pos string, limit int) ([]kvEntry, string, error) {
	ks := r.kvKeysUnder(prefix)
	locs, next, err := r.scanPage(ctx, ks.pattern, pos, limit, func(keys []string) []string {
		var locs []string
		for _, k := range keys {
			if loc, isValue, ok := ks.locationKey(k); ok && isValue {
				locs = append(locs, loc)
			}
		}
		slices.Sort(locs)
		return slices.Compact(locs)
	})
	if err != nil || len(locs) == 0 {
		return nil, next, err
	}
	bctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ttls := make([]*redis.DurationCmd, len(locs))
	if _, err := r.rdb.Pipelined(bctx, func(p redis.Pipeliner) error {
		for i, loc := range locs {
			ttls[i] = p.PTTL(bctx, r.redisKey(loc))
		}
		return nil
	}); err != nil {
		return nil, "", kvBackendError("list", err)
	}
	out := make([]kvEntry, 0, len(locs))
	for i, loc := range locs {
		ttl := int64(-1)
		switch d := ttls[i].Val(); {
		case d == -2:
			continue // gone since the SCAN
		case d > 0:
			ttl = ttlSeconds(d)
		}
		out = append(out, kvEntry{loc, ttl})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, next, nil
}
