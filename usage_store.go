// The usage store: where usage and quotas live (see usage.go). Two
// drivers: sqliteUsage (usage_sqlite.go, the table cpod_usage kept by
// triggers, and cpod_quotas) and redisUsage (usage_redis.go, a hash per
// tenant in Redis, and the quotas in MongoDB). One suite runs on both
// (usage_test.go, on FerretDB + miniredis by default and on SQLite with
// CPODTEST_STORE=sqlite).

package storage

import "context"

// usageStore keeps each tenant's usage, per location and in total, and
// its own quota.
//
// # Errors
//
// Every method returns nil, or an *Error the engine answers as it is: the
// driver translates its backend's errors itself, once (a backend that did
// not answer in time, or is unreachable: CodeBackendUnavailable; anything
// else unexpected: CodeInternal, its cause in Err). A tenant or location
// never written reads as zero usage and no own quota, never an error.
type usageStore interface {
	// explicit reports whether the engine must add the writes of p
	// (false where the store counts them itself, in the write's own
	// transaction: documents and kv on SQLite).
	explicit(p primitive) bool
	// add applies the changes of one write of tenant, each to its
	// location and to the tenant's totals, atomically.
	add(ctx context.Context, tenant string, chs []usageChange) error
	// read returns the usage of a location prefix ("t1/apps/a/") or, for
	// a tenant prefix ("t1/"), the tenant's totals.
	read(ctx context.Context, loc string) (usageSet, error)
	// total returns the tenant's usage of p, for a quota check: one
	// command or statement (on Redis without sweeping the expired kv
	// values first, which the tenant's next write does: a check may count
	// a value that expired since the tenant's last write).
	total(ctx context.Context, tenant string, p primitive) (usageFigures, error)
	// replace sets the tenant's usage to what a recount found: total, and
	// locs for its locations (every other location of the tenant reads
	// zero after it).
	replace(ctx context.Context, tenant string, total usageSet, locs map[string]*usageSet) error
	// clear sets the usage of every location under prefix (a location, or
	// a tenant prefix) to zero, after an admin erase, taking it from the
	// tenant's totals; on SQLite only for files (the triggers already
	// counted the documents and kv the erase deleted).
	clear(ctx context.Context, prefix string) error
	// quota returns the tenant's own limits (noOwnQuota when none).
	quota(ctx context.Context, tenant string) (ownQuota, error)
	// updateQuota changes the tenant's own limits with f, atomically
	// against other updates, and returns them.
	updateQuota(ctx context.Context, tenant string, f func(ownQuota) ownQuota) (ownQuota, error)
}
