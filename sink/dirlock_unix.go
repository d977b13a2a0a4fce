//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sink

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// flockNB takes an exclusive lock on f (flock: it goes with the open file,
// and closing it, or the process ending however it ends, releases it)
// without waiting. errLocked says another open file holds it; errNoLock
// that the file system cannot lock this file (NFS emulates flock with a
// write lock, which a directory cannot take).
func flockNB(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB) }); err != nil {
		return err
	}
	switch {
	case ferr == nil:
		return nil
	case errors.Is(ferr, unix.EWOULDBLOCK):
		return errLocked
	case errors.Is(ferr, unix.EBADF), errors.Is(ferr, unix.ENOLCK), errors.Is(ferr, unix.EOPNOTSUPP), errors.Is(ferr, unix.ENOTSUP):
		return errNoLock
	}
	return ferr
}

// lockDir takes an exclusive lock on the directory itself (no file is
// added to the layout). The lock goes with the returned file. errLocked
// says another process holds it; where the file system cannot lock a
// directory, it goes on without the lock (nil, nil) rather than refuse
// the backup.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	switch err := flockNB(f); {
	case errors.Is(err, errNoLock):
		f.Close()
		return nil, nil
	case err != nil:
		f.Close()
		return nil, err
	}
	return f, nil
}
