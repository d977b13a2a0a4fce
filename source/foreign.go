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
// it: the walk asks it of non-distributable layers. Has returns
// ErrNotKnownYet when the source can tell only later (a stream not read
// that far): the walk then keeps the layer as optional (graph.AddOptional).
type Holder interface {
	Has(ctx context.Context, repo string, desc ocispec.Descriptor) (bool, error)
}

// ErrNotKnownYet is Has's answer on a stream that has not reached the blob:
// reading on to find out would spool everything on the way before the
// first push. Fetch tells later: the blob, or not found at the end.
var ErrNotKnownYet = errors.New("not known before the stream is read that far")

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
// access knows at once; a stream knows only the members it has passed (and,
// once ended, every member): for a blob further on it does not read ahead
// but returns ErrNotKnownYet.
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
	case l.stream == nil || l.stream.reached(name):
		return true, nil
	}
	return false, ErrNotKnownYet
}
