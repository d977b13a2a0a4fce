package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/source"
)

// Interop tests: real oras and regctl binaries (installed by `make test`
// at the versions the Makefile pins, found through REGVAULT_ORAS and
// REGVAULT_REGCTL) read regvault's archives, and regvault reads theirs.

// peer returns the path of the peer tool that env names; the test is
// skipped when env is unset (run outside make) and fails when it names
// nothing runnable.
func peer(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		t.Skipf("%s is not set: this test runs a real %s binary; run it with `make test` (which installs %s and sets %s) or set %s to its path", env, name, name, env, env)
	}
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("%s=%s: %v", env, path, err)
	}
	return path
}

// runPeer runs a peer tool with a clean home (no credentials, no
// configuration of the machine) and returns its stdout; a non-zero exit
// fails the test.
func runPeer(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, errOut, err := runPeerResult(t, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n[stdout]\n%s[stderr]\n%s", filepath.Base(bin), strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func runPeerResult(t *testing.T, bin string, args ...string) (string, string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+home, "XDG_CONFIG_HOME="+home, "REGCTL_CONFIG="+filepath.Join(home, "regctl.json"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Minute): // a hang, not a timing
		_ = cmd.Process.Kill()
		err = <-done
		t.Fatalf("%s %s did not end in 5 minutes", filepath.Base(bin), strings.Join(args, " "))
	}
	t.Logf("%s %s\nerr %v\n[stdout]\n%s[stderr]\n%s", filepath.Base(bin), strings.Join(args, " "), err, truncate(out.String()), truncate(errOut.String()))
	return out.String(), errOut.String(), err
}

// indexNames returns the ref.name of every index.json entry of the layout
// directory dir ("" for an unnamed entry), in order.
func indexNames(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	var names []string
	for _, d := range idx.Manifests {
		names = append(names, d.Annotations[ocispec.AnnotationRefName])
	}
	return names
}

// tagSchemaName is the referrers tag schema's tag for a sha256 subject.
func tagSchemaName(d ocispec.Descriptor) string {
	return "sha256-" + d.Digest.Encoded()
}

// registryTags lists the tags of repo in s.
func registryTags(t *testing.T, s *registrytest.Server, repo string) []string {
	t.Helper()
	var tags []string
	err := registrytest.Repo(t, s, repo).Tags(t.Context(), "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	})
	if err != nil {
		t.Fatalf("tags of %s: %v", repo, err)
	}
	slices.Sort(tags)
	return tags
}

// orasBackup makes, with the oras binary, a backup of every tag of the
// sample's demo/backend in a distribution registry (no Referrers API: the
// referrers are kept in sha256-<hex> tag-schema indexes, which the tag
// list shows and oras backs up as tags), with --include-referrers.
func orasBackup(t *testing.T) (registrytest.Sample, string) {
	t.Helper()
	oras := peer(t, "REGVAULT_ORAS", "oras")
	src := registrytest.NewDistribution(t, registrytest.DistConfig{})
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	out := filepath.Join(t.TempDir(), "oras-backend")
	runPeer(t, oras, "backup", "--plain-http", "--no-tty", "--include-referrers", "--output", out, ref(src, registrytest.SampleBackend))
	names := indexNames(t, out)
	for _, rf := range sample.Referrers[registrytest.SampleBackend] {
		if !slices.Contains(names, tagSchemaName(rf.Subject)) {
			t.Fatalf("the oras backup has no %s entry (ref.names %q): not the archive this test is about", tagSchemaName(rf.Subject), names)
		}
	}
	return sample, out
}

// An oras backup made with --include-referrers holds the referrers as
// sha256-<hex> tags: those are not tags. repo tags does not list them,
// --exclude-referrers leaves them and the referrers out, and without it
// they come back as referrers (counted as such), not as tags.
func TestInteropOrasTagSchemaBackup(t *testing.T) {
	sample, in := orasBackup(t)
	checkTagSchemaBackup(t, sample, in)
}

// The same archive as oras backup writes it, made with oras-go (the
// library oras is built on), so that the check runs without the oras
// binary too: every tag of demo/backend (the sha256-<hex> tags
// included), each copied with its referrers into an oras-go OCI store.
func TestRestoreOrasStyleTagSchemaBackup(t *testing.T) {
	ctx := t.Context()
	src := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(false))
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	backend := registrytest.SampleBackend
	repo := registrytest.Repo(t, src, backend)
	in := filepath.Join(t.TempDir(), "oras-style")
	store, err := oci.NewWithContext(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	tags := registryTags(t, src, backend)
	for _, tag := range tags {
		if _, err := oras.ExtendedCopy(ctx, repo, tag, store, tag, oras.DefaultExtendedCopyOptions); err != nil {
			t.Fatalf("copying %s: %v", tag, err)
		}
	}
	// oras backup removes the store's working directory.
	if err := os.RemoveAll(filepath.Join(in, "ingest")); err != nil {
		t.Fatal(err)
	}
	names := indexNames(t, in)
	for _, rf := range sample.Referrers[backend] {
		if !slices.Contains(names, tagSchemaName(rf.Subject)) {
			t.Fatalf("no %s entry (ref.names %q): not the archive this test is about", tagSchemaName(rf.Subject), names)
		}
	}
	checkTagSchemaBackup(t, sample, in)
}

// checkTagSchemaBackup checks what regvault makes of in, a backup of the
// sample's demo/backend holding its referrers as sha256-<hex> tags.
func checkTagSchemaBackup(t *testing.T, sample registrytest.Sample, in string) {
	t.Helper()
	backend := registrytest.SampleBackend
	refs := sample.Referrers[backend]

	r := regvault(t, "", "repo", "tags", "--oci-layout-path", in, "any/name")
	r.wantCode(t, exitOK)
	if got := strings.Fields(r.stdout); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("repo tags: %q, want v1 v2", got)
	}
	r = regvault(t, "", "manifest", "fetch", "--oci-layout-path", in, "any/name:"+tagSchemaName(refs[0].Subject))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "is not in the backup", "Its tags:\n", "\n  v1 (sha256:", "\n  v2 (sha256:")
	wantNotContains(t, "stderr", r.stderr, "\n  sha256-")
	r = regvault(t, "", "verify", "--input", in)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "complete, 2 tags, 4 referrers\n",
		"The backup can be restored: 1 repository, 2 tags, 4 referrers; every blob is present and intact.")

	// --exclude-referrers: neither the tag-schema tags nor the referrers.
	dst := registrytest.NewInProcess(t)
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "--exclude-referrers", "-i", in, ref(dst, "x/backend"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Successfully restored 2 tag(s)")
	wantNotContains(t, "stdout", r.stdout, "sha256-")
	if got := registryTags(t, dst, "x/backend"); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("target tags after --exclude-referrers: %q, want v1 v2", got)
	}
	for _, rf := range refs {
		if got := referrersOf(t, dst, "x/backend", rf.Subject); len(got) != 0 {
			t.Errorf("--exclude-referrers: referrers of %s restored: %v", rf.Subject.Digest, got)
		}
	}

	// Without it, into a registry with the Referrers API: referrers, not
	// tags, and the report counts them.
	dst = registrytest.NewInProcess(t)
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "--format", "json", "-i", in, ref(dst, "x/backend"))
	r.wantCode(t, exitOK)
	out := parseRestoreJSON(t, r.stdout)
	if out.Tags != 2 || out.Referrers != len(refs) {
		t.Errorf("report: %d tag(s), %d referrer(s); want 2 and %d", out.Tags, out.Referrers, len(refs))
	}
	if got := registryTags(t, dst, "x/backend"); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Errorf("target tags: %q, want v1 v2 (the sha256-<hex> entries are referrers, not tags)", got)
	}
	wantSampleReferrers(t, dst, sample, backend, "x/backend")

	// Into a registry without it: the referrers, found through the tag
	// schema that the push maintains.
	dist := registrytest.NewDistribution(t, registrytest.DistConfig{})
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, ref(dist, "x/backend"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "✓ Restored "+dist.Host()+"/x/backend:v1 with 1 referrer(s)", "✓ Restored "+dist.Host()+"/x/backend:v2 with 3 referrer(s)")
	wantSampleReferrers(t, dist, sample, backend, "x/backend")
}

// oras discover finds a manifest of a layout by its index.json entries:
// the platform manifests inside a backed-up index are listed (unnamed),
// so that their referrers can be discovered by digest.
func TestInteropOrasDiscoverIndexChild(t *testing.T) {
	oras := peer(t, "REGVAULT_ORAS", "oras")
	src, sample := sampleRegistry(t)
	backend := registrytest.SampleBackend
	for _, form := range []struct{ name, out string }{
		{"tag-only", filepath.Join(t.TempDir(), "backend")},
		{"multi-repository", filepath.Join(t.TempDir(), "all")},
	} {
		t.Run(form.name, func(t *testing.T) {
			args := []string{"backup", "--plain-http", "--no-tty", "--include-referrers", "-o", form.out, ref(src, backend)}
			if form.name != "tag-only" {
				args = append(args, ref(src, registrytest.SampleFrontend))
			}
			regvault(t, "", args...).wantCode(t, exitOK)
			for _, rf := range sample.Referrers[backend] {
				out := runPeer(t, oras, "discover", "--format", "json", "--oci-layout", form.out+"@"+rf.Subject.Digest.String())
				if !strings.Contains(out, rf.Descriptor.Digest.String()) {
					t.Errorf("oras discover %s: referrer %s not listed:\n%s", rf.Subject.Digest, rf.Descriptor.Digest, out)
				}
			}
		})
	}
}

// regctl image copy --referrers finds the referrers of an OCI layout
// through sha256-<hex> tag-schema entries (as oras backups hold them):
// regvault archives have them, so the referrers come along.
func TestInteropRegctlCopyReferrers(t *testing.T) {
	regctl := peer(t, "REGVAULT_REGCTL", "regctl")
	src, sample := sampleRegistry(t)
	backend := registrytest.SampleBackend
	dir := filepath.Join(t.TempDir(), "backend")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--include-referrers", "-o", dir, ref(src, backend)).wantCode(t, exitOK)

	eachTarget(t, func(t *testing.T, dst *registrytest.Server) {
		for _, tag := range []string{"v1", "v2"} {
			runPeer(t, regctl, "--host", "reg="+dst.Host()+",tls=disabled",
				"image", "copy", "--referrers", "ocidir://"+dir+":"+tag, ref(dst, "copy/backend")+":"+tag)
			wantTag(t, dst, "copy/backend", tag, sample.Tags[backend][tag])
		}
		wantSampleReferrers(t, dst, sample, backend, "copy/backend")
	})
}

// oras restore still restores a single-repository regvault backup with its
// referrers, now that index.json lists more than tags and referrers (oras
// restores the sha256-<hex> entries as the tag-schema tags they are).
func TestInteropOrasRestoreRegvaultBackup(t *testing.T) {
	oras := peer(t, "REGVAULT_ORAS", "oras")
	src, sample := sampleRegistry(t)
	backend := registrytest.SampleBackend
	in := filepath.Join(t.TempDir(), "backend.tar")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--include-referrers", "-o", in, ref(src, backend)).wantCode(t, exitOK)
	eachTarget(t, func(t *testing.T, dst *registrytest.Server) {
		runPeer(t, oras, "restore", "--plain-http", "--no-tty", "--input", in, ref(dst, "oras/backend"))
		for _, tag := range []string{"v1", "v2"} {
			wantTag(t, dst, "oras/backend", tag, sample.Tags[backend][tag])
		}
		wantSampleReferrers(t, dst, sample, backend, "oras/backend")
	})
}

// eachTarget runs f against a fresh target of each kind: the in-process
// registry with the Referrers API and the distribution process, whose
// referrers live in the tag schema.
func eachTarget(t *testing.T, f func(t *testing.T, dst *registrytest.Server)) {
	t.Helper()
	for _, target := range []struct {
		name string
		dst  *registrytest.Server
	}{
		{"referrers API", registrytest.NewInProcess(t)},
		{"tag schema", registrytest.NewDistribution(t, registrytest.DistConfig{})},
	} {
		t.Run(target.name, func(t *testing.T) { f(t, target.dst) })
	}
}

// What oras discover and regctl look for, read with oras-go's OCI store
// (the one oras reads layouts with), so that it is checked without the
// binaries too: a platform manifest inside an index resolves by digest
// as a manifest (an index.json entry lists it) and its referrers are
// found; each subject's sha256-<hex> entry is an index of its referrers.
func TestBackupIndexEntriesForPeers(t *testing.T) {
	ctx := t.Context()
	src, sample := sampleRegistry(t)
	backend := registrytest.SampleBackend
	dir := filepath.Join(t.TempDir(), "backend")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--include-referrers", "-o", dir, ref(src, backend)).wantCode(t, exitOK)
	store, err := oci.NewWithContext(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, rf := range sample.Referrers[backend] {
		d, err := store.Resolve(ctx, rf.Subject.Digest.String())
		if err != nil || d.MediaType != rf.Subject.MediaType {
			t.Errorf("resolving %s: %s, %v; want a %s", rf.Subject.Digest, d.MediaType, err, rf.Subject.MediaType)
			continue
		}
		found, err := registry.Referrers(ctx, store, d, "")
		if err != nil || !slices.ContainsFunc(found, func(x ocispec.Descriptor) bool { return x.Digest == rf.Descriptor.Digest }) {
			t.Errorf("referrers of %s: %v, %v; want %s among them", rf.Subject.Digest, found, err, rf.Descriptor.Digest)
		}

		idx, err := store.Resolve(ctx, tagSchemaName(rf.Subject))
		if err != nil || idx.MediaType != ocispec.MediaTypeImageIndex {
			t.Errorf("%s: %s, %v; want an index", tagSchemaName(rf.Subject), idx.MediaType, err)
			continue
		}
		data, err := content.FetchAll(ctx, store, idx)
		if err != nil {
			t.Fatal(err)
		}
		var list ocispec.Index
		if err := json.Unmarshal(data, &list); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(list.Manifests, func(x ocispec.Descriptor) bool { return x.Digest == rf.Descriptor.Digest })
		if i < 0 || list.Manifests[i].ArtifactType != rf.Descriptor.ArtifactType || list.Manifests[i].Size != rf.Descriptor.Size {
			t.Errorf("%s lists %v; want %s (%s, %d bytes)", tagSchemaName(rf.Subject), list.Manifests, rf.Descriptor.Digest, rf.Descriptor.ArtifactType, rf.Descriptor.Size)
		}
	}
}

// tagSchemaBlobs is what a regvault backup at path (not stdin) holds
// besides the content it was made from: the referrers' tag-schema indexes
// that its index.json names, counted and totalled once each.
func tagSchemaBlobs(t *testing.T, path string) (int, int64) {
	t.Helper()
	l, err := source.OpenLayout(t.Context(), path, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seen := map[digest.Digest]bool{}
	var size int64
	for _, e := range l.Entries() {
		if e.TagSchema != "" && !seen[e.Desc.Digest] {
			seen[e.Desc.Digest] = true
			size += e.Desc.Size
		}
	}
	return len(seen), size
}

// sampleTagSchemaNames are the names a full-reference backup of the
// sample's repos gives the tag-schema indexes of their referrers: one per
// repository and subject.
func sampleTagSchemaNames(sample registrytest.Sample, host string, repos ...string) []string {
	var names []string
	for _, repo := range repos {
		for _, rf := range sample.Referrers[repo] {
			name := host + "/" + repo + ":" + tagSchemaName(rf.Subject)
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}
