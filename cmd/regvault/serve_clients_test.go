package main

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/registrytest"
)

// Real clients pull from `regvault serve`: the digests they get are the
// source registry's.

// sampleImages picks from the sample an OCI index (demo/backend:v2), the
// amd64 image of it (which has a signature referrer, which has a
// timestamp referrer), a Docker manifest list (library/base:1.1) and a
// Docker image of it.
type sampleImages struct {
	index, indexChild, dockerList, dockerImage ocispec.Descriptor
	signature, timestamp                       ocispec.Descriptor
}

// servedRef is a reference a client is given and the manifest it names.
type servedRef struct {
	ref  string
	want ocispec.Descriptor
}

// refs are the references every client resolves, as at spells a
// repository and a ":tag" or "@digest": the OCI index, the Docker
// manifest list and a Docker image by digest.
func (p sampleImages) refs(at func(repo, ref string) string) []servedRef {
	return []servedRef{
		{at(registrytest.SampleBackend, ":v2"), p.index},
		{at(registrytest.SampleBase, ":1.1"), p.dockerList},
		{at(registrytest.SampleBase, "@"+p.dockerImage.Digest.String()), p.dockerImage},
	}
}

func pickSampleImages(t *testing.T, sample registrytest.Sample) sampleImages {
	t.Helper()
	var p sampleImages
	p.index = sample.Tags[registrytest.SampleBackend]["v2"]
	p.dockerList = sample.Tags[registrytest.SampleBase]["1.1"]
	if p.index.MediaType != ocispec.MediaTypeImageIndex || p.dockerList.MediaType != "application/vnd.docker.distribution.manifest.list.v2+json" {
		t.Fatalf("the sample changed: backend:v2 is %s, base:1.1 is %s", p.index.MediaType, p.dockerList.MediaType)
	}
	for _, r := range sample.Referrers[registrytest.SampleBackend] {
		if r.Subject.Digest != p.index.Digest && r.Subject.MediaType == ocispec.MediaTypeImageManifest && p.signature.Digest == "" {
			for _, r2 := range sample.Referrers[registrytest.SampleBackend] {
				if r2.Subject.Digest == r.Descriptor.Digest {
					p.indexChild, p.signature, p.timestamp = r.Subject, r.Descriptor, r2.Descriptor
				}
			}
		}
	}
	for _, d := range sample.Content[registrytest.SampleBase] {
		if d.MediaType == "application/vnd.docker.distribution.manifest.v2+json" {
			p.dockerImage = d
			break
		}
	}
	if p.signature.Digest == "" || p.timestamp.Digest == "" || p.dockerImage.Digest == "" {
		t.Fatalf("the sample has no referrer chain or Docker image: %+v", p)
	}
	return p
}

// TestServeOras: oras resolves, copies (with referrers) and discovers
// from a served backup.
func TestServeOras(t *testing.T) {
	bin := peer(t, "REGVAULT_ORAS", "oras")
	src, sample := sampleRegistry(t)
	srv := startServe(t, "--input", servedBackup(t, src, "sample.tar"))
	p := pickSampleImages(t, sample)
	at := func(repo, ref string) string { return srv.addr + "/" + repo + ref }

	for _, c := range p.refs(at) {
		var got ocispec.Descriptor
		if err := json.Unmarshal([]byte(runPeer(t, bin, "manifest", "fetch", "--plain-http", "--descriptor", c.ref)), &got); err != nil {
			t.Fatal(err)
		}
		if got.Digest != c.want.Digest || got.MediaType != c.want.MediaType {
			t.Errorf("oras manifest fetch %s: %s %s, the source's is %s %s", c.ref, got.MediaType, got.Digest, c.want.MediaType, c.want.Digest)
		}
	}

	// oras cp -r: the index, its platforms, layers and the referrer chain.
	dir := filepath.Join(t.TempDir(), "layout")
	runPeer(t, bin, "cp", "-r", "--from-plain-http", at(registrytest.SampleBackend, ":v2"), "--to-oci-layout", dir+":v2")
	store, err := oci.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := store.Resolve(ctx, "v2"); err != nil || got.Digest != p.index.Digest {
		t.Errorf("the layout oras cp wrote has v2 at %s (%v), want %s", got.Digest, err, p.index.Digest)
	}
	for _, d := range []ocispec.Descriptor{p.indexChild, p.signature, p.timestamp, sample.BaseLayer} {
		if ok, err := store.Exists(ctx, d); err != nil || !ok {
			t.Errorf("oras cp -r did not copy %s (%s): %v", d.Digest, d.MediaType, err)
		}
	}

	// oras discover: the signature of the amd64 image and its timestamp.
	out := runPeer(t, bin, "discover", "--plain-http", "--format", "json", at(registrytest.SampleBackend, "@"+p.indexChild.Digest.String()))
	for _, d := range []ocispec.Descriptor{p.signature, p.timestamp} {
		if !strings.Contains(out, d.Digest.String()) {
			t.Errorf("oras discover does not list %s (%s):\n%s", d.Digest, d.ArtifactType, out)
		}
	}
}

// TestServeRegctl: regctl reads digests and manifests of an index and of
// Docker-media-type images.
func TestServeRegctl(t *testing.T) {
	bin := peer(t, "REGVAULT_REGCTL", "regctl")
	src, sample := sampleRegistry(t)
	srv := startServe(t, "--input", servedBackup(t, src, "sample.tar"))
	p := pickSampleImages(t, sample)
	host := "--host=reg=" + srv.addr + ",tls=disabled"
	for _, c := range p.refs(func(repo, ref string) string { return srv.addr + "/" + repo + ref }) {
		if got := strings.TrimSpace(runPeer(t, bin, host, "image", "digest", c.ref)); got != c.want.Digest.String() {
			t.Errorf("regctl image digest %s: %s, the source's is %s", c.ref, got, c.want.Digest)
		}
		body := runPeer(t, bin, host, "manifest", "get", "--format", "raw-body", c.ref)
		if got := digest.FromString(body); got != c.want.Digest {
			t.Errorf("regctl manifest get %s: body of digest %s, the source's is %s", c.ref, got, c.want.Digest)
		}
	}
	// The platforms of the index, as regctl lists them.
	out := runPeer(t, bin, host, "manifest", "get", "--format", "{{range .Manifests}}{{.Platform.OS}}/{{.Platform.Architecture}} {{end}}", srv.addr+"/"+registrytest.SampleBackend+":v2")
	if strings.TrimSpace(out) != "linux/amd64 linux/arm64" {
		t.Errorf("regctl: the platforms of backend:v2 are %q", out)
	}
}

// TestServeCopyEqualsRestore: copying every tag with its referrers from
// the served backup into a registry (oras-go's ExtendedCopy, a registry
// client; and regvault copy) gives the target `regvault restore` of the
// file gives.
func TestServeCopyEqualsRestore(t *testing.T) {
	src, sample := sampleRegistry(t)
	tarPath := servedBackup(t, src, "sample.tar")
	srv := startServe(t, "--input", tarPath)
	viaServe := registrytest.NewInProcess(t)
	viaFile := registrytest.NewInProcess(t)
	viaCopy := registrytest.NewInProcess(t)
	regvault(t, "", "restore", "--plain-http", "--input", tarPath, viaFile.Host()).wantCode(t, exitOK)
	// regvault copy with the served backup as its source registry.
	regvault(t, "", "copy", "--from-plain-http", "--to-plain-http", "--include-referrers",
		srv.addr+"/"+registrytest.SampleBase, srv.addr+"/"+registrytest.SampleBackend, srv.addr+"/"+registrytest.SampleFrontend,
		viaCopy.Host()).wantCode(t, exitOK)
	ctx := context.Background()
	for _, name := range sample.Repositories {
		from := servedRepo(t, srv.addr, name)
		to := registrytest.Repo(t, viaServe, name)
		for tag := range sample.Tags[name] {
			if _, err := oras.ExtendedCopy(ctx, from, tag, to, tag, oras.DefaultExtendedCopyOptions); err != nil {
				t.Fatalf("copying %s:%s from the served backup: %v", name, tag, err)
			}
		}
		// ExtendedCopy copies the referrers of the tagged manifest; those
		// of an index's platform images come with a copy of each manifest
		// by digest (as oras cp -r does).
		for _, d := range sample.Content[name] {
			if archive.IsManifest(d.MediaType) {
				if _, err := oras.ExtendedCopy(ctx, from, d.Digest.String(), to, d.Digest.String(), oras.DefaultExtendedCopyOptions); err != nil {
					t.Fatalf("copying %s@%s from the served backup: %v", name, d.Digest, err)
				}
			}
		}
	}
	for _, via := range []struct {
		what string
		s    *registrytest.Server
	}{{"oras-go ExtendedCopy", viaServe}, {"regvault copy", viaCopy}} {
		t.Run(via.what, func(t *testing.T) { compareTargets(t, sample, via.s, viaFile) })
	}
}

// compareTargets fails unless the registry s, filled from the served
// backup, holds what viaFile, the restore of the file, holds: the tags,
// the referrers of each subject, the content.
func compareTargets(t *testing.T, sample registrytest.Sample, s, viaFile *registrytest.Server) {
	t.Helper()
	ctx := context.Background()
	for _, name := range sample.Repositories {
		a, b := registrytest.Repo(t, s, name), registrytest.Repo(t, viaFile, name)
		for tag, want := range sample.Tags[name] {
			da, err1 := a.Resolve(ctx, tag)
			db, err2 := b.Resolve(ctx, tag)
			if err1 != nil || err2 != nil || da.Digest != db.Digest || da.Digest != want.Digest {
				t.Errorf("%s:%s: copied %s (%v), via the file %s (%v), source %s", name, tag, da.Digest, err1, db.Digest, err2, want.Digest)
			}
		}
		for _, r := range sample.Referrers[name] {
			ra, rb := referrerDigests(t, a, r.Subject), referrerDigests(t, b, r.Subject)
			if !slices.Equal(ra, rb) || !slices.Contains(ra, r.Descriptor.Digest) {
				t.Errorf("%s: referrers of %s: copied %v, via the file %v", name, r.Subject.Digest, ra, rb)
			}
		}
		for _, d := range sample.Content[name] {
			okA, _ := a.Exists(ctx, d)
			okB, _ := b.Exists(ctx, d)
			if okA != okB || !okA {
				t.Errorf("%s@%s: in the copy %v, in the restore of the file %v", name, d.Digest, okA, okB)
			}
		}
	}
}

func referrerDigests(t *testing.T, repo interface {
	Referrers(context.Context, ocispec.Descriptor, string, func([]ocispec.Descriptor) error) error
}, subject ocispec.Descriptor) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	if err := repo.Referrers(context.Background(), subject, "", func(rs []ocispec.Descriptor) error {
		for _, r := range rs {
			out = append(out, r.Digest)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestServeCrane: crane reads digests and manifests of an index and of a
// Docker-media-type image, pulls a tag into an OCI layout, lists the tags
// and the catalog of a served backup.
func TestServeCrane(t *testing.T) {
	bin := peer(t, "REGVAULT_CRANE", "crane")
	src, sample := sampleRegistry(t)
	srv := startServe(t, "--input", servedBackup(t, src, "sample.tar"))
	p := pickSampleImages(t, sample)
	at := func(repo, ref string) string { return srv.addr + "/" + repo + ref }
	for _, c := range p.refs(at) {
		if got := strings.TrimSpace(runPeer(t, bin, "digest", "--insecure", c.ref)); got != c.want.Digest.String() {
			t.Errorf("crane digest %s: %s, the source's is %s", c.ref, got, c.want.Digest)
		}
		if got := digest.FromString(runPeer(t, bin, "manifest", "--insecure", c.ref)); got != c.want.Digest {
			t.Errorf("crane manifest %s: body of digest %s, the source's is %s", c.ref, got, c.want.Digest)
		}
	}

	// crane pull --format=oci of the index's tag: the layout holds the
	// index, its platform images and the shared layer.
	dir := filepath.Join(t.TempDir(), "layout")
	runPeer(t, bin, "pull", "--insecure", "--format=oci", at(registrytest.SampleBackend, ":v2"), dir)
	store, err := oci.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, d := range []ocispec.Descriptor{p.index, p.indexChild, sample.BaseLayer} {
		if ok, err := store.Exists(ctx, d); err != nil || !ok {
			t.Errorf("crane pull did not write %s (%s) into the layout: %v", d.Digest, d.MediaType, err)
		}
	}
	if !strings.Contains(readFile(t, filepath.Join(dir, "index.json")), p.index.Digest.String()) {
		t.Errorf("the index.json crane pull wrote does not name %s:\n%s", p.index.Digest, readFile(t, filepath.Join(dir, "index.json")))
	}

	// crane ls and crane catalog: the source's tags and repositories.
	for _, name := range sample.Repositories {
		got := strings.Fields(runPeer(t, bin, "ls", "--insecure", srv.addr+"/"+name))
		if want := sortedKeys(sample.Tags[name]); !slices.Equal(got, want) {
			t.Errorf("crane ls %s: %v, the source has %v", name, got, want)
		}
	}
	got := strings.Fields(runPeer(t, bin, "catalog", "--insecure", srv.addr))
	want := slices.Sorted(slices.Values(sample.Repositories))
	if !slices.Equal(got, want) {
		t.Errorf("crane catalog: %v, the backup has %v", got, want)
	}
}

// TestServeSkopeo: skopeo inspects, lists and copies (--all) from a served
// backup. skopeo is a distribution package, not a Go module: the test runs
// where it is installed (bench installs it with apt-get), and never
// installs it.
func TestServeSkopeo(t *testing.T) {
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not on PATH (a distribution package, e.g. apt-get install skopeo; tests do not install it)")
	}
	src, sample := sampleRegistry(t)
	srv := startServe(t, "--input", servedBackup(t, src, "sample.tar"))
	p := pickSampleImages(t, sample)
	at := func(repo, ref string) string { return "docker://" + srv.addr + "/" + repo + ref }
	for _, c := range p.refs(at) {
		if got := digest.FromString(runPeer(t, bin, "inspect", "--raw", "--tls-verify=false", c.ref)); got != c.want.Digest {
			t.Errorf("skopeo inspect --raw %s: body of digest %s, the source's is %s", c.ref, got, c.want.Digest)
		}
	}
	var tags struct{ Tags []string }
	if err := json.Unmarshal([]byte(runPeer(t, bin, "list-tags", "--tls-verify=false", at(registrytest.SampleBase, ""))), &tags); err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(slices.Values(tags.Tags)), sortedKeys(sample.Tags[registrytest.SampleBase]); !slices.Equal(got, want) {
		t.Errorf("skopeo list-tags: %v, the source has %v", got, want)
	}
	// skopeo copy --all of the index into an OCI layout keeps its digest
	// (--preserve-digests refuses any conversion).
	dir := filepath.Join(t.TempDir(), "layout")
	runPeer(t, bin, "--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
		at(registrytest.SampleBackend, ":v2"), "oci:"+dir+":v2")
	store, err := oci.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := store.Resolve(ctx, "v2"); err != nil || got.Digest != p.index.Digest {
		t.Errorf("the layout skopeo copy wrote has v2 at %s (%v), want %s", got.Digest, err, p.index.Digest)
	}
	for _, d := range []ocispec.Descriptor{p.indexChild, sample.BaseLayer} {
		if ok, err := store.Exists(ctx, d); err != nil || !ok {
			t.Errorf("skopeo copy --all did not copy %s (%s): %v", d.Digest, d.MediaType, err)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
