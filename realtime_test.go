package storage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// sseEvent is one event of a change feed as the client reads it.
type sseEvent struct {
	id, event, data string
}

// feedKey is the "key" of an event's data.
func (e sseEvent) key() string {
	var d struct{ Key string }
	_ = json.Unmarshal([]byte(e.data), &d)
	return d.Key
}

// sseStream is a change feed being read.
type sseStream struct {
	t      testing.TB
	res    *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
}

// hubs runs f on both hubs: Redis Streams (the default server, over
// miniredis) and in process (the SQLite store).
func hubs(t *testing.T, f func(t *testing.T, opts ...cpodtest.Option)) {
	t.Run("redis", func(t *testing.T) { t.Parallel(); f(t) })
	t.Run("memory", func(t *testing.T) { t.Parallel(); f(t, cpodtest.WithSQLite()) })
}

// rtServer starts a server whose feeds check their token and app every
// 20 ms, with app-a holding every scope.
func rtServer(t *testing.T, opts ...cpodtest.Option) *cpodtest.Server {
	t.Helper()
	srv := cpodtest.NewServer(t, opts...)
	storage.SetRealtimeIntervals(srv.Engine, 10*time.Second, 20*time.Millisecond)
	srv.RegisterApp(t, "app-a", allScopes...)
	srv.RegisterApp(t, "app-b", allScopes...)
	return srv
}

// follow opens a change feed and returns once the server answered 200
// (the subscription exists from then on). lastID, when set, is sent as
// Last-Event-ID.
func follow(t testing.TB, srv *cpodtest.Server, path, tok, lastID string) *sseStream {
	t.Helper()
	s, status := tryFollow(t, srv, path, tok, lastID)
	if status != 200 {
		t.Fatalf("GET %s: %d", path, status)
	}
	return s
}

// tryFollow is follow that returns the status of a refusal.
func tryFollow(t testing.TB, srv *cpodtest.Server, path, tok, lastID string) (*sseStream, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		cancel()
		return nil, res.StatusCode
	}
	equal(t, "content type", res.Header.Get("Content-Type"), "text/event-stream")
	s := &sseStream{t: t, res: res, rd: bufio.NewReader(res.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s, 200
}

func (s *sseStream) close() {
	s.cancel()
	s.res.Body.Close()
}

// next reads the next event, skipping comments; io.EOF when the stream
// ended.
func (s *sseStream) nextErr() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.event != "" || ev.data != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		default:
			return ev, fmt.Errorf("unexpected line %q", line)
		}
	}
}

func (s *sseStream) next() sseEvent {
	s.t.Helper()
	ev, err := s.nextErr()
	if err != nil {
		s.t.Fatalf("reading the feed: %v", err)
	}
	return ev
}

// brief is "event data" of an event, its data without the etag (which
// set and write events must carry).
func (s *sseStream) brief(ev sseEvent) string {
	s.t.Helper()
	var d struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value,omitempty"`
		ETag  string          `json:"etag,omitempty"`
		Size  *int64          `json:"size,omitempty"`
		Error string          `json:"error,omitempty"`
	}
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		s.t.Fatalf("event data %q: %v", ev.data, err)
	}
	if (ev.event == "write" || (ev.event == "set" && strings.Contains(s.res.Request.URL.Path, "/db/"))) && d.ETag == "" {
		s.t.Fatalf("%s event without etag: %s", ev.event, ev.data)
	}
	switch ev.event {
	case "error":
		return "error " + d.Error
	case "reset":
		return "reset"
	}
	d.ETag = ""
	b, _ := json.Marshal(d)
	return ev.event + " " + string(b)
}

// expect reads len(want) events and compares brief of each.
func (s *sseStream) expect(want ...string) []sseEvent {
	s.t.Helper()
	var got []sseEvent
	for i, w := range want {
		ev := s.next()
		got = append(got, ev)
		if g := s.brief(ev); g != w {
			s.t.Fatalf("event %d = %q, want %q", i, g, w)
		}
		if ev.event != "error" && ev.id == "" {
			s.t.Fatalf("event %d has no id", i)
		}
	}
	return got
}

// TestChangesIsolation: tenants, apps, users and tiers each follow the same
// collection name and write through it; each sees exactly its own events,
// in order.
func TestChangesIsolation(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		type who struct {
			tenant, app, user, tier string
		}
		all := []who{
			{"t1", "app-a", "u1", "private"}, {"t1", "app-b", "u1", "private"},
			{"t2", "app-a", "u1", "private"}, {"t1", "app-a", "u1", "user"},
			{"t1", "app-a", "u2", "user"}, {"t1", "app-b", "u2", "shared"},
			{"t2", "app-b", "u2", "shared"},
		}
		toks := make([]string, len(all))
		streams := make([]*sseStream, len(all))
		others := make([]*sseStream, len(all)) // another collection, same place
		for i, w := range all {
			toks[i] = srv.Token(cpodtest.Claims{Tenant: w.tenant, App: w.app, User: w.user, Scopes: allScopes})
			streams[i] = follow(t, srv, "/v1/storage/db/notes/changes?tier="+w.tier, toks[i], "")
			others[i] = follow(t, srv, "/v1/storage/db/other/changes?tier="+w.tier, toks[i], "")
		}
		for round := range 2 {
			for i, w := range all {
				p := fmt.Sprintf("/v1/storage/db/notes/k%d?tier=%s", round, w.tier)
				wantStatus(t, do(t, srv, "PUT", p, toks[i], fmt.Sprintf(`{"by":%d}`, i)), 200, "")
			}
		}
		for i, w := range all {
			wantStatus(t, do(t, srv, "DELETE", "/v1/storage/db/notes/k0?tier="+w.tier, toks[i], nil), 204, "")
			wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/other/x?tier="+w.tier, toks[i], `1`), 200, "")
		}
		for i, w := range all {
			streams[i].expect(
				fmt.Sprintf(`set {"key":"k0","value":{"by":%d}}`, i),
				fmt.Sprintf(`set {"key":"k1","value":{"by":%d}}`, i),
				`delete {"key":"k0"}`,
			)
			others[i].expect(`set {"key":"x","value":1}`)
			// Nothing more: a last write of this place only, then its event.
			wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/notes/end?tier="+w.tier, toks[i], `"end"`), 200, "")
			streams[i].expect(`set {"key":"end","value":"end"}`)
		}
	})
}

// TestChangesKVAndFiles: every kv write (set, conditional set, increment,
// TTL change, delete) and file write (PUT, upload URL, DELETE) is an
// event, filtered by prefix; refused writes are none.
func TestChangesKVAndFiles(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
		kvAll := follow(t, srv, "/v1/storage/kv/changes", tok, "")
		kvRoom := follow(t, srv, "/v1/storage/kv/changes?prefix=room%2F", tok, "")
		kvShared := follow(t, srv, "/v1/storage/kv/changes?tier=shared", tok, "")
		files := follow(t, srv, "/v1/storage/files/changes?prefix=docs%2F", tok, "")

		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/room/1", tok, `{"value":{"a":1},"ttl":60}`), 204, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/other", tok, `{"value":"x\ny"}`), 204, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/room/1", tok, `{"value":"v","ifAbsent":true}`), 412, "conflict")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/room/1", tok, `{"value":"v2","ifValue":"{\"a\":1}"}`), 204, "")
		wantStatus(t, do(t, srv, "POST", "/v1/storage/kv/room/n", tok, `{"by":5}`), 200, "")
		wantStatus(t, do(t, srv, "PATCH", "/v1/storage/kv/room/1", tok, `{"ttl":null}`), 204, "")
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/room/1", tok, `{"ifValue":"nope"}`), 412, "conflict")
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/kv/room/1", tok, nil), 204, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/s?tier=shared", tok, `{"value":"shared"}`), 204, "")

		kvAll.expect(
			`set {"key":"room/1","value":"{\"a\":1}"}`,
			`set {"key":"other","value":"x\ny"}`,
			`set {"key":"room/1","value":"v2"}`,
			`set {"key":"room/n","value":"5"}`,
			`set {"key":"room/1"}`,
			`delete {"key":"room/1"}`,
		)
		kvRoom.expect(
			`set {"key":"room/1","value":"{\"a\":1}"}`,
			`set {"key":"room/1","value":"v2"}`,
			`set {"key":"room/n","value":"5"}`,
			`set {"key":"room/1"}`,
			`delete {"key":"room/1"}`,
		)
		kvShared.expect(`set {"key":"s","value":"shared"}`)

		wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/docs/a.txt", tok, "hello"), 200, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/elsewhere.txt", tok, "x"), 200, "")
		u := signUpload(t, srv, tok, map[string]any{"key": "docs/up.txt"})
		wantStatus(t, sendURL(t, "PUT", u, "", strings.NewReader("uploaded")), 200, "")
		wantStatus(t, do(t, srv, "DELETE", "/v1/storage/files/docs/a.txt", tok, nil), 204, "")
		files.expect(
			`write {"key":"docs/a.txt","size":5}`,
			`write {"key":"docs/up.txt","size":8}`,
			`delete {"key":"docs/a.txt"}`,
		)
	})
}

// TestChangesResume drops the connection at random points and resumes
// with Last-Event-ID: every event arrives, in order, none twice.
func TestChangesResume(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		const n = 60
		s := follow(t, srv, "/v1/storage/db/c/changes", tok, "")
		written := 0
		write := func(k int) {
			for ; written < k && written < n; written++ {
				wantStatus(t, do(t, srv, "PUT", fmt.Sprintf("/v1/storage/db/c/k%d", written), tok, fmt.Sprint(written)), 200, "")
			}
		}
		last := ""
		for got := 0; got < n; {
			// Write a few, read some of them, drop, write more, resume.
			write(got + 1 + rand.IntN(8))
			for range rand.IntN(written - got + 1) {
				ev := s.next()
				equal(t, "event", s.brief(ev), fmt.Sprintf(`set {"key":"k%d","value":%d}`, got, got))
				last = ev.id
				got++
			}
			if got == n {
				break
			}
			// A drop before the first event leaves no id to resume from
			// (what is written meanwhile is lost, by design): drop later.
			if last != "" && rand.IntN(2) == 0 {
				s.close()
				write(got + rand.IntN(5))
				s = follow(t, srv, "/v1/storage/db/c/changes", tok, last)
			}
		}
	})
}

// TestChangesReset: an id the engine no longer retains (or never gave)
// starts with reset, then follows.
func TestChangesReset(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		s := follow(t, srv, "/v1/storage/db/c/changes", tok, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/first", tok, `1`), 200, "")
		first := s.expect(`set {"key":"first","value":1}`)[0]
		// More than the retention: 1500 events in three batches.
		for b := range 3 {
			var ops []map[string]any
			for i := range 500 {
				ops = append(ops, map[string]any{"op": "set", "key": fmt.Sprintf("b%d-%d", b, i), "value": i})
			}
			wantStatus(t, do(t, srv, "POST", "/v1/storage/db/c/batch", tok, map[string]any{"ops": ops}), 200, "")
		}
		for _, id := range []string{first.id, "not-an-id", "1-1"} {
			r := follow(t, srv, "/v1/storage/db/c/changes", tok, id)
			r.expect("reset")
			wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/after", tok, `2`), 200, "")
			// Then the write after it, and nothing written before the
			// reset: it continues from the topic's tail, also on Redis,
			// where this process's reader of the stream may still be
			// behind the batches' last events.
			r.expect(`set {"key":"after","value":2}`)
			r.close()
		}
		// The live stream did not read while 1500 events came: it got them
		// all in order or, where its buffer overflowed, a reset and then
		// the events after it, in order; the writes were not held up.
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/end", tok, `3`), 200, "")
		want, resets, seen := 0, 0, 0
		for {
			ev := s.next()
			if ev.event == "reset" {
				resets++
				// The stream may still have been behind when "end" was
				// written (its handler blocked on the unread connection):
				// then this reset continues from after it, and the client
				// would re-read. What is written once the client got the
				// reset comes as an event.
				wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/end", tok, `4`), 200, "")
				continue
			}
			if ev.key() == "end" {
				if s.brief(ev) != `set {"key":"end","value":3}` {
					t.Logf("the first end was not sent (a reset followed it), the one written after the reset came: %s", s.brief(ev))
				}
				break
			}
			if ev.key() == "after" {
				want = 1500
				continue
			}
			var b, i int
			if _, err := fmt.Sscanf(ev.key(), "b%d-%d", &b, &i); err != nil {
				t.Fatalf("unexpected event %+v", ev)
			}
			if got := b*500 + i; got != want {
				if got < want || resets == 0 {
					t.Fatalf("event %s after %d events and %d resets", ev.key(), want, resets)
				}
				want = got
			}
			want++
			seen++
		}
		t.Logf("%d of 1500 events, %d resets", seen, resets)
	})
}

// TestChangesResetReaderBehind: on Redis, a reset continues from the
// stream's tail in Redis, not from where this process's reader of the
// stream is: with the reader held back while 1500 events are written, a
// stream resuming from a trimmed id gets reset and then only what is
// written after it, once the reader catches up.
func TestChangesResetReaderBehind(t *testing.T) {
	t.Parallel()
	srv := rtServer(t)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	s := follow(t, srv, "/v1/storage/db/c/changes", tok, "")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/first", tok, `1`), 200, "")
	first := s.expect(`set {"key":"first","value":1}`)[0]
	release, ok := storage.HoldRealtimeReaders(srv.Engine)
	if !ok {
		t.Skip("the in-process hub (CPODTEST_STORE=sqlite) has no reader that can fall behind")
	}
	defer release()
	for b := range 3 {
		var ops []map[string]any
		for i := range 500 {
			ops = append(ops, map[string]any{"op": "set", "key": fmt.Sprintf("b%d-%d", b, i), "value": i})
		}
		wantStatus(t, do(t, srv, "POST", "/v1/storage/db/c/batch", tok, map[string]any{"ops": ops}), 200, "")
	}
	r := follow(t, srv, "/v1/storage/db/c/changes", tok, first.id)
	r.expect("reset")
	release() // the reader now delivers the 1500 events: not to r
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/after", tok, `2`), 200, "")
	r.expect(`set {"key":"after","value":2}`)
}

// TestChangesTokenExpiry: the stream ends with an invalid_token error event
// once the token expires on the engine's clock.
func TestChangesTokenExpiry(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes, TTL: time.Minute})
		s := follow(t, srv, "/v1/storage/db/c/changes", tok, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k", tok, `1`), 200, "")
		s.expect(`set {"key":"k","value":1}`)
		srv.AdvanceClock(2 * time.Minute)
		s.expect("error invalid_token")
		if ev, err := s.nextErr(); err != io.EOF {
			t.Fatalf("after the error event: %+v, %v; want the end of the stream", ev, err)
		}
	})
}

// TestChangesScopeLost: the stream ends with invalid_scope once the app no
// longer declares the tier's read scope.
func TestChangesScopeLost(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
		private := follow(t, srv, "/v1/storage/kv/changes", tok, "")
		user := follow(t, srv, "/v1/storage/kv/changes?tier=user", tok, "")
		r := do(t, srv, "PATCH", "/v1/oauth/apps/app-a", srv.AdminToken, map[string]any{"declared_scopes": []string{"storage.private.read", "storage.private.write"}})
		wantStatus(t, r, 200, "")
		user.expect("error invalid_scope")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/k", tok, `{"value":"still"}`), 204, "")
		private.expect(`set {"key":"k","value":"still"}`)
	})
}

// TestChangesReplicas: a write through one replica reaches a stream on
// another, with Redis between them (and in process on the embedded store,
// where one process owns the database).
func TestChangesReplicas(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		rep := srv.NewReplica(t)
		storage.SetRealtimeIntervals(rep.Engine, 10*time.Second, 20*time.Millisecond)
		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
		onRep := follow(t, rep, "/v1/storage/db/c/changes", tok, "")
		onSrv := follow(t, srv, "/v1/storage/db/c/changes", tok, "")
		for i := range 20 {
			target := srv
			if i%2 == 1 {
				target = rep
			}
			wantStatus(t, do(t, target, "PUT", fmt.Sprintf("/v1/storage/db/c/k%d", i), tok, fmt.Sprint(i)), 200, "")
		}
		for _, s := range []*sseStream{onRep, onSrv} {
			var ids []string
			for i := range 20 {
				ev := s.expect(fmt.Sprintf(`set {"key":"k%d","value":%d}`, i, i))[0]
				ids = append(ids, ev.id)
			}
			// Resume on the other replica from the tenth event.
			other := rep
			if s == onRep {
				other = srv
			}
			r := follow(t, other, "/v1/storage/db/c/changes", tok, ids[9])
			for i := 10; i < 20; i++ {
				r.expect(fmt.Sprintf(`set {"key":"k%d","value":%d}`, i, i))
			}
			r.close()
		}
	})
}

// TestChangesLimits: over Limits.MaxStreamsPerTenant a tenant's new stream
// is 429 rate_limited; other tenants are not affected, and a closed
// stream gives its slot back.
func TestChangesLimits(t *testing.T) {
	t.Parallel()
	srv := rtServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxStreamsPerTenant = 2
		c.Limits.MaxStreams = 3
	}))
	t1 := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	t2 := srv.Token(cpodtest.Claims{Tenant: "t2", App: "app-a", Scopes: allScopes})
	t3 := srv.Token(cpodtest.Claims{Tenant: "t3", App: "app-a", Scopes: allScopes})
	a := follow(t, srv, "/v1/storage/db/c/changes", t1, "")
	follow(t, srv, "/v1/storage/kv/changes", t1, "")
	over := func(tok string) {
		t.Helper()
		r := doAccept(t, srv, "/v1/storage/files/changes", tok, "text/event-stream")
		wantStatus(t, r, 429, "rate_limited")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	over(t1)
	follow(t, srv, "/v1/storage/files/changes", t2, "")
	over(t3) // the engine's cap
	a.close()
	// The slot comes back once the engine saw the client leave.
	for {
		s, status := tryFollow(t, srv, "/v1/storage/files/changes?prefix=x", t3, "")
		if status == 200 {
			s.close()
			break
		}
		equal(t, "status", status, 429)
		time.Sleep(10 * time.Millisecond)
	}
}

// doAccept sends a GET with the Accept header and reads the answer whole
// (not for a stream).
func doAccept(t testing.TB, srv *cpodtest.Server, path, tok, accept string) resp {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := srv.HTTP.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, b}
}

// TestChangesRefused: a change feed is authorized like a read and needs
// Accept: text/event-stream; a document, kv key or file named "changes"
// stays reachable with a percent-encoded letter.
func TestChangesRefused(t *testing.T) {
	t.Parallel()
	srv := rtServer(t)
	srv.RegisterApp(t, "app-p", "storage.private.read", "storage.private.write")
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	writeOnly := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: []string{"storage.private.write"}})
	appP := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-p", Scopes: allScopes})
	noUser := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	for _, tc := range []struct {
		name, path, tok, accept string
		status                  int
		code                    string
	}{
		{"no accept", "/v1/storage/db/c/changes", tok, "", 400, "invalid_request"},
		{"json accept", "/v1/storage/kv/changes", tok, "application/json", 400, "invalid_request"},
		{"q=0", "/v1/storage/files/changes", tok, "text/event-stream;q=0", 400, "invalid_request"},
		{"no token", "/v1/storage/db/c/changes", "", "text/event-stream", 401, "invalid_token"},
		{"no read scope", "/v1/storage/db/c/changes", writeOnly, "text/event-stream", 403, "insufficient_scope"},
		{"undeclared", "/v1/storage/kv/changes?tier=shared", appP, "text/event-stream", 403, "invalid_scope"},
		{"user tier without user", "/v1/storage/files/changes?tier=user", noUser, "text/event-stream", 403, "user_required"},
		{"bad tier", "/v1/storage/db/c/changes?tier=x", tok, "text/event-stream", 400, "invalid_request"},
		{"bad collection", "/v1/storage/db/-c/changes", tok, "text/event-stream", 400, "invalid_request"},
		{"unknown parameter", "/v1/storage/kv/changes?key=x", tok, "text/event-stream", 400, "invalid_request"},
		{"bad prefix", "/v1/storage/files/changes?prefix=%2Fa", tok, "text/event-stream", 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, doAccept(t, srv, tc.path, tc.tok, tc.accept), tc.status, tc.code)
		})
	}
	// A document, kv key and file named "changes".
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/changes", tok, `"doc"`), 200, "")
	wantStatus(t, do(t, srv, "HEAD", "/v1/storage/db/c/changes", tok, nil), 200, "")
	r := do(t, srv, "GET", "/v1/storage/db/c/%63hanges", tok, nil)
	wantStatus(t, r, 200, "")
	equal(t, "document", string(r.body), `{"key":"changes","value":"doc"}`+"\n")
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/kv/changes", tok, `{"value":"kv"}`), 204, "")
	r = do(t, srv, "GET", "/v1/storage/kv/%63hanges", tok, nil)
	wantStatus(t, r, 200, "")
	if !strings.Contains(string(r.body), `"value":"kv"`) {
		t.Fatalf("kv: %s", r.body)
	}
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/files/changes", tok, "file"), 200, "")
	r = do(t, srv, "GET", "/v1/storage/files/%63hanges", tok, nil)
	wantStatus(t, r, 200, "")
	equal(t, "file", string(r.body), "file")
}

// TestChangesErase: an admin erase resets the streams under the erased
// location, and only those; an id from before it cannot resume.
func TestChangesErase(t *testing.T) {
	t.Parallel()
	hubs(t, func(t *testing.T, opts ...cpodtest.Option) {
		srv := rtServer(t, opts...)
		u1 := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u1", Scopes: allScopes})
		u2 := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", User: "u2", Scopes: allScopes})
		docs := follow(t, srv, "/v1/storage/db/c/changes?tier=user", u1, "")
		kv := follow(t, srv, "/v1/storage/kv/changes?tier=user", u1, "")
		other := follow(t, srv, "/v1/storage/db/c/changes?tier=user", u2, "")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k?tier=user", u1, `1`), 200, "")
		before := docs.expect(`set {"key":"k","value":1}`)[0]
		wantStatus(t, do(t, srv, "DELETE", "/v1/admin/tenants/t1/users/u1/data", srv.AdminToken, nil), 200, "")
		docs.expect("reset")
		kv.expect("reset")
		wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/c/k?tier=user", u2, `2`), 200, "")
		other.expect(`set {"key":"k","value":2}`) // no reset first
		follow(t, srv, "/v1/storage/db/c/changes?tier=user", u1, before.id).expect("reset")
	})
}

// TestChangesHeartbeat: an idle stream gets a comment line every heartbeat
// interval (here 30 ms), and nothing else.
func TestChangesHeartbeat(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithSQLite())
	storage.SetRealtimeIntervals(srv.Engine, 30*time.Millisecond, 10*time.Millisecond)
	srv.RegisterApp(t, "app-a", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	s := follow(t, srv, "/v1/storage/kv/changes", tok, "")
	comments := 0
	for comments < 4 {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(line, ":"):
			comments++
		case line != "\n":
			t.Fatalf("idle stream sent %q", line)
		}
	}
}
