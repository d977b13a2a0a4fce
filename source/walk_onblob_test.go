package source_test

import (
	"context"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/source"
)

// OnBlob hears of a manifest's blobs largest first, whatever their order
// in the manifest: a listener that starts moving them (a backup's early
// copies) gives its first free slot to the largest.
func TestWalkTellsOfBlobsLargestFirst(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	// Each image lists the shared base layer first, then its own,
	// larger one.
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 64 << 10, LayerSize: 256 << 10})
	c, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	src := source.NewRegistry(c)
	ctx := context.Background()
	repo := sample.Repositories[0]
	var tag string
	for tag = range sample.Tags[repo] {
		break
	}
	desc, body, err := src.Resolve(ctx, repo, tag)
	require.NoError(t, err)
	var told []ocispec.Descriptor
	w := &source.Walker{Src: src, Graph: graph.New(srv.Host()), OnBlob: func(_ string, d ocispec.Descriptor) { told = append(told, d) }}
	require.NoError(t, w.Walk(ctx, repo, desc, body))
	require.GreaterOrEqual(t, len(told), 2, "config and layers told")
	for i := 1; i < len(told); i++ {
		require.GreaterOrEqual(t, told[i-1].Size, told[i].Size, "blob %d of %d told after a smaller one: %v", i, len(told), told)
	}
}
