package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// readAll reads a file through the client, failing the test on an error.
func readAll(t *testing.T, c *client.Client, path string, opts *client.ReadOptions) (string, *client.Object) {
	t.Helper()
	obj, err := c.Storage.Files.Read(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Read(%q): %v", path, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("Read(%q): body: %v", path, err)
	}
	return string(b), obj
}

// unquote drops the quotes of an entity tag, which headers carry and JSON
// fields may not.
func unquote(etag string) string { return strings.Trim(etag, `"`) }

func TestFilesWriteRead(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireFiles(t, c)
	ctx := context.Background()
	files := c.Storage.Files

	data := `{"hello":"world"}`
	res, err := files.Write(ctx, "config/settings.json", strings.NewReader(data), &client.WriteOptions{ContentType: "application/json"})
	must(t, "Write", err)
	if res.Key != "config/settings.json" || res.Tier != client.TierPrivate || res.Size != int64(len(data)) ||
		res.ContentType != "application/json" || res.ETag == "" || res.LastModified.IsZero() {
		t.Errorf("WriteResult = %+v", res)
	}
	got, obj := readAll(t, c, "config/settings.json", nil)
	if got != data || obj.ContentType != "application/json" || obj.Size != int64(len(data)) ||
		unquote(obj.ETag) != unquote(res.ETag) || obj.LastModified.IsZero() {
		t.Errorf("Read = %q, %+v; want %q with the write's metadata %+v", got, obj, data, res)
	}

	// Unknown size (chunked), known size, and the default content type.
	blob := bytes.Repeat([]byte("0123456789"), 100_000)
	for _, size := range []int64{0, int64(len(blob))} {
		res, err := files.Write(ctx, "blob.bin", io.MultiReader(bytes.NewReader(blob)), &client.WriteOptions{Size: size})
		must(t, "Write blob", err)
		if res.Size != int64(len(blob)) || res.ContentType != "application/octet-stream" {
			t.Errorf("Size %d: WriteResult = %+v", size, res)
		}
		got, _ := readAll(t, c, "blob.bin", nil)
		if got != string(blob) {
			t.Errorf("Size %d: read back %d bytes, want %d", size, len(got), len(blob))
		}
	}

	// An empty file.
	res, err = files.Write(ctx, "empty", nil, nil)
	must(t, "Write empty", err)
	if got, _ := readAll(t, c, "empty", nil); got != "" || res.Size != 0 {
		t.Errorf("empty file: %q, size %d", got, res.Size)
	}

	// Ranges.
	for _, tc := range []struct {
		opts client.ReadOptions
		want string
	}{
		{client.ReadOptions{Offset: 2, Length: 3}, `hel`},
		{client.ReadOptions{Offset: 10}, `world"}`},
		{client.ReadOptions{Length: 2}, `{"`},
	} {
		if got, _ := readAll(t, c, "config/settings.json", &tc.opts); got != tc.want {
			t.Errorf("Read(%+v) = %q, want %q", tc.opts, got, tc.want)
		}
	}

	// Paths are sent segment by segment and come back as written.
	for _, p := range []string{"a b/c?d#e", "100%/x", "ü/€/😀.txt", "a+b/c&d=e", "semi;colon", "dot.in/name.ext"} {
		if _, err := files.Write(ctx, p, strings.NewReader(p), nil); err != nil {
			t.Errorf("Write(%q): %v", p, err)
			continue
		}
		if got, _ := readAll(t, c, p, nil); got != p {
			t.Errorf("Read(%q) = %q", p, got)
		}
	}
}

func TestFilesInvalidPaths(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireFiles(t, c)
	ctx := context.Background()
	for _, p := range []string{"", "/abs", "a/", "a//b", "a/./b", "a/../b", "..", "back\\slash", "ctl\x01", string([]byte{0xff})} {
		_, err := c.Storage.Files.Write(ctx, p, strings.NewReader("x"), nil)
		wantErr(t, fmt.Sprintf("Write(%q)", p), err, client.ErrInvalidRequest)
	}
}

func TestFilesDeleteAndNotFound(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireFiles(t, c)
	ctx := context.Background()
	files := c.Storage.Files

	_, err := files.Read(ctx, "exports/old-report.pdf", nil)
	wantErr(t, "Read(missing)", err, client.ErrNotFound)
	_, err = files.Write(ctx, "exports/old-report.pdf", strings.NewReader("pdf"), nil)
	must(t, "Write", err)
	must(t, "Delete", files.Delete(ctx, "exports/old-report.pdf", nil))
	_, err = files.Read(ctx, "exports/old-report.pdf", nil)
	wantErr(t, "Read after Delete", err, client.ErrNotFound)
	must(t, "Delete(missing)", files.Delete(ctx, "exports/old-report.pdf", nil))
}

func TestFilesList(t *testing.T) {
	t.Parallel()
	_, c := newEngine(t)
	requireFiles(t, c)
	ctx := context.Background()
	files := c.Storage.Files

	var want []string
	for i := range 7 {
		p := fmt.Sprintf("exports/report-%d.pdf", i)
		want = append(want, p)
		_, err := files.Write(ctx, p, strings.NewReader(strings.Repeat("x", i)), nil)
		must(t, "Write", err)
	}
	_, err := files.Write(ctx, "other/file", strings.NewReader("o"), nil)
	must(t, "Write", err)
	_, err = files.Write(ctx, "exports/shared-only", strings.NewReader("s"), &client.WriteOptions{Tier: client.TierShared})
	must(t, "Write shared", err)

	var got []string
	cursor := ""
	pages := 0
	for {
		l, err := files.List(ctx, "exports/", &client.ListOptions{Limit: 3, Cursor: cursor})
		must(t, "List", err)
		pages++
		if len(l.Items) > 3 {
			t.Fatalf("page of %d items with limit 3", len(l.Items))
		}
		for _, e := range l.Items {
			got = append(got, e.Key)
			var n int
			if _, err := fmt.Sscanf(e.Key, "exports/report-%d.pdf", &n); err != nil || e.Size != int64(n) || e.LastModified.IsZero() || e.ETag == "" {
				t.Errorf("entry %+v", e)
			}
		}
		if l.NextCursor == "" {
			break
		}
		cursor = l.NextCursor
		if pages > 10 {
			t.Fatal("listing does not end")
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || pages != 3 {
		t.Errorf("listed %v in %d pages, want %v in 3", got, pages, want)
	}

	all, err := files.List(ctx, "", nil)
	must(t, "List all", err)
	if len(all.Items) != 8 || all.NextCursor != "" {
		t.Errorf("List(\"\") = %d items, next %q; want 8, none", len(all.Items), all.NextCursor)
	}
	shared, err := files.List(ctx, "", &client.ListOptions{Tier: client.TierShared})
	must(t, "List shared", err)
	if len(shared.Items) != 1 || shared.Items[0].Key != "exports/shared-only" {
		t.Errorf("shared listing = %+v", shared.Items)
	}
	_, err = files.List(ctx, "", &client.ListOptions{Limit: 1001})
	wantErr(t, "List limit 1001", err, client.ErrInvalidRequest)
}

func TestFilesTiers(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	requireFiles(t, c)
	ctx := context.Background()
	tiers := []client.Tier{client.TierPrivate, client.TierUser, client.TierShared}
	for _, tier := range tiers {
		res, err := c.Storage.Files.Write(ctx, "f.txt", strings.NewReader(string(tier)), &client.WriteOptions{Tier: tier})
		must(t, "Write", err)
		if res.Tier != tier {
			t.Errorf("WriteResult.Tier = %q, want %q", res.Tier, tier)
		}
	}
	for _, tier := range tiers {
		if got, _ := readAll(t, c, "f.txt", &client.ReadOptions{Tier: tier}); got != string(tier) {
			t.Errorf("tier %s: read %q", tier, got)
		}
	}
	other := alice
	other.App = "app-b"
	co := srv.Client(other)
	_, err := co.Storage.Files.Read(ctx, "f.txt", nil)
	wantErr(t, "another app's private file", err, client.ErrNotFound)
	if got, _ := readAll(t, co, "f.txt", &client.ReadOptions{Tier: client.TierShared}); got != "shared" {
		t.Errorf("another app, shared tier: %q", got)
	}

	service := srv.Client(cpodtest.Claims{Tenant: "t1", App: "app-a", Scopes: allScopes})
	_, err = service.Storage.Files.Write(ctx, "f.txt", strings.NewReader("x"), &client.WriteOptions{Tier: client.TierUser})
	wantErr(t, "user tier without a user", err, client.ErrUserRequired)
}

func TestFilesURL(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	requireFiles(t, c)
	ctx := context.Background()
	files := c.Storage.Files
	_, err := files.Write(ctx, "exports/report.pdf", strings.NewReader("%PDF-1.7"), &client.WriteOptions{ContentType: "application/pdf"})
	must(t, "Write", err)

	before := time.Now()
	u, err := files.URL(ctx, "exports/report.pdf", &client.URLOptions{ExpiresIn: time.Hour, Tier: client.TierPrivate})
	must(t, "URL", err)
	if d := u.ExpiresAt.Sub(before); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
		t.Errorf("ExpiresAt = %v, %v from now; want about 1h", u.ExpiresAt, d)
	}
	get := func(rawURL string) error {
		t.Helper()
		resp, err := http.Get(rawURL) // no Authorization header
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := client.CheckResponse(resp); err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "%PDF-1.7" || resp.Header.Get("Content-Type") != "application/pdf" {
			t.Errorf("download = %q (%s)", b, resp.Header.Get("Content-Type"))
		}
		return nil
	}
	must(t, "download", get(u.URL))

	// Any change to the URL breaks the signature.
	pu, err := url.Parse(u.URL)
	must(t, "parse URL", err)
	q := pu.Query()
	for k := range q {
		q.Set(k, q.Get(k)+"0")
		tampered := *pu
		tampered.RawQuery = q.Encode()
		wantErr(t, "tampered "+k, get(tampered.String()), client.ErrInvalidSignature)
		q = pu.Query()
	}

	def, err := files.URL(ctx, "exports/report.pdf", nil)
	must(t, "URL default", err)
	if d := def.ExpiresAt.Sub(before); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
		t.Errorf("default expiry %v from now; want about 1h", d)
	}

	srv.AdvanceClock(2 * time.Hour) // the engine's clock decides expiry
	wantErr(t, "expired download", get(u.URL), client.ErrExpired)

	_, err = files.URL(ctx, "exports/missing.pdf", nil)
	wantErr(t, "URL of a missing file", err, client.ErrNotFound)
	_, err = files.URL(ctx, "exports/report.pdf", &client.URLOptions{ExpiresIn: 8 * 24 * time.Hour})
	wantErr(t, "URL for 8 days", err, client.ErrInvalidRequest)
}

func TestFilesTooLarge(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithConfig(func(cfg *storage.Config) { cfg.Limits.MaxFileSize = 1 << 20 }))
	c := srv.Client(alice)
	requireFiles(t, c)
	ctx := context.Background()
	_, err := c.Storage.Files.Write(ctx, "fits", bytes.NewReader(make([]byte, 1<<20)), nil)
	must(t, "1 MiB", err)
	for _, size := range []int64{0, 1<<20 + 1} { // chunked, and announced
		_, err := c.Storage.Files.Write(ctx, "big", io.MultiReader(bytes.NewReader(make([]byte, 1<<20+1))), &client.WriteOptions{Size: size})
		wantErr(t, fmt.Sprintf("1 MiB + 1 (Size %d)", size), err, client.ErrTooLarge)
	}
}
