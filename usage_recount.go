package storage

import (
	"context"
	"strings"

	"github.com/minio/minio-go/v7"
)

// recount computes a tenant's usage from its data and makes it the usage
// the store keeps (POST /v1/admin/tenants/{tenant}/usage/recount): every
// file (S3 ListObjects), and on MongoDB + Redis every document and kv
// value; on SQLite the store counts documents and kv itself, in the same
// transaction as it replaces the figures. It reads the data a page at a
// time and keeps one set of figures per location of the tenant (memory in
// proportion to its locations, never to its data). It stops when ctx
// ends, changing nothing; calling it again starts over, so an interrupted
// recount is finished by the next one.
//
// Writes of the tenant during a recount may be counted twice or not at
// all (the recount reads the data while they land): run it while the
// tenant is quiet, e.g. after an upgrade or a restore of a backup.
func (e *Engine) recount(ctx context.Context, tenant string) (usageSet, error) {
	prefix := tenantPrefix(tenant)
	var total usageSet
	locs := map[string]*usageSet{}
	add := func(loc string, p primitive, size int64) {
		u := locs[loc]
		if u == nil {
			u = new(usageSet)
			locs[loc] = u
		}
		u[p].Bytes += size
		u[p].Count++
		total[p].Bytes += size
		total[p].Count++
	}
	if e.usage.explicit(primFiles) {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for o := range e.cfg.S3.ListObjects(lctx, e.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				return total, s3Error("list", o.Err)
			}
			if loc, _, ok := splitLocation(o.Key); ok && !strings.HasSuffix(o.Key, "/") {
				add(loc, primFiles, o.Size)
			}
		}
	}
	if e.usage.explicit(primDocuments) {
		err := e.docs.sizes(ctx, prefix, func(loc string, size int64) { add(loc, primDocuments, size) })
		if err != nil {
			return total, err
		}
	}
	if e.usage.explicit(primKV) {
		err := e.kv.scan(ctx, prefix, func(key, value string, _ int64) error {
			if loc, _, ok := splitLocation(key); ok {
				add(loc, primKV, int64(len(value)))
			}
			return nil
		})
		if err != nil {
			return total, err
		}
	}
	if err := ctx.Err(); err != nil {
		return total, &Error{Code: CodeBackendUnavailable, Message: "request canceled", Err: err}
	}
	if err := e.usage.replace(ctx, tenant, total, locs); err != nil {
		return total, err
	}
	return e.usage.read(ctx, prefix)
}
