// Package archivetest reads and writes backup archives member by member,
// for tests that build an archive by hand or damage a real one.
package archivetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/archive"
)

// Member is one member of a tar: its header and its content.
type Member struct {
	Hdr  *tar.Header
	Data []byte
}

// ReadTar reads the plain tar at path, every member with its content.
func ReadTar(t testing.TB, path string) []Member {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var ms []Member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, Member{Hdr: h, Data: data})
	}
}

// TarBytes writes ms as a tar (a regular member's size is its content's),
// gzip- or zstd-compressed when name ends in .gz or .zst.
func TarBytes(t testing.TB, name string, ms []Member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		if m.Hdr.Typeflag == tar.TypeReg {
			m.Hdr.Size = int64(len(m.Data))
		}
		if err := tw.WriteHeader(m.Hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	switch {
	case strings.HasSuffix(name, ".gz"):
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		if _, err := zw.Write(out); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		out = z.Bytes()
	case strings.HasSuffix(name, ".zst"):
		zw, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		out = zw.EncodeAll(out, nil)
	}
	return out
}

// WriteTar writes ms to path as TarBytes does, and returns path.
func WriteTar(t testing.TB, path string, ms []Member) string {
	t.Helper()
	if err := os.WriteFile(path, TarBytes(t, path, ms), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TagSchemaBlobs counts the referrers' tag-schema indexes that the
// index.json member of ms names (archive.Entry.TagSchema) and their
// bytes: the blobs a backup holds besides the content it was made from.
func TagSchemaBlobs(t testing.TB, ms []Member) (n int, size int64) {
	t.Helper()
	for _, m := range ms {
		if m.Hdr.Name != "index.json" {
			continue
		}
		_, entries, err := archive.ParseIndex(context.Background(), m.Data)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[digest.Digest]bool{}
		for _, e := range entries {
			if e.TagSchema != "" && !seen[e.Desc.Digest] {
				seen[e.Desc.Digest] = true
				n++
				size += e.Desc.Size
			}
		}
	}
	return n, size
}
