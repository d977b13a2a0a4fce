package pipeline_test

import (
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"
)

func decompress(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	var r io.Reader
	if strings.HasSuffix(from, ".gz") {
		zr, err := gzip.NewReader(in)
		require.NoError(t, err)
		r = zr
	} else {
		zr, err := zstd.NewReader(in)
		require.NoError(t, err)
		defer zr.Close()
		r = zr
	}
	out, err := os.Create(to)
	require.NoError(t, err)
	defer out.Close()
	_, err = io.Copy(out, r)
	require.NoError(t, err)
}

// corruptBlob flips a byte of the blob whose digest *d names, as a broken
// registry or a man in the middle would.
func corruptBlob(d *string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if *d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+*d) {
				next.ServeHTTP(&flipWriter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if !f.done && len(p) > 0 {
		q := append([]byte(nil), p...)
		q[0] ^= 0xff
		f.done = true
		return f.ResponseWriter.Write(q)
	}
	return f.ResponseWriter.Write(p)
}
