package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the server built once for the tests that run it as a process.
var binary struct {
	once sync.Once
	path string
	err  error
	dir  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// serverBinary builds ./httpserver (once per test run) and returns its path.
func serverBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "cpod-httpserver-test-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "cpod-storage")
		out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// testEnv is a clean environment: no CPOD_* variable of the caller leaks in.
func testEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	return append(env, extra...)
}

// syncBuffer is an io.Writer safe for the process's output goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running server process.
type proc struct {
	cmd    *exec.Cmd
	URL    string
	Addr   string
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// startServer runs the server on a free loopback port with the data
// directory and extra arguments, JSON logs, and waits until it listens.
func startServer(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	return startServerEnv(t, nil, dataDir, args...)
}

// startServerEnv is startServer with environment variables.
func startServerEnv(t *testing.T, env []string, dataDir string, args ...string) *proc {
	t.Helper()
	args = append([]string{"-addr", "127.0.0.1:0", "-data-dir", dataDir, "-log-format", "json"}, args...)
	cmd := exec.Command(serverBinary(t), args...)
	cmd.Env = testEnv(env...)
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(p.stderr, pw)
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	// The listening record names the address: port 0 never races.
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "cpod storage listening" {
				a, _ := rec["addr"].(string)
				addr <- a
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addr:
		p.Addr, p.URL = a, "http://"+a
	case <-p.done:
		t.Fatalf("server exited before listening: %v\n%s", p.err, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not listen within 30s:\n%s", p.stderr)
	}
	return p
}

// stop sends sig and returns the exit code.
func (p *proc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not exit within 30s:\n%s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// runBinary runs the binary to completion and returns its exit code, stdout
// and stderr.
func runBinary(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(serverBinary(t), args...)
	cmd.Env = testEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within 30s", args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// mintToken runs the token subcommand.
func mintToken(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	code, out, errOut := runBinary(t, nil, append([]string{"token", "--data-dir", dataDir}, args...)...)
	if code != 0 {
		t.Fatalf("token %v: exit %d: %s", args, code, errOut)
	}
	return strings.TrimSpace(out)
}

// response is an HTTP answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request to the server.
func call(t *testing.T, method, url, token string, header map[string]string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{res.StatusCode, res.Header, b}
}

// want fails the test unless r has the status.
func want(t *testing.T, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
}

// decodeBody decodes r's JSON body into v.
func decodeBody(t *testing.T, what string, r response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%s: body %q is not the expected JSON: %v", what, r.body, err)
	}
}
