package client

import (
	"context"
	"net/http"
)

// Usage is how much a location stores in each primitive, as
// GET /v1/storage/usage answers and sdk.storage.usage resolves to.
type Usage struct {
	Files     UsageFigures `json:"files"`
	Documents UsageFigures `json:"documents"`
	KV        UsageFigures `json:"kv"`
}

// UsageFigures are the bytes and the count of one primitive. Bytes are
// those of the values only: a file's contents, a document's JSON text as
// Get returns it, a kv value's text; names (paths, keys, collections) are
// not counted, Count caps them.
type UsageFigures struct {
	Bytes int64 `json:"bytes"`
	Count int64 `json:"count"`
}

// Usage returns what the caller's location in tier stores: with
// [TierPrivate] (or "", the default) this app's private data, with
// [TierUser] the token's user's data (across apps), with [TierShared] the
// tenant's shared data. It needs the tier's read scope.
//
// The figures are exact when no writes are in flight. A tenant's quota
// (set by an operator, see README) counts the tenant's whole data, every
// tier and app together; a write that would take it over a limit fails
// with [ErrQuotaExceeded].
func (c *Client) Usage(ctx context.Context, tier Tier) (Usage, error) {
	var u Usage
	if err := c.doJSON(ctx, http.MethodGet, "/v1/storage/usage", tierQuery(tier), nil, &u); err != nil {
		return Usage{}, err
	}
	return u, nil
}
