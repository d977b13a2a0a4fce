package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
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
		// 6: every index.json entry of the backup (tags, referrers, their tag-schema indexes), stripped of its name.
		{in, "index.json names no tag: none of its 6 manifest(s) has an org.opencontainers.image.ref.name annotation"},
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

// foreignImages pushes to repo of s: v1, an OCI image with a
// non-distributable layer the registry does not hold (urls only, as
// Windows base images); v2, one whose non-distributable layer the registry
// does hold; v3, a Docker image with a foreign layer it does not hold. It
// returns the tags' descriptors and the absent and present
// non-distributable layers.
func foreignImages(t *testing.T, s *registrytest.Server, repoName string) (tags map[string]ocispec.Descriptor, absent []ocispec.Descriptor, present ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	repo := registrytest.Repo(t, s, repoName)
	push := func(data []byte, mt string) ocispec.Descriptor {
		d, err := registrytest.PushBlob(ctx, repo, mt, data)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	image := func(tag, mt, configMT string, layers ...ocispec.Descriptor) ocispec.Descriptor {
		cfg := push([]byte(`{"architecture":"amd64","os":"windows","rootfs":{"type":"layers"},"tag":"`+tag+`"}`), configMT)
		m, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mt, "config": cfg, "layers": layers})
		if err != nil {
			t.Fatal(err)
		}
		d, err := registrytest.PushManifest(ctx, repo, tag, mt, m)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	foreign := func(mt string, data []byte) ocispec.Descriptor {
		d := registrytest.Descriptor(mt, data)
		d.URLs = []string{"https://example.com/layers/" + d.Digest.Encoded()}
		return d
	}
	own := push(registrytest.Bytes("own layer", 3000), ocispec.MediaTypeImageLayerGzip)
	nd := foreign("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", registrytest.Bytes("windows base", 5000))
	dockerForeign := foreign("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", registrytest.Bytes("windows docker base", 6000))
	present = foreign("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", registrytest.Bytes("mirrored base", 4000))
	push(registrytest.Bytes("mirrored base", 4000), present.MediaType)
	tags = map[string]ocispec.Descriptor{
		"v1": image("v1", ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, nd, own),
		"v2": image("v2", ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, present, own),
		"v3": image("v3", "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.container.image.v1+json", dockerForeign, own),
	}
	return tags, []ocispec.Descriptor{nd, dockerForeign}, present
}

// Non-distributable ("foreign") layers: a backup leaves out those the
// registry does not hold and says so (text, JSON, dry run), keeps those it
// does; verify takes the absent ones as expected; restore pushes the
// manifests without them, into both registries of the test setup. (Backup
// failed with "not found", and --dry-run said all was well.)
func TestArchiveNonDistributableLayers(t *testing.T) {
	src := registrytest.NewInProcess(t)
	tags, absent, present := foreignImages(t, src, "win/app")
	out := filepath.Join(t.TempDir(), "win.tar")

	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--dry-run", ref(src, "win/app"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"    ✓ v1 ("+shortDigest(tags["v1"].Digest)+") + 0 referrer(s), 3 artifacts, ",
		", 1 non-distributable layer(s) left out\n",
		"[DRY RUN] Left out 2 non-distributable layer(s) that the registry does not hold (foreign layers: clients fetch them from their URLs)")

	r = regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", out, ref(src, "win/app"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"  ✓ v1 (3/3 artifacts, ",
		"1 non-distributable layer(s) left out)\n",
		"Left out 2 non-distributable layer(s) that the registry does not hold")
	members := map[string]bool{}
	for _, m := range archivetest.ReadTar(t, out) {
		members[m.Hdr.Name] = true
	}
	for _, a := range absent {
		if members[archive.BlobPath(a.Digest)] {
			t.Errorf("the backup holds the absent layer %s", a.Digest)
		}
	}
	if !members[archive.BlobPath(present.Digest)] {
		t.Errorf("the backup lacks the non-distributable layer %s the registry holds", present.Digest)
	}

	r = regvault(t, "", "backup", "--plain-http", "--no-tty", "--format", "json", "-o", filepath.Join(t.TempDir(), "win2.tar"), ref(src, "win/app"))
	r.wantCode(t, exitOK)
	var js struct {
		Repositories []struct {
			NonDistributable int `json:"nonDistributableLeftOut"`
			Tags             []struct {
				Tag              string `json:"tag"`
				NonDistributable int    `json:"nonDistributableLeftOut"`
			} `json:"tags"`
		} `json:"repositories"`
		NonDistributable []struct {
			Digest string   `json:"digest"`
			URLs   []string `json:"urls"`
		} `json:"nonDistributableLeftOut"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.NonDistributable) != 2 || len(js.Repositories) != 1 || js.Repositories[0].NonDistributable != 2 ||
		len(js.NonDistributable[0].URLs) != 1 {
		t.Errorf("JSON report: %+v", js)
	}

	r = regvault(t, "", "verify", "--input", out)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"  ✓ v1 ("+shortDigest(tags["v1"].Digest)+", 3 blobs, ",
		"; 1 non-distributable layer absent, as expected)\n",
		"2 non-distributable layers are not in the backup, as expected",
		"every blob is present and intact (2 non-distributable layers absent, as expected).")
	wantNotContains(t, "stdout", r.stdout, "missing")

	for kind, newTarget := range map[string]func(t *testing.T) *registrytest.Server{
		"inprocess": func(t *testing.T) *registrytest.Server { return registrytest.NewInProcess(t) },
		"distribution": func(t *testing.T) *registrytest.Server {
			return registrytest.NewDistribution(t, registrytest.DistConfig{AllowURLs: []string{"^https?://"}})
		},
	} {
		t.Run(kind, func(t *testing.T) {
			for _, in := range []string{out, archivetest.WriteTar(t, filepath.Join(t.TempDir(), "win.tar.zst"), archivetest.ReadTar(t, out))} {
				dst := newTarget(t)
				r := regvault(t, "", "restore", "--plain-http", "--no-tty", "--dry-run", "-i", in, dst.Host()+"/win/app")
				r.wantCode(t, exitOK)
				wantContains(t, "stdout", r.stdout, "[DRY RUN] Left out 2 non-distributable layer(s) that the backup does not hold")

				r = regvault(t, "", "restore", "--plain-http", "--no-tty", "--dry-run", "--format", "json", "-i", in, dst.Host()+"/win/app")
				r.wantCode(t, exitOK)
				var js restoreLeftOutReport
				if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
					t.Fatal(err)
				}
				if len(js.NonDistributable) != 2 || len(js.Targets) != 1 || len(js.Targets[0].Tags) != 3 {
					t.Fatalf("restore --format json: %+v", js)
				}
				for _, tg := range js.Targets[0].Tags {
					if want := map[string]int{"v1": 1, "v2": 0, "v3": 1}[tg.Tag]; tg.NonDistributable != want {
						t.Errorf("restore --format json: tag %s: %d left out, want %d", tg.Tag, tg.NonDistributable, want)
					}
				}

				r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host()+"/win/app")
				r.wantCode(t, exitOK)
				wantContains(t, "stdout", r.stdout, "Left out 2 non-distributable layer(s) that the backup does not hold")
				for tag, d := range tags {
					wantTag(t, dst, "win/app", tag, d)
				}
				ok, err := registrytest.Repo(t, dst, "win/app").Blobs().Exists(context.Background(), present)
				if err != nil || !ok {
					t.Errorf("the non-distributable layer the backup holds was not restored: %v", err)
				}
			}
		})
	}
}

// distribution as configured by default refuses every manifest whose
// layers have urls: the restore fails with a reason and what to do, and
// sets no tag.
func TestArchiveNonDistributableRefused(t *testing.T) {
	src := registrytest.NewInProcess(t)
	tags, _, _ := foreignImages(t, src, "win/app")
	out := filepath.Join(t.TempDir(), "win.tar")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", out, ref(src, "win/app")).wantCode(t, exitOK)
	dst := registrytest.NewDistribution(t, registrytest.DistConfig{})
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", out, dst.Host()+"/win/app")
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "invalid URL on layer",
		"refuses manifests whose non-distributable (foreign) layers it does not hold: allow their URLs (distribution: validation.manifests.urls.allow")
	for tag := range tags {
		wantNoTag(t, dst, "win/app", tag)
	}
}

// The --help of backup, restore and verify describe what these archives do.
func TestArchiveHelp(t *testing.T) {
	r := regvault(t, "", "backup", "--help")
	wantContains(t, "backup --help", r.stdout, "non-distributable", "left out")
	r = regvault(t, "", "restore", "--help")
	wantContains(t, "restore --help", r.stdout, "docker save", "io.containerd.image.name", "names no tag",
		"non-distributable", "validation.manifests.urls.allow", "a second index.json")
	r = regvault(t, "", "verify", "--help")
	wantContains(t, "verify --help", r.stdout, "two index.json", "names no tag", "expected, not missing", "docker save")
}

// A restore from a stream (.tar.zst, standard input) of an image with an
// absent non-distributable layer does not read the stream ahead at
// planning time: a large layer of another repository, after it in the
// archive, is not written to the stream's spool directory (Layout.Has
// read the stream to its end, spooling everything on the way, before the
// first push).
func TestArchiveNonDistributableStreamNotSpooled(t *testing.T) {
	src := registrytest.NewInProcess(t)
	tags, _, _ := foreignImages(t, src, "win/app")
	big := registrytest.Repo(t, src, "big/data")
	ctx := context.Background()
	const bigSize = 16 << 20
	layer, err := registrytest.PushBlob(ctx, big, ocispec.MediaTypeImageLayerGzip, registrytest.Bytes("big layer", bigSize))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := registrytest.PushBlob(ctx, big, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	if err != nil {
		t.Fatal(err)
	}
	// A large non-distributable layer the backup holds (the registry
	// mirrors it): moved like any other, after the rest of the stream.
	mirrored, err := registrytest.PushBlob(ctx, big, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", registrytest.Bytes("mirrored big base", 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	mirrored.URLs = []string{"https://example.com/layers/" + mirrored.Digest.Encoded()}
	m, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": cfg, "layers": []ocispec.Descriptor{mirrored, layer}})
	if err != nil {
		t.Fatal(err)
	}
	bigTag, err := registrytest.PushManifest(ctx, big, "v1", ocispec.MediaTypeImageManifest, m)
	if err != nil {
		t.Fatal(err)
	}
	zst := filepath.Join(t.TempDir(), "all.tar.zst")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", zst, ref(src, "win/app"), ref(src, "big/data"))
	r.wantCode(t, exitOK)
	raw, err := os.ReadFile(zst)
	if err != nil {
		t.Fatal(err)
	}

	for _, in := range []struct{ name, path, stdin string }{{"tar.zst", zst, ""}, {"stdin", "-", string(raw)}} {
		t.Run(in.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			// The stream's spool directory is TMPDIR/regvault-restore-*
			// (the transfer's own copies go to regvault-tee-*): its peak
			// size is what the stream wrote ahead of its readers.
			var peak atomic.Int64
			stop := make(chan struct{})
			polled := make(chan struct{})
			go func() {
				defer close(polled)
				for {
					var size int64
					dirs, _ := filepath.Glob(filepath.Join(tmp, "regvault-restore-*"))
					for _, d := range dirs {
						_ = filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
							if err == nil && !e.IsDir() {
								if fi, err := e.Info(); err == nil {
									size += fi.Size()
								}
							}
							return nil
						})
					}
					if size > peak.Load() {
						peak.Store(size)
					}
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}()
			dst := registrytest.NewInProcess(t)
			r := regvault(t, in.stdin, "restore", "--plain-http", "--no-tty", "-i", in.path, dst.Host())
			close(stop)
			<-polled
			r.wantCode(t, exitOK)
			wantContains(t, "stdout", r.stdout, "Left out 2 non-distributable layer(s) that the backup does not hold")
			for tag, d := range tags {
				wantTag(t, dst, "win/app", tag, d)
			}
			wantTag(t, dst, "big/data", "v1", bigTag)
			if ok, err := registrytest.Repo(t, dst, "big/data").Blobs().Exists(ctx, mirrored); err != nil || !ok {
				t.Errorf("the non-distributable layer the backup holds was not restored: %v", err)
			}
			// At most the mirrored layer is spooled: the stream passes it
			// before the transfer asks for it (after every other blob).
			if p, bound := peak.Load(), mirrored.Size+1<<20; p >= bound {
				t.Errorf("the stream spooled %d bytes ahead of its readers (the %d-byte layer read ahead at planning?), want < %d", p, bigSize, bound)
			}

			// Again: the layer left out at the end of the stream is not
			// something to push.
			r = regvault(t, in.stdin, "restore", "--plain-http", "--no-tty", "-i", in.path, dst.Host())
			r.wantCode(t, exitOK)
			wantContains(t, "stdout", r.stdout, "Nothing to push: every blob and tag is already in place (4 tags up to date).")

			// The counts of a report are those of a backup read with
			// random access.
			r = regvault(t, in.stdin, "restore", "--plain-http", "--no-tty", "--format", "json", "-i", in.path, registrytest.NewInProcess(t).Host())
			r.wantCode(t, exitOK)
			var js restoreLeftOutReport
			if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
				t.Fatal(err, r.stdout)
			}
			got := map[string]int{}
			for _, tg := range js.Targets {
				for _, x := range tg.Tags {
					got[x.Tag] += x.NonDistributable
				}
			}
			if len(js.NonDistributable) != 2 || !maps.Equal(got, map[string]int{"v1": 1, "v2": 0, "v3": 1}) {
				t.Errorf("restore --format json: %d left out, per tag %v\n%s", len(js.NonDistributable), got, r.stdout)
			}
		})
	}
}

// restoreLeftOutReport is what the non-distributable tests read of
// restore --format json: per tag and in all, the layers left out.
type restoreLeftOutReport struct {
	Targets []struct {
		Tags []struct {
			Tag              string `json:"tag"`
			NonDistributable int    `json:"nonDistributableLeftOut"`
		} `json:"tags"`
	} `json:"targets"`
	NonDistributable []struct {
		Digest string `json:"digest"`
	} `json:"nonDistributableLeftOut"`
}
