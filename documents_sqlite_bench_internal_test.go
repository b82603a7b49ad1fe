package storage

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkSQLiteQueryForms: why the query form (column v) is JSONB. The
// same scan — a filter on two fields and a sort over 20k documents, the
// engine's sort-key expressions (sortKeySQL) — on a table whose v holds
// JSONB and on one whose v holds the JSON text, in the same run; and a
// get by key, which reads only the json text column either way. The
// ratio text/jsonb is the metric; writes are compared too (jsonb() costs
// a conversion per write).
func BenchmarkSQLiteQueryForms(b *testing.B) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "forms.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, form := range []string{"jsonb", "text"} {
		if _, err := db.Exec(`CREATE TABLE docs_` + form + ` (loc TEXT, coll TEXT, key TEXT, json TEXT, v BLOB, PRIMARY KEY (loc, coll, key)) WITHOUT ROWID`); err != nil {
			b.Fatal(err)
		}
		tx, _ := db.Begin()
		for i := 0; i < 20000; i++ {
			js := fmt.Sprintf(`{"status":"s%d","owner":"u%d","n":%d,"title":"a title of some length for document %d","tags":{"a":1,"b":[1,2,3]}}`, i%5, i%50, i, i)
			conv := "jsonb(?)"
			if form == "text" {
				conv = "?"
			}
			if _, err := tx.Exec(`INSERT INTO docs_`+form+` VALUES ('t1/apps/a/', 'c', ?, ?, `+conv+`)`, fmt.Sprintf("k%06d", i), js, js); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	status, owner, n := sortKeySQL(`'$."status"'`), sortKeySQL(`'$."owner"'`), sortKeySQL(`'$."n"'`)
	scan := func(form string) func(*testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				rows, err := db.Query(`SELECT key, json FROM docs_`+form+` WHERE loc = 't1/apps/a/' AND coll = 'c' AND `+status+` = ? AND `+owner+` = ? ORDER BY `+n+` DESC, key LIMIT 21`, "s1", "u11")
				if err != nil {
					b.Fatal(err)
				}
				k := 0
				for rows.Next() {
					k++
				}
				rows.Close()
				if k != 21 {
					b.Fatalf("%d rows", k)
				}
			}
		}
	}
	b.Run("scan/jsonb", scan("jsonb"))
	b.Run("scan/text", scan("text"))
	write := func(form string) func(*testing.B) {
		return func(b *testing.B) {
			conv := "jsonb(?)"
			if form == "text" {
				conv = "?"
			}
			js := `{"status":"s1","owner":"u2","n":5,"title":"a title of some length","tags":{"a":1,"b":[1,2,3]}}`
			i := 0
			for b.Loop() {
				i++
				if _, err := db.Exec(`INSERT OR REPLACE INTO docs_`+form+` VALUES ('t1/apps/w/', 'c', ?, ?, `+conv+`)`, fmt.Sprintf("w%d", i%100), js, js); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("write/jsonb", write("jsonb"))
	b.Run("write/text", write("text"))
}
