package storage

import (
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// How the Redis kv driver (kv_redis.go) stores a value. A kv GET answers
// the value and its TTL; Redis has no command that returns both, and a
// second command (GET and PTTL pipelined) costs a kv GET 1.3x its floor on
// miniredis (issue 17, BenchmarkHotPathKVGetRatio). So a value carries its
// own expiry:
//
//	"\xff" + expiry + ":" + text
//
// where expiry is the Unix time in milliseconds at which the TTL ends, in
// decimal, "0" for none, and text is the value as GET answers it. The key's
// Redis TTL is set too (SET PX, the same duration), so Redis still expires
// it; Redis decides whether a key exists, the expiry only how long it has
// left, computed on the engine's clock (Config.Now): a key Redis still holds
// after its expiry by that clock answers ttl 1, never 404. HEAD and the
// export read the TTL from Redis (PTTL), which needs no value.
//
// 0xff never starts a value stored before this format: a JSON string value
// is decoded by encoding/json, which turns invalid UTF-8 into U+FFFD, so its
// text is valid UTF-8, which 0xff never begins; any other value is compact
// JSON text, which starts with an ASCII byte. Such a legacy value (or a
// counter that INCR created before) is read with a second command, PTTL;
// the first write that is not an INCR (PUT, PATCH) stores it in this format.
//
// The scripts below read the text of either form with kvTextLua.
const kvMarker = 0xff

// kvEncode is the stored form of text with the given TTL (0 for none), the
// expiry counted from now.
func kvEncode(text string, ttl time.Duration, now time.Time) string {
	return kvPrefix(ttl, now) + text
}

// kvPrefix is what comes before the text: the marker, the expiry and ':'.
func kvPrefix(ttl time.Duration, now time.Time) string {
	var buf [24]byte
	b := append(buf[:0], kvMarker)
	exp := int64(0)
	if ttl > 0 {
		exp = now.Add(ttl).UnixMilli()
	}
	b = strconv.AppendInt(b, exp, 10)
	b = append(b, ':')
	return string(b)
}

// kvDecode reads a stored value: its text and its expiry in Unix
// milliseconds (0 for none). ok is false for a value stored before this
// format (see above), whose text is the stored string and whose TTL only
// Redis knows.
func kvDecode(stored string) (text string, exp int64, ok bool) {
	if len(stored) == 0 || stored[0] != kvMarker {
		return stored, 0, false
	}
	for i := 1; i < len(stored) && i <= 20; i++ {
		c := stored[i]
		if c == ':' && i > 1 {
			return stored[i+1:], exp, true
		}
		if c < '0' || c > '9' {
			break
		}
		exp = exp*10 + int64(c-'0')
	}
	// Not written by kvEncode: answer it as it is rather than lose it.
	return stored, 0, false
}

// kvTTLLeft is the contract's ttl of a value with expiry exp (Unix ms, 0
// for none) at now: -1 for none, else the seconds left rounded up, at
// least 1 (Redis still holds the key).
func kvTTLLeft(exp int64, now time.Time) int64 { return kvTTLAt(exp, now.UnixMilli()) }

// kvTextLua defines, in a script, text(v): the text of a stored value of
// either form, false for a missing key (GET's nil), as kvDecode reads it.
const kvTextLua = `
local function text(v)
  if v and string.byte(v, 1) == 255 then
    local i = string.find(v, ':', 2, true)
    if i and i > 2 and i <= 21 and not string.find(string.sub(v, 2, i - 1), '%D') then
      return string.sub(v, i + 1), i
    end
  end
  return v, nil
end
`

// kvIntegerLua defines, in a script, integer(s): whether s is a signed
// 64-bit integer written the one way Redis reads one (string2ll, kvInt): an
// optional '-', then "0" alone or digits without a leading zero, at most 20
// bytes; never '+', a leading zero, "-0", a space or an empty string. It
// does not check the range: INCRBY refuses an overflow itself. notInteger
// is Redis' own error text, which kvBackendError maps to 409 not_integer.
const kvIntegerLua = `
local notInteger = 'ERR value is not an integer or out of range'
local function integer(s)
  return s == '0' or (#s <= 20 and string.find(s, '^%-?[1-9]%d*$') ~= nil)
end
`

// incrScript increments KEYS[1] by ARGV[1] at most once per nonce ARGV[2].
// go-redis resends a command whose reply was lost (the connection dropped
// after Redis ran it); the resend must return the first result instead of
// counting twice. So the script remembers the result of each nonce in a
// hash next to the counter, in the same hash slot: KEYS[2], the current
// generation, holds at most ARGV[3] nonces; when full it becomes KEYS[3],
// the previous generation (RENAME drops the one before), and a new one
// starts. Both expire ARGV[4] milliseconds after their last write. So a
// counter costs at most two extra keys and 2*ARGV[3] nonces however fast it
// is incremented, and nothing once it has been idle for ARGV[4] ms.
//
// A nonce is remembered for at least ARGV[4] ms (go-redis resends within
// the call's context, bounded by BackendTimeout, which ARGV[4] exceeds) and
// for at least ARGV[3] later increments of the same counter: a resend that
// comes after more increments than that may count twice.
//
// The arithmetic is Redis' own INCRBY (exact int64, the same errors for a
// value that is not an integer and for an overflow): on the key itself for
// a legacy value, which keeps its form; on KEYS[4], a scratch key in the
// same slot that the script deletes before it returns, for a value with an
// expiry prefix, which is written back with its prefix and its TTL
// (KEEPTTL). A missing key starts a new counter with no TTL at ARGV[1]
// (0 + ARGV[1], the engine's canonical decimal).
//
// Before INCRBY, the text must be an integer in canonical form
// (kvIntegerLua): miniredis reads "+5", "007" and "-0" as integers where
// Redis refuses them, and every backend must answer the same 409.
//
// The value travels as a string: Lua numbers are doubles and would round
// integers above 2^53. The answer is {value, the old value's size and
// expiry (kvMetaLua; -1 when it was missing, -2 for a resend, whose first
// run counted it)}, for usage (kv_redis_usage.go).
var incrScript = redis.NewScript(kvTextLua + kvIntegerLua + kvMetaLua + `
local done = redis.call('HGET', KEYS[2], ARGV[2])
if not done then done = redis.call('HGET', KEYS[3], ARGV[2]) end
if done then return {done, -2, 0} end
local cur = redis.call('GET', KEYS[1])
local os, oe = meta(cur)
local v
if not cur then
  v = ARGV[1]
  redis.call('SET', KEYS[1], '\255' .. '0:' .. v)
else
  local t, i = text(cur)
  if not integer(t) then return redis.error_reply(notInteger) end
  if i then
    redis.call('SET', KEYS[4], t)
    local r = redis.pcall('INCRBY', KEYS[4], ARGV[1])
    if type(r) == 'table' and r.err then
      redis.call('DEL', KEYS[4])
      return r
    end
    v = redis.call('GET', KEYS[4])
    redis.call('DEL', KEYS[4])
    redis.call('SET', KEYS[1], string.sub(cur, 1, i) .. v, 'KEEPTTL')
  else
    local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
    if type(r) == 'table' and r.err then return r end
    v = redis.call('GET', KEYS[1])
  end
end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  redis.call('RENAME', KEYS[2], KEYS[3])
end
redis.call('HSET', KEYS[2], ARGV[2], v)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {v, os, oe}
`)
