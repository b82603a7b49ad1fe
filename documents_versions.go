package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Document versions, conditional writes and JSON Merge Patch (design.md,
// "Documents: versions, conditional writes, merge").
//
// Every write of a document (set, batch set, patch) stores a new random
// version in the field "ver" (16 hex digits) next to "updated". The ETag is
// both, quoted: "<ver><updated in ms, 16 hex digits>". Documents written
// before versions existed have no "ver": their ETag carries ver 0 and their
// filter asks for a missing ver, so they are conditionally writable too; and
// an engine of that time, still running during a rolling upgrade, changes
// "updated" on each write, so the ETag changes under it as well.
//
// If-None-Match: * is an insert alone: the unique _id decides. A write from
// version g (If-Match, and each round of a PATCH) is versionedWrite. On
// MongoDB it is an update or delete whose filter carries g: the check and
// the write are one atomic operation. FerretDB v1 is not atomic there: it
// runs a filtered update or delete as a query, then a write by _id, so two
// writers of the same version could both match (and a filter on more than
// _id scans the collection). So on FerretDB the writer first claims g: it
// inserts {_id: <document _id>#<etag>#<n>} into the collection
// Config.DocumentsCollection+"_claims", and only the writer whose insert
// succeeds (the unique _id index decides, atomically) goes on; it reads the
// version back by _id and, if it is still g, writes by _id. Of writers
// racing from one version exactly one wins; the others get 412 (a PATCH
// reads and merges again). The claim is deleted after the write, in the
// background: the claimed version is no longer the stored one then, so the
// claim stops nobody who could still win. A claim left by an engine that
// died holding it expires after claimTTL: the next writer takes the claim
// of the next n. An unconditional set does not claim, so on FerretDB it can
// still land between a claimed writer's read-back and write and be
// overwritten by it (last writer wins between those two, as between two
// unconditional sets).

const (
	fieldVersion = "ver"
	// maxIfMatchTags caps the entity tags of one If-Match header.
	maxIfMatchTags = 16
	// maxPatchTries bounds the version-checked retries of one PATCH that
	// concurrent writers of the same document keep overtaking.
	maxPatchTries = 64
	// claimsSuffix names the collection of version claims, after
	// Config.DocumentsCollection (without a '.': partitions are named
	// "<DocumentsCollection>.<...>").
	claimsSuffix = "_claims"
	// maxClaimGenerations caps the expired claims of one version that a
	// writer takes over (one per engine that died holding it).
	maxClaimGenerations = 4
)

// useClaims says whether versioned writes claim their version: on FerretDB
// (a variable so that a test can run MongoDB's way on FerretDB).
var useClaims = func(b docsBackend) bool { return b.ferret }

// errClaimed is a version claimed by another writer.
var errClaimed = errors.New("documents: another write holds the claim on this version")

// claimTTL is how long a claim stands: past every command of its holder
// (each bounded by Config.BackendTimeout), with a margin.
func (d *documents) claimTTL() time.Duration { return 3*d.e.cfg.BackendTimeout + time.Second }

// claim takes the version g of the document at key for one write (see the
// top of this file) and returns its release; errClaimed when another
// writer holds it.
func (d *documents) claim(ctx context.Context, b docsBackend, t target, key string, g docTag) (release func(), err error) {
	cc := d.e.cfg.Mongo.Collection(d.e.cfg.DocumentsCollection + claimsSuffix)
	// The suffix has a fixed form, so the claim _id is injective.
	base := t.id(key) + "#" + strings.Trim(g.etag(), `"`) + "#"
	now := d.e.now().UTC().Truncate(time.Millisecond)
	var ids []string // the claim, after the expired ones taken over
	for n := 0; n < maxClaimGenerations; n++ {
		id := base + strconv.Itoa(n)
		ids = append(ids, id)
		err := d.withSlot(ctx, b, func() error {
			_, err := cc.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "exp", Value: now.Add(d.claimTTL())}})
			return err
		})
		if err == nil {
			// Released in the background (see the top of this file), with
			// the expired claims of g: g is no longer stored by then.
			return func() { go d.unclaim(ctx, b, cc, ids) }, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return nil, translateDocsError("documents claim", err)
		}
		raw, err := cc.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, errClaimed // released just now: its holder has written
		}
		if err != nil {
			return nil, docsBackendError("documents claim", err)
		}
		if exp, ok := raw.Lookup("exp").TimeOK(); !ok || exp.After(now) {
			return nil, errClaimed
		}
		// Expired: its holder died. The next generation decides among the
		// writers that found it so.
	}
	return nil, errClaimed
}

// unclaim deletes claims, also when the request was cancelled meanwhile.
func (d *documents) unclaim(ctx context.Context, b docsBackend, cc *mongo.Collection, ids []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.e.cfg.BackendTimeout)
	defer cancel()
	for _, id := range ids {
		err := d.withSlot(ctx, b, func() error {
			_, err := cc.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}) // _id alone: FerretDB finds it without a scan
			return err
		})
		if err != nil {
			d.e.log.Warn("storage: a document version claim was not released; it expires", "err", err)
			return
		}
	}
}

// withSlot runs one write command in a FerretDB write slot (see slot).
func (d *documents) withSlot(ctx context.Context, b docsBackend, f func() error) error {
	release, err := d.slot(ctx, b)
	if err != nil {
		return err
	}
	defer release()
	return f()
}

// translateDocsError passes an *Error on and translates a driver error.
func translateDocsError(op string, err error) error {
	var ee *Error
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return docsBackendError(op, err)
}

// versionedWrite runs write, one update or delete of the document at key,
// only if the document has version g (see the top of this file): write
// gets the filter to use and reports whether it matched. errClaimed when
// another writer holds g on FerretDB.
func (d *documents) versionedWrite(ctx context.Context, pc *mongo.Collection, b docsBackend, t target, key string, g docTag, write func(filter bson.D) (matched bool, err error)) (bool, error) {
	if !useClaims(b) {
		return write(g.idFilter(t.id(key)))
	}
	release, err := d.claim(ctx, b, t, key, g)
	if err != nil {
		return false, err
	}
	defer release()
	_, cur, err := readDoc(ctx, pc, t, key)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil || cur != g {
		return false, err
	}
	return write(bson.D{{Key: "_id", Value: t.id(key)}})
}

// conditional runs write under the If-Match of cond: write is one update
// or delete with the filter it is given (see versionedWrite), and reports
// whether it matched. The version is the tag with one tag; with "*" or a
// list, the one stored, if it matches. Any condition not met is 412.
func (d *documents) conditional(ctx context.Context, pc *mongo.Collection, b docsBackend, t target, key string, cond docCond, write func(filter bson.D) (matched bool, err error)) error {
	var g docTag
	switch {
	case !cond.any && len(cond.tags) == 0:
		return preconditionFailed("does not have that ETag")
	case !cond.any && len(cond.tags) == 1:
		g = cond.tags[0]
	default:
		_, cur, err := readDoc(ctx, pc, t, key)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return preconditionFailed("does not exist")
		}
		if err != nil {
			return translateDocsError("documents read", err)
		}
		if !cond.matches(cur) {
			return preconditionFailed("does not have that ETag")
		}
		g = cur
	}
	matched, err := d.versionedWrite(ctx, pc, b, t, key, g, write)
	if errors.Is(err, errClaimed) {
		return preconditionFailed("is being changed by another conditional write")
	}
	if err != nil {
		return translateDocsError("documents write", err)
	}
	if !matched {
		return preconditionFailed("does not exist or does not have that ETag")
	}
	return nil
}

// docTag is the version of a stored document: what its ETag spells.
type docTag struct {
	ver     string // 16 hex digits; "" for a document written before versions
	updated int64  // the updated date, in ms since the epoch
}

// newVersion returns a fresh random version, 16 hex digits.
func newVersion() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// etag is the quoted, strong entity tag of the version.
func (g docTag) etag() string {
	ver := g.ver
	if ver == "" {
		ver = "0000000000000000"
	}
	return fmt.Sprintf(`"%s%016x"`, ver, uint64(g.updated))
}

// parseDocTag reads an entity tag of the form etag writes; ok is false for
// any other tag (which then matches no document).
func parseDocTag(tag string) (docTag, bool) {
	if len(tag) != 34 || tag[0] != '"' || tag[33] != '"' {
		return docTag{}, false
	}
	for _, c := range []byte(tag[1:33]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return docTag{}, false
		}
	}
	u, err := strconv.ParseUint(tag[17:33], 16, 64)
	if err != nil {
		return docTag{}, false
	}
	g := docTag{ver: tag[1:17], updated: int64(u)}
	if g.ver == "0000000000000000" {
		g.ver = ""
	}
	return g, true
}

// filter is the condition "the document at id has this version".
func (g docTag) filter() bson.D {
	var ver any = g.ver
	if g.ver == "" {
		ver = bson.D{{Key: "$exists", Value: false}}
	}
	return bson.D{{Key: fieldVersion, Value: ver}, {Key: fieldUpdated, Value: bson.DateTime(g.updated)}}
}

// tagOf reads the version of a stored document.
func tagOf(raw bson.Raw) docTag {
	ver, _ := raw.Lookup(fieldVersion).StringValueOK()
	updated, _ := raw.Lookup(fieldUpdated).DateTimeOK()
	return docTag{ver: ver, updated: updated}
}

// docCond is the precondition of a write, from If-Match and If-None-Match.
type docCond struct {
	ifMatch bool     // If-Match was given
	any     bool     // If-Match: * (the document exists)
	tags    []docTag // the If-Match tags this engine could have issued
	absent  bool     // If-None-Match: * (the document does not exist)
}

// parseCond reads the preconditions of a write. If-None-Match is allowed
// (as "*" only) where noneMatch is true, on PUT. A malformed header, or
// both headers at once, is 400. Entity tags that this engine never issues
// (weak ones, other spellings) are well-formed but match nothing.
func parseCond(h http.Header, noneMatch bool) (docCond, error) {
	var c docCond
	if vals := h.Values("If-Match"); len(vals) > 0 {
		c.ifMatch = true
		list := strings.Join(vals, ",")
		if strings.TrimSpace(list) == "*" {
			c.any = true
		} else {
			n := 0
			for {
				list = strings.TrimLeft(list, " \t,")
				if list == "" {
					break
				}
				tag, rest, ok := scanETag(list)
				if opaque := strings.TrimPrefix(tag, "W/"); !ok || strings.ContainsAny(opaque[1:len(opaque)-1], "\" \t\\") {
					return c, errorf(CodeInvalidRequest, `If-Match must be "*" or a list of entity tags such as "\"...\"" (as in an ETag header)`)
				}
				if rest = strings.TrimLeft(rest, " \t"); rest != "" && rest[0] != ',' {
					return c, errorf(CodeInvalidRequest, "If-Match must be a comma-separated list of entity tags")
				}
				if n++; n > maxIfMatchTags {
					return c, errorf(CodeInvalidRequest, "If-Match may list at most %d entity tags", maxIfMatchTags)
				}
				if g, ok := parseDocTag(tag); ok {
					c.tags = append(c.tags, g)
				}
				list = rest
			}
			if n == 0 {
				return c, errorf(CodeInvalidRequest, `If-Match must be "*" or a list of entity tags`)
			}
		}
	}
	if vals := h.Values("If-None-Match"); len(vals) > 0 {
		if !noneMatch {
			return c, errorf(CodeInvalidRequest, "If-None-Match is not supported here; use If-Match")
		}
		if strings.TrimSpace(strings.Join(vals, ",")) != "*" {
			return c, errorf(CodeInvalidRequest, `If-None-Match on a document write must be "*" (write only when it does not exist)`)
		}
		if c.ifMatch {
			return c, errorf(CodeInvalidRequest, "give If-Match or If-None-Match, not both")
		}
		c.absent = true
	}
	return c, nil
}

// matches reports whether a stored document of version g meets If-Match.
func (c docCond) matches(g docTag) bool {
	if c.any {
		return true
	}
	for _, t := range c.tags {
		if t == g {
			return true
		}
	}
	return false
}

// idFilter is the filter "the document at id has version g".
func (g docTag) idFilter(id string) bson.D {
	return append(bson.D{{Key: "_id", Value: id}}, g.filter()...)
}

// preconditionFailed is the 412 of a condition that did not hold.
func preconditionFailed(what string) error {
	return withStatus(errorf(CodeConflict, "the document %s; nothing was written", what), http.StatusPreconditionFailed)
}

// setETag sets the ETag header of a response about the document version g.
func setETag(c *call, g docTag) { c.w.Header().Set("ETag", g.etag()) }

// readDoc reads the stored JSON and version of the document at key;
// ErrNoDocuments when it is missing.
func readDoc(ctx context.Context, pc *mongo.Collection, t target, key string) (string, docTag, error) {
	raw, err := pc.FindOne(ctx, bson.D{{Key: "_id", Value: t.id(key)}},
		options.FindOne().SetProjection(bson.D{
			{Key: fieldLoc, Value: 1}, {Key: fieldColl, Value: 1}, {Key: fieldKey, Value: 1},
			{Key: fieldJSON, Value: 1}, {Key: fieldVersion, Value: 1}, {Key: fieldUpdated, Value: 1},
		}),
	).Raw()
	if err != nil {
		return "", docTag{}, err
	}
	// Defence in depth: the _id spells the location, but check the fields.
	loc, _ := raw.Lookup(fieldLoc).StringValueOK()
	coll, _ := raw.Lookup(fieldColl).StringValueOK()
	k, _ := raw.Lookup(fieldKey).StringValueOK()
	js, ok := raw.Lookup(fieldJSON).StringValueOK()
	if loc != t.loc || coll != t.coll || k != key || !ok {
		return "", docTag{}, &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("documents: stored document %q does not match its _id", t.id(key))}
	}
	return js, tagOf(raw), nil
}

// handlePatch applies a JSON Merge Patch (RFC 7396) to an existing
// document: the store reads it, merges, and writes the result only if the
// version read is still the stored one (see docStore.patch), so a
// concurrent write in between makes the merge start over on the new value.
// Concurrent patches of different fields therefore all survive. With
// If-Match, the version read must be one of the tags. The merged value is
// checked like a set's value.
func (d *documents) handlePatch(c *call) error {
	t, key, err := d.scopeKey(c, Write)
	if err != nil {
		return err
	}
	cond, err := parseCond(c.r.Header, false)
	if err != nil {
		return err
	}
	patch, release, err := d.readValue(c)
	if err != nil {
		return err
	}
	defer release()
	if cond.ifMatch && !cond.any && len(cond.tags) == 0 {
		return preconditionFailed("does not have that ETag")
	}
	ctx, cancel := d.e.backendCtx(c)
	defer cancel()
	// A merge grows the document by at most the patch's length; at a
	// limit, by what merging it into the stored value does.
	admitted, err := d.e.admit(ctx, tenantOfKey(t.loc), primDocuments, usageFigures{Bytes: int64(len(patch.json))}, func(ctx context.Context) (usageFigures, error) {
		js, _, err := d.store.get(ctx, t, key)
		if err != nil {
			if isDocNotFound(err) {
				err = nil // the patch answers 404 (or 412) itself
			}
			return usageFigures{}, err
		}
		v, err := d.parseValue(mergePatch(js, patch.json))
		if err != nil {
			return usageFigures{}, nil // the patch answers the merge's error itself
		}
		return usageFigures{Bytes: int64(len(patch.json)) - (int64(len(v.json)) - int64(len(js)))}, nil
	})
	defer admitted()
	if err != nil {
		return err
	}
	old, unlock, err := d.lockOld(ctx, t, key)
	defer unlock()
	if err != nil {
		return err
	}
	merge := func(stored []byte) (docValue, error) { return d.parseValue(mergePatch(stored, patch.json)) }
	v, g, err := d.store.patch(ctx, t, key, cond, merge, func() docTag { return newTag(d.e.now()) })
	if err != nil {
		return err
	}
	d.e.account(ctx, c.reqID, tenantOfKey(t.loc), old.change(t.loc, primDocuments, int64(len(v.json))))
	d.docChanged(c, t, key, v.json, g)
	setETag(c, g)
	return writeRawJSON(c, http.StatusOK, itemJSON(nil, key, v.json))
}

// ---------------------------------------------------------------------------
// JSON Merge Patch on JSON text

// mergePatch applies the merge patch p to the JSON value target (RFC 7396),
// both compact, valid JSON text (target nil for "undefined"), and returns
// compact JSON text. It keeps the text of everything the patch does not
// replace byte for byte: the members of an object keep their order and
// spelling, a replaced member keeps its place, new members are appended in
// the patch's order. A non-object patch replaces the target.
func mergePatch(target, p []byte) []byte {
	if len(p) == 0 || p[0] != '{' {
		return p
	}
	var tm []member
	if len(target) > 0 && target[0] == '{' {
		tm = objectMembers(target)
	}
	// The target's members by name, for objects with many members; a
	// removed member becomes a nil value (names are unique in both).
	var index map[string]int
	if len(tm) > 16 {
		index = make(map[string]int, len(tm))
		for j, m := range tm {
			index[m.name] = j
		}
	}
	for _, pm := range objectMembers(p) {
		i, found := -1, false
		if index != nil {
			i, found = index[pm.name]
		} else {
			for j := range tm {
				if tm[j].value != nil && tm[j].name == pm.name {
					i, found = j, true
					break
				}
			}
		}
		switch {
		case string(pm.value) == "null":
			if found {
				tm[i].value = nil
				delete(index, pm.name)
			}
		case found:
			tm[i].value = mergePatch(tm[i].value, pm.value)
		default:
			tm = append(tm, member{name: pm.name, raw: pm.raw, value: mergePatch(nil, pm.value)})
		}
	}
	out := make([]byte, 0, len(target)+len(p))
	out = append(out, '{')
	for _, m := range tm {
		if m.value == nil {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, m.raw...)
		out = append(out, ':')
		out = append(out, m.value...)
	}
	return append(out, '}')
}

// member is one member of a JSON object: its name decoded and as written,
// and its value's text.
type member struct {
	name       string
	raw, value []byte
}

// objectMembers splits compact, valid JSON object text into its members.
func objectMembers(obj []byte) []member {
	var ms []member
	i := 1 // after '{'
	for i < len(obj) && obj[i] != '}' {
		end := skipJSON(obj, i)
		raw := obj[i:end]
		var name string
		_ = json.Unmarshal(raw, &name) // a valid JSON string
		vs := end + 1                  // after ':'
		ve := skipJSON(obj, vs)
		ms = append(ms, member{name: name, raw: raw, value: obj[vs:ve]})
		i = ve
		if i < len(obj) && obj[i] == ',' {
			i++
		}
	}
	return ms
}

// skipJSON returns the end of the compact JSON value that starts at b[i].
func skipJSON(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ':':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}
