package sink

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the given range of f to
// disk and returns without waiting (sync_file_range with
// SYNC_FILE_RANGE_WRITE). Errors are left to the final fsync.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}

// datasync flushes f's data (fdatasync: the size and times wait for the
// final fsync).
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// copyRange copies n bytes of src at srcOff to dst at dstOff in the
// kernel (copy_file_range), leaving both files' offsets alone; it returns
// how many it copied (fewer when src ends first).
func copyRange(dst *os.File, dstOff int64, src *os.File, srcOff, n int64) (int64, error) {
	drc, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	srcConn, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	var done int64
	var cerr error
	err = drc.Control(func(dfd uintptr) {
		cerr = srcConn.Control(func(sfd uintptr) {
			for done < n {
				k, err := unix.CopyFileRange(int(sfd), &srcOff, int(dfd), &dstOff, int(min(n-done, 1<<30)), 0)
				if err != nil {
					cerr = err
					return
				}
				if k == 0 {
					return
				}
				done += int64(k)
			}
		})
	})
	if err == nil {
		err = cerr
	}
	return done, err
}
