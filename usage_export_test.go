package storage

import (
	"context"
	"testing"
)

// noUsage is a usage store that keeps nothing (BenchmarkUsageCost's floor).
type noUsage struct{}

func (noUsage) explicit(primitive) bool                          { return false }
func (noUsage) add(context.Context, string, []usageChange) error { return nil }
func (noUsage) read(context.Context, string) (usageSet, error)   { return usageSet{}, nil }
func (noUsage) total(context.Context, string, primitive) (usageFigures, error) {
	return usageFigures{}, nil
}
func (noUsage) clear(context.Context, string) error                                   { return nil }
func (noUsage) quota(context.Context, string) (ownQuota, error)                       { return noOwnQuota(), nil }
func (noUsage) replace(context.Context, string, usageSet, map[string]*usageSet) error { return nil }
func (noUsage) updateQuota(context.Context, string, func(ownQuota) ownQuota) (ownQuota, error) {
	return noOwnQuota(), nil
}

// DisableUsage makes e keep no usage: no usage store, no locks of files
// and documents, and on SQLite no usage triggers. For benchmarks only:
// the cost of keeping usage is what e saves.
func DisableUsage(tb testing.TB, e *Engine) {
	e.usage = noUsage{}
	if e.sql != nil {
		if err := e.sql.ready(context.Background()); err != nil {
			tb.Fatal(err)
		}
		for _, tr := range []string{"cpod_documents_usage_insert", "cpod_documents_usage_update", "cpod_documents_usage_delete", "cpod_kv_usage_insert", "cpod_kv_usage_update", "cpod_kv_usage_delete"} {
			if _, err := e.sql.db.Exec("DROP TRIGGER " + tr); err != nil {
				tb.Fatal(err)
			}
		}
	}
}
