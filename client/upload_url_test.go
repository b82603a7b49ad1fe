package client_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// TestUploadURLBody: the request UploadURL sends, and the answer it reads.
func TestUploadURLBody(t *testing.T) {
	rec := newRecorder(t, jsonReply(200, `{"url":"/v1/storage/signed/x?method=PUT","expiresAt":"2030-01-01T00:00:00Z","method":"PUT"}`))
	c := newClient(t, rec.URL+"/pre")
	ctx := context.Background()
	u, err := c.Storage.Files.UploadURL(ctx, "uploads/a.png", &client.UploadURLOptions{
		ExpiresIn: 9*time.Minute + 500*time.Millisecond, ContentType: "image/png", MaxSize: 1024, Tier: client.TierUser,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := rec.last(t)
	if want := `{"key":"uploads/a.png","tier":"user","method":"PUT","expiresIn":541,"contentType":"image/png","maxSize":1024}`; got.Body != want {
		t.Errorf("body = %s, want %s", got.Body, want)
	}
	if got.Method != http.MethodPost || got.Path != "/pre/v1/storage/signed-urls" {
		t.Errorf("request = %s %s", got.Method, got.Path)
	}
	if want := rec.URL + "/v1/storage/signed/x?method=PUT"; u.URL != want || u.Method != "PUT" ||
		!u.ExpiresAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("UploadURL = %+v, want %s, PUT, 2030-01-01", u, want)
	}
	if _, err := c.Storage.Files.UploadURL(ctx, "a", nil); err != nil {
		t.Fatal(err)
	}
	if b := rec.last(t).Body; b != `{"key":"a","method":"PUT"}` {
		t.Errorf("default body = %s", b)
	}
	// Refused before sending.
	n := rec.count()
	_, err = c.Storage.Files.UploadURL(ctx, "a", &client.UploadURLOptions{MaxSize: -1})
	wantErr(t, "negative MaxSize", err, client.ErrInvalidRequest)
	_, err = c.Storage.Files.UploadURL(ctx, "a//b", nil)
	wantErr(t, "empty segment", err, client.ErrInvalidRequest)
	if rec.count() != n {
		t.Error("a refused call reached the server")
	}
}

// TestFilesUploadURL: an upload URL from the real engine stores the file
// with a plain HTTP client, and its refusals map to the client's errors.
func TestFilesUploadURL(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	requireFiles(t, c)
	ctx := context.Background()
	files := c.Storage.Files
	u, err := files.UploadURL(ctx, "uploads/a.txt", &client.UploadURLOptions{ExpiresIn: time.Minute, ContentType: "text/plain", MaxSize: 5})
	must(t, "UploadURL", err)
	if u.Method != "PUT" || time.Until(u.ExpiresAt) > 2*time.Minute {
		t.Errorf("UploadURL = %+v", u)
	}
	put := func(method, ct, body string) error {
		t.Helper()
		req, err := http.NewRequest(method, u.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		defer io.Copy(io.Discard, resp.Body)
		return client.CheckResponse(resp)
	}
	must(t, "upload", put("PUT", "text/plain", "hello"))
	got, obj := readAll(t, c, "uploads/a.txt", nil)
	if got != "hello" || obj.ContentType != "text/plain" {
		t.Errorf("stored %q (%s)", got, obj.ContentType)
	}
	wantErr(t, "too large", put("PUT", "text/plain", "hello!"), client.ErrTooLarge)
	wantErr(t, "other type", put("PUT", "text/html", "<b>"), client.ErrInvalidSignature)
	wantErr(t, "GET of an upload URL", put("GET", "", ""), client.ErrInvalidSignature)
	srv.AdvanceClock(61 * time.Second)
	wantErr(t, "expired", put("PUT", "text/plain", "late"), client.ErrExpired)
	got, _ = readAll(t, c, "uploads/a.txt", nil)
	if got != "hello" {
		t.Errorf("a refused upload changed the file to %q", got)
	}
	d, err := files.URL(ctx, "uploads/a.txt", nil)
	must(t, "URL", err)
	if d.Method != "GET" {
		t.Errorf("download URL method %q", d.Method)
	}
	// A token without the write scope cannot sign an upload.
	ro := newClient(t, srv.URL, client.WithToken(srv.Token(cpodtest.Claims{
		Tenant: alice.Tenant, App: alice.App, User: alice.User, Scopes: []string{"storage.private.read"}})))
	_, err = ro.Storage.Files.UploadURL(ctx, "uploads/b.txt", nil)
	wantErr(t, "read-only token", err, client.ErrInsufficientScope)
}
