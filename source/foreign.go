package source

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/archive"
)

// mediaTypeDockerForeignLayer is the Docker media type of a foreign layer
// (Windows base layers): clients fetch it from its urls.
const mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

// IsNonDistributable says whether a layer descriptor is of content that
// registries usually do not hold and clients fetch from elsewhere: an OCI
// non-distributable layer (any compression), a Docker foreign layer, or
// any descriptor with urls. Such a layer the source does not have is left
// out of a backup and a restore (as oras and skopeo do); one it has is
// copied like any other.
func IsNonDistributable(desc ocispec.Descriptor) bool {
	return len(desc.URLs) > 0 ||
		strings.HasPrefix(desc.MediaType, "application/vnd.oci.image.layer.nondistributable.") ||
		strings.HasPrefix(desc.MediaType, "application/vnd.docker.image.rootfs.foreign.") ||
		desc.MediaType == mediaTypeDockerForeignLayer
}

// Holder is a source that tells whether it holds a blob without reading
// it: the walk asks it of non-distributable layers.
type Holder interface {
	Has(ctx context.Context, repo string, desc ocispec.Descriptor) (bool, error)
}

// Has asks the registry whether repo holds the blob (one HEAD request).
func (r *Registry) Has(ctx context.Context, repo string, desc ocispec.Descriptor) (bool, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return false, err
	}
	ok, err := rp.Blobs().Exists(ctx, desc)
	if err != nil {
		return false, fmt.Errorf("checking %s@%s: %w", r.full(repo), desc.Digest, err)
	}
	return ok, nil
}

// Has says whether the backup holds the blob. A backup read with random
// access knows at once; a stream is read on until it reaches the blob or
// its end (what it passes on the way is kept for later reads).
func (l *Layout) Has(ctx context.Context, repo string, desc ocispec.Descriptor) (bool, error) {
	if err := desc.Digest.Validate(); err != nil {
		return false, fmt.Errorf("checking %q: %w", desc.Digest, err)
	}
	name := archive.BlobPath(desc.Digest)
	err := l.backend.stat(name, -1)
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case l.stream == nil:
		return true, nil
	}
	rc, err := l.stream.open(ctx, name, -1)
	if errors.Is(err, errdef.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rc.Close() // a member closed before a byte is read stays for the next reader
	return true, nil
}
