package embedded_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cpod/storage/embedded"
)

// TestDocumentsIDLookupsUseAnIndex: FerretDB's SQLite backend finds,
// updates and deletes by _id with `_ferretdb_sjson->'$._id' = ?`, which its
// own _id index (`->"_id"`) cannot serve, so each such write scanned the
// whole collection. Every collection table, including one created while
// running, gets an index that SQLite uses for exactly that statement.
func TestDocumentsIDLookupsUseAnIndex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b := start(t, dir)
	for _, c := range []string{"first", "second"} {
		if _, err := b.Mongo.Collection(c).InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}, {Key: "v", Value: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	file := "file:" + filepath.Join(dir, embedded.DocumentsDir, "cpod.sqlite")
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []string{"first", "second"} {
		var table string
		if err := db.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = ?`, c).Scan(&table); err != nil {
			t.Fatal(err)
		}
		// FerretDB's statements (internal/backends/sqlite/collection.go).
		stmts := []string{
			`SELECT _ferretdb_sjson FROM "` + table + `" WHERE _ferretdb_sjson->'$._id' = ?`,
			`UPDATE "` + table + `" SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`,
			`DELETE FROM "` + table + `" WHERE _ferretdb_sjson->'$._id' IN (?)`,
		}
		deadline := time.Now().Add(10 * time.Second)
		for _, q := range stmts {
			for {
				plan := queryPlan(t, file, q)
				if strings.Contains(plan, "USING INDEX "+table+"_cpod_id") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("collection %s: %s\nplan: %s", c, q, plan)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	// The documents are all still found through FerretDB.
	var got bson.M
	if err := b.Mongo.Collection("second").FindOne(ctx, bson.D{{Key: "_id", Value: "x"}}).Decode(&got); err != nil || got["v"] != int32(1) {
		t.Fatalf("find by _id: %v, %v", got, err)
	}
}

// queryPlan explains q on a new connection (one that read the schema
// before an index was added may keep planning without it).
func queryPlan(t *testing.T, file, q string) string {
	t.Helper()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	args := make([]any, strings.Count(q, "?"))
	for i := range args {
		args[i] = `"x"`
	}
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}
