package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// redisReply is an error reply of a Redis server, as go-redis returns it.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

// TestOutOfSpaceTranslation: each adapter turns its backend's way of saying
// "out of space" into 507 insufficient_storage (no Retry-After: only 503
// gets one), marked with the backend for the metrics, and leaves the
// neighbouring errors as they were.
func TestOutOfSpaceTranslation(t *testing.T) {
	enospc := &fs.PathError{Op: "write", Path: "/data/tmp/obj-1", Err: syscall.ENOSPC}
	for _, tc := range []struct {
		name    string
		err     error
		code    Code
		backend string
	}{
		// S3: MinIO past its free-space threshold (and the embedded S3),
		// any 507, a bucket or account quota.
		{"s3 XMinioStorageFull", s3Error("put", minio.ErrorResponse{Code: "XMinioStorageFull", StatusCode: 507, Message: "Storage backend has reached its minimum free drive threshold."}), CodeInsufficientStorage, backendS3},
		{"s3 XMinioStorageFull as 500 (older MinIO)", s3Error("put", minio.ErrorResponse{Code: "XMinioStorageFull", StatusCode: 500}), CodeInsufficientStorage, backendS3},
		{"s3 any 507", s3Error("put", minio.ErrorResponse{Code: "507 Insufficient Storage", StatusCode: 507}), CodeInsufficientStorage, backendS3},
		{"s3 QuotaExceeded", s3Error("put", minio.ErrorResponse{Code: "QuotaExceeded", StatusCode: 403}), CodeInsufficientStorage, backendS3},
		{"s3 InternalError stays 503", s3Error("put", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}), CodeBackendUnavailable, ""},
		// SQLite: SQLITE_FULL is tested on a real database (TestSQLiteFull).
		// MongoDB: OutOfDiskSpace, as a command error and inside a write
		// exception; FerretDB passing its backend's error on as
		// InternalError (code 1) on PostgreSQL and on SQLite; Atlas.
		{"mongo OutOfDiskSpace", docsBackendError("documents set", mongo.CommandError{Code: 14031, Name: "OutOfDiskSpace", Message: "Detected out of disk space condition"}), CodeInsufficientStorage, backendMongo},
		{"mongo write error 14031", docsBackendError("documents set", mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: 14031, Message: "out of disk space"}}}), CodeInsufficientStorage, backendMongo},
		{"ferretdb postgresql disk_full", docsBackendError("documents set", mongo.CommandError{Code: 1, Name: "InternalError", Message: `[pool.go:288 pgdb.InsertDocument] ERROR: could not extend file "base/16384/16397": No space left on device (SQLSTATE 53100)`}), CodeInsufficientStorage, backendMongo},
		{"ferretdb sqlite full", docsBackendError("documents set", mongo.CommandError{Code: 1, Name: "InternalError", Message: "[collection.go:181 sqlite.(*collection).InsertAll] database or disk is full (13)"}), CodeInsufficientStorage, backendMongo},
		{"atlas space quota", docsBackendError("documents set", mongo.CommandError{Code: 8000, Name: "AtlasError", Message: "you are over your space quota, using 513 MB of 512 MB"}), CodeInsufficientStorage, backendMongo},
		{"mongo other error stays 500", docsBackendError("documents set", mongo.CommandError{Code: 1, Name: "InternalError", Message: "something else"}), CodeInternal, backendMongo},
		// Redis: over maxmemory, or refusing writes after a failed save.
		{"redis OOM", kvBackendError("set", redisReply("OOM command not allowed when used memory > 'maxmemory'.")), CodeInsufficientStorage, backendRedis},
		{"redis MISCONF", kvBackendError("set", redisReply("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.")), CodeInsufficientStorage, backendRedis},
		{"redis LOADING stays 503", kvBackendError("set", redisReply("LOADING Redis is loading the dataset in memory")), CodeBackendUnavailable, backendRedis},
		// The operating system's ENOSPC (or EDQUOT) anywhere.
		{"ENOSPC", backendError("s3 put", fmt.Errorf("copy: %w", enospc)), CodeInsufficientStorage, backendS3},
		{"EDQUOT", backendError("redis set", syscall.EDQUOT), CodeInsufficientStorage, backendRedis},
	} {
		var e *Error
		if !errors.As(tc.err, &e) {
			t.Fatalf("%s: %v is not an *Error", tc.name, tc.err)
		}
		if e.Code != tc.code {
			t.Errorf("%s: code %q, want %q (%v)", tc.name, e.Code, tc.code, tc.err)
		}
		if tc.backend != "" && e.backend != tc.backend {
			t.Errorf("%s: backend %q, want %q", tc.name, e.backend, tc.backend)
		}
		if tc.code == CodeInsufficientStorage {
			if e.HTTPStatus() != http.StatusInsufficientStorage || !errors.Is(e, ErrInsufficientStorage) {
				t.Errorf("%s: status %d, want 507 matching ErrInsufficientStorage", tc.name, e.HTTPStatus())
			}
			if e.Err == nil {
				t.Errorf("%s: the cause is not kept for the log", tc.name)
			}
		}
	}
}
