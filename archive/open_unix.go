//go:build unix

package archive

import "syscall"

// openNonblock opens a named pipe without waiting for a writer; a regular
// file reads as usual.
const openNonblock = syscall.O_NONBLOCK
