package embedded_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	"github.com/minio/minio-go/v7"
	bolt "go.etcd.io/bbolt"

	"github.com/cpod/storage/embedded"
)

// TestImportsFilesBolt: the objects an earlier version kept in files.bolt
// (gofakes3 on bbolt) are imported on the first start, with their content
// type, and the bolt file is set aside so it is imported once.
func TestImportsFilesBolt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "files.bolt"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := s3bolt.New(db)
	if err := old.CreateBucket("cpod"); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789"), 300_000)
	objs := map[string][]byte{"t1/apps/a/x.json": []byte(`{"a":1}`), "t1/apps/a/big.bin": big}
	for k, v := range objs {
		if _, err := old.PutObject("cpod", k, map[string]string{"Content-Type": "application/json"}, bytes.NewReader(v), int64(len(v)), nil); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	ctx := context.Background()
	for range 2 { // the second start imports nothing again
		b, err := embedded.Start(ctx, embedded.Config{Dir: dir, NoDocuments: true, NoKV: true})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range objs {
			obj, err := b.S3.GetObject(ctx, b.Bucket, k, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(obj)
			st, _ := obj.Stat()
			obj.Close()
			if err != nil || !bytes.Equal(got, v) || st.ContentType != "application/json" {
				t.Errorf("%s after import: %d bytes, %q, %v", k, len(got), st.ContentType, err)
			}
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "files.bolt")); !os.IsNotExist(err) {
			t.Fatalf("files.bolt is still there after the import: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "files.bolt.imported")); err != nil {
			t.Fatal(err)
		}
	}
}
