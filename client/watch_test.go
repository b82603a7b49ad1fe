package client_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// watcher runs a Watch iterator in the background; its events and final
// error arrive on channels.
type watcher struct {
	events chan client.Event
	err    chan error
	cancel context.CancelFunc
}

func startWatch(t *testing.T, f func(ctx context.Context) func(func(client.Event, error) bool)) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	w := &watcher{events: make(chan client.Event, 100), err: make(chan error, 1), cancel: cancel}
	go func() {
		for ev, err := range f(ctx) {
			if err != nil {
				w.err <- err
				return
			}
			w.events <- ev
		}
		close(w.events)
	}()
	t.Cleanup(cancel)
	return w
}

// next returns the next event, failing the test if the watch ended.
func (w *watcher) next(t *testing.T) client.Event {
	t.Helper()
	select {
	case ev, ok := <-w.events:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case err := <-w.err:
		t.Fatalf("the watch failed: %v", err)
	}
	return client.Event{}
}

// ready writes with write until the watcher sees an event of key, so that
// what follows is written while the stream is open.
func (w *watcher) ready(t *testing.T, key string, write func() error) {
	t.Helper()
	for {
		must(t, "ready write", write())
		select {
		case ev := <-w.events:
			if ev.Key == key {
				for len(w.events) > 0 { // repeats of the ready write
					<-w.events
				}
				return
			}
			t.Fatalf("unexpected event %+v", ev)
		case err := <-w.err:
			t.Fatal(err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestWatch follows a collection, kv and files, and reconnects with a
// fresh token and Last-Event-ID when the stream's token expires: nothing
// is lost.
func TestWatch(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	ctx := context.Background()
	col := c.Storage.DB.Collection("chat", nil)
	w := startWatch(t, func(ctx context.Context) func(func(client.Event, error) bool) { return col.Watch(ctx, nil) })
	w.ready(t, "ready", func() error { return col.Set(ctx, "ready", true) })
	must(t, "set", col.Set(ctx, "m1", map[string]string{"text": "hi"}))
	must(t, "delete", col.Delete(ctx, "m1"))
	ev := w.next(t)
	var v struct{ Text string }
	must(t, "decode", ev.Decode(&v))
	if ev.Type != "set" || ev.Key != "m1" || v.Text != "hi" || ev.ETag == "" || ev.ID == "" {
		t.Fatalf("event %+v", ev)
	}
	if ev := w.next(t); ev.Type != "delete" || ev.Key != "m1" || ev.Value != nil {
		t.Fatalf("event %+v", ev)
	}

	// The stream's token expires: the client reconnects with a new one.
	srv.AdvanceClock(2 * time.Hour)
	for i := range 5 {
		must(t, "set", col.Set(ctx, fmt.Sprintf("after%d", i), i))
	}
	for i := range 5 {
		if ev := w.next(t); ev.Type != "set" || ev.Key != fmt.Sprintf("after%d", i) {
			t.Fatalf("after the token expired: event %d %+v", i, ev)
		}
	}

	// kv, with a prefix, and files.
	kvw := startWatch(t, func(ctx context.Context) func(func(client.Event, error) bool) {
		return c.Storage.KV.Watch(ctx, &client.WatchOptions{Prefix: "room/"})
	})
	kvw.ready(t, "room/ready", func() error { return c.Storage.KV.Set(ctx, "room/ready", "1", nil) })
	must(t, "kv set", c.Storage.KV.Set(ctx, "other", "x", nil))
	must(t, "kv set", c.Storage.KV.Set(ctx, "room/a", "line\nbreak", nil))
	if ev := kvw.next(t); ev.Type != "set" || ev.Key != "room/a" || ev.Text() != "line\nbreak" {
		t.Fatalf("kv event %+v", ev)
	}
	fw := startWatch(t, func(ctx context.Context) func(func(client.Event, error) bool) {
		return c.Storage.Files.Watch(ctx, &client.WatchOptions{Tier: client.TierShared})
	})
	put := func(name, body string) error {
		_, err := c.Storage.Files.Write(ctx, name, strings.NewReader(body), &client.WriteOptions{Tier: client.TierShared})
		return err
	}
	fw.ready(t, "ready", func() error { return put("ready", "") })
	must(t, "write", put("a/b.txt", "hello"))
	if ev := fw.next(t); ev.Type != "write" || ev.Key != "a/b.txt" || ev.Size != 5 || ev.ETag == "" {
		t.Fatalf("file event %+v", ev)
	}
	// Stopping the consumer ends the stream.
	w.cancel()
	for range w.events {
	}
}

// TestWatchRefused: a refusal that a reconnect cannot cure ends the watch
// with its error.
func TestWatchRefused(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	srv.RegisterApp(t, "app-p", "storage.private.read")
	c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "app-p", Scopes: allScopes})
	for _, err := range c.Storage.KV.WithTier(client.TierShared).Watch(context.Background(), nil) {
		wantErr(t, "watch", err, client.ErrInvalidScope)
		break
	}
}

// TestKeyNamedChanges: the client reads a document, kv key and file named
// "changes" (whose plain GET path is the change feed).
func TestKeyNamedChanges(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	ctx := context.Background()
	col := c.Storage.DB.Collection("c", nil)
	must(t, "set", col.Set(ctx, "changes", "doc"))
	var s string
	found, err := col.Get(ctx, "changes", &s)
	must(t, "get", err)
	if !found || s != "doc" {
		t.Fatalf("document: %v %q", found, s)
	}
	must(t, "kv set", c.Storage.KV.Set(ctx, "changes", "kv", nil))
	v, found, err := c.Storage.KV.Get(ctx, "changes")
	must(t, "kv get", err)
	if !found || v != "kv" {
		t.Fatalf("kv: %v %q", found, v)
	}
	_, err = c.Storage.Files.Write(ctx, "changes", bytes.NewReader([]byte("file")), nil)
	must(t, "write", err)
	obj, err := c.Storage.Files.Read(ctx, "changes", nil)
	must(t, "read", err)
	defer obj.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(obj)
	if buf.String() != "file" {
		t.Fatalf("file: %q", buf.String())
	}
}
