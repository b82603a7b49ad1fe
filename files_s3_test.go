package storage_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
)

// s3Proxy forwards TCP connections to an S3 endpoint byte for byte, and can
// freeze: it then keeps every connection open, accepts new ones and moves
// no byte in either direction (an S3 that accepts and never answers). It
// works the same in front of gofakes3 and of a real S3 (signatures cover
// the Host header, which stays the proxy's).
type s3Proxy struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	// freezeAfter, when positive, freezes the proxy once that many bytes
	// went to S3.
	freezeAfter atomic.Int64
	upstream    atomic.Int64
	closed      chan struct{}
	mu          sync.Mutex
	conns       []net.Conn
}

func newS3Proxy(t testing.TB, target string) *s3Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &s3Proxy{ln: ln, target: target, closed: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *s3Proxy) close() {
	close(p.closed)
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *s3Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		c.Close()
		return false
	default:
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *s3Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		go func() {
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			if !p.track(up) {
				return
			}
			go p.pipe(up, c, true)
			go p.pipe(c, up, false)
		}()
	}
}

// pipe copies src to dst, holding every chunk while the proxy is frozen.
func (p *s3Proxy) pipe(dst, src net.Conn, toS3 bool) {
	buf := make([]byte, 32<<10)
	for {
		p.hold()
		n, err := src.Read(buf)
		if n > 0 {
			if toS3 {
				if lim := p.freezeAfter.Load(); lim > 0 && p.upstream.Add(int64(n)) >= lim {
					p.frozen.Store(true)
				}
			}
			p.hold()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *s3Proxy) hold() {
	for p.frozen.Load() {
		select {
		case <-p.closed:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// s3Client is a minio client of the S3 that cpodtest uses (gofakes3, or
// CPODTEST_S3_URL), reached at addr.
func s3Client(t testing.TB, addr string, limits ...minio.UploadLimits) *minio.Client {
	return s3ClientVia(t, addr, nil, limits...)
}

// partCounter counts the part uploads sent through it.
type partCounter struct{ n atomic.Int32 }

func (p *partCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == "PUT" && r.URL.Query().Has("partNumber") {
		p.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func s3ClientVia(t testing.TB, addr string, tr http.RoundTripper, limits ...minio.UploadLimits) *minio.Client {
	user, secret := "cpodtest", "cpodtest-secret"
	if u, err := url.Parse(os.Getenv(cpodtest.EnvS3URL)); err == nil && u.User != nil {
		user = u.User.Username()
		secret, _ = u.User.Password()
	}
	o := &minio.Options{Creds: credentials.NewStaticV4(user, secret, ""), Region: "us-east-1", Transport: tr}
	if len(limits) > 0 {
		o.UploadLimits = &limits[0]
	}
	c, err := minio.New(addr, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFilesContentLengthMultipart: a body with Content-Length above the
// single-PUT limit streams as a multipart upload through the part buffers
// and is stored intact.
func TestFilesContentLengthMultipart(t *testing.T) {
	t.Parallel()
	var parts partCounter
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.S3 = s3ClientVia(t, c.S3.EndpointURL().Host, &parts, minio.UploadLimits{MaxSinglePutObjectSize: 6 << 20})
		c.Limits.MaxFileSize = 64 << 20
	}))
	data := pattern(20<<20 + 3)
	r := fileDo(t, srv, "PUT", "/v1/storage/files/cl.bin", tok, nil, bytes.NewReader(data))
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "parts uploaded", parts.n.Load(), int32(3))
	r = do(t, srv, "GET", "/v1/storage/files/cl.bin", tok, nil)
	if !bytes.Equal(r.body, data) {
		t.Fatal("stored file differs")
	}
}

// proxiedServer is a files server whose engine reaches S3 through an
// s3Proxy, with S3Timeout set to timeout.
func proxiedServer(t *testing.T, timeout time.Duration, more ...func(*storage.Config)) (*cpodtest.Server, string, *s3Proxy) {
	var proxy *s3Proxy
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		proxy = newS3Proxy(t, c.S3.EndpointURL().Host)
		c.S3 = s3Client(t, proxy.ln.Addr().String())
		c.S3Timeout = timeout
		c.Limits.MaxFileSize = 64 << 20
		for _, f := range more {
			f(c)
		}
	}))
	return srv, tok, proxy
}

// wantUnavailable checks a 503 backend_unavailable with Retry-After that
// came within the bound.
func wantUnavailable(t *testing.T, r resp, took, bound time.Duration, head bool) {
	t.Helper()
	if head {
		equal(t, "status", r.status, http.StatusServiceUnavailable)
	} else {
		wantStatus(t, r, http.StatusServiceUnavailable, "backend_unavailable")
	}
	equal(t, "Retry-After", r.header.Get("Retry-After"), "1")
	if took > bound {
		t.Fatalf("answered after %v, bound %v", took, bound)
	}
}

// TestFilesS3Frozen: with S3 accepting connections and never answering,
// every files route answers 503 backend_unavailable with Retry-After within
// S3Timeout (plus slack for a loaded machine), instead of minio-go's 60 s
// response-header wait times its retries; and none blames the client.
func TestFilesS3Frozen(t *testing.T) {
	t.Parallel()
	const timeout = 400 * time.Millisecond
	const bound = timeout + 4*time.Second // slack for -race on a busy machine; far below minio-go's 60 s
	srv, tok, proxy := proxiedServer(t, timeout)
	putFile(t, srv, tok, "f.txt", "", "text/plain", "hello")
	signed := signURL(t, srv, tok, map[string]any{"key": "f.txt"})
	proxy.frozen.Store(true)

	big := pattern(3 << 20)
	cases := []struct {
		name, method, path string
		hdr                http.Header
		body               func() io.Reader
	}{
		{"put content-length", "PUT", "/v1/storage/files/n.txt", nil, func() io.Reader { return strings.NewReader("new") }},
		{"put chunked small", "PUT", "/v1/storage/files/n.txt", nil, func() io.Reader { return chunked(strings.NewReader("new")) }},
		{"put chunked multipart", "PUT", "/v1/storage/files/n.bin", nil, func() io.Reader { return chunked(bytes.NewReader(big)) }},
		{"put content-length large", "PUT", "/v1/storage/files/n.bin", nil, func() io.Reader { return bytes.NewReader(big) }},
		{"put empty", "PUT", "/v1/storage/files/empty", nil, func() io.Reader { return strings.NewReader("") }},
		{"put empty chunked", "PUT", "/v1/storage/files/empty", nil, func() io.Reader { return chunked(strings.NewReader("")) }},
		{"get", "GET", "/v1/storage/files/f.txt", nil, nil},
		{"head", "HEAD", "/v1/storage/files/f.txt", nil, nil},
		{"range get", "GET", "/v1/storage/files/f.txt", http.Header{"Range": {"bytes=1-2"}}, nil},
		{"list", "GET", "/v1/storage/files?prefix=", nil, nil},
		{"delete", "DELETE", "/v1/storage/files/f.txt", nil, nil},
		{"signed-url create", "POST", "/v1/storage/signed-urls", nil, func() io.Reader { return strings.NewReader(`{"key":"f.txt"}`) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			start := time.Now()
			r := fileDo(t, srv, tc.method, tc.path, tok, tc.hdr, body)
			wantUnavailable(t, r, time.Since(start), bound, tc.method == "HEAD")
		})
	}
	for _, method := range []string{"GET", "HEAD"} {
		t.Run("signed download "+method, func(t *testing.T) {
			start := time.Now()
			r := getURL(t, method, signed, nil)
			wantUnavailable(t, r, time.Since(start), bound, method == "HEAD")
		})
	}
	// Once S3 answers again, so does the engine. (Requests held by the
	// frozen S3 may still land now, as they could with a real one.)
	proxy.frozen.Store(false)
	putFile(t, srv, tok, "after.txt", "", "text/plain", "again")
	r := do(t, srv, "GET", "/v1/storage/files/after.txt", tok, nil)
	wantStatus(t, r, http.StatusOK, "")
	equal(t, "body", string(r.body), "again")
}

// TestFilesS3StallMidTransfer: S3 that stops in the middle of an upload
// (with Content-Length, or chunked and multipart) ends it with 503 within
// the bound, and nothing is stored; S3 that stops in the middle of a
// download ends the response early instead of holding it open.
func TestFilesS3StallMidTransfer(t *testing.T) {
	t.Parallel()
	const timeout = 400 * time.Millisecond
	const bound = timeout + 5*time.Second
	data := pattern(24 << 20)
	for _, withLength := range []bool{true, false} {
		t.Run(fmt.Sprintf("upload content-length=%v", withLength), func(t *testing.T) {
			t.Parallel()
			srv, tok, proxy := proxiedServer(t, timeout)
			proxy.freezeAfter.Store(10 << 20) // within the second part
			var body io.Reader = bytes.NewReader(data)
			if !withLength {
				body = chunked(body)
			}
			start := time.Now()
			r := fileDo(t, srv, "PUT", "/v1/storage/files/big.bin", tok, nil, body)
			wantUnavailable(t, r, time.Since(start), bound+time.Second, false)
			proxy.frozen.Store(false)
			proxy.freezeAfter.Store(0)
			wantStatus(t, do(t, srv, "GET", "/v1/storage/files/big.bin", tok, nil), http.StatusNotFound, "not_found")
		})
	}
	t.Run("download", func(t *testing.T) {
		t.Parallel()
		srv, tok, proxy := proxiedServer(t, timeout)
		wantStatus(t, fileDo(t, srv, "PUT", "/v1/storage/files/big.bin", tok, nil, bytes.NewReader(data)), http.StatusOK, "")
		req, _ := http.NewRequest("GET", srv.URL+"/v1/storage/files/big.bin", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := srv.HTTP.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		equal(t, "status", res.StatusCode, http.StatusOK)
		proxy.frozen.Store(true)
		start := time.Now()
		n, err := io.Copy(io.Discard, res.Body)
		if err == nil || n >= int64(len(data)) {
			t.Fatalf("read %d bytes, err %v: want a body cut short", n, err)
		}
		if took := time.Since(start); took > bound {
			t.Fatalf("the stalled download ended after %v, bound %v", took, bound)
		}
	})
}

// TestFilesSlowClientNotS3: a client that sends its body slowly, or stops
// for longer than S3Timeout, is not taken for a stalled S3: the upload
// goes on while bytes come, and a client that stopped is answered as the
// client's failure (400), never 503.
func TestFilesSlowClientNotS3(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	srv, tok, _ := proxiedServer(t, timeout)
	for _, withLength := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", withLength), func(t *testing.T) {
			t.Parallel()
			// 2 MiB (past the first MiB: multipart when chunked) in two
			// pieces, each after a pause of 2x S3Timeout.
			data := pattern(2 << 20)
			pr, pw := io.Pipe()
			go func() {
				for i := 0; i < len(data); i += 1 << 20 {
					time.Sleep(2 * timeout)
					if _, err := pw.Write(data[i : i+1<<20]); err != nil {
						return
					}
				}
				pw.Close()
			}()
			name := fmt.Sprintf("/v1/storage/files/slow-%v.bin", withLength)
			req, _ := http.NewRequest("PUT", srv.URL+name, pr)
			if withLength {
				req.ContentLength = int64(len(data))
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			r := fileSend(t, srv.HTTP.Client(), req)
			wantStatus(t, r, http.StatusOK, "")
			got := do(t, srv, "GET", name, tok, nil)
			if !bytes.Equal(got.body, data) {
				t.Fatal("the slowly sent file was not stored intact")
			}
		})
	}
}

// timeoutS3 is an S3 endpoint that, like AWS, gives up on a PUT body that
// stops arriving: 400 RequestTimeout after idle of the request body.
func timeoutS3(t *testing.T, idle time.Duration) *minio.Client {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "HEAD" { // the engine's stat of the old file (usage): none
			w.WriteHeader(http.StatusNotFound)
			return
		}
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			_ = rc.SetReadDeadline(time.Now().Add(idle))
			_, err := r.Body.Read(buf)
			if err == io.EOF {
				w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
				return
			}
			if err != nil {
				w.Header().Set("Content-Type", "application/xml")
				w.Header().Set("Connection", "close")
				w.WriteHeader(http.StatusBadRequest)
				_ = xml.NewEncoder(w).Encode(struct {
					XMLName xml.Name `xml:"Error"`
					Code    string
					Message string
				}{Code: "RequestTimeout", Message: "Your socket connection to the server was not read from or written to within the timeout period."})
				return
			}
		}
	}))
	t.Cleanup(ts.Close)
	u, _ := url.Parse(ts.URL)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4("k", "s", ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFilesClientStallS3Timeout: S3 that times out a body the client
// stopped sending is the client's failure (400 invalid_request), not 503.
func TestFilesClientStallS3Timeout(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.S3, c.Bucket = timeoutS3(t, 300*time.Millisecond), "bkt"
		c.S3Timeout = 5 * time.Second
	}))
	// A raw connection: the body stops after its first bytes and the
	// connection stays open.
	conn, err := net.Dial("tcp", srv.HTTP.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/storage/files/stall.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\nthe start of a body that never ends", tok, 1<<20)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	wantStatus(t, resp{res.StatusCode, res.Header, b}, http.StatusBadRequest, "invalid_request")
}

// gateS3 is an S3 endpoint for multipart uploads whose part uploads wait
// until the gate opens. It counts initiated uploads and keeps sizes.
type gateS3 struct {
	client    *minio.Client
	gate      chan struct{}
	once      sync.Once
	initiated atomic.Int32
	partsSeen atomic.Int32
	mu        sync.Mutex
	sizes     map[string]int64
	parts     map[string]int64
}

func newGateS3(t *testing.T) *gateS3 {
	g := &gateS3{gate: make(chan struct{}), sizes: map[string]int64{}, parts: map[string]int64{}}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)
	u, _ := url.Parse(ts.URL)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4("k", "s", ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	g.client = c
	t.Cleanup(g.open) // before the server closes: release held parts
	return g
}

func (g *gateS3) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gateS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, key, _ := cutBucket(r.URL.Path)
	q := r.URL.Query()
	etag := `"0123456789abcdef0123456789abcdef"`
	switch {
	case r.Method == "POST" && q.Has("uploads"):
		id := fmt.Sprintf("up-%d", g.initiated.Add(1))
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>`, key, id)
	case r.Method == "PUT" && q.Has("uploadId"):
		g.partsSeen.Add(1)
		select {
		case <-g.gate:
		case <-r.Context().Done():
			return
		}
		n := payload(r)
		g.mu.Lock()
		g.parts[q.Get("uploadId")] += n
		g.mu.Unlock()
		w.Header().Set("ETag", etag)
	case r.Method == "POST" && q.Has("uploadId"):
		io.Copy(io.Discard, r.Body)
		g.mu.Lock()
		g.sizes[key] = g.parts[q.Get("uploadId")]
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>%s</Key><ETag>"0123456789abcdef0123456789abcdef-2"</ETag></CompleteMultipartUploadResult>`, key)
	case r.Method == "DELETE" && q.Has("uploadId"):
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "HEAD":
		w.WriteHeader(http.StatusNotFound)
	default:
		w.WriteHeader(http.StatusNotImplemented)
	}
}

// TestFilesUploadMemoryBudget: with a budget of one part, a second chunked
// upload does not start (not even its first read into a buffer, nor its
// multipart initiation) until the first gives its buffer back; a waiting
// upload ends when its client leaves; and both uploads complete.
func TestFilesUploadMemoryBudget(t *testing.T) {
	t.Parallel()
	g := newGateS3(t)
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.S3, c.Bucket = g.client, "bkt"
		c.S3Timeout = 20 * time.Second
		c.Limits.MaxFileSize = 64 << 20
		c.Limits.MaxUploadMemory = 8 << 20 // one part
	}))
	data := pattern(10 << 20)
	put := func(ctx context.Context, key string) (resp, error) {
		req, _ := http.NewRequestWithContext(ctx, "PUT", srv.URL+"/v1/storage/files/"+key, chunked(bytes.NewReader(data)))
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := srv.HTTP.Client().Do(req)
		if err != nil {
			return resp{}, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return resp{res.StatusCode, res.Header, b}, err
	}
	first := make(chan resp, 1)
	go func() {
		r, err := put(context.Background(), "a.bin")
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	waitUntil(t, func() bool { return g.partsSeen.Load() >= 1 })

	// The second upload waits for memory; its client gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := put(ctx, "b.bin"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second upload: %v, want it to wait for memory", err)
	}
	equal(t, "multipart uploads initiated", g.initiated.Load(), int32(1))

	second := make(chan resp, 1)
	go func() {
		r, err := put(context.Background(), "c.bin")
		if err != nil {
			t.Error(err)
		}
		second <- r
	}()
	time.Sleep(200 * time.Millisecond)
	equal(t, "multipart uploads initiated", g.initiated.Load(), int32(1))
	g.open()
	for _, ch := range []chan resp{first, second} {
		wantStatus(t, <-ch, http.StatusOK, "")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	equal(t, "a.bin stored", g.sizes["t1/apps/a/a.bin"], int64(len(data)))
	equal(t, "c.bin stored", g.sizes["t1/apps/a/c.bin"], int64(len(data)))
}

// TestFilesUploadOneBuffer: with a budget of one part, a chunked upload of
// several parts reads and sends in turn and is stored intact.
func TestFilesUploadOneBuffer(t *testing.T) {
	t.Parallel()
	srv, tok := fileServer(t, cpodtest.WithConfig(func(c *storage.Config) {
		c.Limits.MaxFileSize = 64 << 20
		c.Limits.MaxUploadMemory = 8 << 20
	}))
	data := pattern(20<<20 + 5)
	wantStatus(t, fileDo(t, srv, "PUT", "/v1/storage/files/one.bin", tok, nil, chunked(bytes.NewReader(data))), http.StatusOK, "")
	r := do(t, srv, "GET", "/v1/storage/files/one.bin", tok, nil)
	if !bytes.Equal(r.body, data) {
		t.Fatal("stored file differs")
	}
}

// TestFilesUploadMemoryConfig: a budget below one part is refused by New.
func TestFilesUploadMemoryConfig(t *testing.T) {
	t.Parallel()
	srv, _ := fileServer(t)
	cfg := storage.Config{S3: srv.S3, Bucket: srv.Bucket, Mongo: srv.Mongo, SQL: srv.SQL, Redis: srv.Redis,
		Auth: storage.AuthConfig{Keys: []storage.Key{{Secret: []byte(strings.Repeat("k", 32))}}}, SigningKey: []byte(strings.Repeat("s", 32)),
		Limits: storage.Limits{MaxUploadMemory: 1 << 20}}
	if _, err := storage.New(cfg); err == nil || !strings.Contains(err.Error(), "MaxUploadMemory") {
		t.Fatalf("New with a 1 MiB upload budget: %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
