package registrytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// Docker media types, for content pushed as Docker v2 schema 2.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Artifact types used by the fixtures' referrers.
const (
	ArtifactTypeSBOM      = "application/spdx+json"
	ArtifactTypeSignature = "application/vnd.cncf.notary.signature"
	ArtifactTypeTimestamp = "application/vnd.regvault.test.timestamp.v1+json"
)

// createdAnnotation is a fixed creation time: fixtures are the same bytes
// on every run.
const createdAnnotation = "2024-01-01T00:00:00Z"

// Bytes is n bytes of deterministic pseudo-random content: the same seed
// and n give the same bytes on every run and machine, different seeds give
// unrelated bytes. Bytes(s, n) is a prefix of Bytes(s, m) for n < m.
func Bytes(seed string, n int) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(NewReader(seed, int64(n)), b)
	return b
}

// NewReader streams the content of Bytes(seed, n) without holding it in
// memory, for large blobs.
func NewReader(seed string, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(sha256.Sum256([]byte(seed))), n)
}

// Descriptor is the descriptor of data with this media type.
func Descriptor(mediaType string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

// PushBlob pushes data as a blob, unless the repository already has it,
// and returns its descriptor.
func PushBlob(ctx context.Context, repo *remote.Repository, mediaType string, data []byte) (ocispec.Descriptor, error) {
	desc := Descriptor(mediaType, data)
	ok, err := repo.Blobs().Exists(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if ok {
		return desc, nil
	}
	if err := repo.Blobs().Push(ctx, desc, bytes.NewReader(data)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pushing blob %s: %w", desc.Digest, err)
	}
	return desc, nil
}

// PushManifest pushes manifest content of this media type, tagged with
// tag, or by digest only when tag is "". Manifests with a subject are
// indexed by oras-go: with the referrers tag schema when the registry has
// no Referrers API.
func PushManifest(ctx context.Context, repo *remote.Repository, tag, mediaType string, content []byte) (ocispec.Descriptor, error) {
	desc := Descriptor(mediaType, content)
	var err error
	if tag == "" {
		err = repo.Push(ctx, desc, bytes.NewReader(content))
	} else {
		err = repo.PushReference(ctx, desc, bytes.NewReader(content), tag)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s: %w", desc.Digest, err)
	}
	return desc, nil
}

// Image describes an image manifest for PushImageSpec.
type Image struct {
	// Docker pushes a Docker v2 schema 2 manifest instead of an OCI one.
	Docker bool
	// Platform goes into the config and the returned descriptor;
	// nil means linux/amd64.
	Platform *ocispec.Platform
	// Layers are the layer blobs, as given (not real tarballs).
	Layers [][]byte
	// Annotations of the manifest (OCI only).
	Annotations map[string]string
}

// PushImage pushes an OCI image manifest for linux/amd64 with a config and
// the given layers, tagged with tag ("" for by digest only).
func PushImage(ctx context.Context, repo *remote.Repository, tag string, layers ...[]byte) (ocispec.Descriptor, error) {
	d, _, err := pushImage(ctx, repo, tag, Image{Layers: layers})
	return d, err
}

// PushImageSpec pushes the image img, tagged with tag ("" for by digest
// only). The returned descriptor carries the platform, ready for PushIndex
// or PushDockerManifestList.
func PushImageSpec(ctx context.Context, repo *remote.Repository, tag string, img Image) (ocispec.Descriptor, error) {
	d, _, err := pushImage(ctx, repo, tag, img)
	return d, err
}

// PushIndex pushes an OCI image index of children (already pushed, with
// their platforms in the descriptors), tagged with tag ("" for by digest).
func PushIndex(ctx context.Context, repo *remote.Repository, tag string, children ...ocispec.Descriptor) (ocispec.Descriptor, error) {
	return pushIndex(ctx, repo, tag, ocispec.MediaTypeImageIndex, children)
}

// PushDockerManifestList pushes a Docker manifest list of children
// (Docker manifests pushed with Image.Docker, with their platforms).
func PushDockerManifestList(ctx context.Context, repo *remote.Repository, tag string, children ...ocispec.Descriptor) (ocispec.Descriptor, error) {
	return pushIndex(ctx, repo, tag, MediaTypeDockerManifestList, children)
}

// PushDockerImage pushes a Docker v2 schema 2 manifest for platform with a
// Docker config and the layers (as Docker layers).
func PushDockerImage(ctx context.Context, repo *remote.Repository, tag string, platform ocispec.Platform, layers ...[]byte) (ocispec.Descriptor, error) {
	d, _, err := pushImage(ctx, repo, tag, Image{Docker: true, Platform: &platform, Layers: layers})
	return d, err
}

// PushReferrer pushes an OCI image manifest that refers to subject: an
// artifact of artifactType (as the manifest's artifactType and its one
// layer's media type) holding payload, with the empty config. It works
// with and without the Referrers API: without it, oras-go updates the
// sha256-<hex> referrers tag-schema index. The returned descriptor carries
// the artifactType and annotations, as a referrers listing shows them.
func PushReferrer(ctx context.Context, repo *remote.Repository, subject ocispec.Descriptor, artifactType string, payload []byte) (ocispec.Descriptor, error) {
	d, _, err := pushReferrer(ctx, repo, subject, artifactType, payload)
	return d, err
}

func pushImage(ctx context.Context, repo *remote.Repository, tag string, img Image) (ocispec.Descriptor, []ocispec.Descriptor, error) {
	platform := ocispec.Platform{Architecture: "amd64", OS: "linux"}
	if img.Platform != nil {
		platform = *img.Platform
	}
	manifestType, configType, layerType := ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip
	if img.Docker {
		manifestType, configType, layerType = MediaTypeDockerManifest, MediaTypeDockerConfig, MediaTypeDockerLayer
	}
	var parts []ocispec.Descriptor
	layers := make([]ocispec.Descriptor, 0, len(img.Layers))
	diffIDs := make([]digest.Digest, 0, len(img.Layers))
	for _, l := range img.Layers {
		d, err := PushBlob(ctx, repo, layerType, l)
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		layers = append(layers, d)
		diffIDs = append(diffIDs, d.Digest)
	}
	config := ocispec.Image{Platform: platform, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	configDesc, err := PushBlob(ctx, repo, configType, configJSON)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	parts = append(parts, configDesc)
	parts = append(parts, layers...)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manifestType,
		Config:    configDesc,
		Layers:    layers,
	}
	if !img.Docker {
		m.Annotations = img.Annotations
	}
	content, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc, err := PushManifest(ctx, repo, tag, manifestType, content)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc.Platform = &platform
	return desc, append(parts, desc), nil
}

func pushIndex(ctx context.Context, repo *remote.Repository, tag, mediaType string, children []ocispec.Descriptor) (ocispec.Descriptor, error) {
	manifests := make([]ocispec.Descriptor, len(children))
	for i, c := range children {
		manifests[i] = ocispec.Descriptor{MediaType: c.MediaType, Digest: c.Digest, Size: c.Size, Platform: c.Platform}
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mediaType, Manifests: manifests}
	content, err := json.Marshal(idx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return PushManifest(ctx, repo, tag, mediaType, content)
}

func pushReferrer(ctx context.Context, repo *remote.Repository, subject ocispec.Descriptor, artifactType string, payload []byte) (ocispec.Descriptor, []ocispec.Descriptor, error) {
	empty, err := PushBlob(ctx, repo, ocispec.MediaTypeEmptyJSON, ocispec.DescriptorEmptyJSON.Data)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	layer, err := PushBlob(ctx, repo, artifactType, payload)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	layer.Annotations = map[string]string{ocispec.AnnotationTitle: "payload"}
	annotations := map[string]string{ocispec.AnnotationCreated: createdAnnotation}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations:  annotations,
	}
	content, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc, err := PushManifest(ctx, repo, "", ocispec.MediaTypeImageManifest, content)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc.ArtifactType = artifactType
	desc.Annotations = annotations
	empty.Data = nil
	layer.Annotations = nil
	return desc, []ocispec.Descriptor{empty, layer, desc}, nil
}
