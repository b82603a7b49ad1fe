package storage

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/semaphore"
)

// This file bounds the engine's S3 calls: how long S3 may keep a request
// waiting (Config.S3Timeout) and how much memory the part buffers of all
// uploads together may hold (Limits.MaxUploadMemory). See the notes at the
// top of files.go.

// errS3Stalled is the cause of a call that S3 left without progress for
// longer than Config.S3Timeout.
var errS3Stalled = errors.New("s3: no progress within the S3 timeout")

// errS3Unavailable answers a call that S3 stalled.
func errS3Unavailable(op string) error {
	return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: errors.New("s3 " + op + ": no progress within the S3 timeout"), backend: backendS3}
}

// s3Ctx bounds one S3 call that transfers no file bytes (stat, list,
// delete, presign): its answer must come within Config.S3Timeout, retries
// included.
func (e *Engine) s3Ctx(c *call) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, e.cfg.S3Timeout)
}

// stallGuard bounds a transfer with S3 by progress, not by its length: it
// cancels the transfer's context when, for Config.S3Timeout, S3 made no
// progress while the engine was not waiting for its own client. Progress is
// any byte S3 takes or gives (and the answer's headers); the client's time
// (reading the request body, writing the response) is excluded, so a slow
// or stalled client is never taken for a stalled S3. The wait for S3's
// first answer (the response headers, each part's answer, the answer that
// completes a multipart upload) is such a stretch without progress.
type stallGuard struct {
	timeout time.Duration
	cancel  context.CancelCauseFunc
	start   time.Time
	last    atomic.Int64 // time.Since(start) at the last progress
	client  atomic.Int32 // waits on the client in progress
	fired   atomic.Bool

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// guardS3 starts a stallGuard over a context derived from parent; stop ends
// it and cancels that context.
func (e *Engine) guardS3(parent context.Context) (context.Context, *stallGuard) {
	ctx, cancel := context.WithCancelCause(parent)
	g := &stallGuard{timeout: e.cfg.S3Timeout, cancel: cancel, start: time.Now()}
	g.mu.Lock()
	g.timer = time.AfterFunc(g.timeout, g.check)
	g.mu.Unlock()
	return ctx, g
}

func (g *stallGuard) since() int64 { return int64(time.Since(g.start)) }

// progress records that S3 moved.
func (g *stallGuard) progress() { g.last.Store(g.since()) }

// clientWait marks the start of a wait on the client; clientDone its end.
func (g *stallGuard) clientWait() { g.client.Add(1) }
func (g *stallGuard) clientDone() {
	g.progress() // the stall clock starts again from here
	g.client.Add(-1)
}

func (g *stallGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	wait := g.timeout
	if g.client.Load() == 0 {
		idle := time.Duration(g.since() - g.last.Load())
		if idle >= g.timeout {
			g.fired.Store(true)
			g.cancel(errS3Stalled)
			return
		}
		wait = g.timeout - idle
	}
	g.timer.Reset(wait)
}

// stalled reports whether the guard ended the transfer.
func (g *stallGuard) stalled() bool { return g.fired.Load() }

// stop ends the guard and cancels its context.
func (g *stallGuard) stop() {
	g.mu.Lock()
	g.stopped = true
	g.timer.Stop()
	g.mu.Unlock()
	g.cancel(context.Canceled)
}

// guardedReader is a body held in memory on its way to S3 (a part, or a
// small chunked upload): every read is progress. It keeps Seek, so
// minio-go may still retry it (within the guard's bound), and has WriteTo,
// so the transport writes it in large pieces (1 MiB, progress after each)
// as it would a *bytes.Reader.
type guardedReader struct {
	b   []byte
	off int
	g   *stallGuard
}

func newGuardedReader(b []byte, g *stallGuard) *guardedReader {
	return &guardedReader{b: b, g: g}
}

func (r *guardedReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	r.g.progress()
	return n, nil
}

func (r *guardedReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.off < len(r.b) {
		end := min(r.off+1<<20, len(r.b))
		n, err := w.Write(r.b[r.off:end])
		r.off += n
		total += int64(n)
		r.g.progress()
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (r *guardedReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = int64(r.off) + offset
	case io.SeekEnd:
		abs = int64(len(r.b)) + offset
	default:
		return 0, errors.New("guardedReader.Seek: invalid whence")
	}
	if abs < 0 || abs > int64(len(r.b)) {
		return 0, errors.New("guardedReader.Seek: position out of range")
	}
	r.off = int(abs)
	return abs, nil
}

// s3Body is an object being read from S3: each read is progress, Close
// ends the guard.
type s3Body struct {
	rc io.ReadCloser
	g  *stallGuard
}

func (b *s3Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.g.progress()
	}
	return n, err
}

func (b *s3Body) Close() error {
	err := b.rc.Close()
	b.g.stop()
	return err
}

// clientWriter is the response writer of a download: time spent writing to
// the client does not count against S3.
type clientWriter struct {
	w io.Writer
	g *stallGuard
}

func (w clientWriter) Write(p []byte) (int, error) {
	w.g.clientWait()
	defer w.g.clientDone()
	return w.w.Write(p)
}

// ---- upload memory ----

// uploadBuffers holds the part buffers of multipart and chunked uploads:
// at most Limits.MaxUploadMemory bytes of them at any time, whatever the
// number of uploads, and at most a quarter of them (at least one buffer)
// for the uploads of one tenant, so that one tenant cannot take the budget
// from the others. An upload takes its first buffer (blocking, in turn:
// its tenant's share, then the budget) only once its body has shown it
// needs one (see readHead); it only ever waits for that one, so uploads
// cannot deadlock each other. A second buffer (read the next part from the
// client while the previous one is sent) is taken only when the budget and
// the tenant's share have room and nobody waits; without it the upload
// reads and sends in turn.
//
// A wait is bounded by progress: it goes on while buffers are given back
// (the queue moves; it is first come, first served), and ends with 503
// backend_unavailable when none was given back, to the tenant's share or
// the budget it waits on, for Config.S3Timeout.
type uploadBuffers struct {
	sem      *semaphore.Weighted
	partSize int64         // the largest part size, the size of every buffer
	share    int64         // the most buffers one tenant holds
	wait     time.Duration // the longest a wait goes with no buffer given back
	pool     sync.Pool
	freed    atomic.Int64 // UnixNano of the last buffer given back

	mu      sync.Mutex
	tenants map[string]*tenantBuffers
}

// tenantBuffers is one tenant's share of the budget; it exists while one
// of its uploads holds or waits for a buffer.
type tenantBuffers struct {
	sem   *semaphore.Weighted // share buffers
	refs  int                 // open leases, under uploadBuffers.mu
	freed atomic.Int64        // UnixNano of the last buffer given back
}

func newUploadBuffers(budget, partSize int64, wait time.Duration) *uploadBuffers {
	u := &uploadBuffers{sem: semaphore.NewWeighted(budget), partSize: partSize, wait: wait,
		share: 1, tenants: map[string]*tenantBuffers{}}
	if partSize > 0 { // no S3, no uploads
		u.share = max(1, budget/partSize/4)
	}
	u.pool.New = func() any { b := make([]byte, partSize); return &b }
	return u
}

// errUploadWait is the cause of a wait for a part buffer that ended
// because no buffer was given back within the bound.
var errUploadWait = errors.New("upload memory: no part buffer was given back within the S3 timeout")

// errUploadsBusy answers an upload that could not get a part buffer.
func errUploadsBusy() error {
	return &Error{Code: CodeBackendUnavailable, Message: "too many uploads in progress, try again", Err: errUploadWait}
}

// uploadLease is one upload's use of the budget, on behalf of its tenant.
type uploadLease struct {
	u      *uploadBuffers
	t      *tenantBuffers
	tenant string
}

// lease opens the use of the budget by one upload of tenant; close ends it
// once every buffer taken was released.
func (u *uploadBuffers) lease(tenant string) *uploadLease {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.tenants[tenant]
	if t == nil {
		t = &tenantBuffers{sem: semaphore.NewWeighted(u.share)}
		u.tenants[tenant] = t
	}
	t.refs++
	return &uploadLease{u: u, t: t, tenant: tenant}
}

func (l *uploadLease) close() {
	l.u.mu.Lock()
	defer l.u.mu.Unlock()
	if l.t.refs--; l.t.refs == 0 {
		delete(l.u.tenants, l.tenant)
	}
}

// acquire waits for one buffer: a place in the tenant's share, then one
// of the budget. It fails with errUploadsBusy when a wait saw no buffer
// given back for the bound, or with the context's error.
func (l *uploadLease) acquire(ctx context.Context) (*[]byte, error) {
	if err := l.u.waitFor(ctx, l.t.sem, 1, &l.t.freed); err != nil {
		return nil, err
	}
	if err := l.u.waitFor(ctx, l.u.sem, l.u.partSize, &l.u.freed); err != nil {
		l.t.freed.Store(time.Now().UnixNano())
		l.t.sem.Release(1)
		return nil, err
	}
	return l.u.pool.Get().(*[]byte), nil
}

// tryAcquire takes one more buffer if the tenant's share and the budget
// have room now.
func (l *uploadLease) tryAcquire() *[]byte {
	if !l.t.sem.TryAcquire(1) {
		return nil
	}
	if !l.u.sem.TryAcquire(l.u.partSize) {
		l.t.sem.Release(1)
		return nil
	}
	return l.u.pool.Get().(*[]byte)
}

func (l *uploadLease) release(b *[]byte) {
	l.u.pool.Put(b)
	now := time.Now().UnixNano()
	l.u.freed.Store(now)
	l.u.sem.Release(l.u.partSize)
	l.t.freed.Store(now)
	l.t.sem.Release(1)
}

// waitFor acquires n of sem, first come first served, for as long as
// buffers are given back to it (freed moves) at least once per u.wait.
func (u *uploadBuffers) waitFor(ctx context.Context, sem *semaphore.Weighted, n int64, freed *atomic.Int64) error {
	if sem.TryAcquire(n) {
		return nil
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now().UnixNano()
	var (
		mu    sync.Mutex
		done  bool
		timer *time.Timer
	)
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		idle := time.Duration(time.Now().UnixNano() - max(start, freed.Load()))
		if idle >= u.wait {
			cancel(errUploadWait)
			return
		}
		timer.Reset(u.wait - idle)
	}
	mu.Lock()
	timer = time.AfterFunc(u.wait, check)
	mu.Unlock()
	err := sem.Acquire(wctx, n)
	mu.Lock()
	done = true
	timer.Stop()
	mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && errors.Is(context.Cause(wctx), errUploadWait) {
			return errUploadsBusy()
		}
		return ctx.Err()
	}
	return nil
}

// ---- multipart ----

// multipartUpload streams body to key as a multipart upload of parts of
// partSize bytes, starting with first (a buffer of bufs already holding
// head, the start of the body). It owns first and releases it. At most two parts are
// in memory: one read from the client while the other is sent. Any failure
// aborts the upload; when S3 stalled, the abort runs in the background
// (bounded by S3Timeout) so that the answer is not held up by it.
func (e *Engine) multipartUpload(ctx context.Context, g *stallGuard, bufs *uploadLease, key string, first *[]byte, head int, body io.Reader, partSize int64, contentType string) (info minio.UploadInfo, err error) {
	core := minio.Core{Client: e.cfg.S3}
	md5Parts := e.cfg.S3.EndpointURL().Scheme != "https"

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	uploadID, err := core.NewMultipartUpload(ctx, e.cfg.Bucket, key, minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		bufs.release(first)
		return info, err
	}
	g.progress()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		parts []minio.CompletePart
		fail  error
		held  = 1                     // buffers taken from the budget
		free  = make(chan *[]byte, 2) // buffers whose part was sent
	)
	setFail := func(err error) {
		mu.Lock()
		if fail == nil {
			fail = err
			cancel(err)
		}
		mu.Unlock()
	}
	send := func(num int, buf *[]byte, n int) {
		defer wg.Done()
		defer func() { free <- buf }()
		var sum string
		if md5Parts {
			h := md5.Sum((*buf)[:n])
			sum = base64.StdEncoding.EncodeToString(h[:])
		}
		p, err := core.PutObjectPart(ctx, e.cfg.Bucket, key, uploadID, num, newGuardedReader((*buf)[:n], g), int64(n),
			minio.PutObjectPartOptions{Md5Base64: sum, DisableContentSha256: true})
		g.progress()
		if err != nil {
			setFail(err)
			return
		}
		mu.Lock()
		parts = append(parts, minio.CompletePart{PartNumber: num, ETag: p.ETag})
		mu.Unlock()
	}

	buf, filled := first, head
	maxParts := e.cfg.S3.UploadLimits().MaxPartsCount
	var readErr error
	for num := 1; ; num++ {
		if buf == nil {
			// A free buffer, a new one if the budget allows, or wait for
			// a part to be sent.
			select {
			case buf = <-free:
			default:
				if held < 2 {
					if buf = bufs.tryAcquire(); buf != nil {
						held++
					}
				}
				if buf == nil {
					select {
					case buf = <-free:
					case <-ctx.Done():
					}
				}
			}
			if buf == nil {
				break
			}
			filled = 0
		}
		if ctx.Err() != nil {
			break
		}
		n, err := io.ReadFull(body, (*buf)[filled:partSize])
		n += filled
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			readErr = err
			break
		}
		if n == 0 && num > 1 {
			break // the body ended with the previous part
		}
		if int64(num) > maxParts {
			readErr = errFileTooLarge
			break
		}
		wg.Add(1)
		go send(num, buf, n)
		buf = nil
		if err != nil {
			break // EOF: that was the last part
		}
	}
	wg.Wait()
	// Give back every buffer: the ones the senders returned, and ours.
	if buf != nil {
		free <- buf
	}
	for range held {
		bufs.release(<-free)
	}
	if readErr != nil {
		setFail(readErr)
	}
	if fail == nil && ctx.Err() != nil {
		fail = context.Cause(ctx)
	}
	if fail == nil {
		slices.SortFunc(parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
		info, fail = core.CompleteMultipartUpload(ctx, e.cfg.Bucket, key, uploadID, parts, minio.PutObjectOptions{})
		g.progress()
		if fail == nil {
			return info, nil
		}
	}
	abort := func() {
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.S3Timeout)
		defer acancel()
		if err := core.AbortMultipartUpload(actx, e.cfg.Bucket, key, uploadID); err != nil {
			e.log.Warn("storage: aborting a failed multipart upload failed", "err", err)
		}
	}
	if g.stalled() {
		go abort()
	} else {
		abort()
	}
	return minio.UploadInfo{}, fail
}
