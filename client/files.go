package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Files is blob storage, sdk.storage.files: PDFs, images, exports, anything
// binary or large. Bodies are streamed both ways; nothing buffers a whole
// file. Paths are relative to the tier, such as "config/settings.json":
// slash-separated, with no leading, trailing or doubled slash and no "." or
// ".." segment.
type Files struct{ c *Client }

// WriteOptions are the options of [Files.Write]. A nil *WriteOptions means
// all defaults.
type WriteOptions struct {
	// ContentType is stored with the file and returned by Read; default
	// application/octet-stream.
	ContentType string
	// Tier of the file; default private.
	Tier Tier
	// Size is the exact number of bytes r yields, sent as Content-Length.
	// 0 or negative means unknown: the body is sent chunked. It is not
	// needed for a *bytes.Reader, *bytes.Buffer or *strings.Reader, whose
	// length is known.
	Size int64
}

// WriteResult describes a stored file.
type WriteResult struct {
	Key          string    // the path, relative to the tier
	Tier         Tier      // the tier it was written to
	Size         int64     // bytes stored
	ContentType  string    // as stored
	ETag         string    // entity tag of the content
	LastModified time.Time // time of this write
}

// Write stores the bytes of r at path, replacing any file there, as
// sdk.storage.files.write. r is streamed, not buffered, and is not closed.
func (f *Files) Write(ctx context.Context, path string, r io.Reader, opts *WriteOptions) (WriteResult, error) {
	if opts == nil {
		opts = &WriteOptions{}
	}
	p, err := escapePath(path)
	if err != nil {
		return WriteResult{}, err
	}
	switch r.(type) {
	case nil:
		r = http.NoBody
	case *bytes.Reader, *bytes.Buffer, *strings.Reader:
		// http.NewRequest knows their length.
	default:
		// Hide an io.Closer (an *os.File, say) from net/http, which
		// would close it: the caller owns r.
		r = io.NopCloser(r)
	}
	h := http.Header{}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Accept", "application/json")
	resp, err := f.c.do(ctx, request{
		method: http.MethodPut,
		path:   "/v1/storage/files/" + p,
		query:  tierQuery(opts.Tier),
		header: h,
		body:   r,
		size:   opts.Size,
	})
	if err != nil {
		return WriteResult{}, err
	}
	defer drainClose(resp.Body)
	var out struct {
		Key          string   `json:"key"`
		Tier         Tier     `json:"tier"`
		Size         int64    `json:"size"`
		ContentType  string   `json:"contentType"`
		ETag         string   `json:"etag"`
		LastModified wireTime `json:"lastModified"`
	}
	if err := decodeJSON(resp, &out); err != nil {
		return WriteResult{}, err
	}
	return WriteResult{
		Key:          out.Key,
		Tier:         out.Tier,
		Size:         out.Size,
		ContentType:  out.ContentType,
		ETag:         out.ETag,
		LastModified: out.LastModified.Time,
	}, nil
}

// ReadOptions are the options of [Files.Read]. A nil *ReadOptions means all
// defaults.
type ReadOptions struct {
	// Tier of the file; default private.
	Tier Tier
	// Offset and Length select a byte range (an HTTP Range request): Length
	// bytes from Offset, or everything from Offset when Length is 0 or
	// negative. Both zero reads the whole file.
	Offset, Length int64
}

// Object is a file being read. It is an io.ReadCloser over the file's bytes,
// which arrive as they are read: the caller must Close it.
type Object struct {
	// Body streams the content. Reading the Object reads Body.
	Body         io.ReadCloser
	ContentType  string
	Size         int64 // bytes in Body; -1 when the server did not say
	ETag         string
	LastModified time.Time
}

// Read reads from the object's body.
func (o *Object) Read(p []byte) (int, error) { return o.Body.Read(p) }

// Close closes the body, releasing the connection.
func (o *Object) Close() error { return o.Body.Close() }

// Read opens the file at path for reading, as sdk.storage.files.read. The
// content is streamed from the server while the returned Object is read; it
// must be closed. A missing file is ErrNotFound.
func (f *Files) Read(ctx context.Context, path string, opts *ReadOptions) (*Object, error) {
	if opts == nil {
		opts = &ReadOptions{}
	}
	p, err := escapePath(path)
	if err != nil {
		return nil, err
	}
	if opts.Offset < 0 {
		return nil, localError("negative read offset")
	}
	h := http.Header{}
	if opts.Offset > 0 || opts.Length > 0 {
		rng := "bytes=" + strconv.FormatInt(opts.Offset, 10) + "-"
		if opts.Length > 0 {
			rng += strconv.FormatInt(opts.Offset+opts.Length-1, 10)
		}
		h.Set("Range", rng)
	}
	resp, err := f.c.do(ctx, request{
		method: http.MethodGet,
		path:   "/v1/storage/files/" + p,
		query:  tierQuery(opts.Tier),
		header: h,
	})
	if err != nil {
		return nil, err
	}
	o := &Object{
		Body:        resp.Body,
		ContentType: resp.Header.Get("Content-Type"),
		Size:        resp.ContentLength,
		ETag:        resp.Header.Get("ETag"),
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			o.LastModified = t
		}
	}
	return o, nil
}

// URLOptions are the options of [Files.URL]. A nil *URLOptions means all
// defaults.
type URLOptions struct {
	// ExpiresIn is how long the URL works, rounded up to whole seconds;
	// 0 means the server's default of one hour. At most 7 days.
	ExpiresIn time.Duration
	// Tier of the file; default private.
	Tier Tier
}

// SignedURL is a time-limited download ([Files.URL]) or upload
// ([Files.UploadURL]) URL.
type SignedURL struct {
	URL       string
	ExpiresAt time.Time
	// Method is what the URL allows: "GET" (and HEAD) for a download URL,
	// "PUT" for an upload URL.
	Method string
}

// URL returns a time-limited URL that downloads the file at path with no
// Authorization header, as sdk.storage.files.url: send it to a browser. The
// file must exist (else ErrNotFound). Once expired the URL answers 403
// expired, and any change to it 403 invalid_signature; [CheckResponse]
// turns those into [ErrExpired] and [ErrInvalidSignature].
func (f *Files) URL(ctx context.Context, path string, opts *URLOptions) (SignedURL, error) {
	if opts == nil {
		opts = &URLOptions{}
	}
	if _, err := escapePath(path); err != nil {
		return SignedURL{}, err
	}
	in := struct {
		Key       string `json:"key"`
		Tier      Tier   `json:"tier,omitempty"`
		ExpiresIn *int64 `json:"expiresIn,omitempty"`
	}{Key: path, Tier: opts.Tier}
	if opts.ExpiresIn != 0 {
		s := seconds(opts.ExpiresIn)
		in.ExpiresIn = &s
	}
	return f.sign(ctx, in)
}

// sign asks the server for a signed URL.
func (f *Files) sign(ctx context.Context, in any) (SignedURL, error) {
	var out struct {
		URL       string   `json:"url"`
		ExpiresAt wireTime `json:"expiresAt"`
		Method    string   `json:"method"`
	}
	if err := f.c.doJSON(ctx, http.MethodPost, "/v1/storage/signed-urls", nil, in, &out); err != nil {
		return SignedURL{}, err
	}
	if out.Method == "" {
		out.Method = http.MethodGet // a server from before upload URLs
	}
	return SignedURL{URL: f.c.resolve(out.URL), ExpiresAt: out.ExpiresAt.Time, Method: out.Method}, nil
}

// UploadURLOptions are the options of [Files.UploadURL]. A nil
// *UploadURLOptions means all defaults.
type UploadURLOptions struct {
	// ExpiresIn is how long the URL works, rounded up to whole seconds;
	// 0 means the server's default of one hour. At most 7 days.
	ExpiresIn time.Duration
	// ContentType is the Content-Type the upload must carry (another one is
	// refused with ErrInvalidSignature); empty allows any.
	ContentType string
	// MaxSize is the most bytes the upload may hold (more is refused with
	// ErrTooLarge and stores nothing); 0 means the server's file size
	// limit, which is also the most it accepts.
	MaxSize int64
	// Tier of the file; default private.
	Tier Tier
}

// UploadURL returns a time-limited URL that stores one file at path when
// its bytes are sent to it with PUT and no Authorization header: hand it to
// a browser, which then uploads straight to storage. The file need not
// exist; an existing one is replaced. The upload answers the JSON of
// [Files.Write]. It needs the tier's write scope, and stops working when
// it expires ([ErrExpired]) or when the app no longer declares that scope;
// another Content-Type than opts.ContentType, any change to the URL, or a
// GET of it is [ErrInvalidSignature] (see [CheckResponse]).
func (f *Files) UploadURL(ctx context.Context, path string, opts *UploadURLOptions) (SignedURL, error) {
	if opts == nil {
		opts = &UploadURLOptions{}
	}
	if _, err := escapePath(path); err != nil {
		return SignedURL{}, err
	}
	if opts.MaxSize < 0 {
		return SignedURL{}, localError("negative MaxSize")
	}
	in := struct {
		Key         string `json:"key"`
		Tier        Tier   `json:"tier,omitempty"`
		Method      string `json:"method"`
		ExpiresIn   *int64 `json:"expiresIn,omitempty"`
		ContentType string `json:"contentType,omitempty"`
		MaxSize     int64  `json:"maxSize,omitempty"`
	}{Key: path, Tier: opts.Tier, Method: http.MethodPut, ContentType: opts.ContentType, MaxSize: opts.MaxSize}
	if opts.ExpiresIn != 0 {
		s := seconds(opts.ExpiresIn)
		in.ExpiresIn = &s
	}
	return f.sign(ctx, in)
}

// resolve makes a URL returned by the server absolute, relative to the base
// URL's origin.
func (c *Client) resolve(ref string) string {
	r, err := url.Parse(ref)
	if err != nil || r.IsAbs() {
		return ref
	}
	b, err := url.Parse(c.base)
	if err != nil {
		return ref
	}
	return b.ResolveReference(r).String()
}

// ListOptions are the options of [Files.List]. A nil *ListOptions means all
// defaults.
type ListOptions struct {
	// Limit is the most entries in one page: default 100, at most 1000.
	Limit int
	// Cursor continues a listing from its NextCursor.
	Cursor string
	// Tier to list; default private.
	Tier Tier
}

// Listing is one page of [Files.List].
type Listing struct {
	Items []Entry
	// NextCursor fetches the next page through ListOptions.Cursor; empty on
	// the last page.
	NextCursor string
}

// Entry is a file in a [Listing].
type Entry struct {
	Key          string // relative to the tier
	Size         int64
	LastModified time.Time
	ETag         string
}

// List returns the files whose path starts with prefix ("" for all), one
// page at a time in path order, as sdk.storage.files.list.
func (f *Files) List(ctx context.Context, prefix string, opts *ListOptions) (Listing, error) {
	if opts == nil {
		opts = &ListOptions{}
	}
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.Tier != "" {
		q.Set("tier", string(opts.Tier))
	}
	var out struct {
		Items []struct {
			Key          string   `json:"key"`
			Size         int64    `json:"size"`
			LastModified wireTime `json:"lastModified"`
			ETag         string   `json:"etag"`
		} `json:"items"`
		NextCursor *string `json:"nextCursor"`
	}
	if err := f.c.doJSON(ctx, http.MethodGet, "/v1/storage/files", q, nil, &out); err != nil {
		return Listing{}, err
	}
	l := Listing{Items: make([]Entry, len(out.Items))}
	for i, it := range out.Items {
		l.Items[i] = Entry{Key: it.Key, Size: it.Size, LastModified: it.LastModified.Time, ETag: it.ETag}
	}
	if out.NextCursor != nil {
		l.NextCursor = *out.NextCursor
	}
	return l, nil
}

// DeleteOptions are the options of [Files.Delete]. A nil *DeleteOptions
// means all defaults.
type DeleteOptions struct {
	// Tier of the file; default private.
	Tier Tier
}

// Delete removes the file at path, as sdk.storage.files.delete. Deleting a
// file that does not exist is not an error.
func (f *Files) Delete(ctx context.Context, path string, opts *DeleteOptions) error {
	if opts == nil {
		opts = &DeleteOptions{}
	}
	p, err := escapePath(path)
	if err != nil {
		return err
	}
	return f.c.doJSON(ctx, http.MethodDelete, "/v1/storage/files/"+p, tierQuery(opts.Tier), nil, nil)
}
