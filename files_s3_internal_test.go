package storage

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/minio/minio-go/v7"
)

// TestUploadErrorClassification: a failed upload is blamed on S3 (503) or
// on the client (400, 413) exactly: a stalled S3 wins over everything; a
// client that left after its whole body (or an empty one) was read is not
// blamed; S3's RequestTimeout is the client's only while the engine was
// waiting for the client's bytes.
func TestUploadErrorClassification(t *testing.T) {
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	stalled := &stallGuard{}
	stalled.fired.Store(true)
	s3Timeout := minio.ErrorResponse{Code: "RequestTimeout", StatusCode: 400}
	netErr := errors.New("connection reset")
	for _, tc := range []struct {
		name   string
		err    error
		g      *stallGuard
		st     uploadState
		size   int64
		ctx    context.Context
		status int
	}{
		{"stalled S3, client gone", context.Canceled, stalled, uploadState{reading: true}, 10, gone, 503},
		{"stalled S3, body over", errFileTooLarge, stalled, uploadState{over: true}, -1, live, 503},
		{"too large", errFileTooLarge, nil, uploadState{over: true}, -1, live, 413},
		{"broken body", netErr, nil, uploadState{readErr: netErr}, -1, live, 400},
		{"client left mid-body", context.Canceled, nil, uploadState{n: 3}, 10, gone, 400},
		{"empty PUT, client left", context.Canceled, nil, uploadState{}, 0, gone, 503},
		{"whole body read, client left", context.Canceled, nil, uploadState{n: 10}, 10, gone, 503},
		{"chunked body read to EOF, client left", context.Canceled, nil, uploadState{n: 10, eof: true}, -1, gone, 503},
		{"S3 timed out a stalled client", s3Timeout, nil, uploadState{n: 3, reading: true}, 10, live, 400},
		{"S3 timed out while not waiting on the client", s3Timeout, nil, uploadState{n: 10}, 10, live, 503},
		{"S3 refused", minio.ErrorResponse{Code: "ServiceUnavailable", StatusCode: 503}, nil, uploadState{n: 10}, 10, live, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := toError(uploadError(tc.err, tc.g, tc.st, tc.size, tc.ctx, 100)).HTTPStatus()
			if got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if tc.status == http.StatusServiceUnavailable && toError(uploadError(tc.err, tc.g, tc.st, tc.size, tc.ctx, 100)).Code != CodeBackendUnavailable {
				t.Fatal("503 without backend_unavailable")
			}
		})
	}
}
