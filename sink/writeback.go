package sink

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// A layout written as one file (a tar, a compressed stream) is made durable
// by one fsync before the rename. Left to that fsync alone, the whole
// file's writeback, and the disk's cache flush, come at the very end of the
// run, after the last byte arrived: on a 2 GiB archive that was a second
// or more of doing nothing else. Two things move that work into the run:
// each finished piece has its writeback started at once (startWriteback,
// which does not wait), and a syncer flushes the file in the background
// every syncEvery bytes, one flush at a time, so the final fsync finds
// little left, as a tool that fsyncs each blob file as it completes does.

// syncEvery is how many written bytes make the syncer flush the file.
const syncEvery = 64 << 20

// writebackChunk is how much a sequential writer lets pile up before it
// starts the writeback of it.
const writebackChunk = 32 << 20

// syncer flushes a file in the background as it grows. Its goroutine is
// owned by the layout that made it and ends with stop.
type syncer struct {
	f       *os.File
	pending atomic.Int64
	kick    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	stopped bool
	// err is the first failed flush. It must reach the commit: the kernel
	// reports a write error to a file once, so the final fsync on the same
	// file would not see it again.
	err error
}

func newSyncer(f *os.File) *syncer {
	s := &syncer{f: f, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for range s.kick {
			s.pending.Store(0)
			if err := datasync(s.f); err != nil {
				s.mu.Lock()
				if s.err == nil {
					s.err = err
				}
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// wrote counts n bytes written to the file and wakes the flusher when
// enough have piled up since its last flush.
func (s *syncer) wrote(n int64) {
	if s.pending.Add(n) < syncEvery {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default: // a flush is due already
	}
}

// stop waits for a flush under way and ends the goroutine; the file may be
// closed after it. It returns the first flush that failed: the file is not
// to be trusted then. Calling it again returns the same.
func (s *syncer) stop() error {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.kick)
	}
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// writebackWriter writes sequentially to a file, starts the writeback
// behind itself every writebackChunk bytes, and tells its syncer.
type writebackWriter struct {
	f       *os.File
	sync    *syncer
	off     int64 // bytes written
	flushed int64 // writeback started up to here
}

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.flushed >= writebackChunk {
		startWriteback(w.f, w.flushed, w.off-w.flushed)
		w.sync.wrote(w.off - w.flushed)
		w.flushed = w.off
	}
	return n, err
}

var _ io.Writer = (*writebackWriter)(nil)
