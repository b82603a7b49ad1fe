package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// kvRoutes binds the key-value endpoints (sdk.storage.kv).
func (e *Engine) kvRoutes() []route {
	return []route{
		{"PUT", "/v1/storage/kv/{key...}?tier", e.handleKVSet},
		{"GET", "/v1/storage/kv/{key...}?tier", e.handleKVGet},
		{"HEAD", "/v1/storage/kv/{key...}?tier", e.handleKVHead},
		{"POST", "/v1/storage/kv/{key...}?tier", e.handleKVIncr},
		{"DELETE", "/v1/storage/kv/{key...}?tier", e.handleKVDel},
		{"PATCH", "/v1/storage/kv/{key...}?tier", e.handleKVExpire},
	}
}

const (
	maxKVKey = 512
	maxKVTTL = 365 * 24 * 60 * 60 // one year, in seconds
	// incrNoncesPerGeneration caps each of a counter's two nonce hashes
	// (see incrScript): a counter keeps at most twice this many nonces,
	// whatever the rate of increments.
	incrNoncesPerGeneration = 256
)

// kvKey authorizes the call and returns the Redis key of the request's kv
// key. A user key maps to RedisKeyPrefix + "{" + location + key + "}": the
// braces make it a Redis Cluster hash tag, so the key and its increment
// nonces (see incrScript) always share a slot; the mapping is injective
// because the closing brace is always last, and no user key collides with
// the counter's own keys (see incrScript), which end with ":nonces",
// ":nonces:prev" or ":incr".
//
// A location that starts with '}' (a tenant id may) would make that tag
// empty, and Redis Cluster then hashes the whole key, so the nonce keys
// would land in other slots (CROSSSLOT). Such a location maps to
// RedisKeyPrefix + "}{" + 16 hex digits of its SHA-256 + "}" + location +
// "}" instead: a tag that is never empty and still spreads keys over slots.
// That form starts with "}" where the other starts with "{", and ends with
// "}" too, so the mapping stays injective.
func (e *Engine) kvKey(c *call, a Access) (string, error) {
	id, tier, err := e.authorizeCall(c, a)
	if err != nil {
		return "", err
	}
	key := c.params["key"]
	if len(key) == 0 || len(key) > maxKVKey {
		return "", errorf(CodeInvalidRequest, "a kv key must be 1 to %d bytes", maxKVKey)
	}
	if !validText(key) {
		return "", errorf(CodeInvalidRequest, "a kv key must be UTF-8 without control characters")
	}
	loc, err := Resolve(id, tier, key)
	if err != nil {
		return "", err
	}
	return e.redisKey(loc.Key), nil
}

// redisKey is the Redis key of the kv value at a resolved location key (see
// kvKey); it and kvKeysUnder are the one place that knows the key format.
func (e *Engine) redisKey(locKey string) string {
	if strings.HasPrefix(locKey, "}") {
		sum := sha256.Sum256([]byte(locKey))
		return e.cfg.RedisKeyPrefix + "}{" + hex.EncodeToString(sum[:8]) + "}" + locKey + "}"
	}
	return e.cfg.RedisKeyPrefix + "{" + locKey + "}"
}

// kvKeys describes the Redis keys of every kv key under a location prefix
// (a tenant's, an app's or a user's; see kvKeysUnder): the SCAN MATCH
// pattern that finds them, and how to read a found key back.
type kvKeys struct {
	pattern string
	head    int // bytes before the location key in each of these keys
	redis   string
	prefix  string
	hashed  bool // the '}' form of kvKey
}

// kvKeysUnder is kvKeys for the location prefix. Every location under one
// prefix starts with the same byte, so one of kvKey's two forms holds them all.
func (e *Engine) kvKeysUnder(prefix string) kvKeys {
	rp := e.cfg.RedisKeyPrefix
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

// kvBackendError translates a go-redis error once, here in the adapter.
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
	if strings.Contains(msg, "not an integer") || strings.Contains(msg, "overflow") {
		return errorf(CodeNotInteger, "the stored value is not an integer, or the result would leave the int64 range")
	}
	return backendError("redis "+op, err)
}

// handleKVSet stores a value, replacing the value and the TTL there: the
// key keeps no earlier TTL, it gets the request's ttl or none. A condition
// ("ifAbsent": true, or "ifValue": the current value) makes the check and the
// write one atomic Redis command (SET NX, or setIfScript); when it does not
// hold the answer is 412 conflict and nothing is written. A conditional set
// is a set: it also replaces the TTL, so a lock holder that refreshes its
// lock with ifValue sends the ttl again.
func (e *Engine) handleKVSet(c *call) error {
	k, err := e.kvKey(c, Write)
	if err != nil {
		return err
	}
	var body struct {
		Value    json.RawMessage `json:"value"`
		TTL      json.RawMessage `json:"ttl"`
		IfAbsent json.RawMessage `json:"ifAbsent"`
		IfValue  json.RawMessage `json:"ifValue"`
	}
	// A JSON string can take up to 6 body bytes per stored byte (\u0000),
	// and value and ifValue can each be a whole value.
	if err := decodeJSON(c, 12*int64(e.cfg.Limits.MaxKVValueSize)+4096, &body); err != nil {
		return err
	}
	if len(body.Value) == 0 {
		return errorf(CodeInvalidRequest, "value is required")
	}
	var value string
	if !utf8.Valid(body.Value) {
		return errorf(CodeInvalidRequest, "value is not UTF-8")
	}
	if body.Value[0] == '"' {
		if value, err = jsonString(body.Value); err != nil {
			return errorf(CodeInvalidRequest, "value is not a valid JSON string: %v", err)
		}
	} else {
		var buf bytes.Buffer
		if err := json.Compact(&buf, body.Value); err != nil {
			return errorf(CodeInvalidRequest, "value is not valid JSON")
		}
		value = buf.String()
	}
	if len(value) > e.cfg.Limits.MaxKVValueSize {
		return errorf(CodeTooLarge, "a kv value must be at most %d bytes", e.cfg.Limits.MaxKVValueSize)
	}
	var ttl time.Duration
	if body.TTL != nil {
		n, err := parseInt64(body.TTL)
		if err != nil || n < 1 || n > maxKVTTL {
			return errorf(CodeInvalidRequest, "ttl must be a whole number of seconds from 1 to %d", maxKVTTL)
		}
		ttl = time.Duration(n) * time.Second
	}
	ifAbsent := false
	if body.IfAbsent != nil {
		if err := json.Unmarshal(body.IfAbsent, &ifAbsent); err != nil || string(body.IfAbsent) == "null" {
			return errorf(CodeInvalidRequest, "ifAbsent must be true or false")
		}
	}
	ifValue, hasIfValue, err := kvIfValue(body.IfValue)
	if err != nil {
		return err
	}
	if ifAbsent && hasIfValue {
		return errorf(CodeInvalidRequest, "ifAbsent and ifValue cannot be used together")
	}
	stored := kvEncode(value, ttl, e.cfg.Now())
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	switch {
	case ifAbsent:
		ok, err := e.cfg.Redis.SetNX(ctx, k, stored, ttl).Result()
		if err != nil {
			return kvBackendError("set", err)
		}
		if !ok {
			return kvConditionFailed("the key already exists; nothing was written")
		}
	case hasIfValue:
		if len(ifValue) > e.cfg.Limits.MaxKVValueSize {
			// No stored value is that long: the condition cannot hold.
			return kvConditionFailed(ifValueFailed)
		}
		n, err := setIfScript.Run(ctx, e.cfg.Redis, []string{k}, ifValue, stored, ttl.Milliseconds()).Int64()
		if err != nil {
			return kvBackendError("set", err)
		}
		if n != 1 {
			return kvConditionFailed(ifValueFailed)
		}
	default:
		if err := e.cfg.Redis.Set(ctx, k, stored, ttl).Err(); err != nil {
			return kvBackendError("set", err)
		}
	}
	e.kvSet(c, k, value)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// kvConditionFailed answers a conditional set or delete whose condition does
// not hold: 412 with the code conflict.
func kvConditionFailed(msg string) error {
	return withStatus(errorf(CodeConflict, "%s", msg), http.StatusPreconditionFailed)
}

const ifValueFailed = "the key is missing or its value differs from ifValue; nothing was written"

// kvIfValue reads an optional "ifValue": it must be a JSON string, the
// stored text to compare with byte for byte (what GET answers: a value set
// from other JSON is stored as its compact text). null is refused rather
// than read as "no condition", so that a client passing a missing value
// never overwrites unconditionally; ifAbsent is the condition for a missing
// key.
func kvIfValue(raw json.RawMessage) (string, bool, error) {
	if raw == nil {
		return "", false, nil
	}
	if raw[0] != '"' {
		return "", false, errorf(CodeInvalidRequest, "ifValue must be a JSON string: the current value as GET returns it (use ifAbsent for a missing key)")
	}
	s, err := jsonString(raw)
	if err != nil {
		return "", false, errorf(CodeInvalidRequest, "ifValue is not a valid JSON string: %v", err)
	}
	return s, true, nil
}

// jsonString decodes a JSON string literal into exactly the text it spells,
// or fails: where encoding/json would put U+FFFD in place of invalid UTF-8
// or of a lone UTF-16 surrogate escape (\ud800 with no low half), text that
// no UTF-8 string can hold, a kv value would silently change, so it is
// refused instead.
func jsonString(raw []byte) (string, error) {
	if !utf8.Valid(raw) {
		return "", errors.New("it is not UTF-8")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("malformed")
	}
	// raw is a well-formed literal now: walk its escapes.
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		r := hex4(raw[i+1 : i+5])
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return "", errors.New("it holds a lone UTF-16 surrogate escape")
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return "", errors.New("it holds a lone UTF-16 surrogate escape")
			}
			if lo := hex4(raw[i+3 : i+7]); lo < 0xDC00 || lo > 0xDFFF {
				return "", errors.New("it holds a lone UTF-16 surrogate escape")
			}
			i += 6
		}
	}
	return s, nil
}

// hex4 reads the 4 hex digits of a \u escape that encoding/json accepted.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
}

// parseInt64 accepts a JSON integer literal in the int64 range: no string,
// fraction or exponent.
func parseInt64(raw json.RawMessage) (int64, error) {
	return strconv.ParseInt(string(raw), 10, 64)
}

// ttlSeconds turns a PTTL reply into the contract's seconds: -1 for no
// expiry, otherwise the seconds left rounded up (never 0 for a live key).
func ttlSeconds(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return int64((d + time.Second - 1) / time.Second)
}

// kvTTL reads a key's remaining time; found is false for a missing key.
func (e *Engine) kvTTL(ctx context.Context, k string) (ttl int64, found bool, err error) {
	d, err := e.cfg.Redis.PTTL(ctx, k).Result()
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

func (e *Engine) handleKVGet(c *call) error {
	k, err := e.kvKey(c, Read)
	if err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	// One GET: the value carries its expiry (kv_values.go), so the answer
	// needs no second command, except for a value stored before that format.
	stored, err := e.cfg.Redis.Get(ctx, k).Result()
	if errors.Is(err, redis.Nil) {
		return errorf(CodeNotFound, "no such key")
	}
	if err != nil {
		return kvBackendError("get", err)
	}
	text, exp, ok := kvDecode(stored)
	var ttl int64
	if ok {
		ttl = kvTTLLeft(exp, e.cfg.Now())
	} else {
		var found bool
		if ttl, found, err = e.kvTTL(ctx, k); err != nil {
			return err
		} else if !found { // gone since the GET
			return errorf(CodeNotFound, "no such key")
		}
	}
	return c.json(http.StatusOK, struct {
		Value string `json:"value"`
		TTL   int64  `json:"ttl"`
	}{text, ttl})
}

func (e *Engine) handleKVHead(c *call) error {
	k, err := e.kvKey(c, Read)
	if err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	ttl, found, err := e.kvTTL(ctx, k)
	if err != nil {
		return err
	}
	if !found {
		return errorf(CodeNotFound, "no such key")
	}
	c.w.Header().Set("Cpod-Ttl", strconv.FormatInt(ttl, 10))
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (e *Engine) handleKVIncr(c *call) error {
	k, err := e.kvKey(c, Write)
	if err != nil {
		return err
	}
	var body struct {
		By json.RawMessage `json:"by"`
	}
	if err := decodeOptionalJSON(c, 4096, &body); err != nil {
		return err
	}
	by := int64(1)
	if body.By != nil {
		n, err := parseInt64(body.By)
		if err != nil {
			return errorf(CodeInvalidRequest, "by must be an integer in the int64 range")
		}
		by = n
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	n, err := e.incr(ctx, k, by, hex.EncodeToString(nonce[:]))
	if err != nil {
		return err
	}
	e.kvSet(c, k, strconv.FormatInt(n, 10))
	return c.json(http.StatusOK, struct {
		Value int64 `json:"value"`
	}{n})
}

// kvIntegerLua defines, in a script, integer(s): whether s is a signed
// 64-bit integer written the one way Redis reads one (string2ll): an
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

// incr runs incrScript on the Redis key k with the request's nonce: 64
// random bits, unique among the at most 2*incrNoncesPerGeneration nonces a
// counter remembers.
func (e *Engine) incr(ctx context.Context, k string, by int64, nonce string) (int64, error) {
	keep := e.cfg.BackendTimeout + time.Second
	res, err := incrScript.Run(ctx, e.cfg.Redis,
		[]string{k, k + ":nonces", k + ":nonces:prev", k + ":incr"},
		strconv.FormatInt(by, 10), nonce, incrNoncesPerGeneration, keep.Milliseconds()).Text()
	if err != nil {
		return 0, kvBackendError("incrby", err)
	}
	n, err := strconv.ParseInt(res, 10, 64)
	if err != nil {
		return 0, &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	return n, nil
}

// handleKVDel deletes a key; 204 also when it was missing. A body
// {"ifValue": "<string>"} deletes only when the key holds exactly that value,
// in one atomic script (delIfScript); a missing key or another value is 412
// conflict. Only an absent or empty body is a plain delete: any other body
// (null, {}, an array...) is 400, so that a client whose condition got lost
// on the way never deletes unconditionally.
func (e *Engine) handleKVDel(c *call) error {
	k, err := e.kvKey(c, Write)
	if err != nil {
		return err
	}
	var body struct {
		IfValue json.RawMessage `json:"ifValue"`
	}
	limit := 6*int64(e.cfg.Limits.MaxKVValueSize) + 4096
	if c.r.ContentLength > limit {
		return bodyTooLarge(limit)
	}
	b, err := c.readBody(limit)
	if err != nil {
		return jsonError(err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := unmarshalStrict(b, &body); err != nil {
			return err
		}
		if body.IfValue == nil {
			return errorf(CodeInvalidRequest, `a DELETE body must be absent or {"ifValue": "<the current value>"}`)
		}
	}
	ifValue, hasIfValue, err := kvIfValue(body.IfValue)
	if err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	if hasIfValue {
		if len(ifValue) > e.cfg.Limits.MaxKVValueSize {
			return kvConditionFailed(ifValueFailed)
		}
		n, err := delIfScript.Run(ctx, e.cfg.Redis, []string{k}, ifValue).Int64()
		if err != nil {
			return kvBackendError("del", err)
		}
		if n != 1 {
			return kvConditionFailed(ifValueFailed)
		}
	} else if err := e.cfg.Redis.Del(ctx, k).Err(); err != nil {
		return kvBackendError("del", err)
	}
	e.kvDeleted(c, k)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleKVExpire answers PATCH {"ttl": <seconds> | null}: it sets the TTL of
// an existing key or removes it (null), keeping the value, in one atomic
// script (expireScript: the expiry is part of the stored value, see
// kv_values.go); 404 when the key is missing.
func (e *Engine) handleKVExpire(c *call) error {
	k, err := e.kvKey(c, Write)
	if err != nil {
		return err
	}
	var body struct {
		TTL json.RawMessage `json:"ttl"`
	}
	if err := decodeJSON(c, 4096, &body); err != nil {
		return err
	}
	if body.TTL == nil {
		return errorf(CodeInvalidRequest, "ttl is required: seconds from 1 to %d, or null to remove the TTL", maxKVTTL)
	}
	var ttl time.Duration // none for null
	if string(body.TTL) != "null" {
		n, err := parseInt64(body.TTL)
		if err != nil || n < 1 || n > maxKVTTL {
			return errorf(CodeInvalidRequest, "ttl must be a whole number of seconds from 1 to %d, or null", maxKVTTL)
		}
		ttl = time.Duration(n) * time.Second
	}
	prefix := kvPrefix(ttl, e.cfg.Now())
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	n, err := expireScript.Run(ctx, e.cfg.Redis, []string{k}, prefix, ttl.Milliseconds()).Int64()
	if err != nil {
		return kvBackendError("expire", err)
	}
	if n != 1 {
		return errorf(CodeNotFound, "no such key")
	}
	e.kvTTLChanged(c, k)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
