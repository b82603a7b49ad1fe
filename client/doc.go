// Package client is the Go SDK of cpod storage: it gives a Go app the three
// isolated storage primitives that sdk.storage gives a JavaScript app, over
// the engine's HTTP API, with the same names:
//
//	c.Storage.Files  blobs            Write, Read, URL, List, Delete
//	c.Storage.DB     documents        Collection(name, opts): Set, Get, Exists, Delete, Query,
//	                 Batch, Patch, and options ETag, IfMatch, IfAbsent (optimistic concurrency)
//	c.Storage.KV     ephemeral values Set, Get, Exists, Incr, TTL, Del, and for
//	                 locks SetIfAbsent, SetIfValue, DeleteIf, Expire
//
// The app never holds database credentials. Every call carries the app's
// bearer token; the server takes the tenant, the app and the user from it
// and decides where the data lives. Paths and keys are always relative to a
// tier: [TierPrivate] (the default: this app only), [TierUser] (the token's
// user, across apps) or [TierShared] (every app of the tenant).
//
// # Connecting
//
// [FromEnv] reads the two variables a cpod app is given:
//
//	CPOD_API_URL  base URL of the API, e.g. https://api.example.com
//	              (a path prefix is kept: https://example.com/storage-api)
//	CPOD_TOKEN    the app's bearer token (a JWT)
//
//	c, err := client.FromEnv()
//
// [New] takes the URL directly. Tokens expire: give [WithTokenSource] a
// function that returns a fresh one, and it is asked before every request.
// [WithHTTPClient] sets timeouts, proxies or TLS. A [Client] is safe for
// concurrent use; create one and share it.
//
// # Files
//
// File bodies are streamed both ways: Write reads an io.Reader while it
// sends, and Read returns an [Object] that is an io.ReadCloser over the
// response, so a 5 GiB file costs a few kilobytes of memory.
//
//	res, err := c.Storage.Files.Write(ctx, "config/settings.json",
//		strings.NewReader(`{"hello":"world"}`),
//		&client.WriteOptions{ContentType: "application/json"})
//
//	obj, err := c.Storage.Files.Read(ctx, "config/settings.json", nil)
//	defer obj.Close()
//	_, err = io.Copy(w, obj)
//
// [Files.URL] makes a time-limited download link for a browser.
//
// # Documents
//
// A collection holds JSON values under string keys. Set marshals any Go
// value with encoding/json; Get unmarshals into a pointer and reports with
// found == false a missing document (the seed's null). Query takes equality
// filters and an ordered sort, []SortField{Desc("createdAt")}, because the
// order of sort fields matters and Go maps have none; pages continue with
// NextCursor.
//
//	prefs := c.Storage.DB.Collection("preferences", nil)
//	err := prefs.Set(ctx, "theme", Theme{Mode: "dark"})
//	var t Theme
//	found, err := prefs.Get(ctx, "theme", &t)
//
// # Key-value
//
// KV values are strings: a string is stored as it is, anything else as its
// JSON text. Set takes a TTL; Incr is an atomic counter.
//
//	err := c.Storage.KV.Set(ctx, "session:abc", session, &client.KVSetOptions{TTL: time.Hour})
//	n, err := c.Storage.KV.Incr(ctx, "counter:api-calls", 1)
//
// SetIfAbsent, SetIfValue (compare-and-set) and DeleteIf (compare-and-delete)
// are atomic on the server and answer ok == false when their condition does
// not hold: a lock is SetIfAbsent with a TTL and a token of your own,
// released with DeleteIf (see the SetIfAbsent example).
//
// # Usage and quotas
//
// [Client.Usage] tells how many bytes and items of files, documents and kv
// the caller's location holds in a tier (bytes of the values only: file
// contents, documents' JSON text, kv values' text):
//
//	u, err := c.Usage(ctx, client.TierPrivate)
//	fmt.Println(u.Files.Bytes, u.Documents.Count, u.KV.Count)
//
// The server's operator may give each tenant quotas of the same figures.
// A write that would take the tenant over one fails with
// [ErrQuotaExceeded] (507) and stores nothing; deletes always work.
//
// # Errors
//
// Every failure reported by the server is an [*Error] with the HTTP status,
// the contract's error code and a message. errors.Is compares codes with the
// exported sentinels, one per code:
//
//	switch {
//	case errors.Is(err, client.ErrNotFound):          // 404 not_found
//	case errors.Is(err, client.ErrInvalidScope):      // 403: the app did not declare the scope
//	case errors.Is(err, client.ErrInsufficientScope): // 403: the token lacks it
//	case errors.Is(err, client.ErrBackendUnavailable): // 503: retry after (*Error).RetryAfter
//	case errors.Is(err, client.ErrInsufficientStorage): // 507: the server is out of space; do not retry
//	case errors.Is(err, client.ErrQuotaExceeded):     // 507: over the tenant's quota; delete, or ask for more
//	case errors.Is(err, client.ErrRateLimited):       // 429: over the rate limit; retry after (*Error).RetryAfter
//	}
//
// Absence is not an error where the seed returns null: [Collection.Get] and
// [KV.Get] return found == false, [Collection.Exists] and [KV.Exists] false.
// Only the code not_found means missing: any other 404, such as
// [ErrUnknownEndpoint] from a base URL with /v1 twice or a wrong prefix, is
// an error whose message names the URL called. Deleting something
// missing succeeds. Reading a missing file, asking the TTL of a missing key
// or signing a URL for a missing file is [ErrNotFound]. A call the client can
// tell is malformed before sending it (an empty key, a path with an empty
// segment) is [ErrInvalidRequest] with Status 0. Transport failures and
// canceled contexts are returned wrapped, as from net/http.
//
// [CheckResponse] turns any API response into the same errors, for example
// when a signed URL is fetched with another HTTP client and has expired
// ([ErrExpired]).
//
// # Testing
//
// Test code that uses this package against the real engine with
// github.com/cpod/storage/cpodtest: it starts the engine over in-process
// fakes of S3, MongoDB and Redis in well under a second, and its
// Server.Client method returns a *Client for any identity, registering the
// app with the scopes asked for:
//
//	func TestNotes(t *testing.T) {
//		srv := cpodtest.NewServer(t)
//		c := srv.Client(cpodtest.Claims{Tenant: "t1", App: "notes", User: "alice",
//			Scopes: []string{"storage.user.read", "storage.user.write"}})
//		// ... exercise code that takes a *client.Client
//	}
//
// Two clients with different users or apps show the isolation between them,
// and Server.FastForward moves KV TTLs and signed URL expiry forward without
// sleeping. Code that only needs to fake a failure can also point a client at
// a net/http/httptest server that answers with a contract error body,
// {"error":"backend_unavailable","message":"..."}.
package client
