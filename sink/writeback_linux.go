package sink

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the given range of f to
// disk and returns without waiting (sync_file_range with
// SYNC_FILE_RANGE_WRITE). The fsync before the rename still makes the
// file durable; this only moves the work off the end of the run, where it
// would otherwise be paid for all at once. Errors are left to that fsync.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
