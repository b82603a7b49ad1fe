package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	storage "github.com/cpod/storage"
)

const (
	snapSecret  = "kv-snapshot-test-secret-0123456789"
	snapSigning = "kv-snapshot-test-signing-key-012345"
)

// snapToken mints a token of tenant/app-a/u1 with every scope.
func snapToken(t testing.TB, tenant string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"tenantId": tenant, "client_id": "app-a", "sub": "u1", "exp": time.Now().Add(time.Hour).Unix(),
		"scope": "storage.private.read storage.private.write storage.user.read storage.user.write storage.shared.read storage.shared.write",
	}).SignedString([]byte(snapSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// snapCall sends one kv request to h and returns its status and body.
func snapCall(t testing.TB, h http.Handler, method, path, tok, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, strings.TrimSpace(w.Body.String())
}

// snapKey is one kv key of the test snapshot: how to reach it, and what a
// kv GET answered before the snapshot was written.
type snapKey struct {
	tenant, path string
	value        string
	ttl          int64
}

// oldSnapshot runs the engine as earlier versions did by default (kv in
// miniredis, through the Redis driver), stores kv keys of every kind
// through it (strings, JSON, an empty value, keys with slashes, every
// tier, a tenant whose id starts with '}', TTLs set and changed, a counter
// with its nonces, values stored before the expiry form, a key that
// expires before the import), and writes the snapshot as those versions
// did. It returns the file and the keys, with what a kv GET answered.
func oldSnapshot(t *testing.T) ([]byte, []snapKey) {
	t.Helper()
	ctx := context.Background()
	b, err := Start(ctx, Config{FerretDB: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	e, err := storage.New(storage.Config{
		S3: b.S3, Bucket: b.Bucket, Mongo: b.Mongo, Redis: b.Redis,
		Auth: storage.AuthConfig{Keys: []storage.Key{{Secret: []byte(snapSecret)}}}, SigningKey: []byte(snapSigning),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.RegisterApp(ctx, storage.App{ClientID: "app-a", Name: "a", DeclaredScopes: storage.Scopes, AppType: "service"}); err != nil {
		t.Fatal(err)
	}
	tok := snapToken(t, "t1")
	brace := snapToken(t, "}t")
	for _, c := range []struct{ method, path, tok, body string }{
		{"PUT", "/v1/storage/kv/plain", tok, `{"value":"hello"}`},
		{"PUT", "/v1/storage/kv/json", tok, `{"value":{"a":[1,2]},"ttl":3600}`},
		{"PATCH", "/v1/storage/kv/json", tok, `{"ttl":7200}`},
		{"PUT", "/v1/storage/kv/empty", tok, `{"value":""}`},
		{"PUT", "/v1/storage/kv/%C3%BCn%C3%AF%20%E2%9C%93", tok, `{"value":"ünï ✓","ttl":600}`},
		{"PATCH", "/v1/storage/kv/%C3%BCn%C3%AF%20%E2%9C%93", tok, `{"ttl":null}`},
		{"POST", "/v1/storage/kv/counter", tok, `{"by":5}`},
		{"POST", "/v1/storage/kv/counter", tok, `{"by":5}`},
		{"POST", "/v1/storage/kv/counter", tok, `{"by":5}`},
		{"PUT", "/v1/storage/kv/a/b/c?tier=user", tok, `{"value":"user's","ttl":120}`},
		{"PUT", "/v1/storage/kv/s?tier=shared", tok, `{"value":"shared"}`},
		{"PUT", "/v1/storage/kv/k", brace, `{"value":"brace tenant","ttl":900}`},
		{"PUT", "/v1/storage/kv/soon", tok, `{"value":"gone","ttl":1}`},
	} {
		if st, body := snapCall(t, e, c.method, c.path, c.tok, c.body); st >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, st, body)
		}
	}
	// Values stored before the expiry form: plain text, the TTL in Redis.
	if err := b.Redis.Set(ctx, "cpod:{t1/apps/app-a/legacy}", "old text", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Redis.Set(ctx, "cpod:{t1/apps/app-a/oldcount}", "41", 0).Err(); err != nil {
		t.Fatal(err)
	}
	keys := []snapKey{
		{"t1", "plain", "", 0}, {"t1", "json", "", 0}, {"t1", "empty", "", 0}, {"t1", "%C3%BCn%C3%AF%20%E2%9C%93", "", 0},
		{"t1", "counter", "", 0}, {"t1", "a/b/c?tier=user", "", 0}, {"t1", "s?tier=shared", "", 0}, {"}t", "k", "", 0},
		{"t1", "legacy", "", 0}, {"t1", "oldcount", "", 0},
	}
	for i, k := range keys {
		st, body := snapCall(t, e, "GET", "/v1/storage/kv/"+k.path, snapToken(t, k.tenant), "")
		var got struct {
			Value string
			TTL   int64
		}
		if st != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("GET %s: %d %s", k.path, st, body)
		}
		keys[i].value, keys[i].ttl = got.Value, got.TTL
	}
	path := filepath.Join(t.TempDir(), KVSnapshot)
	if n, err := snapshotKV(b.Miniredis, path); err != nil || n != 12 {
		t.Fatalf("snapshot: %d keys, %v", n, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, keys
}

// startWithSnapshot starts the embedded backends on dir (with a kv.snapshot
// in it, or not) and an engine on the SQLite store.
func startWithSnapshot(t *testing.T, dir string) (*Backends, *storage.Engine, error) {
	t.Helper()
	b, err := Start(context.Background(), Config{Dir: dir})
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	if b.Redis != nil || b.Miniredis != nil {
		t.Fatal("the SQLite store started miniredis too")
	}
	e, err := storage.New(storage.Config{
		S3: b.S3, Bucket: b.Bucket, SQL: b.SQL,
		Auth: storage.AuthConfig{Keys: []storage.Key{{Secret: []byte(snapSecret)}}}, SigningKey: []byte(snapSigning),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The registry was in FerretDB when the snapshot was written.
	if _, err := e.RegisterApp(context.Background(), storage.App{ClientID: "app-a", Name: "a", DeclaredScopes: storage.Scopes, AppType: "service"}); err != nil && !strings.Contains(err.Error(), "exists") {
		t.Fatal(err)
	}
	return b, e, nil
}

// TestKVSnapshotImported: a kv.snapshot written by an earlier version is
// imported on start into the SQLite store, once: every key answers as it
// did (value byte for byte, the TTL counting on), counters count on, an
// expired key is left out; the file becomes kv.snapshot.imported and
// leftover temporary files go. A second start imports nothing again.
func TestKVSnapshotImported(t *testing.T) {
	data, keys := oldSnapshot(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KVSnapshot), data, 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+KVSnapshot+".tmp123456")
	if err := os.WriteFile(tmp, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // "soon" expires
	b, e, err := startWithSnapshot(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		st, body := snapCall(t, e, "GET", "/v1/storage/kv/"+k.path, snapToken(t, k.tenant), "")
		var got struct {
			Value string
			TTL   int64
		}
		if st != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Errorf("GET %s after the import: %d %s", k.path, st, body)
			continue
		}
		if got.Value != k.value {
			t.Errorf("GET %s: value %q, want %q", k.path, got.Value, k.value)
		}
		if k.ttl == -1 && got.TTL != -1 || k.ttl != -1 && (got.TTL > k.ttl || got.TTL < k.ttl-5) {
			t.Errorf("GET %s: ttl %d, want %d (or a few seconds less)", k.path, got.TTL, k.ttl)
		}
	}
	if st, _ := snapCall(t, e, "GET", "/v1/storage/kv/soon", snapToken(t, "t1"), ""); st != 404 {
		t.Errorf("the key that expired before the import: %d, want 404", st)
	}
	for path, want := range map[string]string{"counter": `{"value":16}`, "oldcount": `{"value":42}`} {
		if st, body := snapCall(t, e, "POST", "/v1/storage/kv/"+path, snapToken(t, "t1"), ""); st != 200 || body != want {
			t.Errorf("INCR %s after the import: %d %s, want %s", path, st, body, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, KVSnapshot)); !os.IsNotExist(err) {
		t.Errorf("kv.snapshot is still there: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, KVSnapshotImported)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("kv.snapshot.imported: %v, or not the snapshot", err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("the leftover temporary snapshot is still there: %v", err)
	}
	if !strings.Contains(b.Kinds["kv"], StoreFile) {
		t.Errorf("kv backend %q, want the SQLite store", b.Kinds["kv"])
	}

	// Imported once: a later change stays, whatever the .imported file says.
	// A second upgrade (an earlier version ran again and left a snapshot)
	// keeps the first .imported file and takes the next name.
	if st, _ := snapCall(t, e, "PUT", "/v1/storage/kv/plain", snapToken(t, "t1"), `{"value":"changed"}`); st != 204 {
		t.Fatal(st)
	}
	b.Close(context.Background())
	_, e, err = startWithSnapshot(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, body := snapCall(t, e, "GET", "/v1/storage/kv/plain", snapToken(t, "t1"), ""); st != 200 || !strings.Contains(body, `"changed"`) {
		t.Errorf("after a second start: %d %s, want the changed value", st, body)
	}
	second := []byte(`{"version":1,"savedAt":"2026-01-01T00:00:00Z","keys":[]}`)
	if err := os.WriteFile(filepath.Join(dir, KVSnapshot), second, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := startWithSnapshot(t, dir); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, KVSnapshotImported)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the first kv.snapshot.imported was replaced: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, KVSnapshotImported+".2")); err != nil || !bytes.Equal(got, second) {
		t.Errorf("kv.snapshot.imported.2: %v, or not the second snapshot", err)
	}
}

// kvRows is the whole kv table, one "key=value@expiry" a row.
func kvRows(t testing.TB, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT k, v, exp FROM cpod_kv ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k, v string
		var exp int64
		if err := rows.Scan(&k, &v, &exp); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%q@%d", k, v, exp))
	}
	return strings.Join(out, "\n")
}

// TestKVSnapshotDamaged: a kv.snapshot with a changed byte where the
// change shows (the JSON, a field, a type, the version, the key prefix, a
// value that is no longer UTF-8, an expiry that no longer matches the
// value's) or cut short stops the start with a message saying so, imports
// nothing and leaves the file as it was.
func TestKVSnapshotDamaged(t *testing.T) {
	data, _ := oldSnapshot(t)
	s := string(data)
	// A key's base64 with "cpod:" turned into "cpoe:".
	var snap kvSnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		t.Fatal(err)
	}
	var keyB64, otherKey, valueB64, badValue, expDigits, movedExp string
	for _, e := range snap.Keys {
		k := string(e.Key)
		if strings.HasSuffix(k, "/plain}") {
			keyB64 = base64.StdEncoding.EncodeToString(e.Key)
			otherKey = base64.StdEncoding.EncodeToString([]byte(strings.Replace(k, "cpod:", "cpoe:", 1)))
			valueB64 = base64.StdEncoding.EncodeToString(e.Value)
			v := append([]byte{}, e.Value...)
			v[len(v)-1] |= 0x80 // the last letter of "hello", no longer UTF-8
			badValue = base64.StdEncoding.EncodeToString(v)
		}
		if strings.HasSuffix(k, "/json}") {
			expDigits = fmt.Sprint(e.ExpireAt)
			movedExp = fmt.Sprint(e.ExpireAt + 10*60*1000) // ten minutes later than the value's
		}
	}
	if keyB64 == "" || expDigits == "" {
		t.Fatal("the test snapshot lacks its keys")
	}
	for name, bad := range map[string]string{
		"a brace":         strings.Replace(s, `{"key"`, `["key"`, 1),
		"a field name":    strings.Replace(s, `"type":"string"`, `"typf":"string"`, 1),
		"a type":          strings.Replace(s, `"type":"string"`, `"type":"strinf"`, 1),
		"the version":     strings.Replace(s, `"version":1`, `"version":3`, 1),
		"the key prefix":  strings.Replace(s, `"`+keyB64+`"`, `"`+otherKey+`"`, 1),
		"a value's UTF-8": strings.Replace(s, `"`+valueB64+`"`, `"`+badValue+`"`, 1),
		"an expiry":       strings.Replace(s, expDigits, movedExp, 1),
		"cut short":       s[:len(s)*2/3],
		"a line break":    strings.Replace(s, `"`+valueB64+`"`, `"`+valueB64[:4]+`\n`+valueB64[4:]+`"`, 1),
		"keys out of order": func() string {
			var v map[string]any
			json.Unmarshal(data, &v)
			ks := v["keys"].([]any)
			ks[0], ks[1] = ks[1], ks[0]
			b, _ := json.Marshal(v) // fields in name order: keys, savedAt, version
			return `{"version":1,"savedAt":"2026-01-01T00:00:00Z","keys":` + string(b[strings.Index(string(b), "["):strings.LastIndex(string(b), `],"savedAt"`)+1]) + `}`
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			if bad == s {
				t.Fatal("the damage changed nothing")
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, KVSnapshot), []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := startWithSnapshot(t, dir)
			if err == nil {
				t.Fatal("started on a damaged kv snapshot")
			}
			if !strings.Contains(err.Error(), "kv.snapshot is damaged") {
				t.Errorf("error %q does not say the kv snapshot is damaged", err)
			}
			t.Log(err)
			if got, err := os.ReadFile(filepath.Join(dir, KVSnapshot)); err != nil || string(got) != bad {
				t.Errorf("the damaged snapshot was not left as it was: %v", err)
			}
			db, err := OpenSQLite(filepath.Join(dir, StoreFile))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM cpod_kv`).Scan(&n); err != nil || n != 0 {
				t.Errorf("kv rows after the refused import: %d, %v", n, err)
			}
		})
	}
}

// TestKVSnapshotEveryByte changes each byte of a snapshot in turn (xor 1)
// and imports it: a change anywhere but inside a key's or value's bytes
// (their base64) or an expiry's digits is refused or changes nothing
// imported. Inside those, the format (no checksum) cannot see every
// change: a letter for another letter is another valid value. How many it
// caught is logged.
func TestKVSnapshotEveryByte(t *testing.T) {
	data, _ := oldSnapshot(t)
	db, err := OpenSQLite(filepath.Join(t.TempDir(), StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	ctx := context.Background()
	load := func(b []byte) (string, error) {
		if _, err := db.Exec(`DELETE FROM cpod_kv`); err != nil && !strings.Contains(err.Error(), "no such table") {
			t.Fatal(err)
		}
		im, err := storage.NewKVImport(ctx, db, "cpod:", now)
		if err != nil {
			t.Fatal(err)
		}
		if err := readKVSnapshot(bytes.NewReader(b), func(k storage.RedisKey) error { return im.Add(ctx, k) }); err != nil {
			im.Rollback()
			return "", err
		}
		if _, err := im.Commit(); err != nil {
			t.Fatal(err)
		}
		return kvRows(t, db), nil
	}
	want, err := load(data)
	if err != nil {
		t.Fatal(err)
	}
	// The payload: the base64 of keys, values and hash fields (between
	// their quotes), and the digits of expiries.
	payload := make([]bool, len(data))
	mark := func(from, to int) {
		for i := from; i < to; i++ {
			payload[i] = true
		}
	}
	for _, m := range regexp.MustCompile(`"(?:key|value)":"([^"]*)"|"expireAt":([0-9]+)`).FindAllSubmatchIndex(data, -1) {
		if m[2] >= 0 {
			mark(m[2], m[3])
		} else {
			mark(m[4], m[5])
		}
	}
	for _, m := range regexp.MustCompile(`"fields":\[(?:\["[^"]*","[^"]*"\],?)+\]`).FindAllIndex(data, -1) {
		for _, s := range regexp.MustCompile(`"[^"]*"`).FindAllIndex(data[m[0]+len(`"fields":`):m[1]], -1) {
			off := m[0] + len(`"fields":`)
			mark(off+s[0]+1, off+s[1]-1)
		}
	}
	var structural, caught, payloadBytes, payloadCaught, payloadSame int
	for i := range data {
		b := bytes.Clone(data)
		b[i] ^= 1
		got, err := load(b)
		switch {
		case payload[i]:
			payloadBytes++
			if err != nil {
				payloadCaught++
			} else if got == want {
				payloadSame++
			}
		default:
			structural++
			if err != nil {
				caught++
			} else if got != want {
				t.Errorf("byte %d (%q in %q) changed: imported other data without an error", i, data[i], data[max(0, i-20):min(len(data), i+20)])
			}
		}
	}
	t.Logf("%d bytes: %d outside keys' and values' bytes, %d of them refused (the rest change nothing imported); "+
		"%d inside, %d refused, %d changing nothing imported, %d imported changed",
		len(data), structural, caught, payloadBytes, payloadCaught, payloadSame, payloadBytes-payloadCaught-payloadSame)
}

// TestKVSnapshotRefusedWhenReadable: a snapshot others can read is refused
// at start, like the secrets beside it, rather than imported.
func TestKVSnapshotRefusedWhenReadable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KVSnapshot), []byte(`{"version":1,"savedAt":"2026-01-01T00:00:00Z","keys":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := startWithSnapshot(t, dir)
	if err == nil || !strings.Contains(err.Error(), "readable by other users") {
		t.Fatalf("start with a kv snapshot readable by others: %v", err)
	}
}
