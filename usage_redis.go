// The Redis usage driver (see usage_store.go): usage in Redis, the
// quotas in MongoDB, for the production store (MongoDB + Redis).

package storage

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Keys, all with the tenant's hash tag (one slot: the scripts are atomic
// and Cluster-safe), RedisKeyPrefix + "usage:{" + 16 hex digits of the
// tenant's FNV-1a hash + "}/" + tenant, then:
//
//	(nothing)  a hash: field "<p>b" and "<p>c" the tenant's bytes and count
//	           of primitive p (0 files, 1 documents, 2 kv), "<p>b <loc>"
//	           and "<p>c <loc>" a location's
//	"/exp"     a sorted set of the kv values with an expiry (kvVersion
//	           ids), by expiry (Unix ms)
//	"/ver"     a hash: kvVersion id -> how many writes created it minus
//	           how many ended it
//
// A kv value with a TTL leaves Redis when it expires, without a write to
// tell: it is counted as a version, id "<exp>:<size>:<loc>\n<key>" (exp on
// the engine's clock, from the value's own prefix, kv_values.go). The write
// that stores it creates it (+1), the write that replaces or deletes it
// ends it (-1, from the old value the write's script returned), and when
// its expiry has passed the next script of the tenant sweeps it: its bytes
// and count leave usage when its counter is above zero. Bytes and count
// move only when a counter goes from 0 to 1 (created) or back (ended), so
// the order in which the writes of one key reach this script (they come
// from different slots) does not matter: a version is counted once from
// its create to its end or expiry. A version ended after it was swept (the
// engine's clock and Redis' differ by some milliseconds) leaves a -1 that
// the sweep drops later.
type redisUsage struct {
	rdb    redis.UniversalClient
	prefix string
	quotas *mongo.Collection
	now    func() time.Time
}

var _ usageStore = (*redisUsage)(nil)

func newRedisUsage(cfg Config) *redisUsage {
	return &redisUsage{rdb: cfg.Redis, prefix: cfg.RedisKeyPrefix, quotas: cfg.Mongo.Collection("cpod_quotas"), now: cfg.Now}
}

func (*redisUsage) explicit(primitive) bool { return true }

// kvVersion is a kv value with an expiry, for usage on Redis.
type kvVersion struct {
	key       string // its location key
	exp, size int64
}

func (v *kvVersion) id() string {
	loc, _, _ := splitLocation(v.key)
	return strconv.FormatInt(v.exp, 10) + ":" + strconv.FormatInt(v.size, 10) + ":" + loc + "\n" + v.key
}

func (r *redisUsage) keys(tenant string) []string {
	h := fnv.New64a()
	h.Write([]byte(tenant))
	u := fmt.Sprintf("%susage:{%016x}/%s", r.prefix, h.Sum64(), tenant)
	return []string{u, u + "/exp", u + "/ver"}
}

// usageLua defines bump(loc, p, bytes, count) and sweep() for the scripts
// below: KEYS are the tenant's three keys, ARGV[1] the engine's now (ms).
// A field that comes back to zero is deleted, so a location whose data all
// went leaves nothing behind (nor does a tenant: an empty hash is no key).
const usageLua = `
local U, X, N = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
local function incr(f, n)
  if n ~= 0 and redis.call('HINCRBY', U, f, n) == 0 then redis.call('HDEL', U, f) end
end
local function bump(loc, p, b, c)
  incr(p .. 'b', b)
  incr(p .. 'c', c)
  if loc ~= '' then
    incr(p .. 'b ' .. loc, b)
    incr(p .. 'c ' .. loc, c)
  end
end
local function parse(id)
  local e, s, loc = string.match(id, '^(%d+):(%d+):([^\n]*)\n')
  return tonumber(e), tonumber(s), loc
end
local function sweep()
  local ids = redis.call('ZRANGEBYSCORE', X, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do
    local n = tonumber(redis.call('HGET', N, id) or '0')
    if n > 0 then
      local e, s, loc = parse(id)
      bump(loc, '2', -s * n, -n)
    end
    redis.call('HDEL', N, id)
    redis.call('ZREM', X, id)
  end
end
`

// usageAddScript applies changes, ARGV[2...] in fives: loc, p, bytes,
// count, op ("" plain, "+" create or "-" end the version whose id is loc).
var usageAddScript = redis.NewScript(usageLua + `
for i = 2, #ARGV, 5 do
  local op = ARGV[i + 4]
  if op == '' then
    bump(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
  else
    local id = ARGV[i]
    local e, s, loc = parse(id)
    local d = 1
    if op == '-' then d = -1 end
    local n = redis.call('HINCRBY', N, id, d)
    if (d == 1 and n >= 1) or (d == -1 and n >= 0) then bump(loc, '2', d * s, d) end
    if n == 0 then
      redis.call('HDEL', N, id)
      redis.call('ZREM', X, id)
    else
      redis.call('ZADD', X, e, id)
    end
  end
end
sweep()
return 1
`)

// usageReadScript sweeps, then answers the six fields of ARGV[2] (a
// location, or "" for the tenant's totals).
var usageReadScript = redis.NewScript(usageLua + `
sweep()
local sfx = ''
if ARGV[2] ~= '' then sfx = ' ' .. ARGV[2] end
return redis.call('HMGET', U, '0b' .. sfx, '0c' .. sfx, '1b' .. sfx, '1c' .. sfx, '2b' .. sfx, '2c' .. sfx)
`)

// usageClearScript zeroes the location ARGV[2] and drops its versions.
var usageClearScript = redis.NewScript(usageLua + `
local loc = ARGV[2]
for p = 0, 2 do
  for _, f in ipairs({'b', 'c'}) do
    local field = p .. f .. ' ' .. loc
    local v = tonumber(redis.call('HGET', U, field) or '0')
    if v ~= 0 then redis.call('HINCRBY', U, p .. f, -v) end
    redis.call('HDEL', U, field)
  end
end
for _, id in ipairs(redis.call('ZRANGE', X, 0, -1)) do
  local e, s, l = parse(id)
  if l == loc then
    redis.call('HDEL', N, id)
    redis.call('ZREM', X, id)
  end
end
return 1
`)

func usageError(op string, err error) error {
	if err == nil {
		return nil
	}
	return kvBackendError(op, err)
}

func (r *redisUsage) add(ctx context.Context, tenant string, chs []usageChange) error {
	args := make([]any, 1, 1+5*len(chs))
	args[0] = r.now().UnixMilli()
	for _, ch := range chs {
		if ch.bytes != 0 || ch.count != 0 {
			args = append(args, ch.loc, int(ch.prim), ch.bytes, ch.count, "")
		}
		if ch.end != nil {
			args = append(args, ch.end.id(), int(primKV), 0, 0, "-")
		}
		if ch.create != nil {
			args = append(args, ch.create.id(), int(primKV), 0, 0, "+")
		}
	}
	return usageError("usage add", usageAddScript.Run(ctx, r.rdb, r.keys(tenant), args...).Err())
}

func (r *redisUsage) read(ctx context.Context, loc string) (usageSet, error) {
	var u usageSet
	tenant := tenantOfKey(loc)
	field := loc
	if loc == tenantPrefix(tenant) {
		field = ""
	}
	vals, err := usageReadScript.Run(ctx, r.rdb, r.keys(tenant), r.now().UnixMilli(), field).Slice()
	if err != nil {
		return u, usageError("usage read", err)
	}
	for i, v := range vals {
		s, _ := v.(string)
		n, _ := strconv.ParseInt(s, 10, 64)
		if i/2 < int(nPrims) {
			if i%2 == 0 {
				u[i/2].Bytes = n
			} else {
				u[i/2].Count = n
			}
		}
	}
	return u, nil
}

func (r *redisUsage) total(ctx context.Context, tenant string, p primitive) (usageFigures, error) {
	var f usageFigures
	vals, err := r.rdb.HMGet(ctx, r.keys(tenant)[0], strconv.Itoa(int(p))+"b", strconv.Itoa(int(p))+"c").Result()
	if err != nil {
		return f, usageError("usage read", err)
	}
	for i, v := range vals {
		s, _ := v.(string)
		n, _ := strconv.ParseInt(s, 10, 64)
		if i == 0 {
			f.Bytes = n
		} else {
			f.Count = n
		}
	}
	return f, nil
}

func (r *redisUsage) replace(ctx context.Context, tenant string, total usageSet, locs map[string]*usageSet) error {
	ks := r.keys(tenant)
	fields := []any{}
	put := func(sfx string, u *usageSet) {
		for p := range u {
			if u[p].Bytes != 0 {
				fields = append(fields, strconv.Itoa(p)+"b"+sfx, u[p].Bytes)
			}
			if u[p].Count != 0 {
				fields = append(fields, strconv.Itoa(p)+"c"+sfx, u[p].Count)
			}
		}
	}
	put("", &total)
	for loc, u := range locs {
		put(" "+loc, u)
	}
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, ks[0])
		if len(fields) > 0 {
			p.HSet(ctx, ks[0], fields...)
		}
		return nil
	})
	return usageError("usage recount", err)
}

func (r *redisUsage) clear(ctx context.Context, prefix string) error {
	tenant := tenantOfKey(prefix)
	ks := r.keys(tenant)
	if prefix == tenantPrefix(tenant) {
		return usageError("usage clear", r.rdb.Del(ctx, ks...).Err())
	}
	return usageError("usage clear", usageClearScript.Run(ctx, r.rdb, ks, r.now().UnixMilli(), prefix).Err())
}

// The quotas: one MongoDB document per tenant with its own limits,
// {_id: tenant, q: [bytes, count of files, of documents, of kv], v: a
// version}.

func (r *redisUsage) quota(ctx context.Context, tenant string) (ownQuota, error) {
	own, _, err := r.readQuota(ctx, tenant)
	return own, err
}

func (r *redisUsage) readQuota(ctx context.Context, tenant string) (ownQuota, int64, error) {
	own := noOwnQuota()
	var doc struct {
		Q []int64 `bson:"q"`
		V int64   `bson:"v"`
	}
	err := r.quotas.FindOne(ctx, bson.D{{Key: "_id", Value: tenant}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return own, -1, nil
	}
	if err != nil {
		return own, 0, docsBackendError("quota read", err)
	}
	for i := 0; i < 2*int(nPrims) && i < len(doc.Q); i++ {
		own[i/2][i%2] = doc.Q[i]
	}
	return own, doc.V, nil
}

func (r *redisUsage) updateQuota(ctx context.Context, tenant string, f func(ownQuota) ownQuota) (ownQuota, error) {
	for try := 0; ; try++ {
		cur, v, err := r.readQuota(ctx, tenant)
		if err != nil {
			return cur, err
		}
		own := f(cur)
		q := make([]int64, 0, 2*nPrims) // flat: FerretDB stores no nested arrays
		for p := range own {
			q = append(q, own[p][0], own[p][1])
		}
		if v < 0 {
			_, err = r.quotas.InsertOne(ctx, bson.D{{Key: "_id", Value: tenant}, {Key: "q", Value: q}, {Key: "v", Value: int64(1)}})
			if err == nil {
				return own, nil
			}
			if !mongo.IsDuplicateKeyError(err) {
				return own, docsBackendError("quota update", err)
			}
		} else {
			res, err := r.quotas.UpdateOne(ctx, bson.D{{Key: "_id", Value: tenant}, {Key: "v", Value: v}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "q", Value: q}, {Key: "v", Value: v + 1}}}}, options.UpdateOne())
			if err != nil {
				return own, docsBackendError("quota update", err)
			}
			if res.MatchedCount == 1 {
				return own, nil
			}
		}
		if try >= 20 || ctx.Err() != nil {
			return own, &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: errors.New("quota update: too many concurrent updates")}
		}
	}
}
