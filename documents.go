package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// documentsRoutes binds the documents endpoints (sdk.storage.db). A document
// key named "query" or "batch" still works: set, get and delete use other
// methods than the two POST endpoints.
func (e *Engine) documentsRoutes() []route {
	d := &documents{e: e, slots: newTenantBudget("a write slot", ferretWriteSlots, ferretWriteSlots/2)}
	d.parsing = newTenantBudget("the document parse budget", d.parseBudget(), d.parseBudget()/4)
	if e.sql != nil {
		d.store = sqliteDocs{s: e.sql, d: d}
		n := e.cfg.Limits.MaxDocumentReads
		if n <= 0 {
			n = sqliteReadSlots()
		}
		d.reads.Store(newReadSlots(n))
	} else {
		d.coll = e.cfg.Mongo.Collection(e.cfg.DocumentsCollection)
		d.store = mongoDocs{d}
	}
	e.docs = d // the admin erase and export (admin.go) share its layout
	return []route{
		{"PUT", "/v1/storage/db/{collection}/{key}?tier", d.handleSet},
		{"GET", "/v1/storage/db/{collection}/{key}?tier", d.handleGet},
		{"HEAD", "/v1/storage/db/{collection}/{key}?tier", d.handleGet}, // net/http drops the body
		{"DELETE", "/v1/storage/db/{collection}/{key}?tier", d.handleDelete},
		{"PATCH", "/v1/storage/db/{collection}/{key}?tier", d.handlePatch},
		{"POST", "/v1/storage/db/{collection}/query?tier", d.handleQuery},
		{"POST", "/v1/storage/db/{collection}/count?tier", d.handleCount},
		{"POST", "/v1/storage/db/{collection}/batch?tier", d.handleBatch},
	}
}

// The stored form of a document, one MongoDB document in the physical
// collection of its layout (see "Documents layout" in doc.go and
// documents.open), the same in every layout:
//
//	_id      location + collection + "/" + key: the document's identity as one
//	         string. Locations end with "/" and collection names hold no "/",
//	         so the mapping is injective; it starts with the tenant.
//	loc      the location prefix from Resolve, such as "t1/apps/app-a/"
//	coll     the logical collection name
//	key      the document key
//	json     the value as compact JSON text: what get and query return, so
//	         field order, number spelling and escapes round-trip exactly
//	v        the value as BSON, for filters and sorting only (see bsonValue)
//	created  first set, updated  last set (BSON dates)
//	ver      a random version, new on every write: with updated, the ETag
//	         (see documents_versions.go); missing on documents written
//	         before versions existed
const (
	fieldLoc     = "loc"
	fieldColl    = "coll"
	fieldKey     = "key"
	fieldJSON    = "json"
	fieldValue   = "v"
	fieldCreated = "created"
	fieldUpdated = "updated"

	docsIndexName = "loc_coll_key_unique"
)

// Limits of the documents API that are not in Config.Limits.
const (
	maxDocKey         = 512       // bytes of a document key
	maxCollectionName = 64        // bytes of a collection name
	maxFieldPath      = 256       // bytes of a filter or sort field path
	maxFilterFields   = 16        // fields in one filter
	maxSortFields     = 4         // fields in one sort
	maxFilterString   = 4096      // bytes of a string in a filter
	defaultQueryLimit = 20        // items per page without a limit
	maxQueryBody      = 256 << 10 // a query body, cursor included
	// maxInlineSortValue is the largest sort value (BSON bytes) a cursor
	// carries; a larger one (an object at a sort field) is carried as its
	// hash and read back from the document at the cursor's position.
	maxInlineSortValue = 1024
	// maxPageBytes caps the JSON of one query page: a page stops early,
	// with a nextCursor, once its values pass this size.
	maxPageBytes = 16 << 20
	// minBatchBody is the smallest batch body accepted; it grows to hold at
	// least two documents of the configured maximum size.
	minBatchBody = 16 << 20
	// mongoMaxDocument is MongoDB's (and FerretDB's) BSON document limit,
	// less room for the command around it.
	mongoMaxDocument = 16<<20 - 64<<10
)

// MaxDocumentDepthCeiling is the largest Limits.MaxDocumentDepth New
// accepts: MongoDB's nesting limit of 100 less the levels the stored form
// of a document adds.
const MaxDocumentDepthCeiling = 96

// The documents layouts, the values of Config.DocumentsLayout (see
// "Documents layout" in doc.go).
const (
	// DocumentsLayoutAuto is partitioned on FerretDB and single on any other
	// server; the engine asks the server (buildInfo) once per process. A
	// FerretDB whose single collection already holds documents (written
	// before this layout existed) keeps the single layout.
	DocumentsLayoutAuto = "auto"
	// DocumentsLayoutSingle keeps every document in the one collection
	// Config.DocumentsCollection, with the index loc_coll_key_unique.
	DocumentsLayoutSingle = "single"
	// DocumentsLayoutPartitioned keeps the documents of each (location,
	// logical collection) in a collection of their own, named by hashes.
	DocumentsLayoutPartitioned = "partitioned"
)

const (
	// ferretWriteSlots caps the write commands (insert, update, delete)
	// that one engine has in flight on a FerretDB server. FerretDB v1 holds
	// two backend connections while it updates a document (the query's and
	// the write's), so enough concurrent updates exhaust its PostgreSQL
	// pool (pool_max_conns, default 50) and wait for each other for good;
	// on SQLite concurrent writers spin on the database lock. Queued in the
	// engine instead, they take turns, bounded by Config.BackendTimeout.
	ferretWriteSlots = 8
	// maxStatementsPerCommand caps the statements of one insert, update or
	// delete command of a batch, so that each command is short and the
	// backend timeout is checked between them.
	maxStatementsPerCommand = 25
)

// documents is the documents area: the physical collection of the single
// layout, and the backend facts found by this process.
type documents struct {
	e     *Engine
	store docStore // the driver: mongoDocs or sqliteDocs
	coll  *mongo.Collection
	slots *tenantBudget             // FerretDB write slots, see ferretWriteSlots
	reads atomic.Pointer[readSlots] // set by ready, before backend
	// parsing is the parse budget, in body bytes (see parseSlot).
	parsing *tenantBudget

	mu      sync.Mutex // serialises the first ready
	backend atomic.Pointer[docsBackend]
}

// docsBackend is what the engine learnt about the documents server.
type docsBackend struct {
	ferret      bool // the server is FerretDB (buildInfo has ferretdbVersion)
	partitioned bool // the layout is DocumentsLayoutPartitioned
}

// ready finds the server's kind and the layout, and in the single layout
// creates the unique index on (loc, coll, key), once per process; a failure
// fails the request and is retried on the next one. An index of that name
// that exists with other options (IndexOptionsConflict, code 85) is
// accepted: on a cluster sharded on _id the operator creates it without
// unique beforehand (see doc.go), since MongoDB allows unique indexes only
// on a shard key prefix. The partitioned layout needs no index but _id's.
func (d *documents) ready(ctx context.Context) (docsBackend, error) {
	if b := d.backend.Load(); b != nil {
		return *b, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b := d.backend.Load(); b != nil {
		return *b, nil
	}
	var b docsBackend
	info, err := d.e.cfg.Mongo.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Raw()
	if err != nil {
		return b, docsBackendError("documents buildInfo", err)
	}
	_, err = info.LookupErr("ferretdbVersion")
	b.ferret = err == nil
	switch d.e.cfg.DocumentsLayout {
	case DocumentsLayoutPartitioned:
		b.partitioned = true
	case DocumentsLayoutSingle:
	default:
		b.partitioned = b.ferret
		if b.ferret {
			// Documents written before the partitioned layout existed stay
			// where they are: a FerretDB whose single collection holds any
			// keeps the single layout.
			err := d.coll.FindOne(ctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
			switch {
			case err == nil:
				b.partitioned = false
				d.e.log.Warn("storage: FerretDB holds documents in the single layout, which scans every tenant's documents on each call: keeping it; see Config.DocumentsLayout", "collection", d.e.cfg.DocumentsCollection)
			case !errors.Is(err, mongo.ErrNoDocuments):
				return b, docsBackendError("documents layout", err)
			}
		}
	}
	if !b.partitioned {
		_, err := d.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
			Keys:    bson.D{{Key: fieldLoc, Value: 1}, {Key: fieldColl, Value: 1}, {Key: fieldKey, Value: 1}},
			Options: options.Index().SetUnique(true).SetName(docsIndexName),
		})
		var ce mongo.CommandError
		if err != nil && !(errors.As(err, &ce) && ce.Code == 85) {
			return b, docsBackendError("documents index", err)
		}
	}
	d.reads.Store(readSlotsFor(d.e.cfg.Limits, b.ferret))
	d.backend.Store(&b)
	return b, nil
}

// open returns the physical collection that holds t's documents, and the
// backend facts. In the partitioned layout that is
//
//	<Config.DocumentsCollection>.<h(tenant)>.<h(location)>.<collection>
//
// where h is the first 8 bytes of SHA-256 in hex: tenant and location may
// hold any printable ASCII, which collection names may not, and the hashes
// keep a tenant's collections, then a location's, under one name prefix.
// The stored documents are the same in both layouts (their _id spells the
// location), and every call filters on _id or on loc and coll, so two
// locations whose hashes collided would share a collection, never see
// each other's documents.
func (d *documents) open(ctx context.Context, t target) (*mongo.Collection, docsBackend, error) {
	b, err := d.ready(ctx)
	if err != nil {
		return nil, b, err
	}
	if !b.partitioned {
		return d.coll, b, nil
	}
	return d.e.cfg.Mongo.Collection(partitionName(d.e.cfg.DocumentsCollection, t)), b, nil
}

// partitionName is the physical collection of t in the partitioned layout.
func partitionName(base string, t target) string {
	tenant, _, _ := strings.Cut(t.loc, "/")
	th := sha256.Sum256([]byte(tenant))
	lh := sha256.Sum256([]byte(t.loc))
	return base + "." + hex.EncodeToString(th[:8]) + "." + hex.EncodeToString(lh[:8]) + "." + t.coll
}

// slot waits for a write slot on FerretDB (see ferretWriteSlots) and
// returns its release; elsewhere it returns at once. Waiting past ctx's
// deadline is 503.
func (d *documents) slot(ctx context.Context, b docsBackend) (release func(), err error) {
	if !b.ferret {
		return func() {}, nil
	}
	return d.slots.acquire(ctx, tenantFrom(ctx), 1)
}

// docsBackendError translates a driver error the caller did not handle:
// timeouts and network failures are 503, a server out of space 507,
// anything else 500.
func docsBackendError(op string, err error) (out error) {
	defer markBackend(backendMongo, &out)
	if mongo.IsTimeout(err) || mongo.IsNetworkError(err) || errors.Is(err, mongo.ErrClientDisconnected) {
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("%s: %w", op, err)}
	}
	if mongoOutOfSpace(err) {
		return errOutOfSpace(op, err)
	}
	return backendError(op, err)
}

// mongoOutOfSpaceCode is MongoDB's OutOfDiskSpace (mongod below its
// free-space threshold, or a write that met a full disk).
const mongoOutOfSpaceCode = 14031

// mongoOutOfSpaceMessages are the texts by which a server without that
// code says it is out of space: FerretDB passes its backend's error on as
// InternalError, PostgreSQL's disk_full (SQLSTATE 53100) or SQLite's
// SQLITE_FULL; Atlas' shared tiers refuse writes over their quota.
var mongoOutOfSpaceMessages = []string{
	"SQLSTATE 53100",           // PostgreSQL disk_full (FerretDB on PostgreSQL)
	"No space left on device",  // ENOSPC quoted by any of them
	"database or disk is full", // SQLITE_FULL (FerretDB on SQLite)
	"over your space quota",    // MongoDB Atlas shared tiers
}

// mongoOutOfSpace reports whether err is a MongoDB server's (or
// FerretDB's) refusal of a write for lack of space.
func mongoOutOfSpace(err error) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	if se.HasErrorCode(mongoOutOfSpaceCode) {
		return true
	}
	for _, m := range mongoOutOfSpaceMessages {
		if se.HasErrorMessage(m) {
			return true
		}
	}
	return false
}

// target is where a request's documents live: the caller's location and the
// logical collection.
type target struct {
	loc  string // Location.Prefix, such as "t1/apps/app-a/"
	coll string
}

// id is the _id of the document at key.
func (t target) id(key string) string { return t.loc + t.coll + "/" + key }

// idRange bounds the _ids of the target's documents: [lo, hi).
func (t target) idRange() (lo, hi string) { return t.loc + t.coll + "/", t.loc + t.coll + "0" }

// scope authorizes the call for access a and returns its target. Nothing
// here reads the body or calls a backend but the auth's app lookup.
func (d *documents) scope(c *call, a Access) (target, error) {
	id, tier, err := d.e.authorizeCall(c, a)
	if err != nil {
		return target{}, err
	}
	coll := c.params["collection"]
	if err := validCollection(coll); err != nil {
		return target{}, err
	}
	loc, err := Resolve(id, tier, coll)
	if err != nil {
		return target{}, err
	}
	return target{loc: loc.Prefix, coll: coll}, nil
}

// scopeKey is scope for the endpoints on one document: it also checks the
// {key} of the path.
func (d *documents) scopeKey(c *call, a Access) (target, string, error) {
	t, err := d.scope(c, a)
	if err != nil {
		return target{}, "", err
	}
	key := c.params["key"]
	if err := validDocKey(key); err != nil {
		return target{}, "", err
	}
	return t, key, nil
}

// validCollection checks a collection name: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}.
func validCollection(s string) error {
	ok := len(s) > 0 && len(s) <= maxCollectionName
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		alnum := (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		ok = alnum || (i > 0 && (c == '_' || c == '.' || c == '-'))
	}
	if !ok {
		return errorf(CodeInvalidRequest, "a collection name must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
	}
	return nil
}

// validDocKey checks a document key: 1 to 512 bytes of UTF-8 without control
// characters.
func validDocKey(k string) error {
	if len(k) == 0 || len(k) > maxDocKey {
		return errorf(CodeInvalidRequest, "a document key must be 1 to %d bytes", maxDocKey)
	}
	if !validText(k) {
		return errorf(CodeInvalidRequest, "a document key must be UTF-8 without control characters")
	}
	return nil
}

// ---------------------------------------------------------------------------
// Values: exact JSON text plus a BSON form for filters and sorting.

// docValue is a request's document value, parsed and checked.
type docValue struct {
	json  []byte // compact JSON text, byte for byte what get returns
	bson  any    // the BSON form (see bsonValue)
	nodes int    // JSON values in it, for Limits.MaxBatchNodes
}

// maxDepth is the effective nesting limit of values.
func (d *documents) maxDepth() int { return d.e.cfg.Limits.MaxDocumentDepth }

// parseValue checks a JSON value and builds its two stored forms. raw must
// hold exactly one JSON value. The policy for names (see doc.go): any field
// name round-trips exactly, including "", names with '.' or a leading '$';
// a name given twice in one object is a 400 that names it, since the value
// would otherwise not round-trip through any JSON parser the same way.
func (d *documents) parseValue(raw []byte) (docValue, error) {
	if !utf8.Valid(raw) {
		return docValue{}, errorf(CodeInvalidRequest, "the value must be UTF-8 JSON")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return docValue{}, errorf(CodeInvalidRequest, "the value is not valid JSON: %v", err)
	}
	if buf.Len() == 0 {
		return docValue{}, errorf(CodeInvalidRequest, "a value is required")
	}
	if buf.Len() > d.e.cfg.Limits.MaxDocumentSize {
		return docValue{}, errorf(CodeTooLarge, "a document value must be at most %d bytes of compact JSON", d.e.cfg.Limits.MaxDocumentSize)
	}
	l := d.e.cfg.Limits
	p := valueParser{
		dec:       json.NewDecoder(bytes.NewReader(buf.Bytes())),
		maxDepth:  d.maxDepth(),
		maxNodes:  l.MaxDocumentNodes,
		maxItems:  l.MaxDocumentArrayItems,
		maxFields: l.MaxDocumentObjectFields,
	}
	p.dec.UseNumber()
	tok, err := p.dec.Token()
	if err != nil {
		return docValue{}, errorf(CodeInvalidRequest, "the value is not valid JSON: %v", err)
	}
	v, err := p.value(tok, 0, "")
	if err != nil {
		return docValue{}, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return docValue{}, errorf(CodeInvalidRequest, "the body must hold a single JSON value")
	}
	return docValue{json: buf.Bytes(), bson: v, nodes: p.nodes}, nil
}

// valueParser turns JSON tokens into the BSON form of a value:
//
//   - an object becomes a document whose field names are escaped with
//     escapeName (MongoDB and FerretDB refuse '.', a leading '$' and NUL in
//     names), in the same order;
//   - an array becomes a document whose field names are the indexes "0",
//     "1", ...: no BSON arrays are stored, so MongoDB's array semantics
//     (matching any element, sorting by the smallest element) never apply,
//     and a path segment "0" addresses the first element;
//   - an integer literal in the int64 range becomes an int64; any other
//     number a float64 (beyond the float64 range, ±MaxFloat64: FerretDB
//     refuses infinities);
//   - a string as itself with NUL and U+0001 escaped (see bsonString);
//   - booleans and null as themselves.
//
// It counts the values (nodes) it reads and stops at the first one over
// the structure limits (Limits.MaxDocumentNodes, MaxDocumentArrayItems,
// MaxDocumentObjectFields), so a refused value costs no more to parse
// than an accepted one.
type valueParser struct {
	dec       *json.Decoder
	maxDepth  int
	maxNodes  int
	maxItems  int
	maxFields int
	nodes     int
}

func (p *valueParser) value(tok json.Token, depth int, path string) (any, error) {
	p.nodes++
	if p.nodes > p.maxNodes {
		return nil, errorf(CodeTooLarge, "a document value may hold at most %d values (each object, array, string, number, boolean and null counts one)", p.maxNodes)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth+1 > p.maxDepth {
			return nil, errorf(CodeInvalidRequest, "the value nests deeper than %d levels", p.maxDepth)
		}
		doc := bson.D{}
		var seen map[string]bool
		for i := 0; p.dec.More(); i++ {
			if t == '[' && i == p.maxItems {
				return nil, errorf(CodeTooLarge, "the array %s has more than %d items", where(path), p.maxItems)
			}
			if t == '{' && i == p.maxFields {
				return nil, errorf(CodeTooLarge, "the object %s has more than %d fields", where(path), p.maxFields)
			}
			name := strconv.Itoa(i)
			if t == '{' {
				kt, err := p.dec.Token()
				if err != nil {
					return nil, errorf(CodeInvalidRequest, "the value is not valid JSON: %v", err)
				}
				name = kt.(string)
				esc := escapeName(name)
				if seen == nil && len(doc) >= 16 {
					seen = make(map[string]bool, 2*len(doc))
					for _, e := range doc {
						seen[e.Key] = true
					}
				}
				dup := false
				if seen != nil {
					dup = seen[esc]
					seen[esc] = true
				} else {
					for _, e := range doc {
						dup = dup || e.Key == esc
					}
				}
				if dup {
					return nil, errorf(CodeInvalidRequest, "the value has the field name %q twice in the object %s: each name may appear once per object", name, where(path))
				}
			}
			vt, err := p.dec.Token()
			if err != nil {
				return nil, errorf(CodeInvalidRequest, "the value is not valid JSON: %v", err)
			}
			sub := name
			if path != "" {
				sub = path + "." + name
			}
			v, err := p.value(vt, depth+1, sub)
			if err != nil {
				return nil, err
			}
			doc = append(doc, bson.E{Key: escapeName(name), Value: v})
		}
		if _, err := p.dec.Token(); err != nil { // the closing delimiter
			return nil, errorf(CodeInvalidRequest, "the value is not valid JSON: %v", err)
		}
		return doc, nil
	case json.Number:
		return jsonNumber(string(t)), nil
	case string:
		return bsonString(t), nil
	case bool, nil:
		return t, nil
	}
	return nil, errorf(CodeInvalidRequest, "the value is not valid JSON")
}

// where names the place of a nested value in a message: "at the top
// level" or "at \"a.b\"" (the dotted path, truncated).
func where(path string) string {
	if path == "" {
		return "at the top level"
	}
	return "at " + strconv.Quote(truncate(path, 64))
}

// bsonString is the BSON form of a string: NUL becomes U+0001 U+0001 and
// U+0001 becomes U+0001 U+0002, other bytes stay. FerretDB on PostgreSQL
// cannot store NUL in a string (jsonb refuses \u0000); the mapping is
// injective and keeps the byte order of strings, so equality filters
// (whose strings get the same mapping) and sorts are unchanged.
func bsonString(s string) string {
	if !strings.ContainsAny(s, "\x00\x01") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0, 1:
			b.WriteByte(1)
			b.WriteByte(c + 1)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// jsonNumber is the BSON form of a JSON number literal.
func jsonNumber(s string) any {
	if !strings.ContainsAny(s, ".eE") {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	f, _ := strconv.ParseFloat(s, 64) // a valid literal: only range errors
	switch {
	case math.IsInf(f, 1):
		f = math.MaxFloat64
	case math.IsInf(f, -1):
		f = -math.MaxFloat64
	}
	return f
}

// escapeName maps a JSON field name to a BSON field name that MongoDB and
// FerretDB store and address as one path segment. FerretDB v1.24 refuses
// in a stored name: a leading '$', '.', invalid UTF-8 (refused earlier);
// and in a path segment: '.', the empty segment and a segment with leading
// or trailing white space (strings.TrimSpace, so unicode.IsSpace); BSON
// names cannot hold NUL. So these bytes become "%" and two hex digits:
// every '%', '.' and NUL, a leading '$', and the bytes of a first or last
// character that is white space (" a" becomes "%20a", "a\u00a0"
// "a%C2%A0"); the empty name becomes "%". Every '%' of the name is
// escaped, so the mapping is injective, and names without those
// characters stay as they are.
func escapeName(s string) string {
	if s == "" {
		return "%"
	}
	first, n := utf8.DecodeRuneInString(s)
	lead := 0 // s[:lead] is escaped
	if first == '$' || unicode.IsSpace(first) {
		lead = n
	}
	trail := len(s) // s[trail:] is escaped
	if last, n := utf8.DecodeLastRuneInString(s); unicode.IsSpace(last) {
		trail = len(s) - n
	}
	if lead == 0 && trail == len(s) && !strings.ContainsAny(s, "%.\x00") {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i < lead || i >= trail || c == '%' || c == '.' || c == 0 {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// set, get, delete

// readValue reads a set body: one JSON value, at most MaxDocumentSize bytes
// once compacted (the body may carry as much again in whitespace). The body
// is parsed in the parse budget (see parseSlot); release gives it back once
// the request is done with the value.
func (d *documents) readValue(c *call) (v docValue, release func(), err error) {
	limit := int64(d.e.cfg.Limits.MaxDocumentSize)
	tooLarge := errorf(CodeTooLarge, "a document value must be at most %d bytes of compact JSON", limit)
	if c.r.ContentLength > 2*limit+4096 {
		return docValue{}, nil, tooLarge // answered at once, without waiting for the body
	}
	b, err := c.readBody(2*limit + 4096)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return docValue{}, nil, tooLarge
		}
		if errors.Is(err, errSlowBody) {
			return docValue{}, nil, errorf(CodeInvalidRequest, "%v", err)
		}
		var ee *Error
		if errors.As(err, &ee) {
			return docValue{}, nil, err // the body budget's 503
		}
		return docValue{}, nil, errorf(CodeInvalidRequest, "the request body could not be read")
	}
	release, err = d.parseSlot(c, int64(len(b)))
	if err != nil {
		return docValue{}, nil, err
	}
	if v, err = d.parseValue(b); err != nil {
		release()
		return docValue{}, nil, err
	}
	return v, release, nil
}

// parseBudget is the body bytes whose values the engine parses and holds
// at once: four values of Limits.MaxDocumentSize. A value costs about 20 to
// 40 times its JSON size in memory between its parse and its write (the
// tokens, its BSON form, the stored document), so without a budget eight
// parallel 1 MiB PUTs took 170 MB more (and on FerretDB waited for a write
// slot holding it).
func (d *documents) parseBudget() int64 { return 4 * int64(d.e.cfg.Limits.MaxDocumentSize) }

// parseSlot takes n bytes of the parse budget (at most a tenant's share,
// a quarter of it: one value of MaxDocumentSize, so one tenant's parses
// and writes of large values keep at most about one core busy), once the body is read, so a slow client holds none while it
// sends. The request holds them until its value is written; waiting past
// Config.BackendTimeout is 503 backend_unavailable. With a share per
// tenant, one tenant's large values cannot hold the whole budget while
// another tenant's small write waits (see tenantBudget).
func (d *documents) parseSlot(c *call, n int64) (release func(), err error) {
	ctx, cancel := context.WithTimeout(c.ctx, d.e.cfg.BackendTimeout)
	defer cancel()
	return d.parsing.acquire(ctx, c.tenant, n)
}

// setWrite is how a set is written: insert doc, and if a document of that
// _id exists (duplicate key), update it with filter and update, an upsert
// in case it was deleted meanwhile. set is update's $set alone (a
// conditional write updates an existing document, never inserts), and tag
// the version every form writes.
//
// Insert first, because FerretDB v1 runs an update (or an upsert) as a query
// that scans the whole collection, with one backend connection held while
// it writes, while an insert is a plain INSERT checked by the unique _id
// index: loading new documents costs the same whatever the collection
// holds. The update is updateMany on the unique _id (at most one document,
// as updateOne): FerretDB keeps the query of an updateOne statement open
// until the whole command ends, but closes an updateMany's before the next
// statement.
type setWrite struct {
	doc                 bson.Raw
	filter, update, set bson.D
	tag                 docTag
}

// setModel is the write that stores value at key: json, v and the version
// g replace the old ones, loc, coll, key and created are written only on
// insert.
func (d *documents) setModel(t target, key string, v docValue, now time.Time, g docTag) (setWrite, error) {
	tag := g
	doc, err := bson.Marshal(bson.D{
		{Key: "_id", Value: t.id(key)},
		{Key: fieldLoc, Value: t.loc}, {Key: fieldColl, Value: t.coll}, {Key: fieldKey, Value: key},
		{Key: fieldJSON, Value: string(v.json)},
		{Key: fieldValue, Value: v.bson},
		{Key: fieldCreated, Value: now}, {Key: fieldUpdated, Value: now},
		{Key: fieldVersion, Value: tag.ver},
	})
	if err != nil {
		return setWrite{}, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	if len(doc) > mongoMaxDocument {
		return setWrite{}, errorf(CodeTooLarge, "the stored form of this value exceeds the database's 16 MiB document limit")
	}
	set := bson.D{
		{Key: fieldJSON, Value: string(v.json)},
		{Key: fieldValue, Value: v.bson},
		{Key: fieldUpdated, Value: now},
		{Key: fieldVersion, Value: tag.ver},
	}
	return setWrite{
		doc:    doc,
		filter: bson.D{{Key: "_id", Value: t.id(key)}},
		update: bson.D{
			{Key: "$set", Value: set},
			{Key: "$setOnInsert", Value: bson.D{
				{Key: fieldLoc, Value: t.loc}, {Key: fieldColl, Value: t.coll},
				{Key: fieldKey, Value: key}, {Key: fieldCreated, Value: now},
			}},
		},
		set: bson.D{{Key: "$set", Value: set}},
		tag: tag,
	}, nil
}

// handleSet stores a value. With If-None-Match: * only when the document
// does not exist, with If-Match only when it has one of the versions (see
// docStore.put): the check and the write are one atomic step.
func (d *documents) handleSet(c *call) error {
	t, key, err := d.scopeKey(c, Write)
	if err != nil {
		return err
	}
	cond, err := parseCond(c.r.Header, true)
	if err != nil {
		return err
	}
	v, releaseParse, err := d.readValue(c)
	if err != nil {
		return err
	}
	defer releaseParse()
	g := newTag(d.e.now())
	ctx, cancel := d.e.backendCtx(c)
	defer cancel()
	unlock, err := d.lockDocs(ctx, t, key)
	if err != nil {
		return err
	}
	defer unlock()
	old, release, err := d.admitSet(ctx, t, key, int64(len(v.json)))
	defer release()
	if err != nil {
		return err
	}
	if err := d.store.put(ctx, t, key, v, cond, g); err != nil {
		return err
	}
	d.e.account(ctx, c.reqID, tenantOfKey(t.loc), old.change(t.loc, primDocuments, int64(len(v.json))))
	d.docChanged(c, t, key, v.json, g)
	setETag(c, g)
	return writeRawJSON(c, http.StatusOK, itemJSON(nil, key, v.json))
}

func (d *documents) handleGet(c *call) error {
	t, key, err := d.scopeKey(c, Read)
	if err != nil {
		return err
	}
	ctx, cancel := d.e.backendCtx(c)
	defer cancel()
	js, tag, err := d.store.get(ctx, t, key)
	if err != nil {
		return err
	}
	setETag(c, tag)
	return writeRawJSON(c, http.StatusOK, itemJSON(nil, key, js))
}

// handleDelete deletes a document; with If-Match only the document of
// those versions (otherwise 412).
func (d *documents) handleDelete(c *call) error {
	t, key, err := d.scopeKey(c, Write)
	if err != nil {
		return err
	}
	cond, err := parseCond(c.r.Header, false)
	if err != nil {
		return err
	}
	ctx, cancel := d.e.backendCtx(c)
	defer cancel()
	old, unlock, err := d.lockOld(ctx, t, key)
	defer unlock()
	if err != nil {
		return err
	}
	if err := d.store.remove(ctx, t, key, cond); err != nil {
		return err
	}
	d.e.account(ctx, c.reqID, tenantOfKey(t.loc), old.change(t.loc, primDocuments, -1))
	d.docChanged(c, t, key, nil, docTag{})
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// itemJSON appends {"key":key,"value":value} to b; value is JSON text.
func itemJSON(b []byte, key string, value []byte) []byte {
	k, _ := json.Marshal(key)
	b = append(b, `{"key":`...)
	b = append(b, k...)
	b = append(b, `,"value":`...)
	b = append(b, value...)
	return append(b, '}')
}

// writeRawJSON writes a response body that is JSON text already, with the
// headers of call.json. Values are written as stored, so the JSON of a
// document is returned byte for byte (call.json would re-escape <, > and &).
func writeRawJSON(c *call, status int, b []byte) error {
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	c.w.WriteHeader(status)
	_, _ = c.w.Write(append(b, '\n'))
	return nil
}

// ---------------------------------------------------------------------------
// batch

// batchOp is one parsed operation of a batch.
type batchOp struct {
	op, key string
	value   docValue
	err     error    // set when the op is invalid or failed
	set     setWrite // for a set
}

// batchResult is one op's outcome. A failed op carries the error the same
// way an error response does, flattened into the result: "error" is the
// code and "message" the text for a person.
type batchResult struct {
	Key     string `json:"key"`
	Op      string `json:"op"`
	OK      bool   `json:"ok"`
	Error   Code   `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

// parseOp reads one operation: {"op":"set","key":k,"value":v} or
// {"op":"delete","key":k}; field names exact, each at most once.
func (d *documents) parseOp(raw json.RawMessage) batchOp {
	var op batchOp
	fail := func(format string, args ...any) batchOp {
		op.err = errorf(CodeInvalidRequest, format, args...)
		return op
	}
	if !utf8.Valid(raw) {
		return fail("the op must be UTF-8 JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fail(`an op must be an object {"op","key","value"}`)
	}
	var value json.RawMessage
	var haveOp, haveKey, haveValue bool
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return fail("the op is not valid JSON")
		}
		name := kt.(string)
		var seen *bool
		switch name {
		case "op":
			seen = &haveOp
		case "key":
			seen = &haveKey
		case "value":
			seen = &haveValue
		default:
			return fail("unknown op field %q", truncate(name, 64))
		}
		if *seen {
			return fail("op field %q is given twice", name)
		}
		*seen = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fail("the op is not valid JSON")
		}
		switch name {
		case "op", "key":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fail("op field %q must be a string", name)
			}
			if name == "op" {
				op.op = s
			} else {
				op.key = s
			}
		case "value":
			value = v
		}
	}
	switch {
	case !haveOp || (op.op != "set" && op.op != "delete"):
		return fail(`op must be "set" or "delete"`)
	case !haveKey:
		return fail("key is required")
	}
	if err := validDocKey(op.key); err != nil {
		op.err = err
		return op
	}
	switch {
	case op.op == "set" && !haveValue:
		return fail("a set needs a value")
	case op.op == "delete" && haveValue:
		return fail("a delete takes no value")
	case op.op == "set":
		op.value, op.err = d.parseValue(value)
	}
	return op
}

func (d *documents) handleBatch(c *call) error {
	t, err := d.scope(c, Write)
	if err != nil {
		return err
	}
	var body struct {
		Ops *[]json.RawMessage `json:"ops"`
	}
	limit := max(minBatchBody, 2*int64(d.e.cfg.Limits.MaxDocumentSize)+64<<10)
	if err := decodeJSON(c, limit, &body); err != nil {
		return err
	}
	if body.Ops == nil {
		return errorf(CodeInvalidRequest, "ops is required")
	}
	if len(*body.Ops) > d.e.cfg.Limits.MaxBatchOps {
		return errorf(CodeInvalidRequest, "a batch has at most %d ops", d.e.cfg.Limits.MaxBatchOps)
	}
	release, err := d.parseSlot(c, c.bodyIn)
	if err != nil {
		return err
	}
	defer release()
	ops := make([]batchOp, len(*body.Ops))
	valid, nodes := 0, 0
	for i, raw := range *body.Ops {
		ops[i] = d.parseOp(raw)
		if nodes += ops[i].value.nodes; nodes > d.e.cfg.Limits.MaxBatchNodes {
			return errorf(CodeTooLarge, "the values of a batch may hold at most %d values together (each object, array, string, number, boolean and null counts one): split the batch", d.e.cfg.Limits.MaxBatchNodes)
		}
		if ops[i].err == nil {
			valid++
		}
	}
	if valid > 0 {
		g := newTag(d.e.now())
		var keys []string
		for _, op := range ops {
			if op.err == nil {
				keys = append(keys, op.key)
			}
		}
		unlock, err := d.lockDocs(c.ctx, t, keys...)
		if err != nil {
			return err
		}
		defer unlock()
		olds, release, err := d.admitBatch(c.ctx, t, ops)
		defer release()
		if err != nil {
			return err
		}
		if err := d.store.batch(c.ctx, c.reqID, t, ops, g); err != nil {
			return err
		}
		d.batchAccount(c, t, ops, olds)
		d.batchChanged(c, t, ops, g)
	}
	res := struct {
		Succeeded int           `json:"succeeded"`
		Failed    int           `json:"failed"`
		Results   []batchResult `json:"results"`
	}{Results: make([]batchResult, len(ops))}
	for i, op := range ops {
		r := batchResult{Key: op.key, Op: op.op, OK: op.err == nil}
		if op.err != nil {
			ee := toError(op.err)
			r.Error, r.Message = ee.Code, ee.Message
			res.Failed++
		} else {
			res.Succeeded++
		}
		res.Results[i] = r
	}
	return c.json(http.StatusOK, res)
}

// applyBatch writes the valid ops in rounds. Ops on different keys commute,
// so round r holds the r-th op on each key: within a round every key is
// distinct, so its writes may go in any order and in bulk, while the ops on
// one key run in the order sent. A batch without repeated keys takes one
// round. Each op succeeds or fails on its own. A transport failure or
// timeout fails the request (503): every op is idempotent, so the caller
// can retry it. Each backend command carries at most
// maxStatementsPerCommand statements and is bounded by
// Config.BackendTimeout.
func (d *documents) applyBatch(ctx context.Context, reqID string, pc *mongo.Collection, b docsBackend, t target, ops []batchOp) error {
	var rounds [][]int
	seen := map[string]int{}
	for i, op := range ops {
		if op.err != nil {
			continue
		}
		r := seen[op.key]
		seen[op.key] = r + 1
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], i)
	}
	for _, round := range rounds {
		retry, err := d.writeRound(ctx, reqID, pc, b, t, ops, round)
		if err != nil {
			return err
		}
		if len(retry) > 0 {
			// Upserts that raced with another writer's insert of the same
			// new key: the document exists now, so the retry updates it.
			// A second race leaves the op failed with conflict.
			for _, i := range retry {
				ops[i].err = nil
			}
			if _, err := d.writeRound(ctx, reqID, pc, b, t, ops, retry); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeRound writes the ops at idx (distinct keys): the sets are inserted
// (see setWrite), those whose document exists are updated, and the deletes
// deleted, each step in unordered commands of at most
// maxStatementsPerCommand statements. It records each op's failure and
// returns the updates that failed with a duplicate key error (marked
// conflict), which may be retried.
func (d *documents) writeRound(ctx context.Context, reqID string, pc *mongo.Collection, b docsBackend, t target, ops []batchOp, idx []int) (retry []int, err error) {
	var sets, rest []int
	for _, i := range idx {
		if ops[i].op == "set" {
			sets = append(sets, i)
		} else {
			rest = append(rest, i)
		}
	}
	for chunk := range slices.Chunk(sets, maxStatementsPerCommand) {
		docs := make([]any, len(chunk))
		for j, i := range chunk {
			docs[j] = ops[i].set.doc
		}
		err := d.command(ctx, b, func(ctx context.Context) error {
			_, err := pc.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
			return err
		})
		failed, err := d.writeErrors(err, len(chunk))
		if err != nil {
			return nil, err
		}
		for j, we := range failed {
			if i := chunk[j]; we.HasErrorCode(11000) {
				rest = append(rest, i) // it exists: update it
			} else {
				ops[i].err = d.opFailed(reqID, we)
			}
		}
	}
	for chunk := range slices.Chunk(rest, maxStatementsPerCommand) {
		models := make([]mongo.WriteModel, len(chunk))
		for j, i := range chunk {
			if ops[i].op == "set" {
				models[j] = mongo.NewUpdateManyModel().SetFilter(ops[i].set.filter).SetUpdate(ops[i].set.update).SetUpsert(true)
			} else {
				models[j] = mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: t.id(ops[i].key)}})
			}
		}
		err := d.command(ctx, b, func(ctx context.Context) error {
			_, err := pc.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
			return err
		})
		failed, err := d.writeErrors(err, len(chunk))
		if err != nil {
			return nil, err
		}
		for j, we := range failed {
			i := chunk[j]
			if we.HasErrorCode(11000) && ops[i].op == "set" {
				retry = append(retry, i)
				ops[i].err = &Error{Code: CodeConflict, Message: "a concurrent write to this key won; try again"}
				continue
			}
			ops[i].err = d.opFailed(reqID, we)
		}
	}
	return retry, nil
}

// command runs one write command with its own Config.BackendTimeout, in a
// FerretDB write slot.
func (d *documents) command(ctx context.Context, b docsBackend, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
	defer cancel()
	release, err := d.slot(ctx, b)
	if err != nil {
		return err
	}
	defer release()
	return f(ctx)
}

// writeErrors splits the outcome of a bulk command of n statements: the
// write errors by statement index, or the error that fails the request.
func (d *documents) writeErrors(err error, n int) (map[int]mongo.BulkWriteError, error) {
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		var ee *Error
		if errors.As(err, &ee) {
			return nil, err
		}
		return nil, docsBackendError("documents batch", err)
	}
	failed := make(map[int]mongo.BulkWriteError, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if we.Index < 0 || we.Index >= n {
			return nil, docsBackendError("documents batch", err)
		}
		failed[we.Index] = we
	}
	return failed, nil
}

// opFailed is the error of an op that the backend refused unexpectedly.
func (d *documents) opFailed(reqID string, we mongo.BulkWriteError) error {
	d.e.log.Error("storage: batch op failed", "request_id", reqID, "code", we.Code, "err", we.Message)
	return &Error{Code: CodeInternal, Message: "internal error (request id " + reqID + ")"}
}
