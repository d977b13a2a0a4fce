package planfile

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// mapFile maps a regular file read-only into memory and gives its bytes as
// a string, for a plan's names and digests to be substrings of. Reading a
// plan of 100,000 tags (about 120 MB) into fresh memory costs more than
// everything else a pod does at start; mapped, the pages come from the
// page cache as they are. The mapping is never undone: the plan's strings,
// and every string taken from them, point into it for as long as the
// process lives (a run reads its plan once). Read-only: nothing can
// change the bytes behind the strings but the file being rewritten in
// place, which regvault plan never does (it writes a new file and renames
// it over the old one).
func mapFile(r io.Reader) (string, bool) {
	f, ok := r.(*os.File)
	if !ok {
		return "", false
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size() > MaxSize {
		return "", false
	}
	if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 {
		return "", false
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		return "", false
	}
	// The reader is consumed, as by a read.
	_, _ = f.Seek(0, io.SeekEnd)
	return unsafe.String(unsafe.SliceData(m), len(m)), true
}
