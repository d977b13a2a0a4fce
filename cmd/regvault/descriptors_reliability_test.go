package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
)

// A descriptor in a manifest that no registry could take (a negative size,
// a digest that is not one or of an unknown algorithm, a media type that
// is not type/subtype) is damage in the manifests: restore refuses it in
// its planning pass, before anything is pushed (not one PUT, POST or PATCH
// on the target, not even the config blob that comes before the layer),
// with the manifest, the descriptor and what is wrong; --dry-run refuses
// it the same way instead of reporting the restore as fine. Every form of
// the backup (tar, directory, compressed stream) says the same.
func TestRestoreDamagedDescriptorsReliability(t *testing.T) {
	src, sample, in := sampleBackup(t)
	host := src.Host()
	good := &badArchive{t: t, ms: archivetest.ReadTar(t, in)}
	frontendV1 := sample.Tags[registrytest.SampleFrontend]["v1"]
	var config ocispec.Descriptor // frontend:v1's config
	for _, mem := range good.ms {
		if mem.Hdr.Name == archive.BlobPath(frontendV1.Digest) {
			var m ocispec.Manifest
			if err := json.Unmarshal(mem.Data, &m); err != nil {
				t.Fatal(err)
			}
			config = m.Config
		}
	}
	layer := func(b *badArchive) ocispec.Descriptor {
		return b.blob(ocispec.MediaTypeImageLayerGzip, []byte("a layer of 21 bytes.."))
	}
	// damaged writes a backup whose frontend:bad is an image manifest
	// with the config, then a layer that edit damages.
	damaged := func(edit func(l *ocispec.Descriptor)) (*badArchive, ocispec.Descriptor) {
		b := good.clone()
		l := layer(b)
		edit(&l)
		m := b.blob(ocispec.MediaTypeImageManifest, imageManifest(t, config, l))
		b.tag(host+"/demo/frontend:bad", m)
		return b, m
	}
	// damagedIndex writes a backup whose frontend:bad is an index with
	// frontend:v1, then a child that edit damages.
	damagedIndex := func(edit func(c *ocispec.Descriptor)) (*badArchive, ocispec.Descriptor) {
		b := good.clone()
		c := ocispec.Descriptor{MediaType: frontendV1.MediaType, Digest: frontendV1.Digest, Size: frontendV1.Size}
		edit(&c)
		idx := jsonOf(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
			Manifests: []ocispec.Descriptor{{MediaType: frontendV1.MediaType, Digest: frontendV1.Digest, Size: frontendV1.Size}, c}})
		m := b.blob(ocispec.MediaTypeImageIndex, idx)
		b.tag(host+"/demo/frontend:bad", m)
		return b, m
	}
	md5 := digest.Digest("md5:" + strings.Repeat("0", 32))
	tests := []struct {
		name string
		make func() (*badArchive, ocispec.Descriptor)
		want []string // besides the manifest's digest
	}{
		{"layer with a negative size", func() (*badArchive, ocispec.Descriptor) {
			return damaged(func(l *ocispec.Descriptor) { l.Size = -1 })
		}, []string{"layers[0]", "negative size -1"}},
		{"config with a negative size", func() (*badArchive, ocispec.Descriptor) {
			b := good.clone()
			c := config
			c.Size = -5
			m := b.blob(ocispec.MediaTypeImageManifest, imageManifest(t, c, layer(b)))
			b.tag(host+"/demo/frontend:bad", m)
			return b, m
		}, []string{"config", "negative size -5"}},
		{"layer digest of an unknown algorithm", func() (*badArchive, ocispec.Descriptor) {
			return damaged(func(l *ocispec.Descriptor) { l.Digest = md5 })
		}, []string{"layers[0]", `invalid digest "` + md5.String() + `"`, "unsupported digest algorithm"}},
		{"layer digest that is not one", func() (*badArchive, ocispec.Descriptor) {
			return damaged(func(l *ocispec.Descriptor) { l.Digest = "sha256:xyz" })
		}, []string{"layers[0]", `invalid digest "sha256:xyz"`}},
		{"layer media type that is not type/subtype", func() (*badArchive, ocispec.Descriptor) {
			return damaged(func(l *ocispec.Descriptor) { l.MediaType = "not a media type" })
		}, []string{"layers[0]", `invalid media type "not a media type"`}},
		{"layer without a media type", func() (*badArchive, ocispec.Descriptor) {
			return damaged(func(l *ocispec.Descriptor) { l.MediaType = "" })
		}, []string{"layers[0]", "no media type"}},
		{"index child with a negative size", func() (*badArchive, ocispec.Descriptor) {
			return damagedIndex(func(c *ocispec.Descriptor) { c.Size = -2 })
		}, []string{"manifests[1]", "negative size -2"}},
		{"index child media type that is not type/subtype", func() (*badArchive, ocispec.Descriptor) {
			return damagedIndex(func(c *ocispec.Descriptor) { c.MediaType = "application/" })
		}, []string{"manifests[1]", `invalid media type "application/"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, m := tc.make()
			dir := t.TempDir()
			inputs := map[string]string{
				"tar":       b.write(filepath.Join(dir, "b.tar")),
				"directory": b.writeDir(filepath.Join(dir, "layout")),
				"tar.zst":   b.write(filepath.Join(dir, "b.tar.zst")),
			}
			// verify agrees: the backup is damaged
			v := regvault(t, "", "verify", "--input", inputs["tar"])
			if v.code == exitOK {
				t.Errorf("verify: exit code 0 for a damaged backup")
			}
			wantContains(t, "verify: output", v.stdout+v.stderr, tc.want[len(tc.want)-1])
			for _, kind := range []string{"tar", "directory", "tar.zst"} {
				for _, dry := range []bool{false, true} {
					dst := registrytest.NewInProcess(t)
					args := []string{"restore", "--plain-http", "--no-tty", "-i", inputs[kind], dst.Host()}
					if dry {
						args = append(args, "--dry-run")
					}
					r := regvault(t, "", args...)
					what := kind
					if dry {
						what += ", --dry-run"
					}
					if r.code != exitFailure {
						t.Errorf("%s: exit code %d, want %d", what, r.code, exitFailure)
					}
					wantContains(t, what+": stderr", r.stderr, append([]string{"restore failed: ", "demo/frontend@" + m.Digest.String() + ": damaged manifest: "}, tc.want...)...)
					wantNotContains(t, what+": output", r.stdout+r.stderr, "panic", "goroutine ", "No changes were made")
					if n := pushedCount(dst); n != 0 {
						t.Errorf("%s: %d PUT/POST/PATCH/DELETE requests reached the target: %v", what, n, dst.Stats().Requests)
					}
				}
			}
		})
	}
}
