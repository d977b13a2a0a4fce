package archive

import (
	"fmt"
	"io/fs"
	"os"
)

// NotRegularError refuses a layout file that is not a regular file.
type NotRegularError struct {
	Name string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	what := "not a regular file"
	switch t := e.Mode.Type(); {
	case t&fs.ModeNamedPipe != 0:
		what = "a named pipe"
	case t&fs.ModeSocket != 0:
		what = "a socket"
	case t&fs.ModeDevice != 0:
		what = "a device"
	case t&fs.ModeDir != 0:
		what = "a directory"
	case t&fs.ModeSymlink != 0:
		what = "a symbolic link"
	}
	return fmt.Sprintf("%s is %s, not a regular file (a layout's oci-layout, index.json and blobs must be regular files)", e.Name, what)
}

// OpenFile opens a file of a layout directory for reading, only if it is a
// regular file: name within root (which a symbolic link cannot leave), or
// the path name when root is nil. Its type is checked before it is opened,
// and again on the open file, which is opened without waiting: opening a
// named pipe would otherwise wait for a writer for ever. Anything but a
// regular file is a *NotRegularError.
func OpenFile(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	stat, open := os.Stat, func(n string) (*os.File, error) { return os.OpenFile(n, os.O_RDONLY|openNonblock, 0) }
	if root != nil {
		stat, open = root.Stat, func(n string) (*os.File, error) { return root.OpenFile(n, os.O_RDONLY|openNonblock, 0) }
	}
	fi, err := stat(name)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, &NotRegularError{Name: name, Mode: fi.Mode()}
	}
	f, err := open(name)
	if err != nil {
		return nil, nil, err
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &NotRegularError{Name: name, Mode: fi.Mode()}
	}
	return f, fi, nil
}

// ReadFile reads a regular file of a layout (see OpenFile) of at most
// limit bytes.
func ReadFile(root *os.Root, name string, limit int64) ([]byte, error) {
	f, _, err := OpenFile(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := ReadAllLimit(f, limit)
	if _, ok := err.(*tooLargeError); ok {
		return nil, fmt.Errorf("%s is %w", name, err)
	}
	return data, err
}
