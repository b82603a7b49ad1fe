package storage

import "context"

// EraseUserInBatches runs the erase of DELETE
// /v1/admin/tenants/{tenant}/users/{user}/data with batches of batch items,
// calling after (when set) after each batch, so a test can stop it midway.
func EraseUserInBatches(ctx context.Context, e *Engine, tenant, user string, batch int, after func(primitive string)) (files, documents, kv int64, err error) {
	n, err := e.erase(ctx, userPrefix(tenant, user), eraseOptions{batch: batch, afterBatch: after})
	return n.Files, n.Documents, n.KV, err
}
