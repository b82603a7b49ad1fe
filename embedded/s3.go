package embedded

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fileStore is the embedded S3: objects are files on disk, written to a
// temporary file and renamed into place, so a reader sees exactly one
// version of an object, and streamed both ways, so memory stays flat
// whatever the object's size.
//
// Layout under its directory (object keys are never used as paths):
//
//	objects/<bucket>/<h[:2]>/<h>   one object; h = hex SHA-256 of its key
//	uploads/<upload id>/           a multipart upload in progress: meta, part files
//	tmp/                           files being written
//
// An object file is the object's bytes, then the CRC-32C of each 1 MiB
// block of them (4 bytes big-endian each, the last block short), then a
// JSON header (key, size, ETag, content type, modification time, user
// metadata, block size), the header's CRC-32C, its 4-byte big-endian
// length and "CPSC": data is written as it arrives, with no copy, and its
// checksums computed on the way (see s3sum.go for how they are verified).
// Files of earlier versions end with the header, its length and "CPS3",
// without checksums; they are served as they are until a scrub gives them
// checksums. A reader opens the file while holding the index lock, so it
// holds the version the index described; a later rename or delete does not
// touch the open file (Unix semantics).
type fileStore struct {
	dir  string
	sync bool // fsync files and directories before they become visible
	log  *slog.Logger
	// noVerify serves without verifying checksums: for the benchmark that
	// measures what verifying costs, nothing else.
	noVerify atomic.Bool

	mu      sync.RWMutex
	buckets map[string]*bucketIndex
}

// bucketIndex lists a bucket's objects in key order, for listings.
type bucketIndex struct {
	keys []string // sorted
	objs map[string]*objectHeader
	// damaged are the object files found at start whose header could not
	// be read at all (so their key is unknown), by file name (the hash of
	// the key): a read of their key answers "damaged", not "no such key",
	// until the key is written or deleted.
	damaged map[string]bool
}

// objectHeader is the JSON header of an object file.
type objectHeader struct {
	Key         string            `json:"key"`
	Size        int64             `json:"size"`
	ETag        string            `json:"etag"` // unquoted
	ContentType string            `json:"contentType,omitempty"`
	Modified    time.Time         `json:"modified"`
	Meta        map[string]string `json:"meta,omitempty"` // x-amz-meta-*, canonical header names
	// BlockSize is the size of the blocks the file's checksums cover; 0
	// in a file of an earlier version, which has none.
	BlockSize int64 `json:"blockSize,omitempty"`
}

const (
	objectMagic   = "CPS3" // a file of an earlier version, without checksums
	objectMagicC  = "CPSC" // a file with checksums
	maxHeaderSize = 1 << 20
	maxKeyBytes   = 1024
	minPartSize   = 5 << 20
	maxParts      = 10000
	copyBufSize   = 1 << 20
)

var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// hashName is the name of an object file: the hex SHA-256 of its key.
var hashName = regexp.MustCompile(`^[0-9a-f]{64}$`)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

func copyBuffered(w io.Writer, r io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(w, r, *bp)
}

// openFileStore opens (creating) the store in dir and indexes its objects.
// Unfinished uploads and temporary files of a previous run are removed.
func openFileStore(dir string, durable bool, log *slog.Logger) (*fileStore, error) {
	s := &fileStore{dir: dir, sync: durable, log: log, buckets: map[string]*bucketIndex{}}
	for _, d := range []string{"objects", "uploads", "tmp"} {
		if d != "objects" {
			if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
				return nil, err
			}
		}
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "objects"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() || !bucketNameRE.MatchString(e.Name()) {
			continue
		}
		idx, err := s.loadBucket(e.Name())
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", e.Name(), err)
		}
		s.buckets[e.Name()] = idx
	}
	return s, nil
}

// loadBucket reads the headers of a bucket's object files.
func (s *fileStore) loadBucket(bucket string) (*bucketIndex, error) {
	idx := &bucketIndex{objs: map[string]*objectHeader{}, damaged: map[string]bool{}}
	root := filepath.Join(s.dir, "objects", bucket)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		h, err := readHeader(f)
		f.Close()
		switch {
		case err == nil && objectPath(s.dir, bucket, h.Key) == p:
			idx.objs[h.Key] = h
		case errors.Is(err, errDamagedHeader) && h != nil && objectPath(s.dir, bucket, h.Key) == p:
			// Its key is intact: indexed, so that reading it answers
			// "damaged", not "no such key".
			s.log.Error("embedded S3: damaged object: its header does not match its checksum; it is not served", "bucket", bucket, "object", filepath.Base(p))
			idx.objs[h.Key] = h
		default:
			name := filepath.Base(p)
			if hashName.MatchString(name) && p == filepath.Join(root, name[:2], name) {
				idx.damaged[name] = true
				s.log.Error("embedded S3: damaged object: its header cannot be read; it is not served", "bucket", bucket, "object", name, "err", err)
			} else {
				s.log.Warn("embedded S3: skipping a file that is not an object", "bucket", bucket, "file", p, "err", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	idx.keys = make([]string, 0, len(idx.objs))
	for k := range idx.objs {
		idx.keys = append(idx.keys, k)
	}
	sort.Strings(idx.keys)
	return idx, nil
}

func objectPath(dir, bucket, key string) string {
	h := keyHash(key)
	return filepath.Join(dir, "objects", bucket, h[:2], h)
}

// keyHash is the hex SHA-256 of an object's key: its file name, and how
// logs name an object (never by its key).
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// readHeader reads an object file's header, which follows the data (bytes
// [0, h.Size) of the file) and, in a file with checksums, their table. A
// header that does not match its checksum, or disagrees with the file's
// size, is errDamagedHeader, with h when it could be decoded all the same.
func readHeader(f *os.File) (*objectHeader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var tail [12]byte
	if fi.Size() < 8 {
		return nil, errors.New("not an object file")
	}
	if _, err := f.ReadAt(tail[4:], fi.Size()-8); err != nil {
		return nil, err
	}
	tailLen := int64(8)
	switch string(tail[8:]) {
	case objectMagic:
	case objectMagicC:
		tailLen = 12
		if fi.Size() < tailLen {
			return nil, errDamagedHeader
		}
		if _, err := f.ReadAt(tail[:4], fi.Size()-12); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("not an object file")
	}
	n := int64(binary.BigEndian.Uint32(tail[4:8]))
	if n > maxHeaderSize || n > fi.Size()-tailLen {
		if tailLen == 12 {
			return nil, errDamagedHeader
		}
		return nil, errors.New("bad object header")
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fi.Size()-tailLen-n); err != nil {
		return nil, err
	}
	h := new(objectHeader)
	if tailLen == 12 {
		jsonErr := json.Unmarshal(buf, h)
		if jsonErr != nil {
			h = nil
		}
		if jsonErr != nil || crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(tail[:4]) ||
			h.BlockSize <= 0 || h.BlockSize > maxBlockSize || h.Size < 0 || h.Size+tableSize(h) != fi.Size()-tailLen-n {
			return h, errDamagedHeader
		}
		return h, nil
	}
	if err := json.Unmarshal(buf, h); err != nil {
		return nil, err
	}
	if h.Size != fi.Size()-8-n || h.BlockSize != 0 {
		return nil, errors.New("object size does not match its header")
	}
	return h, nil
}

// ensureBucket creates a bucket (directory and index) if missing.
func (s *fileStore) ensureBucket(bucket string) error {
	if !bucketNameRE.MatchString(bucket) || strings.Contains(bucket, "..") {
		return fmt.Errorf("invalid bucket name %q", bucket)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buckets[bucket] != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "objects", bucket), 0o700); err != nil {
		return err
	}
	s.buckets[bucket] = &bucketIndex{objs: map[string]*objectHeader{}, damaged: map[string]bool{}}
	return nil
}

// pending is an object being written to a temporary file; commit appends
// the checksums of its blocks, computed as the bytes go by, and its header.
type pending struct {
	s    *fileStore
	f    *os.File
	size int64
	sums blockSums
}

func (s *fileStore) newPending() (*pending, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "obj-*")
	if err != nil {
		return nil, err
	}
	return &pending{s: s, f: f}, nil
}

func (p *pending) Write(b []byte) (int, error) {
	n, err := p.f.Write(b)
	p.sums.add(b[:n])
	p.size += int64(n)
	return n, err
}

func (p *pending) discard() {
	if p.f != nil {
		p.f.Close()
		os.Remove(p.f.Name())
		p.f = nil
	}
}

// errPrecondition is a conditional write whose condition does not hold.
var errPrecondition = errors.New("precondition failed")

// commit appends the header to the data already written and renames the
// file into place for bucket/key. cond, when set, is checked against the
// current object under the index lock.
func (p *pending) commit(bucket string, h *objectHeader, cond func(cur *objectHeader) bool) error {
	defer p.discard()
	s := p.s
	h.Size = p.size
	h.BlockSize = blockSize
	hdr, err := json.Marshal(h)
	if err != nil {
		return err
	}
	var tail [12]byte
	binary.BigEndian.PutUint32(tail[:4], crc32.Checksum(hdr, castagnoli))
	binary.BigEndian.PutUint32(tail[4:8], uint32(len(hdr)))
	copy(tail[8:], objectMagicC)
	if _, err := p.f.Write(append(append(p.sums.table(), hdr...), tail[:]...)); err != nil {
		return err
	}
	if s.sync {
		if err := p.f.Sync(); err != nil {
			return err
		}
	}
	if err := p.f.Close(); err != nil {
		return err
	}
	dst := objectPath(s.dir, bucket, h.Key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.buckets[bucket]
	if idx == nil {
		return errNoBucket
	}
	if cond != nil && !cond(idx.objs[h.Key]) {
		return errPrecondition
	}
	if err := os.Rename(p.f.Name(), dst); err != nil {
		return err
	}
	p.f = nil
	if s.sync {
		syncDir(filepath.Dir(dst))
	}
	idx.put(h)
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

var errNoBucket = errors.New("no such bucket")

func (idx *bucketIndex) put(h *objectHeader) {
	delete(idx.damaged, keyHash(h.Key))
	if _, ok := idx.objs[h.Key]; !ok {
		i := sort.SearchStrings(idx.keys, h.Key)
		idx.keys = append(idx.keys, "")
		copy(idx.keys[i+1:], idx.keys[i:])
		idx.keys[i] = h.Key
	}
	idx.objs[h.Key] = h
}

func (idx *bucketIndex) remove(key string) {
	if _, ok := idx.objs[key]; !ok {
		return
	}
	delete(idx.objs, key)
	i := sort.SearchStrings(idx.keys, key)
	if i < len(idx.keys) && idx.keys[i] == key {
		idx.keys = append(idx.keys[:i], idx.keys[i+1:]...)
	}
}

// open returns the object's file (data at [0, h.Size), use ReadAt) and its
// header. The file is the version the index holds.
func (s *fileStore) open(bucket, key string) (*os.File, *objectHeader, error) {
	s.mu.RLock()
	idx := s.buckets[bucket]
	if idx == nil {
		s.mu.RUnlock()
		return nil, nil, errNoBucket
	}
	if idx.objs[key] == nil {
		damaged := idx.damaged[keyHash(key)]
		s.mu.RUnlock()
		if damaged {
			return nil, nil, s.damaged(bucket, key, errDamagedHeader)
		}
		return nil, nil, fs.ErrNotExist
	}
	f, err := os.Open(objectPath(s.dir, bucket, key))
	s.mu.RUnlock()
	if err != nil {
		return nil, nil, err
	}
	h, err := readHeader(f)
	if err != nil {
		// The index holds the key, and files are only ever renamed into
		// place whole: a header that cannot be read was damaged.
		f.Close()
		return nil, nil, s.damaged(bucket, key, fmt.Errorf("header: %w", err))
	}
	if h.Key != key {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, h, nil
}

// remove deletes an object; a missing one is not an error.
func (s *fileStore) remove(bucket, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.buckets[bucket]
	if idx == nil {
		return errNoBucket
	}
	if idx.objs[key] == nil && !idx.damaged[keyHash(key)] {
		return nil
	}
	if err := os.Remove(objectPath(s.dir, bucket, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	idx.remove(key)
	delete(idx.damaged, keyHash(key))
	return nil
}

// ---- HTTP: the S3 REST API subset the engine and minio-go use ----

// s3Error is an S3 error response.
type s3Error struct {
	status int
	code   string
	msg    string
}

func (e *s3Error) Error() string { return e.code + ": " + e.msg }

func errS3(status int, code, msg string) *s3Error { return &s3Error{status, code, msg} }

var (
	errNoSuchKey       = errS3(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
	errNoSuchBucket    = errS3(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist.")
	errNoSuchUpload    = errS3(http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
	errPreconditionS3  = errS3(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
	errInvalidRange    = errS3(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable.")
	errBadDigest       = errS3(http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.")
	errSHA256Mismatch  = errS3(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	errIncompleteBody  = errS3(http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
	errMalformedXML    = errS3(http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed.")
	errKeyTooLong      = errS3(http.StatusBadRequest, "KeyTooLongError", "Your key is too long.")
	errInvalidPart     = errS3(http.StatusBadRequest, "InvalidPart", "One or more of the specified parts could not be found.")
	errInvalidPartOrd  = errS3(http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order.")
	errEntityTooSmall  = errS3(http.StatusBadRequest, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
	errNotImplemented  = errS3(http.StatusNotImplemented, "NotImplemented", "This request is not supported by the embedded S3.")
	errInvalidArgument = errS3(http.StatusBadRequest, "InvalidArgument", "Invalid argument.")
	errBucketNotEmpty  = errS3(http.StatusConflict, "BucketNotEmpty", "The bucket you tried to delete is not empty.")
	// errStorageFull is MinIO's answer past its free-space threshold: a
	// write that met a full disk (ENOSPC, EDQUOT) stored nothing. 507 is
	// not among the statuses minio-go retries.
	errStorageFull = errS3(http.StatusInsufficientStorage, "XMinioStorageFull", "Storage backend has reached its minimum free drive threshold. Please delete a few objects to proceed.")
	// errDamagedS3 answers a read of an object whose stored bytes do not
	// match their checksums. Not S3's 500 InternalError: minio-go retries
	// every 500 ten times (seconds) and a damaged file stays damaged; 410
	// (the intact bytes are gone for good) is not retried, and the engine
	// answers its code with 500 internal.
	errDamagedS3 = errS3(http.StatusGone, "XCpodObjectDamaged", "The object's stored bytes do not match their checksum; it cannot be served.")
)

// outOfSpace reports whether err is the disk saying it is full.
func outOfSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// ServeHTTP serves path-style requests: /bucket and /bucket/key.
func (s *fileStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	var err error
	switch {
	case bucket == "":
		if r.Method == http.MethodGet {
			err = s.listBuckets(w)
		} else {
			err = errNotImplemented
		}
	case !bucketNameRE.MatchString(bucket):
		err = errS3(http.StatusBadRequest, "InvalidBucketName", "The specified bucket is not valid.")
	case key == "":
		err = s.serveBucket(w, r, bucket, q)
	case len(key) > maxKeyBytes:
		err = errKeyTooLong
	default:
		err = s.serveObject(w, r, bucket, key, q)
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

func (s *fileStore) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *s3Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, errNoBucket):
		e = errNoSuchBucket
	case errors.Is(err, fs.ErrNotExist):
		e = errNoSuchKey
	case errors.Is(err, errPrecondition):
		e = errPreconditionS3
	case outOfSpace(err):
		s.log.Warn("embedded S3: "+r.Method+" refused: the disk is full", "err", err)
		e = errStorageFull
	case errors.Is(err, errDamaged):
		e = errDamagedS3
	default:
		if r.Context().Err() == nil {
			s.log.Error("embedded S3: "+r.Method+" failed", "err", err)
		}
		e = errS3(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	}
	// As MinIO does: a HEAD's error has no body to name its code.
	w.Header().Set("X-Minio-Error-Code", e.code)
	if r.Method == http.MethodHead {
		w.WriteHeader(e.status)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.status)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string
		Message   string
		Resource  string
		RequestID string `xml:"RequestId"`
	}{Code: e.code, Message: e.msg, Resource: r.URL.Path, RequestID: "embedded"})
}

func writeXML(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return nil
	}
	_ = xml.NewEncoder(w).Encode(v)
	return nil
}

const s3NS = "http://s3.amazonaws.com/doc/2006-03-01/"

func (s *fileStore) listBuckets(w http.ResponseWriter) error {
	type bucket struct {
		Name         string
		CreationDate string
	}
	var out struct {
		XMLName xml.Name `xml:"ListAllMyBucketsResult"`
		NS      string   `xml:"xmlns,attr"`
		Owner   struct{ ID, DisplayName string }
		Buckets []bucket `xml:"Buckets>Bucket"`
	}
	out.NS = s3NS
	s.mu.RLock()
	for b := range s.buckets {
		out.Buckets = append(out.Buckets, bucket{b, time.Unix(0, 0).UTC().Format(s3Time)})
	}
	s.mu.RUnlock()
	sort.Slice(out.Buckets, func(i, j int) bool { return out.Buckets[i].Name < out.Buckets[j].Name })
	return writeXML(w, out)
}

const s3Time = "2006-01-02T15:04:05.000Z"

func (s *fileStore) hasBucket(bucket string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.buckets[bucket] != nil
}

func (s *fileStore) serveBucket(w http.ResponseWriter, r *http.Request, bucket string, q url.Values) error {
	switch r.Method {
	case http.MethodHead:
		if !s.hasBucket(bucket) {
			return errNoSuchBucket
		}
		w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodPut:
		if err := s.ensureBucket(bucket); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	case http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		idx := s.buckets[bucket]
		if idx == nil {
			return errNoSuchBucket
		}
		if len(idx.keys) > 0 {
			return errBucketNotEmpty
		}
		if err := os.RemoveAll(filepath.Join(s.dir, "objects", bucket)); err != nil {
			return err
		}
		delete(s.buckets, bucket)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPost:
		if q.Has("delete") {
			return s.deleteObjects(w, r, bucket)
		}
	case http.MethodGet:
		if !s.hasBucket(bucket) {
			return errNoSuchBucket
		}
		switch {
		case q.Has("location"):
			return writeXML(w, struct {
				XMLName xml.Name `xml:"LocationConstraint"`
				NS      string   `xml:"xmlns,attr"`
			}{NS: s3NS})
		case q.Has("uploads"):
			return s.listUploads(w, bucket)
		case q.Get("list-type") == "2":
			return s.listObjectsV2(w, bucket, q)
		case len(q) == 0 || q.Has("prefix") || q.Has("marker") || q.Has("delimiter") || q.Has("max-keys"):
			return s.listObjectsV1(w, bucket, q)
		}
	}
	return errNotImplemented
}

// listEntry is one key or common prefix of a listing.
type listEntry struct {
	key    string
	h      *objectHeader
	prefix bool
}

// list walks the bucket's keys in order after `after`, grouping by
// delimiter, up to max entries; truncated tells whether more follow.
func (s *fileStore) list(bucket, prefix, delim, after string, max int) ([]listEntry, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx := s.buckets[bucket]
	if idx == nil {
		return nil, false, errNoSuchBucket
	}
	start := prefix
	if after > start {
		start = after
	}
	i := sort.SearchStrings(idx.keys, start)
	var out []listEntry
	for ; i < len(idx.keys); i++ {
		k := idx.keys[i]
		if !strings.HasPrefix(k, prefix) {
			break
		}
		if k <= after {
			continue
		}
		if delim != "" {
			if j := strings.Index(k[len(prefix):], delim); j >= 0 {
				cp := k[:len(prefix)+j+len(delim)]
				if cp > after {
					if len(out) == max {
						return out, true, nil
					}
					out = append(out, listEntry{key: cp, prefix: true})
				}
				// Skip every key under this common prefix: they sort
				// together, right after cp.
				i += sort.Search(len(idx.keys)-i, func(n int) bool {
					k := idx.keys[i+n]
					return k > cp && !strings.HasPrefix(k, cp)
				}) - 1
				continue
			}
		}
		if len(out) == max {
			return out, true, nil
		}
		h := *idx.objs[k]
		out = append(out, listEntry{key: k, h: &h})
	}
	return out, false, nil
}

type listContent struct {
	Key          string
	LastModified string
	ETag         string
	Size         int64
	StorageClass string
}

type listPrefix struct{ Prefix string }

func listParams(q url.Values) (max int, enc func(string) string, err error) {
	max = 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, nil, errInvalidArgument
		}
		max = min(n, 1000)
	}
	enc = func(s string) string { return s }
	if q.Get("encoding-type") == "url" {
		enc = s3URLEncode
	}
	return max, enc, nil
}

// s3URLEncode encodes a key as S3 does with encoding-type=url; minio-go
// decodes it with url.QueryUnescape.
func s3URLEncode(s string) string { return url.QueryEscape(s) }

func contents(es []listEntry, enc func(string) string) ([]listContent, []listPrefix) {
	var cs []listContent
	var ps []listPrefix
	for _, e := range es {
		if e.prefix {
			ps = append(ps, listPrefix{enc(e.key)})
			continue
		}
		cs = append(cs, listContent{enc(e.key), e.h.Modified.UTC().Format(s3Time), `"` + e.h.ETag + `"`, e.h.Size, "STANDARD"})
	}
	return cs, ps
}

func (s *fileStore) listObjectsV2(w http.ResponseWriter, bucket string, q url.Values) error {
	max, enc, err := listParams(q)
	if err != nil {
		return err
	}
	after := q.Get("start-after")
	if t := q.Get("continuation-token"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return errS3(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect.")
		}
		after = string(b)
	}
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	es, truncated, err := s.list(bucket, prefix, delim, after, max)
	if err != nil {
		return err
	}
	var out struct {
		XMLName               xml.Name `xml:"ListBucketResult"`
		NS                    string   `xml:"xmlns,attr"`
		Name                  string
		Prefix                string
		StartAfter            string `xml:",omitempty"`
		ContinuationToken     string `xml:",omitempty"`
		NextContinuationToken string `xml:",omitempty"`
		KeyCount              int
		MaxKeys               int
		Delimiter             string `xml:",omitempty"`
		IsTruncated           bool
		EncodingType          string `xml:",omitempty"`
		Contents              []listContent
		CommonPrefixes        []listPrefix
	}
	out.NS, out.Name, out.Prefix, out.MaxKeys, out.IsTruncated = s3NS, bucket, enc(prefix), max, truncated
	out.StartAfter, out.ContinuationToken, out.Delimiter = enc(q.Get("start-after")), q.Get("continuation-token"), enc(delim)
	if q.Get("encoding-type") == "url" {
		out.EncodingType = "url"
	}
	out.Contents, out.CommonPrefixes = contents(es, enc)
	out.KeyCount = len(es)
	if truncated && len(es) > 0 {
		out.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(es[len(es)-1].key))
	}
	return writeXML(w, out)
}

func (s *fileStore) listObjectsV1(w http.ResponseWriter, bucket string, q url.Values) error {
	max, enc, err := listParams(q)
	if err != nil {
		return err
	}
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	es, truncated, err := s.list(bucket, prefix, delim, q.Get("marker"), max)
	if err != nil {
		return err
	}
	var out struct {
		XMLName        xml.Name `xml:"ListBucketResult"`
		NS             string   `xml:"xmlns,attr"`
		Name           string
		Prefix         string
		Marker         string
		NextMarker     string `xml:",omitempty"`
		MaxKeys        int
		Delimiter      string `xml:",omitempty"`
		IsTruncated    bool
		EncodingType   string `xml:",omitempty"`
		Contents       []listContent
		CommonPrefixes []listPrefix
	}
	out.NS, out.Name, out.Prefix, out.Marker, out.MaxKeys, out.IsTruncated = s3NS, bucket, enc(prefix), enc(q.Get("marker")), max, truncated
	out.Delimiter = enc(delim)
	if q.Get("encoding-type") == "url" {
		out.EncodingType = "url"
	}
	out.Contents, out.CommonPrefixes = contents(es, enc)
	if truncated && len(es) > 0 {
		out.NextMarker = enc(es[len(es)-1].key)
	}
	return writeXML(w, out)
}

func (s *fileStore) deleteObjects(w http.ResponseWriter, r *http.Request, bucket string) error {
	var req struct {
		Quiet   bool
		Objects []struct{ Key string } `xml:"Object"`
	}
	if err := xml.NewDecoder(io.LimitReader(r.Body, 2<<20)).Decode(&req); err != nil || len(req.Objects) > 1000 {
		return errMalformedXML
	}
	type deleted struct{ Key string }
	type failed struct{ Key, Code, Message string }
	var out struct {
		XMLName xml.Name `xml:"DeleteResult"`
		NS      string   `xml:"xmlns,attr"`
		Deleted []deleted
		Error   []failed
	}
	out.NS = s3NS
	for _, o := range req.Objects {
		if err := s.remove(bucket, o.Key); err != nil {
			if errors.Is(err, errNoBucket) {
				return errNoSuchBucket
			}
			out.Error = append(out.Error, failed{o.Key, "InternalError", "cannot delete"})
			continue
		}
		if !req.Quiet {
			out.Deleted = append(out.Deleted, deleted{o.Key})
		}
	}
	return writeXML(w, out)
}

func (s *fileStore) serveObject(w http.ResponseWriter, r *http.Request, bucket, key string, q url.Values) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if q.Has("uploadId") {
			return errNotImplemented
		}
		return s.getObject(w, r, bucket, key)
	case http.MethodPut:
		switch {
		case q.Has("uploadId"):
			return s.uploadPart(w, r, bucket, key, q)
		case r.Header.Get("X-Amz-Copy-Source") != "":
			return s.copyObject(w, r, bucket, key)
		}
		return s.putObject(w, r, bucket, key)
	case http.MethodDelete:
		if q.Has("uploadId") {
			return s.abortUpload(w, bucket, key, q.Get("uploadId"))
		}
		if err := s.remove(bucket, key); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return s.createUpload(w, r, bucket, key)
		case q.Has("uploadId"):
			return s.completeUpload(w, r, bucket, key, q.Get("uploadId"))
		}
	}
	return errNotImplemented
}

// ---- reading ----

func setObjectHeaders(h http.Header, o *objectHeader) {
	ct := o.ContentType
	if ct == "" {
		ct = "binary/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("ETag", `"`+o.ETag+`"`)
	h.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	for k, v := range o.Meta {
		h.Set(k, v)
	}
}

func (s *fileStore) getObject(w http.ResponseWriter, r *http.Request, bucket, key string) error {
	f, h, err := s.open(bucket, key)
	if err != nil {
		return err
	}
	defer f.Close()
	etag := `"` + h.ETag + `"`
	if im := r.Header.Get("If-Match"); im != "" && !etagIn(im, etag) {
		return errPreconditionS3
	}
	if t, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && h.Modified.Truncate(time.Second).After(t) {
		return errPreconditionS3
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagIn(inm, etag) {
		setObjectHeaders(w.Header(), h)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !h.Modified.Truncate(time.Second).After(t) {
		setObjectHeaders(w.Header(), h)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	start, length := int64(0), h.Size
	status := http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" {
		var ok bool
		if start, length, ok = parseByteRange(rg, h.Size); !ok {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(h.Size, 10))
			return errInvalidRange
		}
		status = http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, h.Size))
	}
	setObjectHeaders(w.Header(), h)
	// Overrides of a (presigned) GET, as S3 honours them.
	q := r.URL.Query()
	for _, o := range [...][2]string{
		{"response-content-type", "Content-Type"},
		{"response-content-language", "Content-Language"},
		{"response-expires", "Expires"},
		{"response-cache-control", "Cache-Control"},
		{"response-content-disposition", "Content-Disposition"},
		{"response-content-encoding", "Content-Encoding"},
	} {
		if v := q.Get(o[0]); v != "" {
			w.Header().Set(o[1], v)
		}
	}
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return nil
	}
	return s.serveData(w, status, bucket, key, f, h, start, length)
}

// parseByteRange reads a single "bytes=" range for an object of size bytes.
func parseByteRange(v string, size int64) (start, length int64, ok bool) {
	spec, found := strings.CutPrefix(v, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return 0, 0, false
		}
		n = min(n, size)
		return size - n, n, true
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 || s >= size {
		return 0, 0, false
	}
	e := size - 1
	if b != "" {
		if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
			return 0, 0, false
		}
		e = min(e, size-1)
	}
	return s, e - s + 1, true
}

func etagIn(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || t == etag || `"`+t+`"` == etag || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// ---- writing ----

// body returns the request's payload: aws-chunked decoded when the client
// used a streaming signature, and the checks to run once it is read.
func payload(r *http.Request) (io.Reader, func(n int64, md5sum []byte) error, hash.Hash, error) {
	var body io.Reader = r.Body
	sha := r.Header.Get("X-Amz-Content-Sha256")
	decoded := int64(-1)
	if strings.HasPrefix(sha, "STREAMING-") || strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
		body = &chunkedReader{r: bufio.NewReaderSize(r.Body, 16<<10)}
		if v := r.Header.Get("X-Amz-Decoded-Content-Length"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, nil, nil, errInvalidArgument
			}
			decoded = n
		}
	} else if r.ContentLength >= 0 {
		decoded = r.ContentLength
	}
	var wantMD5 []byte
	if v := r.Header.Get("Content-Md5"); v != "" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) != md5.Size {
			return nil, nil, nil, errS3(http.StatusBadRequest, "InvalidDigest", "The Content-MD5 you specified is not valid.")
		}
		wantMD5 = b
	}
	var sh hash.Hash
	var wantSHA []byte
	if len(sha) == 64 {
		b, err := hex.DecodeString(sha)
		if err != nil {
			return nil, nil, nil, errSHA256Mismatch
		}
		wantSHA, sh = b, sha256.New()
	}
	check := func(n int64, md5sum []byte) error {
		if decoded >= 0 && n != decoded {
			return errIncompleteBody
		}
		if wantMD5 != nil && !bytes.Equal(wantMD5, md5sum) {
			return errBadDigest
		}
		if sh != nil && !bytes.Equal(wantSHA, sh.Sum(nil)) {
			return errSHA256Mismatch
		}
		return nil
	}
	return body, check, sh, nil
}

// receive streams the request's payload into a pending object and returns
// it with the payload's MD5.
func (s *fileStore) receive(r *http.Request) (*pending, []byte, error) {
	body, check, sh, err := payload(r)
	if err != nil {
		return nil, nil, err
	}
	p, err := s.newPending()
	if err != nil {
		return nil, nil, err
	}
	m := md5.New()
	ws := []io.Writer{p, m}
	if sh != nil {
		ws = append(ws, sh)
	}
	n, err := copyBuffered(io.MultiWriter(ws...), body)
	if err == nil {
		err = check(n, m.Sum(nil))
	}
	if err != nil {
		p.discard()
		switch {
		case errors.Is(err, errChunk):
			err = errS3(http.StatusBadRequest, "InvalidRequest", "malformed aws-chunked payload")
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = errIncompleteBody
		}
		return nil, nil, err
	}
	return p, m.Sum(nil), nil
}

func userMeta(h http.Header) map[string]string {
	var m map[string]string
	for k, v := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-meta-") && len(v) > 0 {
			if m == nil {
				m = map[string]string{}
			}
			m[http.CanonicalHeaderKey(k)] = v[0]
		}
	}
	return m
}

// putCondition turns If-Match / If-None-Match of a PUT into a check of the
// current object.
func putCondition(r *http.Request) func(*objectHeader) bool {
	im, inm := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	if im == "" && inm == "" {
		return nil
	}
	return func(cur *objectHeader) bool {
		if im != "" && (cur == nil || !etagIn(im, `"`+cur.ETag+`"`)) {
			return false
		}
		if inm != "" && cur != nil && etagIn(inm, `"`+cur.ETag+`"`) {
			return false
		}
		return true
	}
}

func (s *fileStore) putObject(w http.ResponseWriter, r *http.Request, bucket, key string) error {
	if !s.hasBucket(bucket) {
		return errNoSuchBucket
	}
	p, sum, err := s.receive(r)
	if err != nil {
		return err
	}
	h := &objectHeader{Key: key, ETag: hex.EncodeToString(sum), ContentType: r.Header.Get("Content-Type"), Modified: time.Now().UTC(), Meta: userMeta(r.Header)}
	if err := p.commit(bucket, h, putCondition(r)); err != nil {
		return err
	}
	w.Header().Set("ETag", `"`+h.ETag+`"`)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *fileStore) copyObject(w http.ResponseWriter, r *http.Request, bucket, key string) error {
	src, err := url.PathUnescape(r.Header.Get("X-Amz-Copy-Source"))
	if err != nil {
		return errInvalidArgument
	}
	src, _, _ = strings.Cut(src, "?versionId=")
	sb, sk, _ := strings.Cut(strings.TrimPrefix(src, "/"), "/")
	if sk == "" {
		return errInvalidArgument
	}
	if !s.hasBucket(bucket) {
		return errNoSuchBucket
	}
	f, sh, err := s.open(sb, sk)
	if err != nil {
		return err
	}
	defer f.Close()
	if v := r.Header.Get("X-Amz-Copy-Source-If-Match"); v != "" && !etagIn(v, `"`+sh.ETag+`"`) {
		return errPreconditionS3
	}
	p, err := s.newPending()
	if err != nil {
		return err
	}
	if err := s.copyData(p, sb, sk, f, sh); err != nil {
		p.discard()
		return err
	}
	h := &objectHeader{Key: key, ETag: sh.ETag, ContentType: sh.ContentType, Meta: sh.Meta, Modified: time.Now().UTC()}
	if r.Header.Get("X-Amz-Metadata-Directive") == "REPLACE" {
		h.ContentType, h.Meta = r.Header.Get("Content-Type"), userMeta(r.Header)
	}
	if err := p.commit(bucket, h, putCondition(r)); err != nil {
		return err
	}
	return writeXML(w, struct {
		XMLName      xml.Name `xml:"CopyObjectResult"`
		NS           string   `xml:"xmlns,attr"`
		LastModified string
		ETag         string
	}{NS: s3NS, LastModified: h.Modified.Format(s3Time), ETag: `"` + h.ETag + `"`})
}

// ---- multipart uploads ----

type uploadMeta struct {
	Bucket      string            `json:"bucket"`
	Key         string            `json:"key"`
	ContentType string            `json:"contentType,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
	Created     time.Time         `json:"created"`
}

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (s *fileStore) uploadDir(id string) string { return filepath.Join(s.dir, "uploads", id) }

// upload reads the meta of an upload of bucket/key.
func (s *fileStore) upload(bucket, key, id string) (*uploadMeta, error) {
	if !uploadIDRE.MatchString(id) {
		return nil, errNoSuchUpload
	}
	b, err := os.ReadFile(filepath.Join(s.uploadDir(id), "meta"))
	if err != nil {
		return nil, errNoSuchUpload
	}
	m := new(uploadMeta)
	if json.Unmarshal(b, m) != nil || m.Bucket != bucket || m.Key != key {
		return nil, errNoSuchUpload
	}
	return m, nil
}

func (s *fileStore) createUpload(w http.ResponseWriter, r *http.Request, bucket, key string) error {
	if !s.hasBucket(bucket) {
		return errNoSuchBucket
	}
	var rb [16]byte
	_, _ = rand.Read(rb[:])
	id := hex.EncodeToString(rb[:])
	m := uploadMeta{Bucket: bucket, Key: key, ContentType: r.Header.Get("Content-Type"), Meta: userMeta(r.Header), Created: time.Now().UTC()}
	b, _ := json.Marshal(m)
	if err := os.Mkdir(s.uploadDir(id), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.uploadDir(id), "meta"), b, 0o600); err != nil {
		return err
	}
	return writeXML(w, struct {
		XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Bucket   string
		Key      string
		UploadID string `xml:"UploadId"`
	}{NS: s3NS, Bucket: bucket, Key: key, UploadID: id})
}

func partFile(dir string, n int) string { return filepath.Join(dir, fmt.Sprintf("part-%05d", n)) }

func (s *fileStore) uploadPart(w http.ResponseWriter, r *http.Request, bucket, key string, q url.Values) error {
	id := q.Get("uploadId")
	if _, err := s.upload(bucket, key, id); err != nil {
		return err
	}
	n, err := strconv.Atoi(q.Get("partNumber"))
	if err != nil || n < 1 || n > maxParts {
		return errS3(http.StatusBadRequest, "InvalidArgument", "Part number must be an integer between 1 and 10000.")
	}
	p, sum, err := s.receive(r)
	if err != nil {
		return err
	}
	defer p.discard()
	etag := hex.EncodeToString(sum)
	// The part's MD5 and the CRC-32C of its bytes are kept in its file's
	// companion for Complete, which checks the CRC as it copies the part.
	if err := p.f.Close(); err != nil {
		return err
	}
	dst := partFile(s.uploadDir(id), n)
	if err := os.WriteFile(dst+".etag", fmt.Appendf(nil, "%s %08x", etag, p.sums.whole), 0o600); err != nil {
		if outOfSpace(err) {
			return err
		}
		return errNoSuchUpload // aborted meanwhile
	}
	if err := os.Rename(p.f.Name(), dst); err != nil {
		return errNoSuchUpload
	}
	p.f = nil
	w.Header().Set("ETag", `"`+etag+`"`)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *fileStore) abortUpload(w http.ResponseWriter, bucket, key, id string) error {
	if _, err := s.upload(bucket, key, id); err != nil {
		return err
	}
	if err := os.RemoveAll(s.uploadDir(id)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *fileStore) completeUpload(w http.ResponseWriter, r *http.Request, bucket, key, id string) error {
	m, err := s.upload(bucket, key, id)
	if err != nil {
		return err
	}
	var req struct {
		Parts []struct {
			PartNumber int
			ETag       string
		} `xml:"Part"`
	}
	if err := xml.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil || len(req.Parts) == 0 || len(req.Parts) > maxParts {
		return errMalformedXML
	}
	dir := s.uploadDir(id)
	p, err := s.newPending()
	if err != nil {
		return err
	}
	defer p.discard()
	md5s := md5.New()
	last := 0
	for i, part := range req.Parts {
		if part.PartNumber <= last {
			return errInvalidPartOrd
		}
		last = part.PartNumber
		companion, err := os.ReadFile(partFile(dir, part.PartNumber) + ".etag")
		etag, crc, _ := strings.Cut(string(companion), " ")
		if err != nil || strings.Trim(part.ETag, `"`) != etag {
			return errInvalidPart
		}
		f, err := os.Open(partFile(dir, part.PartNumber))
		if err != nil {
			return errInvalidPart
		}
		before := p.size
		p.sums.whole = 0 // this part's CRC-32C
		_, err = copyBuffered(p, f)
		f.Close()
		if err != nil {
			return err
		}
		if got := fmt.Sprintf("%08x", p.sums.whole); got != crc {
			s.log.Error("embedded S3: a part of a multipart upload is damaged on disk; the upload is refused", "bucket", bucket, "object", keyHash(key), "part", part.PartNumber)
			return errDamaged
		}
		if i < len(req.Parts)-1 && p.size-before < minPartSize {
			return errEntityTooSmall
		}
		raw, _ := hex.DecodeString(etag)
		md5s.Write(raw)
	}
	etag := fmt.Sprintf("%s-%d", hex.EncodeToString(md5s.Sum(nil)), len(req.Parts))
	h := &objectHeader{Key: key, ETag: etag, ContentType: m.ContentType, Meta: m.Meta, Modified: time.Now().UTC()}
	if err := p.commit(bucket, h, putCondition(r)); err != nil {
		return err
	}
	_ = os.RemoveAll(dir)
	return writeXML(w, struct {
		XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Location string
		Bucket   string
		Key      string
		ETag     string
	}{NS: s3NS, Location: "/" + bucket + "/" + key, Bucket: bucket, Key: key, ETag: `"` + etag + `"`})
}

func (s *fileStore) listUploads(w http.ResponseWriter, bucket string) error {
	type upload struct {
		Key       string
		UploadID  string `xml:"UploadId"`
		Initiated string
	}
	var out struct {
		XMLName     xml.Name `xml:"ListMultipartUploadsResult"`
		NS          string   `xml:"xmlns,attr"`
		Bucket      string
		IsTruncated bool
		Upload      []upload
	}
	out.NS, out.Bucket = s3NS, bucket
	ents, _ := os.ReadDir(filepath.Join(s.dir, "uploads"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.dir, "uploads", e.Name(), "meta"))
		var m uploadMeta
		if err != nil || json.Unmarshal(b, &m) != nil || m.Bucket != bucket {
			continue
		}
		out.Upload = append(out.Upload, upload{m.Key, e.Name(), m.Created.Format(s3Time)})
	}
	sort.Slice(out.Upload, func(i, j int) bool { return out.Upload[i].Key < out.Upload[j].Key })
	return writeXML(w, out)
}

// ---- aws-chunked ----

var errChunk = errors.New("malformed aws-chunked payload")

// chunkedReader decodes an aws-chunked body (streaming signatures, with or
// without trailers). Chunk signatures are not checked: the embedded S3 is
// reachable only by its own process (see Start).
type chunkedReader struct {
	r    *bufio.Reader
	left int64
	done bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		line, err := c.line()
		if err != nil {
			return 0, err
		}
		sz, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
		if err != nil || n < 0 {
			return 0, errChunk
		}
		if n == 0 {
			// Trailers, if any, end with an empty line.
			for {
				l, err := c.line()
				if err == io.EOF && l == "" {
					break
				}
				if err != nil {
					return 0, err
				}
				if l == "" {
					break
				}
			}
			c.done = true
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		var crlf [2]byte
		if _, err := io.ReadFull(c.r, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
			return n, errChunk
		}
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// line reads one CRLF-terminated line of at most 4 KiB.
func (c *chunkedReader) line() (string, error) {
	var b []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > 4096 {
			return "", errChunk
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(b) == 0 {
				return "", io.EOF
			}
			return "", errChunk
		}
		break
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}
