package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/regvault/regvault/archive"
)

// layoutTar serves the members of a plain tar file with random access: the
// headers are read once, skipping the data, and each member is then an
// io.SectionReader of the file (concurrent reads are fine).
type layoutTar struct {
	path    string
	f       *os.File
	members map[string]layoutSection
}

type layoutSection struct{ offset, size int64 }

func openLayoutTar(ctx context.Context, f *os.File, fileSize int64, path string, notes *layoutNotes) (*layoutTar, error) {
	t := &layoutTar{path: path, f: f, members: map[string]layoutSection{}}
	seen := archive.Members{}
	cr := &archive.SeekingReader{CountingReader: archive.CountingReader{R: f}, S: f}
	tr := tar.NewReader(cr)
	var lastEnd int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			if !archive.HasTrailer(cr.N, lastEnd) {
				return nil, fmt.Errorf("%s: %w", path, archive.ErrNoTrailer)
			}
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%s: the tar is truncated: %w", path, err)
			}
			return nil, fmt.Errorf("%s: reading tar: %w", path, err)
		}
		name, kind, err := archive.Member(h)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		offset := cr.N
		lastEnd = archive.TarEnd(offset, h.Size)
		if kind == archive.MemberSkip {
			continue
		}
		if err := seen.Add(h.Name, name); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if kind == archive.MemberIgnored {
			notes.add(archive.IgnoredNote(name))
			continue
		}
		if offset+h.Size > fileSize {
			return nil, fmt.Errorf("%s: the tar is truncated: member %q ends at byte %d of %d", path, h.Name, offset+h.Size, fileSize)
		}
		t.members[name] = layoutSection{offset: offset, size: h.Size}
	}
	return t, nil
}

func (t *layoutTar) open(ctx context.Context, name string, size int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, ok := t.members[name]
	if !ok {
		return nil, layoutNotFound(name)
	}
	if size >= 0 && m.size != size {
		return nil, layoutSizeError(name, m.size, size)
	}
	return io.NopCloser(io.NewSectionReader(t.f, m.offset, m.size)), nil
}

func (t *layoutTar) stat(name string, size int64) error {
	m, ok := t.members[name]
	if !ok {
		return layoutNotFound(name)
	}
	if size >= 0 && m.size != size {
		return layoutSizeError(name, m.size, size)
	}
	return nil
}

func (t *layoutTar) close() error { return t.f.Close() }
