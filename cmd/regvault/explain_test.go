package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
)

// A manifest the source no longer has when the transfer fetches it by
// digest is said to be that, with what to do: not "tag not found", which
// points at the tag names the user gave.
func TestManifestNotFoundDuringTransferExplained(t *testing.T) {
	dg := digest.FromString("gone")
	err := &pipeline.TransferError{
		Kind:   graph.KindManifest,
		Desc:   ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dg, Size: 4},
		Repos:  []string{"demo/frontend"},
		Source: true,
		Err:    fmt.Errorf("fetching registry.example/demo/frontend@%s: %s: %w", dg, dg, errdef.ErrNotFound),
	}
	if got, want := reason(err), "manifest not found in the registry"; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
	recs := strings.Join(recommendations("registry.example", []error{err}), "\n")
	wantContains(t, "recommendations", recs, "A manifest that the repository's tags or indexes name is missing from registry.example", "back the repository up again")
	wantNotContains(t, "recommendations", recs, "Check the tag names")
}
