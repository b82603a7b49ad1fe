// The kv store: the driver interface under the kv area (design.md, "The
// embedded store is SQLite").
//
// kv.go parses and checks every request (identity, tier, key, value, ttl,
// conditions) and answers it; a kvStore keeps the values. Two drivers
// implement it: redisKV (kv_redis.go and kv_values.go, Redis, Sentinel or
// Cluster: the production path) and sqliteKV (kv_sqlite.go, the table
// cpod_kv of the embedded store). One suite runs on both: every kv test of
// this package and of the client runs on miniredis by default, on a real
// Redis or Cluster with CPODTEST_REDIS_URL / CPODTEST_REDIS_ADDRS, and on
// SQLite with CPODTEST_STORE=sqlite.

package storage

import (
	"context"
	"strconv"
	"time"
)

// kvStore is a kv driver. Every method works on one kv key, named by its
// location key (Location.Key of tiers.go: the tier's location followed by
// the caller's key), or on every key under a location prefix (erase,
// scan); nothing else is ever reachable through it.
//
// A key exists from a write until it is deleted or its TTL ends; an
// expired key is never read, written conditionally or counted, by any
// method, whether or not the backend removed it yet. TTLs are answered in
// the contract's seconds: -1 for none, else the seconds left rounded up,
// at least 1 for a key that exists.
//
// # Errors
//
// Every method returns nil, or an *Error the engine answers as it is: the
// driver translates its backend's errors itself, once (a backend that did
// not answer in time, or is unreachable: CodeBackendUnavailable; anything
// else unexpected: CodeInternal, its cause in Err). Besides:
//
//   - get, ttl, expire: found is false for a missing key, never an error.
//   - set: a 412 conflict (kvConditionFailed) when cond does not hold;
//     nothing is written then. The check and the write are atomic against
//     every other write of the key.
//   - incr: 409 not_integer when the stored value is not an integer as
//     Redis' INCRBY reads it (kvInt) or the sum leaves the int64 range;
//     nothing is written then. Atomic, and counted once per call even when
//     the backend's client resends it.
//   - remove: with cond.hasValue, a 412 conflict when the key is missing or
//     holds another value; nothing is deleted then. Atomic. Without a
//     condition a missing key is no error.
type kvStore interface {
	// get returns the value's text and its TTL.
	get(ctx context.Context, key string) (value string, ttl int64, found bool, err error)
	// ttl returns the key's TTL (HEAD).
	ttl(ctx context.Context, key string) (ttl int64, found bool, err error)
	// set stores value at key with ttl (0 for none), replacing the value
	// and the TTL there, under cond (ifAbsent, ifValue or none).
	set(ctx context.Context, key, value string, ttl time.Duration, cond kvCond) error
	// incr adds by to the integer at key and returns the sum; a missing key
	// counts from 0 and gets no TTL, an existing one keeps its TTL.
	incr(ctx context.Context, key string, by int64) (int64, error)
	// remove deletes key under cond (ifValue or none).
	remove(ctx context.Context, key string, cond kvCond) error
	// expire sets the TTL of an existing key, keeping its value; ttl 0
	// removes it.
	expire(ctx context.Context, key string, ttl time.Duration) (found bool, err error)
	// erase deletes every key under prefix, a batch at a time, adding the
	// keys it removed to *n and calling o.done("kv") after each batch.
	erase(ctx context.Context, prefix string, o eraseOptions, n *int64) error
	// scan calls each with every key under prefix (its location key), its
	// value and its TTL; a key that expires or goes meanwhile may be left
	// out.
	scan(ctx context.Context, prefix string, each func(key, value string, ttl int64) error) error
	// segments is docStore.segments over the location keys of live kv
	// keys (admin_browse.go).
	segments(ctx context.Context, prefix, pos string, limit int) (names []string, next string, err error)
	// list returns the live keys under prefix (a location followed by
	// any text) with their TTLs, from the driver's position pos ("" from
	// the start), at most limit (on Redis, whose SCAN takes a count as a
	// hint, a page may hold a few more) and with bounded work; next is
	// the position to go on from, "" when no more. An invalid pos is 400
	// invalid_cursor; otherwise it fails only as every method does.
	list(ctx context.Context, prefix, pos string, limit int) (entries []kvEntry, next string, err error)
	// ping checks that the store answers, for /readyz.
	ping(ctx context.Context) error
}

// kvCond is the condition of a conditional set or delete.
type kvCond struct {
	ifAbsent bool   // set only when the key does not exist
	hasValue bool   // set or delete only when the key holds ifValue
	ifValue  string // byte for byte
}

// kvInt reads a stored value as Redis' INCRBY does: the canonical decimal
// text of an int64 (an optional '-', no leading zero, no '+', no space,
// "0" but never "-0"), so that a counter answers the same on every driver.
func kvInt(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	// ParseInt also takes "+1", "01" and "-0"; Redis does not.
	if s[0] == '+' || (len(s) > 1 && s[0] == '0') || (len(s) > 1 && s[0] == '-' && s[1] == '0') {
		return 0, false
	}
	return n, true
}

// kvAdd is n + by, or false when the sum leaves the int64 range.
func kvAdd(n, by int64) (int64, bool) {
	sum := n + by
	if (by > 0 && sum < n) || (by < 0 && sum > n) {
		return 0, false
	}
	return sum, true
}

// errKVNotInteger is incr's refusal.
var errKVNotInteger = errorf(CodeNotInteger, "the stored value is not an integer, or the result would leave the int64 range")

// kvTTLAt is the contract's ttl of a key with expiry exp (Unix ms, 0 for
// none) at now (Unix ms) that exists: -1 for none, else the seconds left
// rounded up, at least 1.
func kvTTLAt(exp, now int64) int64 {
	if exp == 0 {
		return -1
	}
	return max(1, ttlSeconds(time.Duration(exp-now)*time.Millisecond))
}
