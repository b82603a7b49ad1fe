// Package notes is a small app built on cpod storage with the Go SDK only:
// each user's notes are documents, their attachments are files, and a
// per-user counter in KV limits how many notes a user creates per minute.
// Its tests (notes_test.go) run it against the real engine with cpodtest.
//
// # Where the data lives
//
// Everything is in the user tier: the server places it under the user of
// the token (tenant/users/{user}/), so two users never see each other's
// notes, whatever keys the app uses. The app needs no per-user key prefix
// and cannot get one wrong. (The private tier with keys such as
// "alice/note-1" would also work, but then isolation between users would be
// the app's job.) The user tier is shared by every app of that user, so
// every name starts with "notes":
//
//	documents  collection "notes", key = note id
//	files      notes/{note id}/{attachment name}
//	kv         notes:creations (the rate-limit counter)
//
// The app declares the scopes in [Scopes] when it is registered.
//
// # Tokens
//
// A [Service] acts for the user of its client's token. A backend that serves
// many users shares one client and forwards each request's user token:
//
//	c, err := client.New(apiURL, client.WithTokenSource(func(ctx context.Context) (string, error) {
//		return userTokenFrom(ctx), nil // the bearer token of the incoming request
//	}))
//	svc := notes.New(c, nil)
package notes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cpod/storage/client"
)

// Scopes are the storage scopes the notes app declares and its tokens carry.
var Scopes = []string{"storage.user.read", "storage.user.write"}

var (
	// ErrNotFound is returned for a note or attachment that does not exist
	// (for this user).
	ErrNotFound = errors.New("notes: not found")
	// ErrRateLimited is returned by Create when the user created too many
	// notes in the current window.
	ErrRateLimited = errors.New("notes: too many notes created")
	// ErrInvalid is returned for an invalid attachment name.
	ErrInvalid = errors.New("notes: invalid input")
)

// Note is one note, stored as a JSON document.
type Note struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	Body    string    `json:"body"`
	Created time.Time `json:"created"`
}

// Options tune a [Service]. A nil *Options means all defaults.
type Options struct {
	// MaxCreates is how many notes a user may create per Window; default 10.
	MaxCreates int
	// Window is the rate-limit window; default one minute.
	Window time.Duration
}

// Service stores notes for the user of its client's token.
type Service struct {
	notes  *client.Collection
	files  *client.Files
	kv     *client.KV
	max    int64
	window time.Duration
}

const (
	collection = "notes"
	rateKey    = "notes:creations"
)

// user is the tier of everything the app stores.
const user = client.TierUser

// New returns a Service that stores through c.
func New(c *client.Client, opts *Options) *Service {
	s := &Service{
		notes:  c.Storage.DB.Collection(collection, &client.CollectionOptions{Tier: user}),
		files:  c.Storage.Files,
		kv:     c.Storage.KV.WithTier(user),
		max:    10,
		window: time.Minute,
	}
	if opts != nil && opts.MaxCreates > 0 {
		s.max = int64(opts.MaxCreates)
	}
	if opts != nil && opts.Window > 0 {
		s.window = opts.Window
	}
	return s
}

// Create stores a new note, unless the user has created too many lately
// (ErrRateLimited).
func (s *Service) Create(ctx context.Context, title, body string) (Note, error) {
	if err := s.allowCreate(ctx); err != nil {
		return Note{}, err
	}
	now := time.Now().UTC()
	n := Note{ID: newID(now), Title: title, Body: body, Created: now}
	if err := s.notes.Set(ctx, n.ID, n); err != nil {
		return Note{}, err
	}
	return n, nil
}

// allowCreate counts a creation in the user's current window and refuses it
// past the limit. The window is a KV counter that expires s.window after the
// first creation in it, so it needs no clean-up.
func (s *Service) allowCreate(ctx context.Context) error {
	n, err := s.kv.Incr(ctx, rateKey, 1) // atomic; a missing key counts from 0
	if err != nil {
		return err
	}
	if n == 1 {
		// First creation of a window. KV has no "expire" call: set the
		// counter again, with a TTL that later Incr calls keep. (Creations
		// racing with this one may go uncounted: the limit is approximate.)
		return s.kv.Set(ctx, rateKey, "1", &client.KVSetOptions{TTL: s.window})
	}
	if n <= s.max {
		return nil
	}
	ttl, err := s.kv.TTL(ctx, rateKey)
	if errors.Is(err, client.ErrNotFound) {
		return nil // the window has just ended
	}
	if err != nil {
		return err
	}
	if ttl == client.NoExpiry {
		// The Set above failed once; without a TTL the user would stay
		// blocked for good.
		ttl = s.window
		if err := s.kv.Set(ctx, rateKey, strconv.FormatInt(n, 10), &client.KVSetOptions{TTL: ttl}); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: at most %d per %v, try again in %v", ErrRateLimited, s.max, s.window, ttl)
}

// Get returns the note with the id.
func (s *Service) Get(ctx context.Context, id string) (Note, error) {
	var n Note
	found, err := s.notes.Get(ctx, id, &n)
	if err != nil {
		return Note{}, err
	}
	if !found {
		return Note{}, fmt.Errorf("%w: note %q", ErrNotFound, id)
	}
	return n, nil
}

// List returns the user's notes, newest first.
func (s *Service) List(ctx context.Context) ([]Note, error) {
	// Ids start with their creation time, so they sort as the notes were
	// created. A page holds 100 notes; NextCursor continues the query.
	q := client.QueryOptions{Sort: []client.SortField{client.Desc("id")}, Limit: 100}
	notes := []Note{}
	for {
		page, err := s.notes.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			var n Note
			if err := it.Decode(&n); err != nil {
				return nil, fmt.Errorf("notes: decoding %q: %w", it.Key, err)
			}
			notes = append(notes, n)
		}
		if page.NextCursor == "" {
			return notes, nil
		}
		q.Cursor = page.NextCursor
	}
}

// Delete removes the note and its attachments. Deleting a missing note is
// not an error.
func (s *Service) Delete(ctx context.Context, id string) error {
	names, err := s.Attachments(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	// Attachments first: if this fails half-way, the note is still there
	// to delete again.
	for _, name := range names {
		if err := s.files.Delete(ctx, attachmentPath(id, name), &client.DeleteOptions{Tier: user}); err != nil {
			return err
		}
	}
	return s.notes.Delete(ctx, id)
}

// Attach stores the content of r as the attachment name of the note,
// replacing any attachment of that name. r is streamed, not buffered.
func (s *Service) Attach(ctx context.Context, id, name, contentType string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	_, err := s.files.Write(ctx, attachmentPath(id, name), r,
		&client.WriteOptions{ContentType: contentType, Tier: user})
	return err
}

// Attachments returns the names of the note's attachments, in name order.
func (s *Service) Attachments(ctx context.Context, id string) ([]string, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	prefix := attachmentPath(id, "")
	names := []string{}
	opts := &client.ListOptions{Tier: user}
	for {
		page, err := s.files.List(ctx, prefix, opts)
		if err != nil {
			return nil, err
		}
		for _, e := range page.Items {
			names = append(names, strings.TrimPrefix(e.Key, prefix))
		}
		if page.NextCursor == "" {
			return names, nil
		}
		opts.Cursor = page.NextCursor
	}
}

// OpenAttachment opens an attachment for reading; the caller must close it.
// Its ContentType is the one given to Attach.
func (s *Service) OpenAttachment(ctx context.Context, id, name string) (*client.Object, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	obj, err := s.files.Read(ctx, attachmentPath(id, name), &client.ReadOptions{Tier: user})
	if errors.Is(err, client.ErrNotFound) {
		return nil, fmt.Errorf("%w: attachment %q of note %q", ErrNotFound, name, id)
	}
	return obj, err
}

// attachmentPath is the file path of an attachment, relative to the user
// tier. Ids never contain "/" (see newID) and names are one path segment
// (see checkName), so notes never share a directory.
func attachmentPath(id, name string) string {
	return "notes/" + id + "/" + name
}

// checkName accepts an attachment name that is one file path segment.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\\") {
		return fmt.Errorf("%w: attachment name %q must be one path segment, without / or \\", ErrInvalid, name)
	}
	return nil
}

// newID returns a unique id that sorts by creation time, such as
// "20250102T150405.123456789Z-3f9a1c07".
func newID(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return t.Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
}
