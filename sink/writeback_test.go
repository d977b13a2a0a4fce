package sink

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The syncer flushes once enough has been written, ends with stop, and
// takes no more work after it (a writer still running when a backup is
// aborted must not panic on a closed channel).
func TestSyncerLifecycle(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer f.Close()
	s := newSyncer(f)
	s.wrote(syncEvery - 1)
	require.EqualValues(t, syncEvery-1, s.pending.Load(), "no flush below syncEvery")
	s.wrote(1)
	require.Eventually(t, func() bool { return s.pending.Load() == 0 }, 5*time.Second, time.Millisecond, "a flush once syncEvery bytes piled up")
	require.NoError(t, s.stop())
	require.NoError(t, s.stop())
	s.wrote(2 * syncEvery)
	select {
	case <-s.done:
	default:
		t.Fatal("the syncer's goroutine outlived stop")
	}
}

// A writebackWriter writes everything through, in order.
func TestWritebackWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	require.NoError(t, err)
	s := newSyncer(f)
	w := &writebackWriter{f: f, sync: s}
	chunk := make([]byte, 1<<20)
	for i := range 40 {
		chunk[0] = byte(i)
		n, err := w.Write(chunk)
		require.NoError(t, err)
		require.Equal(t, len(chunk), n)
	}
	require.NoError(t, s.stop())
	require.NoError(t, f.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, b, 40<<20)
	for i := range 40 {
		require.Equal(t, byte(i), b[i<<20])
	}
	require.EqualValues(t, 32<<20, w.flushed, "writeback started every writebackChunk bytes")
}

// A flush that fails is reported by stop, so the commit refuses the file
// (the final fsync would not see the error again).
func TestSyncerReportsFailedFlush(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	s := newSyncer(f)
	require.NoError(t, f.Close()) // every flush now fails
	s.wrote(syncEvery)
	require.Error(t, s.stop())
}
