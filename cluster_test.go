package storage_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// Redis Cluster: every command the engine sends for one kv call must name
// keys of one hash slot, or the cluster answers CROSSSLOT. These tests check
// that by computing slots client side, so they run on miniredis, a single
// Redis and a cluster alike; on a cluster (CPODTEST_REDIS_ADDRS) they also
// check the computation against CLUSTER KEYSLOT and that a cross-slot script
// does fail there.

// crc16 is CRC-16/XMODEM, the checksum of Redis Cluster's key slots.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is Redis Cluster's slot of a key: the CRC of its hash tag (the
// text between the first '{' and the first '}' after it, when not empty),
// else of the whole key, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16([]byte(key)) % 16384)
}

func TestClusterKeySlotFunction(t *testing.T) {
	// Known values: the CRC's check value and slots given by Redis itself
	// (CLUSTER KEYSLOT); tagged keys hash their tag only.
	equal(t, "crc16(123456789)", crc16([]byte("123456789")), 0x31C3)
	for key, want := range map[string]int{
		"foo": 12182, "bar": 5061, "{user1000}.following": keySlot("user1000"),
		"foo{}{bar}": keySlot("foo{}{bar}"), "foo{{bar}}zap": keySlot("{bar"),
	} {
		equal(t, "slot of "+key, keySlot(key), want)
	}
	if keySlot("foo{}{bar}") == keySlot("bar") {
		t.Fatal("an empty tag must hash the whole key")
	}
}

// keyRecorder is a go-redis hook that records the keys of every command.
type keyRecorder struct {
	mu   sync.Mutex
	cmds [][]string // keys of each command, in order
	t    testing.TB
}

func (r *keyRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *keyRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.record(cmd)
		return next(ctx, cmd)
	}
}
func (r *keyRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			r.record(c)
		}
		return next(ctx, cmds)
	}
}

// record notes the keys a command names. It knows the commands the engine
// sends; another one fails the test, so a new command cannot slip past.
func (r *keyRecorder) record(cmd redis.Cmder) {
	args := cmd.Args()
	if storage.IsRealtimePublish(cmd) {
		// The change feed's publish after a write is a command of its
		// own: its stream and marker must share a slot.
		oneSlot(r.t, "realtime publish", [][]string{{fmt.Sprint(args[3]), fmt.Sprint(args[4])}})
		return
	}
	name := strings.ToLower(cmd.Name())
	var keys []string
	switch name {
	case "multi", "exec", "ping", "cluster", "hello", "client", "script", "scan":
	case "eval", "evalsha", "eval_ro", "evalsha_ro":
		n, _ := strconv.Atoi(fmt.Sprint(args[2]))
		for _, k := range args[3 : 3+n] {
			keys = append(keys, fmt.Sprint(k))
		}
	case "get", "set", "setnx", "pttl", "ttl", "del", "getdel", "expire", "pexpire", "persist", "exists", "incrby", "hmget":
		keys = []string{fmt.Sprint(args[1])}
	default:
		r.t.Errorf("keyRecorder: unknown command %q: teach record its keys", name)
	}
	r.mu.Lock()
	r.cmds = append(r.cmds, keys)
	r.mu.Unlock()
}

// take returns and forgets the keys recorded so far.
func (r *keyRecorder) take() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cmds
	r.cmds = nil
	return c
}

// oneSlot fails unless all keys lie in one slot; it returns that slot.
func oneSlot(t testing.TB, what string, cmds [][]string) int {
	t.Helper()
	slot, n := -1, 0
	for _, keys := range cmds {
		for _, k := range keys {
			n++
			if s := keySlot(k); slot == -1 {
				slot = s
			} else if s != slot {
				t.Errorf("%s: key %q is in slot %d, an earlier key in slot %d (keys %q): CROSSSLOT on a cluster", what, k, s, slot, cmds)
				return -1
			}
		}
	}
	if n == 0 {
		t.Errorf("%s: no key recorded", what)
	}
	return slot
}

// TestClusterKVOneSlotPerCall sends every kv operation, for keys and ids full
// of braces (a tenant may start with '}'), and checks that all keys the
// engine names for one call hash to one slot: the counter and its nonce
// hashes above all.
func TestClusterKVOneSlotPerCall(t *testing.T) {
	srv := cpodtest.NewServer(t)
	redisOnly(t, srv, "Redis Cluster hash slots")
	rec := &keyRecorder{t: t}
	srv.Redis.AddHook(rec)
	tenants := []string{"t1", "}", "}t", "{", "{}", "}{", "a}b{c", "{{}}"}
	keys := []string{"k", "}", "{", "{}", "}{", "x}y{z", "{a}", "counter}", "é{}"}
	for _, tenant := range tenants {
		srv.RegisterApp(t, "app-"+tenant, allScopes...)
		tok := srv.Token(cpodtest.Claims{Tenant: tenant, App: "app-" + tenant, User: "u}", Scopes: allScopes})
		for _, tier := range []string{"private", "user", "shared"} {
			for _, key := range keys {
				p := "/v1/storage/kv/" + url.PathEscape(key) + "?tier=" + tier
				what := fmt.Sprintf("tenant %q tier %s key %q", tenant, tier, key)
				slots := map[int]bool{}
				step := func(op string, status int, method string, body any) {
					t.Helper()
					wantStatus(t, do(t, srv, method, p, tok, body), status, "")
					// A write's usage (usage_redis.go) is one more script,
					// on the tenant's own keys: one slot of its own.
					var kv, usage [][]string
					for _, keys := range rec.take() {
						if len(keys) > 0 && strings.Contains(keys[0], ":usage:{") {
							usage = append(usage, keys)
						} else {
							kv = append(kv, keys)
						}
					}
					slots[oneSlot(t, what+" "+op, kv)] = true
					if len(usage) > 0 {
						oneSlot(t, what+" "+op+" (usage)", usage)
					}
				}
				step("set", 204, "PUT", map[string]any{"value": "1", "ttl": 60})
				step("get", 200, "GET", nil)
				step("head", 200, "HEAD", nil)
				step("incr", 200, "POST", map[string]any{"by": 2})
				step("incr again", 200, "POST", nil)
				step("set ifValue", 204, "PUT", map[string]any{"value": "7", "ifValue": "4"})
				step("expire", 204, "PATCH", map[string]any{"ttl": 30})
				step("persist", 204, "PATCH", map[string]any{"ttl": nil})
				step("del ifValue", 204, "DELETE", map[string]any{"ifValue": "7"})
				step("set ifAbsent", 204, "PUT", map[string]any{"value": "x", "ifAbsent": true})
				step("del", 204, "DELETE", nil)
				if len(slots) != 1 {
					t.Errorf("%s: calls used slots %v", what, slots)
				}
				if t.Failed() {
					t.FailNow()
				}
			}
		}
	}
	if cc, ok := srv.Redis.(*redis.ClusterClient); ok {
		// The slot function agrees with the cluster's own.
		ctx := context.Background()
		for _, k := range []string{"cpod:{}/apps/a/b}", "cpod:{t1/apps/a/k}:nonces", "}{", "foo", "x{y}z"} {
			got, err := cc.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			equal(t, "CLUSTER KEYSLOT "+k, int(got), keySlot(k))
		}
	}
}

// TestClusterCrossSlotFails proves the check above checks something: on a
// cluster a script over keys of two slots fails with CROSSSLOT, and the slot
// check flags the same keys on any Redis.
func TestClusterCrossSlotFails(t *testing.T) {
	a, b := "cpodtest:{a}", "cpodtest:{b}"
	if keySlot(a) == keySlot(b) {
		t.Fatal("test keys share a slot")
	}
	ft := &fakeTB{TB: t}
	oneSlot(ft, "cross", [][]string{{a}, {b}})
	if !ft.failed {
		t.Fatal("oneSlot accepted keys of two slots")
	}
	srv := cpodtest.NewServer(t)
	cc, ok := srv.Redis.(*redis.ClusterClient)
	if !ok {
		t.Skipf("the CROSSSLOT answer needs a Redis Cluster (%s)", cpodtest.EnvRedisAddrs)
	}
	err := cc.Eval(context.Background(), "return redis.call('MGET', KEYS[1], KEYS[2])", []string{a, b}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot script: err %v, want CROSSSLOT", err)
	}
}

// fakeTB records a failure instead of failing the test.
type fakeTB struct {
	testing.TB
	failed bool
	msgs   []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.failed = true
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

// TestClusterTestServerKeys: cpodtest lists (RedisKeys) and removes a test
// server's keys on every node: on a cluster they spread over all masters,
// and a SCAN through the cluster client would see one node only.
func TestClusterTestServerKeys(t *testing.T) {
	outer := cpodtest.NewServer(t)
	redisOnly(t, outer, "cpodtest's Redis key listing and cleanup")
	var keys []string
	t.Run("inner", func(t *testing.T) {
		srv := cpodtest.NewServer(t)
		srv.RegisterApp(t, "app-a", allScopes...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		for i := range 30 {
			wantStatus(t, do(t, srv, "PUT", fmt.Sprintf("/v1/storage/kv/k%d", i), tok, `{"value":1}`), 204, "")
		}
		keys = srv.RedisKeys(t)
		equal(t, "keys listed", len(keys), 30)
		if cc, ok := srv.Redis.(*redis.ClusterClient); ok {
			nodes := map[string]bool{}
			for _, k := range keys {
				n, err := cc.MasterForKey(context.Background(), k)
				if err != nil {
					t.Fatal(err)
				}
				nodes[n.Options().Addr] = true
			}
			if len(nodes) < 2 {
				t.Fatalf("30 keys on %d master(s): the check needs them spread", len(nodes))
			}
		}
	})
	if outer.Miniredis() != nil {
		return // the inner server's miniredis is gone with its keys
	}
	n, err := outer.Redis.Exists(context.Background(), keys[0]).Result()
	for _, k := range keys[1:] {
		if err != nil || n != 0 {
			break
		}
		n, err = outer.Redis.Exists(context.Background(), k).Result()
	}
	if err != nil || n != 0 {
		t.Fatalf("keys of a finished test server are left: exists %d, err %v", n, err)
	}
}
