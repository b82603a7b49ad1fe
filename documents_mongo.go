// The MongoDB documents driver (MongoDB, and FerretDB in tests and on
// PostgreSQL): the production path of the documents store (see
// documents_store.go). The stored form and the layouts are described in
// documents.go and doc.go, versions and claims in documents_versions.go,
// query planning in query.go.

package storage

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// mongoDocs keeps documents in MongoDB through the documents area's
// MongoDB state (layout, write slots, claims).
type mongoDocs struct{ d *documents }

var _ docStore = mongoDocs{}

func (m mongoDocs) get(ctx context.Context, t target, key string) ([]byte, docTag, error) {
	pc, _, err := m.d.open(ctx, t)
	if err != nil {
		return nil, docTag{}, err
	}
	js, tag, err := readDoc(ctx, pc, t, key)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, docTag{}, errDocNotFound
	}
	if err != nil {
		return nil, docTag{}, translateDocsError("documents get", err)
	}
	return []byte(js), tag, nil
}

// put: with If-None-Match: * an insert alone (a duplicate _id is 412);
// with If-Match an update alone whose filter carries the version (see
// conditional); otherwise an insert, then an update when the _id exists
// (see setWrite).
//
// Every unconditional set on FerretDB also claims the version it
// overwrites (see the top of documents_versions.go), so it cannot land
// between a conditional writer's check and write: all writes of one
// document serialise through the claims, and a PATCH or If-Match racing a
// plain PUT never loses an update.
func (m mongoDocs) put(ctx context.Context, t target, key string, v docValue, cond docCond, g docTag) error {
	d := m.d
	w, err := d.setModel(t, key, v, time.UnixMilli(g.updated).UTC(), g)
	if err != nil {
		return err
	}
	pc, b, err := d.open(ctx, t)
	if err != nil {
		return err
	}
	if cond.ifMatch {
		return d.conditional(ctx, pc, b, t, key, cond, d.updateWhere(ctx, pc, b, w.set))
	}
	release, err := d.slot(ctx, b)
	if err != nil {
		return err
	}
	_, err = pc.InsertOne(ctx, w.doc)
	release()
	if cond.absent && mongo.IsDuplicateKeyError(err) {
		return preconditionFailed("exists")
	}
	if err == nil {
		return nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return docsBackendError("documents set", err)
	}
	// The document exists: update it.
	if useClaims(b) {
		return d.claimedOverwrite(ctx, pc, b, t, key, w)
	}
	// A duplicate again means it was deleted and inserted by others
	// meanwhile: once more.
	for try := 0; try < 2 && mongo.IsDuplicateKeyError(err); try++ {
		err = d.withSlot(ctx, b, func() error {
			_, err := pc.UpdateMany(ctx, w.filter, w.update, options.UpdateMany().SetUpsert(true))
			return err
		})
	}
	if err != nil {
		return translateDocsError("documents set", err)
	}
	return nil
}

func (m mongoDocs) remove(ctx context.Context, t target, key string, cond docCond) error {
	d := m.d
	pc, b, err := d.open(ctx, t)
	if err != nil {
		return err
	}
	if cond.ifMatch {
		return d.conditional(ctx, pc, b, t, key, cond, d.deleteWhere(ctx, pc, b))
	}
	if useClaims(b) {
		return d.claimedDelete(ctx, pc, b, t, key)
	}
	release, err := d.slot(ctx, b)
	if err != nil {
		return err
	}
	defer release()
	if _, err := pc.DeleteOne(ctx, bson.D{{Key: "_id", Value: t.id(key)}}); err != nil {
		return docsBackendError("documents delete", err)
	}
	return nil
}

func (m mongoDocs) patch(ctx context.Context, t target, key string, cond docCond, merge func([]byte) (docValue, error), next func() docTag) (docValue, docTag, error) {
	d := m.d
	pc, b, err := d.open(ctx, t)
	if err != nil {
		return docValue{}, docTag{}, err
	}
	for try := 0; ; try++ {
		stored, tag, err := readDoc(ctx, pc, t, key)
		if errors.Is(err, mongo.ErrNoDocuments) {
			if cond.ifMatch {
				return docValue{}, docTag{}, preconditionFailed("does not exist")
			}
			return docValue{}, docTag{}, errDocNotFound
		}
		if err != nil {
			return docValue{}, docTag{}, translateDocsError("documents patch", err)
		}
		if cond.ifMatch && !cond.matches(tag) {
			return docValue{}, docTag{}, preconditionFailed("does not have that ETag")
		}
		v, err := merge([]byte(stored))
		if err != nil {
			return docValue{}, docTag{}, err
		}
		g := next()
		w, err := d.setModel(t, key, v, time.UnixMilli(g.updated).UTC(), g)
		if err != nil {
			return docValue{}, docTag{}, err
		}
		matched, err := d.versionedWrite(ctx, pc, b, t, key, tag, d.updateWhere(ctx, pc, b, w.set))
		if err != nil && !errors.Is(err, errClaimed) { // claimed: another writer is ahead, merge again
			return docValue{}, docTag{}, translateDocsError("documents patch", err)
		}
		if matched {
			return v, g, nil
		}
		if err := patchBackoff(ctx, try); err != nil {
			return docValue{}, docTag{}, err
		}
	}
}

func (m mongoDocs) batch(ctx context.Context, reqID string, t target, ops []batchOp, g docTag) error {
	d := m.d
	now := time.UnixMilli(g.updated).UTC()
	for i := range ops {
		if ops[i].err == nil && ops[i].op == "set" {
			ops[i].set, ops[i].err = d.setModel(t, ops[i].key, ops[i].value, now, g)
		}
	}
	bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
	pc, b, err := d.open(bctx, t)
	cancel()
	if err != nil {
		return err
	}
	return d.applyBatch(ctx, reqID, pc, b, t, ops)
}

func (m mongoDocs) query(ctx context.Context, t target, plan queryPlan, limit int) (docPage, error) {
	d := m.d
	pc, _, err := d.open(ctx, t)
	if err != nil {
		return docPage{}, err
	}
	if err := d.resolveHashedPos(ctx, pc, t, &plan); err != nil {
		return docPage{}, err
	}
	return d.runQuery(ctx, pc, t, plan, limit)
}

func (m mongoDocs) count(ctx context.Context, t target, terms []filterTerm) (int64, error) {
	pc, _, err := m.d.open(ctx, t)
	if err != nil {
		return 0, err
	}
	filter, _, _, err := m.d.mongoQuery(t, queryPlan{filter: terms})
	if err != nil {
		return 0, err
	}
	return countMatches(ctx, pc, filter)
}

func (m mongoDocs) erase(ctx context.Context, prefix string, o eraseOptions, n *int64) error {
	return m.d.eraseAll(ctx, prefix, o, n)
}

func (m mongoDocs) scan(ctx context.Context, prefix string, each func(coll, key string, json []byte) error) error {
	d := m.d
	b, err := d.readyBounded(ctx)
	if err != nil {
		return err
	}
	line := func(doc bson.Raw) error {
		loc, _ := doc.Lookup(fieldLoc).StringValueOK()
		cl, _ := doc.Lookup(fieldColl).StringValueOK()
		key, _ := doc.Lookup(fieldKey).StringValueOK()
		js, ok := doc.Lookup(fieldJSON).StringValueOK()
		if loc != prefix || validCollection(cl) != nil || !ok {
			return &Error{Code: CodeInternal, Message: "internal error", Err: errors.New("export: a stored document does not match its _id")}
		}
		return each(cl, key, []byte(js))
	}
	if !b.partitioned {
		// _id = location + collection + "/" + key: in _id order each
		// collection's documents are contiguous ("a/..." never interleaves
		// with "a-b/...", since no collection name holds '/').
		return d.scanDocuments(ctx, d.coll, idsUnder(prefix), line)
	}
	names, err := d.partitions(ctx, prefix)
	if err != nil {
		return err
	}
	p := d.partitionPrefix(prefix)
	for _, name := range names {
		cl := name[len(p):]
		if validCollection(cl) != nil {
			continue
		}
		lo, hi := target{loc: prefix, coll: cl}.idRange()
		filter := bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: lo}, {Key: "$lt", Value: hi}}}}
		if err := d.scanDocuments(ctx, d.e.cfg.Mongo.Collection(name), filter, line); err != nil {
			return err
		}
	}
	return nil
}

func (m mongoDocs) ping(ctx context.Context) error {
	_, err := m.d.ready(ctx)
	return err
}

// updateWhere is a versioned write's update (see versionedWrite): set the
// document that filter matches, in a write slot; it reports whether one
// matched.
func (d *documents) updateWhere(ctx context.Context, pc *mongo.Collection, b docsBackend, set bson.D) func(bson.D) (bool, error) {
	return func(filter bson.D) (matched bool, err error) {
		err = d.withSlot(ctx, b, func() error {
			res, err := pc.UpdateMany(ctx, filter, set)
			matched = err == nil && res.MatchedCount > 0
			return err
		})
		return matched, err
	}
}

// deleteWhere is a versioned write's delete: delete the document that
// filter matches, in a write slot; it reports whether one was deleted.
func (d *documents) deleteWhere(ctx context.Context, pc *mongo.Collection, b docsBackend) func(bson.D) (bool, error) {
	return func(filter bson.D) (deleted bool, err error) {
		err = d.withSlot(ctx, b, func() error {
			res, err := pc.DeleteOne(ctx, filter)
			deleted = err == nil && res.DeletedCount > 0
			return err
		})
		return deleted, err
	}
}

// claimedOverwrite updates an existing document on FerretDB as a
// versioned write from the version stored: it claims that version, so it
// serialises with conditional writers and PATCH (see put). A document
// deleted meanwhile is inserted again; a version changed meanwhile is read
// again.
func (d *documents) claimedOverwrite(ctx context.Context, pc *mongo.Collection, b docsBackend, t target, key string, w setWrite) error {
	for try := 0; ; try++ {
		_, cur, err := readDoc(ctx, pc, t, key)
		if errors.Is(err, mongo.ErrNoDocuments) {
			err = d.withSlot(ctx, b, func() error {
				_, err := pc.InsertOne(ctx, w.doc)
				return err
			})
			if err == nil {
				return nil
			}
			if !mongo.IsDuplicateKeyError(err) {
				return translateDocsError("documents set", err)
			}
		} else if err != nil {
			return translateDocsError("documents set", err)
		} else {
			matched, err := d.versionedWrite(ctx, pc, b, t, key, cur, d.updateWhere(ctx, pc, b, w.set))
			if err != nil && !errors.Is(err, errClaimed) {
				return translateDocsError("documents set", err)
			}
			if matched {
				return nil
			}
		}
		if err := patchBackoff(ctx, try); err != nil {
			return err
		}
	}
}

// claimedDelete deletes a document on FerretDB as a versioned write from
// the version stored (see claimedOverwrite).
func (d *documents) claimedDelete(ctx context.Context, pc *mongo.Collection, b docsBackend, t target, key string) error {
	for try := 0; ; try++ {
		_, cur, err := readDoc(ctx, pc, t, key)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		if err != nil {
			return translateDocsError("documents delete", err)
		}
		matched, err := d.versionedWrite(ctx, pc, b, t, key, cur, d.deleteWhere(ctx, pc, b))
		if err != nil && !errors.Is(err, errClaimed) {
			return translateDocsError("documents delete", err)
		}
		if matched {
			return nil
		}
		if err := patchBackoff(ctx, try); err != nil {
			return err
		}
	}
}

// eraseAll removes the documents under prefix in either layout (see the
// top of erase.go).
func (d *documents) eraseAll(ctx context.Context, prefix string, o eraseOptions, n *int64) error {
	b, err := d.readyBounded(ctx)
	if err != nil {
		return err
	}
	if err := d.eraseClaims(ctx, prefix); err != nil {
		return err
	}
	if !b.partitioned {
		return d.eraseRange(ctx, d.coll, b, prefix, o, n)
	}
	names, err := d.partitions(ctx, prefix)
	if err != nil {
		return err
	}
	for _, name := range names {
		pc := d.e.cfg.Mongo.Collection(name)
		if err := d.eraseRange(ctx, pc, b, prefix, o, n); err != nil {
			return err
		}
		// Drop the emptied collection (on FerretDB each is a table); one
		// that holds other documents (a hash collision) stays.
		bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
		err := pc.FindOne(bctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			err = pc.Drop(bctx)
		}
		cancel()
		if err != nil {
			return docsBackendError("documents erase", err)
		}
	}
	return nil
}

// patchBackoff waits a little, randomly, before a writer that lost a race
// tries again, so that the losers do not all come back at once; try counts
// from 0, and after maxPatchTries it gives up with 409.
func patchBackoff(ctx context.Context, try int) error {
	if try+1 >= maxPatchTries {
		return errorf(CodeConflict, "concurrent writes kept changing this document; try again")
	}
	select {
	case <-time.After(mrand.N(time.Duration(min(try+1, 20)) * time.Millisecond)):
		return nil
	case <-ctx.Done():
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("documents write: %w", ctx.Err())}
	}
}

// sizes calls each with the location and the JSON text's size of every
// document under prefix (a tenant's or a location's), for a usage
// recount (usage_recount.go), reading a batch at a time.
func (d *documents) sizes(ctx context.Context, prefix string, each func(loc string, size int64)) error {
	b, err := d.readyBounded(ctx)
	if err != nil {
		return err
	}
	line := func(doc bson.Raw) error {
		loc, _ := doc.Lookup(fieldLoc).StringValueOK()
		js, _ := doc.Lookup(fieldJSON).StringValueOK()
		if strings.HasPrefix(loc, prefix) {
			each(loc, int64(len(js)))
		}
		return nil
	}
	if !b.partitioned {
		return d.scanDocuments(ctx, d.coll, idsUnder(prefix), line)
	}
	names, err := d.partitions(ctx, prefix)
	if err != nil {
		return err
	}
	filter := bson.D{{Key: fieldLoc, Value: bson.D{{Key: "$gte", Value: prefix}, {Key: "$lt", Value: prefixEnd(prefix)}}}}
	for _, name := range names {
		if err := d.scanDocuments(ctx, d.e.cfg.Mongo.Collection(name), filter, line); err != nil {
			return err
		}
	}
	return nil
}

// sizesOf reads the JSON text's size of each document at keys that exists
// (a batch's old values, for usage: usage_documents.go), a hundred keys
// per query.
func (d *documents) sizesOf(ctx context.Context, t target, keys []string) (map[string]int64, error) {
	pc, _, err := d.open(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(keys))
	for chunk := range slices.Chunk(keys, 100) {
		ids := make([]string, len(chunk))
		for i, k := range chunk {
			ids[i] = t.id(k)
		}
		cur, err := pc.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
			options.Find().SetProjection(bson.D{{Key: fieldKey, Value: 1}, {Key: fieldJSON, Value: 1}}))
		if err != nil {
			return nil, docsBackendError("documents read", err)
		}
		for cur.Next(ctx) {
			key, _ := cur.Current.Lookup(fieldKey).StringValueOK()
			js, _ := cur.Current.Lookup(fieldJSON).StringValueOK()
			out[key] = int64(len(js))
		}
		err = cur.Err()
		cur.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, docsBackendError("documents read", err)
		}
	}
	return out, nil
}
