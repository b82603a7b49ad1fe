package embedded_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/cpod/storage/embedded"
	"github.com/cpod/storage/internal/tmpfstest"
)

// TestS3DiskFull: on a disk that fills up (a 16 MiB tmpfs), the embedded S3
// refuses the write that meets ENOSPC with MinIO's 507 XMinioStorageFull
// (not a retried 500 InternalError), leaves no partial object behind,
// keeps serving every object it acknowledged, and takes writes again once
// space is freed. Single PUTs and multipart uploads alike.
func TestS3DiskFull(t *testing.T) {
	dir := tmpfstest.Mount(t, 16<<20)
	b, err := embedded.Start(context.Background(), embedded.Config{Dir: dir, NoDocuments: true, NoKV: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx := context.Background()
	wantFull := func(what string, err error) {
		t.Helper()
		r := minio.ToErrorResponse(err)
		if r.Code != "XMinioStorageFull" || r.StatusCode != 507 {
			t.Fatalf("%s on a full disk: %v (code %q, status %d), want 507 XMinioStorageFull", what, err, r.Code, r.StatusCode)
		}
	}
	acked := map[string][]byte{}
	full := false
	for i := 0; i < 40 && !full; i++ {
		key := fmt.Sprintf("fill/%02d", i)
		data := bytes.Repeat([]byte{byte(i + 1)}, 1<<20)
		_, err := b.S3.PutObject(ctx, b.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
		if err != nil {
			wantFull("PUT "+key, err)
			full = true
			break
		}
		acked[key] = data
	}
	if !full {
		t.Fatal("16 MiB took 40 MiB of objects")
	}
	// A multipart upload meets the same answer (its part, or its
	// completion).
	big := bytes.Repeat([]byte{'m'}, 12<<20)
	_, err = b.S3.PutObject(ctx, b.Bucket, "multi", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{PartSize: 5 << 20})
	wantFull("multipart upload", err)
	if _, err := b.S3.StatObject(ctx, b.Bucket, "multi", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("a refused multipart upload left an object: %v", err)
	}
	check := func() {
		t.Helper()
		for key, data := range acked {
			o, err := b.S3.GetObject(ctx, b.Bucket, key, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(o)
			o.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("GET %s on a full disk: %d bytes, err %v", key, len(got), err)
			}
		}
	}
	check()
	// Free space; writes work again and nothing acknowledged changed.
	for key := range acked {
		if err := b.S3.RemoveObject(ctx, b.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		delete(acked, key)
		if len(acked) <= 6 {
			break
		}
	}
	data := bytes.Repeat([]byte{'a'}, 1<<20)
	if _, err := b.S3.PutObject(ctx, b.Bucket, "after", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("PUT after freeing space: %v", err)
	}
	acked["after"] = data
	check()
}
