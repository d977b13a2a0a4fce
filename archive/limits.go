package archive

import (
	"fmt"

	"oras.land/oras-go/v2/errdef"
)

// The largest index.json and oci-layout a layout reader accepts (a backup
// of 100 000 tags has an index.json of about 30 MB).
const (
	MaxIndexFile  = 256 << 20
	MaxLayoutFile = 64 << 10
)

// MaxManifestSize is the largest manifest (or index) regvault reads, from
// a registry or a backup, and so the largest a backup holds: the limit
// registries put on a manifest. Backup refuses a larger one, so that
// backup, verify and restore agree on what can be restored.
const MaxManifestSize = 4 << 20

// MaxManifestSizeText is MaxManifestSize for messages.
const MaxManifestSizeText = "4 MiB"

// ManifestTooLarge is the error for a manifest of size bytes, more than
// MaxManifestSize (size < 0: unknown, more was sent); what names it (a
// digest, a repository and tag).
func ManifestTooLarge(what string, size int64) error {
	if size < 0 {
		return fmt.Errorf("manifest %s is larger than the %s (%d bytes) limit for a manifest: %w", what, MaxManifestSizeText, MaxManifestSize, errdef.ErrSizeExceedsLimit)
	}
	return fmt.Errorf("manifest %s is %d bytes, larger than the %s (%d bytes) limit for a manifest: %w", what, size, MaxManifestSizeText, MaxManifestSize, errdef.ErrSizeExceedsLimit)
}
