// kv writes on Redis that report what they replaced, for usage (see
// usage.go and usage_redis.go): each is one command, so the old value's
// size and expiry are read in the same atomic step as the write. A plain
// set and a plain delete are Redis' own SET ... GET and GETDEL (which
// return the old value: fast on every Redis, miniredis included, where a
// script is slow); the conditional ones and INCR scripts that return only
// the two numbers.

package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// kvStored is a value as usage counts it: whether there is one, its
// text's bytes and its expiry (Unix ms on the engine's clock, 0 for none).
type kvStored struct {
	ok        bool
	size, exp int64
}

// kvWrite is what a write replaced (old) and stored (new).
type kvWrite struct{ old, new kvStored }

// kvUsageWriter is a kv driver whose writes report kvWrite (Redis). The
// SQLite driver counts kv itself and has none.
type kvUsageWriter interface {
	setU(ctx context.Context, key, value string, ttl time.Duration, cond kvCond) (kvWrite, error)
	incrU(ctx context.Context, key string, by int64) (int64, kvWrite, error)
	removeU(ctx context.Context, key string, cond kvCond) (kvWrite, error)
	expireU(ctx context.Context, key string, ttl time.Duration) (bool, kvWrite, error)
}

var _ kvUsageWriter = (*redisKV)(nil)

// kvMetaLua defines meta(v): the size of the text of a stored value and
// its expiry from its prefix (0 for a legacy value or none), -1 and 0 for
// a missing one.
const kvMetaLua = `
local function meta(v)
  if not v then return -1, 0 end
  local t, i = text(v)
  if i then return #t, tonumber(string.sub(v, 2, i - 1)) end
  return #v, 0
end
`

// kvSetUScript sets KEYS[1] to ARGV[1] with a TTL of ARGV[2] ms ("0" for
// none) when its text is ARGV[4] (ARGV[3] is "if"); it answers {written,
// old size, old expiry}.
var kvSetUScript = redis.NewScript(kvTextLua + kvMetaLua + `
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == 'if' and text(cur) ~= ARGV[4] then return {0, -1, 0} end
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local s, e = meta(cur)
return {1, s, e}
`)

// kvDelUScript deletes KEYS[1] when ARGV[1] allows it ("" always, "if"
// when its text is ARGV[2]); it answers {deleted or allowed, old size,
// old expiry}.
var kvDelUScript = redis.NewScript(kvTextLua + kvMetaLua + `
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == 'if' and text(cur) ~= ARGV[2] then return {0, -1, 0} end
if cur then redis.call('DEL', KEYS[1]) end
local s, e = meta(cur)
return {1, s, e}
`)

// kvExpireUScript gives KEYS[1] a new TTL, keeping its text: it stores
// ARGV[1] (kvPrefix of the new TTL) followed by the text, with a TTL of
// ARGV[2] ms, or none for "0"; a value of the legacy form is stored in the
// current one. It answers {found, size, old expiry}.
var kvExpireUScript = redis.NewScript(kvTextLua + kvMetaLua + `
local cur = redis.call('GET', KEYS[1])
local v = text(cur)
if not v then return {0, -1, 0} end
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1] .. v)
else
  redis.call('SET', KEYS[1], ARGV[1] .. v, 'PX', ARGV[2])
end
local s, e = meta(cur)
return {1, s, e}
`)

func kvReply(op string, res []any, err error) (bool, kvStored, error) {
	if err != nil {
		return false, kvStored{}, kvBackendError(op, err)
	}
	n := func(i int) int64 {
		if i < len(res) {
			v, _ := res[i].(int64)
			return v
		}
		return 0
	}
	old := kvStored{ok: n(1) >= 0, size: n(1), exp: n(2)}
	if !old.ok {
		old = kvStored{}
	}
	return n(0) == 1, old, nil
}

// storedMeta is what usage counts of a stored value (kvMetaLua's meta).
func storedMeta(stored string) kvStored {
	text, exp, _ := kvDecode(stored)
	return kvStored{ok: true, size: int64(len(text)), exp: exp}
}

// setU: a plain set is SET ... GET and an ifAbsent one SET NX, Redis' own
// commands (Redis 6.2 or later); an ifValue one kvSetUScript.
func (r *redisKV) setU(ctx context.Context, key, value string, ttl time.Duration, cond kvCond) (kvWrite, error) {
	now := r.now()
	stored := kvEncode(value, ttl, now)
	w := kvWrite{new: kvStored{ok: true, size: int64(len(value)), exp: expiry(ttl, now.UnixMilli())}}
	switch {
	case cond.ifAbsent:
		ok, err := r.rdb.SetNX(ctx, r.redisKey(key), stored, ttl).Result()
		if err != nil {
			return kvWrite{}, kvBackendError("set", err)
		}
		if !ok {
			return kvWrite{}, kvConditionFailed("the key already exists; nothing was written")
		}
		return w, nil
	case !cond.hasValue:
		old, err := r.rdb.SetArgs(ctx, r.redisKey(key), stored, redis.SetArgs{TTL: ttl, Get: true}).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return kvWrite{}, kvBackendError("set", err)
		default:
			w.old = storedMeta(old)
		}
		return w, nil
	}
	mode, ifValue := "if", cond.ifValue
	res, err := kvSetUScript.Run(ctx, r.rdb, []string{r.redisKey(key)}, stored, ttl.Milliseconds(), mode, ifValue).Slice()
	ok, old, err := kvReply("set", res, err)
	if err != nil {
		return kvWrite{}, err
	}
	if !ok {
		return kvWrite{}, kvConditionFailed(ifValueFailed)
	}
	w.old = old
	return w, nil
}

// removeU: a plain delete is GETDEL (Redis 6.2 or later), an ifValue one
// kvDelUScript.
func (r *redisKV) removeU(ctx context.Context, key string, cond kvCond) (kvWrite, error) {
	if !cond.hasValue {
		old, err := r.rdb.GetDel(ctx, r.redisKey(key)).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return kvWrite{}, nil
		case err != nil:
			return kvWrite{}, kvBackendError("del", err)
		}
		return kvWrite{old: storedMeta(old)}, nil
	}
	mode := "if"
	res, err := kvDelUScript.Run(ctx, r.rdb, []string{r.redisKey(key)}, mode, cond.ifValue).Slice()
	ok, old, err := kvReply("del", res, err)
	if err != nil {
		return kvWrite{}, err
	}
	if !ok {
		return kvWrite{}, kvConditionFailed(ifValueFailed)
	}
	return kvWrite{old: old}, nil
}

func (r *redisKV) expireU(ctx context.Context, key string, ttl time.Duration) (bool, kvWrite, error) {
	now := r.now()
	res, err := kvExpireUScript.Run(ctx, r.rdb, []string{r.redisKey(key)}, kvPrefix(ttl, now), ttl.Milliseconds()).Slice()
	ok, old, err := kvReply("expire", res, err)
	if err != nil || !ok {
		return false, kvWrite{}, err
	}
	return true, kvWrite{old: old, new: kvStored{ok: true, size: old.size, exp: expiry(ttl, now.UnixMilli())}}, nil
}

// incrU is incr with the value's size before and after: incrScript with
// a new nonce, 64 random bits, unique among the at most
// 2*incrNoncesPerGeneration nonces a counter remembers. Its expiry stays
// (KEEPTTL).
func (r *redisKV) incrU(ctx context.Context, key string, by int64) (int64, kvWrite, error) {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return r.incrNonce(ctx, r.redisKey(key), by, hex.EncodeToString(nonce[:]))
}
