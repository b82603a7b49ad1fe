package embedded_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
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

// TestDiskCheck: the readiness check of the data directory's free space
// reports free, total and the floor, passes above the floor (never with a
// floor of 0), fails below it with a message naming both sizes (and no
// path), and defaults to 1% of the disk, at least 64 MiB.
func TestDiskCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := embedded.Start(context.Background(), embedded.Config{Dir: dir, NoDocuments: true, NoKV: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx := context.Background()
	facts, err := b.DiskCheck(0)(ctx)
	if err != nil || facts["totalBytes"] <= 0 || facts["freeBytes"] <= 0 || facts["freeBytes"] > facts["totalBytes"] || facts["minFreeBytes"] != 0 {
		t.Fatalf("floor 0: %v, %v", facts, err)
	}
	facts, err = b.DiskCheck(-1)(ctx)
	if want := embedded.DefaultMinFreeSpace(facts["totalBytes"]); facts["minFreeBytes"] != want || want < 64<<20 || want < facts["totalBytes"]/100 {
		t.Fatalf("default floor %d, want %d (1%% of %d, at least 64 MiB)", facts["minFreeBytes"], want, facts["totalBytes"])
	}
	if (err == nil) != (facts["freeBytes"] >= facts["minFreeBytes"]) {
		t.Fatalf("default floor: %v with %v", err, facts)
	}
	above := facts["freeBytes"] + 1<<40
	facts, err = b.DiskCheck(above)(ctx)
	if err == nil || facts["minFreeBytes"] != above {
		t.Fatalf("floor above the free space: %v, %v", facts, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "MiB free, below the floor of") || strings.Contains(msg, dir) {
		t.Fatalf("message %q", msg)
	}
}

// TestDiskCheckFills: on a 16 MiB disk that fills up, the check passes while
// the free space is above a 4 MiB floor and fails once writes took it below.
func TestDiskCheckFills(t *testing.T) {
	dir := tmpfstest.Mount(t, 16<<20)
	b, err := embedded.Start(context.Background(), embedded.Config{Dir: dir, NoDocuments: true, NoKV: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx := context.Background()
	check := b.DiskCheck(4 << 20)
	facts, err := check(ctx)
	if err != nil || facts["totalBytes"] != 16<<20 {
		t.Fatalf("empty disk: %v, %v", facts, err)
	}
	if _, err := b.DiskCheck(-1)(ctx); err == nil {
		t.Fatal("the default floor (64 MiB) passed on a 16 MiB disk")
	}
	data := bytes.Repeat([]byte{'f'}, 13<<20)
	if _, err := b.S3.PutObject(ctx, b.Bucket, "big", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if facts, err := check(ctx); err == nil {
		t.Fatalf("13 MiB written on 16 MiB: %v passes a 4 MiB floor", facts)
	}
}
