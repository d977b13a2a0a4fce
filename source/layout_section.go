package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
)

// ErrNotRandomAccess is Section's error on a backup read as a stream (a
// compressed tar, standard input): its blobs have no place to read from.
var ErrNotRandomAccess = errors.New("the backup is read as a stream, not with random access")

// Section returns the bytes of desc's blob where they are, unverified, for
// reading at any offset (a server answering Range requests): a section of
// the tar file, or the blob's file of a directory. Close the returned
// Closer when done with the section (a directory's file; nothing for a
// tar, whose file the layout owns). A blob that is not in the backup is an
// error wrapping errdef.ErrNotFound (a *MissingError), one of another size
// a size error; a streamed backup gives ErrNotRandomAccess.
func (l *Layout) Section(ctx context.Context, desc ocispec.Descriptor) (*io.SectionReader, io.Closer, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, nil, fmt.Errorf("opening %q: %w", desc.Digest, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	name := archive.BlobPath(desc.Digest)
	switch b := l.backend.(type) {
	case *layoutTar:
		m, ok := b.members[name]
		if !ok {
			return nil, nil, layoutNotFound(name)
		}
		if desc.Size >= 0 && m.size != desc.Size {
			return nil, nil, layoutSizeError(name, m.size, desc.Size)
		}
		return io.NewSectionReader(b.f, m.offset, m.size), io.NopCloser(nil), nil
	case *layoutDir:
		f, fi, err := archive.OpenFile(b.root, name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, layoutNotFound(name)
			}
			return nil, nil, fmt.Errorf("backup %s: %w", b.path, err)
		}
		if desc.Size >= 0 && fi.Size() != desc.Size {
			f.Close()
			return nil, nil, layoutSizeError(name, fi.Size(), desc.Size)
		}
		return io.NewSectionReader(f, 0, fi.Size()), f, nil
	}
	return nil, nil, ErrNotRandomAccess
}
