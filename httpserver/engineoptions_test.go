package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/golang-jwt/jwt/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The engine options set by -documents-layout, -jwt-cache-ttl and the
// structure caps of document values, checked through the built server: each
// value reaches the engine and changes what it answers or where it writes.

// wantError fails the test unless r has the status and the error code, and
// its message says what.
func wantError(t *testing.T, what string, r response, status int, code, says string) {
	t.Helper()
	want(t, what, r, status)
	var body struct{ Error, Message string }
	decodeBody(t, what, r, &body)
	if body.Error != code || !strings.Contains(body.Message, says) {
		t.Fatalf("%s: %s %q, want %s saying %q", what, body.Error, body.Message, code, says)
	}
}

// TestDocumentLimitsSettings: -max-document-array-items, -object-fields,
// -nodes and -max-batch-nodes reach the engine: a value at each cap is
// stored, one past it is 413 too_large naming the cap and stores nothing.
// The caps are far below the defaults (5000, 1000, 10000, 20000), which
// would accept every value here.
func TestDocumentLimitsSettings(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	srv := startServer(t, dataDir, "-max-document-array-items", "3", "-max-document-object-fields", "2",
		"-max-document-nodes", "8", "-max-batch-nodes", "6")
	token := setupApp(t, srv, dataDir)
	doc := srv.URL + "/v1/storage/db/limits/"
	for _, tc := range []struct {
		key, ok, over, says string
	}{
		{"array", `[1,2,3]`, `[1,2,3,4]`, "has more than 3 items"},
		{"object", `{"a":1,"b":2}`, `{"a":1,"b":2,"c":3}`, "has more than 2 fields"},
		// 1 + (1+3) + (1+2) = 8 values, then 9.
		{"nodes", `{"a":[1,2,3],"b":[1,2]}`, `{"a":[1,2,3],"b":[1,2,3]}`, "at most 8 values"},
	} {
		want(t, tc.key+" at the cap", call(t, "PUT", doc+tc.key, token, nil, []byte(tc.ok)), 200)
		wantError(t, tc.key+" past the cap", call(t, "PUT", doc+tc.key+"-over", token, nil, []byte(tc.over)), 413, "too_large", tc.says)
		want(t, tc.key+" past the cap is not stored", call(t, "GET", doc+tc.key+"-over", token, nil, nil), 404)
	}
	// Two values of 3 make 6; a third of 2 makes 8, over -max-batch-nodes,
	// though each value is within -max-document-nodes.
	two := `{"op":"set","key":"b1","value":[1,2]},{"op":"set","key":"b2","value":[3,4]}`
	want(t, "batch at the cap", call(t, "POST", doc+"batch", token, nil, []byte(`{"ops":[`+two+`]}`)), 200)
	wantError(t, "batch past the cap", call(t, "POST", doc+"batch", token, nil, []byte(`{"ops":[`+two+`,{"op":"set","key":"b3","value":[5]}]}`)), 413, "too_large", "at most 6 values together")
	want(t, "a batch past the cap stores nothing", call(t, "GET", doc+"b3", token, nil, nil), 404)
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// documentsMongo is a MongoDB server for the documents of a test, in a
// database of its own that is dropped at the end: the real server of
// CPODTEST_MONGO_URI when set, else an in-process FerretDB (on SQLite).
func documentsMongo(t *testing.T) (uri, database string, db *mongo.Database) {
	t.Helper()
	uri = os.Getenv("CPODTEST_MONGO_URI")
	if uri == "" {
		_, uri, _ = fakeBackends(t)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	database = "cpodlayout" + hex.EncodeToString(b)
	db = client.Database(database)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
		_ = client.Disconnect(ctx)
	})
	return uri, database, db
}

// documentsCollections lists the collections of the documents in db: the
// single layout's, and the partitioned layout's, by name.
func documentsCollections(t *testing.T, db *mongo.Database) (single bool, partitioned []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		switch {
		case n == "cpod_documents":
			single = true
		case strings.HasPrefix(n, "cpod_documents."):
			partitioned = append(partitioned, n)
		}
	}
	return single, partitioned
}

// TestDocumentsLayoutSetting: -documents-layout reaches the engine. With
// single, a document goes to the one collection cpod_documents, even on
// FerretDB, where auto would pick partitioned. Started again on the same
// database with partitioned (which auto would not pick there, since the
// single collection now holds a document), the server writes to a
// collection of the location's own, and the document written in the
// single layout is hidden from it, as README warns. An unknown layout
// stops the server before it starts.
func TestDocumentsLayoutSetting(t *testing.T) {
	t.Parallel()
	uri, database, db := documentsMongo(t)
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	// MongoDB goes with a Redis (kv).
	env := []string{"CPOD_MONGO_URI=" + uri, "CPOD_MONGO_DATABASE=" + database, "CPOD_REDIS_URL=redis://" + miniredis.RunT(t).Addr() + "/0"}

	srv := startServerEnv(t, env, dataDir, "-documents-layout", "single")
	token := setupApp(t, srv, dataDir)
	want(t, "set in the single layout", call(t, "PUT", srv.URL+"/v1/storage/db/notes/n1", token, nil, []byte(`{"text":"single"}`)), 200)
	want(t, "get in the single layout", call(t, "GET", srv.URL+"/v1/storage/db/notes/n1", token, nil, nil), 200)
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if single, partitioned := documentsCollections(t, db); !single || len(partitioned) != 0 {
		t.Fatalf("-documents-layout single: collection cpod_documents %v, partitioned collections %q", single, partitioned)
	}

	srv = startServerEnv(t, env, dataDir, "-documents-layout", "partitioned")
	want(t, "set in the partitioned layout", call(t, "PUT", srv.URL+"/v1/storage/db/notes/n2", token, nil, []byte(`{"text":"partitioned"}`)), 200)
	want(t, "get in the partitioned layout", call(t, "GET", srv.URL+"/v1/storage/db/notes/n2", token, nil, nil), 200)
	want(t, "the single layout's document is hidden", call(t, "GET", srv.URL+"/v1/storage/db/notes/n1", token, nil, nil), 404)
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if _, partitioned := documentsCollections(t, db); len(partitioned) != 1 {
		t.Fatalf("-documents-layout partitioned: partitioned collections %q, want one", partitioned)
	}

	for _, layout := range []string{"sharded", "Single"} {
		code, _, stderr := runBinary(t, env, "-addr", "127.0.0.1:0", "-data-dir", dataDir, "-documents-layout", layout)
		if code != 2 || !strings.Contains(stderr, "CPOD_DOCUMENTS_LAYOUT (-documents-layout) must be auto, single or partitioned") {
			t.Errorf("-documents-layout %s: exit %d, %q", layout, code, stderr)
		}
	}
}

// jwksServer serves a JWKS of EC P-256 keys that the test can replace.
type jwksServer struct {
	*httptest.Server
	body atomic.Value // string
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, s.body.Load().(string))
	}))
	t.Cleanup(s.Close)
	return s
}

// serve makes the JWKS hold exactly keys, by kid.
func (s *jwksServer) serve(keys map[string]*ecdsa.PrivateKey) {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var jwks []string
	for kid, k := range keys {
		x, y := make([]byte, 32), make([]byte, 32)
		k.X.FillBytes(x)
		k.Y.FillBytes(y)
		jwks = append(jwks, `{"kty":"EC","crv":"P-256","kid":"`+kid+`","use":"sig","alg":"ES256","x":"`+b64(x)+`","y":"`+b64(y)+`"}`)
	}
	s.body.Store(`{"keys":[` + strings.Join(jwks, ",") + `]}`)
}

// TestJWTCacheTTLSetting: -jwt-cache-ttl reaches the engine's verified-token
// cache. The issuer rotates its JWKS from key k1 to k2, and the server
// learns it (a token of the unknown kid k2 refreshes the set). A k1 token
// verified before the rotation is still admitted, from the cache, with
// -jwt-cache-ttl 1m, even past the engine's 1s default, while a k1 token
// never seen is refused; with 0s nothing is cached, and the k1 token is
// refused at once.
func TestJWTCacheTTLSetting(t *testing.T) {
	t.Parallel()
	k1, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(key *ecdsa.PrivateKey, kid, user string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"tenantId": "t1", "client_id": "app-demo", "sub": user,
			"scope": "storage.private.read storage.private.write",
			"exp":   time.Now().Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		ttl      string
		admitted bool // the k1 token verified before the rotation, after it
	}{
		{"1m", true},
		{"0s", false},
	} {
		t.Run(tc.ttl, func(t *testing.T) {
			t.Parallel()
			jwks := newJWKSServer(t)
			jwks.serve(map[string]*ecdsa.PrivateKey{"k1": k1})
			dataDir := filepath.Join(t.TempDir(), "cpod-data")
			srv := startServer(t, dataDir, "-jwt-jwks-url", jwks.URL, "-jwt-cache-ttl", tc.ttl)
			admin := readFile(t, filepath.Join(dataDir, adminTokenFile))
			app := `{"client_id":"app-demo","name":"Demo","declared_scopes":["storage.private.read","storage.private.write"],"app_type":"service"}`
			want(t, "register app", call(t, "POST", srv.URL+"/v1/oauth/apps", admin, nil, []byte(app)), 201)
			kv := srv.URL + "/v1/storage/kv/missing"

			old := sign(k1, "k1", "u1")
			wantError(t, "k1 token before the rotation", call(t, "GET", kv, old, nil, nil), 404, "not_found", "")
			jwks.serve(map[string]*ecdsa.PrivateKey{"k2": k2})
			wantError(t, "k2 token after the rotation", call(t, "GET", kv, sign(k2, "k2", "u1"), nil, nil), 404, "not_found", "")
			wantError(t, "new k1 token after the rotation", call(t, "GET", kv, sign(k1, "k1", "u2"), nil, nil), 401, "invalid_token", "")
			if tc.admitted {
				time.Sleep(1100 * time.Millisecond) // past the engine's default of 1s
				wantError(t, "k1 token verified before the rotation", call(t, "GET", kv, old, nil, nil), 404, "not_found", "")
			} else {
				wantError(t, "k1 token verified before the rotation", call(t, "GET", kv, old, nil, nil), 401, "invalid_token", "")
			}
			if code := srv.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit code %d", code)
			}
		})
	}
}

// TestAppCacheTTLSetting: -app-cache-ttl reaches the engine's app cache.
// Two servers share one set of backends, as two replicas do; the app is
// deleted through A while B has it cached. Under 1s, B still serves the
// app's token right after the deletion and refuses it within a second;
// under 0s, B looks the app up on every request and refuses it at once.
func TestAppCacheTTLSetting(t *testing.T) {
	t.Parallel()
	s3URL, mongoURI, redisAddr := fakeBackends(t)
	secret := strings.Repeat("app-cache-ttl-", 3)
	admin := "admin-token-for-app-cache-ttl"
	for i, tc := range []struct {
		ttl       string
		stillSeen bool // B serves the deleted app's token at first
	}{{"1s", true}, {"0s", false}} {
		t.Run(tc.ttl, func(t *testing.T) {
			env := []string{
				"CPOD_S3_ENDPOINT=" + s3URL, "CPOD_S3_ACCESS_KEY=ak", "CPOD_S3_SECRET_KEY=sk",
				"CPOD_S3_BUCKET=cache-" + string(rune('a'+i)), "CPOD_S3_CREATE_BUCKET=true",
				"CPOD_MONGO_URI=" + mongoURI, "CPOD_MONGO_DATABASE=cache" + string(rune('a'+i)),
				"CPOD_REDIS_URL=redis://" + redisAddr + "/" + string(rune('2'+i)),
				"CPOD_JWT_HMAC_SECRET=" + secret, "CPOD_ADMIN_TOKENS=" + admin, "CPOD_URL_SIGNING_KEY=" + strings.Repeat("u", 40),
			}
			a := startServerEnv(t, env, filepath.Join(t.TempDir(), "a"))
			b := startServerEnv(t, env, filepath.Join(t.TempDir(), "b"), "-app-cache-ttl", tc.ttl)
			app := `{"client_id":"app-cache","name":"Cache","declared_scopes":["storage.private.read"],"app_type":"service"}`
			want(t, "register app", call(t, "POST", a.URL+"/v1/oauth/apps", admin, nil, []byte(app)), 201)
			token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
				"tenantId": "t1", "client_id": "app-cache", "scope": "storage.private.read",
				"exp": time.Now().Add(time.Hour).Unix(),
			}).SignedString([]byte(secret))
			if err != nil {
				t.Fatal(err)
			}
			looked := time.Now() // B looks the app up after this, and caches it for 1s
			want(t, "B serves the app", call(t, "GET", b.URL+"/v1/storage/kv/k", token, nil, nil), 404)
			want(t, "delete the app through A", call(t, "DELETE", a.URL+"/v1/oauth/apps/app-cache", admin, nil, nil), 204)
			deleted := time.Now()
			if tc.stillSeen {
				r := call(t, "GET", b.URL+"/v1/storage/kv/k", token, nil, nil)
				// Only an answer within 1s of B's lookup must come from its
				// cache: on a busy machine the deletion may take longer.
				if d := time.Since(looked); d < time.Second {
					want(t, "B, from its cache, right after", r, 404)
				} else {
					t.Logf("B's answer %v after its lookup (%d): past its cache TTL, not checked", d, r.status)
				}
			}
			for {
				polled := time.Now()
				r := call(t, "GET", b.URL+"/v1/storage/kv/k", token, nil, nil)
				if r.status == http.StatusUnauthorized {
					break
				}
				// A request sent more than 1.5s after the deletion must
				// not see the app: timed from when it was sent, not from
				// its answer, which may come late on a busy machine.
				if !tc.stillSeen || polled.Sub(deleted) > 1500*time.Millisecond {
					t.Fatalf("B still serves the deleted app to a request sent %v after its deletion: %d %s", polled.Sub(deleted), r.status, r.body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
