package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// KV is ephemeral key-value storage, sdk.storage.kv: sessions, locks, rate
// limit counters, temporary tokens. Values are strings; they can expire.
// Keys are 1 to 512 bytes of UTF-8 without control characters; a "/" in a
// key is just a character.
//
// c.Storage.KV works in the private tier, as the seed's kv does; use
// [KV.WithTier] for another.
type KV struct {
	c    *Client
	tier Tier
}

// WithTier returns a KV that works in tier t. The receiver is unchanged.
func (kv *KV) WithTier(t Tier) *KV {
	return &KV{c: kv.c, tier: t}
}

// KVSetOptions are the options of [KV.Set]. A nil *KVSetOptions means all
// defaults.
type KVSetOptions struct {
	// TTL makes the key expire after this long, rounded up to whole
	// seconds, from 1 second to 1 year. 0 means no expiry.
	TTL time.Duration
}

// NoExpiry is what [KV.TTL] returns for a key that does not expire.
const NoExpiry time.Duration = -1

func (kv *KV) path(key string) (string, error) {
	k, err := escapeKey("key", key)
	if err != nil {
		return "", err
	}
	return "/v1/storage/kv/" + k, nil
}

// Set stores value under key, replacing any value and TTL there, as
// kv.set. A string (or []byte) is stored as it is; anything else is stored
// as its compact JSON text, so Set(ctx, k, map[string]any{"a": 1}, nil)
// makes Get return `{"a":1}`. A json.RawMessage is taken as JSON.
func (kv *KV) Set(ctx context.Context, key string, value any, opts *KVSetOptions) error {
	return kv.set(ctx, key, value, opts, nil, nil)
}

// SetIfAbsent stores value under key only when key does not exist, in one
// atomic step on the server: a lock's acquire. ok is false, with a nil
// error, when the key exists; nothing is written then. Value and opts are
// as for [KV.Set].
func (kv *KV) SetIfAbsent(ctx context.Context, key string, value any, opts *KVSetOptions) (ok bool, err error) {
	yes := true
	return conditionHeld(kv.set(ctx, key, value, opts, &yes, nil))
}

// SetIfValue stores value under key only when key holds exactly current,
// in one atomic step on the server (compare-and-set). ok is false, with a
// nil error, when the key is missing or holds anything else; nothing is
// written then. current is compared with the stored text, as [KV.Get]
// returns it (compact JSON text for a value that was not a string).
//
// Like [KV.Set], it replaces the TTL: without opts.TTL the key no longer
// expires. To refresh a lock you hold, pass the lock's TTL again.
func (kv *KV) SetIfValue(ctx context.Context, key string, value any, current string, opts *KVSetOptions) (ok bool, err error) {
	return conditionHeld(kv.set(ctx, key, value, opts, nil, &current))
}

// conditionHeld turns the answer of a conditional call into ok: a 412
// (code conflict) means the condition did not hold.
func conditionHeld(err error) (bool, error) {
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusPreconditionFailed {
		return false, nil
	}
	return err == nil, err
}

func (kv *KV) set(ctx context.Context, key string, value any, opts *KVSetOptions, ifAbsent *bool, ifValue *string) error {
	p, err := kv.path(key)
	if err != nil {
		return err
	}
	if opts == nil {
		opts = &KVSetOptions{}
	}
	if b, ok := value.([]byte); ok {
		value = string(b)
	}
	in := struct {
		Value    any     `json:"value"`
		TTL      *int64  `json:"ttl,omitempty"`
		IfAbsent *bool   `json:"ifAbsent,omitempty"`
		IfValue  *string `json:"ifValue,omitempty"`
	}{Value: value, IfAbsent: ifAbsent, IfValue: ifValue}
	if opts.TTL != 0 {
		s := seconds(opts.TTL)
		in.TTL = &s
	}
	return kv.c.doJSON(ctx, http.MethodPut, p, tierQuery(kv.tier), in, nil)
}

// Get returns the value at key, as kv.get: always a string, the JSON text
// for values that were not strings. A missing (or expired) key is found ==
// false with a nil error.
func (kv *KV) Get(ctx context.Context, key string) (value string, found bool, err error) {
	p, err := kv.path(key)
	if err != nil {
		return "", false, err
	}
	var out struct {
		Value string `json:"value"`
	}
	err = kv.c.doJSON(ctx, http.MethodGet, p, tierQuery(kv.tier), nil, &out)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return out.Value, true, nil
}

// head sends HEAD for key and returns the Cpod-Ttl header.
func (kv *KV) head(ctx context.Context, key string) (string, error) {
	p, err := kv.path(key)
	if err != nil {
		return "", err
	}
	resp, err := kv.c.do(ctx, request{method: http.MethodHead, path: p, query: tierQuery(kv.tier)})
	if err != nil {
		return "", err
	}
	drainClose(resp.Body)
	return resp.Header.Get("Cpod-Ttl"), nil
}

// Exists reports whether key holds a value, as kv.exists.
func (kv *KV) Exists(ctx context.Context, key string) (bool, error) {
	_, err := kv.head(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Incr adds by to the integer at key and returns the result, as kv.incr
// (use by = 1 for the seed's default). A missing key counts from 0; the
// key's TTL is kept. A value that is not an integer, or a result outside
// the int64 range, is ErrNotInteger.
func (kv *KV) Incr(ctx context.Context, key string, by int64) (int64, error) {
	p, err := kv.path(key)
	if err != nil {
		return 0, err
	}
	in := struct {
		By int64 `json:"by"`
	}{by}
	var out struct {
		Value int64 `json:"value"`
	}
	if err := kv.c.doJSON(ctx, http.MethodPost, p, tierQuery(kv.tier), in, &out); err != nil {
		return 0, err
	}
	return out.Value, nil
}

// TTL returns the time left before key expires, in whole seconds, as
// kv.ttl; [NoExpiry] when it has none. A missing key is ErrNotFound.
func (kv *KV) TTL(ctx context.Context, key string) (time.Duration, error) {
	h, err := kv.head(ctx, key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpod storage: invalid Cpod-Ttl header %q", h)
	}
	if n < 0 {
		return NoExpiry, nil
	}
	return time.Duration(n) * time.Second, nil
}

// Del removes key, as kv.del. Removing a missing key is not an error.
func (kv *KV) Del(ctx context.Context, key string) error {
	p, err := kv.path(key)
	if err != nil {
		return err
	}
	return kv.c.doJSON(ctx, http.MethodDelete, p, tierQuery(kv.tier), nil, nil)
}

// DeleteIf removes key only when it holds exactly current, in one atomic
// step on the server (compare-and-delete): a lock's release, which must not
// remove a lock that expired and was taken by someone else. ok is false,
// with a nil error, when the key is missing or holds anything else.
func (kv *KV) DeleteIf(ctx context.Context, key, current string) (ok bool, err error) {
	p, err := kv.path(key)
	if err != nil {
		return false, err
	}
	in := struct {
		IfValue string `json:"ifValue"`
	}{current}
	return conditionHeld(kv.c.doJSON(ctx, http.MethodDelete, p, tierQuery(kv.tier), in, nil))
}

// Expire sets the time key has left to ttl (rounded up to whole seconds,
// 1 second to 1 year), keeping its value; ttl == [NoExpiry] removes its TTL.
// A missing key is ErrNotFound. Expire is not conditional: to extend a lock
// only while you still hold it, use [KV.SetIfValue] with a TTL.
func (kv *KV) Expire(ctx context.Context, key string, ttl time.Duration) error {
	p, err := kv.path(key)
	if err != nil {
		return err
	}
	in := struct {
		TTL *int64 `json:"ttl"`
	}{}
	switch {
	case ttl == NoExpiry:
	case ttl > 0:
		s := seconds(ttl)
		in.TTL = &s
	default:
		return localError("ttl must be positive, or NoExpiry to remove the TTL")
	}
	return kv.c.doJSON(ctx, http.MethodPatch, p, tierQuery(kv.tier), in, nil)
}
