// Package source is where a run's content comes from: a registry for a
// backup, an OCI image layout for a restore. It also walks a source's
// content graph (manifests, their children, referrers).
package source

import (
	"context"
	"errors"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Source is read access to the repositories of one registry (or one
// backup). Repository names are paths without the registry host.
type Source interface {
	// Tags lists every tag of repo.
	Tags(ctx context.Context, repo string) ([]string, error)
	// Resolve returns the manifest a tag points at, with its bytes.
	Resolve(ctx context.Context, repo, tag string) (ocispec.Descriptor, []byte, error)
	// Fetch opens any content of repo by descriptor. The caller verifies
	// digest and size.
	Fetch(ctx context.Context, repo string, desc ocispec.Descriptor) (io.ReadCloser, error)
	// Referrers lists the manifests whose subject is desc.
	Referrers(ctx context.Context, repo string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error)
}

// RangeFetcher is a Source that can read part of a blob, so that one large
// blob can come over several connections at once.
type RangeFetcher interface {
	// FetchRange opens the length bytes of desc that start at off. It
	// returns ErrRangeUnsupported when the source serves whole blobs only.
	FetchRange(ctx context.Context, repo string, desc ocispec.Descriptor, off, length int64) (io.ReadCloser, error)
}

// ErrRangeUnsupported says a source answered a range request with the
// whole blob.
var ErrRangeUnsupported = errors.New("the registry does not serve byte ranges")
