package archive

import (
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
)

func TestKindOf(t *testing.T) {
	for name, want := range map[string]Kind{
		"-": Stdout, "b.tar": Tar, "B.TAR": Tar, "b.tar.gz": TarGzip, "b.tgz": TarGzip,
		"b.tar.zst": TarZstd, "b.tzst": TarZstd, "backup": Directory, "./dir/": Directory, "b.zip": Directory,
	} {
		require.Equal(t, want, KindOf(name), name)
	}
}

func TestSplitRef(t *testing.T) {
	for name, want := range map[string][2]string{
		"v1":                              {"", "v1"},
		"docker.io/library/alpine:3.19":   {"docker.io/library/alpine", "3.19"},
		"127.0.0.1:5000/demo/frontend:v2": {"127.0.0.1:5000/demo/frontend", "v2"},
		"localhost:5000/repo":             {"localhost:5000/repo", ""},
		"repo:tag":                        {"repo", "tag"},
	} {
		repo, tag := SplitRef(name)
		require.Equal(t, want, [2]string{repo, tag}, name)
	}
}

func entry(name string, d digest.Digest, repos string) ocispec.Descriptor {
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: 1}
	if name != "" {
		desc.Annotations = map[string]string{ocispec.AnnotationRefName: name}
	} else {
		desc.Annotations = map[string]string{AnnotationRepositories: repos}
	}
	return desc
}

// A second backup into a directory replaces tags of the same name, keeps
// the others, and unites a referrer's repositories.
func TestMerge(t *testing.T) {
	a, b, r := digest.FromString("a"), digest.FromString("b"), digest.FromString("r")
	old := ocispec.Index{Manifests: []ocispec.Descriptor{
		entry("reg/x:v1", a, ""), entry("reg/y:v1", a, ""), entry("", r, "reg/x"),
	}}
	add := ocispec.Index{Manifests: []ocispec.Descriptor{
		entry("reg/x:v1", b, ""), entry("", r, "reg/z"),
	}}
	got := Merge(old, add).Manifests
	require.Len(t, got, 3)
	require.Equal(t, "reg/x:v1", got[0].Annotations[ocispec.AnnotationRefName])
	require.Equal(t, b, got[0].Digest, "the newer tag wins")
	require.Equal(t, "reg/y:v1", got[1].Annotations[ocispec.AnnotationRefName])
	require.Equal(t, "reg/x,reg/z", got[2].Annotations[AnnotationRepositories])
}
