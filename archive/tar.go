package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// The mechanics of reading a backup's tar, shared by every reader (restore,
// the inspect commands, verify): where a member's data ends, whether the
// tar had its end-of-archive marker, and the byte position of the reader.

// TarEnd is the end of a member's data that begins at offset, with its
// padding to the next 512-byte block.
func TarEnd(offset, size int64) int64 {
	return offset + (size+511)&^511
}

// HasTrailer says whether a tar whose reader ended at pos, after a last
// member whose padded data ended at lastEnd, had its end-of-archive marker
// (two zero blocks). A tar without it was cut off at a member boundary.
func HasTrailer(pos, lastEnd int64) bool {
	return pos >= lastEnd+1024
}

// ErrNoTrailer is the error for a tar without its end-of-archive marker.
var ErrNoTrailer = errors.New("tar ends without its end-of-archive marker: the archive is truncated")

// CountingReader counts the bytes read through it in N (the position in
// the tar, for archive/tar reading it) and, when set, in Also (a progress
// counter). With Ctx set, it stops reading once Ctx is done.
type CountingReader struct {
	Ctx  context.Context
	R    io.Reader
	N    int64
	Also *atomic.Int64
}

func (c *CountingReader) Read(p []byte) (int, error) {
	if c.Ctx != nil {
		if err := c.Ctx.Err(); err != nil {
			return 0, err
		}
	}
	n, err := c.R.Read(p)
	c.N += int64(n)
	if c.Also != nil {
		c.Also.Add(int64(n))
	}
	return n, err
}

// SeekingReader is a CountingReader over a seekable file: archive/tar
// skips member data with Seek, which keeps N as the position (the bytes
// skipped are not added to Also: they were not read).
type SeekingReader struct {
	CountingReader
	S io.Seeker
}

func (s *SeekingReader) Seek(offset int64, whence int) (int64, error) {
	pos, err := s.S.Seek(offset, whence)
	if err == nil {
		s.N = pos
	}
	return pos, err
}

// ReadAllLimit reads r to its end, at most limit bytes: more is an error
// "larger than the <limit> bytes allowed".
func ReadAllLimit(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &tooLargeError{limit}
	}
	return data, nil
}

type tooLargeError struct{ limit int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("larger than the %d bytes allowed", e.limit)
}
