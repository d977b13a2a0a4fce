package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
)

// WriteManyTags writes an OCI layout directory at dir holding one
// repository, repo (registry/path), with tags tags over manifests small
// image manifests (one shared config and layer; tag i is manifest i %
// manifests), as a backup of one repository with many tags is. It is the
// input of the restore planning benchmark (planning must grow linearly
// with the tags) and of the tests that interrupt it.
func WriteManyTags(dir, repo string, tags, manifests int) error {
	blob := func(data []byte) (digest.Digest, error) {
		d := digest.FromBytes(data)
		p := filepath.Join(dir, filepath.FromSlash(archive.BlobPath(d)))
		return d, os.WriteFile(p, data, 0o644)
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), archive.LayoutFile, 0o644); err != nil {
		return err
	}
	configData := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layerData := []byte("one small layer shared by every tag")
	cd, err := blob(configData)
	if err != nil {
		return err
	}
	ld, err := blob(layerData)
	if err != nil {
		return err
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	var mds []ocispec.Descriptor
	for i := range min(tags, max(manifests, 1)) {
		m, err := json.Marshal(ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(configData))},
			Layers:      []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: ld, Size: int64(len(layerData))}},
			Annotations: map[string]string{"org.example.image": fmt.Sprint(i)},
		})
		if err != nil {
			return err
		}
		md, err := blob(m)
		if err != nil {
			return err
		}
		mds = append(mds, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m))})
	}
	for i := range tags {
		d := mds[i%len(mds)]
		d.Annotations = map[string]string{ocispec.AnnotationRefName: fmt.Sprintf("%s:v%06d", repo, i)}
		idx.Manifests = append(idx.Manifests, d)
	}
	data, err := archive.Marshal(idx)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.json"), data, 0o644)
}
