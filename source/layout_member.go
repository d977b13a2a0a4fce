package source

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/regvault/regvault/archive"
)

// Names of the two files of an OCI image layout besides its blobs.
const (
	layoutFileName  = "oci-layout"
	layoutIndexName = "index.json"
)

// Limits on what a layout reader holds in memory.
const (
	// layoutMaxIndex bounds index.json (a backup of 100 000 tags is about
	// 30 MB).
	layoutMaxIndex = 256 << 20
	// layoutMaxLayoutFile bounds oci-layout.
	layoutMaxLayoutFile = 64 << 10
	// layoutMaxManifest bounds a manifest read to resolve a tag or find a
	// referrer: the one limit of backup, verify and restore.
	layoutMaxManifest = archive.MaxManifestSize
	// layoutMaxManifestCache bounds the manifests kept in memory once
	// read.
	layoutMaxManifestCache = 256 << 20
)

// The digest grammar of the image spec: a blob's path is
// blobs/<algorithm>/<encoded>.
var (
	layoutAlgRE     = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$`)
	layoutEncodedRE = regexp.MustCompile(`^[a-zA-Z0-9=_-]+$`)
)

// layoutMember checks one tar member of a backup archive. A backup holds
// nothing but oci-layout, index.json and blobs/<alg>/<encoded> (and the
// directories above blobs); anything else — a path that leaves the
// archive, a link, a device, an unknown file — is refused, naming the
// member. name is the member's canonical name ("./" removed); skip is true
// for members that carry no content (directories, global headers).
func layoutMember(h *tar.Header) (name string, skip bool, err error) {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
	case tar.TypeDir:
	case tar.TypeXGlobalHeader:
		return "", true, nil // pax global header (git archive writes one)
	case tar.TypeSymlink:
		return "", false, fmt.Errorf("archive member %q is a symbolic link (to %q): a backup archive holds only regular files", h.Name, h.Linkname)
	case tar.TypeLink:
		return "", false, fmt.Errorf("archive member %q is a hard link (to %q): a backup archive holds only regular files", h.Name, h.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return "", false, fmt.Errorf("archive member %q is a device or pipe: a backup archive holds only regular files", h.Name)
	default:
		return "", false, fmt.Errorf("archive member %q has unsupported tar type %q: a backup archive holds only regular files", h.Name, h.Typeflag)
	}
	raw := h.Name
	if strings.HasPrefix(raw, "/") {
		return "", false, fmt.Errorf("archive member %q has an absolute path", raw)
	}
	for _, elem := range strings.Split(raw, "/") {
		if elem == ".." {
			return "", false, fmt.Errorf("archive member %q leaves the archive (\"..\")", raw)
		}
	}
	if strings.ContainsAny(raw, "\\\x00") {
		return "", false, fmt.Errorf("archive member %q has an invalid name", raw)
	}
	name = strings.TrimPrefix(raw, "./")
	if h.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
		if name == "" || name == "." || name == "blobs" || layoutIsAlgDir(name) {
			return name, true, nil
		}
		return "", false, fmt.Errorf("archive member %q: unexpected directory (a backup archive holds only oci-layout, index.json and blobs/<algorithm>/<digest>)", raw)
	}
	if name == layoutFileName || name == layoutIndexName || layoutIsBlobName(name) {
		return name, false, nil
	}
	return "", false, fmt.Errorf("archive member %q: unexpected file (a backup archive holds only oci-layout, index.json and blobs/<algorithm>/<digest>)", raw)
}

func layoutIsAlgDir(name string) bool {
	alg, ok := strings.CutPrefix(name, "blobs/")
	return ok && layoutAlgRE.MatchString(alg)
}

func layoutIsBlobName(name string) bool {
	if path.Clean(name) != name {
		return false
	}
	parts := strings.Split(name, "/")
	return len(parts) == 3 && parts[0] == "blobs" &&
		layoutAlgRE.MatchString(parts[1]) && layoutEncodedRE.MatchString(parts[2])
}

// layoutTarEnd is the end of a member's data with its padding to the next
// 512-byte block.
func layoutTarEnd(offset, size int64) int64 {
	return offset + (size+511)&^511
}

// layoutCheckTrailer reports a tar that ends without its end-of-archive
// marker (two zero blocks): it was cut off at a member boundary.
func layoutCheckTrailer(pos, lastEnd int64) error {
	if pos < lastEnd+1024 {
		return fmt.Errorf("tar ends without its end-of-archive marker: the archive is truncated")
	}
	return nil
}

// layoutCountingReader counts the bytes read through it; Seek is passed
// through (archive/tar skips member data with it) and keeps the count as
// the position.
type layoutCountingReader struct {
	r   io.Reader
	pos int64
}

func (c *layoutCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.pos += int64(n)
	return n, err
}

// layoutSeekingReader is a layoutCountingReader over a seekable file.
type layoutSeekingReader struct {
	layoutCountingReader
}

func (c *layoutSeekingReader) Seek(offset int64, whence int) (int64, error) {
	pos, err := c.r.(io.Seeker).Seek(offset, whence)
	if err == nil {
		c.pos = pos
	}
	return pos, err
}
