//go:build linux

// Package tmpfstest mounts a small tmpfs for tests that need a disk that
// fills up: writes past its size fail with ENOSPC, as on a full disk.
package tmpfstest

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory and
// returns its path; t.Cleanup unmounts it. It skips the test, saying why,
// when the process is not root or the mount fails (a container without
// CAP_SYS_ADMIN).
func Mount(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs (a disk that fills up) needs root; CI runs as root")
	}
	dir, err := os.MkdirTemp("", "cpod-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount a tmpfs on %s (%v): this needs root with CAP_SYS_ADMIN", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			return
		}
		os.Remove(dir)
	})
	return dir
}
