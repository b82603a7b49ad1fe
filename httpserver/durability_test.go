package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var killRounds = flag.Int("kill.rounds", 3, "how many times TestDocumentsSurviveSIGKILL kills the server under writers")

// docState is a document as a client last saw it acknowledged: its value's
// JSON text ("" for no document) and its ETag ("" when the answer carried
// none, as in a batch); fresh until checked after a restart. As an open
// outcome of a PATCH in flight, patch is the merge patch sent.
type docState struct {
	value string
	etag  string
	fresh bool
	patch string
}

// ledger keeps what the server acknowledged, and the outcomes still open
// for the writes in flight when it was killed.
type ledger struct {
	mu      sync.Mutex
	acked   map[string]docState
	pending map[string][]docState // a write in flight at the kill: either outcome
	ops     int                   // acknowledged writes
}

func (l *ledger) ack(key string, s docState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.fresh = true
	l.acked[key] = s
	l.ops++
}

func (l *ledger) unsure(key string, s docState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending[key] = append(l.pending[key], s)
}

func (l *ledger) get(key string) (docState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.acked[key]
	return s, ok
}

// TestDocumentsSurviveSIGKILL: every write the server acknowledged (PUT,
// If-Match PUT, batch, PATCH, DELETE) is there after the process is killed
// with SIGKILL at a random moment under concurrent writers and restarted on
// the same data directory: 0 lost, and ETags unchanged. Writes in flight at
// the kill may land or not, never half. -kill.rounds sets how many kills
// (default 3).
func TestDocumentsSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir)
	token := setupApp(t, srv, dataDir)
	l := &ledger{acked: map[string]docState{}, pending: map[string][]docState{}}
	const writers = 4
	next := make([]int, writers) // each writer's next new key
	for round := 0; round < *killRounds; round++ {
		var killed atomic.Bool
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
		before := l.ops
		var wg sync.WaitGroup
		for g := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &killWriter{t: t, url: srv.URL, token: token, client: client, l: l, killed: &killed, g: g, rng: rand.New(rand.NewPCG(uint64(round), uint64(g)))}
				next[g] = w.run(round, next[g])
			}()
		}
		// A random moment once the writers are going.
		deadline := time.Now().Add(30 * time.Second)
		for {
			l.mu.Lock()
			n := l.ops - before
			l.mu.Unlock()
			if n >= 40 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d writes acknowledged in 30s", round, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(800 * time.Millisecond))))
		killed.Store(true)
		srv.stop(t, syscall.SIGKILL)
		wg.Wait()
		client.CloseIdleConnections()
		l.mu.Lock()
		t.Logf("round %d: killed after %d acknowledged writes (%d in all), %d keys with a write in flight", round, l.ops-before, l.ops, len(l.pending))
		l.mu.Unlock()
		if t.Failed() {
			return
		}

		srv = startServer(t, dataDir)
		checkLedger(t, srv, token, l)
		if t.Failed() {
			return
		}
	}
	checkSQLite(t, filepath.Join(dataDir, "cpod.db"))
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, srv.stderr)
	}
}

// killWriter writes documents of its own until the server goes away.
type killWriter struct {
	t      *testing.T
	url    string
	token  string
	client *http.Client
	l      *ledger
	killed *atomic.Bool
	g      int
	rng    *rand.Rand
}

func (w *killWriter) key(i int) string { return fmt.Sprintf("w%d-%06d", w.g, i) }

// run writes from key next on and returns the next key still unused.
func (w *killWriter) run(round, next int) int {
	for i := 0; ; i++ {
		var ok bool
		old := w.key(max(0, next-1-w.rng.IntN(min(next, 20)+1)))
		switch op := i % 10; {
		case op == 3 && next > 0: // PATCH an earlier document
			ok = w.patch(old, fmt.Sprintf(`{"p":%d,"r":%d}`, i, round))
		case op == 5 && next > 0: // If-Match PUT an earlier document
			ok = w.put(old, fmt.Sprintf(`{"cas":%d,"r":%d}`, i, round), true)
		case op == 7 && next > 0:
			ok = w.remove(old)
		case op == 9: // a batch: 20 new documents, an overwrite, a delete
			keys := []string{}
			for j := 0; j < 20; j++ {
				keys = append(keys, w.key(next+j))
			}
			next += 20
			ok = w.batch(keys, round, i, old)
		default:
			ok = w.put(w.key(next), fmt.Sprintf(`{"g":%d,"i":%d,"r":%d,"s":"%s"}`, w.g, i, round, strings.Repeat("x", i%50)), false)
			next++
		}
		if !ok {
			return next
		}
	}
}

// send sends one write; ok false means the server is gone (the write is
// then in flight: either outcome may hold).
func (w *killWriter) send(method, path string, hdr map[string]string, body string) (status int, etag string, resBody []byte, ok bool) {
	req, err := http.NewRequest(method, w.url+path, strings.NewReader(body))
	if err != nil {
		w.t.Error(err)
		return 0, "", nil, false
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := w.client.Do(req)
	if err == nil {
		resBody, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err != nil {
		if !w.killed.Load() {
			w.t.Errorf("%s %s before the kill: %v", method, path, err)
		}
		return 0, "", nil, false
	}
	return res.StatusCode, res.Header.Get("ETag"), resBody, true
}

// want reports a status other than want as a failure (ok false stops the
// writer).
func (w *killWriter) want(what string, status int, body []byte, want int) bool {
	if status != want {
		w.t.Errorf("%s: status %d, want %d: %s", what, status, want, body)
		return false
	}
	return true
}

func (w *killWriter) put(key, value string, ifMatch bool) bool {
	var hdr map[string]string
	if ifMatch {
		cur, known := w.l.get(key)
		if !known || cur.value == "" || cur.etag == "" {
			return true // nothing to match: skip
		}
		hdr = map[string]string{"If-Match": cur.etag}
	}
	status, etag, body, ok := w.send("PUT", "/v1/storage/db/dur/"+key, hdr, value)
	if !ok {
		w.l.unsure(key, docState{value: value})
		return false
	}
	if !w.want("PUT "+key, status, body, 200) {
		return false
	}
	w.l.ack(key, docState{value: value, etag: etag})
	return true
}

func (w *killWriter) patch(key, patch string) bool {
	cur, known := w.l.get(key)
	if !known || cur.value == "" {
		return true
	}
	status, etag, body, ok := w.send("PATCH", "/v1/storage/db/dur/"+key, map[string]string{"Content-Type": "application/merge-patch+json"}, patch)
	if !ok {
		w.l.unsure(key, docState{value: cur.value, patch: patch})
		return false
	}
	if !w.want("PATCH "+key, status, body, 200) {
		return false
	}
	var item struct{ Value json.RawMessage }
	if err := json.Unmarshal(body, &item); err != nil {
		w.t.Errorf("PATCH %s: %s", key, body)
		return false
	}
	w.l.ack(key, docState{value: string(item.Value), etag: etag})
	return true
}

func (w *killWriter) remove(key string) bool {
	status, _, body, ok := w.send("DELETE", "/v1/storage/db/dur/"+key, nil, "")
	if !ok {
		w.l.unsure(key, docState{})
		return false
	}
	if !w.want("DELETE "+key, status, body, 204) {
		return false
	}
	w.l.ack(key, docState{})
	return true
}

func (w *killWriter) batch(keys []string, round, i int, old string) bool {
	var ops []string
	vals := map[string]string{}
	for j, k := range keys {
		v := fmt.Sprintf(`{"b":%d,"j":%d,"r":%d}`, i, j, round)
		vals[k] = v
		ops = append(ops, fmt.Sprintf(`{"op":"set","key":%q,"value":%s}`, k, v))
	}
	ov := fmt.Sprintf(`{"over":%d,"r":%d}`, i, round)
	ops = append(ops, fmt.Sprintf(`{"op":"set","key":%q,"value":%s}`, old, ov))
	status, _, body, ok := w.send("POST", "/v1/storage/db/dur/batch", nil, `{"ops":[`+strings.Join(ops, ",")+`]}`)
	if !ok {
		for k, v := range vals {
			w.l.unsure(k, docState{value: v})
		}
		w.l.unsure(old, docState{value: ov})
		return false
	}
	if !w.want("batch", status, body, 200) {
		return false
	}
	var res struct{ Succeeded, Failed int }
	if err := json.Unmarshal(body, &res); err != nil || res.Failed != 0 || res.Succeeded != len(ops) {
		w.t.Errorf("batch: %s", body)
		return false
	}
	for k, v := range vals {
		w.l.ack(k, docState{value: v})
	}
	w.l.ack(old, docState{value: ov})
	return true
}

// checkLedger reads every document of the collection back and checks it
// against the ledger: each acknowledged write is there with its ETag, and
// a document with a write in flight at the kill holds either outcome.
// The open outcomes are then settled to what the server holds.
func checkLedger(t *testing.T, srv *proc, token string, l *ledger) {
	t.Helper()
	stored := map[string]string{}
	body := map[string]any{"sort": map[string]int{"r": 1}, "limit": 1000}
	for {
		b, _ := json.Marshal(body)
		r := call(t, "POST", srv.URL+"/v1/storage/db/dur/query", token, nil, b)
		want(t, "query after the restart", r, 200)
		var page struct {
			Items []struct {
				Key   string
				Value json.RawMessage
			}
			NextCursor *string
		}
		decodeBody(t, "query", r, &page)
		for _, it := range page.Items {
			stored[it.Key] = string(it.Value)
		}
		if page.NextCursor == nil {
			break
		}
		body["cursor"] = *page.NextCursor
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.acked))
	for k := range l.acked {
		keys = append(keys, k)
	}
	for k := range l.pending {
		if _, ok := l.acked[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	lost := 0
	for _, k := range keys {
		got, present := stored[k]
		acked := l.acked[k]
		outcomes := append([]docState{acked}, l.pending[k]...)
		match := -1
		for i, o := range outcomes {
			if o.patch != "" && present && jsonEqual(got, mergePatch(o.value, o.patch)) ||
				o.patch == "" && (o.value == "" && !present || o.value != "" && present && got == o.value) {
				match = i
				break
			}
		}
		if match < 0 {
			lost++
			if lost <= 10 {
				t.Errorf("%s: stored %q (present %v); acknowledged %q, in flight %v", k, got, present, acked.value, l.pending[k])
			}
			continue
		}
		if match == 0 && acked.fresh && acked.etag != "" {
			r := call(t, "GET", srv.URL+"/v1/storage/db/dur/"+k, token, nil, nil)
			if r.status != 200 || r.header.Get("ETag") != acked.etag {
				t.Errorf("%s: ETag %s after the restart, acknowledged %s", k, r.header.Get("ETag"), acked.etag)
			}
		}
		// Settle: what is stored is now what the next round builds on.
		if present {
			etag := ""
			if match == 0 {
				etag = acked.etag
			}
			l.acked[k] = docState{value: got, etag: etag}
		} else {
			l.acked[k] = docState{}
		}
	}
	for k := range stored {
		if _, ok := l.acked[k]; !ok {
			t.Errorf("%s is stored but was never written", k)
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d documents lost an acknowledged write", lost, len(keys))
	}
	l.pending = map[string][]docState{}
}

// checkSQLite runs SQLite's integrity check on the store (another
// connection, beside the running server's).
func checkSQLite(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(context.Background(), "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q, %v", res, err)
	}
}

// mergePatch applies a merge patch of top-level members without nulls (the
// writers' patches) to the JSON object value.
func mergePatch(value, patch string) map[string]any {
	var v, p map[string]any
	_ = json.Unmarshal([]byte(value), &v)
	_ = json.Unmarshal([]byte(patch), &p)
	for k, x := range p {
		v[k] = x
	}
	return v
}

// jsonEqual reports whether the JSON object text a holds the members of b.
func jsonEqual(a string, b map[string]any) bool {
	var v map[string]any
	return json.Unmarshal([]byte(a), &v) == nil && reflect.DeepEqual(v, b)
}
