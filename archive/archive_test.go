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

// A tag-schema entry (sha256-<hex>, a referrers list) whose digest changed
// is not a moved tag; a tag is.
func TestMovedTags(t *testing.T) {
	a, b := digest.FromString("a"), digest.FromString("b")
	ts := "sha256-" + digest.FromString("subject").Encoded()
	old := ocispec.Index{Manifests: []ocispec.Descriptor{entry("v1", a, ""), entry("v2", a, ""), entry(ts, a, "")}}
	add := ocispec.Index{Manifests: []ocispec.Descriptor{entry("v1", b, ""), entry("v2", a, ""), entry(ts, b, "")}}
	for i := range old.Manifests {
		if i == 2 {
			old.Manifests[i].MediaType = ocispec.MediaTypeImageIndex
			add.Manifests[i].MediaType = ocispec.MediaTypeImageIndex
		}
	}
	require.Equal(t, []Moved{{Name: "v1", From: a, To: b}}, MovedTags(old, add))
}

// CheckAdd: the same repository only, and one kind of names.
func TestCheckAdd(t *testing.T) {
	a := digest.FromString("a")
	tagOnly := ocispec.Index{Annotations: map[string]string{AnnotationRepository: "reg/x"}, Manifests: []ocispec.Descriptor{entry("v1", a, "")}}
	unrecorded := ocispec.Index{Manifests: []ocispec.Descriptor{entry("v1", a, "")}}
	full := ocispec.Index{Manifests: []ocispec.Descriptor{entry("reg/x:v1", a, "")}}
	empty := ocispec.Index{}
	var mix *MixError
	for _, c := range []struct {
		name    string
		old     ocispec.Index
		fullRef bool
		repo    string
		ok      bool
	}{
		{"same repository", tagOnly, false, "reg/x", true},
		{"another repository", tagOnly, false, "reg/y", false},
		{"full into tag-only", tagOnly, true, "", false},
		{"unrecorded", unrecorded, false, "reg/x", false},
		{"full into unrecorded", unrecorded, true, "", false},
		{"tag-only into full", full, false, "reg/x", false},
		{"full into full", full, true, "", true},
		{"into empty", empty, false, "reg/x", true},
		{"full into empty", empty, true, "", true},
	} {
		err := CheckAdd(c.old, c.fullRef, c.repo)
		if c.ok {
			require.NoError(t, err, c.name)
		} else {
			require.ErrorAs(t, err, &mix, c.name)
		}
	}
}
