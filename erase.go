package storage

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// An erase removes everything stored under a location prefix (a user's
// user tier, an app's private tier, or a whole tenant, see admin.go) from
// the three stores, one batch at a time:
//
//   - files: the S3 objects listed under the prefix, deleted with
//     multi-object deletes of up to eraseBatch keys, then the incomplete
//     multipart uploads under the prefix (not counted: they are no files);
//   - documents: in the single layout the documents whose _id (which
//     starts with the location) lies in the prefix's range, found by the
//     _id index eraseBatch at a time and deleted by _id; in the partitioned
//     layout the same in each physical collection whose name carries the
//     prefix's hashes (found with listCollections), which is then dropped
//     once empty;
//   - kv: the kv store's erase (on Redis, SCAN MATCH of the prefix's keys
//     on every master and DEL of those found, kv_redis.go; on SQLite,
//     DELETE of a batch of the prefix's key range, kv_sqlite.go).
//
// Each backend call is bounded by BackendTimeout (S3Timeout for S3), the
// whole erase only by the request: it takes as long as there is data. It
// holds one batch in memory whatever the amount of data. Every step is
// idempotent, so an erase that stops midway (a crash, a backend failure, the
// client gone) is finished by running it again; the counts of the runs add
// up to what was stored. Data written under the prefix while an erase runs
// may or may not survive it.

// eraseCounts is what an erase removed: files, documents and kv keys.
type eraseCounts struct {
	Files     int64 `json:"files"`
	Documents int64 `json:"documents"`
	KV        int64 `json:"kv"`
}

func (n eraseCounts) String() string {
	return fmt.Sprintf("files %d, documents %d, kv %d", n.Files, n.Documents, n.KV)
}

// eraseBatch is how many items an erase or an export handles per backend
// call.
const eraseBatch = 1000

// eraseOptions are test knobs; the zero value is what the API uses.
type eraseOptions struct {
	batch int // items per backend call; default eraseBatch
	// afterBatch, when set, is called after each batch is removed, with
	// the primitive: "files", "documents" or "kv".
	afterBatch func(primitive string)
}

func (o eraseOptions) size() int {
	if o.batch > 0 {
		return o.batch
	}
	return eraseBatch
}

func (o eraseOptions) done(primitive string) {
	if o.afterBatch != nil {
		o.afterBatch(primitive)
	}
}

// erase removes everything under prefix, a location prefix from tiers.go
// ending with '/'. On error the counts say what was removed until then.
func (e *Engine) erase(ctx context.Context, prefix string, o eraseOptions) (eraseCounts, error) {
	var n eraseCounts
	if !strings.HasSuffix(prefix, "/") || strings.Count(prefix, "/") < 1 {
		return n, &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("erase: bad prefix %q", prefix)}
	}
	if err := e.eraseFiles(ctx, prefix, o, &n.Files); err != nil {
		return n, err
	}
	if err := e.eraseDocuments(ctx, prefix, o, &n.Documents); err != nil {
		return n, err
	}
	err := e.kv.erase(ctx, prefix, o, &n.KV)
	return n, err
}

// ---- files ----

// listPage lists up to max objects under prefix after the key after, in
// one bounded S3 call.
func (e *Engine) listPage(ctx context.Context, prefix, after string, max int) ([]minio.ObjectInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.S3Timeout)
	defer cancel()
	noOwner := false
	var page []minio.ObjectInfo
	for obj := range e.cfg.S3.ListObjectsIter(ctx, e.cfg.Bucket, minio.ListObjectsOptions{
		Prefix:     prefix,
		Recursive:  true,
		StartAfter: after,
		MaxKeys:    min(max, maxListPerRequest),
		FetchOwner: &noOwner,
	}) {
		if obj.Err != nil {
			return nil, s3Error("list", obj.Err)
		}
		if !strings.HasPrefix(obj.Key, prefix) {
			continue // never from a correct store
		}
		page = append(page, obj)
		if len(page) == max {
			break
		}
	}
	return page, nil
}

func (e *Engine) eraseFiles(ctx context.Context, prefix string, o eraseOptions, n *int64) error {
	after := ""
	for {
		page, err := e.listPage(ctx, prefix, after, o.size())
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Key
		ch := make(chan minio.ObjectInfo, len(page))
		for _, obj := range page {
			ch <- minio.ObjectInfo{Key: obj.Key}
		}
		close(ch)
		dctx, cancel := context.WithTimeout(ctx, e.cfg.S3Timeout)
		var firstErr error
		for r := range e.cfg.S3.RemoveObjectsWithResult(dctx, e.cfg.Bucket, ch, minio.RemoveObjectsOptions{}) {
			if r.Err != nil {
				if firstErr == nil {
					firstErr = r.Err
				}
				continue
			}
			*n++
		}
		cancel()
		if firstErr != nil {
			return s3Error("erase", firstErr)
		}
		o.done("files")
	}
	return e.abortUploads(ctx, prefix, o)
}

// abortUploads aborts the incomplete multipart uploads under prefix (an
// upload cut short keeps its parts until aborted), a batch at a time.
func (e *Engine) abortUploads(ctx context.Context, prefix string, o eraseOptions) error {
	for {
		lctx, cancel := context.WithTimeout(ctx, e.cfg.S3Timeout)
		var keys []string
		var err error
		for up := range e.cfg.S3.ListIncompleteUploads(lctx, e.cfg.Bucket, prefix, true) {
			if up.Err != nil {
				err = up.Err
				break
			}
			if strings.HasPrefix(up.Key, prefix) && !slices.Contains(keys, up.Key) {
				keys = append(keys, up.Key)
			}
			if len(keys) == o.size() {
				break
			}
		}
		cancel()
		if err != nil {
			if notImplemented(err) {
				return nil // a store without multipart listing has nothing to abort we could find
			}
			return s3Error("list uploads", err)
		}
		if len(keys) == 0 {
			return nil
		}
		for _, k := range keys {
			rctx, cancel := context.WithTimeout(ctx, e.cfg.S3Timeout)
			err := e.cfg.S3.RemoveIncompleteUpload(rctx, e.cfg.Bucket, k)
			cancel()
			if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
				if err := s3Error("abort upload", err); !errors.Is(err, ErrNotFound) {
					return err
				}
			}
		}
		if ctx.Err() != nil {
			return toError(ctx.Err())
		}
	}
}

func notImplemented(err error) bool {
	return minio.ToErrorResponse(err).Code == "NotImplemented"
}

// ---- documents ----

// prefixEnd is the first string after every string that starts with
// prefix, which ends with '/' ('0' follows '/').
func prefixEnd(prefix string) string { return prefix[:len(prefix)-1] + "0" }

// idsUnder filters the _ids of the documents under prefix.
func idsUnder(prefix string) bson.D {
	return bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: prefix}, {Key: "$lt", Value: prefixEnd(prefix)}}}}
}

func (e *Engine) eraseDocuments(ctx context.Context, prefix string, o eraseOptions, n *int64) error {
	return e.docs.store.erase(ctx, prefix, o, n)
}

// readyBounded is ready within BackendTimeout.
// eraseClaims removes the version claims (documents_versions.go) of the
// documents under prefix: a claim's _id starts with its document's _id, so
// it names the tenant, the location and the key. Claims are released after
// each write and expire, but a crashed engine leaves them behind until the
// next writer of that version; an erase must not. They are not counted.
func (d *documents) eraseClaims(ctx context.Context, prefix string) error {
	bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
	defer cancel()
	cc := d.e.cfg.Mongo.Collection(d.e.cfg.DocumentsCollection + claimsSuffix)
	if _, err := cc.DeleteMany(bctx, idsUnder(prefix)); err != nil {
		return docsBackendError("documents erase", err)
	}
	return nil
}

func (d *documents) readyBounded(ctx context.Context) (docsBackend, error) {
	bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
	defer cancel()
	return d.ready(bctx)
}

// eraseRange deletes the documents of pc under prefix, a batch at a time:
// the _ids of a batch from the _id index, then one delete of them.
func (d *documents) eraseRange(ctx context.Context, pc *mongo.Collection, b docsBackend, prefix string, o eraseOptions, n *int64) error {
	for {
		ids, err := d.idBatch(ctx, pc, prefix, o.size())
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		err = func() error {
			bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
			defer cancel()
			release, err := d.slot(bctx, b)
			if err != nil {
				return err
			}
			defer release()
			// idBatch checked that every id is under prefix.
			res, err := pc.DeleteMany(bctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
			if err != nil {
				return docsBackendError("documents erase", err)
			}
			*n += res.DeletedCount
			return nil
		}()
		if err != nil {
			return err
		}
		o.done("documents")
	}
}

// idBatch finds up to max _ids under prefix in pc.
func (d *documents) idBatch(ctx context.Context, pc *mongo.Collection, prefix string, max int) ([]string, error) {
	bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
	defer cancel()
	cur, err := pc.Find(bctx, idsUnder(prefix), options.Find().
		SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(max)).SetBatchSize(int32(max)))
	if err != nil {
		return nil, docsBackendError("documents erase", err)
	}
	defer cur.Close(bctx)
	var ids []string
	for cur.Next(bctx) {
		id, ok := cur.Current.Lookup("_id").StringValueOK()
		if ok && strings.HasPrefix(id, prefix) {
			ids = append(ids, id)
		}
	}
	if err := cur.Err(); err != nil {
		return nil, docsBackendError("documents erase", err)
	}
	return ids, nil
}

// partitionPrefix is the name prefix of the physical collections that can
// hold documents under prefix in the partitioned layout (see
// documents.open): those of one location, or of a whole tenant for a
// tenant prefix.
func (d *documents) partitionPrefix(prefix string) string {
	base := d.e.cfg.DocumentsCollection
	name := partitionName(base, target{loc: prefix}) // base.h(tenant).h(loc).
	tenant, _, _ := strings.Cut(prefix, "/")
	if prefix == tenantPrefix(tenant) {
		// base.h(tenant).
		name = name[:strings.IndexByte(name[len(base)+1:], '.')+len(base)+2]
	}
	return name
}

// partitions lists, in name order, the physical collections that can hold
// documents under prefix in the partitioned layout.
func (d *documents) partitions(ctx context.Context, prefix string) ([]string, error) {
	p := d.partitionPrefix(prefix)
	bctx, cancel := context.WithTimeout(ctx, d.e.cfg.BackendTimeout)
	defer cancel()
	names, err := d.e.cfg.Mongo.ListCollectionNames(bctx,
		bson.D{{Key: "name", Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(p)}}}})
	if err != nil {
		return nil, docsBackendError("documents list collections", err)
	}
	out := names[:0]
	for _, name := range names {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}
