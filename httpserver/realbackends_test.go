package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/alicebob/miniredis/v2"
	"github.com/cpod/storage/embedded"
	"github.com/golang-jwt/jwt/v5"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeBackends starts S3, MongoDB and Redis servers on loopback ports, for
// the server to reach them as it would real ones.
func fakeBackends(t *testing.T) (s3URL, mongoURI, redisAddr string) {
	t.Helper()
	s3 := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(s3.Close)
	f, err := embedded.NewFerretDB(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + t.TempDir() + "/",
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	m := miniredis.RunT(t)
	return s3.URL, f.MongoDBURI(), m.Addr()
}

// TestRealBackends runs the server against backends given by configuration,
// with each way of verifying tokens: HMAC secret, PEM public key, JWKS URL.
// Nothing is embedded or generated, so no data directory is made.
func TestRealBackends(t *testing.T) {
	t.Parallel()
	s3URL, mongoURI, redisAddr := fakeBackends(t)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pemFile := filepath.Join(t.TempDir(), "issuer.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := `{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"` + b64(rsaKey.N.Bytes()) + `","e":"` + b64(big.NewInt(int64(rsaKey.E)).Bytes()) + `"}]}`
	jwksServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, jwks)
	}))
	t.Cleanup(jwksServer.Close)

	hmacSecret := strings.Repeat("hmac-secret-", 4)
	sign := func(method jwt.SigningMethod, key any, kid string, user string) string {
		claims := jwt.MapClaims{
			"tenantId": "t1", "client_id": "app-real", "sub": user,
			"scope": "storage.private.read storage.private.write",
			"iss":   "https://issuer.test", "aud": "cpod-storage",
			"exp": time.Now().Add(time.Hour).Unix(),
		}
		tok := jwt.NewWithClaims(method, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s3Host := strings.TrimPrefix(s3URL, "http://")
	for i, tc := range []struct {
		name  string
		env   []string
		token string
		wrong string // a token the server must refuse
	}{
		{"hmac secret and redis url", []string{"CPOD_JWT_HMAC_SECRET=" + hmacSecret, "CPOD_REDIS_URL=redis://" + redisAddr + "/0"},
			sign(jwt.SigningMethodHS256, []byte(hmacSecret), "", "u1"), sign(jwt.SigningMethodRS256, rsaKey, "", "u1")},
		{"public key file and redis addrs", []string{"CPOD_JWT_PUBLIC_KEY_FILE=" + pemFile, "CPOD_REDIS_ADDRS=" + redisAddr},
			sign(jwt.SigningMethodRS256, rsaKey, "", "u1"), sign(jwt.SigningMethodHS256, []byte(hmacSecret), "", "u1")},
		{"jwks url", []string{"CPOD_JWT_JWKS_URL=" + jwksServer.URL, "CPOD_REDIS_URL=redis://" + redisAddr + "/1"},
			sign(jwt.SigningMethodRS256, rsaKey, "k1", "u1"), sign(jwt.SigningMethodRS256, rsaKey, "unknown-kid", "u1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "cpod-data")
			admin := "admin-token-for-real-backends"
			env := append([]string{
				"CPOD_S3_ENDPOINT=" + s3URL, "CPOD_S3_ACCESS_KEY=ak", "CPOD_S3_SECRET_KEY=sk",
				"CPOD_S3_BUCKET=bucket-" + string(rune('a'+i)), "CPOD_S3_CREATE_BUCKET=true",
				"CPOD_MONGO_URI=" + mongoURI, "CPOD_MONGO_DATABASE=db" + string(rune('a'+i)),
				"CPOD_JWT_ISSUER=https://issuer.test", "CPOD_JWT_AUDIENCE=cpod-storage",
				"CPOD_ADMIN_TOKENS=" + admin, "CPOD_URL_SIGNING_KEY=" + strings.Repeat("u", 40),
			}, tc.env...)
			srv := startServerEnv(t, env, dataDir)
			base := srv.URL
			want(t, "readyz", call(t, "GET", base+"/readyz", "", nil, nil), 200)
			app := `{"client_id":"app-real","name":"Real","declared_scopes":["storage.private.read","storage.private.write"],"app_type":"service"}`
			want(t, "register app", call(t, "POST", base+"/v1/oauth/apps", admin, nil, []byte(app)), 201)
			want(t, "kv set", call(t, "PUT", base+"/v1/storage/kv/k", tc.token, nil, []byte(`{"value":"v"}`)), 204)
			want(t, "kv get", call(t, "GET", base+"/v1/storage/kv/k", tc.token, nil, nil), 200)
			want(t, "wrong token", call(t, "GET", base+"/v1/storage/kv/k", tc.wrong, nil, nil), 401)
			want(t, "write file", call(t, "PUT", base+"/v1/storage/files/a.txt", tc.token, nil, []byte("hello")), 200)
			r := call(t, "GET", base+"/v1/storage/files/a.txt", tc.token, nil, nil)
			want(t, "read file", r, 200)
			if string(r.body) != "hello" {
				t.Errorf("read file: %q", r.body)
			}
			if code := srv.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit code %d", code)
			}
			if _, err := os.Stat(dataDir); err == nil {
				t.Errorf("the data directory was created although nothing needs it")
			}
			logs := srv.stderr.String()
			for _, s := range []string{"sk", hmacSecret, admin, tc.token} {
				if len(s) > 2 && strings.Contains(logs, s) {
					t.Errorf("the logs hold %q", truncate(s))
				}
			}
			if !strings.Contains(logs, s3Host) || strings.Contains(logs, "embedded") {
				t.Errorf("the startup log does not describe the configured backends:\n%s", logs)
			}
		})
	}
}

// TestTLS serves HTTPS with -tls-cert-file and -tls-key-file.
func TestTLS(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	srv := startServer(t, filepath.Join(dir, "cpod-data"), "-tls-cert-file", certFile, "-tls-key-file", keyFile)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := client.Get("https://" + srv.Addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz over TLS: %d", res.StatusCode)
	}
	// Go's server answers plain HTTP on a TLS port with a 400; never 200.
	if res, err := http.Get("http://" + srv.Addr + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on the TLS port")
		}
	}
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.Contains(srv.stderr.String(), `"url":"https://`) {
		t.Errorf("the startup log does not announce an https URL")
	}
}
