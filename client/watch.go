package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Event is one change of a followed collection, kv or files (see
// [Collection.Watch], [KV.Watch], [Files.Watch]).
type Event struct {
	// ID is the event's opaque position: give it as
	// WatchOptions.LastEventID to resume after it.
	ID string
	// Type is "set" or "delete" (documents, kv), "write" or "delete"
	// (files), or "reset": events were missed (an id older than the
	// server's retention, a consumer too slow, an admin erase); re-read
	// what you show, then keep following.
	Type string
	// Key is the document key, kv key or file path relative to the tier.
	Key string
	// Value is the new value of a set, as JSON: the document's value, or
	// the kv value as a JSON string (see [Event.Text]). Nil for a delete,
	// a file, a kv TTL change and a value over 16 KiB (read it).
	Value json.RawMessage
	// ETag is the document's or file's new entity tag ("" for kv).
	ETag string
	// Size is a written file's size in bytes.
	Size int64
}

// Text returns a kv event's value as the string stored ("" without one).
func (e Event) Text() string {
	var s string
	_ = json.Unmarshal(e.Value, &s)
	return s
}

// Decode unmarshals a document event's value into dst.
func (e Event) Decode(dst any) error {
	if e.Value == nil {
		return fmt.Errorf("cpod storage: event %s of %q carries no value", e.Type, e.Key)
	}
	return json.Unmarshal(e.Value, dst)
}

// WatchOptions are the options of the Watch methods. A nil *WatchOptions
// means all defaults.
type WatchOptions struct {
	// Key follows one document only ([Collection.Watch]).
	Key string
	// Prefix follows only kv keys or file paths that start with it
	// ([KV.Watch], [Files.Watch]).
	Prefix string
	// Tier of the files ([Files.Watch]); collections and KV have theirs.
	Tier Tier
	// LastEventID resumes after this event's ID: the server replays what
	// came after it within its retention, or starts with a reset.
	LastEventID string
}

// Watch follows the collection's changes as they happen, as a change feed
// (GET /v1/storage/db/{collection}/changes, Server-Sent Events). The
// iterator yields each event until ctx is done (then it ends without an
// error) or the stream cannot go on: it yields a final error, such as
// [ErrInvalidScope] once the app no longer declares the scope, or the
// refusal of a new connection (an expired token the token source does not
// renew gives [ErrInvalidToken]). A dropped connection, or a stream ended
// because the token expired, is reopened with Last-Event-ID and a token
// fresh from the client's token source, so nothing is lost within the
// server's retention (at least 1000 events or 10 minutes); events come at
// least once, so a reconnect may repeat one.
func (col *Collection) Watch(ctx context.Context, opts *WatchOptions) iter.Seq2[Event, error] {
	p, err := col.path("/changes")
	q := tierQuery(col.tier)
	if opts != nil && opts.Key != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("key", opts.Key)
	}
	return col.c.watch(ctx, p, err, q, opts)
}

// Watch follows the changes of this KV's tier (see [Collection.Watch]):
// set events carry the stored string ([Event.Text]); a TTL change is a set
// without value; keys that expire send nothing.
func (kv *KV) Watch(ctx context.Context, opts *WatchOptions) iter.Seq2[Event, error] {
	return kv.c.watch(ctx, "/v1/storage/kv/changes", nil, prefixQuery(kv.tier, opts), opts)
}

// Watch follows the changes of a tier's files (see [Collection.Watch]):
// write and delete events, with the path, size and ETag of a write.
func (f *Files) Watch(ctx context.Context, opts *WatchOptions) iter.Seq2[Event, error] {
	var t Tier
	if opts != nil {
		t = opts.Tier
	}
	return f.c.watch(ctx, "/v1/storage/files/changes", nil, prefixQuery(t, opts), opts)
}

func prefixQuery(t Tier, opts *WatchOptions) url.Values {
	q := tierQuery(t)
	if opts != nil && opts.Prefix != "" {
		if q == nil {
			q = url.Values{}
		}
		q.Set("prefix", opts.Prefix)
	}
	return q
}

// errStreamEnded is a stream that ended without an error event: the
// connection dropped or the server went away.
var errStreamEnded = errors.New("stream ended")

// watch runs the change feed at path, reconnecting as Watch says.
func (c *Client) watch(ctx context.Context, path string, pathErr error, q url.Values, opts *WatchOptions) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if pathErr != nil {
			yield(Event{}, pathErr)
			return
		}
		last := ""
		if opts != nil {
			last = opts.LastEventID
		}
		backoff := 50 * time.Millisecond
		for {
			hdr := http.Header{"Accept": {"text/event-stream"}}
			if last != "" {
				hdr.Set("Last-Event-ID", last)
			}
			resp, err := c.do(ctx, request{method: http.MethodGet, path: path, query: q, header: hdr})
			if ctx.Err() != nil {
				if resp != nil {
					resp.Body.Close()
				}
				return
			}
			var ae *Error
			switch {
			case err == nil:
				backoff = 50 * time.Millisecond
				var stop bool
				last, stop, err = readEvents(resp.Body, last, yield)
				resp.Body.Close()
				if stop || ctx.Err() != nil {
					return
				}
				if errors.As(err, &ae) {
					if ae.Code != "invalid_token" {
						yield(Event{}, err)
						return
					}
					continue // expired: reconnect at once with a fresh token
				}
			case errors.As(err, &ae) && ae.Status != http.StatusTooManyRequests && ae.Status < 500:
				yield(Event{}, err) // refused: retrying would not help
				return
			case errors.As(err, &ae) && ae.RetryAfter > backoff:
				backoff = ae.RetryAfter
			}
			// Dropped, 429 or 5xx: try again after a growing pause.
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// readEvents reads a stream, yielding each event, and returns the last id
// seen, whether the consumer stopped, and why the stream ended: an *Error
// for an error event, else errStreamEnded or the read error.
func readEvents(body io.Reader, last string, yield func(Event, error) bool) (string, bool, error) {
	rd := bufio.NewReaderSize(body, 64<<10)
	var id, typ string
	var data []byte
	for {
		line, err := rd.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long data line: read the rest of it.
			more, err2 := rd.ReadBytes('\n')
			line, err = append(append([]byte(nil), line...), more...), err2
		}
		if err != nil {
			if err == io.EOF {
				err = errStreamEnded
			}
			return last, false, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		switch {
		case s == "":
			if typ == "" && data == nil {
				if id != "" {
					last, id = id, ""
				}
				continue
			}
			if id != "" {
				last = id
			}
			if typ == "error" {
				var e struct{ Error, Message string }
				_ = json.Unmarshal(data, &e)
				status := http.StatusUnauthorized
				if e.Error != "invalid_token" {
					status = http.StatusForbidden
				}
				return last, false, &Error{Status: status, Code: e.Error, Message: e.Message}
			}
			ev := Event{ID: id, Type: typ}
			var d struct {
				Key   string          `json:"key"`
				Value json.RawMessage `json:"value"`
				ETag  string          `json:"etag"`
				Size  int64           `json:"size"`
			}
			if len(data) > 0 && json.Unmarshal(data, &d) == nil {
				ev.Key, ev.Value, ev.ETag, ev.Size = d.Key, d.Value, d.ETag, d.Size
			}
			if !yield(ev, nil) {
				return last, true, nil
			}
			id, typ, data = "", "", nil
		case s[0] == ':':
		default:
			field, value, _ := strings.Cut(s, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				typ = value
			case "data":
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, value...)
			}
		}
	}
}
