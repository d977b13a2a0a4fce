package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/regvault/regvault/archive"
)

// layoutDir serves the members of an OCI layout directory. Every open goes
// through an os.Root: a symbolic link cannot lead outside the directory.
type layoutDir struct {
	path string
	root *os.Root
}

func openLayoutDir(path string) (*layoutDir, error) {
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("opening backup: %w", err)
	}
	return &layoutDir{path: path, root: root}, nil
}

func (d *layoutDir) open(ctx context.Context, name string, size int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A named pipe in the layout would block the open for ever: the type
	// is checked first, and the open does not wait.
	f, fi, err := archive.OpenFile(d.root, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, layoutNotFound(name)
		}
		return nil, fmt.Errorf("backup %s: %w", d.path, err)
	}
	if size >= 0 && fi.Size() != size {
		f.Close()
		return nil, layoutSizeError(name, fi.Size(), size)
	}
	return f, nil
}

func (d *layoutDir) stat(name string, size int64) error {
	fi, err := d.root.Stat(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return layoutNotFound(name)
		}
		return fmt.Errorf("backup %s: %w", d.path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("backup %s: %w", d.path, &archive.NotRegularError{Name: name, Mode: fi.Mode()})
	}
	if size >= 0 && fi.Size() != size {
		return layoutSizeError(name, fi.Size(), size)
	}
	return nil
}

func (d *layoutDir) close() error { return d.root.Close() }
