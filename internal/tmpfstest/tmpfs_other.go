//go:build !linux

package tmpfstest

import "testing"

// Mount skips the test: tmpfs mounts are a Linux feature.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	t.Skip("a tmpfs (a disk that fills up) is mounted on Linux only")
	return ""
}
