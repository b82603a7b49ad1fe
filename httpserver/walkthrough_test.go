package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The markers are unique strings stored as file contents, document values and
// kv values, so the logs can be searched for them.
const (
	fileMarker = "file-contents-7f3a9c"
	docMarker  = "document-value-51be2d"
	kvMarker   = "kv-value-c0ffee42"
)

// walkthroughScopes are the scopes of README's step 2 token: the start-up
// how-to's (TestHowToMatchesREADME checks that README agrees).
var walkthroughScopes = demoScopes

// TestWalkthrough runs README.md's walk-through against the built binary,
// restarts it on the same data directory, and checks that files, documents,
// apps and tokens survived while kv values (in-memory) did not. The logs of
// both runs must hold no token, signature or stored content.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir)
	base := srv.URL

	// Generated credentials: 0600 files in a 0700 directory.
	for _, f := range []string{adminTokenFile, tokenSecretFile, urlSigningKeyFile} {
		fi, err := os.Stat(filepath.Join(dataDir, f))
		if err != nil {
			t.Fatalf("%s was not generated: %v", f, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode: %v %v, want 0700", fi.Mode().Perm(), err)
	}
	adminToken := readFile(t, filepath.Join(dataDir, adminTokenFile))

	// Health.
	want(t, "healthz", call(t, "GET", base+"/healthz", "", nil, nil), 200)
	want(t, "readyz", call(t, "GET", base+"/readyz", "", nil, nil), 200)

	// 1. Register an app with the admin token.
	// The app of README's step 1 and of the start-up how-to; registering it
	// a second time (both were followed) is 409 conflict, as README says.
	app := demoApp
	want(t, "register app", call(t, "POST", base+"/v1/oauth/apps", adminToken, map[string]string{"Content-Type": "application/json"}, []byte(app)), 201)
	want(t, "register app again", call(t, "POST", base+"/v1/oauth/apps", adminToken, map[string]string{"Content-Type": "application/json"}, []byte(app)), 409)
	want(t, "register app without admin token", call(t, "POST", base+"/v1/oauth/apps", "", nil, []byte(app)), 401)

	// 2. Mint a token for a user of the app.
	token := mintToken(t, dataDir, "--tenant", "t1", "--app", "app-demo", "--user", "u1", "--scope", walkthroughScopes)
	if strings.Count(token, ".") != 2 {
		t.Fatalf("token %q is not a JWT", token)
	}

	// 3. Files.
	secrets := []string{token, adminToken, readFile(t, filepath.Join(dataDir, tokenSecretFile)), readFile(t, filepath.Join(dataDir, urlSigningKeyFile))}
	fileBody := `{"hello":"world","marker":"` + fileMarker + `"}`
	var signedURL string
	{
		r := call(t, "PUT", base+"/v1/storage/files/config/settings.json", token, map[string]string{"Content-Type": "application/json"}, []byte(fileBody))
		want(t, "write file", r, 200)
		var w struct {
			Key, Tier string
			Size      int64
		}
		decodeBody(t, "write file", r, &w)
		if w.Key != "config/settings.json" || w.Tier != "private" || w.Size != int64(len(fileBody)) {
			t.Errorf("write file: %s", r.body)
		}
		r = call(t, "GET", base+"/v1/storage/files/config/settings.json", token, nil, nil)
		want(t, "read file", r, 200)
		if string(r.body) != fileBody || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("read file: %q (%s)", r.body, r.header.Get("Content-Type"))
		}
		r = call(t, "GET", base+"/v1/storage/files?prefix=config/", token, nil, nil)
		want(t, "list files", r, 200)
		if !strings.Contains(string(r.body), `"config/settings.json"`) {
			t.Errorf("list files: %s", r.body)
		}
		r = call(t, "POST", base+"/v1/storage/signed-urls", token, nil, []byte(`{"key":"config/settings.json","expiresIn":3600}`))
		want(t, "signed URL", r, 200)
		var su struct{ URL string }
		decodeBody(t, "signed URL", r, &su)
		signedURL = su.URL
		r = call(t, "GET", signedURL, "", nil, nil)
		want(t, "download signed URL", r, 200)
		if string(r.body) != fileBody {
			t.Errorf("signed download: %q", r.body)
		}
		secrets = append(secrets, signatureParts(t, signedURL)...)
		// The access log must know the signed route (files.go owns it).
		if p := loggedPath(httptest.NewRequest("GET", signedURL, nil)); !strings.HasSuffix(p, "[redacted]") {
			t.Errorf("the signed download path %q would be logged; update signedPathPrefixes", p)
		}
		// README's upload URL, with the file README's commands create.
		dir := t.TempDir()
		runSh(t, dir, readmeLine(t, "> avatar.png"))
		avatar, err := os.ReadFile(filepath.Join(dir, "avatar.png"))
		if err != nil {
			t.Fatal(err)
		}
		_, upBody, _ := strings.Cut(readmeLine(t, `"method":"PUT"`), "-d '")
		upBody, _, _ = strings.Cut(upBody, "'")
		r = call(t, "POST", base+"/v1/storage/signed-urls", token, nil, []byte(upBody))
		want(t, "upload URL", r, 200)
		var up struct{ URL string }
		decodeBody(t, "upload URL", r, &up)
		secrets = append(secrets, signatureParts(t, up.URL)...)
		for i := range 2 { // usable again until it expires
			r = call(t, "PUT", up.URL, "", map[string]string{"Content-Type": "image/png"}, avatar)
			want(t, fmt.Sprintf("upload %d through the URL", i+1), r, 200)
			var w struct{ Size int }
			decodeBody(t, "upload", r, &w)
			if w.Size != len(avatar) || len(avatar) == 0 {
				t.Errorf("upload %d: size %d, want %d", i+1, w.Size, len(avatar))
			}
		}
		r = call(t, "PUT", base+"/v1/storage/files/avatar.png?tier=user", token, map[string]string{"Content-Type": "image/png"}, []byte("PNG"))
		want(t, "write user file", r, 200)
		if !strings.Contains(string(r.body), `"tier":"user"`) {
			t.Errorf("write user file: %s", r.body)
		}
		want(t, "delete missing file", call(t, "DELETE", base+"/v1/storage/files/exports/old-report.pdf", token, nil, nil), 204)
	}

	// 4. Documents.
	{
		theme := `{"mode":"dark","accent":"purple","fontSize":14,"marker":"` + docMarker + `"}`
		want(t, "set document", call(t, "PUT", base+"/v1/storage/db/preferences/theme", token, nil, []byte(theme)), 200)
		r := call(t, "GET", base+"/v1/storage/db/preferences/theme", token, nil, nil)
		want(t, "get document", r, 200)
		if string(r.body) != `{"key":"theme","value":`+theme+`}`+"\n" {
			t.Errorf("get document: %s", r.body)
		}
		want(t, "missing document", call(t, "GET", base+"/v1/storage/db/preferences/does-not-exist", token, nil, nil), 404)
		want(t, "set user document", call(t, "PUT", base+"/v1/storage/db/preferences/layout?tier=user", token, nil, []byte(`{"sidebar":"collapsed"}`)), 200)
		for _, s := range []struct{ key, value string }{
			{"s1", `{"status":"active","plan":"pro","createdAt":"2025-01-01"}`},
			{"s2", `{"status":"active","plan":"pro","createdAt":"2025-01-03"}`},
			{"s3", `{"status":"active","plan":"free","createdAt":"2025-01-02"}`},
		} {
			want(t, "set session", call(t, "PUT", base+"/v1/storage/db/sessions/"+s.key, token, nil, []byte(s.value)), 200)
		}
		r = call(t, "POST", base+"/v1/storage/db/sessions/query", token, nil, []byte(`{"filter":{"status":"active","plan":"pro"},"sort":{"createdAt":-1},"limit":20}`))
		want(t, "query", r, 200)
		var q struct {
			Items []struct{ Key string }
		}
		decodeBody(t, "query", r, &q)
		if len(q.Items) != 2 || q.Items[0].Key != "s2" || q.Items[1].Key != "s1" {
			t.Errorf("query: %s", r.body)
		}
		r = call(t, "POST", base+"/v1/storage/db/cache/batch", token, nil, []byte(`{"ops":[{"op":"set","key":"user:123","value":{"name":"Alice","plan":"pro"}},{"op":"set","key":"user:456","value":{"name":"Bob","plan":"free"}},{"op":"delete","key":"user:999"}]}`))
		want(t, "batch", r, 200)
		var b struct{ Succeeded, Failed int }
		decodeBody(t, "batch", r, &b)
		if b.Succeeded != 3 || b.Failed != 0 {
			t.Errorf("batch: %s", r.body)
		}
	}

	// 5. KV.
	session := `{"userId":"usr-xxx","plan":"pro","marker":"` + kvMarker + `"}`
	want(t, "kv set", call(t, "PUT", base+"/v1/storage/kv/session:abc123", token, nil, []byte(`{"value":`+session+`,"ttl":3600}`)), 204)
	r := call(t, "GET", base+"/v1/storage/kv/session:abc123", token, nil, nil)
	want(t, "kv get", r, 200)
	var kv struct {
		Value string
		TTL   int
	}
	decodeBody(t, "kv get", r, &kv)
	if kv.Value != session || kv.TTL < 3590 || kv.TTL > 3600 {
		t.Errorf("kv get: %s", r.body)
	}
	r = call(t, "HEAD", base+"/v1/storage/kv/session:abc123", token, nil, nil)
	want(t, "kv exists", r, 200)
	if r.header.Get("Cpod-Ttl") == "" {
		t.Errorf("kv exists: no Cpod-Ttl header")
	}
	want(t, "kv set counter", call(t, "PUT", base+"/v1/storage/kv/counter:api-calls", token, nil, []byte(`{"value":"0"}`)), 204)
	r = call(t, "POST", base+"/v1/storage/kv/counter:api-calls", token, nil, nil)
	want(t, "kv incr", r, 200)
	if strings.TrimSpace(string(r.body)) != `{"value":1}` {
		t.Errorf("kv incr: %s", r.body)
	}
	r = call(t, "POST", base+"/v1/storage/kv/counter:api-calls", token, nil, []byte(`{"by":5}`))
	if strings.TrimSpace(string(r.body)) != `{"value":6}` {
		t.Errorf("kv incr by 5: %s", r.body)
	}
	want(t, "kv del", call(t, "DELETE", base+"/v1/storage/kv/session:abc123", token, nil, nil), 204)
	want(t, "kv gone", call(t, "GET", base+"/v1/storage/kv/session:abc123", token, nil, nil), 404)
	// Kept to show below that kv values and TTLs survive a graceful restart.
	want(t, "kv set", call(t, "PUT", base+"/v1/storage/kv/ephemeral", token, nil, []byte(`{"value":"`+kvMarker+`"}`)), 204)
	want(t, "kv set with ttl", call(t, "PUT", base+"/v1/storage/kv/with-ttl", token, nil, []byte(`{"value":"t","ttl":3600}`)), 204)

	// A query string with a secret-looking value is never logged (and an
	// unknown parameter is refused).
	want(t, "unknown query parameter", call(t, "GET", base+"/v1/storage/kv/ephemeral?tier=private&probe=query-secret-d00d", token, nil, nil), 400)
	secrets = append(secrets, "query-secret-d00d")

	// Stop with SIGTERM: a clean exit.
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, srv.stderr)
	}
	firstLog := srv.stderr.String()

	// Restart on the same data directory: same secrets, same data.
	srv2 := startServer(t, dataDir)
	base = srv2.URL
	if got := readFile(t, filepath.Join(dataDir, adminTokenFile)); got != adminToken {
		t.Fatalf("the admin token changed across restarts")
	}
	r = call(t, "GET", base+"/v1/oauth/apps/app-demo", adminToken, nil, nil)
	want(t, "app after restart (admin token still valid)", r, 200)
	{
		r = call(t, "GET", base+"/v1/storage/files/config/settings.json", token, nil, nil)
		want(t, "file after restart (token still valid)", r, 200)
		if string(r.body) != fileBody {
			t.Errorf("file after restart: %q", r.body)
		}
		// The signed URL names the old port; its path and query still verify.
		u, _ := url.Parse(signedURL)
		r = call(t, "GET", base+u.RequestURI(), "", nil, nil)
		want(t, "signed URL after restart (URL-signing key kept)", r, 200)
	}
	{
		r = call(t, "GET", base+"/v1/storage/db/preferences/theme", token, nil, nil)
		want(t, "document after restart", r, 200)
		r = call(t, "GET", base+"/v1/storage/db/preferences/layout?tier=user", token, nil, nil)
		want(t, "user document after restart", r, 200)
	}
	// KV is in the SQLite store (cpod.db) with the documents: kept.
	{
		r = call(t, "GET", base+"/v1/storage/kv/ephemeral", token, nil, nil)
		want(t, "kv after restart", r, 200)
		if !strings.Contains(string(r.body), `"value":"`+kvMarker+`","ttl":-1`) {
			t.Errorf("kv after restart: %s", r.body)
		}
		r = call(t, "GET", base+"/v1/storage/kv/with-ttl", token, nil, nil)
		want(t, "kv with ttl after restart", r, 200)
		var v struct{ TTL int64 }
		if err := json.Unmarshal(r.body, &v); err != nil || v.TTL < 3500 || v.TTL > 3600 {
			t.Errorf("kv ttl after restart: %s", r.body)
		}
		r = call(t, "POST", base+"/v1/storage/kv/counter:api-calls", token, nil, nil)
		if strings.TrimSpace(string(r.body)) != `{"value":7}` {
			t.Errorf("kv counter after restart: %s", r.body)
		}
		if _, err := os.Stat(filepath.Join(dataDir, "kv.snapshot")); !os.IsNotExist(err) {
			t.Errorf("a kv snapshot was written: %v", err)
		}
	}
	if code := srv2.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code after SIGINT: %d\n%s", code, srv2.stderr)
	}
	logs := firstLog + srv2.stderr.String()

	// The logs: one record per request, none holding a secret or content.
	for _, s := range append(secrets, fileMarker, docMarker, kvMarker, "Bearer") {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the logs contain %q", truncate(s))
		}
	}
	if !strings.Contains(logs, `"path":"/v1/storage/signed/[redacted]"`) {
		t.Errorf("the signed download is not logged with its redacted path")
	}
	if !strings.Contains(logs, `"store":"kv","backend":"embedded SQLite store `) {
		t.Errorf("the startup log does not say kv is in the SQLite store")
	}
	checkAccessLog(t, firstLog)
}

// checkAccessLog checks that every request record has its fields and a path
// without query.
func checkAccessLog(t *testing.T, logs string) {
	t.Helper()
	requests := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		if rec["msg"] != "request" {
			continue
		}
		requests++
		for _, f := range []string{"request_id", "method", "path", "status", "bytes", "duration"} {
			if _, ok := rec[f]; !ok {
				t.Errorf("request record without %s: %s", f, sc.Text())
			}
		}
		if p, _ := rec["path"].(string); strings.ContainsAny(p, "?#") {
			t.Errorf("logged path holds a query: %s", p)
		}
		if id, _ := rec["request_id"].(string); id == "" {
			t.Errorf("empty request id: %s", sc.Text())
		}
	}
	if requests < 10 {
		t.Errorf("only %d request records in the log", requests)
	}
}

// signatureParts returns the parts of a signed URL that carry its signature:
// the query values and the path segments after the files API.
func signatureParts(t *testing.T, signed string) []string {
	t.Helper()
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatalf("signed URL %q: %v", signed, err)
	}
	var parts []string
	for _, vs := range u.Query() {
		for _, v := range vs {
			if len(v) >= 16 {
				parts = append(parts, v)
			}
		}
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if len(seg) >= 32 {
			parts = append(parts, seg)
		}
	}
	if len(parts) == 0 {
		t.Fatalf("cannot find the signature in the signed URL")
	}
	return parts
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func truncate(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}

// TestHowToMatchesREADME: the app and token scopes that the start-up how-to
// prints are those of README.md's walk-through steps 1 and 2, so a newcomer
// who follows both gets the same app (step 1 then answers 409) and a token
// that can use the user tier of step 4.
func TestHowToMatchesREADME(t *testing.T) {
	t.Parallel()
	readme := readFile(t, filepath.Join("..", "README.md"))
	_, step1, ok := strings.Cut(readme, "**1. Register an app**")
	if !ok {
		t.Fatal("README.md has no step 1")
	}
	step1, step2, ok := strings.Cut(step1, "**2. Mint a token**")
	if !ok {
		t.Fatal("README.md has no step 2")
	}
	step2, _, _ = strings.Cut(step2, "**3.")
	_, body, ok := strings.Cut(step1, "-d '")
	body, _, ok2 := strings.Cut(body, "'")
	if !ok || !ok2 {
		t.Fatal("README.md's step 1 has no -d '...' body")
	}
	var readmeApp, howToApp map[string]any
	if err := json.Unmarshal([]byte(body), &readmeApp); err != nil {
		t.Fatalf("README.md's step 1 body: %v", err)
	}
	if err := json.Unmarshal([]byte(demoApp), &howToApp); err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprint(readmeApp), fmt.Sprint(howToApp); a != b {
		t.Errorf("README.md registers %s, the start-up how-to %s", a, b)
	}
	_, scopes, ok := strings.Cut(step2, "--scope ")
	scopes, _, _ = strings.Cut(scopes, ")")
	if !ok || strings.Join(strings.Fields(scopes), "") != demoScopes {
		t.Errorf("README.md's step 2 mints --scope %q, the start-up how-to %q", scopes, demoScopes)
	}
	if !strings.Contains(step1, "409") {
		t.Errorf("README.md's step 1 does not say that registering app-demo again answers 409")
	}
	for _, scope := range strings.Split(demoScopes, ",") {
		if !strings.Contains(demoApp, `"`+scope+`"`) {
			t.Errorf("the how-to's token asks for %s, which its app does not declare", scope)
		}
	}
}
