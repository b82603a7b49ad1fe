// The Redis kv driver (Config.Redis: a single node, Sentinel or Cluster),
// the production path. How a value is stored is in kv_values.go.

package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// incrNoncesPerGeneration caps each of a counter's two nonce hashes (see
// incrScript): a counter keeps at most twice this many nonces, whatever
// the rate of increments.
const incrNoncesPerGeneration = 256

// redisKV keeps kv values in Redis.
type redisKV struct {
	rdb     redis.UniversalClient
	prefix  string // Config.RedisKeyPrefix
	now     func() time.Time
	timeout time.Duration // Config.BackendTimeout
}

var _ kvStore = (*redisKV)(nil)

func newRedisKV(cfg Config) *redisKV {
	return &redisKV{rdb: cfg.Redis, prefix: cfg.RedisKeyPrefix, now: cfg.Now, timeout: cfg.BackendTimeout}
}

// redisKey is the Redis key of the kv value at a location key. A location
// key maps to RedisKeyPrefix + "{" + location key + "}": the braces make it
// a Redis Cluster hash tag, so the key and its increment nonces (see
// incrScript) always share a slot; the mapping is injective because the
// closing brace is always last, and no user key collides with the
// counter's own keys (see incrScript), which end with ":nonces",
// ":nonces:prev" or ":incr".
//
// A location that starts with '}' (a tenant id may) would make that tag
// empty, and Redis Cluster then hashes the whole key, so the nonce keys
// would land in other slots (CROSSSLOT). Such a location maps to
// RedisKeyPrefix + "}{" + 16 hex digits of its SHA-256 + "}" + location +
// "}" instead: a tag that is never empty and still spreads keys over slots.
// That form starts with "}" where the other starts with "{", and ends with
// "}" too, so the mapping stays injective.
//
// redisKey and kvKeysUnder are the one place that knows the key format.
func (r *redisKV) redisKey(locKey string) string {
	if strings.HasPrefix(locKey, "}") {
		sum := sha256.Sum256([]byte(locKey))
		return r.prefix + "}{" + hex.EncodeToString(sum[:8]) + "}" + locKey + "}"
	}
	return r.prefix + "{" + locKey + "}"
}

// kvKeys describes the Redis keys of every kv key under a location prefix
// (a tenant's, an app's or a user's; see kvKeysUnder): the SCAN MATCH
// pattern that finds them, and how to read a found key back.
type kvKeys struct {
	pattern string
	head    int // bytes before the location key in each of these keys
	redis   string
	prefix  string
	hashed  bool // the '}' form of redisKey
}

// kvKeysUnder is kvKeys for the location prefix. Every location under one
// prefix starts with the same byte, so one of redisKey's two forms holds
// them all.
func (r *redisKV) kvKeysUnder(prefix string) kvKeys {
	rp := r.prefix
	if strings.HasPrefix(prefix, "}") {
		return kvKeys{pattern: globEscape(rp+"}{") + strings.Repeat("?", 16) + globEscape("}"+prefix) + "*",
			head: len(rp) + 2 + 16 + 1, redis: rp, prefix: prefix, hashed: true}
	}
	return kvKeys{pattern: globEscape(rp+"{"+prefix) + "*", head: len(rp) + 1, redis: rp, prefix: prefix}
}

// locationKey returns the location key of k and whether k is the key of a
// kv value (isValue false: a counter's nonces or scratch key) under the
// prefix; ok is false for a key of another place that the pattern matched.
func (s kvKeys) locationKey(k string) (locKey string, isValue, ok bool) {
	if len(k) <= s.head || !strings.HasPrefix(k[s.head:], s.prefix) {
		return "", false, false
	}
	rest := k[s.head:]
	i := strings.LastIndexByte(rest, '}')
	if i < len(s.prefix) {
		return "", false, false
	}
	locKey, suffix := rest[:i], rest[i+1:]
	switch suffix {
	case "":
		isValue = true
	case ":nonces", ":nonces:prev", ":incr":
	default:
		return "", false, false
	}
	want := s.redis + "{" + locKey + "}"
	if s.hashed {
		sum := sha256.Sum256([]byte(locKey))
		want = s.redis + "}{" + hex.EncodeToString(sum[:8]) + "}" + locKey + "}"
	}
	if k != want+suffix {
		return "", false, false
	}
	return locKey, isValue, true
}

// kvBackendError translates a go-redis error once, here in the driver.
func kvBackendError(op string, err error) (out error) {
	defer markBackend(backendRedis, &out)
	if err == nil {
		return nil
	}
	var re redis.Error
	if !errors.As(err, &re) {
		// Not a reply from Redis: the client could not dial, write or read
		// (refused, reset, timed out, pool exhausted), so Redis is
		// unavailable to this engine whatever the error's type.
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("redis %s: %w", op, err)}
	}
	msg := re.Error()
	for _, busy := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "BUSY"} {
		if strings.HasPrefix(msg, busy) {
			return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: fmt.Errorf("redis %s: %w", op, err)}
		}
	}
	if strings.HasPrefix(msg, "OOM") || strings.HasPrefix(msg, "MISCONF") {
		// Redis out of space: over maxmemory (OOM), or refusing writes
		// because its snapshot could not be saved, such as on a full
		// disk (MISCONF, stop-writes-on-bgsave-error).
		return errOutOfSpace("redis "+op, err)
	}
	if strings.Contains(msg, "not an integer") || strings.Contains(msg, "overflow") {
		return errKVNotInteger
	}
	return backendError("redis "+op, err)
}

// get is one GET: the value carries its expiry (kv_values.go), so the
// answer needs no second command, except for a value stored before that
// format, whose TTL only Redis knows (PTTL).
func (r *redisKV) get(ctx context.Context, key string) (string, int64, bool, error) {
	k := r.redisKey(key)
	stored, err := r.rdb.Get(ctx, k).Result()
	if errors.Is(err, redis.Nil) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, kvBackendError("get", err)
	}
	text, exp, ok := kvDecode(stored)
	if ok {
		return text, kvTTLLeft(exp, r.now()), true, nil
	}
	ttl, found, err := r.pttl(ctx, k)
	if err != nil || !found { // gone since the GET
		return "", 0, false, err
	}
	return text, ttl, true, nil
}

// ttl reads Redis' own TTL of the key (PTTL), which needs no value.
func (r *redisKV) ttl(ctx context.Context, key string) (int64, bool, error) {
	return r.pttl(ctx, r.redisKey(key))
}

func (r *redisKV) pttl(ctx context.Context, k string) (int64, bool, error) {
	d, err := r.rdb.PTTL(ctx, k).Result()
	if err != nil {
		return 0, false, kvBackendError("pttl", err)
	}
	switch d {
	case -2: // missing key (go-redis keeps Redis' raw -2 and -1)
		return 0, false, nil
	case -1: // no expiry
		return -1, true, nil
	}
	return ttlSeconds(d), true, nil
}

// set is one script (setU), which also reports what it replaced.
func (r *redisKV) set(ctx context.Context, key, value string, ttl time.Duration, cond kvCond) error {
	_, err := r.setU(ctx, key, value, ttl, cond)
	return err
}

// incr runs incrScript with a new nonce (see incrU).
func (r *redisKV) incr(ctx context.Context, key string, by int64) (int64, error) {
	n, _, err := r.incrU(ctx, key, by)
	return n, err
}

// incrNonce runs incrScript on the Redis key k with the nonce.
func (r *redisKV) incrNonce(ctx context.Context, k string, by int64, nonce string) (int64, kvWrite, error) {
	keep := r.timeout + time.Second
	res, err := incrScript.Run(ctx, r.rdb,
		[]string{k, k + ":nonces", k + ":nonces:prev", k + ":incr"},
		strconv.FormatInt(by, 10), nonce, incrNoncesPerGeneration, keep.Milliseconds()).Slice()
	if err != nil {
		return 0, kvWrite{}, kvBackendError("incrby", err)
	}
	if len(res) != 3 {
		return 0, kvWrite{}, &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("incrby: %d values in the answer", len(res))}
	}
	vs, _ := res[0].(string)
	n, err := strconv.ParseInt(vs, 10, 64)
	if err != nil {
		return 0, kvWrite{}, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	size, _ := res[1].(int64)
	exp, _ := res[2].(int64)
	if size == -2 { // a resend: counted by the first run
		return n, kvWrite{}, nil
	}
	w := kvWrite{new: kvStored{ok: true, size: int64(len(vs)), exp: exp}}
	if size >= 0 {
		w.old = kvStored{ok: true, size: size, exp: exp}
	}
	return n, w, nil
}

// remove is one script (removeU).
func (r *redisKV) remove(ctx context.Context, key string, cond kvCond) error {
	_, err := r.removeU(ctx, key, cond)
	return err
}

// expire is one script (expireU: the expiry is part of the stored value,
// see kv_values.go).
func (r *redisKV) expire(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	found, _, err := r.expireU(ctx, key, ttl)
	return found, err
}

// ping is a real GET, the command requests use most.
func (r *redisKV) ping(ctx context.Context) error {
	err := r.rdb.Get(ctx, r.prefix+"readyz").Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// globEscape escapes the glob characters of a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// scanKeys calls each with the Redis keys of ks (see kvKeysUnder), a batch
// at a time (one call at a time, even on a cluster), scanning every master
// of a Redis Cluster and every shard of a Ring. Every key SCAN finds is read
// back with ks.locationKey, so a key the glob pattern also matches but that
// is not the engine's key of this place is never handed on.
func (r *redisKV) scanKeys(ctx context.Context, ks kvKeys, count int, each func(keys []string) error) error {
	pattern := ks.pattern
	var mu sync.Mutex
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			sctx, cancel := context.WithTimeout(ctx, r.timeout)
			keys, next, err := c.Scan(sctx, cursor, pattern, int64(count)).Result()
			cancel()
			if err != nil {
				return kvBackendError("scan", err)
			}
			mine := keys[:0]
			for _, k := range keys {
				if _, _, ok := ks.locationKey(k); ok {
					mine = append(mine, k)
				}
			}
			if len(mine) > 0 {
				mu.Lock()
				err := each(mine)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	switch c := r.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	case *redis.Ring:
		err = c.ForEachShard(ctx, func(ctx context.Context, s *redis.Client) error { return scan(ctx, s) })
	default:
		err = scan(ctx, r.rdb)
	}
	var ee *Error
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return kvBackendError("scan", err) // ForEachMaster's own, such as a cluster state reload
}

// erase finds the keys with SCAN MATCH on RedisKeyPrefix + "{" + prefix
// (glob characters escaped, each key's prefix checked again in Go), on
// every master of a Redis Cluster (ForEachMaster) or shard of a Ring, and
// DELs them; increment nonce keys go with their counter and are not
// counted.
func (r *redisKV) erase(ctx context.Context, prefix string, o eraseOptions, n *int64) error {
	var removed atomic.Int64
	defer func() { *n += removed.Load() }()
	ks := r.kvKeysUnder(prefix)
	return r.scanKeys(ctx, ks, o.size(), func(keys []string) error {
		bctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		// One DEL per key in a pipeline: keys of other slots cannot share
		// a DEL on a cluster, and the pipeline still takes one round trip
		// per node.
		cmds := make([]*redis.IntCmd, len(keys))
		_, err := r.rdb.Pipelined(bctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.Del(bctx, k)
			}
			return nil
		})
		if err != nil {
			return kvBackendError("erase", err)
		}
		for i, k := range keys {
			if _, isValue, _ := ks.locationKey(k); isValue && cmds[i].Val() == 1 {
				removed.Add(1)
			}
		}
		o.done("kv")
		return nil
	})
}

// scan finds the keys as erase does, a batch at a time, and reads each
// batch with GET and PTTL pipelined. A key that expires or goes between the
// SCAN and the GET is left out.
func (r *redisKV) scan(ctx context.Context, prefix string, each func(key, value string, ttl int64) error) error {
	ks := r.kvKeysUnder(prefix)
	return r.scanKeys(ctx, ks, eraseBatch, func(keys []string) error {
		values := keys[:0]
		var locKeys []string
		for _, k := range keys {
			if locKey, isValue, _ := ks.locationKey(k); isValue {
				values = append(values, k)
				locKeys = append(locKeys, locKey)
			}
		}
		bctx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		gets := make([]*redis.StringCmd, len(values))
		ttls := make([]*redis.DurationCmd, len(values))
		_, err := r.rdb.Pipelined(bctx, func(p redis.Pipeliner) error {
			for i, k := range values {
				gets[i] = p.Get(bctx, k)
				ttls[i] = p.PTTL(bctx, k)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return kvBackendError("export", err)
		}
		for i := range values {
			v, err := gets[i].Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return kvBackendError("export", err)
			}
			v, _, _ = kvDecode(v) // the TTL is Redis', below
			ttl := int64(-1)
			switch d := ttls[i].Val(); {
			case d == -2:
				continue // gone since the GET
			case d > 0:
				ttl = ttlSeconds(d)
			}
			if err := each(locKeys[i], v, ttl); err != nil {
				return err
			}
		}
		return nil
	})
}
