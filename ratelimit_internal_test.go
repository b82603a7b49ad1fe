package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// rateStores are the rateStore implementations the suite below runs on:
// in process, and Redis over miniredis, plus the real Redis or Redis
// Cluster that CPODTEST_REDIS_URL or CPODTEST_REDIS_ADDRS name (as
// cpodtest reads them; .ci/run sets them), each with keys of their own.
func rateStores(t *testing.T) map[string]func(t *testing.T) (rateStore, string) {
	stores := map[string]func(t *testing.T) (rateStore, string){
		"process": func(t *testing.T) (rateStore, string) { return newMemRates(), "" },
		"miniredis": func(t *testing.T) (rateStore, string) {
			m := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return redisRates{c}, ""
		},
	}
	real := func(c redis.UniversalClient) func(t *testing.T) (rateStore, string) {
		return func(t *testing.T) (rateStore, string) {
			var b [6]byte
			_, _ = rand.Read(b[:])
			prefix := "cpodtest:" + hex.EncodeToString(b[:]) + ":"
			t.Cleanup(func() {
				// Every key of a test expires within a second of its
				// last decision; remove them now all the same.
				ctx := context.Background()
				del := func(ctx context.Context, n *redis.Client) error {
					iter := n.Scan(ctx, 0, prefix+"*", 1000).Iterator()
					for iter.Next(ctx) {
						n.Del(ctx, iter.Val())
					}
					return iter.Err()
				}
				if cc, ok := c.(*redis.ClusterClient); ok {
					_ = cc.ForEachMaster(ctx, del)
				} else {
					_ = del(ctx, c.(*redis.Client))
				}
			})
			return redisRates{c}, prefix
		}
	}
	if addrs := os.Getenv("CPODTEST_REDIS_ADDRS"); addrs != "" {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
		t.Cleanup(func() { _ = c.Close() })
		stores["cluster"] = real(c)
	}
	if u := os.Getenv("CPODTEST_REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		stores["redis"] = real(c)
	}
	return stores
}

// TestRateStores is the one suite of both rate-limit paths (Redis and in
// process): the GCRA decision on two allowances at once, on a clock the
// test sets (microseconds near today's, where a Lua double must stay exact).
func TestRateStores(t *testing.T) {
	for name, open := range rateStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store, prefix := open(t)
			ctx := context.Background()
			l := &rateLimiter{prefix: prefix, limits: [2]gcraLimit{newGCRALimit(10, 3), newGCRALimit(5, 2)}}
			// tenant: T = 100 ms, burst 3; app: T = 200 ms, burst 2.
			now := time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC).UnixMicro()
			take := func(what string, keys [2]string, at int64, wantOK bool, wantTats [2]int64) {
				t.Helper()
				ok, tats, err := store.take(ctx, &keys, at, &l.limits)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if ok != wantOK || tats != wantTats {
					t.Fatalf("%s: ok %v tats %v (now+%v), want ok %v tats %v (now+%v)", what, ok, tats,
						[2]int64{tats[0] - at, tats[1] - at}, wantOK, wantTats, [2]int64{wantTats[0] - at, wantTats[1] - at})
				}
			}
			a := l.keys(rateClassAPI, "t1", "app-a")
			b := l.keys(rateClassAPI, "t1", "app-b")
			other := l.keys(rateClassAPI, "t2", "app-a")
			const ms = 1000

			// The app allows two at once: its burst. The tenant's TAT
			// moves by 100 ms, the app's by 200 ms each time.
			take("1st", a, now, true, [2]int64{now, now})
			take("2nd", a, now, true, [2]int64{now + 100*ms, now + 200*ms})
			// The third is over the app's burst: refused, nothing spent.
			take("3rd, app spent", a, now, false, [2]int64{now + 200*ms, now + 400*ms})
			take("3rd again", a, now, false, [2]int64{now + 200*ms, now + 400*ms})
			// Another app of the tenant takes the tenant's third, the
			// last; then the tenant is spent for it as well.
			take("app b", b, now, true, [2]int64{now + 200*ms, now})
			take("app b, tenant spent", b, now, false, [2]int64{now + 300*ms, now + 200*ms})
			// Another tenant, with the same app id, is untouched.
			take("other tenant", other, now, true, [2]int64{now, now})
			// Refill: 100 ms later the tenant has one again, app b too.
			take("refill", b, now+100*ms, true, [2]int64{now + 300*ms, now + 200*ms})
			// App a (TAT +400 ms, T 200 ms, tolerance 400 ms) and the
			// tenant (TAT +400 ms, T 100 ms, tolerance 300 ms) both allow
			// again at +200 ms, not a microsecond before.
			take("app a at +199ms", a, now+199*ms, false, [2]int64{now + 400*ms, now + 400*ms})
			take("app a at +200ms", a, now+200*ms, true, [2]int64{now + 400*ms, now + 400*ms})
			// Idle long enough, the TATs are in the past: whole again.
			later := now + 10_000*ms
			take("whole again", a, later, true, [2]int64{later, later})
		})
	}
}

// TestRateStoreKeys: the two keys of a decision share a non-empty
// hash tag whatever the tenant id holds, and keys are injective: no
// tenant, app or class names another's allowance.
func TestRateStoreKeys(t *testing.T) {
	l := &rateLimiter{prefix: "cpod:"}
	tag := func(k string) string {
		i := strings.IndexByte(k, '{')
		j := strings.IndexByte(k[i+1:], '}')
		if i < 0 || j <= 0 {
			t.Fatalf("key %q has no hash tag", k)
		}
		return k[i+1 : i+1+j]
	}
	seen := map[string]string{}
	ids := []string{"t1", "}", "{", "x}:y", "x", "y}", "}{", "a:b", "{t1}", "t1}"}
	for _, class := range []string{rateClassAPI, rateClassSigned} {
		for _, tenant := range ids {
			for _, app := range ids {
				k := l.keys(class, tenant, app)
				if !strings.HasPrefix(k[0], "cpod:rate:{") || !strings.HasPrefix(k[1], "cpod:rate:{") {
					t.Fatalf("keys %q are not under the prefix", k)
				}
				if tag(k[0]) != tag(k[1]) || len(tag(k[0])) != 16 {
					t.Fatalf("keys %q: tags %q and %q", k, tag(k[0]), tag(k[1]))
				}
				for i, what := range []string{class + " tenant " + tenant, class + " app " + tenant + "|" + app} {
					if prev, ok := seen[k[i]]; ok && prev != what {
						t.Fatalf("%s and %s share the key %q", prev, what, k[i])
					}
					seen[k[i]] = what
				}
			}
		}
	}
}

// TestRateLimitState: the headers of a decision report the tighter
// allowance, and a refusal the wait until both allow.
func TestRateLimitState(t *testing.T) {
	l := &rateLimiter{limits: [2]gcraLimit{newGCRALimit(10, 5), newGCRALimit(2, 2)}}
	const s = 1_000_000
	now := int64(1000 * s)
	// Both idle, one spent: the tenant has 4 left, the app 1: the app's.
	equal(t, "fresh", l.state(true, now, [2]int64{now, now}), rateState{limit: 2, remaining: 1, reset: s / 2, app: true})
	// Refused by the app (its TAT 1 s ahead, tolerance 1 s): 0 left,
	// whole in 1 s, next request in 0.5 s.
	equal(t, "refused", l.state(false, now, [2]int64{now + s/10, now + s}), rateState{limit: 2, remaining: 0, reset: s, retry: s / 2, app: true})
	// Refused by the tenant only.
	equal(t, "tenant", l.state(false, now, [2]int64{now + s/2, now}), rateState{limit: 5, remaining: 0, reset: s / 2, retry: s / 10})
	// Equal remaining: the one whole later (the app: 0.5 s after spending).
	l = &rateLimiter{limits: [2]gcraLimit{newGCRALimit(4, 2), newGCRALimit(2, 2)}}
	equal(t, "tie", l.state(true, now, [2]int64{now, now}), rateState{limit: 2, remaining: 1, reset: s / 2, app: true})
	for us, want := range map[int64]int64{0: 0, 1: 1, s: 1, s + 1: 2, -5: 0} {
		equal(t, "ceilSeconds", ceilSeconds(us), want)
	}
}

// TestRateLimitConfig: defaults and refusals of Config.RateLimit.
func TestRateLimitConfig(t *testing.T) {
	for _, c := range []struct {
		in, want RateLimit
		problem  string
	}{
		{in: RateLimit{}, want: RateLimit{}},
		{in: RateLimit{PerSecond: 100}, want: RateLimit{100, 100, 100, 100}},
		{in: RateLimit{PerSecond: 100, Burst: 200}, want: RateLimit{100, 200, 100, 200}},
		{in: RateLimit{PerSecond: 0.5}, want: RateLimit{0.5, 1, 0.5, 1}},
		{in: RateLimit{PerSecond: 100, AppPerSecond: 2.5}, want: RateLimit{100, 100, 2.5, 3}},
		{in: RateLimit{PerSecond: 100, AppBurst: 7}, want: RateLimit{100, 100, 100, 7}},
		{in: RateLimit{Burst: 5}, problem: "PerSecond is required"},
		{in: RateLimit{PerSecond: -1}, problem: "PerSecond must be from"},
		{in: RateLimit{PerSecond: 2e6}, problem: "PerSecond must be from"},
		{in: RateLimit{PerSecond: 0.0001}, problem: "PerSecond must be from"},
		{in: RateLimit{PerSecond: 1, Burst: -1}, problem: "Burst must be from"},
		{in: RateLimit{PerSecond: 1, AppBurst: 2_000_000}, problem: "AppBurst must be from"},
		{in: RateLimit{PerSecond: 1, AppPerSecond: -3}, problem: "AppPerSecond must be from"},
	} {
		r := c.in
		problems := r.setDefaults()
		if c.problem == "" {
			if len(problems) > 0 || r != c.want {
				t.Errorf("%+v: %+v %q, want %+v", c.in, r, problems, c.want)
			}
			continue
		}
		if len(problems) != 1 || !strings.Contains(problems[0], c.problem) {
			t.Errorf("%+v: problems %q, want one with %q", c.in, problems, c.problem)
		}
	}
}
