package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestSecretGeneratedOnce(t *testing.T) {
	t.Parallel()
	d, err := openDataDir(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.unlock()
	v1, created1, err := d.secret("k", "p-")
	if err != nil || !created1 || !strings.HasPrefix(v1, "p-") || len(v1) < 40 {
		t.Fatalf("first: %q %v %v", v1, created1, err)
	}
	v2, created2, err := d.secret("k", "p-")
	if err != nil || created2 || v2 != v1 {
		t.Fatalf("second: %q %v %v, want %q not created", v2, created2, err, v1)
	}
	fi, err := os.Stat(filepath.Join(d.path, "k"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", fi.Mode().Perm(), err)
	}
	if entries, _ := os.ReadDir(d.path); len(entries) != 2 { // k and LOCK
		t.Errorf("leftover files: %v", entries)
	}
}

func TestSecretRefusedWhenOthersCanRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, tokenSecretFile)
	if err := os.WriteFile(p, []byte(strings.Repeat("x", 43)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := readSecret(dir, tokenSecretFile)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v, want a chmod 600 hint", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecret(dir, tokenSecretFile); err == nil || !strings.Contains(err.Error(), "shorter than 32 bytes") {
		t.Fatalf("err = %v for a short secret", err)
	}
}

func TestDataDirLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data")
	d, err := openDataDir(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openDataDir(path); err == nil || !strings.Contains(err.Error(), "another cpod storage server") {
		t.Fatalf("second open: %v, want a lock error", err)
	}
	d.unlock()
	d2, err := openDataDir(path)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	d2.unlock()
}

// TestTokenCommand runs the token subcommand of the binary.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	code, _, stderr := runBinary(t, nil, "token", "--data-dir", dir, "--tenant", "t1", "--app", "a", "--scope", "storage.private.read")
	if code == 0 || !strings.Contains(stderr, "start the server once") {
		t.Fatalf("without a secret: exit %d, %q", code, stderr)
	}
	d, err := openDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := d.secret(tokenSecretFile, "")
	d.unlock()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--app", "a", "--scope", "storage.private.read"}, "--tenant is required"},
		{nil, []string{"--tenant", "t1", "--app", "a/b", "--scope", "storage.private.read"}, "--app must be 1 to 128"},
		{nil, []string{"--tenant", "t1", "--app", "a", "--scope", "storage.everything"}, `unknown scope "storage.everything"`},
		{nil, []string{"--tenant", "t1", "--app", "a"}, "--scope is required"},
		{nil, []string{"--tenant", "t1", "--app", "a", "--scope", "storage.private.read", "--ttl", "9999h"}, "--ttl must be"},
		{[]string{"CPOD_JWT_JWKS_URL=https://issuer.example.com/jwks"}, []string{"--tenant", "t1", "--app", "a", "--scope", "storage.private.read"}, "CPOD_JWT_JWKS_URL is set"},
	} {
		code, _, stderr := runBinary(t, tc.env, append([]string{"token", "--data-dir", dir}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("token %v: exit %d, %q; want %q", tc.args, code, stderr, tc.want)
		}
	}

	tok := mintToken(t, dir, "--tenant", "t1", "--app", "app-demo", "--user", "u1", "--scope", "storage.private.read,storage.user.write", "--scope", "storage.shared.read", "--ttl", "10m")
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(secret), nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatalf("the token does not verify with the data directory's secret: %v", err)
	}
	if claims["tenantId"] != "t1" || claims["client_id"] != "app-demo" || claims["sub"] != "u1" ||
		claims["scope"] != "storage.private.read storage.user.write storage.shared.read" {
		t.Errorf("claims: %v", claims)
	}
	exp, _ := claims.GetExpirationTime()
	if exp == nil || time.Until(exp.Time) > 10*time.Minute || time.Until(exp.Time) < 9*time.Minute {
		t.Errorf("exp %v, want in 10 minutes", exp)
	}
	// Without --user: a client-credentials token, no sub.
	tok = mintToken(t, dir, "--tenant", "t1", "--app", "app-demo", "--scope", "storage.private.read")
	claims = jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil || claims["sub"] != nil {
		t.Errorf("client-credentials token: %v %v", claims, err)
	}
}
