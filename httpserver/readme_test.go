package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readmeShell returns README.md's shell code: the ```sh blocks, in order,
// with line continuations joined and comment lines dropped.
func readmeShell(t *testing.T) []string {
	t.Helper()
	readme := readFile(t, filepath.Join("..", "README.md"))
	var lines []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(readme, -1) {
		for _, l := range strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) < 20 {
		t.Fatalf("README.md has only %d lines of shell", len(lines))
	}
	return lines
}

// readmeLine returns the one line of README.md's shell that holds s.
func readmeLine(t *testing.T, s string) string {
	t.Helper()
	var found []string
	for _, l := range readmeShell(t) {
		if strings.Contains(l, s) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md's shell has %d lines with %q, want 1: %q", len(found), s, found)
	}
	return found[0]
}

// runSh runs a line of README.md with sh in dir, with nothing of this
// process' environment but PATH, and returns its standard output.
func runSh(t *testing.T, dir, line string) string {
	t.Helper()
	code, _, _ := strings.Cut(line, " # ")
	cmd := exec.Command("sh", "-ec", code)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v\n%s", line, err, stderr.String())
	}
	return string(out)
}

// TestREADMEShellVariables: every variable README.md's shell snippets use
// is set by an earlier snippet (a pasted command must not run with an empty
// one: an admin call with $ADMIN unset wrote a 403 into u1.tar), and every
// URL of the API is built on $CPOD, the base URL the walk-through sets (not
// $URL, which holds a signed URL there). No variable of the reader's own
// starts with CPOD_, which the server reads as a setting.
func TestREADMEShellVariables(t *testing.T) {
	t.Parallel()
	set := map[string]bool{}
	use := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	assign := regexp.MustCompile(`(?:^|[\s;(])(?:export\s+)?([A-Z_][A-Z0-9_]*)=`)
	base := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/v1/`)
	for _, l := range readmeShell(t) {
		code, _, _ := strings.Cut(l, " # ")
		for _, m := range use.FindAllStringSubmatch(code, -1) {
			if !set[m[1]] {
				t.Errorf("README.md uses $%s before any snippet sets it: %s", m[1], l)
			}
		}
		for _, m := range base.FindAllStringSubmatch(code, -1) {
			if m[1] != "CPOD" {
				t.Errorf("README.md builds an API URL on $%s, not $CPOD: %s", m[1], l)
			}
		}
		for _, m := range assign.FindAllStringSubmatch(code, -1) {
			set[m[1]] = true
			if strings.HasPrefix(m[1], "CPOD_") {
				if _, ok := settingByEnv(m[1]); !ok && !slices.Contains(envReadOnPurpose, m[1]) {
					t.Errorf("README.md sets %s, which the server would refuse as an unknown setting: %s", m[1], l)
				}
			}
		}
	}
	for _, v := range []string{"CPOD", "ADMIN_TOKEN", "TOKEN"} {
		if !set[v] {
			t.Errorf("README.md's walk-through does not set $%s", v)
		}
	}
}

// TestREADMEUploadFile: the walk-through creates the file it uploads, with
// commands of a base system, and it is the PNG of the size README.md shows
// in the answer (with a missing file curl sends an empty body, which the
// upload URL stores as an empty file).
func TestREADMEUploadFile(t *testing.T) {
	t.Parallel()
	upload := readmeLine(t, "--data-binary @")
	name := regexp.MustCompile(`--data-binary @(\S+)`).FindStringSubmatch(upload)[1]
	dir := t.TempDir()
	runSh(t, dir, readmeLine(t, "> "+name))
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG: %q", name, b)
	}
	readme := readFile(t, filepath.Join("..", "README.md"))
	m := regexp.MustCompile(`"key":"uploads/` + regexp.QuoteMeta(name) + `","tier":"private","size":(\d+)`).FindStringSubmatch(readme)
	if m == nil {
		t.Fatalf("README.md shows no size in the answer to the upload of %s", name)
	}
	equalInt(t, "size README.md shows", m[1], len(b))
}

// TestREADMELockID: the lock id of README.md's recipe comes from commands of
// a base system (uuidgen is not one), and is random.
func TestREADMELockID(t *testing.T) {
	t.Parallel()
	line := readmeLine(t, "LOCK_ID=")
	var ids []string
	for range 2 {
		code, _, _ := strings.Cut(line, " # ")
		id := runSh(t, t.TempDir(), code+`; printf %s "$LOCK_ID"`)
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Fatalf("LOCK_ID = %q, want 32 hex digits", id)
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] {
		t.Fatalf("two LOCK_IDs are the same: %s", ids[0])
	}
}

func equalInt(t *testing.T, what, got string, want int) {
	t.Helper()
	if got != strconv.Itoa(want) {
		t.Errorf("%s = %s, want %d", what, got, want)
	}
}
