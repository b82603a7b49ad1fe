package notes_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
	"github.com/cpod/storage/examples/apptest/notes"
)

// asUser returns the storage client of a user of the notes app. The first
// call registers the app, declaring notes.Scopes.
func asUser(srv *cpodtest.Server, user string) *client.Client {
	return srv.Client(cpodtest.Claims{Tenant: "acme", App: "notes", User: user, Scopes: notes.Scopes})
}

func TestNotesWithAttachment(t *testing.T) {
	srv := cpodtest.NewServer(t)
	svc := notes.New(asUser(srv, "alice"), nil)
	ctx := context.Background()

	first, err := svc.Create(ctx, "Groceries", "milk, eggs")
	if err != nil {
		t.Fatal(err)
	}
	second, err := svc.Create(ctx, "Trip", "pack the tent")
	if err != nil {
		t.Fatal(err)
	}

	got, err := svc.Get(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "Groceries" || got.Body != "milk, eggs" || !got.Created.Equal(first.Created) {
		t.Errorf("Get = %+v, want %+v", got, first)
	}

	list, err := svc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != second.ID || list[1].ID != first.ID {
		t.Errorf("List = %+v, want the two notes, newest first", list)
	}

	// An attachment, streamed in and out.
	if err := svc.Attach(ctx, first.ID, "list.txt", "text/plain", strings.NewReader("milk\neggs\n")); err != nil {
		t.Fatal(err)
	}
	names, err := svc.Attachments(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"list.txt"}) {
		t.Errorf("Attachments = %q", names)
	}
	obj, err := svc.OpenAttachment(ctx, first.ID, "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	content, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || string(content) != "milk\neggs\n" || obj.ContentType != "text/plain" {
		t.Errorf("attachment: %q (%s), %v", content, obj.ContentType, err)
	}
	if names, _ := svc.Attachments(ctx, second.ID); len(names) != 0 {
		t.Errorf("the other note has attachments %q", names)
	}

	// Errors the app defines.
	if _, err := svc.Get(ctx, "no-such-note"); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("Get(missing): %v, want ErrNotFound", err)
	}
	if err := svc.Attach(ctx, "no-such-note", "a.txt", "", strings.NewReader("x")); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("Attach to a missing note: %v, want ErrNotFound", err)
	}
	if err := svc.Attach(ctx, first.ID, "../escape", "", strings.NewReader("x")); !errors.Is(err, notes.ErrInvalid) {
		t.Errorf("Attach(../escape): %v, want ErrInvalid", err)
	}
	if _, err := svc.OpenAttachment(ctx, first.ID, "missing.txt"); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("OpenAttachment(missing): %v, want ErrNotFound", err)
	}

	// Delete takes the attachments with the note.
	if err := svc.Delete(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Get(ctx, first.ID); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if _, err := svc.OpenAttachment(ctx, first.ID, "list.txt"); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("attachment after Delete: %v", err)
	}
	if list, _ := svc.List(ctx); len(list) != 1 || list[0].ID != second.ID {
		t.Errorf("List after Delete = %+v", list)
	}
}

// TestUsersAreIsolated: two users of the same app and tenant share nothing,
// even when one knows the ids of the other's notes.
func TestUsersAreIsolated(t *testing.T) {
	srv := cpodtest.NewServer(t)
	alice := notes.New(asUser(srv, "alice"), nil)
	bob := notes.New(asUser(srv, "bob"), nil)
	ctx := context.Background()

	secret, err := alice.Create(ctx, "Diary", "dear diary")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Attach(ctx, secret.ID, "photo.jpg", "image/jpeg", strings.NewReader("jpeg bytes")); err != nil {
		t.Fatal(err)
	}

	if list, err := bob.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("bob lists %+v, %v; want nothing", list, err)
	}
	if _, err := bob.Get(ctx, secret.ID); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("bob reads alice's note: %v", err)
	}
	if _, err := bob.Attachments(ctx, secret.ID); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("bob lists alice's attachments: %v", err)
	}
	if _, err := bob.OpenAttachment(ctx, secret.ID, "photo.jpg"); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("bob opens alice's attachment: %v", err)
	}
	if err := bob.Attach(ctx, secret.ID, "photo.jpg", "", strings.NewReader("overwrite")); !errors.Is(err, notes.ErrNotFound) {
		t.Errorf("bob attaches to alice's note: %v", err)
	}
	if err := bob.Delete(ctx, secret.ID); err != nil {
		t.Errorf("bob deletes a note he does not have: %v", err)
	}

	// Bob's own note lands in his space only.
	if _, err := bob.Create(ctx, "Bob's", "mine"); err != nil {
		t.Fatal(err)
	}

	// Alice's note and attachment are untouched.
	list, err := alice.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != secret.ID {
		t.Fatalf("alice lists %+v, %v; want only her note", list, err)
	}
	obj, err := alice.OpenAttachment(ctx, secret.ID, "photo.jpg")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if b, _ := io.ReadAll(obj); string(b) != "jpeg bytes" {
		t.Errorf("alice's attachment is %q", b)
	}
}

// TestRateLimitWindow: past MaxCreates notes in a window, Create fails until
// the window's KV counter expires. FastForward moves the engine's and
// miniredis' clocks instead of sleeping.
func TestRateLimitWindow(t *testing.T) {
	srv := cpodtest.NewServer(t)
	opts := &notes.Options{MaxCreates: 3, Window: time.Minute}
	alice := notes.New(asUser(srv, "alice"), opts)
	ctx := context.Background()

	for i := range 3 {
		if _, err := alice.Create(ctx, "note", ""); err != nil {
			t.Fatalf("creation %d: %v", i+1, err)
		}
	}
	if _, err := alice.Create(ctx, "one too many", ""); !errors.Is(err, notes.ErrRateLimited) {
		t.Fatalf("4th creation: %v, want ErrRateLimited", err)
	}
	if list, _ := alice.List(ctx); len(list) != 3 {
		t.Errorf("a refused note was stored: %d notes", len(list))
	}

	// The limit is per user.
	bob := notes.New(asUser(srv, "bob"), opts)
	if _, err := bob.Create(ctx, "bob's first", ""); err != nil {
		t.Errorf("bob is limited by alice's notes: %v", err)
	}

	srv.FastForward(59 * time.Second)
	if _, err := alice.Create(ctx, "still too early", ""); !errors.Is(err, notes.ErrRateLimited) {
		t.Fatalf("before the window ends: %v, want ErrRateLimited", err)
	}
	srv.FastForward(time.Second)
	if _, err := alice.Create(ctx, "next window", ""); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	// A new window started with that note: two more, then limited again.
	for i := range 2 {
		if _, err := alice.Create(ctx, "note", ""); err != nil {
			t.Fatalf("creation %d of the new window: %v", i+2, err)
		}
	}
	if _, err := alice.Create(ctx, "one too many", ""); !errors.Is(err, notes.ErrRateLimited) {
		t.Fatalf("4th creation of the new window: %v, want ErrRateLimited", err)
	}
}

// TestRateLimitRecoversLostTTL: a counter left without a TTL (a crash
// between the window's first Incr and its Set) gets one at the next refused
// creation, so the user is not blocked for good.
func TestRateLimitRecoversLostTTL(t *testing.T) {
	srv := cpodtest.NewServer(t)
	c := asUser(srv, "alice")
	alice := notes.New(c, &notes.Options{MaxCreates: 3, Window: time.Minute})
	ctx := context.Background()

	// The counter's key, as in notes.go, set with no TTL.
	if err := c.Storage.KV.WithTier(client.TierUser).Set(ctx, "notes:creations", "3", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Create(ctx, "blocked", ""); !errors.Is(err, notes.ErrRateLimited) {
		t.Fatalf("over the limit: %v, want ErrRateLimited", err)
	}
	srv.FastForward(time.Minute)
	if _, err := alice.Create(ctx, "unblocked", ""); err != nil {
		t.Fatalf("a minute later: %v", err)
	}
}
