package storage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	equal(t, "content type", res.Header.Get("Content-Type"), "text/event-stream")
	s := &sseStream{t: t, res: res, rd: bufio.NewReader(res.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
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
