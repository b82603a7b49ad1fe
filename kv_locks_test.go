package storage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// kvState is what GET answers for a key: found, value and ttl.
type kvState struct {
	found bool
	value string
	ttl   int64
}

func kvGet(t *testing.T, srv *cpodtest.Server, tok, key string) kvState {
	t.Helper()
	r := do(t, srv, "GET", "/v1/storage/kv/"+key, tok, nil)
	if r.status == http.StatusNotFound {
		wantStatus(t, r, http.StatusNotFound, "not_found")
		return kvState{}
	}
	wantStatus(t, r, http.StatusOK, "")
	var got struct {
		Value string `json:"value"`
		TTL   int64  `json:"ttl"`
	}
	decode(t, r, &got)
	return kvState{true, got.Value, got.TTL}
}

// try sends one JSON request from any goroutine (do fails the test, which
// only the test's goroutine may do) and returns the status and body.
func try(srv *cpodtest.Server, method, path, tok string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	return sendBearer(context.Background(), srv, method, path, tok, rd)
}

func kvServer(t *testing.T, opts ...cpodtest.Option) (*cpodtest.Server, string) {
	srv := cpodtest.NewServer(t, opts...)
	srv.RegisterApp(t, "app-a", allScopes...)
	return srv, srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
}

// TestKVSetIfAbsent: ifAbsent sets a missing key, with its ttl; on an
// existing key it is 412 conflict and neither value nor TTL changes.
func TestKVSetIfAbsent(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/lock", tok, `{"value":"me","ttl":30,"ifAbsent":true}`), 204, "")
	equal(t, "after ifAbsent", kvGet(t, srv, tok, "lock"), kvState{true, "me", 30})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/lock", tok, `{"value":"you","ttl":600,"ifAbsent":true}`), 412, "conflict")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/lock", tok, `{"value":"you","ifAbsent":true}`), 412, "conflict")
	equal(t, "after refused ifAbsent", kvGet(t, srv, tok, "lock"), kvState{true, "me", 30})
	// Without ttl: no expiry. ifAbsent false is no condition: a plain set.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/plain", tok, `{"value":{"a":1},"ifAbsent":true}`), 204, "")
	equal(t, "object value", kvGet(t, srv, tok, "plain"), kvState{true, `{"a":1}`, -1})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/plain", tok, `{"value":"v2","ifAbsent":false}`), 204, "")
	equal(t, "ifAbsent false", kvGet(t, srv, tok, "plain"), kvState{true, "v2", -1})
	// Once a lock expires, it can be taken again.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/short", tok, `{"value":"me","ttl":1,"ifAbsent":true}`), 204, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/short", tok, `{"value":"you","ifAbsent":true}`), 412, "conflict")
	advance(srv, 1100*time.Millisecond)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/short", tok, `{"value":"you","ifAbsent":true}`), 204, "")
	equal(t, "after expiry", kvGet(t, srv, tok, "short"), kvState{true, "you", -1})
}

// TestKVSetIfValue: compare-and-set writes only over exactly the given value,
// never on a missing key, and replaces the TTL as a plain set does.
func TestKVSetIfValue(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	// Missing key: 412, and the key stays missing.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"new","ifValue":""}`), 412, "conflict")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"new","ifValue":"old"}`), 412, "conflict")
	equal(t, "missing key", kvGet(t, srv, tok, "k"), kvState{})

	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"old","ttl":100}`), 204, "")
	// Another value, a prefix, a case variant: 412, nothing written.
	for _, other := range []string{"ol", "old ", "OLD", "", "old\u0000"} {
		body := map[string]any{"value": "new", "ttl": 5, "ifValue": other}
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, body), 412, "conflict")
	}
	equal(t, "after refused sets", kvGet(t, srv, tok, "k"), kvState{true, "old", 100})
	// Equal: written, with the request's ttl.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"new","ttl":50,"ifValue":"old"}`), 204, "")
	equal(t, "after the set with ttl", kvGet(t, srv, tok, "k"), kvState{true, "new", 50})
	// Without ttl a conditional set, like a plain one, leaves no TTL.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"newer","ifValue":"new"}`), 204, "")
	equal(t, "after the set without ttl", kvGet(t, srv, tok, "k"), kvState{true, "newer", -1})
	// The old value no longer matches.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"x","ifValue":"new"}`), 412, "conflict")

	// A value stored from other JSON compares as its compact text, as GET
	// returns it; the same object written with other spacing, or sent as
	// an object, is not that string.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/obj", tok, `{"value":{"a": 1, "b": [true, null]}}`), 204, "")
	compact := kvGet(t, srv, tok, "obj").value
	equal(t, "stored text", compact, `{"a":1,"b":[true,null]}`)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/obj", tok, map[string]any{"value": 2, "ifValue": `{"a": 1, "b": [true, null]}`}), 412, "conflict")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/obj", tok, `{"value":2,"ifValue":{"a":1,"b":[true,null]}}`), 400, "invalid_request")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/obj", tok, map[string]any{"value": 2, "ifValue": compact}), 204, "")
	equal(t, "after compare-and-set on JSON text", kvGet(t, srv, tok, "obj"), kvState{true, "2", -1})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/obj", tok, `{"value":3,"ifValue":2}`), 400, "invalid_request")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/obj", tok, `{"value":3,"ifValue":"2"}`), 204, "")
	equal(t, "number text", kvGet(t, srv, tok, "obj").value, "3")
}

// TestKVSetIfValueLong: an ifValue longer than any storable value cannot
// match: 412 without a Redis call, and no 413 for a legal request whose
// value and ifValue are both at the limit and escaped.
func TestKVSetIfValueLong(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t, cpodtest.WithConfig(func(c *storage.Config) { c.Limits.MaxKVValueSize = 1024 }))
	full := strings.Repeat("\u0001", 1024) // 6 body bytes per byte
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, map[string]any{"value": full}), 204, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, map[string]any{"value": full, "ifValue": full}), 204, "")
	before := srv.Calls().Redis
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, map[string]any{"value": "v", "ifValue": full + "x"}), 412, "conflict")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k", tok, map[string]any{"ifValue": full + "x"}), 412, "conflict")
	equal(t, "redis calls", srv.Calls().Redis, before)
	equal(t, "value kept", kvGet(t, srv, tok, "k").value, full)
}

// TestKVConditionalBadInput: malformed conditions are 400 before any Redis
// call, and write nothing.
func TestKVConditionalBadInput(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v","ttl":60}`), 204, "")
	cases := []struct{ name, method, body string }{
		{"both conditions", "PUT", `{"value":"w","ifAbsent":true,"ifValue":"v"}`},
		{"ifAbsent null", "PUT", `{"value":"w","ifAbsent":null}`},
		{"ifAbsent string", "PUT", `{"value":"w","ifAbsent":"true"}`},
		{"ifAbsent number", "PUT", `{"value":"w","ifAbsent":1}`},
		{"ifValue null", "PUT", `{"value":"w","ifValue":null}`},
		{"ifValue number", "PUT", `{"value":"w","ifValue":1}`},
		{"ifValue object", "PUT", `{"value":"w","ifValue":{"v":1}}`},
		{"ifValue case variant", "PUT", `{"value":"w","IfValue":"v"}`},
		{"ifValue twice", "PUT", `{"value":"w","ifValue":"x","ifValue":"v"}`},
		{"delete malformed", "DELETE", `{"ifValue":`},
		{"delete not an object", "DELETE", `"v"`},
		{"delete unknown field", "DELETE", `{"value":"v"}`},
		{"delete ifValue null", "DELETE", `{"ifValue":null}`},
		{"delete ifValue number", "DELETE", `{"ifValue":1}`},
		{"delete two values", "DELETE", `{"ifValue":"v"} {}`},
		// Only an absent or empty body is a plain delete: a body that lost
		// its condition (null, {}) must not delete unconditionally.
		{"delete null", "DELETE", `null`},
		{"delete null spaced", "DELETE", " null\n"},
		{"delete empty object", "DELETE", `{}`},
		{"delete array", "DELETE", `[]`},
		{"delete boolean", "DELETE", `true`},
		{"delete number", "DELETE", `0`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Calls().Redis
			wantStatus(t, do(t, srv, tc.method, "/v1/storage/kv/k", tok, tc.body), 400, "invalid_request")
			equal(t, "redis calls", srv.Calls().Redis, before)
		})
	}
	equal(t, "after refused requests", kvGet(t, srv, tok, "k"), kvState{true, "v", 60})
}

// TestKVDeleteIfValue: compare-and-delete removes only exactly the given
// value; a missing key is 412 too. No body, or an empty one, is a plain
// delete.
func TestKVDeleteIfValue(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k", tok, `{"ifValue":"v"}`), 412, "conflict")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v","ttl":60}`), 204, "")
	for _, other := range []string{"w", "V", "v ", ""} {
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k", tok, map[string]string{"ifValue": other}), 412, "conflict")
	}
	equal(t, "after refused deletes", kvGet(t, srv, tok, "k"), kvState{true, "v", 60})
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k", tok, `{"ifValue":"v"}`), 204, "")
	equal(t, "after the delete", kvGet(t, srv, tok, "k"), kvState{})
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/k", tok, `{"ifValue":"v"}`), 412, "conflict")

	// A value stored from JSON compares as its compact text.
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/n", tok, `{"value":[1, 2]}`), 204, "")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/n", tok, `{"ifValue":"[1, 2]"}`), 412, "conflict")
	wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/n", tok, `{"ifValue":"[1,2]"}`), 204, "")

	// Plain deletes: no body, or an empty one; also when missing.
	for _, body := range []any{nil, ""} {
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/p", tok, `{"value":"v"}`), 204, "")
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/p", tok, body), 204, "")
		equal(t, "after a plain delete", kvGet(t, srv, tok, "p"), kvState{})
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/p", tok, body), 204, "")
	}
}

// TestKVExpire: PATCH sets or removes the TTL of an existing key and keeps
// its value; a missing or expired key is 404 and stays missing.
func TestKVExpire(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v"}`), 204, "")
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/k", tok, `{"ttl":60}`), 204, "")
	equal(t, "after ttl 60", kvGet(t, srv, tok, "k"), kvState{true, "v", 60})
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/k", tok, `{"ttl":31536000}`), 204, "")
	equal(t, "after ttl a year", kvGet(t, srv, tok, "k"), kvState{true, "v", 31536000})
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/k", tok, `{"ttl":null}`), 204, "")
	equal(t, "after ttl null", kvGet(t, srv, tok, "k"), kvState{true, "v", -1})
	// null on a key without a TTL is still 204 (PERSIST alone answers 0).
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/k", tok, `{"ttl":null}`), 204, "")
	equal(t, "after a second null", kvGet(t, srv, tok, "k"), kvState{true, "v", -1})

	// A counter keeps counting with its new TTL.
	wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/c", tok, `{"by":4}`), 200, "")
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/c", tok, `{"ttl":2}`), 204, "")
	equal(t, "counter", kvGet(t, srv, tok, "c"), kvState{true, "4", 2})

	for _, body := range []string{`{"ttl":5}`, `{"ttl":null}`} {
		wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/missing", tok, body), 404, "not_found")
		equal(t, "missing key", kvGet(t, srv, tok, "missing"), kvState{})
	}
	// An expired key is missing.
	advance(srv, 2100*time.Millisecond)
	wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/c", tok, `{"ttl":null}`), 404, "not_found")
	equal(t, "expired counter", kvGet(t, srv, tok, "c"), kvState{})
}

// TestKVExpireBadInput: a ttl out of range or of another type, or no ttl,
// is 400 before any Redis call.
func TestKVExpireBadInput(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v","ttl":60}`), 204, "")
	for _, body := range []string{
		`{"ttl":0}`, `{"ttl":-1}`, `{"ttl":-2}`, `{"ttl":31536001}`, `{"ttl":1.5}`, `{"ttl":1e3}`,
		`{"ttl":"60"}`, `{"ttl":true}`, `{"ttl":[60]}`, `{}`, ``, `{"ttl":60,"ttl":null}`,
		`{"TTL":60}`, `{"ttl":60,"value":"w"}`, `{"ttl":`, `null`, `60`,
	} {
		t.Run(body, func(t *testing.T) {
			before := srv.Calls().Redis
			wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/k", tok, body), 400, "invalid_request")
			equal(t, "redis calls", srv.Calls().Redis, before)
		})
	}
	equal(t, "after refused patches", kvGet(t, srv, tok, "k"), kvState{true, "v", 60})
}

// TestKVConditionalScopes: conditional set, conditional delete and PATCH
// need the tier's .write scope: a read-only token gets 403
// insufficient_scope, an app that did not declare it 403 invalid_scope, and
// nothing changes.
func TestKVConditionalScopes(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	srv.RegisterApp(t, "reader", "storage.shared.read", "storage.shared.write", "storage.private.read")
	readOnly := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: []string{"storage.private.read", "storage.shared.read"}})
	undeclared := srv.Token(cpodtest.Claims{Tenant: "t1", App: "reader", User: "u1", Scopes: allScopes})
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v","ttl":60}`), 204, "")
	cases := []struct{ method, body string }{
		{"PUT", `{"value":"w","ifValue":"v"}`},
		{"PUT", `{"value":"w","ifAbsent":true}`},
		{"DELETE", `{"ifValue":"v"}`},
		{"PATCH", `{"ttl":5}`},
		{"PATCH", `{"ttl":null}`},
	}
	for _, tc := range cases {
		wantStatus(t, do(t, srv, tc.method, "/v1/storage/kv/k", readOnly, tc.body), 403, "insufficient_scope")
		wantStatus(t, do(t, srv, tc.method, "/v1/storage/kv/k", undeclared, tc.body), 403, "invalid_scope")
	}
	equal(t, "after refused calls", kvGet(t, srv, tok, "k"), kvState{true, "v", 60})
}

// TestKVConditionalIsolation: a condition is checked in the caller's own
// namespace only. Another tenant or app that guesses the value cannot
// replace, delete or re-time the key; its ifAbsent succeeds on its own,
// separate key.
func TestKVConditionalIsolation(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	ids := matrix(srv, t)
	owner := srv.Token(ids[0].c)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/lock?tier=private", owner, `{"value":"tok-1","ttl":60}`), 204, "")
	for _, other := range ids[1:] {
		if visible("private", ids[0].c, other.c) {
			continue
		}
		otok := srv.Token(other.c)
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/lock", otok, `{"value":"stolen","ifValue":"tok-1"}`), 412, "conflict")
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/lock", otok, `{"ifValue":"tok-1"}`), 412, "conflict")
		wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/lock", otok, `{"ttl":null}`), 404, "not_found")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/lock", otok, `{"value":"mine","ifAbsent":true}`), 204, "")
		equal(t, "the other's own lock", kvGet(t, srv, otok, "lock"), kvState{true, "mine", -1})
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/lock", otok, `{"ifValue":"mine"}`), 204, "")
	}
	equal(t, "owner's lock", kvGet(t, srv, owner, "lock"), kvState{true, "tok-1", 60})
}

// TestKVLockRace: takers race for one lock with ifAbsent; in every round
// exactly one wins and the lock holds its token. A loser cannot release it;
// the winner can, and the next round starts from a free lock.
func TestKVLockRace(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	const rounds, takers = 10, 12
	for round := range rounds {
		var wins atomic.Int32
		var winner atomic.Value
		var wg sync.WaitGroup
		start := make(chan struct{})
		statuses := make(chan string, takers)
		for i := range takers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				me := fmt.Sprintf("taker-%d-%d", round, i)
				status, body, err := try(srv, "PUT", "/v1/storage/kv/lock", tok, map[string]any{"value": me, "ttl": 30, "ifAbsent": true})
				switch {
				case err != nil:
					statuses <- err.Error()
				case status == http.StatusNoContent:
					wins.Add(1)
					winner.Store(me)
				case status != http.StatusPreconditionFailed:
					statuses <- fmt.Sprintf("%d %s", status, body)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(statuses)
		for s := range statuses {
			t.Fatalf("round %d: unexpected answer %s", round, s)
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d takers won the lock, want exactly 1", round, n)
		}
		held := winner.Load().(string)
		equal(t, "lock value", kvGet(t, srv, tok, "lock").value, held)
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/lock", tok, map[string]string{"ifValue": held + "-not"}), 412, "conflict")
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/lock", tok, map[string]string{"ifValue": held}), 204, "")
	}
}

// TestKVLockRecipe follows README's lock recipe through an expiry: a holder
// whose lock expired and was taken can neither refresh nor release the new
// holder's lock.
func TestKVLockRecipe(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	acquire := func(id string) resp {
		return do(t, srv, "PUT", "/v1/storage/kv/lock:report", tok, map[string]any{"value": id, "ttl": 1, "ifAbsent": true})
	}
	refresh := func(id string) resp {
		return do(t, srv, "PUT", "/v1/storage/kv/lock:report", tok, map[string]any{"value": id, "ttl": 1, "ifValue": id})
	}
	release := func(id string) resp {
		return do(t, srv, "DELETE", "/v1/storage/kv/lock:report", tok, map[string]any{"ifValue": id})
	}
	wantStatus(t, acquire("A"), 204, "")
	wantStatus(t, acquire("B"), 412, "conflict")
	wantStatus(t, refresh("B"), 412, "conflict")
	wantStatus(t, release("B"), 412, "conflict")
	wantStatus(t, refresh("A"), 204, "")
	equal(t, "A's lock", kvGet(t, srv, tok, "lock:report"), kvState{true, "A", 1})
	advance(srv, 1100*time.Millisecond) // A stalls past its TTL
	wantStatus(t, acquire("B"), 204, "")
	wantStatus(t, refresh("A"), 412, "conflict")
	wantStatus(t, release("A"), 412, "conflict")
	equal(t, "B's lock", kvGet(t, srv, tok, "lock:report"), kvState{true, "B", 1})
	wantStatus(t, release("B"), 204, "")
	wantStatus(t, acquire("A"), 204, "")
}

// TestKVCompareAndSetRace: writers increment a counter held as text with a
// read/compare-and-set loop. Were the compare and the set not one atomic
// step, two writers would both succeed over the same value and lose an
// increment; the final count proves none was lost.
func TestKVCompareAndSetRace(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	const writers, each = 4, 15
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/n", tok, `{"value":"0"}`), 204, "")
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	errs := make(chan string, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				status, body, err := try(srv, "GET", "/v1/storage/kv/n", tok, nil)
				var cur struct{ Value string }
				if err == nil && status == http.StatusOK {
					err = json.Unmarshal(body, &cur)
				} else if err == nil {
					err = fmt.Errorf("get: %d %s", status, body)
				}
				if err != nil {
					errs <- err.Error()
					return
				}
				n, _ := strconv.Atoi(cur.Value)
				status, body, err = try(srv, "PUT", "/v1/storage/kv/n", tok, map[string]string{"value": strconv.Itoa(n + 1), "ifValue": cur.Value})
				switch {
				case err != nil:
					errs <- err.Error()
					return
				case status == http.StatusNoContent:
					done++
				case status == http.StatusPreconditionFailed:
					conflicts.Add(1)
				default:
					errs <- fmt.Sprintf("%d %s", status, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	equal(t, "count", kvGet(t, srv, tok, "n").value, strconv.Itoa(writers*each))
	t.Logf("%d compare-and-set conflicts retried", conflicts.Load())
}

// roundTrips is a go-redis hook that counts round trips (a command, or a
// pipeline, sent and answered) and the command names sent, leaving out the
// set-up of a new connection and the change feeds' publish after a write
// (its own round trip, which stores nothing while no stream watches; see
// realtime_redis.go).
type roundTrips struct {
	mu    sync.Mutex
	trips int
	names []string
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if storage.IsRealtimePublish(cmd) {
			return next(ctx, cmd)
		}
		h.mu.Lock()
		h.trips++
		h.names = append(h.names, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		setup := true // a new connection's HELLO, CLIENT SETINFO...
		for _, c := range cmds {
			switch c.Name() {
			case "hello", "client", "auth", "select":
			default:
				setup = false
			}
		}
		if !setup {
			h.mu.Lock()
			h.trips++
			for _, c := range cmds {
				h.names = append(h.names, c.Name())
			}
			h.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

func (h *roundTrips) take() (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, names := h.trips, h.names
	h.trips, h.names = 0, nil
	return n, names
}

// TestKVOneRoundTrip: every kv call takes Redis exactly one round trip
// for its data, never a MULTI/EXEC transaction (a GET used to send MULTI,
// GET, PTTL, EXEC, then GET and PTTL pipelined); a GET sends one GET (the
// value carries its expiry, kv_values.go), every other call one command.
// A write that changes data takes one more, the usage script on its
// tenant's keys (usage_redis.go: another slot on a Cluster, so never the
// same command); a refused write, or one that changes no size or
// expiry, takes none. Each call runs twice: the
// first use of a script on a Redis may take a second round trip (EVALSHA
// answered NOSCRIPT, then EVAL), the second must take the count given.
func TestKVOneRoundTrip(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	redisOnly(t, srv, "Redis commands per call")
	hook := &roundTrips{}
	srv.Redis.AddHook(hook)
	calls := []struct {
		name, method, path, body string
		commands                 int
	}{
		{"set", "PUT", "k", `{"value":"v","ttl":60}`, 2},
		{"get", "GET", "k", "", 1},
		{"head", "HEAD", "k", "", 1},
		{"set ifValue", "PUT", "k", `{"value":"v","ttl":60,"ifValue":"v"}`, 2},
		{"expire", "PATCH", "k", `{"ttl":90}`, 2},
		{"persist", "PATCH", "k", `{"ttl":null}`, 1}, // the second: nothing changes
		{"get missing", "GET", "missing", "", 1},
		{"incr", "POST", "c", `{"by":2}`, 1}, // 2 then 4: the same size
		{"delete ifValue refused", "DELETE", "k", `{"ifValue":"w"}`, 1},
		{"set ifAbsent refused", "PUT", "k", `{"value":"w","ifAbsent":true}`, 1},
		{"delete", "DELETE", "c", "", 1}, // the second: already gone
	}
	for _, tc := range calls {
		for i := range 2 {
			hook.take()
			r := do(t, srv, tc.method, "/v1/storage/kv/"+tc.path, tok, tc.body)
			if r.status >= 500 {
				t.Fatalf("%s: %d %s", tc.name, r.status, r.body)
			}
			trips, names := hook.take()
			if i == 1 && (trips != tc.commands || len(names) != tc.commands) {
				t.Errorf("%s: %d round trips, commands %q; want %d command(s), one per round trip", tc.name, trips, names, tc.commands)
			}
			for _, n := range names {
				if n == "multi" || n == "exec" {
					t.Errorf("%s: sent %q", tc.name, names)
				}
			}
		}
	}
}

// goneAfterGet makes a PTTL answer -2, as when the key expires or is
// deleted between the GET and the PTTL of a kv GET of a legacy value.
type goneAfterGet struct{}

func (goneAfterGet) DialHook(next redis.DialHook) redis.DialHook { return next }
func (goneAfterGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if pttl, ok := cmd.(*redis.DurationCmd); ok && cmd.Name() == "pttl" {
			pttl.SetVal(-2)
		}
		return err
	}
}
func (goneAfterGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestKVGetGoneBetween: a value stored before the expiry prefix (read with
// GET, then PTTL) that vanishes between the two commands answers 404, never
// its value with ttl -1 ("no expiry").
func TestKVGetGoneBetween(t *testing.T) {
	t.Parallel()
	srv, tok := kvServer(t)
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"v","ttl":1}`), 204, "")
	rk := srv.RedisKeys(t)[0]
	if err := srv.Redis.Set(context.Background(), rk, "v", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Redis.AddHook(goneAfterGet{})
	wantStatus(t, do(t, srv, "GET", "/v1/storage/kv/k", tok, nil), 404, "not_found")
}
