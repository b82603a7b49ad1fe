package storage_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/alicebob/miniredis/v2"
	"github.com/cpod/storage/embedded"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cpod/storage/cpodtest"
)

// faultMode is what a faultProxy does with the traffic to its backend.
type faultMode int

const (
	// pass forwards every byte both ways.
	pass faultMode = iota
	// freeze accepts connections and never answers: open connections stay
	// open and silent, new ones are accepted and held, nothing is forwarded.
	freeze
	// refuse closes the port: dials are refused, open connections reset.
	refuse
)

func (m faultMode) String() string { return [...]string{"pass", "freeze", "refuse"}[m] }

// faultProxy is a TCP proxy in front of a backend that a test can freeze or
// close and heal again, on the fakes and on real servers alike.
type faultProxy struct {
	target string
	addr   string

	mu     sync.Mutex
	mode   faultMode
	ln     net.Listener
	conns  map[net.Conn]bool
	wake   chan struct{} // closed on every change of mode
	closed bool
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}, wake: make(chan struct{})}
	go p.accept(ln)
	t.Cleanup(p.close)
	return p
}

// set switches the proxy to mode m. Connections made under an earlier mode
// are cut when the proxy passes traffic again or refuses it.
func (p *faultProxy) set(m faultMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || m == p.mode {
		return
	}
	old := p.mode
	p.mode = m
	close(p.wake)
	p.wake = make(chan struct{})
	if m != freeze {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
	if m == refuse {
		p.ln.Close()
	}
	if old == refuse {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			panic("faultProxy: listen again on " + p.addr + ": " + err.Error())
		}
		p.ln = ln
		go p.accept(ln)
	}
}

func (p *faultProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	close(p.wake)
}

// track registers c, or reports false when the proxy no longer wants it.
func (p *faultProxy) track(c net.Conn) (faultMode, <-chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, nil, false
	}
	p.conns[c] = true
	return p.mode, p.wake, true
}

func (p *faultProxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *faultProxy) serve(c net.Conn) {
	defer c.Close()
	mode, wake, ok := p.track(c)
	if !ok {
		return
	}
	if mode == freeze {
		<-wake // held open, never answered
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if _, _, ok := p.track(up); !ok {
		return
	}
	go p.pipe(c, up)
	p.pipe(up, c)
}

// pipe copies src to dst while the proxy passes traffic; once frozen it
// swallows what it reads until the mode changes again, then cuts both.
func (p *faultProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		mode, wake := p.mode, p.wake
		p.mu.Unlock()
		if mode != pass {
			<-wake
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// proxied returns rawURL with its host replaced by a new faultProxy's.
func proxied(t testing.TB, rawURL string) (*faultProxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("cannot proxy %q", rawURL)
	}
	p := newFaultProxy(t, u.Host)
	u.Host = p.addr
	return p, u.String()
}

// faultRig is a cpodtest server whose three backends are reached through
// fault proxies: the real servers of CPODTEST_* when set, else fresh
// in-process fakes.
type faultRig struct {
	srv              *cpodtest.Server
	mongo, redis, s3 *faultProxy
}

// newFaultRig starts the rig. Without CPODTEST_MONGO_URI it starts its own
// FerretDB, which ferretdb.New does not allow concurrently with cpodtest's:
// callers must not be parallel tests.
func newFaultRig(t *testing.T, opts ...cpodtest.Option) *faultRig {
	t.Helper()
	if os.Getenv(cpodtest.EnvStore) == "sqlite" {
		t.Skip("the fault rig proxies MongoDB, Redis and S3; the SQLite store runs in process (its faults: documents_sqlite_test.go)")
	}
	r := &faultRig{}
	var mongoURL, redisURL, s3URL string
	if mongoURL = os.Getenv(cpodtest.EnvMongoURI); mongoURL == "" {
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
		mongoURL = f.MongoDBURI()
	}
	if redisURL = os.Getenv(cpodtest.EnvRedisURL); redisURL == "" {
		redisURL = "redis://" + miniredis.RunT(t).Addr() + "/0"
	}
	if s3URL = os.Getenv(cpodtest.EnvS3URL); s3URL == "" {
		faker := gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog()))
		ts := httptest.NewServer(faker.Server())
		t.Cleanup(ts.Close)
		u, _ := url.Parse(ts.URL)
		u.User = url.UserPassword("cpodtest", "cpodtest-secret")
		s3URL = u.String()
	}
	r.mongo, mongoURL = proxied(t, mongoURL)
	r.redis, redisURL = proxied(t, redisURL)
	r.s3, s3URL = proxied(t, s3URL)
	r.srv = cpodtest.NewServer(t, append([]cpodtest.Option{
		cpodtest.WithMongoURI(mongoURL), cpodtest.WithRedisURL(redisURL), cpodtest.WithS3URL(s3URL),
	}, opts...)...)
	// Cleanups run last first: heal before cpodtest removes its data.
	t.Cleanup(r.heal)
	return r
}

func (r *faultRig) heal() {
	for _, p := range []*faultProxy{r.mongo, r.redis, r.s3} {
		p.set(pass)
	}
}
