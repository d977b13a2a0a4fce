//go:build !unix

package archive

// openNonblock: elsewhere there are no named pipes to wait on.
const openNonblock = 0
