package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/archivetest"
	"github.com/regvault/regvault/registrytest"
)

// withIndex returns the members of a backup tar with index.json replaced
// by what edit makes of it.
func withIndex(t *testing.T, ms []archivetest.Member, edit func(idx *ocispec.Index)) []archivetest.Member {
	t.Helper()
	out := make([]archivetest.Member, 0, len(ms))
	for _, m := range ms {
		if m.Hdr.Name == "index.json" {
			var idx ocispec.Index
			if err := json.Unmarshal(m.Data, &idx); err != nil {
				t.Fatal(err)
			}
			edit(&idx)
			data, err := json.Marshal(idx)
			if err != nil {
				t.Fatal(err)
			}
			h := *m.Hdr
			m = archivetest.Member{Hdr: &h, Data: data}
		}
		out = append(out, m)
	}
	return out
}

// Two index.json members in one tar: every reader refuses the archive
// (verify read the second one and said it could be restored, while
// restore and manifest fetch refused it).
func TestArchiveTwoIndexes(t *testing.T) {
	src, sample := sampleRegistry(t)
	good := filepath.Join(t.TempDir(), "good.tar")
	backupSample(t, src, good, allRepos...)
	ms := archivetest.ReadTar(t, good)
	// The second index.json lists one tag fewer: a reader that takes it
	// sees another backup.
	second := withIndex(t, ms, func(idx *ocispec.Index) { idx.Manifests = idx.Manifests[1:] })
	var extra archivetest.Member
	for _, m := range second {
		if m.Hdr.Name == "index.json" {
			extra = m
		}
	}
	dir := t.TempDir()
	for _, name := range []string{"two.tar", "two.tar.gz", "two.tar.zst"} {
		t.Run(name, func(t *testing.T) {
			in := archivetest.WriteTar(t, filepath.Join(dir, name), append(ms[:len(ms):len(ms)], extra))

			r := regvault(t, "", "verify", "--input", in)
			r.wantCode(t, exitFailure)
			wantContains(t, "stdout", r.stdout, `archive member "index.json" appears twice`)
			wantNotContains(t, "stdout", r.stdout, "The backup can be restored")

			dst := registrytest.NewInProcess(t)
			r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
			if r.code == exitOK {
				t.Fatalf("restore of an archive with two index.json exited 0")
			}
			wantContains(t, "stderr", r.stderr, `archive member "index.json" appears twice`)
			if name != "two.tar" {
				// A stream is refused when it reaches the second
				// index.json: after the content, before any tag.
				r.wantCode(t, exitFailure)
				for repo, tags := range sample.Tags {
					for tag := range tags {
						wantNoTag(t, dst, repo, tag)
					}
				}
				return
			}
			// A tar's members are all listed first: nothing is pushed.
			r.wantCode(t, exitUsage)
			if n := writes(dst); n != 0 {
				t.Errorf("restore made %d writes", n)
			}

			r = regvault(t, "", "manifest", "fetch", "--oci-layout-path", in, ref(src, registrytest.SampleFrontend)+":v1")
			if r.code == exitOK {
				t.Fatalf("manifest fetch of an archive with two index.json exited 0")
			}
			wantContains(t, "stderr", r.stderr, `archive member "index.json" appears twice`)
		})
	}
}

// A layout whose index.json names no tag (crane pull --format=oci writes
// one so): verify and restore give one verdict, and say what it lacks.
func TestArchiveNoTagNames(t *testing.T) {
	src, _ := sampleRegistry(t)
	good := filepath.Join(t.TempDir(), "good.tar")
	backupSample(t, src, good, registrytest.SampleFrontend)
	ms := withIndex(t, archivetest.ReadTar(t, good), func(idx *ocispec.Index) {
		for i := range idx.Manifests {
			idx.Manifests[i].Annotations = nil
		}
	})
	dir := t.TempDir()
	in := archivetest.WriteTar(t, filepath.Join(dir, "crane.tar"), ms)
	empty := archivetest.WriteTar(t, filepath.Join(dir, "empty.tar"), withIndex(t, ms, func(idx *ocispec.Index) { idx.Manifests = nil }))

	for _, tc := range []struct{ in, want string }{
		{in, "index.json names no tag: none of its 4 manifest(s) has an org.opencontainers.image.ref.name annotation"},
		{empty, "index.json lists nothing: the backup is empty, there is nothing to restore"},
	} {
		r := regvault(t, "", "verify", "--input", tc.in)
		r.wantCode(t, exitFailure)
		wantContains(t, "stdout", r.stdout, tc.want)
		wantNotContains(t, "stdout", r.stdout, "The backup can be restored")
		wantContains(t, "stderr", r.stderr, "cannot be restored")

		dst := registrytest.NewInProcess(t)
		r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", tc.in, dst.Host())
		r.wantCode(t, exitUsage)
		wantContains(t, "stderr", r.stderr, tc.want)
		if tc.in == in {
			wantContains(t, "stderr", r.stderr, "oras tag --oci-layout")
		}
	}
}

// dockerImage is one image of a docker save archive: its names (as given
// to docker save) and its layers.
type dockerImage struct {
	names  []string // docker.io/library/alpine:3.19
	layers [][]byte
}

// dockerSave builds the members of an archive as `docker save` of Docker 25
// and later writes it (image/tarexport/save.go of moby): an OCI layout
// whose index.json entries carry io.containerd.image.name (the full name)
// and org.opencontainers.image.ref.name (the tag alone), plus the
// manifest.json and repositories of the older docker load format;
// uncompressed layers, each with a legacy v1 config blob nothing refers
// to; directories first, then the files in lexical order, as
// archive.Tar of the export directory gives them. It returns the members
// and each name's manifest descriptor.
func dockerSave(t *testing.T, images ...dockerImage) ([]archivetest.Member, map[string]ocispec.Descriptor) {
	t.Helper()
	blobs := map[string][]byte{}
	add := func(data []byte) digest.Digest {
		d := digest.FromBytes(data)
		blobs["blobs/sha256/"+d.Encoded()] = data
		return d
	}
	type item struct {
		Config       string
		RepoTags     []string
		Layers       []string
		LayerSources map[string]any `json:",omitempty"`
	}
	var (
		items   []item
		entries []ocispec.Descriptor
		repos   = map[string]map[string]string{}
		byName  = map[string]ocispec.Descriptor{}
	)
	platform := &ocispec.Platform{Architecture: "amd64", OS: "linux"}
	for _, img := range images {
		var diffIDs []string
		var layers []ocispec.Descriptor
		var paths []string
		for i, l := range img.layers {
			d := add(l)
			diffIDs = append(diffIDs, d.String())
			layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: int64(len(l))})
			paths = append(paths, "blobs/sha256/"+d.Encoded())
			add([]byte(fmt.Sprintf(`{"id":"%064d","created":"1970-01-01T00:00:00Z","container_config":{}}`, i)))
		}
		cfg, _ := json.Marshal(map[string]any{
			"architecture": "amd64", "os": "linux", "config": map[string]any{},
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		cfgDigest := add(cfg)
		m, _ := json.Marshal(ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfg)), Platform: platform},
			Layers:    layers,
		})
		md := add(m)
		it := item{Config: "blobs/sha256/" + cfgDigest.Encoded(), Layers: paths}
		for _, name := range img.names {
			repo, tag := archive.SplitRef(name)
			familiar := strings.TrimPrefix(strings.TrimPrefix(repo, "docker.io/"), "library/")
			it.RepoTags = append(it.RepoTags, familiar+":"+tag)
			if repos[familiar] == nil {
				repos[familiar] = map[string]string{}
			}
			repos[familiar][tag] = strings.TrimPrefix(diffIDs[len(diffIDs)-1], "sha256:")
			desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m))}
			byName[name] = desc
			desc.Platform = platform
			desc.Annotations = map[string]string{archive.AnnotationImageName: name, ocispec.AnnotationRefName: tag}
			entries = append(entries, desc)
		}
		items = append(items, it)
	}
	encode := func(v any) []byte {
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	index, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: entries})
	files := map[string][]byte{
		"index.json":    index,
		"manifest.json": encode(items),
		"oci-layout":    []byte(`{"imageLayoutVersion": "1.0.0"}`),
		"repositories":  encode(repos),
	}
	for name, data := range blobs {
		files[name] = data
	}
	names := slices.Sorted(maps.Keys(files))
	ms := []archivetest.Member{
		{Hdr: &tar.Header{Name: "blobs/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{Hdr: &tar.Header{Name: "blobs/sha256/", Typeflag: tar.TypeDir, Mode: 0o755}},
	}
	for _, name := range names {
		ms = append(ms, archivetest.Member{Hdr: &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, Data: files[name]})
	}
	return ms, byName
}

// writeDir writes the members of an archive as a directory.
func writeDir(t *testing.T, dir string, ms []archivetest.Member) string {
	t.Helper()
	for _, m := range ms {
		p := filepath.Join(dir, filepath.FromSlash(m.Hdr.Name))
		if m.Hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, m.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// An archive of `docker save -o images.tar a b c` (Docker 25 and later)
// restores with Mode 1 and Mode 2 targets, named by
// io.containerd.image.name, into both registries of the test setup; its
// manifest.json and repositories are ignored with a note. (It was refused:
// archive member "manifest.json": unexpected file.)
func TestArchiveDockerSave(t *testing.T) {
	base := registrytest.Bytes("docker-save-base", 3000)
	ms, want := dockerSave(t,
		dockerImage{names: []string{"docker.io/library/alpine:3.19"}, layers: [][]byte{base}},
		dockerImage{names: []string{"docker.io/team/app:v1", "docker.io/team/app:latest"}, layers: [][]byte{base, registrytest.Bytes("app-v1", 2000)}},
		dockerImage{names: []string{"registry.example.com/tools/cli:1.0"}, layers: [][]byte{registrytest.Bytes("cli", 1000)}},
	)
	dir := t.TempDir()
	inputs := []string{
		archivetest.WriteTar(t, filepath.Join(dir, "images.tar"), ms),
		archivetest.WriteTar(t, filepath.Join(dir, "images.tar.gz"), ms),
		archivetest.WriteTar(t, filepath.Join(dir, "images.tar.zst"), ms),
		writeDir(t, filepath.Join(dir, "images"), ms),
	}
	targets := map[string]func(t *testing.T) *registrytest.Server{
		"inprocess": func(t *testing.T) *registrytest.Server { return registrytest.NewInProcess(t) },
		"distribution": func(t *testing.T) *registrytest.Server {
			return registrytest.NewDistribution(t, registrytest.DistConfig{})
		},
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			isDir := !strings.Contains(filepath.Base(in), ".tar")
			r := regvault(t, "", "verify", "--input", in)
			r.wantCode(t, exitOK)
			wantContains(t, "stdout", r.stdout,
				"✓ docker.io/library/alpine: complete, 1 tag",
				"✓ docker.io/team/app: complete, 2 tags",
				"✓ registry.example.com/tools/cli: complete, 1 tag",
				"The backup can be restored: 3 repositories, 4 tags")
			wantContains(t, "stderr", r.stderr, "ignoring manifest.json", "ignoring repositories")
			wantNotContains(t, "stdout", r.stdout, "Warnings")

			r = regvault(t, "", "repo", "ls", "--oci-layout-path", in)
			r.wantCode(t, exitOK)
			if r.stdout != "docker.io/library/alpine\ndocker.io/team/app\nregistry.example.com/tools/cli\n" {
				t.Errorf("repo ls:\n%s", r.stdout)
			}
			if !isDir {
				wantContains(t, "stderr", r.stderr, "ignoring manifest.json")
			}

			for kind, newTarget := range targets {
				if kind == "distribution" && strings.HasSuffix(in, ".gz") {
					continue // one stream form against distribution is enough
				}
				t.Run(kind, func(t *testing.T) {
					// Mode 1: everything, paths kept.
					dst := newTarget(t)
					r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
					r.wantCode(t, exitOK)
					if !isDir {
						wantContains(t, "stderr", r.stderr, "Note: "+in+": ignoring manifest.json")
					}
					wantTag(t, dst, "library/alpine", "3.19", want["docker.io/library/alpine:3.19"])
					wantTag(t, dst, "team/app", "v1", want["docker.io/team/app:v1"])
					wantTag(t, dst, "team/app", "latest", want["docker.io/team/app:latest"])
					wantTag(t, dst, "tools/cli", "1.0", want["registry.example.com/tools/cli:1.0"])

					// Mode 2: selected repositories and tags.
					dst2 := newTarget(t)
					r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in,
						dst2.Host()+"/library/alpine", dst2.Host()+"/team/app:v1")
					r.wantCode(t, exitOK)
					wantTag(t, dst2, "library/alpine", "3.19", want["docker.io/library/alpine:3.19"])
					wantTag(t, dst2, "team/app", "v1", want["docker.io/team/app:v1"])
					wantNoTag(t, dst2, "team/app", "latest")
					wantNoTag(t, dst2, "tools/cli", "1.0")
				})
			}
		})
	}
}
