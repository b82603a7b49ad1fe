package embedded

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"
)

// Checksums of the embedded S3's objects.
//
// Every object file written by this version carries the CRC-32C
// (Castagnoli, as S3's x-amz-checksum-crc32c; hardware-accelerated on amd64
// and arm64) of each 1 MiB block of its bytes, and of its JSON header (see
// fileStore). A CRC-32C detects every error burst of up to 32 bits, so any
// one changed byte, and any other damage with probability 1 - 2^-32 per
// block.
//
// Reads verify what they serve, a block before any of its bytes leaves:
//
//   - A GET reads and verifies the first block it touches before it sends
//     the status: an object of at most 1 MiB, or one damaged in its first
//     block, is answered 410 XCpodObjectDamaged (the engine: 500 internal)
//     with no body at all.
//   - A block damaged further on is found once the status and the blocks
//     before it were sent: the connection is cut before any of its bytes,
//     so the client sees a body shorter than its Content-Length (the
//     engine passes the cut on to its client the same way), never a
//     complete body with wrong bytes.
//   - A ranged GET reads the whole blocks its range touches (at most 2 MiB
//     more than the range) and verifies them all, the same way.
//   - A copy verifies its source; a multipart upload's parts carry the
//     CRC-32C of their bytes, checked when Complete copies them.
//   - A header that does not match its checksum makes the object
//     unreadable (410), HEAD included: its size, ETag or type may be wrong.
//
// Each damaged object found is logged at ERROR with its file name, the hex
// SHA-256 of its key (never the key), so an operator can find the file
// (objects/<bucket>/<h[:2]>/<h>) and restore it from a backup.
//
// Objects written by earlier versions have no checksums. A full GET of one
// whose ETag is the MD5 of its bytes (any single PUT) is verified against
// it: an object of at most 1 MiB before the status, a larger one before its
// last byte, which is held back (the connection is cut on a mismatch).
// Ranged GETs, and objects of multipart uploads (their ETag is no MD5 of
// the bytes), are served unverified until the scrub gives them checksums.
//
// The scrub (Backends.Scrub; on its own right after Start with a data
// directory, and every Config.ScrubInterval) reads every object and
// verifies it, logging each damaged one at ERROR and a summary at INFO (or
// WARN when it found damage). It rewrites each object of an earlier version
// with checksums (a copy renamed over the original, unless the object
// changed meanwhile), after checking its MD5 ETag where it has one;
// objects with nothing to check them against are counted as unverified.

// blockSize is the span of one checksum of the data; the buffers of reads
// (copyBufs) are exactly one block.
const (
	blockSize    = copyBufSize
	maxBlockSize = 64 << 20 // the largest block size a header may name
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errDamaged is an object whose stored bytes or header do not match
	// their checksums, or a part of an upload damaged on disk.
	errDamaged = errors.New("object damaged: its stored bytes do not match their checksum")
	// errDamagedHeader is an object file whose header does not match its
	// checksum or the file.
	errDamagedHeader = errors.New("the object file's header does not match its checksum")
)

// blockError is a block whose bytes do not match their checksum, or that
// could not be read.
type blockError struct {
	block      int64
	start, end int64 // the block's bytes, [start, end)
	err        error // a read failure; nil for a mismatch
}

func (e *blockError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("block %d (bytes %d-%d) cannot be read: %v", e.block, e.start, e.end-1, e.err)
	}
	return fmt.Sprintf("block %d (bytes %d-%d) does not match its checksum", e.block, e.start, e.end-1)
}

func (e *blockError) Unwrap() error { return e.err }

// blockSums computes the checksums of the blocks of bytes written in turn.
type blockSums struct {
	sums  []byte // big-endian CRC-32C of each whole block so far
	cur   uint32 // of the block being filled
	curN  int64  // bytes in it
	whole uint32 // of every byte since it was last reset (a part)
}

func (b *blockSums) add(p []byte) {
	b.whole = crc32.Update(b.whole, castagnoli, p)
	for len(p) > 0 {
		k := int(min(int64(len(p)), blockSize-b.curN))
		b.cur = crc32.Update(b.cur, castagnoli, p[:k])
		b.curN += int64(k)
		p = p[k:]
		if b.curN == blockSize {
			b.sums = binary.BigEndian.AppendUint32(b.sums, b.cur)
			b.cur, b.curN = 0, 0
		}
	}
}

// table is the checksum table of the bytes added: one entry per block,
// the last one short.
func (b *blockSums) table() []byte {
	t := b.sums
	if b.curN > 0 {
		t = binary.BigEndian.AppendUint32(t[:len(t):len(t)], b.cur)
	}
	return t
}

// blocks is the number of blocks of an object with checksums.
func blocks(h *objectHeader) int64 { return (h.Size + h.BlockSize - 1) / h.BlockSize }

// tableSize is the size of the checksum table of an object with checksums.
func tableSize(h *objectHeader) int64 { return 4 * blocks(h) }

// tableChunk is how many entries of the table a reader holds at a time.
const tableChunk = 4096

// blockReader reads bytes [off, end) of an object with checksums, a block
// at a time, each block verified before any of its bytes is handed out.
type blockReader struct {
	f        *os.File
	h        *objectHeader
	off, end int64
	buf      *[]byte
	table    []byte // entries [first, first+len(table)/4)
	first    int64
}

func newBlockReader(f *os.File, h *objectHeader, off, length int64) *blockReader {
	r := &blockReader{f: f, h: h, off: off, end: off + length}
	if h.BlockSize == copyBufSize {
		r.buf = copyBufs.Get().(*[]byte)
	} else {
		b := make([]byte, h.BlockSize)
		r.buf = &b
	}
	return r
}

func (r *blockReader) release() {
	if r.buf != nil && len(*r.buf) == copyBufSize {
		copyBufs.Put(r.buf)
	}
	r.buf = nil
}

// next returns the next piece of the range, the part of one block that
// lies in it, verified, valid until the next call; io.EOF after the last.
// A damaged block is a *blockError.
func (r *blockReader) next() ([]byte, error) {
	if r.off >= r.end {
		return nil, io.EOF
	}
	bs := r.h.BlockSize
	i := r.off / bs
	start := i * bs
	end := min(start+bs, r.h.Size)
	b := (*r.buf)[:end-start]
	if _, err := r.f.ReadAt(b, start); err != nil {
		return nil, &blockError{block: i, start: start, end: end, err: err}
	}
	want, err := r.entry(i)
	if err != nil {
		return nil, &blockError{block: i, start: start, end: end, err: err}
	}
	if crc32.Checksum(b, castagnoli) != want {
		return nil, &blockError{block: i, start: start, end: end}
	}
	lo, hi := r.off-start, min(r.end, end)-start
	r.off = start + hi
	return b[lo:hi], nil
}

// entry is block i's checksum, read from the table tableChunk at a time.
func (r *blockReader) entry(i int64) (uint32, error) {
	if i < r.first || i >= r.first+int64(len(r.table))/4 {
		n := min(tableChunk, blocks(r.h)-i)
		if cap(r.table) < int(4*n) {
			r.table = make([]byte, 4*n)
		}
		r.table = r.table[:4*n]
		if _, err := r.f.ReadAt(r.table, r.h.Size+4*i); err != nil {
			return 0, err
		}
		r.first = i
	}
	k := 4 * (i - r.first)
	return binary.BigEndian.Uint32(r.table[k : k+4]), nil
}

// damaged logs a damaged object at ERROR, naming it by its key's hash (its
// file name), and returns errDamaged, for a 410 XCpodObjectDamaged.
func (s *fileStore) damaged(bucket, key string, cause error) error {
	s.log.Error("embedded S3: damaged object: its stored bytes do not match their checksum; it is not served", "bucket", bucket, "object", keyHash(key), "err", cause)
	return errDamaged
}

// serveData sends the status and bytes [start, start+length) of an object,
// verified as the notes at the top of this file say.
func (s *fileStore) serveData(w http.ResponseWriter, status int, bucket, key string, f *os.File, h *objectHeader, start, length int64) error {
	if h.BlockSize == 0 || s.noVerify.Load() {
		return s.serveUnchecked(w, status, bucket, key, f, h, start, length)
	}
	br := newBlockReader(f, h, start, length)
	defer br.release()
	chunk, err := br.next()
	if err != nil && err != io.EOF {
		clearHeaders(w) // nothing sent yet: answer 410 alone
		return s.damaged(bucket, key, err)
	}
	w.WriteHeader(status)
	for err == nil {
		if _, werr := w.Write(chunk); werr != nil {
			return nil // the client left
		}
		chunk, err = br.next()
	}
	if err != io.EOF {
		s.damaged(bucket, key, err)
		cutConnection(w)
	}
	return nil
}

// clearHeaders removes the headers set for the object (Content-Length,
// ETag...) before an error answer.
func clearHeaders(w http.ResponseWriter) {
	for k := range w.Header() {
		delete(w.Header(), k)
	}
}

// cutConnection ends the response by closing its connection: the status
// and part of the body went out, and the client must see a body shorter
// than its Content-Length, never a complete one with wrong bytes. What was
// written is flushed first (intact bytes, which a client may keep and
// resume after with a Range). net/http's server recovers this panic
// without logging it.
func cutConnection(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler)
}

// serveUnchecked serves an object of an earlier version (no checksums): a
// full read of one whose ETag is its MD5 is verified against it, holding
// back the last byte; anything else is sent as it is.
func (s *fileStore) serveUnchecked(w http.ResponseWriter, status int, bucket, key string, f *os.File, h *objectHeader, start, length int64) error {
	if s.noVerify.Load() || start != 0 || length != h.Size || length == 0 || !isMD5ETag(h.ETag) {
		w.WriteHeader(status)
		_, _ = copyBuffered(w, io.NewSectionReader(f, start, length))
		return nil
	}
	m := md5.New()
	if length <= copyBufSize {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		b := (*bp)[:length]
		if _, err := f.ReadAt(b, 0); err != nil {
			clearHeaders(w)
			return s.damaged(bucket, key, err)
		}
		m.Write(b)
		if hex.EncodeToString(m.Sum(nil)) != h.ETag {
			clearHeaders(w)
			return s.damaged(bucket, key, errors.New("an object of an earlier version: its bytes do not match its ETag (MD5)"))
		}
		w.WriteHeader(status)
		_, _ = w.Write(b)
		return nil
	}
	w.WriteHeader(status)
	if _, err := copyBuffered(io.MultiWriter(w, m), io.NewSectionReader(f, 0, length-1)); err != nil {
		return nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], length-1); err != nil {
		s.damaged(bucket, key, err)
		cutConnection(w)
	}
	m.Write(last[:])
	if hex.EncodeToString(m.Sum(nil)) != h.ETag {
		s.damaged(bucket, key, errors.New("an object of an earlier version: its bytes do not match its ETag (MD5)"))
		cutConnection(w)
	}
	_, _ = w.Write(last[:])
	return nil
}

// isMD5ETag reports whether an ETag is the MD5 of the object's bytes (a
// single PUT's), not a multipart upload's ("<hex>-<parts>").
func isMD5ETag(etag string) bool {
	if len(etag) != 2*md5.Size {
		return false
	}
	_, err := hex.DecodeString(etag)
	return err == nil
}

// copyData writes an object's bytes to w, verified: a damaged source is
// errDamaged, and the copy must not give it fresh checksums.
func (s *fileStore) copyData(w io.Writer, bucket, key string, f *os.File, h *objectHeader) error {
	if h.BlockSize == 0 {
		return s.copyUnchecked(w, bucket, key, f, h)
	}
	br := newBlockReader(f, h, 0, h.Size)
	defer br.release()
	for {
		chunk, err := br.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return s.damaged(bucket, key, err)
		}
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
}

// copyUnchecked copies an object of an earlier version, checking its MD5
// ETag where it has one.
func (s *fileStore) copyUnchecked(w io.Writer, bucket, key string, f *os.File, h *objectHeader) error {
	var m hash.Hash
	if isMD5ETag(h.ETag) {
		m = md5.New()
		w = io.MultiWriter(w, m)
	}
	if _, err := copyBuffered(w, io.NewSectionReader(f, 0, h.Size)); err != nil {
		return err
	}
	if m != nil && hex.EncodeToString(m.Sum(nil)) != h.ETag {
		return s.damaged(bucket, key, errors.New("an object of an earlier version: its bytes do not match its ETag (MD5)"))
	}
	return nil
}

// ---- scrub ----

// ScrubReport is what a scrub of the embedded S3 found (Backends.Scrub).
type ScrubReport struct {
	// Objects are the objects checked; Bytes the bytes read.
	Objects int
	Bytes   int64
	// Damaged are objects whose bytes or header do not match their
	// checksums (or, for an object of an earlier version, its MD5 ETag);
	// each was logged at ERROR. Reading them fails.
	Damaged int
	// Adopted are objects of an earlier version that were given
	// checksums; Unverified of them had nothing to be checked against
	// first (a multipart upload's ETag is no MD5 of the bytes).
	Adopted, Unverified int
	// Legacy are objects of an earlier version still without checksums:
	// rewriting them failed (such as on a full disk); the next scrub tries
	// again.
	Legacy int
}

// scrub reads and verifies every object, and gives checksums to the
// objects of an earlier version (see the notes at the top of this file).
// It stops when ctx ends.
func (s *fileStore) scrub(ctx context.Context) (ScrubReport, error) {
	start := time.Now()
	type object struct{ bucket, key string }
	var objs []object
	var rep ScrubReport
	s.mu.RLock()
	for b, idx := range s.buckets {
		for _, k := range idx.keys {
			objs = append(objs, object{b, k})
		}
		for name := range idx.damaged {
			rep.Objects++
			rep.Damaged++
			s.log.Error("embedded S3: damaged object: its header cannot be read; it is not served", "bucket", b, "object", name)
		}
	}
	s.mu.RUnlock()
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		s.scrubObject(ctx, o.bucket, o.key, &rep)
	}
	attrs := []any{"objects", rep.Objects, "bytes", rep.Bytes, "damaged", rep.Damaged, "adopted", rep.Adopted,
		"unverified", rep.Unverified, "legacy", rep.Legacy, "took", time.Since(start).Round(time.Millisecond).String()}
	if rep.Damaged > 0 {
		s.log.Warn("embedded S3: scrub found damaged objects (each logged at ERROR with its file name)", attrs...)
	} else {
		s.log.Info("embedded S3: scrub done", attrs...)
	}
	return rep, nil
}

func (s *fileStore) scrubObject(ctx context.Context, bucket, key string, rep *ScrubReport) {
	f, h, err := s.open(bucket, key)
	switch {
	case errors.Is(err, errDamaged):
		rep.Objects++
		rep.Damaged++
		return
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNoBucket):
		return // removed meanwhile
	case err != nil:
		s.log.Warn("embedded S3: scrub cannot open an object", "bucket", bucket, "object", keyHash(key), "err", err)
		return
	}
	defer f.Close()
	rep.Objects++
	rep.Bytes += h.Size
	if h.BlockSize > 0 {
		if err := s.copyData(ctxWriter{ctx, io.Discard}, bucket, key, f, h); errors.Is(err, errDamaged) {
			rep.Damaged++
		}
		return
	}
	// An object of an earlier version: rewrite it with checksums, unless
	// it changed meanwhile (the new version has them).
	p, err := s.newPending()
	if err == nil {
		err = s.copyUnchecked(ctxWriter{ctx, p}, bucket, key, f, h)
	}
	if errors.Is(err, errDamaged) {
		p.discard()
		rep.Damaged++
		return
	}
	if err == nil {
		nh := *h
		err = p.commit(bucket, &nh, func(cur *objectHeader) bool {
			return cur != nil && cur.BlockSize == 0 && cur.ETag == h.ETag && cur.Size == h.Size && cur.Modified.Equal(h.Modified)
		})
	}
	switch {
	case err == nil:
		rep.Adopted++
		if !isMD5ETag(h.ETag) {
			rep.Unverified++
		}
	case errors.Is(err, errPrecondition):
	default:
		if p != nil {
			p.discard()
		}
		rep.Legacy++
		if ctx.Err() == nil {
			s.log.Warn("embedded S3: scrub cannot give an object of an earlier version its checksums; it stays unverified", "bucket", bucket, "object", keyHash(key), "err", err)
		}
	}
}

// ctxWriter fails once ctx ended, so a long copy stops with it.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Scrub reads every object of the embedded S3 and verifies it against its
// checksums, logging each damaged one at ERROR (by the hash of its key,
// never the key) and a summary; objects written by earlier versions, which
// have none, are given checksums (after checking their MD5 ETag where they
// have one). It returns what it found, or ctx's error when ctx ended first.
// Start runs one in the background with a data directory (see
// Config.ScrubInterval); this one runs now, for tools and tests.
func (b *Backends) Scrub(ctx context.Context) (ScrubReport, error) {
	if b.files == nil {
		return ScrubReport{}, errors.New("embedded S3: not started (Config.NoFiles)")
	}
	return b.files.scrub(ctx)
}

// scrubLoop scrubs the embedded S3 in the background now and, with every
// positive, every so often, until Close.
func (b *Backends) scrubLoop(every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, _ = b.files.scrub(ctx)
			if every <= 0 {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
	b.onClose(func(cctx context.Context) error {
		cancel()
		select {
		case <-done:
		case <-cctx.Done():
		}
		return nil
	})
}
