package storage_test

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	storage "github.com/cpod/storage"
	"github.com/cpod/storage/cpodtest"
	"github.com/cpod/storage/internal/tmpfstest"
)

// fullableSQLite opens a SQLite database like embedded.OpenSQLite does,
// that holds at most maxPages pages (max_page_count on every connection):
// past them every write fails with SQLITE_FULL, exactly as on a full disk.
func fullableSQLite(t *testing.T, maxPages int) *sql.DB {
	t.Helper()
	u := url.URL{Scheme: "file", Path: filepath.Join(t.TempDir(), "cpod.db")}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", fmt.Sprintf("max_page_count(%d)", maxPages))
	q.Add("_txlock", "immediate")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestSQLiteFull: when the SQLite store cannot grow (SQLITE_FULL), document
// writes and app registrations answer 507 insufficient_storage without
// Retry-After, never 500 or 503; reads keep working and every acknowledged
// document keeps its value; once space is freed (a delete), writes work
// again.
func TestSQLiteFull(t *testing.T) {
	t.Parallel()
	srv := cpodtest.NewServer(t, cpodtest.WithSQLite(), cpodtest.WithConfig(func(c *storage.Config) {
		c.SQL = fullableSQLite(t, 40) // 160 KiB: the schema and a few documents
	}))
	srv.RegisterApp(t, "app-full", allScopes...)
	tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-full", User: "u1", Scopes: allScopes})

	value := strings.Repeat("x", 8<<10)
	acked := map[string]bool{}
	full := false
	for i := 0; i < 100 && !full; i++ {
		key := fmt.Sprintf("doc-%03d", i)
		r := do(t, srv, "PUT", "/v1/storage/db/notes/"+key, tok, map[string]any{"text": value, "i": i})
		switch r.status {
		case 200:
			acked[key] = true
		case 507:
			wantStatus(t, r, 507, "insufficient_storage")
			if ra := r.header.Get("Retry-After"); ra != "" {
				t.Fatalf("507 with Retry-After %q", ra)
			}
			full = true
		default:
			t.Fatalf("PUT %s on a full store: status %d, want 200 or 507: %s", key, r.status, r.body)
		}
	}
	if !full || len(acked) == 0 {
		t.Fatalf("the store never filled up (%d documents written)", len(acked))
	}
	// Every kind of write of the store says the same.
	r := do(t, srv, "POST", "/v1/storage/db/notes/batch", tok, map[string]any{"ops": []any{map[string]any{"op": "set", "key": "b1", "value": value}}})
	if r.status == 200 {
		var b struct {
			Results []struct {
				OK    bool
				Error string
			}
		}
		decode(t, r, &b)
		if b.Results[0].OK || b.Results[0].Error != "insufficient_storage" {
			t.Fatalf("batch set on a full store: %s", r.body)
		}
	} else {
		wantStatus(t, r, 507, "insufficient_storage")
	}
	// An app registration may still fit in the registry's last page; the
	// next ones do not.
	for i := 0; ; i++ {
		app := fmt.Sprintf(`{"client_id":"app-more-%d","name":"%s","declared_scopes":["storage.private.read"],"app_type":"service"}`, i, strings.Repeat("n", 200))
		r := doAdmin(t, srv, "POST", "/v1/oauth/apps", app)
		if r.status == 201 && i < 200 {
			continue
		}
		wantStatus(t, r, 507, "insufficient_storage")
		break
	}

	// Reads keep working, and nothing acknowledged was lost.
	for key := range acked {
		r := do(t, srv, "GET", "/v1/storage/db/notes/"+key, tok, nil)
		wantStatus(t, r, 200, "")
		var d struct{ Value struct{ Text string } }
		decode(t, r, &d)
		equal(t, key+" text length", len(d.Value.Text), len(value))
	}
	wantStatus(t, do(t, srv, "POST", "/v1/storage/db/notes/query", tok, map[string]any{"limit": 1000}), 200, "")
	wantStatus(t, do(t, srv, "GET", "/readyz", "", nil), 200, "")

	// Deleting frees pages; writes work again.
	for key := range acked {
		if r := do(t, srv, "DELETE", "/v1/storage/db/notes/"+key, tok, nil); r.status != 204 {
			t.Fatalf("DELETE %s: %d %s", key, r.status, r.body)
		}
		delete(acked, key)
		if len(acked) < 3 {
			break
		}
	}
	wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/notes/after", tok, map[string]any{"text": value}), 200, "")
	for key := range acked {
		wantStatus(t, do(t, srv, "GET", "/v1/storage/db/notes/"+key, tok, nil), 200, "")
	}
}

// doAdmin sends an admin request with srv's admin token.
func doAdmin(t *testing.T, srv *cpodtest.Server, method, path string, body string) resp {
	t.Helper()
	return do(t, srv, method, path, srv.AdminToken, body)
}

// TestDiskFullEmbedded: cpodtest's backends (the embedded S3, FerretDB or
// the SQLite store for documents) on a 16 MiB disk (a tmpfs; root only):
// files fill it until uploads answer 507 insufficient_storage, then
// document writes answer the same; reads go on; every answer conforms to
// openapi.json (cpodtest's contract check).
func TestDiskFullEmbedded(t *testing.T) {
	if os.Getenv(cpodtest.EnvS3URL) != "" || os.Getenv(cpodtest.EnvMongoURI) != "" {
		t.Skip("fills the disk of the embedded backends; CPODTEST_S3_URL or CPODTEST_MONGO_URI puts files or documents on real servers")
	}
	for _, store := range []string{"ferretdb", "sqlite"} {
		t.Run(store, func(t *testing.T) {
			t.Setenv("TMPDIR", tmpfstest.Mount(t, 16<<20)) // the fakes' temporary directory
			var opts []cpodtest.Option
			if store == "sqlite" {
				opts = append(opts, cpodtest.WithSQLite())
			}
			srv := cpodtest.NewServer(t, opts...)
			if srv.Mongo == nil && store == "ferretdb" {
				t.Skip("CPODTEST_STORE runs cpodtest on the SQLite store")
			}
			srv.RegisterApp(t, "app-full", allScopes...)
			tok := srv.Token(cpodtest.Claims{Tenant: "t1", App: "app-full", User: "u1", Scopes: allScopes})
			wantStatus(t, do(t, srv, "PUT", "/v1/storage/db/notes/early", tok, map[string]any{"text": "early"}), 200, "")
			files := map[string]int{}
			for i, size := 0, 1<<20; ; i++ {
				name := fmt.Sprintf("fill/%03d", i)
				r := do(t, srv, "PUT", "/v1/storage/files/"+name, tok, strings.Repeat("f", size))
				if r.status == 200 && i < 100 {
					files[name] = size
					continue
				}
				wantStatus(t, r, 507, "insufficient_storage")
				equal(t, "Retry-After", r.header.Get("Retry-After"), "")
				if size == 4<<10 {
					break
				}
				size /= 16
			}
			for i := 0; ; i++ {
				r := do(t, srv, "PUT", fmt.Sprintf("/v1/storage/db/notes/d%03d", i), tok, map[string]any{"text": strings.Repeat("d", 32<<10)})
				if r.status == 200 && i < 100 {
					continue
				}
				wantStatus(t, r, 507, "insufficient_storage")
				equal(t, "Retry-After", r.header.Get("Retry-After"), "")
				break
			}
			for name, size := range files {
				r := do(t, srv, "GET", "/v1/storage/files/"+name, tok, nil)
				wantStatus(t, r, 200, "")
				equal(t, name+" size", len(r.body), size)
			}
			r := do(t, srv, "GET", "/v1/storage/db/notes/early", tok, nil)
			wantStatus(t, r, 200, "")
			equal(t, "document", strings.TrimSpace(string(r.body)), `{"key":"early","value":{"text":"early"}}`)
		})
	}
}
