package sink

import (
	"io"
	"os"
)

// writebackChunk is how much a sequential writer lets pile up before it
// asks the kernel to start writing it out.
const writebackChunk = 32 << 20

// writebackWriter writes sequentially to a file and starts the kernel's
// writeback behind itself every writebackChunk bytes, so that the fsync
// at the end finds little left to do instead of the whole file.
type writebackWriter struct {
	f       *os.File
	off     int64 // bytes written
	flushed int64 // writeback started up to here
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.flushed >= writebackChunk {
		startWriteback(w.f, w.flushed, w.off-w.flushed)
		w.flushed = w.off
	}
	return n, err
}

var _ io.Writer = (*writebackWriter)(nil)
