package embedded_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	_ "modernc.org/sqlite" // to hold FerretDB's database locked

	"github.com/cpod/storage/embedded"
)

// TestCloseKeepsItsDeadline: Close returns by its context's deadline even
// while FerretDB is stuck in a command (here a write waiting up to 10 s for
// a SQLite lock), which used to keep a stopped server alive for 30 s more.
func TestCloseKeepsItsDeadline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := embedded.Start(ctx, embedded.Config{Dir: dir, NoFiles: true, NoKV: true, FerretDB: true})
	if err != nil {
		t.Fatal(err)
	}
	coll := b.Mongo.Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "first"}}); err != nil {
		t.Fatal(err)
	}
	// Another process's write lock on the database file.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, embedded.DocumentsDir, "cpod.sqlite")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		conn.Close()
	}()
	inserted := make(chan error, 1)
	go func() {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "stuck"}})
		inserted <- err
	}()
	time.Sleep(300 * time.Millisecond) // the insert waits in SQLite's busy handler
	select {
	case err := <-inserted:
		t.Fatalf("the insert did not wait for the lock: %v", err)
	default:
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	began := time.Now()
	_ = b.Close(cctx)
	if d := time.Since(began); d > 3*time.Second {
		t.Fatalf("Close took %v with a 1s deadline", d)
	}
}
