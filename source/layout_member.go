package source

import (
	"fmt"
	"io"

	"github.com/regvault/regvault/archive"
)

// Names of the two files of an OCI image layout besides its blobs.
const (
	layoutFileName  = archive.LayoutFileName
	layoutIndexName = archive.IndexFileName
)

// Limits on what a layout reader holds in memory.
const (
	// layoutMaxManifest bounds a manifest read to resolve a tag or find a
	// referrer: the one limit of backup, verify and restore.
	layoutMaxManifest = archive.MaxManifestSize
	// layoutMaxManifestCache bounds the manifests kept in memory once
	// read.
	layoutMaxManifestCache = 256 << 20
)

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
