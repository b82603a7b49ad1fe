package storage

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rate limits (Config.RateLimit). Every request of the storage API spends
// one request of two allowances at once: its tenant's, and its app's within
// that tenant (the pair tenant, app: app "a" of tenant "t1" and app "a" of
// tenant "t2" are two allowances). It is served only when both have one
// left, and then both are spent; a refused request spends neither. Over
// either, it is 429 rate_limited with Retry-After.
//
// The algorithm is GCRA (the generic cell rate algorithm, a token bucket
// that keeps one number per allowance: the theoretical arrival time, TAT),
// in whole microseconds of the engine's clock (Config.Now). An allowance of
// r requests per second and burst b has an emission interval T = 1s/r and
// a tolerance b·T: a request at now is allowed when max(TAT, now) + T - b·T
// <= now, and then TAT becomes max(TAT, now) + T. So an idle allowance takes
// b requests at once, then one every T.
//
// Where the state lives (rateStore):
//   - With Config.Redis, in Redis, shared by every replica: one Lua script
//     (rateLua) reads, decides and writes both allowances atomically, in ONE
//     round trip per request (EVAL, never EVALSHA then EVAL: a Redis that
//     does not know the script yet costs no second trip). Both keys carry
//     the same hash tag, so the script is Cluster-safe. The script takes
//     the time from the engine's clock, not Redis' TIME: replicas must keep
//     their clocks in step (NTP); a replica ahead by d admits at most d·r
//     requests early, one behind is stricter by as much.
//   - Without Redis (the embedded SQLite store, where one process owns the
//     data directory), in process (memRates), with the same algorithm.
//
// Keys (rateLimiter.keys): RedisKeyPrefix + "rate:{" + 16 hex digits of the
// tenant's FNV-1a hash + "}/" + class + "/" + tenant for the tenant, and the
// same + "/" + app for the app. Ids never hold '/', so the mapping is
// injective (no tenant can name another's key, whatever '{', '}' or ':' its
// id holds), and the tag is never empty. No kv key starts with "rate:"
// after the prefix (they start with '{' or '}'), and the admin erase's
// patterns never match these keys. A key expires once its allowance is
// whole again (at most burst·T plus a second).
//
// What is limited:
//   - Every /v1/storage/... request with a bearer token, after the token is
//     verified (its tenant and app are then known) and before anything
//     else touches a backend (the app lookup included), in class "api".
//     A request refused before that (no token, a bad one: 401; a bad ?tier=:
//     400) spends nothing, so traffic from outside a tenant cannot spend its
//     allowance, and it carries no RateLimit-* headers.
//   - Signed URLs (/v1/storage/signed/...), once their signature and expiry
//     are checked, in class "signed": the tenant and app that signed them,
//     but allowances of their own, so that a URL handed out (or leaked)
//     cannot spend the API allowance of the tenant or app that signed it,
//     while its downloads are still bounded per tenant. A forged, changed
//     or expired URL spends nothing.
//   - Not limited: /healthz, /readyz (probes must never be throttled),
//     /v1/openapi.json (static), the admin API (/v1/oauth/apps,
//     /v1/admin/...: the operator's own token), CORS preflights.
//
// Answers: every answer of a limited request, errors included, carries
// RateLimit-Limit (the burst of the tighter allowance), RateLimit-Remaining
// (requests it would still take at once) and RateLimit-Reset (seconds until
// it is whole again, rounded up) for the tighter of the two allowances (the
// one with fewer requests left; of equals, the one whole later). A 429 adds
// Retry-After: the seconds, rounded up, until both allow a request.
//
// A failing store (Redis down or slow past Config.BackendTimeout) does not
// fail the request: it is served without a limit (and without RateLimit-*
// headers), the failure is logged and counted in
// cpod_storage_backend_errors_total{backend="redis"}, and this process
// skips the check for the next second, so an outage of Redis costs files and
// documents no latency and kv answers 503 as it would anyway.

// RateLimit limits requests per second, per tenant and per app within a
// tenant (see Config.RateLimit). The zero value turns rate limits off.
type RateLimit struct {
	// PerSecond is each tenant's sustained rate, in requests per second
	// (0.001 to 1000000; fractions allowed: 0.5 is one request every two
	// seconds). Zero, the default, turns rate limits off.
	PerSecond float64
	// Burst is how many requests a tenant that was idle may make at once
	// (at most 1000000). Default PerSecond rounded up, at least 1.
	Burst int
	// AppPerSecond is each app's sustained rate within its tenant.
	// Default PerSecond: one app may then take its whole tenant's
	// allowance; set it lower so that no app starves the tenant's others.
	AppPerSecond float64
	// AppBurst is the burst of each app within its tenant. Default Burst
	// when AppPerSecond is not set, else AppPerSecond rounded up, at least 1.
	AppBurst int
}

// The bounds of RateLimit's fields: with them a TAT plus a tolerance stays
// below 2^53 microseconds, exact in a Lua number (a double) for centuries.
const (
	minRatePerSecond = 0.001
	maxRatePerSecond = 1e6
	maxRateBurst     = 1_000_000
)

// setDefaults fills the defaults of an enabled RateLimit and returns the
// problems of its fields, each naming it (under Config.RateLimit).
func (r *RateLimit) setDefaults() []string {
	var problems []string
	checkRate := func(name string, v float64) {
		if math.IsNaN(v) || v < minRatePerSecond || v > maxRatePerSecond {
			problems = append(problems, fmt.Sprintf("Config.RateLimit.%s must be from %s to %s requests per second", name,
				strconv.FormatFloat(minRatePerSecond, 'f', -1, 64), strconv.FormatFloat(maxRatePerSecond, 'f', -1, 64)))
		}
	}
	checkBurst := func(name string, v int) {
		if v < 0 || v > maxRateBurst {
			problems = append(problems, fmt.Sprintf("Config.RateLimit.%s must be from 1 to %d (0: the default)", name, maxRateBurst))
		}
	}
	if r.PerSecond == 0 {
		if *r != (RateLimit{}) {
			problems = append(problems, "Config.RateLimit.PerSecond is required when another field of Config.RateLimit is set")
		}
		return problems
	}
	checkRate("PerSecond", r.PerSecond)
	checkBurst("Burst", r.Burst)
	checkBurst("AppBurst", r.AppBurst)
	if r.AppPerSecond != 0 {
		checkRate("AppPerSecond", r.AppPerSecond)
	}
	if len(problems) > 0 {
		return problems
	}
	burstOf := func(rate float64) int { return max(1, int(math.Ceil(rate))) }
	if r.Burst == 0 {
		r.Burst = burstOf(r.PerSecond)
	}
	switch {
	case r.AppPerSecond == 0 && r.AppBurst == 0:
		r.AppPerSecond, r.AppBurst = r.PerSecond, r.Burst
	case r.AppPerSecond == 0:
		r.AppPerSecond = r.PerSecond
	case r.AppBurst == 0:
		r.AppBurst = burstOf(r.AppPerSecond)
	}
	return nil
}

// gcraLimit is one allowance's parameters, in microseconds: the emission
// interval T and the tolerance burst·T.
type gcraLimit struct {
	interval, tolerance int64
	burst               int
}

func newGCRALimit(perSecond float64, burst int) gcraLimit {
	interval := max(1, int64(math.Round(1e6/perSecond)))
	return gcraLimit{interval: interval, tolerance: interval * int64(burst), burst: burst}
}

// The classes of allowances (see "What is limited" above).
const (
	rateClassAPI    = "api"
	rateClassSigned = "signed"
)

// rateStore keeps the TATs of the allowances: Redis (redisRates) or the
// process (memRates). Both implement the same decision, proven by the same
// tests.
type rateStore interface {
	// take decides one request at now (microseconds) against the two
	// allowances keys[i] with limits[i], atomically: when both allow it,
	// it spends both (each TAT becomes max(TAT, now) + interval) and ok is
	// true; else it changes nothing. tats are the TATs before, each at
	// least now. An error means nothing is known (and nothing spent).
	take(ctx context.Context, keys *[2]string, now int64, limits *[2]gcraLimit) (ok bool, tats [2]int64, err error)
}

// rateLimiter applies Config.RateLimit.
type rateLimiter struct {
	store  rateStore
	prefix string        // RedisKeyPrefix, before every key
	limits [2]gcraLimit  // the tenant's, the app's
	skip   atomic.Int64  // engine-clock microseconds until which checks are skipped (a store failure)
	fails  atomic.Uint64 // store failures, for the log
}

// newRateLimiter returns the limiter of an enabled (defaulted) RateLimit,
// on Redis when the engine has it, else in process.
func newRateLimiter(r RateLimit, rdb redis.UniversalClient, prefix string) *rateLimiter {
	l := &rateLimiter{prefix: prefix, limits: [2]gcraLimit{newGCRALimit(r.PerSecond, r.Burst), newGCRALimit(r.AppPerSecond, r.AppBurst)}}
	if rdb != nil {
		l.store = redisRates{rdb}
	} else {
		l.store = newMemRates()
	}
	return l
}

// keys are the store keys of a tenant's and an app's allowances of a class
// (see "Keys" above).
func (l *rateLimiter) keys(class, tenant, app string) [2]string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(tenant))
	var tag [16]byte
	const hexDigits = "0123456789abcdef"
	sum := h.Sum64()
	for i := 15; i >= 0; i-- {
		tag[i] = hexDigits[sum&0xf]
		sum >>= 4
	}
	base := l.prefix + "rate:{" + string(tag[:]) + "}/" + class + "/" + tenant
	return [2]string{base, base + "/" + app}
}

// rateStoreSkip is how long a process skips the check after the store
// failed.
const rateStoreSkip = time.Second

// rateLimit spends one request of the tenant's and the app's allowances of
// the class, sets the RateLimit-* headers of the answer and returns 429
// rate_limited when either allowance is spent. Without Config.RateLimit it
// does nothing.
func (e *Engine) rateLimit(c *call, class, tenant, app string) error {
	l := e.limiter
	if l == nil {
		return nil
	}
	now := e.now().UnixMicro()
	if now < l.skip.Load() {
		return nil
	}
	keys := l.keys(class, tenant, app)
	ctx := c.ctx
	if _, inProcess := l.store.(*memRates); !inProcess {
		// A round trip, bounded like every other Redis call. The
		// in-process check needs no deadline (its timer would be a
		// third of its cost).
		var cancel context.CancelFunc
		ctx, cancel = e.backendCtx(c)
		defer cancel()
	}
	ok, tats, err := l.store.take(ctx, &keys, now, &l.limits)
	if err != nil {
		// Fail open (see above): limits protect the backends, they must
		// not turn a Redis outage into an outage of files and documents.
		l.skip.Store(now + rateStoreSkip.Microseconds())
		e.metrics.backendError(backendRedis)
		e.log.Warn("storage: rate limit check failed; requests are served without rate limits for a second", "request_id", c.reqID, "failures", l.fails.Add(1), "err", err)
		return nil
	}
	st := l.state(ok, now, tats)
	h := c.w.Header()
	h["Ratelimit-Limit"] = []string{strconv.Itoa(st.limit)}
	h["Ratelimit-Remaining"] = []string{strconv.FormatInt(st.remaining, 10)}
	h["Ratelimit-Reset"] = []string{strconv.FormatInt(ceilSeconds(st.reset), 10)}
	if ok {
		return nil
	}
	e.metrics.rateLimitedInc()
	h["Retry-After"] = []string{strconv.FormatInt(max(1, ceilSeconds(st.retry)), 10)}
	who := "tenant"
	if st.app {
		who = "app"
	}
	if class == rateClassSigned {
		who = "signed URLs of this " + who
	}
	return errorf(CodeRateLimited, "too many requests: the rate limit of this %s is spent; retry after the seconds in Retry-After", who)
}

// rateState is what the headers of one decision report: the tighter
// allowance's burst, requests left and microseconds until it is whole, and
// (refused) the microseconds until both allow a request.
type rateState struct {
	limit        int
	remaining    int64
	reset, retry int64
	app          bool // the tighter allowance is the app's
}

// state computes the headers of a decision from the TATs before it.
func (l *rateLimiter) state(ok bool, now int64, tats [2]int64) rateState {
	var out rateState
	for i, lim := range l.limits {
		tat := tats[i]
		if ok {
			tat += lim.interval // spent
		} else if wait := tat + lim.interval - lim.tolerance - now; wait > out.retry {
			out.retry = wait
		}
		// Requests it takes at once: floor((now + tolerance - TAT) / T).
		rem := max(0, now+lim.tolerance-tat) / lim.interval
		reset := max(0, tat-now)
		if i == 0 || rem < out.remaining || rem == out.remaining && reset > out.reset {
			out.limit, out.remaining, out.reset, out.app = lim.burst, rem, reset, i == 1
		}
	}
	return out
}

// ceilSeconds is microseconds in whole seconds, rounded up.
func ceilSeconds(us int64) int64 {
	return (max(0, us) + 999_999) / 1_000_000
}

// rateLua is redisRates' script: the GCRA decision of rateStore.take on
// two keys. ARGV: now, then the interval and tolerance of KEYS[1], then of
// KEYS[2], all in microseconds (exact in Lua's doubles below 2^53). It
// answers {ok, tat1, tat2}, the TATs before (at least now). A TAT is stored
// as an integer's text, with a TTL that ends a second after the allowance is
// whole again.
const rateLua = `
local now = tonumber(ARGV[1])
local ok = 1
local tat, nxt = {}, {}
for i = 1, 2 do
  local t = tonumber(redis.call('GET', KEYS[i])) or now
  if t < now then t = now end
  tat[i] = t
  nxt[i] = t + tonumber(ARGV[2 * i])
  if nxt[i] - tonumber(ARGV[2 * i + 1]) > now then ok = 0 end
end
if ok == 1 then
  for i = 1, 2 do
    redis.call('SET', KEYS[i], string.format('%d', nxt[i]), 'PX', math.floor((nxt[i] - now) / 1000) + 1000)
  end
end
return {ok, tat[1], tat[2]}
`

// redisRates keeps the allowances in Redis: one EVAL of rateLua per
// request.
type redisRates struct{ rdb redis.UniversalClient }

func (s redisRates) take(ctx context.Context, keys *[2]string, now int64, limits *[2]gcraLimit) (bool, [2]int64, error) {
	res, err := s.rdb.Eval(ctx, rateLua, keys[:], now, limits[0].interval, limits[0].tolerance, limits[1].interval, limits[1].tolerance).Int64Slice()
	if err != nil {
		return false, [2]int64{}, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(res) != 3 {
		return false, [2]int64{}, fmt.Errorf("redis rate limit: the script answered %d values, want 3", len(res))
	}
	return res[0] == 1, [2]int64{res[1], res[2]}, nil
}

// memRates keeps the allowances in process, for an engine without Redis
// (the embedded store, where one process owns the data directory). An
// allowance that is whole again (TAT <= now) is the same as none, so a
// sweep every memRatesSweep decisions forgets those: memory holds only the
// allowances used within the last burst·T.
type memRates struct {
	mu    sync.Mutex
	tats  map[string]int64
	calls int
}

const memRatesSweep = 4096

func newMemRates() *memRates { return &memRates{tats: map[string]int64{}} }

func (m *memRates) take(_ context.Context, keys *[2]string, now int64, limits *[2]gcraLimit) (bool, [2]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var tats, next [2]int64
	ok := true
	for i := range keys {
		t := max(m.tats[keys[i]], now)
		tats[i], next[i] = t, t+limits[i].interval
		if next[i]-limits[i].tolerance > now {
			ok = false
		}
	}
	if ok {
		m.tats[keys[0]], m.tats[keys[1]] = next[0], next[1]
	}
	if m.calls++; m.calls%memRatesSweep == 0 {
		for k, t := range m.tats {
			if t <= now {
				delete(m.tats, k)
			}
		}
	}
	return ok, tats, nil
}

// tenantOfLocation is the tenant of a location key (its first segment).
func tenantOfLocation(key string) string {
	t, _, _ := strings.Cut(key, "/")
	return t
}
