//go:build unix

package source

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A named pipe (as bash's <(cat backup.tar.gz) gives) is read as a stream.
func TestLayoutNamedPipe(t *testing.T) {
	files := cachedTestFiles(t, true)
	for name, data := range map[string][]byte{"tar": files.tar, "gzip": files.gz} {
		t.Run(name, func(t *testing.T) {
			fifo := filepath.Join(t.TempDir(), "backup")
			require.NoError(t, syscall.Mkfifo(fifo, 0o600))
			go func() {
				f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					return
				}
				defer f.Close()
				f.Write(data)
			}()
			l, _ := testOpen(t, fifo, nil)
			assert.True(t, l.Streaming())
			want := map[string]LayoutKind{"tar": LayoutTar, "gzip": LayoutTarGzip}[name]
			assert.Equal(t, want, l.Kind())
			for _, b := range files.a.blobs {
				got, err := testFetchAll(t, l, b.desc)
				require.NoError(t, err)
				require.True(t, bytes.Equal(b.data, got))
			}
			assert.Zero(t, l.SpooledBytes())
		})
	}
}
