package archive

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestManifestChildren(t *testing.T) {
	d := func(mt, s string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(s), Size: 1}
	}
	cfg, l1, l2 := d("c", "cfg"), d("l", "l1"), d("l", "l2")
	img, blob := d(ocispec.MediaTypeImageManifest, "img"), d("application/octet-stream", "blob")
	subj := d(ocispec.MediaTypeImageManifest, "subject")

	kids, err := Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: &cfg, Layers: []ocispec.Descriptor{l1, l2}, Subject: &subj}.Children("")
	if err != nil {
		t.Fatal(err)
	}
	want := []Child{{cfg, RoleConfig}, {l1, RoleLayer}, {l2, RoleLayer}}
	if len(kids) != len(want) {
		t.Fatalf("image manifest: %d children, want %d (the subject is not one)", len(kids), len(want))
	}
	for i := range want {
		if kids[i].Desc.Digest != want[i].Desc.Digest || kids[i].Role != want[i].Role {
			t.Errorf("image manifest child %d: %v, want %v", i, kids[i], want[i])
		}
	}

	// The descriptor's media type wins over the one the manifest declares.
	kids, err = Manifest{MediaType: ocispec.MediaTypeImageManifest, Manifests: []ocispec.Descriptor{img, blob}}.Children(MediaTypeDockerManifestList)
	if err != nil || len(kids) != 2 || kids[0].Role != RoleManifest || kids[1].Role != RoleBlob {
		t.Errorf("index: %v, %v; want a manifest then a blob", kids, err)
	}
	kids, err = Manifest{Blobs: []ocispec.Descriptor{l1}}.Children(MediaTypeArtifactManifest)
	if err != nil || len(kids) != 1 || kids[0].Role != RoleBlob {
		t.Errorf("artifact manifest: %v, %v; want one blob", kids, err)
	}

	if _, err := (Manifest{}).Children(MediaTypeDockerManifest); !errors.Is(err, ErrNoConfig) {
		t.Errorf("no config: %v", err)
	}
	if _, err := (Manifest{}).Children(MediaTypeDockerSchema1Signed); !errors.Is(err, ErrSchema1) {
		t.Errorf("schema 1: %v", err)
	}
	var u *UnsupportedTypeError
	if _, err := (Manifest{}).Children(""); !errors.As(err, &u) || u.MediaType != "" || err.Error() != `unsupported manifest media type ""` {
		t.Errorf("no media type: %v", err)
	}

	for mt, want := range map[string]bool{
		ocispec.MediaTypeImageIndex: true, MediaTypeDockerSchema1: true, "": false, "application/octet-stream": false,
	} {
		if IsManifest(mt) != want {
			t.Errorf("IsManifest(%q) = %v", mt, !want)
		}
	}
	for mt, want := range map[string]bool{"": true, MediaTypeArtifactManifest: true, MediaTypeDockerSchema1: false} {
		if MayHaveSubject(mt) != want {
			t.Errorf("MayHaveSubject(%q) = %v", mt, !want)
		}
	}
}
