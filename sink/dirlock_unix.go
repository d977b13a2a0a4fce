//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sink

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive lock on the directory itself (flock on its
// descriptor: no file is added to the layout). The lock goes with the
// returned file: closing it, or the process ending however it ends,
// releases it. errLocked says another process holds it.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB) }); err != nil {
		f.Close()
		return nil, err
	}
	if ferr != nil {
		f.Close()
		switch {
		case errors.Is(ferr, unix.EWOULDBLOCK):
			return nil, errLocked
		case errors.Is(ferr, unix.EBADF), errors.Is(ferr, unix.ENOLCK), errors.Is(ferr, unix.EOPNOTSUPP), errors.Is(ferr, unix.ENOTSUP):
			// A file system that cannot lock a directory (NFS emulates
			// flock with a write lock, which a directory cannot take):
			// go on without the lock rather than refuse the backup.
			return nil, nil
		}
		return nil, ferr
	}
	return f, nil
}
