package sink

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/regvault/regvault/archive"
)

// Temporary files and directories: a run writes its output under a
// temporary name (tempPattern) and renames it at the end, and removes it
// if it fails. A run that was killed (SIGKILL, a crash, a power loss)
// cannot: its temporary stays. So each run holds a lock (flock) on its
// temporary for as long as it writes it, and a later run writing the same
// output removes the temporaries no process holds (cleanLeftovers), or, for
// a new directory, resumes one (dirLayout.prepare).

// tempMark is in every temporary name regvault makes: "." + the name of
// what it becomes + tempMark + random digits (os.CreateTemp, os.MkdirTemp).
const tempMark = ".regvault-tmp-"

// errNoLock: the file system cannot lock; a leftover cannot be told from
// the temporary of a running process, so none is removed.
var errNoLock = errors.New("locks are not supported here")

// tempPattern is the name pattern of the temporary sibling of path.
func tempPattern(path string) string {
	return "." + filepath.Base(path) + tempMark + "*"
}

// isTempName says whether name is a temporary name regvault made for base
// ("" for any base: the temporary blob and index files inside a layout).
func isTempName(name, base string) bool {
	var rest string
	if base != "" {
		r, ok := strings.CutPrefix(name, "."+base+tempMark)
		if !ok {
			return false
		}
		rest = r
	} else {
		i := strings.LastIndex(name, tempMark)
		if !strings.HasPrefix(name, ".") || i < 2 {
			return false
		}
		rest = name[i+len(tempMark):]
	}
	if rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// holdTemp locks a temporary this run just created, so that another run's
// cleanLeftovers leaves it alone. It reports false if the temporary is
// gone or going: another run's cleanup locked it first (between the
// creation and the lock) and removes it; the caller makes another.
func holdTemp(f *os.File) (bool, error) {
	switch err := flockNB(f); {
	case errors.Is(err, errLocked):
		return false, nil
	case errors.Is(err, errNoLock):
		return true, nil
	case err != nil:
		return false, err
	}
	st, err := os.Lstat(f.Name())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // removed before the lock was ours
	}
	if err != nil {
		return false, err
	}
	fst, err := f.Stat()
	if err != nil {
		return false, err
	}
	return os.SameFile(st, fst), nil
}

// tempAttempts bounds the retries of createTempFile and createTempDir:
// each retry means another run removed the temporary just made.
const tempAttempts = 10

// createTempFile creates the temporary file of path, read-write, locked
// as long as it is open.
func createTempFile(path string) (*os.File, error) {
	for range tempAttempts {
		f, err := os.CreateTemp(filepath.Dir(path), tempPattern(path))
		if err != nil {
			return nil, err
		}
		ok, err := holdTemp(f)
		if ok {
			return f, nil
		}
		f.Close()
		if err != nil {
			_ = os.Remove(f.Name())
			return nil, err
		}
	}
	return nil, errors.New("another regvault run keeps removing the temporary file")
}

// createTempDir creates the temporary directory of path, locked as long
// as lock is open.
func createTempDir(path string) (dir string, lock *os.File, err error) {
	for range tempAttempts {
		dir, err := os.MkdirTemp(filepath.Dir(path), tempPattern(path))
		if err != nil {
			return "", nil, err
		}
		lock, err := os.Open(dir)
		if err != nil {
			return "", nil, err
		}
		ok, err := holdTemp(lock)
		if ok {
			return dir, lock, nil
		}
		lock.Close()
		if err != nil {
			_ = os.RemoveAll(dir)
			return "", nil, err
		}
	}
	return "", nil, errors.New("another regvault run keeps removing the temporary directory")
}

// cleanLeftovers removes what earlier runs writing path left behind: the
// files and directories next to it named by tempPattern(path) that no
// running process holds locked. adopt, if not nil, is offered each such
// directory first, locked; if it takes it (true), it keeps the lock, and
// is offered no other. Cleaning up is best effort: what cannot be removed
// stays, and does not stop the backup.
func cleanLeftovers(path string, adopt func(dir string, lock *os.File) bool) {
	parent, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !isTempName(e.Name(), base) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		var f *os.File
		switch {
		case e.Type().IsRegular():
			f, _, err = archive.OpenFile(nil, p)
		case e.IsDir():
			f, err = os.Open(p)
		default:
			continue // not something regvault makes
		}
		if err != nil {
			continue
		}
		switch err := flockNB(f); {
		case errors.Is(err, errNoLock):
			f.Close()
			return
		case err != nil:
			f.Close() // another run's, in use
			continue
		}
		if e.IsDir() && adopt != nil && adopt(p, f) {
			adopt = nil
			continue
		}
		_ = os.RemoveAll(p)
		f.Close()
	}
}

// cleanInside removes the temporary files of killed runs inside a layout
// directory that this run holds locked: blobs and index files that were
// being written.
func cleanInside(root string) {
	dirs := []string{root}
	if algs, err := os.ReadDir(filepath.Join(root, "blobs")); err == nil {
		for _, a := range algs {
			if a.IsDir() {
				dirs = append(dirs, filepath.Join(root, "blobs", a.Name()))
			}
		}
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.Type().IsRegular() && isTempName(e.Name(), "") {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
}
