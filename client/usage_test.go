package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cpod/storage/client"
	"github.com/cpod/storage/cpodtest"
)

// TestUsage: Client.Usage reports the bytes of the values (file contents,
// a document's JSON text, a kv value's text) and the count of each
// primitive for the caller's location in each tier: this app's private
// data, the user's data in any app, the tenant's shared data. Overwrites
// change bytes, not counts; deletes bring both back.
func TestUsage(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	ctx := context.Background()
	usage := func(c *client.Client, tier client.Tier) client.Usage {
		t.Helper()
		u, err := c.Usage(ctx, tier)
		must(t, "Usage("+string(tier)+")", err)
		return u
	}
	fig := func(bytes, count int64) client.UsageFigures { return client.UsageFigures{Bytes: bytes, Count: count} }

	if u := usage(c, ""); u != (client.Usage{}) {
		t.Fatalf("empty location: %+v, want zeros", u)
	}

	// Private: a 5-byte file, a document whose JSON text is {"a":1} (7
	// bytes), a kv value of 3 bytes. Names are not counted.
	_, err := c.Storage.Files.Write(ctx, "dir/a-long-file-name.txt", strings.NewReader("hello"), nil)
	must(t, "Files.Write", err)
	must(t, "Collection.Set", c.Storage.DB.Collection("notes", nil).Set(ctx, "k", map[string]int{"a": 1}))
	must(t, "KV.Set", c.Storage.KV.Set(ctx, "k", "abc", nil))
	// User tier: two kv values, 2 and 4 bytes.
	ukv := c.Storage.KV.WithTier(client.TierUser)
	must(t, "user KV.Set", ukv.Set(ctx, "x", "xy", nil))
	must(t, "user KV.Set", ukv.Set(ctx, "y", "wxyz", nil))
	// Shared: one file of 3 bytes.
	_, err = c.Storage.Files.Write(ctx, "s.txt", strings.NewReader("abc"), &client.WriteOptions{Tier: client.TierShared})
	must(t, "shared Files.Write", err)

	private := client.Usage{Files: fig(5, 1), Documents: fig(7, 1), KV: fig(3, 1)}
	for _, tier := range []client.Tier{"", client.TierPrivate} {
		if u := usage(c, tier); u != private {
			t.Errorf("Usage(%q) = %+v, want %+v", tier, u, private)
		}
	}
	user := client.Usage{KV: fig(6, 2)}
	if u := usage(c, client.TierUser); u != user {
		t.Errorf("Usage(user) = %+v, want %+v", u, user)
	}
	shared := client.Usage{Files: fig(3, 1)}
	if u := usage(c, client.TierShared); u != shared {
		t.Errorf("Usage(shared) = %+v, want %+v", u, shared)
	}

	// Another app of the tenant, acting for the same user: its own private
	// data (none), the same user and shared data.
	other := srv.Client(cpodtest.Claims{Tenant: alice.Tenant, App: "app-b", User: alice.User, Scopes: allScopes})
	if u := usage(other, client.TierPrivate); u != (client.Usage{}) {
		t.Errorf("another app's private usage = %+v, want zeros", u)
	}
	if u := usage(other, client.TierUser); u != user {
		t.Errorf("the same user in another app: %+v, want %+v", u, user)
	}
	if u := usage(other, client.TierShared); u != shared {
		t.Errorf("the tenant's shared data from another app: %+v, want %+v", u, shared)
	}
	// Another user, another tenant: nothing.
	bob := srv.Client(cpodtest.Claims{Tenant: alice.Tenant, App: alice.App, User: "bob", Scopes: allScopes})
	if u := usage(bob, client.TierUser); u != (client.Usage{}) {
		t.Errorf("another user: %+v, want zeros", u)
	}
	t2 := srv.Client(cpodtest.Claims{Tenant: "t2", App: alice.App, User: alice.User, Scopes: allScopes})
	for _, tier := range []client.Tier{client.TierPrivate, client.TierUser, client.TierShared} {
		if u := usage(t2, tier); u != (client.Usage{}) {
			t.Errorf("another tenant, %s: %+v, want zeros", tier, u)
		}
	}

	// An overwrite changes the bytes only; a delete takes both back.
	must(t, "KV.Set again", c.Storage.KV.Set(ctx, "k", "abcdefgh", nil))
	_, err = c.Storage.Files.Write(ctx, "dir/a-long-file-name.txt", strings.NewReader("hi"), nil)
	must(t, "Files.Write again", err)
	want := client.Usage{Files: fig(2, 1), Documents: fig(7, 1), KV: fig(8, 1)}
	if u := usage(c, client.TierPrivate); u != want {
		t.Errorf("after overwrites: %+v, want %+v", u, want)
	}
	must(t, "KV.Del", c.Storage.KV.Del(ctx, "k"))
	must(t, "Collection.Delete", c.Storage.DB.Collection("notes", nil).Delete(ctx, "k"))
	want = client.Usage{Files: fig(2, 1)}
	if u := usage(c, client.TierPrivate); u != want {
		t.Errorf("after deletes: %+v, want %+v", u, want)
	}
}

// TestUsageNeedsTheTiersRead: Usage is a read of the tier: without the
// tier's read scope it is refused like any other read, and the user tier
// needs a token with a user.
func TestUsageNeedsTheTiersRead(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t)
	ctx := context.Background()
	srv.RegisterApp(t, "priv", "storage.private.read", "storage.user.read")
	c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "priv", User: "u1", Scopes: []string{"storage.private.read", "storage.user.read"}})
	_, err := c.Usage(ctx, client.TierShared)
	wantErr(t, "shared, not declared", err, client.ErrInvalidScope)
	noUser := srv.Client(cpodtest.Claims{Tenant: "t1", App: "priv", Scopes: []string{"storage.private.read", "storage.user.read"}})
	_, err = noUser.Usage(ctx, client.TierUser)
	wantErr(t, "user tier without a user", err, client.ErrUserRequired)
	_, err = c.Usage(ctx, "Private")
	wantErr(t, "unknown tier", err, client.ErrInvalidRequest)
}

// TestQuotaExceeded: with a quota set through the admin API, a write that
// would take the tenant over it fails with ErrQuotaExceeded (507, no
// RetryAfter, not ErrInsufficientStorage) and stores nothing; the quota
// counts the tenant's data of every tier and app together; deletes work
// and make room again; another tenant is not limited.
func TestQuotaExceeded(t *testing.T) {
	t.Parallel()
	srv, c := newEngine(t)
	ctx := context.Background()
	q := adminCall(t, srv, http.MethodPut, "/v1/admin/tenants/t1/quota",
		`{"files":{"bytes":10},"documents":{"count":1},"kv":{"count":2}}`)
	wantQuota := `{"files":{"bytes":10,"count":0},"documents":{"bytes":0,"count":1},"kv":{"bytes":0,"count":2}}`
	if !jsonEqual(t, q, wantQuota) {
		t.Errorf("PUT quota answered %s, want %s", q, wantQuota)
	}

	quota := func(what string, err error) {
		t.Helper()
		var e *client.Error
		if !errors.As(err, &e) || !errors.Is(err, client.ErrQuotaExceeded) {
			t.Errorf("%s: %v, want ErrQuotaExceeded", what, err)
			return
		}
		if e.Status != http.StatusInsufficientStorage || e.RetryAfter != 0 || e.Message == "" || errors.Is(err, client.ErrInsufficientStorage) {
			t.Errorf("%s: %d %q RetryAfter %v (%q), want 507 quota_exceeded with a message and no RetryAfter", what, e.Status, e.Code, e.RetryAfter, e.Message)
		}
	}

	// kv: two keys in two tiers, then a third key is refused in any tier;
	// replacing a value does not add a key.
	must(t, "KV.Set a", c.Storage.KV.Set(ctx, "a", "1", nil))
	must(t, "user KV.Set b", c.Storage.KV.WithTier(client.TierUser).Set(ctx, "b", "2", nil))
	quota("KV.Set c", c.Storage.KV.WithTier(client.TierShared).Set(ctx, "c", "3", nil))
	_, err := c.Storage.KV.Incr(ctx, "counter", 1)
	quota("KV.Incr of a new key", err)
	if _, found, err := c.Storage.KV.WithTier(client.TierShared).Get(ctx, "c"); err != nil || found {
		t.Errorf("the refused key: found %v, %v; want nothing stored", found, err)
	}
	must(t, "KV.Set a again", c.Storage.KV.Set(ctx, "a", "one", nil))
	// Another app of the tenant shares the tenant's quota.
	other := srv.Client(cpodtest.Claims{Tenant: "t1", App: "app-b", User: alice.User, Scopes: allScopes})
	quota("another app's KV.Set", other.Storage.KV.Set(ctx, "d", "4", nil))
	must(t, "KV.Del b", c.Storage.KV.WithTier(client.TierUser).Del(ctx, "b"))
	must(t, "KV.Set c after a delete", c.Storage.KV.WithTier(client.TierShared).Set(ctx, "c", "3", nil))

	// documents: one.
	notes := c.Storage.DB.Collection("notes", nil)
	must(t, "Collection.Set", notes.Set(ctx, "n1", map[string]string{"t": "x"}))
	quota("Collection.Set n2", notes.Set(ctx, "n2", map[string]string{"t": "y"}))
	if found, err := notes.Exists(ctx, "n2"); err != nil || found {
		t.Errorf("the refused document: exists %v, %v; want nothing stored", found, err)
	}

	// files: 10 bytes in all.
	_, err = c.Storage.Files.Write(ctx, "a.txt", strings.NewReader("123456"), nil)
	must(t, "Files.Write 6 bytes", err)
	_, err = c.Storage.Files.Write(ctx, "b.txt", strings.NewReader("12345"), nil)
	quota("Files.Write 5 more bytes", err)
	if _, err := c.Storage.Files.Read(ctx, "b.txt", nil); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("the refused file: Read = %v, want ErrNotFound", err)
	}
	_, err = c.Storage.Files.Write(ctx, "b.txt", strings.NewReader("1234"), nil)
	must(t, "Files.Write 4 more bytes (10 in all)", err)

	u, err := c.Usage(ctx, client.TierPrivate)
	must(t, "Usage", err)
	if u.Files != (client.UsageFigures{Bytes: 10, Count: 2}) || u.Documents.Count != 1 || u.KV != (client.UsageFigures{Bytes: 3, Count: 1}) {
		t.Errorf("Usage after the refusals = %+v, want files 10 B in 2, 1 document, kv 3 B in 1", u)
	}

	// Another tenant has no quota.
	t2 := srv.Client(cpodtest.Claims{Tenant: "t2", App: alice.App, User: alice.User, Scopes: allScopes})
	for _, k := range []string{"a", "b", "c"} {
		must(t, "t2 KV.Set "+k, t2.Storage.KV.Set(ctx, k, "v", nil))
	}

	// Lifting the limit (null) lets the refused write through.
	adminCall(t, srv, http.MethodPut, "/v1/admin/tenants/t1/quota", `{"documents":{"count":null}}`)
	must(t, "Collection.Set n2 without a limit", notes.Set(ctx, "n2", map[string]string{"t": "y"}))
}

// adminCall sends an admin API call with the server's admin token and
// returns the body of its 200 answer.
func adminCall(t *testing.T, srv *cpodtest.Server, method, path, body string) string {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, r)
	must(t, "request", err)
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, method+" "+path, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s, want 200", method, path, resp.StatusCode, b)
	}
	return string(b)
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}
