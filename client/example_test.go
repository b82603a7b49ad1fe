package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// The examples replay the storage chapter's snippets against the real
// engine. In an app the client comes from the environment:
//
//	c, err := client.FromEnv() // CPOD_API_URL, CPOD_TOKEN
//
// Here it comes from a cpodtest server, started by exampleClient.

// ExampleFiles replays sdk.storage.files: write, read, url, list and delete.
func ExampleFiles() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	files := c.Storage.Files

	// Private (default): only this app can read it.
	result, err := files.Write(ctx, "config/settings.json", strings.NewReader(`{"hello":"world"}`),
		&client.WriteOptions{ContentType: "application/json"})
	if err != nil {
		panic(err)
	}
	fmt.Println(result.Key, result.Tier)

	// User-scoped: any app this user uses can read it.
	if _, err := files.Write(ctx, "avatar.png", strings.NewReader("\x89PNG..."),
		&client.WriteOptions{ContentType: "image/png", Tier: client.TierUser}); err != nil {
		panic(err)
	}
	// Tenant shared: all apps in this tenant can read it.
	if _, err := files.Write(ctx, "brand/logo.svg", strings.NewReader("<svg/>"),
		&client.WriteOptions{ContentType: "image/svg+xml", Tier: client.TierShared}); err != nil {
		panic(err)
	}

	// Read: a stream, closed by the caller.
	obj, err := files.Read(ctx, "config/settings.json", nil)
	if err != nil {
		panic(err)
	}
	text, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		panic(err)
	}
	fmt.Println(string(text))

	// Presigned URL: downloads with no Authorization header.
	if _, err := files.Write(ctx, "exports/report.pdf", strings.NewReader("%PDF-1.7"),
		&client.WriteOptions{ContentType: "application/pdf"}); err != nil {
		panic(err)
	}
	url, err := files.URL(ctx, "exports/report.pdf", &client.URLOptions{ExpiresIn: time.Hour, Tier: client.TierPrivate})
	if err != nil {
		panic(err)
	}
	resp, err := http.Get(url.URL)
	if err != nil {
		panic(err)
	}
	pdf, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(pdf))

	// List & delete.
	if _, err := files.Write(ctx, "exports/old-report.pdf", strings.NewReader("%PDF-1.4"), nil); err != nil {
		panic(err)
	}
	listing, err := files.List(ctx, "exports/", &client.ListOptions{Limit: 50})
	if err != nil {
		panic(err)
	}
	for _, entry := range listing.Items {
		fmt.Println(entry.Key, entry.Size)
	}
	if err := files.Delete(ctx, "exports/old-report.pdf", nil); err != nil {
		panic(err)
	}

	// Output:
	// config/settings.json private
	// {"hello":"world"}
	// 200 %PDF-1.7
	// exports/old-report.pdf 8
	// exports/report.pdf 8
}

// ExampleDB replays sdk.storage.db's set and get, including the missing
// document (the seed's null) and a user-tier collection.
func ExampleDB() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()

	type Theme struct {
		Mode     string `json:"mode"`
		Accent   string `json:"accent"`
		FontSize int    `json:"fontSize"`
	}
	prefs := c.Storage.DB.Collection("preferences", nil)

	// Write.
	if err := prefs.Set(ctx, "theme", Theme{Mode: "dark", Accent: "purple", FontSize: 14}); err != nil {
		panic(err)
	}

	// Read.
	var theme Theme
	if _, err := prefs.Get(ctx, "theme", &theme); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", theme)

	// Not found: found is false, and there is no error.
	found, err := prefs.Get(ctx, "does-not-exist", &theme)
	fmt.Println(found, err)

	// Per-user preferences (user tier).
	userPrefs := c.Storage.DB.Collection("preferences", &client.CollectionOptions{Tier: client.TierUser})
	if err := userPrefs.Set(ctx, "layout", map[string]string{"sidebar": "collapsed"}); err != nil {
		panic(err)
	}
	var layout map[string]string
	if _, err := userPrefs.Get(ctx, "layout", &layout); err != nil {
		panic(err)
	}
	fmt.Println(layout["sidebar"])

	// Output:
	// {Mode:dark Accent:purple FontSize:14}
	// false <nil>
	// collapsed
}

// ExampleCollection_Query replays the seed's query: a filter, a sort, a
// limit, and the next page through the cursor.
func ExampleCollection_Query() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	sessions := c.Storage.DB.Collection("sessions", nil)
	for i, s := range []struct {
		Status    string `json:"status"`
		Plan      string `json:"plan"`
		CreatedAt int    `json:"createdAt"`
	}{
		{"active", "pro", 1}, {"active", "free", 2}, {"idle", "pro", 3},
		{"active", "pro", 4}, {"active", "pro", 5},
	} {
		if err := sessions.Set(ctx, fmt.Sprintf("sess-%d", i+1), s); err != nil {
			panic(err)
		}
	}

	active, err := sessions.Query(ctx, client.QueryOptions{
		Filter: map[string]any{"status": "active", "plan": "pro"},
		Sort:   []client.SortField{client.Desc("createdAt")}, // sort: { createdAt: -1 }
		Limit:  2,
	})
	if err != nil {
		panic(err)
	}
	for _, item := range active.Items {
		fmt.Println(item.Key, string(item.Value))
	}

	// Paginate: the cursor carries the first query's filter and sort.
	if active.NextCursor != "" {
		page2, err := sessions.Query(ctx, client.QueryOptions{
			Filter: map[string]any{"status": "active"},
			Cursor: active.NextCursor,
			Limit:  2,
		})
		if err != nil {
			panic(err)
		}
		for _, item := range page2.Items {
			fmt.Println(item.Key, string(item.Value))
		}
	}

	// Output:
	// sess-5 {"status":"active","plan":"pro","createdAt":5}
	// sess-4 {"status":"active","plan":"pro","createdAt":4}
	// sess-1 {"status":"active","plan":"pro","createdAt":1}
}

// ExampleCollection_Batch replays the seed's batch.
func ExampleCollection_Batch() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	cache := c.Storage.DB.Collection("cache", nil)

	result, err := cache.Batch(ctx, []client.BatchOp{
		client.SetOp("user:123", map[string]string{"name": "Alice", "plan": "pro"}),
		client.SetOp("user:456", map[string]string{"name": "Bob", "plan": "free"}),
		client.DeleteOp("user:999"),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("succeeded", result.Succeeded)
	fmt.Println("failed", result.Failed)

	// Output:
	// succeeded 3
	// failed 0
}

// ExampleKV replays sdk.storage.kv: set with a TTL, get, exists, an atomic
// counter, ttl and del.
func ExampleKV() {
	c, done := exampleClient()
	defer done()
	ctx := context.Background()
	kv := c.Storage.KV

	// Set with TTL.
	session := struct {
		UserID string `json:"userId"`
		Plan   string `json:"plan"`
	}{"usr-xxx", "pro"}
	if err := kv.Set(ctx, "session:abc123", session, &client.KVSetOptions{TTL: time.Hour}); err != nil {
		panic(err)
	}

	// Get: always a string; parse if needed.
	value, found, err := kv.Get(ctx, "session:abc123")
	if err != nil {
		panic(err)
	}
	fmt.Println(value, found)

	// Exists check.
	alive, err := kv.Exists(ctx, "session:abc123")
	if err != nil {
		panic(err)
	}
	fmt.Println(alive)

	// Atomic counter.
	if err := kv.Set(ctx, "counter:api-calls", "0", nil); err != nil {
		panic(err)
	}
	count, err := kv.Incr(ctx, "counter:api-calls", 1)
	if err != nil {
		panic(err)
	}
	count2, err := kv.Incr(ctx, "counter:api-calls", 5)
	if err != nil {
		panic(err)
	}
	fmt.Println(count, count2)

	// TTL check.
	remaining, err := kv.TTL(ctx, "session:abc123")
	if err != nil {
		panic(err)
	}
	fmt.Println(remaining)

	// Delete.
	if err := kv.Del(ctx, "session:abc123"); err != nil {
		panic(err)
	}
	_, found, _ = kv.Get(ctx, "session:abc123")
	fmt.Println(found)

	// Output:
	// {"userId":"usr-xxx","plan":"pro"} true
	// true
	// 1 6
	// 1h0m0s
	// false
}

// exampleClient starts a cpodtest server outside of a test and returns a
// client for app-myservice acting for one user, and a function that stops
// the server.
func exampleClient() (*client.Client, func()) {
	tb := &exampleTB{}
	srv := cpodtest.NewServer(tb)
	c := srv.Client(cpodtest.Claims{
		Tenant: "tenant-1",
		App:    "app-myservice",
		User:   "usr-xxx",
		Scopes: []string{
			"storage.private.read", "storage.private.write",
			"storage.user.read", "storage.user.write",
			"storage.shared.read", "storage.shared.write",
		},
	})
	return c, tb.cleanup
}

// exampleTB is the part of testing.TB that cpodtest.NewServer uses, for
// examples, which have no *testing.T. A failure panics.
type exampleTB struct {
	testing.TB // nil; the methods cpodtest calls are defined below
	cleanups   []func()
	dirs       []string
}

func (e *exampleTB) Helper()                         {}
func (e *exampleTB) Cleanup(f func())                { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) Fatalf(format string, a ...any)  { panic(fmt.Sprintf(format, a...)) }
func (e *exampleTB) Fatal(a ...any)                  { panic(fmt.Sprint(a...)) }
func (e *exampleTB) Errorf(format string, a ...any)  { panic(fmt.Sprintf(format, a...)) }
func (e *exampleTB) Skipf(format string, a ...any)   { panic(fmt.Sprintf(format, a...)) }
func (e *exampleTB) Logf(format string, args ...any) {}
func (e *exampleTB) Name() string                    { return "example" }

func (e *exampleTB) TempDir() string {
	d, err := os.MkdirTemp("", "cpod-example-")
	if err != nil {
		panic(err)
	}
	e.dirs = append(e.dirs, d)
	return d
}

// cleanup runs the cleanups, last registered first, and removes the
// temporary directories.
func (e *exampleTB) cleanup() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	for _, d := range e.dirs {
		_ = os.RemoveAll(d)
	}
}
