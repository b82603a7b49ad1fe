// Package cpodtest runs the real cpod storage engine for tests, the way
// net/http/httptest runs a handler: [NewServer] starts the engine on an
// httptest.Server over in-process fakes — package embedded's S3 on a
// temporary directory, FerretDB on SQLite for MongoDB, miniredis for Redis
// (the servers of the production drivers), or with [WithSQLite] the
// embedded SQLite store of `go run ./httpserver` — and registers its shutdown
// with t.Cleanup. It starts in about 50 ms with no
// network and nothing installed. Setup failures fail the test; nothing is
// returned to check.
//
//	func TestNotes(t *testing.T) {
//		srv := cpodtest.NewServer(t)
//		srv.RegisterApp(t, "app-notes", "storage.private.read", "storage.private.write")
//		tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-notes", User: "u1",
//			Scopes: []string{"storage.private.read", "storage.private.write"}})
//		// call srv.URL with "Authorization: Bearer "+tok, or use srv.Client(claims)
//	}
//
// # Testing
//
// [Server.Client] returns a ready Go client for an identity, registering its
// app with the claims' scopes first; [Server.Token] mints a bearer token for
// raw HTTP tests against [Server.URL]; [Server.RegisterApp] registers an app
// through the engine's Go API. Servers are independent: tests that call
// t.Parallel() with a server each are safe, also under -race.
//
// # Errors
//
// Setup failures (a fake that does not start, an unreachable real server, a
// bad CPODTEST_* variable) fail the test with t.Fatalf; nothing is returned
// to check. Errors of the engine itself arrive as its HTTP answers (or as
// client.Error values through [Server.Client]), exactly as in production.
//
// # Time
//
// [Server.FastForward] moves the engine's clock (token and signed-URL expiry)
// and miniredis' clock (key TTLs) together; on the SQLite store, whose TTLs
// run on the engine's clock, the engine's alone. With a real Redis it skips
// the calling test, saying why ([Server.CanFastForward] tells beforehand).
//
// # Real servers
//
// Each fake is replaced by a real server through an option or an
// environment variable: CPODTEST_REDIS_URL (redis://host:port/db) or
// CPODTEST_REDIS_ADDRS (a Redis Cluster: host:port,host:port,...; it wins),
// CPODTEST_MONGO_URI (mongodb://host:port/), CPODTEST_S3_URL
// (http://ACCESS_KEY:SECRET_KEY@host:port). Every server then gets its own
// Redis key prefix, MongoDB database and S3 bucket, removed when the test
// ends, so parallel tests never collide.
//
// # Faults and counts
//
// [Server.Calls] counts the requests that reached each backend, so a test can
// prove that bad input was refused before any backend call. Point an option at
// a closed or silent port to test outages (503 backend_unavailable).
package cpodtest
