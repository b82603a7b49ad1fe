package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"syscall"
	"testing"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/internal/openapicheck"
	"github.com/cpod/storage/internal/tmpfstest"
)

// conforms fails the test unless the exchange is one openapi.json allows:
// its status documented for the operation, its headers and JSON body valid.
func conforms(t *testing.T, method, path string, r response) {
	t.Helper()
	c, err := openapicheck.New(storage.OpenAPIDocument())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, "http://server"+path, nil)
	route, params := c.Find(method, req.URL.EscapedPath())
	body := r.body
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		body = nil
	}
	if err := c.Check(req, route, params, nil, openapicheck.Response{Status: r.status, Header: r.header, Body: body}); err != nil {
		t.Fatalf("%s %s answered %d, which openapi.json does not allow: %v\n%s", method, path, r.status, err, r.body)
	}
}

// wantFull fails the test unless r is 507 insufficient_storage without
// Retry-After, as openapi.json describes it.
func wantFull(t *testing.T, what, method, path string, r response) {
	t.Helper()
	var e struct{ Error, Message string }
	_ = json.Unmarshal(r.body, &e)
	if r.status != 507 || e.Error != "insufficient_storage" || e.Message == "" {
		t.Fatalf("%s on a full disk: %d %s, want 507 insufficient_storage", what, r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra != "" {
		t.Fatalf("%s: 507 with Retry-After %q", what, ra)
	}
	conforms(t, method, path, r)
}

// kvInMemory reports whether the server's startup log says its kv store
// keeps values in memory (the embedded miniredis): then a full disk does
// not refuse kv writes, it only keeps their snapshot from being saved.
func kvInMemory(t *testing.T, srv *proc) bool {
	t.Helper()
	for _, line := range strings.Split(srv.stderr.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "backend" && rec["store"] == "kv" {
			b, _ := rec["backend"].(string)
			return strings.Contains(b, "in memory")
		}
	}
	t.Fatalf("the server logged no kv backend:\n%s", srv.stderr)
	return false
}

// TestDiskFull: the built server on a 24 MiB disk (a tmpfs; root only, as
// in CI). File uploads fill it until the store refuses them with 507
// insufficient_storage (never 503 with Retry-After, never 500); then
// document writes, app registrations (and kv writes where kv is on disk)
// are refused the same way; reads keep working; /readyz is 503 naming the
// free space. Deleting files through the API frees space: /readyz is 200
// again, writes work again, and every acknowledged file, document and kv
// value reads back exactly, before and after a restart.
func TestDiskFull(t *testing.T) {
	dir := tmpfstest.Mount(t, 24<<20)
	srv := startServer(t, dir, "-min-free-space", "2MiB")
	token := setupApp(t, srv, dir)
	rng := rand.New(rand.NewPCG(22, 4))
	content := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}

	type readiness struct {
		Error, Message, Status string
		Checks                 map[string]struct {
			Status                              string
			Message                             string
			FreeBytes, TotalBytes, MinFreeBytes int64
		}
	}
	ready := func() (response, readiness) {
		r := call(t, "GET", srv.URL+"/readyz", "", nil, nil)
		conforms(t, "GET", "/readyz", r)
		var rd readiness
		decodeBody(t, "readyz", r, &rd)
		return r, rd
	}
	r, rd := ready()
	want(t, "readyz on an empty disk", r, 200)
	if d := rd.Checks["disk"]; d.Status != "ok" || d.TotalBytes != 24<<20 || d.MinFreeBytes != 2<<20 || d.FreeBytes <= 2<<20 {
		t.Fatalf("readyz disk check on an empty 24 MiB disk: %+v", d)
	}

	files := map[string][]byte{}
	docs := map[string]string{}
	kv := map[string]string{}
	putFile := func(name string, data []byte) response {
		return call(t, "PUT", srv.URL+"/v1/storage/files/"+name, token, map[string]string{"Content-Type": "application/octet-stream"}, data)
	}
	putDoc := func(key, text string) response {
		b, _ := json.Marshal(map[string]any{"text": text})
		return call(t, "PUT", srv.URL+"/v1/storage/db/notes/"+key, token, nil, b)
	}
	putKV := func(key, value string) response {
		b, _ := json.Marshal(map[string]any{"value": value})
		return call(t, "PUT", srv.URL+"/v1/storage/kv/"+key, token, nil, b)
	}
	for i := range 5 {
		key, text := fmt.Sprintf("early-%d", i), strings.Repeat(fmt.Sprint(i), 1000)
		want(t, "early document", putDoc(key, text), 200)
		docs[key] = text
		k, v := fmt.Sprintf("early-%d", i), fmt.Sprintf("value-%d", i)
		want(t, "early kv", putKV(k, v), 204)
		kv[k] = v
	}

	// A file larger than the whole disk is refused while its body is
	// still arriving; nothing of it stays.
	huge := content(40 << 20)
	wantFull(t, "PUT a file larger than the disk", "PUT", "/v1/storage/files/huge.bin", putFile("huge.bin", huge))
	want(t, "GET the refused file", call(t, "GET", srv.URL+"/v1/storage/files/huge.bin", token, nil, nil), 404)
	// The same without Content-Length: a multipart upload whose part is
	// refused.
	req, _ := http.NewRequest("PUT", srv.URL+"/v1/storage/files/huge-chunked.bin", io.MultiReader(bytes.NewReader(huge)))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	wantFull(t, "PUT a chunked file larger than the disk", "PUT", "/v1/storage/files/huge-chunked.bin", response{res.StatusCode, res.Header, b})

	// Fill the disk with files, smaller and smaller, until even a small
	// one is refused.
	n := 0
	for _, size := range []int{1 << 20, 64 << 10, 4 << 10} {
		for {
			name := fmt.Sprintf("fill/%03d.bin", n)
			n++
			data := content(size)
			r := putFile(name, data)
			if r.status == 200 {
				files[name] = data
				if n > 200 {
					t.Fatal("a 24 MiB disk took 200 files")
				}
				continue
			}
			wantFull(t, "PUT file of "+fmt.Sprint(size), "PUT", "/v1/storage/files/"+name, r)
			break
		}
	}
	// Documents (SQLite) fill what the files left, and then are refused.
	for i := 0; ; i++ {
		key := fmt.Sprintf("late-%03d", i)
		text := strings.Repeat(string(rune('a'+i%26)), 64<<10)
		r := putDoc(key, text)
		if r.status == 200 && i < 100 {
			docs[key] = text
			continue
		}
		wantFull(t, "PUT document", "PUT", "/v1/storage/db/notes/"+key, r)
		break
	}
	app := `{"client_id":"app-late","name":"Late","declared_scopes":["storage.private.read"],"app_type":"service"}`
	wantFull(t, "register an app", "POST", "/v1/oauth/apps", call(t, "POST", srv.URL+"/v1/oauth/apps", readFile(t, dir+"/"+adminTokenFile), nil, []byte(app)))
	if kvInMemory(t, srv) {
		t.Log("kv lives in memory here (embedded miniredis): a full disk does not refuse its writes")
		want(t, "kv write with kv in memory", putKV("late", "v"), 204)
		kv["late"] = "v"
	} else {
		for i := 0; ; i++ {
			key, value := fmt.Sprintf("late-%03d", i), strings.Repeat("k", 64<<10)
			r := putKV(key, value)
			if r.status == 204 && i < 100 {
				kv[key] = value
				continue
			}
			wantFull(t, "PUT kv", "PUT", "/v1/storage/kv/"+key, r)
			break
		}
	}
	r, rd = ready()
	want(t, "readyz on a full disk", r, 503)
	if !strings.Contains(rd.Message, "disk:") || !strings.Contains(rd.Message, "below the floor of 2.0 MiB") || rd.Checks["disk"].Status != "unavailable" || rd.Checks["disk"].FreeBytes >= 2<<20 {
		t.Fatalf("readyz on a full disk: %s", r.body)
	}

	// Reads keep working.
	check := func(when string) {
		t.Helper()
		for name, data := range files {
			r := call(t, "GET", srv.URL+"/v1/storage/files/"+name, token, nil, nil)
			if r.status != 200 || !bytes.Equal(r.body, data) {
				t.Fatalf("%s: GET %s: %d, %d bytes of %d", when, name, r.status, len(r.body), len(data))
			}
		}
		for key, text := range docs {
			r := call(t, "GET", srv.URL+"/v1/storage/db/notes/"+key, token, nil, nil)
			want(t, when+": GET document "+key, r, 200)
			var d struct{ Value struct{ Text string } }
			decodeBody(t, key, r, &d)
			if d.Value.Text != text {
				t.Fatalf("%s: document %s changed (%d bytes of %d)", when, key, len(d.Value.Text), len(text))
			}
		}
		for key, value := range kv {
			r := call(t, "GET", srv.URL+"/v1/storage/kv/"+key, token, nil, nil)
			want(t, when+": GET kv "+key, r, 200)
			var v struct{ Value string }
			decodeBody(t, key, r, &v)
			if v.Value != value {
				t.Fatalf("%s: kv %s changed", when, key)
			}
		}
		want(t, when+": list files", call(t, "GET", srv.URL+"/v1/storage/files?prefix=fill/", token, nil, nil), 200)
		want(t, when+": query documents", call(t, "POST", srv.URL+"/v1/storage/db/notes/query", token, nil, []byte(`{"limit":1000}`)), 200)
	}
	check("disk full")

	// Deleting files through the API frees space.
	freed := 0
	for name, data := range files {
		if len(data) < 1<<20 {
			continue
		}
		want(t, "DELETE "+name, call(t, "DELETE", srv.URL+"/v1/storage/files/"+name, token, nil, nil), 204)
		delete(files, name)
		if freed += len(data); freed >= 8<<20 {
			break
		}
	}
	r, _ = ready()
	want(t, "readyz after freeing space", r, 200)
	data := content(1 << 20)
	want(t, "PUT file after freeing space", putFile("after.bin", data), 200)
	files["after.bin"] = data
	want(t, "PUT document after freeing space", putDoc("after", "after"), 200)
	docs["after"] = "after"
	want(t, "PUT kv after freeing space", putKV("after", "after"), 204)
	kv["after"] = "after"
	check("space freed")

	// And across a restart.
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("graceful stop: exit %d\n%s", code, srv.stderr)
	}
	srv = startServer(t, dir, "-min-free-space", "2MiB")
	check("after a restart")
}

// TestDiskFloorWarning: a server whose data directory's disk is already
// below the free-space floor says so at start, naming the setting, and
// /readyz answers 503 from the start (here the default floor, at least
// 64 MiB, on a 24 MiB disk).
func TestDiskFloorWarning(t *testing.T) {
	dir := tmpfstest.Mount(t, 24<<20)
	srv := startServer(t, dir)
	if logs := srv.stderr.String(); !strings.Contains(logs, "/readyz answers 503 until the data directory's disk has more free space") || !strings.Contains(logs, "CPOD_MIN_FREE_SPACE (-min-free-space)") {
		t.Fatalf("no warning about the free-space floor:\n%s", logs)
	}
	r := call(t, "GET", srv.URL+"/readyz", "", nil, nil)
	want(t, "readyz below the default floor", r, 503)
	conforms(t, "GET", "/readyz", r)
	if !strings.Contains(string(r.body), "below the floor of 64.0 MiB") {
		t.Fatalf("readyz: %s", r.body)
	}
}

// TestDiskFullWithQuotas: the same 24 MiB disk with -default-quota
// files.bytes=8MiB. One tenant uploads until its quota refuses it (507
// quota_exceeded, long before the disk is full); every other tenant's
// files, documents and kv writes keep working, and the full tenant can
// still delete.
func TestDiskFullWithQuotas(t *testing.T) {
	dir := tmpfstest.Mount(t, 24<<20)
	srv := startServer(t, dir, "-min-free-space", "2MiB", "-default-quota", "files.bytes=8MiB")
	full := setupApp(t, srv, dir)
	other := mintToken(t, dir, "--tenant", "t2", "--app", "app-demo", "--user", "u1", "--scope", "storage.private.read,storage.private.write")
	data := bytes.Repeat([]byte("x"), 1<<20)
	put := func(token, path string, body []byte) response {
		return call(t, "PUT", srv.URL+path, token, map[string]string{"Content-Type": "application/octet-stream"}, body)
	}
	n := 0
	for ; ; n++ {
		r := put(full, fmt.Sprintf("/v1/storage/files/f%02d.bin", n), data)
		if r.status == http.StatusOK {
			if n > 8 {
				t.Fatal("the 8 MiB quota took more than 8 files of 1 MiB")
			}
			continue
		}
		conforms(t, "PUT", "/v1/storage/files/f.bin", r)
		var e struct{ Error string }
		decodeBody(t, "refusal", r, &e)
		if r.status != http.StatusInsufficientStorage || e.Error != "quota_exceeded" || r.header.Get("Retry-After") != "" {
			t.Fatalf("upload %d over the quota: %d %s", n, r.status, r.body)
		}
		break
	}
	if n != 8 {
		t.Fatalf("%d files of 1 MiB fit an 8 MiB quota, want 8", n)
	}
	for i := range 8 {
		want(t, "another tenant's file", put(other, fmt.Sprintf("/v1/storage/files/g%02d.bin", i), data), 200)
	}
	want(t, "another tenant's document", call(t, "PUT", srv.URL+"/v1/storage/db/notes/n", other, nil, []byte(`{"text":"still writing"}`)), 200)
	want(t, "another tenant's kv", call(t, "PUT", srv.URL+"/v1/storage/kv/k", other, nil, []byte(`{"value":"v"}`)), 204)
	want(t, "the full tenant's document", call(t, "PUT", srv.URL+"/v1/storage/db/notes/n", full, nil, []byte(`{"text":"no files quota on documents"}`)), 200)
	want(t, "the full tenant deletes", call(t, "DELETE", srv.URL+"/v1/storage/files/f00.bin", full, nil, nil), 204)
	want(t, "and writes again", put(full, "/v1/storage/files/f00.bin", data), 200)
}
