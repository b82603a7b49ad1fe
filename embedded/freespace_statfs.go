//go:build linux || darwin || freebsd

package embedded

import "syscall"

// freeSpace returns the bytes available to an unprivileged writer and the
// size of the filesystem holding dir.
func freeSpace(dir string) (free, total int64, ok bool, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false, err
	}
	bs := int64(st.Bsize)
	return int64(st.Bavail) * bs, int64(st.Blocks) * bs, true, nil
}
