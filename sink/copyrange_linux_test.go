package sink

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A section of a file goes into another at an offset in the kernel,
// leaving the file offsets alone; anything else is left to the copy.
func TestCopyFromFile(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, "dst"))
	require.NoError(t, err)
	defer dst.Close()
	_, err = src.WriteString("0123456789abcdef")
	require.NoError(t, err)

	require.True(t, copyFromFile(dst, 100, io.NewSectionReader(src, 4, 6), 6))
	got := make([]byte, 6)
	_, err = dst.ReadAt(got, 100)
	require.NoError(t, err)
	require.Equal(t, "456789", string(got))
	pos, err := src.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	require.Equal(t, int64(16), pos, "the source's offset is where the writes left it")

	sr := io.NewSectionReader(src, 0, 4)
	_, _ = sr.Read(make([]byte, 1))
	require.False(t, copyFromFile(dst, 0, sr, 4), "a section already read from")
	require.False(t, copyFromFile(dst, 0, io.NewSectionReader(src, 0, 4), 3), "a section of another length")
}
