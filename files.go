package storage

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
)

// filesRoutes binds the files endpoints (sdk.storage.files) and the signed
// download route.
func (e *Engine) filesRoutes() []route {
	return []route{
		{"PUT", "/v1/storage/files/{path...}?tier", e.handleFilePut},
		{"GET", "/v1/storage/files/{path...}?tier", e.handleFileGet},
		{"HEAD", "/v1/storage/files/{path...}?tier", e.handleFileGet},
		{"DELETE", "/v1/storage/files/{path...}?tier", e.handleFileDelete},
		{"GET", "/v1/storage/files?tier&prefix&limit&cursor", e.handleFileList},
		{"POST", "/v1/storage/signed-urls", e.handleSignedURLCreate}, // tier in the body
		{"GET", signedRoute, e.handleSigned},
		{"HEAD", signedRoute, e.handleSigned},
		{"PUT", signedRoute, e.handleSigned},
		// A download URL allows GET and HEAD, an upload URL PUT; any
		// other method is answered like a URL that was changed.
		{"POST", signedRoute, e.handleSigned},
		{"PATCH", signedRoute, e.handleSigned},
		{"DELETE", signedRoute, e.handleSigned},
	}
}

// Files are S3 objects in Config.Bucket under the caller's location prefix
// (see Resolve). The policies of this file, in one place:
//
// # Paths
//
// A file path is the part after /v1/storage/files/, percent-decoded exactly
// once by the router. It must be valid UTF-8 without control characters (C0,
// DEL, C1), without '\', without an empty segment (so no leading, trailing
// or doubled '/'), without a "." or ".." segment, and the resolved S3 key
// (location prefix + path) is at most 1024 bytes. A path that still holds a
// percent-escape after that one decoding ('%' followed by two hex digits, as
// in "%2e" from a double-encoded "%252e") is refused too: some component
// between the client and the object store may decode once more, so such a
// path is ambiguous. A bare '%' not followed by two hex digits ("100%.txt")
// is fine. Anything refused is 400 invalid_request, checked before any
// backend call; a path is never rewritten. Paths are byte strings: no Unicode
// normalization, so NFC "café" and NFD "café" are two different files (as in
// S3, which compares keys byte for byte).
//
// # Uploads
//
// With a Content-Length up to the S3 client's single-PUT limit (5 GiB by
// default) the body streams to S3 as one PutObject of that size, with no
// buffer. Without one (chunked), the start of the body is read into a
// buffer outside the upload budget that grows with the bytes received (4
// KiB to 1 MiB, readHead), so an idle or trickling client holds no part of
// the budget; a body that ends within the first MiB is one PUT from it. A
// longer one, or one with a Content-Length above the single-PUT limit,
// streams as a multipart upload (minio.Core: initiate, parts, complete)
// with a bounded part size (8 MiB, or more when Limits.MaxFileSize needs
// more than 10000 parts). Its part buffers come from one budget for all
// uploads together, Limits.MaxUploadMemory (256 MiB by default), of which
// the uploads of one tenant hold at most a quarter (at least one buffer),
// so that no tenant can take the budget from the others. An upload waits
// for its first buffer once its body has shown it needs one, first come
// first served, for as long as buffers are given back: when none was for
// Config.S3Timeout it is answered 503 backend_unavailable (Retry-After),
// never held indefinitely. It takes a second one (read the next part from
// the client while the previous one is sent) only when the budget and its
// tenant's share have room and no upload waits; otherwise it reads and
// sends in turn. 64 concurrent chunked uploads of 64 MiB of one tenant
// measured about 160 MiB of peak heap instead of 1.1 GiB
// (BenchmarkFilesConcurrentUploads); an idle chunked upload that sent one
// byte holds about 64 KiB, its connection included, none of it from the
// budget (BenchmarkFilesIdleChunkedUploads). Parts
// carry an unsigned payload, plus a Content-MD5 when S3 is reached over
// plain HTTP. Limits.MaxFileSize is checked from Content-Length before
// anything is sent to S3, and counted while streaming; a body that exceeds
// it, a client that goes away and any other failure abort the multipart
// upload, and a single PUT that does not receive its declared length is
// never stored by S3.
//
// Every wait on S3 is bounded by Config.S3Timeout (default BackendTimeout):
// a call that moves no file bytes (stat, list, delete, presign) must be
// answered within it, retries included; a transfer (a PUT's body, each
// part, a download) may last as long as bytes move, and ends when S3 takes
// or sends nothing for S3Timeout while the engine is not waiting for its
// own client (stallGuard). The wait for S3's answer after a body or part
// was sent is such a stretch. The time a client takes to send its body or
// read a download never counts against S3, so a slow client is never taken
// for a stalled S3. minio-go's retries (Options.MaxRetries of the client
// the embedder built) all happen within that bound.
//
// Failures are classified in one place (uploadError): S3 that stalled is
// 503 backend_unavailable with Retry-After, whatever else happened; a body
// past the limit 413 too_large; a body that could not be read to its end
// (the client broke it, or left before sending all of it; or S3 answered
// RequestTimeout while the engine was waiting for the client's next bytes)
// 400 invalid_request. An empty body, or one read to its end, is never
// blamed on the client. When S3 stalled, the abort of a multipart upload
// runs in the background (bounded by S3Timeout), so the answer is not
// held up by it.
//
// # Downloads
//
// GET and HEAD send Content-Type (as stored; application/octet-stream when
// none was given), Content-Length, ETag (the S3 entity tag, quoted),
// Last-Modified, Accept-Ranges, "Cache-Control: private, no-cache" and
// "X-Content-Type-Options: nosniff". A single bytes Range gives 206 (an
// unsatisfiable or malformed one 416 with "Content-Range: bytes */size"); a
// Range with several ranges or another unit is ignored (200, the whole
// file), as RFC 9110 allows. If-Range, If-None-Match, If-Modified-Since (304)
// and If-Match, If-Unmodified-Since (412 conflict) follow RFC 9110 section 13.
//
// Content types: nothing a tenant uploads may run script on the engine's
// origin. Every file response carries "Content-Security-Policy: sandbox"
// (the document gets an opaque origin, no script, no forms), except
// application/pdf, which Chromium refuses to display in a sandboxed document
// and whose own scripts run in the viewer, not in the origin. Only a short
// list of types is shown inline (inlineTypes: common images, audio, video,
// plain text, CSV, JSON, PDF, fonts, octet-stream); any other type, among
// them HTML, SVG, XML, XHTML, JavaScript and anything that does not parse,
// is also sent with "Content-Disposition: attachment", so a browser saves it
// instead of rendering it.
//
// # Listing
//
// GET /v1/storage/files?prefix=&limit=&cursor= lists with the S3 prefix
// location + prefix, and the location always ends with '/', so tenant "t1"
// never sees "t10/..." and app "a" never sees "ab/...". limit is 1 to
// Limits.MaxListLimit (default 100). The cursor is
// "v1.<base64url(last key)>.<base64url(HMAC)>": the HMAC (Engine.mac,
// purpose "files-cursor") covers the caller's location, the prefix and the
// last key, so a cursor is only valid for the same location (tenant, tier,
// app or user) and the same prefix: anything else, or any change to it, is
// 400 invalid_cursor. Pages continue with S3's StartAfter, so a cursor stays
// valid while files are added or removed.
//
// # Signed URLs: downloads and uploads
//
// POST /v1/storage/signed-urls returns a download URL (method GET, the
// default)
//
//	{base}/v1/storage/signed/{location key}?app=..&expires=..&sig=..&tier=..
//
// or an upload URL (method PUT)
//
//	{base}/v1/storage/signed/{location key}?app=..[&contentType=..]&expires=..&maxSize=..&method=PUT&sig=..&tier=..
//
// where {base} is Config.PublicURL, or else "http(s)://" + the request's Host
// (https when the request came over TLS). X-Forwarded-Host and -Proto are not
// trusted: any client can send them, so behind a proxy that terminates TLS or
// rewrites the path, set PublicURL. The location key is path-escaped segment
// by segment, so the URL ends with the file's name. sig is the base64url
// HMAC-SHA256 (Engine.mac, purpose "signed-url", a key derived from
// Config.SigningKey, never a JWT key) of the method (GET or PUT), the tier,
// the app that signed, the expiry (Unix seconds), for an upload URL its
// maxSize and contentType, and the resolved location key (signedURL.msg): it
// is bound to the location, not to the relative path. A download URL needs
// the tier's read scope and an existing file (404); an upload URL needs the
// tier's write scope, and the file need not exist. maxSize is 1 to
// Limits.MaxFileSize bytes, that limit by default; contentType is optional
// (any valid Content-Type when absent or empty) and must be a media type.
//
// The signed route needs no Authorization header and checks, in this
// order: the signature, over the query's values (403 invalid_signature for
// any change, including a truncated signature), that the path and query
// are spelled exactly as issued (an equivalent spelling, such as "%61" for
// "a", an escaped '/', lower-case hex, a zero-padded expires or maxSize, an
// empty contentType, parameters in another order, is a change too), the
// method: a download URL answers GET and HEAD, an upload URL PUT, anything
// else is 403 invalid_signature; the expiry on the engine's clock (403
// expired); for an upload, a Content-Type other than the signed one (the
// same media type and parameters; letter case of the type and of parameter
// names aside; a missing header is application/octet-stream) is 403
// invalid_signature; then revocation: the signing app must still be
// registered and still declare the tier's read scope (download) or write
// scope (upload), else 403 invalid_signature. A download then serves the
// file like GET above (404 when it no longer exists), Range included. An
// upload streams exactly like an authenticated PUT (storeFile: the same
// S3Timeout stall guard, memory budget and failure classes) with the limit
// min(maxSize, Limits.MaxFileSize), checked from Content-Length before
// anything is sent to S3 and counted while streaming (413 too_large,
// nothing stored), and answers the same 200 file JSON, whose key is the
// path relative to the tier. The expiry is checked when the request
// starts: an upload that started in time may end after it. Every answer of
// the signed route carries "Referrer-Policy: no-referrer". The engine
// never logs URLs, so signatures never reach a log. Expiry has no leeway
// and there is no not-before, so replicas with slightly different clocks
// never refuse a fresh URL; each one ends it at its own clock's reading of
// the expiry.
//
// # Direct S3 presigned URLs (Config.S3PresignedURLs)
//
// When set, POST /v1/storage/signed-urls returns, for a download URL, a
// SigV4 presigned GET URL of the S3 endpoint itself (minio-go
// PresignedGetObject) for the same resolved key, after the same checks
// (scope, path, the file exists, expiresIn). Upload URLs stay the engine's
// own in this mode: an S3 presigned PUT cannot limit the size of the body
// (maxSize), and could not be revoked. The presigned GET URL
// guarantees what S3 guarantees: the URL reads only that key of that bucket,
// only with GET, until the expiry on S3's clock, and any change to it fails.
// It does not give the engine's guarantees: downloads bypass the engine, so
// errors are S3's XML, not this contract's 403 expired / invalid_signature;
// there is no Referrer-Policy, nosniff or sandbox header (a type that is not
// shown inline is presigned with response-content-disposition=attachment,
// but the file is then served from the S3 origin, where other tenants' files
// live too); no revocation (deleting the app or its scope does not end the
// URL, only rotating the S3 credentials does); expiry follows S3's clock, not
// the engine's (cpodtest's AdvanceClock and FastForward have no effect on
// it, and gofakes3 checks neither expiry nor signature); and the URL shows the S3 endpoint, bucket, full location
// key (tenant and app ids) and the access key id (never the secret). Use it
// only with an S3 endpoint end users can reach and a bucket that holds
// nothing else.

const (
	// maxFileKey caps the resolved S3 key, in bytes.
	maxFileKey = 1024
	// maxContentType caps a stored Content-Type.
	maxContentType = 255
	// defaultListLimit is the page size of a listing without limit.
	defaultListLimit = 100
	// maxListPerRequest is what S3 returns at most in one list request.
	maxListPerRequest = 1000
	// Signed URL lifetimes, in seconds.
	defaultSignedURLExpiry = 3600
	maxSignedURLExpiry     = 604800
	// smallUpload is how much of a chunked body is read before deciding
	// between one PUT and a multipart upload.
	smallUpload = 1 << 20
	// chunkedPartSize is the part size of a chunked upload (the AWS CLI's
	// default), raised when Limits.MaxFileSize needs it.
	chunkedPartSize = 8 << 20
	// signedPath starts every signed download URL.
	signedPath = "/v1/storage/signed/"
	// signedRoute is the route pattern of signed URLs, with their query
	// parameters (see route); the last three are only in upload URLs.
	signedRoute = signedPath + "{key...}?" + sigParamApp + "&" + sigParamExpires + "&" + sigParamSig + "&" + sigParamTier +
		"&" + sigParamMethod + "&" + sigParamContentType + "&" + sigParamMaxSize
	// Signed URL query parameters.
	sigParamApp         = "app"
	sigParamExpires     = "expires"
	sigParamSig         = "sig"
	sigParamTier        = "tier"
	sigParamMethod      = "method"      // upload URLs: always "PUT"
	sigParamContentType = "contentType" // upload URLs: the Content-Type to send, when one was signed
	sigParamMaxSize     = "maxSize"     // upload URLs: the most bytes the upload may hold
	// maxCursor caps a list cursor before it is decoded.
	maxCursor = 4096
)

// errFileNotFound is the one answer for a file that is missing or not
// visible to the caller: the same code and message either way.
var errFileNotFound = errorf(CodeNotFound, "no such file")

// errFileTooLarge ends an upload body that passes Limits.MaxFileSize.
var errFileTooLarge = errors.New("file larger than the size limit")

// checkFilePath applies the path rules of the wire contract (see the notes
// above) to a relative file path.
func checkFilePath(p string) error {
	if p == "" {
		return errorf(CodeInvalidRequest, "the file path is empty")
	}
	if err := checkPathText(p, "file path"); err != nil {
		return err
	}
	for _, seg := range strings.Split(p, "/") {
		if err := checkSegment(seg, "file path"); err != nil {
			return err
		}
	}
	return nil
}

// checkListPrefix applies the path rules to a listing prefix: the same as a
// path, except that it may be empty, and its last segment may be empty (a
// trailing '/') or partial, even "." (to list ".env...").
func checkListPrefix(p string) error {
	if p == "" {
		return nil
	}
	if err := checkPathText(p, "prefix"); err != nil {
		return err
	}
	// Every segment but the last, which may be partial or empty.
	segs := strings.Split(p, "/")
	for _, seg := range segs[:len(segs)-1] {
		if err := checkSegment(seg, "prefix"); err != nil {
			return err
		}
	}
	return nil
}

func checkPathText(p, what string) error {
	if !utf8.ValidString(p) {
		return errorf(CodeInvalidRequest, "the %s is not valid UTF-8", what)
	}
	if !validText(p) {
		return errorf(CodeInvalidRequest, "the %s contains a control character", what)
	}
	if strings.ContainsRune(p, '\\') {
		return errorf(CodeInvalidRequest, "the %s contains a backslash", what)
	}
	if hasPercentEscape(p) {
		return errorf(CodeInvalidRequest, "the %s still contains a percent-escape after decoding (double encoding is refused)", what)
	}
	return nil
}

func checkSegment(seg, what string) error {
	switch seg {
	case "":
		return errorf(CodeInvalidRequest, "the %s has an empty segment (a leading, trailing or double slash)", what)
	case ".", "..":
		return errorf(CodeInvalidRequest, "the %s has a \".\" or \"..\" segment", what)
	}
	return nil
}

// hasPercentEscape reports whether s holds '%' followed by two hex digits.
func hasPercentEscape(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// fileLocation checks a relative file path and resolves it: every files
// endpoint goes through it before any backend call.
func fileLocation(id Identity, t Tier, p string) (Location, error) {
	if err := checkFilePath(p); err != nil {
		return Location{}, err
	}
	loc, err := Resolve(id, t, p)
	if err != nil {
		return Location{}, err
	}
	if len(loc.Key) > maxFileKey {
		return Location{}, errorf(CodeInvalidRequest, "the file path is too long: the stored key would exceed %d bytes", maxFileKey)
	}
	return loc, nil
}

// s3Error translates a minio-go error once, here in the adapter.
// s3OutOfSpace reports S3's answers for lack of space: MinIO (and the
// embedded S3) past its free-space threshold, a full bucket or account
// quota (Ceph RGW, versitygw), or any 507.
func s3OutOfSpace(err error) bool {
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "XMinioStorageFull", "InsufficientStorage", "StorageFull", "QuotaExceeded":
		return true
	}
	return r.StatusCode == http.StatusInsufficientStorage
}

func s3Error(op string, err error) (out error) {
	defer markBackend(backendS3, &out)
	if err == nil {
		return nil
	}
	if errors.Is(err, errFileTooLarge) {
		return errorf(CodeTooLarge, "the file is larger than the size limit")
	}
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case minio.NoSuchKey, "NotFound":
		return errFileNotFound
	case minio.InvalidRange:
		return withStatus(errorf(CodeInvalidRequest, "the requested range is not satisfiable"), http.StatusRequestedRangeNotSatisfiable)
	case "EntityTooLarge":
		return errorf(CodeTooLarge, "the file is larger than the object store accepts")
	case "KeyTooLongError":
		return errorf(CodeInvalidRequest, "the file path is too long for the object store")
	case "SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError":
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: err}
	case "XCpodObjectDamaged":
		// The embedded S3 found the object's stored bytes damaged (they
		// do not match their checksums): 500, not a retryable 503.
		return &Error{Code: CodeInternal, Message: "internal error", Err: err}
	}
	if s3OutOfSpace(err) {
		return errOutOfSpace("s3 "+op, err)
	}
	if r.StatusCode >= 500 {
		return &Error{Code: CodeBackendUnavailable, Message: "a storage backend is unavailable, try again", Err: err}
	}
	return backendError("s3 "+op, err)
}

// ---- upload ----

// uploadBody counts a request body and ends it past the size limit. It is
// read by minio-go, possibly from a transport goroutine, hence the lock.
// The time spent in a read is the client's: it does not count against S3
// (see stallGuard).
type uploadBody struct {
	r     io.Reader
	max   int64
	guard *stallGuard // set once the upload starts

	mu       sync.Mutex
	idle     *sync.Cond // signalled when a read ends
	n        int64
	over     bool
	eof      bool  // the whole body was read
	reading  bool  // a read from the client is in progress
	detached bool  // the upload is over: no more reads
	readErr  error // a failure to read the client's body (not EOF, not the limit)
}

// errBodyDetached ends a read of the body after the upload gave up.
var errBodyDetached = errors.New("the upload ended")

func (b *uploadBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	over, g, detached := b.over, b.guard, b.detached
	b.reading = !over && !detached
	b.mu.Unlock()
	if over {
		return 0, errFileTooLarge
	}
	if detached {
		return 0, errBodyDetached
	}
	if g != nil {
		g.clientWait()
	}
	n, err := b.r.Read(p)
	if g != nil {
		g.clientDone()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	if b.idle != nil {
		b.idle.Broadcast()
	}
	b.n += int64(n)
	if b.n > b.max {
		b.over = true
		return 0, errFileTooLarge
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.readErr = err
	}
	return n, err
}

// detach ends the engine's use of the client's body once the upload is
// over: no read starts any more, and a read still in progress (minio-go's
// transport may still be reading the body of a PUT that S3 already
// answered) is ended by a read deadline on the connection, which is then
// not reused. It returns when no read is in progress, so the response can
// be written (a read in progress holds the request body's lock, which
// writing the response needs).
func (b *uploadBody) detach(w http.ResponseWriter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.detached = true
	if !b.reading {
		return
	}
	if err := http.NewResponseController(w).SetReadDeadline(time.Now()); err != nil {
		return // cannot end it; do not wait
	}
	if b.idle == nil {
		b.idle = sync.NewCond(&b.mu)
	}
	for b.reading {
		b.idle.Wait()
	}
}

// uploadState is what an upload's body tells about a failure.
type uploadState struct {
	n       int64
	over    bool
	eof     bool
	reading bool
	readErr error
}

func (b *uploadBody) state() uploadState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return uploadState{b.n, b.over, b.eof, b.reading, b.readErr}
}

// partSize is the part size of a multipart upload of at most size bytes:
// at least chunkedPartSize, and large enough to fit in the client's part
// count limit.
func (e *Engine) partSize(size int64) int64 {
	return uploadPartSize(e.cfg.S3.UploadLimits(), size)
}

func uploadPartSize(l minio.UploadLimits, size int64) int64 {
	ps := max(int64(chunkedPartSize), l.MinPartSize)
	if need := (size + l.MaxPartsCount - 1) / l.MaxPartsCount; need > ps {
		ps = (need + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	return min(ps, l.MaxPartSize)
}

// upload streams body to key; size is the Content-Length, or -1. It returns
// the stall guard of the transfer, to tell a stalled S3 from other failures.
func (e *Engine) upload(ctx context.Context, key string, body *uploadBody, size int64, contentType string) (minio.UploadInfo, *stallGuard, error) {
	opts := minio.PutObjectOptions{ContentType: contentType, DisableMultipart: true}
	if size >= 0 && size <= e.cfg.S3.UploadLimits().MaxSinglePutObjectSize {
		// One PUT that streams the body as it arrives: no buffer. A size
		// of 0 has no payload to sign; a streaming signature of nothing
		// is refused by some stores (gofakes3: MissingContentLength).
		opts.DisableContentSha256 = size == 0
		ctx, g := e.guardS3(ctx)
		defer g.stop()
		body.mu.Lock()
		body.guard = g
		body.mu.Unlock()
		info, err := e.cfg.S3.PutObject(ctx, e.cfg.Bucket, key, body, size, opts)
		return info, g, err
	}
	// Chunked: its start is read into a buffer outside the budget (that
	// follows the bytes received, see readHead); a body that ends within
	// smallUpload bytes is one PUT and never touches the budget, and an
	// idle or trickling client holds none of it.
	var hb *[]byte
	head := 0
	if size < 0 {
		var err error
		hb, head, err = readHead(body)
		switch err {
		case io.EOF, io.ErrUnexpectedEOF:
			// Parts and this PUT carry an unsigned payload, not minio-go's
			// streaming SHA-256 payload signature (gofakes3 v1.2.0 stores
			// streaming-signed parts undecoded). Over plain HTTP the PUT
			// is signed as a whole (the body is in memory).
			defer putHead(hb)
			ctx, g := e.guardS3(ctx)
			defer g.stop()
			opts.DisableContentSha256 = head == 0
			info, err := e.cfg.S3.PutObject(ctx, e.cfg.Bucket, key, newGuardedReader((*hb)[:head], g), int64(head), opts)
			return info, g, err
		case nil:
			// smallUpload bytes and more to come: a multipart upload.
		default:
			putHead(hb)
			return minio.UploadInfo{}, nil, err
		}
	}
	// A multipart upload: a part buffer of the memory budget first, then
	// the guard.
	tenant, _, _ := strings.Cut(key, "/") // the key starts with the tenant (Resolve)
	bufs := e.uploads.lease(tenant)
	defer bufs.close()
	buf, err := bufs.acquire(ctx)
	if hb != nil {
		if err == nil {
			copy(*buf, (*hb)[:head]) // a part is larger than smallUpload
		}
		putHead(hb)
	}
	if err != nil {
		return minio.UploadInfo{}, nil, err
	}
	ctx, g := e.guardS3(ctx)
	defer g.stop()
	body.mu.Lock()
	body.guard = g
	body.mu.Unlock()
	ps := e.partSize(max(size, e.cfg.Limits.MaxFileSize))
	info, err := e.multipartUpload(ctx, g, bufs, key, buf, head, body, ps, contentType)
	return info, g, err
}

// headSizes are the buffers the start of a chunked body is read into,
// outside the upload budget, each four times the previous, up to
// smallUpload: a body holds the smallest one that fits what it sent (at
// most four times its bytes, at least 4 KiB, about what net/http holds
// for any connection), so that an idle or trickling client costs memory
// in proportion to what it sent. The buffers are pooled per size.
var headSizes = [...]int{4 << 10, 16 << 10, 64 << 10, 256 << 10, smallUpload}

var headPools [len(headSizes)]sync.Pool

// readHead reads the start of a chunked body, up to smallUpload bytes, into
// a buffer of headSizes. The error is io.ReadFull's: nil when smallUpload
// bytes were read (more may follow), io.EOF or io.ErrUnexpectedEOF when
// the body ended sooner. The buffer goes back with putHead.
func readHead(r io.Reader) (*[]byte, int, error) {
	var b *[]byte
	n := 0
	for i, size := range headSizes {
		nb, _ := headPools[i].Get().(*[]byte)
		if nb == nil {
			s := make([]byte, size)
			nb = &s
		}
		if b != nil {
			copy(*nb, (*b)[:n])
			putHead(b)
		}
		b = nb
		m, err := io.ReadFull(r, (*b)[n:size])
		n += m
		if err != nil {
			return b, n, err
		}
	}
	return b, n, nil
}

func putHead(b *[]byte) {
	for i, size := range headSizes {
		if len(*b) == size {
			headPools[i].Put(b)
			return
		}
	}
}

// uploadContentType is the Content-Type to store: the request's, checked, or
// application/octet-stream.
func uploadContentType(r *http.Request) (string, error) {
	vs := r.Header.Values("Content-Type")
	if len(vs) > 1 {
		return "", errorf(CodeInvalidRequest, "more than one Content-Type header")
	}
	if len(vs) == 0 || strings.TrimSpace(vs[0]) == "" {
		return "application/octet-stream", nil
	}
	ct := strings.TrimSpace(vs[0])
	if err := checkContentType(ct, "Content-Type"); err != nil {
		return "", err
	}
	return ct, nil
}

// checkContentType checks a Content-Type to store (or to sign into an
// upload URL): a media type such as text/plain, at most maxContentType
// bytes of text.
func checkContentType(ct, what string) error {
	if len(ct) > maxContentType || !validText(ct) {
		return errorf(CodeInvalidRequest, "the %s must be at most %d bytes of text", what, maxContentType)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if typ, sub, ok := strings.Cut(mt, "/"); err != nil || !ok || typ == "" || sub == "" {
		return errorf(CodeInvalidRequest, "the %s is not a valid media type such as text/plain", what)
	}
	return nil
}

// fileResult is the JSON of a stored file.
type fileResult struct {
	Key          string `json:"key"`
	Tier         Tier   `json:"tier"`
	Size         int64  `json:"size"`
	ContentType  string `json:"contentType"`
	ETag         string `json:"etag"`
	LastModified string `json:"lastModified"`
}

func (e *Engine) handleFilePut(c *call) error {
	id, tier, err := e.authorizeCall(c, Write)
	if err != nil {
		return err
	}
	name := c.params["path"]
	loc, err := fileLocation(id, tier, name)
	if err != nil {
		return err
	}
	ct, err := uploadContentType(c.r)
	if err != nil {
		return err
	}
	return e.storeFile(c, loc.Key, name, tier, ct, e.cfg.Limits.MaxFileSize)
}

// storeFile streams the request body to the object at key, at most limit
// bytes, and answers the file JSON (name is the path relative to the
// tier). Authenticated uploads and upload URLs both go through it.
func (e *Engine) storeFile(c *call, key, name string, tier Tier, ct string, limit int64) error {
	if c.r.ContentLength > limit {
		return errorf(CodeTooLarge, "the file is larger than the limit of %d bytes", limit)
	}
	// Usage (usage_files.go): one writer of the file at a time, from the
	// old size to the usage added; a quota's room caps the body.
	unlock, err := e.lockFile(c, key)
	if err != nil {
		return err
	}
	defer unlock()
	old, err := e.oldFile(c.ctx, key)
	if err != nil {
		return err
	}
	tenant := tenantOfKey(key)
	room, release, err := e.headroom(c.ctx, tenant, primFiles, old, c.r.ContentLength)
	defer release()
	if err != nil {
		return err
	}
	capped := room >= 0 && room < limit
	if capped {
		if c.r.ContentLength > room {
			return e.quotaError(primFiles, "bytes") // before its body
		}
		limit = room
	}
	body := &uploadBody{r: c.r.Body, max: limit}
	info, guard, err := e.upload(c.ctx, key, body, c.r.ContentLength, ct)
	st := body.state()
	e.metrics.fileBytes(st.n, 0)
	body.detach(c.w)
	if err != nil {
		if errors.Is(err, errUploadWait) {
			// The rest of the body is not wanted: net/http would otherwise
			// read it before answering, held up by an idle client.
			c.w.Header().Set("Connection", "close")
		}
		err = uploadError(err, guard, st, c.r.ContentLength, c.ctx, limit)
		if capped && errors.Is(err, ErrTooLarge) {
			c.w.Header().Set("Connection", "close")
			return e.quotaError(primFiles, "bytes")
		}
		return err
	}
	n := st.n
	loc, _, _ := splitLocation(key)
	e.account(c.ctx, c.reqID, tenant, old.change(loc, primFiles, n))
	res := fileResult{Key: name, Tier: tier, Size: n, ContentType: ct, ETag: quoteETag(info.ETag), LastModified: jsonTime(e.now())}
	// S3's own ETag and Last-Modified, so that the write, GET and list agree
	// (a multipart ETag is not always the one S3 reports later). If the file
	// was removed or replaced by another size meanwhile, the write's own
	// values stand.
	ctx, cancel := e.s3Ctx(c)
	defer cancel()
	if st, err := e.cfg.S3.StatObject(ctx, e.cfg.Bucket, key, minio.StatObjectOptions{}); err == nil && st.Size == n {
		res.ETag, res.LastModified = quoteETag(st.ETag), jsonTime(st.LastModified)
	}
	e.fileChanged(c, key, name, res.Size, res.ETag)
	return c.json(http.StatusOK, res)
}

// uploadError classifies a failed upload, in this order: S3 that stalled
// is 503 backend_unavailable whatever else happened; a body past the limit
// is 413 too_large; a body that could not be read to its end (the client
// broke it, or left before sending all of it) is 400 invalid_request, and
// so is S3's RequestTimeout while the engine was waiting for the client's
// next bytes (S3 gave up on a body the client stopped sending). Anything
// else is S3's answer, translated by s3Error; a client that left after its
// whole body was read is not blamed for it.
func uploadError(err error, g *stallGuard, st uploadState, size int64, reqCtx context.Context, limit int64) error {
	complete := st.eof || size >= 0 && st.n == size
	unread := &Error{Code: CodeInvalidRequest, Message: "the request body could not be read to its end; nothing was stored", Err: err}
	switch {
	case errors.Is(err, errUploadWait):
		return err // no part buffer within the bound: 503, already an *Error
	case g != nil && g.stalled():
		return errS3Unavailable("put")
	case st.over || errors.Is(err, errFileTooLarge):
		return errorf(CodeTooLarge, "the file is larger than the limit of %d bytes", limit)
	case s3OutOfSpace(err):
		// S3 refused the write for lack of space: that is the answer, even
		// if reading the client's body also failed once S3 stopped taking
		// it (TestDiskFull saw a 400 for a full disk in a loaded CI run).
		return s3Error("put", err)
	case st.readErr != nil:
		unread.Err = st.readErr
		return unread
	case reqCtx.Err() != nil && !complete:
		return unread
	case st.reading && minio.ToErrorResponse(err).Code == "RequestTimeout":
		return unread
	case reqCtx.Err() != nil:
		return &Error{Code: CodeBackendUnavailable, Message: "request canceled", Err: err}
	}
	return s3Error("put", err)
}

func quoteETag(etag string) string {
	if etag == "" {
		return ""
	}
	return `"` + etag + `"`
}

// jsonTime is the wire form of a file time: RFC 3339 in UTC, to the second
// (the precision of HTTP's Last-Modified).
func jsonTime(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// ---- download ----

// inlineTypes are the media types a browser may render from the engine's
// origin; every other type is sent as an attachment.
var inlineTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
	"image/avif": true, "image/bmp": true, "image/apng": true, "image/x-icon": true,
	"image/vnd.microsoft.icon": true, "image/heic": true, "image/heif": true, "image/tiff": true,
	"text/plain": true, "text/csv": true, "application/json": true, "application/pdf": true,
	"font/woff": true, "font/woff2": true, "font/ttf": true, "font/otf": true, "application/octet-stream": true,
}

// contentTypeSafety classifies a stored Content-Type: inline (may be shown
// in the browser) and pdf (not sandboxed, see the notes above).
func contentTypeSafety(ct string) (inline, pdf bool) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false, false
	}
	if inlineTypes[mt] {
		return true, mt == "application/pdf"
	}
	typ, _, _ := strings.Cut(mt, "/")
	return typ == "audio" || typ == "video", false
}

// fileMeta is what a download needs to know about an object.
type fileMeta struct {
	etag         string // unquoted, as minio-go returns it
	size         int64
	lastModified time.Time
	contentType  string
}

func metaOf(o minio.ObjectInfo) fileMeta {
	ct := o.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	return fileMeta{etag: o.ETag, size: o.Size, lastModified: o.LastModified, contentType: ct}
}

// setValidators sets the headers that a 304 also carries.
func setValidators(h http.Header, m fileMeta) {
	h.Set("Cache-Control", "private, no-cache")
	if m.etag != "" {
		h.Set("ETag", quoteETag(m.etag))
	}
	if !m.lastModified.IsZero() {
		h.Set("Last-Modified", m.lastModified.UTC().Format(http.TimeFormat))
	}
}

// setContentHeaders sets the headers of a response with the file's bytes.
func setContentHeaders(h http.Header, m fileMeta) {
	setValidators(h, m)
	inline, pdf := contentTypeSafety(m.contentType)
	h.Set("Content-Type", m.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Accept-Ranges", "bytes")
	if !pdf {
		h.Set("Content-Security-Policy", "sandbox")
	}
	if !inline {
		h.Set("Content-Disposition", "attachment")
	}
}

func (e *Engine) handleFileGet(c *call) error {
	id, tier, err := e.authorizeCall(c, Read)
	if err != nil {
		return err
	}
	loc, err := fileLocation(id, tier, c.params["path"])
	if err != nil {
		return err
	}
	return e.serveFile(c, loc.Key)
}

// serveFile answers GET or HEAD for the object at key.
func (e *Engine) serveFile(c *call, key string) error {
	r := c.r
	conditional := r.Header.Get("Range") != "" || r.Header.Get("If-None-Match") != "" ||
		r.Header.Get("If-Modified-Since") != "" || r.Header.Get("If-Match") != "" ||
		r.Header.Get("If-Unmodified-Since") != ""
	if r.Method == http.MethodGet && !conditional {
		// The common case: one S3 request, its headers describe the bytes.
		body, info, err := e.openObject(c, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		m := metaOf(info)
		setContentHeaders(c.w.Header(), m)
		c.w.Header().Set("Content-Length", strconv.FormatInt(m.size, 10))
		c.w.WriteHeader(http.StatusOK)
		e.copyBody(c, body)
		return nil
	}
	// Stat first to decide 304, 412, 416 or 206; then read exactly the
	// version that was described (If-Match), once more if it changed.
	for attempt := 0; ; attempt++ {
		ctx, cancel := e.s3Ctx(c)
		info, err := e.cfg.S3.StatObject(ctx, e.cfg.Bucket, key, minio.StatObjectOptions{})
		cancel()
		if err != nil {
			return s3Error("stat", err)
		}
		m := metaOf(info)
		h := c.w.Header()
		switch checkPreconditions(r, m) {
		case http.StatusNotModified:
			setValidators(h, m)
			c.w.WriteHeader(http.StatusNotModified)
			return nil
		case http.StatusPreconditionFailed:
			return withStatus(errorf(CodeConflict, "a precondition (If-Match or If-Unmodified-Since) failed"), http.StatusPreconditionFailed)
		}
		start, length, partial, ok := parseRange(r, m)
		if !ok {
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(m.size, 10))
			return withStatus(errorf(CodeInvalidRequest, "the requested range is not satisfiable"), http.StatusRequestedRangeNotSatisfiable)
		}
		status := http.StatusOK
		if partial {
			status = http.StatusPartialContent
			h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+length-1, 10)+"/"+strconv.FormatInt(m.size, 10))
		}
		if r.Method == http.MethodHead || length == 0 {
			setContentHeaders(h, m)
			h.Set("Content-Length", strconv.FormatInt(length, 10))
			c.w.WriteHeader(status)
			return nil
		}
		opts := minio.GetObjectOptions{}
		if m.etag != "" {
			_ = opts.SetMatchETag(m.etag)
		}
		if partial {
			_ = opts.SetRange(start, start+length-1)
		}
		body, _, err := e.openObject(c, key, opts)
		if err != nil {
			if errors.Is(err, errReplaced) {
				if attempt < 2 {
					continue // replaced between stat and read: describe the new one
				}
				return &Error{Code: CodeBackendUnavailable, Message: "the file is being replaced, try again", Err: err}
			}
			return err
		}
		defer body.Close()
		setContentHeaders(h, m)
		h.Set("Content-Length", strconv.FormatInt(length, 10))
		c.w.WriteHeader(status)
		e.copyBody(c, body)
		return nil
	}
}

// errReplaced is an object that changed between its stat and its read.
var errReplaced = errors.New("object replaced while being read")

// openObject starts reading an object. S3 must answer within S3Timeout
// (503 backend_unavailable), and the stream that follows may last as long
// as bytes move: it ends when S3 sends nothing for S3Timeout while the
// engine waits for it (time spent writing to the client does not count).
// Closing the body releases everything.
func (e *Engine) openObject(c *call, key string, opts minio.GetObjectOptions) (*s3Body, minio.ObjectInfo, error) {
	ctx, g := e.guardS3(c.ctx)
	body, info, _, err := minio.Core{Client: e.cfg.S3}.GetObject(ctx, e.cfg.Bucket, key, opts)
	if g.stalled() {
		if err == nil {
			body.Close()
		}
		g.stop()
		return nil, info, errS3Unavailable("get")
	}
	if err != nil {
		g.stop()
		if minio.ToErrorResponse(err).Code == minio.PreconditionFailed {
			return nil, info, errReplaced
		}
		return nil, info, s3Error("get", err)
	}
	g.progress()
	return &s3Body{rc: body, g: g}, info, nil
}

// s3Reader remembers a read failure of the object store.
type s3Reader struct {
	r   io.Reader
	err error
}

func (s *s3Reader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// copyBody streams an object to the client once the status is sent. A
// failure can no longer change the response: the client sees a body shorter
// than its Content-Length. Only store failures are logged (with the request
// id, never the URL).
func (e *Engine) copyBody(c *call, body *s3Body) {
	src := &s3Reader{r: body}
	n, err := io.Copy(clientWriter{c.w, body.g}, src)
	e.metrics.fileBytes(0, n)
	if err != nil && src.err != nil && c.ctx.Err() == nil {
		if body.g.stalled() {
			src.err = errS3Stalled
		}
		e.metrics.backendError(backendS3)
		e.log.Warn("storage: file stream interrupted", "request_id", c.reqID, "err", src.err)
	}
}

// checkPreconditions evaluates the conditional headers of RFC 9110 section
// 13.2.2 for GET and HEAD: 0 (go on), 304 or 412.
func checkPreconditions(r *http.Request, m fileMeta) int {
	lm := m.lastModified.UTC().Truncate(time.Second)
	if im := r.Header.Get("If-Match"); im != "" {
		if !etagListMatches(im, m.etag, false) {
			return http.StatusPreconditionFailed
		}
	} else if ius, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && !lm.IsZero() {
		if lm.After(ius) {
			return http.StatusPreconditionFailed
		}
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagListMatches(inm, m.etag, true) {
			return http.StatusNotModified
		}
	} else if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !lm.IsZero() {
		if !lm.After(ims) {
			return http.StatusNotModified
		}
	}
	return 0
}

// etagListMatches reports whether the header value ("*" or a list of entity
// tags) matches the object's entity tag, with the weak comparison (for
// If-None-Match) or the strong one.
func etagListMatches(list, etag string, weak bool) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	if etag == "" {
		return false
	}
	for {
		list = strings.TrimLeft(list, " \t,")
		if list == "" {
			return false
		}
		tag, rest, ok := scanETag(list)
		if !ok {
			return false
		}
		isWeak := strings.HasPrefix(tag, "W/")
		if (weak || !isWeak) && strings.TrimPrefix(tag, "W/") == `"`+etag+`"` {
			return true
		}
		list = rest
	}
}

// scanETag reads one entity-tag (W/"x" or "x") from the start of s.
func scanETag(s string) (tag, rest string, ok bool) {
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s) <= start || s[start] != '"' {
		return "", "", false
	}
	end := strings.IndexByte(s[start+1:], '"')
	if end < 0 {
		return "", "", false
	}
	end += start + 2
	return s[:end], s[end:], true
}

// parseRange reads a Range header for an object: the whole object when
// there is none, it is ignored (another unit, several ranges) or If-Range
// does not match; ok is false for an unsatisfiable or malformed range.
func parseRange(r *http.Request, m fileMeta) (start, length int64, partial, ok bool) {
	h := r.Header.Get("Range")
	spec, isBytes := strings.CutPrefix(h, "bytes=")
	if h == "" || !isBytes || strings.Contains(spec, ",") || !ifRangeMatches(r.Header.Get("If-Range"), m) {
		return 0, m.size, false, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" { // the last n bytes
		n, ok := rangeDigits(last)
		if !ok || n == 0 || m.size == 0 {
			return 0, 0, false, false
		}
		n = min(n, m.size)
		return m.size - n, n, true, true
	}
	s, ok := rangeDigits(first)
	if !ok || s >= m.size {
		return 0, 0, false, false
	}
	end := m.size - 1
	if last != "" {
		l, ok := rangeDigits(last)
		if !ok || l < s {
			return 0, 0, false, false
		}
		end = min(l, end)
	}
	return s, end - s + 1, true, true
}

// ifRangeMatches evaluates If-Range: an entity tag must match strongly, a
// date must equal Last-Modified.
func ifRangeMatches(v string, m fileMeta) bool {
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		tag, rest, ok := scanETag(v)
		return ok && strings.TrimSpace(rest) == "" && !strings.HasPrefix(tag, "W/") && m.etag != "" && tag == `"`+m.etag+`"`
	}
	t, err := http.ParseTime(v)
	return err == nil && !m.lastModified.IsZero() && t.Equal(m.lastModified.UTC().Truncate(time.Second))
}

// rangeDigits reads a position or length of a Range header: digits only,
// any number of them; a value past int64 stands for "beyond any file"
// (RFC 9110 14.1.1: a last-pos past the end means the end), so it reads as
// math.MaxInt64 instead of failing.
func rangeDigits(s string) (int64, bool) {
	if len(s) <= 18 {
		return parseDigits(s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	return math.MaxInt64, true
}

// parseDigits parses a non-negative decimal integer without sign or spaces.
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// ---- delete ----

func (e *Engine) handleFileDelete(c *call) error {
	id, tier, err := e.authorizeCall(c, Write)
	if err != nil {
		return err
	}
	loc, err := fileLocation(id, tier, c.params["path"])
	if err != nil {
		return err
	}
	unlock, err := e.lockFile(c, loc.Key)
	if err != nil {
		return err
	}
	defer unlock()
	old, err := e.oldFile(c.ctx, loc.Key)
	if err != nil {
		return err
	}
	ctx, cancel := e.s3Ctx(c)
	defer cancel()
	if err := e.cfg.S3.RemoveObject(ctx, e.cfg.Bucket, loc.Key, minio.RemoveObjectOptions{}); err != nil {
		if err := s3Error("delete", err); !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	e.account(c.ctx, c.reqID, id.Tenant, old.change(loc.Prefix, primFiles, -1))
	e.fileChanged(c, loc.Key, c.params["path"], -1, "")
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- list ----

// listItem is one file of a listing.
type listItem struct {
	Key          string `json:"key"`
	Size         int64  `json:"size"`
	LastModified string `json:"lastModified"`
	ETag         string `json:"etag"`
}

func (e *Engine) handleFileList(c *call) error {
	id, tier, err := e.authorizeCall(c, Read)
	if err != nil {
		return err
	}
	prefix, err := queryParam(c.r, "prefix")
	if err != nil {
		return err
	}
	if err := checkListPrefix(prefix); err != nil {
		return err
	}
	limit := min(defaultListLimit, e.cfg.Limits.MaxListLimit)
	ls, err := queryParam(c.r, "limit")
	if err != nil {
		return err
	}
	if ls != "" {
		n, ok := parseDigits(ls)
		if !ok || n < 1 || n > int64(e.cfg.Limits.MaxListLimit) {
			return errorf(CodeInvalidRequest, "limit must be a whole number from 1 to %d", e.cfg.Limits.MaxListLimit)
		}
		limit = int(n)
	}
	cursor, err := queryParam(c.r, "cursor")
	if err != nil {
		return err
	}
	loc, err := Resolve(id, tier, prefix)
	if err != nil {
		return err
	}
	if len(loc.Key) > maxFileKey {
		return errorf(CodeInvalidRequest, "the prefix is too long: it would exceed %d bytes of stored key", maxFileKey)
	}
	var startAfter string
	if cursor != "" {
		last, err := e.openListCursor(loc.Prefix, prefix, cursor)
		if err != nil {
			return err
		}
		startAfter = loc.Prefix + last
	}
	ctx, cancel := e.s3Ctx(c)
	defer cancel()
	noOwner := false
	items := make([]listItem, 0, min(limit, 64))
	more := false
	for obj := range e.cfg.S3.ListObjectsIter(ctx, e.cfg.Bucket, minio.ListObjectsOptions{
		Prefix:     loc.Key,
		Recursive:  true,
		StartAfter: startAfter,
		MaxKeys:    min(limit+1, maxListPerRequest),
		FetchOwner: &noOwner,
	}) {
		if obj.Err != nil {
			return s3Error("list", obj.Err)
		}
		rel, ok := strings.CutPrefix(obj.Key, loc.Prefix)
		if !ok || !strings.HasPrefix(obj.Key, loc.Key) {
			continue // never from a correct store; never shown
		}
		if len(items) == limit {
			more = true
			break
		}
		items = append(items, listItem{Key: rel, Size: obj.Size, LastModified: jsonTime(obj.LastModified), ETag: quoteETag(obj.ETag)})
	}
	var next *string
	if more {
		s := e.listCursor(loc.Prefix, prefix, items[len(items)-1].Key)
		next = &s
	}
	return c.json(http.StatusOK, struct {
		Items      []listItem `json:"items"`
		NextCursor *string    `json:"nextCursor"`
	}{items, next})
}

// listCursorMsg is what a list cursor's HMAC covers: the location, the
// listing prefix and the last key returned (neither of the first two holds
// a NUL; the key comes last).
func listCursorMsg(location, prefix, last string) []byte {
	return []byte(location + "\x00" + prefix + "\x00" + last)
}

func (e *Engine) listCursor(location, prefix, last string) string {
	sum := e.mac("files-cursor", listCursorMsg(location, prefix, last))
	return "v1." + base64.RawURLEncoding.EncodeToString([]byte(last)) + "." + base64.RawURLEncoding.EncodeToString(sum)
}

// openListCursor checks a cursor against the caller's location and prefix
// and returns the last key it carries.
func (e *Engine) openListCursor(location, prefix, cursor string) (string, error) {
	bad := errorf(CodeInvalidCursor, "the cursor is not valid for this listing")
	if len(cursor) > maxCursor {
		return "", bad
	}
	parts := strings.Split(cursor, ".")
	if len(parts) != 3 || parts[0] != "v1" {
		return "", bad
	}
	last, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	sum, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || !e.validMAC("files-cursor", listCursorMsg(location, prefix, string(last)), sum) {
		return "", bad
	}
	return string(last), nil
}

// ---- signed URLs ----

// signedURL is what a signed URL grants; its signature covers every field.
type signedURL struct {
	method  string // http.MethodGet (a download URL, GET and HEAD) or http.MethodPut (an upload URL)
	tier    Tier
	app     string // the app that signed
	expires int64  // Unix seconds
	key     string // the resolved location key
	// Upload URLs only.
	contentType string // the Content-Type the upload must carry; "" for any
	maxSize     int64  // the most bytes the upload may hold
}

// msg is what the URL's HMAC covers. The method and tier are fixed words,
// the app id and the content type hold no control character (so no '\n'),
// the numbers are digits and the key comes last, so the encoding is
// unambiguous. A download URL covers what it always covered, so URLs
// issued before upload URLs existed stay valid; an upload URL's message
// starts with "PUT", so neither kind verifies as the other.
func (s signedURL) msg() []byte {
	m := s.method + "\n" + string(s.tier) + "\n" + s.app + "\n" + strconv.FormatInt(s.expires, 10) + "\n"
	if s.method == http.MethodPut {
		m += strconv.FormatInt(s.maxSize, 10) + "\n" + s.contentType + "\n"
	}
	return []byte(m + s.key)
}

// query is the URL's query, in its one spelling (names in order, as
// url.Values.Encode writes them).
func (s signedURL) query(sum []byte) string {
	q := url.Values{
		sigParamTier:    {string(s.tier)},
		sigParamApp:     {s.app},
		sigParamExpires: {strconv.FormatInt(s.expires, 10)},
		sigParamSig:     {base64.RawURLEncoding.EncodeToString(sum)},
	}
	if s.method == http.MethodPut {
		q.Set(sigParamMethod, s.method)
		q.Set(sigParamMaxSize, strconv.FormatInt(s.maxSize, 10))
		if s.contentType != "" {
			q.Set(sigParamContentType, s.contentType)
		}
	}
	return q.Encode()
}

// signedURLOf is the signed URL of s on base, the engine's public URL.
func (e *Engine) signedURLOf(base string, s signedURL) string {
	return base + signedPath + escapeKey(s.key) + "?" + s.query(e.mac("signed-url", s.msg()))
}

func (e *Engine) handleSignedURLCreate(c *call) error {
	// Refuse anonymous callers before reading the body; the tier to
	// authorize is in the body.
	tok, err := bearer(c.r)
	if err != nil {
		return err
	}
	if _, err := e.verifier.verify(tok); err != nil {
		return err
	}
	var in struct {
		Key         *string         `json:"key"`
		Tier        *string         `json:"tier"` // absent: private; "" is refused like any other word
		ExpiresIn   json.RawMessage `json:"expiresIn"`
		Method      *string         `json:"method"`
		ContentType *string         `json:"contentType"`
		MaxSize     json.RawMessage `json:"maxSize"`
	}
	if err := decodeJSON(c, 16<<10, &in); err != nil {
		return err
	}
	tier := TierPrivate
	if in.Tier != nil {
		if tier, err = ParseTier(*in.Tier); err != nil || *in.Tier == "" {
			return errorf(CodeInvalidRequest, "tier must be private, user or shared")
		}
	}
	method := http.MethodGet
	if in.Method != nil {
		method = *in.Method
	}
	access := Read
	switch method {
	case http.MethodGet:
		if in.ContentType != nil || !isNull(in.MaxSize) {
			return errorf(CodeInvalidRequest, "contentType and maxSize apply to upload (PUT) URLs only")
		}
	case http.MethodPut:
		access = Write
	default:
		return errorf(CodeInvalidRequest, "method must be GET or PUT")
	}
	id, err := e.authorize(c, tier, access)
	if err != nil {
		return err
	}
	if in.Key == nil {
		return errorf(CodeInvalidRequest, "key is required")
	}
	expiresIn := int64(defaultSignedURLExpiry)
	if !isNull(in.ExpiresIn) {
		n, ok := parseDigits(string(in.ExpiresIn))
		if !ok || n < 1 || n > maxSignedURLExpiry {
			return errorf(CodeInvalidRequest, "expiresIn must be a whole number of seconds from 1 to %d", maxSignedURLExpiry)
		}
		expiresIn = n
	}
	s := signedURL{method: method, tier: tier, app: id.App}
	if method == http.MethodPut {
		limit := e.cfg.Limits.MaxFileSize
		s.maxSize = limit
		if !isNull(in.MaxSize) {
			n, ok := parseDigits(string(in.MaxSize))
			if !ok || n < 1 || n > limit {
				return errorf(CodeInvalidRequest, "maxSize must be a whole number of bytes from 1 to %d", limit)
			}
			s.maxSize = n
		}
		if in.ContentType != nil && *in.ContentType != "" {
			if err := checkContentType(*in.ContentType, "contentType"); err != nil {
				return err
			}
			s.contentType = *in.ContentType
		}
	}
	loc, err := fileLocation(id, tier, *in.Key)
	if err != nil {
		return err
	}
	s.key = loc.Key
	s.expires = e.now().Unix() + expiresIn
	var u string
	switch {
	case method == http.MethodPut:
		// No existence check. Always the engine's own URL, also with
		// S3PresignedURLs: an S3 presigned PUT enforces neither maxSize
		// nor revocation (see the notes above).
		u = e.signedURLOf(e.publicBase(c.r), s)
	case e.cfg.S3PresignedURLs:
		ctx, cancel := e.s3Ctx(c)
		defer cancel()
		info, err := e.cfg.S3.StatObject(ctx, e.cfg.Bucket, loc.Key, minio.StatObjectOptions{})
		if err != nil {
			return s3Error("stat", err)
		}
		params := url.Values{}
		if inline, _ := contentTypeSafety(metaOf(info).contentType); !inline {
			params.Set("response-content-disposition", "attachment")
		}
		pu, err := e.cfg.S3.PresignedGetObject(ctx, e.cfg.Bucket, loc.Key, time.Duration(expiresIn)*time.Second, params)
		if err != nil {
			return s3Error("presign", err)
		}
		u = pu.String()
	default:
		ctx, cancel := e.s3Ctx(c)
		defer cancel()
		if _, err := e.cfg.S3.StatObject(ctx, e.cfg.Bucket, loc.Key, minio.StatObjectOptions{}); err != nil {
			return s3Error("stat", err)
		}
		u = e.signedURLOf(e.publicBase(c.r), s)
	}
	return c.json(http.StatusOK, struct {
		URL       string `json:"url"`
		ExpiresAt string `json:"expiresAt"`
		Method    string `json:"method"`
	}{u, jsonTime(time.Unix(s.expires, 0)), method})
}

// isNull reports whether an optional JSON field was absent or null.
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// publicBase is the absolute URL the engine is reached at: Config.PublicURL,
// or the request's scheme and Host plus the prefix the engine is mounted
// under. X-Forwarded-* headers are not trusted.
func (e *Engine) publicBase(r *http.Request) string {
	if e.cfg.PublicURL != "" {
		return strings.TrimSuffix(e.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + mountPrefix(r)
}

// mountPrefix is the path prefix that an http.StripPrefix in front of the
// engine removed ("/storage-api" for a mount at /storage-api/), found by
// comparing the request line's path with the path the engine received; ""
// when the engine is mounted at the root or the two do not line up.
func mountPrefix(r *http.Request) string {
	reqPath, _, _ := strings.Cut(r.RequestURI, "?")
	got := r.URL.EscapedPath()
	if !strings.HasPrefix(reqPath, "/") || !strings.HasSuffix(reqPath, got) {
		return ""
	}
	prefix := reqPath[:len(reqPath)-len(got)]
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; c <= ' ' || c >= 0x7F || c == '"' || c == '<' || c == '>' || c == '\\' {
			return ""
		}
	}
	return prefix
}

// escapeKey path-escapes a location key segment by segment.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// signatureRefused is the answer to a signed URL that was changed: 403
// invalid_signature, with the Referrer-Policy of every signed URL answer.
func signatureRefused(c *call) error {
	c.w.Header().Set("Referrer-Policy", "no-referrer")
	return errorf(CodeInvalidSignature, "the URL signature is not valid")
}

// handleSigned serves a signed URL: no Authorization header; the
// signature, the expiry and the signing app's scope are checked instead. A
// download URL answers GET and HEAD, an upload URL PUT.
func (e *Engine) handleSigned(c *call) error {
	invalid := signatureRefused(c)
	s, ok := e.verifySignedURL(c)
	if !ok {
		return invalid
	}
	access := Read
	switch {
	case s.method == http.MethodGet && (c.r.Method == http.MethodGet || c.r.Method == http.MethodHead):
	case s.method == http.MethodPut && c.r.Method == http.MethodPut:
		access = Write
	default:
		return invalid // a download URL cannot upload, nor an upload URL read
	}
	if !e.now().Before(time.Unix(s.expires, 0)) {
		return errorf(CodeExpired, "the signed URL has expired")
	}
	var ct, name string
	if access == Write {
		var err error
		if ct, err = uploadContentType(c.r); err != nil && s.contentType == "" {
			return err
		}
		if s.contentType != "" && (err != nil || !sameMediaType(ct, s.contentType)) {
			return errorf(CodeInvalidSignature, "the Content-Type is not the one the URL was signed for")
		}
		if name, ok = relativeName(s); !ok {
			return invalid
		}
	}
	// The signing tenant's and app's allowances for signed URLs (not their
	// API's: see ratelimit.go), before any backend call.
	if err := e.rateLimit(c, rateClassSigned, tenantOfLocation(s.key), s.app); err != nil {
		return err
	}
	// Revocation: the app that signed must still be registered (else the
	// URL is revoked, invalid_signature) and still declare the tier's scope
	// for the URL's access (else invalid_scope, as for a token of an app
	// that does not declare the scope).
	ctx, cancel := e.backendCtx(c)
	a, err := e.apps.lookup(ctx, s.app)
	cancel()
	if errors.Is(err, ErrInvalidToken) {
		return errorf(CodeInvalidSignature, "the signed URL was revoked: the app that signed it is not registered")
	}
	if err != nil {
		return err
	}
	if need := Scope(s.tier, access); !a.declares(need) {
		return errorf(CodeInvalidScope, "the app that signed this URL no longer declares %s", need)
	}
	if access == Read {
		return e.serveFile(c, s.key)
	}
	return e.storeFile(c, s.key, name, s.tier, ct, min(s.maxSize, e.cfg.Limits.MaxFileSize))
}

// verifySignedURL reads the signed URL of the request and checks its
// signature and its spelling.
func (e *Engine) verifySignedURL(c *call) (signedURL, bool) {
	q, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		return signedURL{}, false
	}
	for _, vs := range q {
		if len(vs) != 1 {
			return signedURL{}, false
		}
	}
	s := signedURL{method: http.MethodGet, tier: Tier(q.Get(sigParamTier)), app: q.Get(sigParamApp), key: c.params["key"]}
	if s.tier != TierPrivate && s.tier != TierUser && s.tier != TierShared {
		return signedURL{}, false
	}
	expires, ok := parseDigits(q.Get(sigParamExpires))
	s.expires = expires
	if _, put := q[sigParamMethod]; put {
		// An upload URL: the method is PUT, maxSize at least 1.
		s.method, s.contentType = q.Get(sigParamMethod), q.Get(sigParamContentType)
		n, okSize := parseDigits(q.Get(sigParamMaxSize))
		s.maxSize, ok = n, ok && okSize && n >= 1 && s.method == http.MethodPut
	}
	sum, err := base64.RawURLEncoding.DecodeString(q.Get(sigParamSig))
	if !ok || err != nil || !validID(s.app) || len(s.key) > maxFileKey ||
		!e.validMAC("signed-url", s.msg(), sum) {
		return signedURL{}, false
	}
	// Exactly the URL that was signed, byte for byte: equivalent spellings
	// ("s%2Fa.txt" for "s/a.txt", "%61" for "a", lower-case hex, expires
	// with a leading zero, a signature with other padding bits, parameters
	// in another order, an empty contentType) are changes too. The route
	// matched the escaped path, which starts with signedPath.
	if strings.TrimPrefix(c.r.URL.EscapedPath(), signedPath) != escapeKey(s.key) ||
		c.r.URL.RawQuery != s.query(sum) {
		return signedURL{}, false
	}
	return s, true
}

// relativeName is the path, relative to its tier, of a signed location
// key: the inverse of Resolve for the identity that signed. The key was
// made by Resolve and is covered by the signature; the path rules are
// applied once more all the same.
func relativeName(s signedURL) (string, bool) {
	var prefix string
	switch s.tier {
	case TierPrivate:
		prefix = "/apps/" + s.app + "/"
	case TierUser:
		prefix = "/users/"
	case TierShared:
		prefix = "/shared/"
	}
	tenant, rest, _ := strings.Cut(s.key, "/")
	rest, ok := strings.CutPrefix("/"+rest, prefix)
	if ok && s.tier == TierUser {
		var user string
		user, rest, ok = strings.Cut(rest, "/")
		ok = ok && validID(user)
	}
	if !ok || !validID(tenant) || checkFilePath(rest) != nil {
		return "", false
	}
	return rest, true
}

// sameMediaType reports whether two Content-Types name the same media type
// with the same parameters; type, subtype and parameter names compare
// case-insensitively, parameter values exactly.
func sameMediaType(a, b string) bool {
	if a == b {
		return true
	}
	ma, pa, err1 := mime.ParseMediaType(a)
	mb, pb, err2 := mime.ParseMediaType(b)
	if err1 != nil || err2 != nil || ma != mb || len(pa) != len(pb) {
		return false
	}
	for k, v := range pa {
		if w, ok := pb[k]; !ok || w != v {
			return false
		}
	}
	return true
}
