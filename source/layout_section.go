package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

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

// OpenFile opens desc's blob, unverified, as a file of its own positioned
// at byte start of the blob. The caller reads at most desc.Size-start
// bytes (the rest of a tar is other members) and closes the file. Unlike
// Section's shared file, its position is the caller's, which is what
// sendfile needs: an HTTP server copies the bytes from the page cache to
// the socket without reading them into memory. A tar is opened again by
// its path, and refused if the path no longer names the file the listing
// was read from. Errors are Section's.
func (l *Layout) OpenFile(ctx context.Context, desc ocispec.Descriptor, start int64) (*os.File, error) {
	sec, closer, err := l.Section(ctx, desc)
	if err != nil {
		return nil, err
	}
	var f *os.File
	var base int64
	switch b := l.backend.(type) {
	case *layoutTar:
		closer.Close()
		f, err = os.Open(b.path)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", b.path, err)
		}
		fi, err1 := f.Stat()
		orig, err2 := b.f.Stat()
		if err := errors.Join(err1, err2); err != nil || !os.SameFile(fi, orig) {
			f.Close()
			if err == nil {
				err = errors.New("the path names another file than the one opened at start")
			}
			return nil, fmt.Errorf("backup %s: %w", b.path, err)
		}
		_, base, _ = sec.Outer()
	default:
		var ok bool
		if f, ok = closer.(*os.File); !ok { // a directory's blob file, opened for this call
			closer.Close()
			return nil, ErrNotRandomAccess
		}
	}
	if _, err := f.Seek(base+start, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("backup %s: %w", l.path, err)
	}
	return f, nil
}
