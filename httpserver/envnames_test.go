package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestConfigUnknownVariable: a CPOD_ variable that names no setting stops
// the server at start, naming the closest setting (a typo must not be
// ignored in silence), with the other problems; the variables the
// repository reads on purpose (the clients', tests', CI's) and CPODTEST_
// ones are not settings and pass.
func TestConfigUnknownVariable(t *testing.T) {
	t.Parallel()
	for typo, want := range map[string]string{
		"CPOD_CORS_ORIGIN":    "CPOD_CORS_ORIGINS (-cors-origins)",
		"CPOD_ADMIN_TOKEN":    "CPOD_ADMIN_TOKENS (-admin-tokens)",
		"CPOD_MAX_FILESIZE":   "CPOD_MAX_FILE_SIZE (-max-file-size)",
		"CPOD_REDIS_ADDR":     "CPOD_REDIS_ADDRS (-redis-addrs)",
		"CPOD_JWT_HMAC":       "CPOD_JWT_HMAC_SECRET (-jwt-hmac-secret)",
		"CPOD_S3_ENDPIONT":    "CPOD_S3_ENDPOINT (-s3-endpoint)",
		"CPOD_LOGLEVEL":       "CPOD_LOG_LEVEL (-log-level)",
		"CPOD_PUBLIC_ADDRESS": "CPOD_PUBLIC_URL (-public-url)",
	} {
		_, err := parseConfig(nil, envFunc(map[string]string{typo: "x"}), io.Discard)
		var ce *configError
		if !errors.As(err, &ce) || len(ce.problems) != 1 {
			t.Errorf("%s: %v, want one problem", typo, err)
			continue
		}
		if got := ce.problems[0]; got != typo+" is set but names no setting; did you mean "+want+"?" {
			t.Errorf("%s: %q, want it to name %s", typo, got, want)
		}
	}
	// With other problems: all of them, the unknown variables first.
	_, err := parseConfig([]string{"-log-format", "xml"}, envFunc(map[string]string{"CPOD_CORS_ORIGIN": "x", "CPOD_ADRR": ":1"}), io.Discard)
	var ce *configError
	if !errors.As(err, &ce) || len(ce.problems) != 3 || !strings.HasPrefix(ce.problems[0], "CPOD_ADRR ") ||
		!strings.HasPrefix(ce.problems[1], "CPOD_CORS_ORIGIN ") || !strings.Contains(ce.problems[2], "-log-format") {
		t.Errorf("err = %v, want the two unknown variables and the bad log format", err)
	}
	// Not settings, read on purpose: fine.
	env := map[string]string{"CPODTEST_REDIS_URL": "redis://x", "CPODTEST_ANYTHING": "1", "CPOD": "http://127.0.0.1:8080", "CPOD_ADDR": "127.0.0.1:9000"}
	for _, name := range envReadOnPurpose {
		env[name] = "1"
	}
	if c, err := parseConfig(nil, envFunc(env), io.Discard); err != nil || c.Addr != "127.0.0.1:9000" {
		t.Errorf("the variables read on purpose: %v", err)
	}
	// The token subcommand refuses the same, in one line.
	var stderr bytes.Buffer
	if code := tokenCommand([]string{"--tenant", "t1", "--app", "a", "--scope", "storage.private.read"}, envFunc(map[string]string{"CPOD_DATA_DIRR": t.TempDir()}), io.Discard, &stderr); code != 2 ||
		strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "CPOD_DATA_DIRR is set but names no setting; did you mean CPOD_DATA_DIR (-data-dir)?") {
		t.Errorf("token with a typo: exit %d, %q", code, stderr.String())
	}
}

// TestUnknownVariableExits runs the binary: a typo in a variable stops it
// before anything starts, exit 2, naming the closest setting.
func TestUnknownVariableExits(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "cpod-data")
	code, _, stderr := runBinary(t, []string{"CPOD_CORS_ORIGIN=https://app.example.com"}, "-data-dir", dataDir, "-addr", "127.0.0.1:0")
	want := "cpod storage: invalid configuration:\n  - CPOD_CORS_ORIGIN is set but names no setting; did you mean CPOD_CORS_ORIGINS (-cors-origins)?\n"
	if code != 2 || stderr != want {
		t.Fatalf("exit %d, stderr %q; want 2, %q", code, stderr, want)
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Errorf("a refused configuration created the data directory")
	}
}

// TestEnvReadOnPurposeComplete: every CPOD_ name in the repository's code
// (Go, JavaScript, shell) is a setting or in envReadOnPurpose, so that a
// server started in the shell of a test, a client or CI never refuses a
// variable the repository itself uses. (This file holds typos on purpose.)
func TestEnvReadOnPurposeComplete(t *testing.T) {
	t.Parallel()
	name := regexp.MustCompile(`CPOD_[A-Z0-9_]*[A-Z0-9]`)
	seen := map[string]string{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == "cpod-data") {
			return filepath.SkipDir
		}
		ext := filepath.Ext(path)
		if d.IsDir() || filepath.Base(path) == "envnames_test.go" ||
			!(ext == ".go" || ext == ".js" || ext == ".ts" || ext == ".sh" || path == filepath.Join("..", ".ci", "run")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range name.FindAllString(string(b), -1) {
			seen[n] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 20 {
		t.Fatalf("found only %d CPOD_ names: is the walk right?", len(seen))
	}
	for n, path := range seen {
		if _, ok := settingByEnv(n); !ok && !slices.Contains(envReadOnPurpose, n) {
			t.Errorf("%s (in %s) is neither a setting nor in envReadOnPurpose: the server would refuse it at start", n, path)
		}
	}
	for _, n := range envReadOnPurpose {
		if _, ok := seen[n]; !ok {
			t.Errorf("envReadOnPurpose lists %s, which no code reads", n)
		}
	}
}

// TestConfigUnknownFlag: an unknown flag is one line naming the closest
// flag, not the flag package's message followed by the whole usage; -h
// still prints the whole usage.
func TestConfigUnknownFlag(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	for flagArg, want := range map[string]string{
		"-cors-origin":  "unknown flag -cors-origin; did you mean -cors-origins? (-h lists every flag)",
		"--adress":      "unknown flag -adress; did you mean -addr? (-h lists every flag)",
		"-max-filesize": "unknown flag -max-filesize; did you mean -max-file-size? (-h lists every flag)",
	} {
		out.Reset()
		_, err := parseConfig([]string{flagArg, "x"}, envFunc(nil), &out)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", flagArg, err, want)
		}
		if out.Len() != 0 {
			t.Errorf("%s: printed %d bytes besides the error: %.80q", flagArg, out.Len(), out.String())
		}
	}
	// The whole program: exit 2 and one line.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-cors-origin", "https://app.example.com"}, envFunc(nil), &stdout, &stderr); code != 2 ||
		stderr.String() != "cpod storage: unknown flag -cors-origin; did you mean -cors-origins? (-h lists every flag)\n" {
		t.Errorf("run: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"token", "--tenantt", "t1"}, envFunc(nil), &stdout, &stderr); code != 2 ||
		stderr.String() != "cpod storage token: unknown flag -tenantt; did you mean -tenant? (-h lists every flag)\n" {
		t.Errorf("token: exit %d, stderr %q", code, stderr.String())
	}
	out.Reset()
	if _, err := parseConfig([]string{"-h"}, envFunc(nil), &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-cors-origins") || !strings.Contains(out.String(), "Usage: httpserver") {
		t.Errorf("-h: %v, printed %.120q", err, out.String())
	}
}

// TestConfigSizeUnit: a size with a unit other than KiB, MiB or GiB says
// the unit is the mistake, and which units there are; other mistakes keep
// the general message.
func TestConfigSizeUnit(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]string{
		"5GB":    `CPOD_MAX_FILE_SIZE (-max-file-size): "5GB": the unit "GB" is not one of KiB, MiB or GiB`,
		"5G":     `the unit "G" is not one of KiB, MiB or GiB`,
		"5gib":   `the unit "gib" is not one of KiB, MiB or GiB`,
		"5 GiB":  `the unit " GiB" is not one of KiB, MiB or GiB`,
		"512kb":  `the unit "kb" is not one of KiB, MiB or GiB`,
		"GiB":    "CPOD_MAX_FILE_SIZE (-max-file-size) must be a size of at least 1 bytes, such as",
		"1.5GiB": "CPOD_MAX_FILE_SIZE (-max-file-size) must be a size of at least 1 bytes, such as",
		"-5GiB":  "CPOD_MAX_FILE_SIZE (-max-file-size) must be a size of at least 1 bytes, such as",
	} {
		_, err := parseConfig(nil, envFunc(map[string]string{"CPOD_MAX_FILE_SIZE": value}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", value, err, want)
		}
	}
	for value, want := range map[string]int64{"5GiB": 5 << 30, "64KiB": 64 << 10, "1048576": 1 << 20, "16MiB": 16 << 20} {
		c, err := parseConfig(nil, envFunc(map[string]string{"CPOD_MAX_FILE_SIZE": value}), io.Discard)
		if err != nil || c.Limits.MaxFileSize != want {
			t.Errorf("%q: %v, %v; want %d", value, c, err, want)
		}
	}
}
