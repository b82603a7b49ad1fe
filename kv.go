package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
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
)

// kvKey authorizes the call and returns the location key of the request's
// kv key (Location.Key: the tier's location followed by the key), which
// names it in the kv store.
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
	return loc.Key, nil
}

// handleKVSet stores a value, replacing the value and the TTL there: the
// key keeps no earlier TTL, it gets the request's ttl or none. A condition
// ("ifAbsent": true, or "ifValue": the current value) makes the check and the
// write one atomic step of the store; when it does not hold the answer is
// 412 conflict and nothing is written. A conditional set is a set: it also
// replaces the TTL, so a lock holder that refreshes its lock with ifValue
// sends the ttl again.
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
	if hasIfValue && len(ifValue) > e.cfg.Limits.MaxKVValueSize {
		// No stored value is that long: the condition cannot hold.
		return kvConditionFailed(ifValueFailed)
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	release, err := e.admitKV(ctx, k, int64(len(value)))
	defer release()
	if err != nil {
		return err
	}
	if err := e.kvSetCounted(c, ctx, k, value, ttl, kvCond{ifAbsent: ifAbsent, hasValue: hasIfValue, ifValue: ifValue}); err != nil {
		return err
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

func (e *Engine) handleKVGet(c *call) error {
	k, err := e.kvKey(c, Read)
	if err != nil {
		return err
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	text, ttl, found, err := e.kv.get(ctx, k)
	if err != nil {
		return err
	}
	if !found {
		return errorf(CodeNotFound, "no such key")
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
	ttl, found, err := e.kv.ttl(ctx, k)
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
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	release, err := e.admitIncr(ctx, k, by)
	defer release()
	if err != nil {
		return err
	}
	n, err := e.kvIncrCounted(c, ctx, k, by)
	if err != nil {
		return err
	}
	e.kvSet(c, k, strconv.FormatInt(n, 10))
	return c.json(http.StatusOK, struct {
		Value int64 `json:"value"`
	}{n})
}

// handleKVDel deletes a key; 204 also when it was missing. A body
// {"ifValue": "<string>"} deletes only when the key holds exactly that value,
// in one atomic step of the store; a missing key or another value is 412
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
	if hasIfValue && len(ifValue) > e.cfg.Limits.MaxKVValueSize {
		return kvConditionFailed(ifValueFailed)
	}
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	if err := e.kvRemoveCounted(c, ctx, k, kvCond{hasValue: hasIfValue, ifValue: ifValue}); err != nil {
		return err
	}
	e.kvDeleted(c, k)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleKVExpire answers PATCH {"ttl": <seconds> | null}: it sets the TTL of
// an existing key or removes it (null), keeping the value, in one atomic
// step of the store; 404 when the key is missing.
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
	ctx, cancel := e.backendCtx(c)
	defer cancel()
	found, err := e.kvExpireCounted(c, ctx, k, ttl)
	if err != nil {
		return err
	}
	if !found {
		return errorf(CodeNotFound, "no such key")
	}
	e.kvTTLChanged(c, k)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
