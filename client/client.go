package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Environment variables read by [FromEnv].
const (
	// EnvAPIURL names the variable holding the base URL of the storage API,
	// for example "https://api.example.com" or "https://example.com/storage-api".
	EnvAPIURL = "CPOD_API_URL"
	// EnvToken names the variable holding the bearer token (a JWT) sent with
	// every call. It may be unset when a token source is given as an option.
	EnvToken = "CPOD_TOKEN"
)

// Tier selects who can read the data a call touches. The zero value sends no
// tier, so the server uses its default, [TierPrivate].
type Tier string

// The three tiers of the path isolation contract.
const (
	// TierPrivate is this app only (the default).
	TierPrivate Tier = "private"
	// TierUser is the token's user, visible to every app they use. It needs a
	// token that carries a user; a client-credentials token gets
	// [ErrUserRequired].
	TierUser Tier = "user"
	// TierShared is every app of the tenant.
	TierShared Tier = "shared"
)

// Client talks to a cpod storage API. Create it with [New] or [FromEnv]; the
// zero value is not usable. A Client holds no per-call state and is safe for
// concurrent use by multiple goroutines.
type Client struct {
	// Storage groups the three primitives, as sdk.storage does in the
	// TypeScript SDK: c.Storage.Files, c.Storage.DB and c.Storage.KV.
	Storage Storage

	base  string // scheme://host[/prefix] without a trailing slash
	hc    *http.Client
	token func(context.Context) (string, error)
}

// Storage groups the storage primitives of a [Client].
type Storage struct {
	Files *Files // blobs: sdk.storage.files
	DB    *DB    // documents: sdk.storage.db
	KV    *KV    // ephemeral values: sdk.storage.kv
}

// Option configures a [Client] in [New] or [FromEnv].
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc instead of a
// client with the default transport. Use it for timeouts, proxies, TLS
// settings or instrumentation. Streaming downloads are read after the call
// returns, so an hc.Timeout also bounds the time spent reading a file body.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithToken sends the fixed bearer token tok with every call.
func WithToken(tok string) Option {
	return func(c *Client) {
		c.token = func(context.Context) (string, error) { return tok, nil }
	}
}

// WithTokenSource calls src before every request and sends the token it
// returns, so tokens can be refreshed (and cached) by the caller. src is
// called concurrently when the client is; an error from it is returned from
// the storage call, wrapped. An empty token sends no Authorization header.
func WithTokenSource(src func(ctx context.Context) (string, error)) Option {
	return func(c *Client) {
		c.token = src
	}
}

// New returns a client for the storage API at baseURL, an http or https URL
// that may end in a path prefix when the engine is mounted below the root:
// with "https://example.com/storage-api", a file is written with
// PUT https://example.com/storage-api/v1/storage/files/{path}.
//
// Without [WithToken] or [WithTokenSource] calls carry no Authorization
// header and fail with [ErrInvalidToken].
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("cpod storage: invalid base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("cpod storage: base URL %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("cpod storage: base URL %q has no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("cpod storage: base URL %q must not have user info, a query or a fragment", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")

	c := &Client{
		base:  u.String(),
		hc:    &http.Client{},
		token: func(context.Context) (string, error) { return "", nil },
	}
	for _, opt := range opts {
		opt(c)
	}
	c.Storage = Storage{
		Files: &Files{c: c},
		DB:    &DB{c: c},
		KV:    &KV{c: c},
	}
	return c, nil
}

// FromEnv is the Go form of the TypeScript SDK's CpodClient.fromEnv(): it
// returns a client for the base URL in CPOD_API_URL ([EnvAPIURL]) that sends
// the token in CPOD_TOKEN ([EnvToken]). opts are applied after the
// environment, so [WithToken] or [WithTokenSource] replace CPOD_TOKEN.
// It fails when CPOD_API_URL is unset or empty.
func FromEnv(opts ...Option) (*Client, error) {
	base := os.Getenv(EnvAPIURL)
	if base == "" {
		return nil, fmt.Errorf("cpod storage: %s is not set", EnvAPIURL)
	}
	var all []Option
	if tok := os.Getenv(EnvToken); tok != "" {
		all = append(all, WithToken(tok))
	}
	return New(base, append(all, opts...)...)
}

// request describes one API call. path is already escaped and starts with
// "/v1/".
type request struct {
	method string
	path   string
	query  url.Values
	header http.Header
	body   io.Reader
	// size is the body's length when known; 0 with a non-nil body means
	// unknown (sent chunked), as in http.Request.ContentLength.
	size int64
}

// do sends r and returns the response when its status is 2xx. Otherwise it
// consumes the response and returns an *Error.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, r.body)
	if err != nil {
		return nil, fmt.Errorf("cpod storage: %w", err)
	}
	if r.size > 0 {
		req.ContentLength = r.size
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	tok, err := c.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("cpod storage: token source: %w", err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cpod storage: %w", err)
	}
	if err := CheckResponse(resp); err != nil {
		drainClose(resp.Body)
		return nil, err
	}
	return resp, nil
}

// doJSON sends in (when not nil) as a JSON body and decodes a JSON response
// into out (when not nil).
func (c *Client) doJSON(ctx context.Context, method, path string, query url.Values, in, out any) error {
	r := request{method: method, path: path, query: query, header: http.Header{}}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("cpod storage: encoding request: %w", err)
		}
		r.body = bytes.NewReader(b)
		r.header.Set("Content-Type", "application/json")
	}
	if out != nil {
		r.header.Set("Accept", "application/json")
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer drainClose(resp.Body)
	if out == nil {
		return nil
	}
	return decodeJSON(resp, out)
}

// decodeJSON decodes the JSON body of resp into out.
func decodeJSON(resp *http.Response, out any) error {
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("cpod storage: decoding %s %s response: %w",
			resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// drainClose reads a little of what is left of body, so the connection can
// be reused, and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// tierQuery returns the query for t, nil for the default tier.
func tierQuery(t Tier) url.Values {
	if t == "" {
		return nil
	}
	return url.Values{"tier": {string(t)}}
}

// escapeSegment escapes s as a single path segment: a "/" in s becomes %2F,
// and the segments "." and ".." are sent as %2E and %2E%2E so that no
// router cleans them away.
func escapeSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(s)
}

// escapePath escapes a slash-separated file path segment by segment. Empty
// segments (a leading, trailing or doubled "/") cannot be sent faithfully, so
// they are rejected here with ErrInvalidRequest, as the server would.
func escapePath(p string) (string, error) {
	if p == "" {
		return "", localError("path is empty")
	}
	if p == changesPath {
		return changesEscaped, nil
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s == "" {
			return "", localError(fmt.Sprintf("path %q has an empty segment (leading, trailing or double slash)", p))
		}
		segs[i] = escapeSegment(s)
	}
	return strings.Join(segs, "/"), nil
}

// escapeKey escapes a KV or document key, or a collection name, as one path
// segment.
func escapeKey(what, k string) (string, error) {
	if k == "" {
		return "", localError(what + " is empty")
	}
	if k == changesPath && what != "collection name" {
		return changesEscaped, nil
	}
	return escapeSegment(k), nil
}

// A document key, kv key or file path "changes" is sent with its first
// letter percent-encoded: the server's GET .../changes is the change feed
// (see Watch), and it matches the escaped path, so %63hanges reaches the
// document, key or file. Every method sends it so, for one spelling.
const (
	changesPath    = "changes"
	changesEscaped = "%63hanges"
)

// seconds converts d to whole seconds for the wire, rounding away from zero
// so that a positive duration never becomes 0 (the server's "not given").
func seconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	} else if d%time.Second < 0 {
		s--
	}
	return s
}

// wireTime decodes a timestamp sent either as an RFC 3339 string or as a
// number of seconds since the Unix epoch.
type wireTime struct{ time.Time }

func (t *wireTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s == "" {
			return nil
		}
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			if v2, err2 := http.ParseTime(s); err2 == nil {
				t.Time = v2
				return nil
			}
			return err
		}
		t.Time = v
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("timestamp is neither a string nor a number")
	}
	f, err := n.Float64()
	if err != nil {
		return err
	}
	sec := int64(f)
	t.Time = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
	return nil
}
