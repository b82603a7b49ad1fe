package embedded

import (
	"context"
	"fmt"

	storage "github.com/cpod/storage"
)

// DefaultMinFreeSpace is the floor of DiskCheck's default: 1% of the
// filesystem, at least 64 MiB.
func DefaultMinFreeSpace(total int64) int64 { return max(total/100, 64<<20) }

// DiskCheck is a readiness check (storage.Config.ReadyChecks, as "disk")
// of the free space of the filesystem that holds the data directory. It
// reports freeBytes (what an unprivileged writer may still use),
// totalBytes and minFreeBytes, and fails while freeBytes is below the
// floor: minFree bytes, DefaultMinFreeSpace of the filesystem's size when
// minFree is negative, never when it is 0. So a replica leaves the load
// balancer's rotation before its writes start failing with 507
// insufficient_storage (reads go on working). Where the free space cannot
// be read (a system without statfs), it reports nothing and passes.
func (b *Backends) DiskCheck(minFree int64) storage.ReadyCheck {
	dir := b.dir
	return func(ctx context.Context) (map[string]int64, error) {
		free, total, ok, err := freeSpace(dir)
		if err != nil {
			// The error of statfs names no path.
			return nil, fmt.Errorf("cannot read the free space of the data directory: %w", err)
		}
		if !ok {
			return nil, nil
		}
		floor := minFree
		if floor < 0 {
			floor = DefaultMinFreeSpace(total)
		}
		facts := map[string]int64{"freeBytes": free, "totalBytes": total, "minFreeBytes": floor}
		if free < floor {
			return facts, fmt.Errorf("the data directory's disk has %s free, below the floor of %s", mib(free), mib(floor))
		}
		return facts, nil
	}
}

// mib formats a byte count in MiB for a person.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
