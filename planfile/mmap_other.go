//go:build !linux

package planfile

import "io"

// mapFile maps a plan file into memory on Linux only (mmap_linux.go);
// elsewhere the file is read.
func mapFile(io.Reader) (string, bool) { return "", false }
