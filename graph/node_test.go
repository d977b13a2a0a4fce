package graph

import (
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A node is read where it was reached: in a backup that is its
// repositories (no second list); in a restore or copy, the source
// repositories that reached it, including one named like its target.
func TestNodeSources(t *testing.T) {
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("layer"), Size: 5}

	backup := New("example.com")
	backup.AddNode("b", d, KindLayer)
	n, _ := backup.AddNode("a", d, KindLayer)
	if n.From != nil || !slices.Equal(n.Sources(), []string{"a", "b"}) {
		t.Errorf("backup: From %v, Sources %v; want nil, [a b]", n.From, n.Sources())
	}
	backup.RemoveRepo("a")
	if !slices.Equal(n.Sources(), []string{"b"}) {
		t.Errorf("backup after removing a: Sources %v, want [b]", n.Sources())
	}

	restore := New("")
	first, _ := restore.AddNodeFrom("t/y", "h/z", ocispec.Descriptor{Digest: digest.FromString("other"), Size: 5}, KindLayer)
	if !slices.Equal(first.Sources(), []string{"h/z"}) {
		t.Errorf("restore, first reached from another name: Sources %v, want [h/z]", first.Sources())
	}
	// restored to where it was backed up from: target and source alike
	restore.AddNodeFrom("h/x", "h/x", d, KindLayer)
	n, _ = restore.AddNodeFrom("t/y", "h/z", d, KindLayer)
	if !slices.Equal(n.Repos, []string{"h/x", "t/y"}) || !slices.Equal(n.Sources(), []string{"h/x", "h/z"}) {
		t.Errorf("restore: Repos %v, Sources %v; want [h/x t/y], [h/x h/z]", n.Repos, n.Sources())
	}
	restore.AddNodeFrom("t/y", "h/x", d, KindLayer)
	if !slices.Equal(n.Sources(), []string{"h/x", "h/z"}) {
		t.Errorf("restore: Sources %v after a source seen again, want [h/x h/z]", n.Sources())
	}
}
