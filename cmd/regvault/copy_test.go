package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/registrytest"
)

// copyArgs are the flags of a copy between plain-HTTP test registries.
func copyArgs(args ...string) []string {
	return append([]string{"copy", "--from-plain-http", "--to-plain-http", "--no-tty"}, args...)
}

// targetState is what a target registry holds under prefix for the
// sample's repositories: each tag's digest and each subject's referrers.
func targetState(t *testing.T, s *registrytest.Server, sample registrytest.Sample, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, repo := range sample.Repositories {
		target := prefix + repo
		for tag := range sample.Tags[repo] {
			d, err := registrytest.Repo(t, s, target).Resolve(t.Context(), tag)
			if err != nil {
				t.Errorf("%s:%s: %v", target, tag, err)
				continue
			}
			out[repo+":"+tag] = d.Digest.String()
		}
		for _, rf := range sample.Referrers[repo] {
			var refs []string
			for _, d := range referrersOf(t, s, target, rf.Subject) {
				refs = append(refs, d.Digest.String())
			}
			sort.Strings(refs)
			out[repo+" referrers of "+rf.Subject.Digest.String()] = strings.Join(refs, ",")
		}
	}
	return out
}

// emptyTMPDIR points the temporary directory at an empty one and fails
// the test, at its end, unless it is still empty: a copy writes nothing
// to disk.
func emptyTMPDIR(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	t.Cleanup(func() {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) > 0 {
			t.Errorf("a copy wrote to TMPDIR: %v %v", entries, err)
		}
	})
}

// A copy leaves in the target exactly what a backup and a restore of the
// same selection leave (tags, digests, referrers), into a registry with
// the Referrers API and into distribution (tag schema); it writes nothing
// to disk, and a second copy pushes nothing and says so.
func TestCopyEqualsBackupRestore(t *testing.T) {
	src, sample := sampleRegistry(t)
	var sources []string
	for _, repo := range sample.Repositories {
		sources = append(sources, ref(src, repo))
	}
	eachTarget(t, func(t *testing.T, dst *registrytest.Server) {
		in := filepath.Join(t.TempDir(), "apps.tar")
		backupSample(t, src, in, allRepos...)
		regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host()+"/br").wantCode(t, exitOK)
		want := targetState(t, dst, sample, "br/")

		emptyTMPDIR(t)
		r := regvault(t, "", copyArgs(append(append([]string{"--include-referrers"}, sources...), dst.Host()+"/cp")...)...)
		r.wantCode(t, exitOK)
		sh, dh := src.Host(), dst.Host()
		wantContains(t, "stdout", r.stdout,
			"Source registry: "+sh+"\n",
			"Found 3 repository(ies) with 6 tag(s):\n",
			"  - "+sh+"/demo/backend: v1, v2\n",
			"Mapping 3 repository(ies):\n",
			"  ✓ "+sh+"/demo/backend → "+dh+"/cp/demo/backend (2 tags)\n",
			"✓ Copied "+dh+"/cp/demo/backend:v2 with 3 referrer(s)\n",
			"Successfully copied 6 tag(s) from 3 repository(ies) to "+dh+" in ")
		if got := targetState(t, dst, sample, "cp/"); !equalMaps(got, want) {
			t.Errorf("copy left %v\nbackup+restore left %v", got, want)
		}

		dst.ResetStats()
		r = regvault(t, "", copyArgs(append(append([]string{"--include-referrers"}, sources...), dst.Host()+"/cp")...)...)
		r.wantCode(t, exitOK)
		if n := writes(dst); n != 0 {
			t.Errorf("a second identical copy made %d PUT/POST/PATCH/DELETE requests", n)
		}
		wantContains(t, "stdout", r.stdout, "Nothing to push: every blob and tag is already in place (6 tags up to date).\n")
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Within one registry a copy mounts every blob: none is downloaded.
func TestCopySameRegistryGetsNoBlob(t *testing.T) {
	src, sample := sampleRegistry(t)
	emptyTMPDIR(t)
	src.ResetStats()
	r := regvault(t, "", copyArgs("--include-referrers", ref(src, registrytest.SampleBackend), src.Host()+"/mirror/backend")...)
	r.wantCode(t, exitOK)
	if n := src.Stats().Count(http.MethodGet, registrytest.KindBlob); n != 0 {
		t.Errorf("a copy within one registry made %d blob GETs, want 0 (mounts)", n)
	}
	for tag, d := range sample.Tags[registrytest.SampleBackend] {
		wantTag(t, src, "mirror/backend", tag, d)
	}
	wantSampleReferrers(t, src, sample, registrytest.SampleBackend, "mirror/backend")
}

// --dry-run pushes nothing and says what the target lacks and the upload
// size; --format json is one object naming the source registry.
func TestCopyDryRunAndJSON(t *testing.T) {
	src, sample := sampleRegistry(t)
	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", copyArgs("--dry-run", ref(src, registrytest.SampleFrontend), dst.Host())...)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"[DRY RUN] The following operations would be performed:\n",
		"Registry: "+dst.Host()+"\n",
		"  Repository: demo/frontend\n",
		"[DRY RUN] Would copy 2 tag(s) from 1 repository(ies)\n",
		"[DRY RUN] Estimated upload size: ",
		"[DRY RUN] Already in the target registry: nothing; all of it would be uploaded\n",
		"No changes were made. Remove --dry-run to perform actual copy.\n")
	if n := writes(dst); n != 0 {
		t.Errorf("a dry run made %d writes", n)
	}

	r = regvault(t, "", copyArgs("--format", "json", ref(src, registrytest.SampleFrontend), dst.Host()+"/web")...)
	r.wantCode(t, exitOK)
	var js struct {
		Input     string `json:"input"`
		InputKind string `json:"inputKind"`
		Targets   []struct {
			Target string `json:"target"`
			Status string `json:"status"`
			Tags   []struct {
				Tag    string `json:"tag"`
				Source string `json:"source"`
				Digest string `json:"digest"`
			} `json:"tags"`
		} `json:"targets"`
		ExitCode int `json:"exitCode"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.stdout)
	}
	if js.Input != src.Host() || js.InputKind != "registry" || js.ExitCode != 0 || len(js.Targets) != 1 ||
		js.Targets[0].Target != dst.Host()+"/web" || js.Targets[0].Status != "ok" || len(js.Targets[0].Tags) != 2 {
		t.Fatalf("JSON: %+v", js)
	}
	for _, tg := range js.Targets[0].Tags {
		if want := sample.Tags[registrytest.SampleFrontend][tg.Tag].Digest.String(); tg.Digest != want || tg.Source != ref(src, registrytest.SampleFrontend) {
			t.Errorf("tag %+v, want digest %s from %s", tg, want, ref(src, registrytest.SampleFrontend))
		}
		wantTag(t, dst, "web", tg.Tag, sample.Tags[registrytest.SampleFrontend][tg.Tag])
	}
	// without --include-referrers, as a backup: no referrer goes
	for _, rf := range sample.Referrers[registrytest.SampleFrontend] {
		if got := referrersOf(t, dst, "web", rf.Subject); len(got) != 0 {
			t.Errorf("referrers of %s copied without --include-referrers: %v", rf.Subject.Digest, got)
		}
	}
}

// A source blob that is gone fails the target repository that needs it
// (its tags are not set); with --fail-fast=false the other is copied and
// the exit code is 3.
func TestCopyPartialWhenASourceBlobIsGone(t *testing.T) {
	var gone atomic.Value // digest.Digest
	gone.Store(digest.Digest(""))
	src := registrytest.NewInProcess(t, registrytest.WithHandler(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d := gone.Load().(digest.Digest); d != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	sample, err := registrytest.SeedSample(t.Context(), src.Target(), registrytest.SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// a layer of demo/frontend alone
	var own ocispec.Descriptor
	for _, d := range sample.Content[registrytest.SampleFrontend] {
		if strings.Contains(d.MediaType, "layer") && d.Digest != sample.BaseLayer.Digest &&
			!slices.Contains(sample.Digests(registrytest.SampleBackend), d.Digest) {
			own = d
			break
		}
	}
	if own.Digest == "" {
		t.Fatal("no layer of demo/frontend alone in the sample")
	}
	gone.Store(own.Digest)
	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", copyArgs("--fail-fast=false", ref(src, registrytest.SampleBackend), ref(src, registrytest.SampleFrontend), dst.Host())...)
	r.wantCode(t, exitPartial)
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to copy "+dst.Host()+"/demo/frontend\n",
		"Partial copy: 1 of 2 repositories copied successfully\n")
	for tag, d := range sample.Tags[registrytest.SampleBackend] {
		wantTag(t, dst, registrytest.SampleBackend, tag, d)
	}
	for tag := range sample.Tags[registrytest.SampleFrontend] {
		wantNoTag(t, dst, registrytest.SampleFrontend, tag)
	}
}

// Mistakes are usage errors (exit code 2) that say what is wrong, before
// any request.
func TestCopyUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"copy", "reg.example/a"}, "no target given: the last argument is the target"},
		{[]string{"copy", "reg.example/a", "other.example/b", "dst.example"}, "all source repositories of one copy must be from the same registry"},
		{[]string{"copy", "--rules", "r.json", "reg.example/a", "--", "dst.example"}, "--rules cannot be used with positional targets"},
		{[]string{"copy", "--format", "yaml", "reg.example/a", "dst.example"}, `--format "yaml": use text or json`},
		{[]string{"copy", "--concurrency", "0", "reg.example/a", "dst.example"}, "--concurrency must be at least 1"},
		{[]string{"copy", "--from-password-stdin", "--to-password-stdin", "--from-username", "u", "--to-username", "v", "reg.example/a", "dst.example"}, "--from-password-stdin and --to-password-stdin cannot be used together"},
	} {
		r := regvault(t, "secret\n", tc.args...)
		r.wantCode(t, exitUsage)
		wantContains(t, "stderr", r.stderr, "Error: "+tc.want)
		if r.stdout != "" {
			t.Errorf("%v: stdout %q", tc.args, r.stdout)
		}
	}
}

// The help names every form and flag of the contract, with examples.
func TestCopyHelp(t *testing.T) {
	r := regvault(t, "", "copy", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "help", r.stdout,
		"regvault copy [flags] <registry>/<repo>[:<tag>[,<tag>...]] ... <target>",
		"-- <target> <target> ...", "--rules <file>",
		"--include-referrers", "--exclude-referrers", "--dry-run", "--fail-fast", "--format",
		"--concurrency", "--read-timeout", "--max-retry-wait", "--no-tty",
		"--from-username", "--from-password-stdin", "--from-plain-http", "--from-ca-file",
		"--to-username", "--to-password-stdin", "--to-plain-http", "--to-ca-file", "--to-distribution-spec",
		"Examples:", "regvault copy --dry-run")
}

// A rules file consolidates two source repositories into one target
// repository, each tag renamed; every blob is read from a source
// repository that holds it (distribution serves a blob only from a
// repository that links it).
func TestCopyRulesConsolidate(t *testing.T) {
	src := registrytest.NewDistribution(t, registrytest.DistConfig{})
	sample, err := registrytest.SeedSample(t.Context(), src.Target(), registrytest.SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := registrytest.NewInProcess(t)
	rules := filepath.Join(t.TempDir(), "rules.json")
	sh, dh := src.Host(), dst.Host()
	writeFile(t, rules, `{"mappings": [
  {"source": "`+sh+`/demo/frontend", "target": "`+dh+`/unified", "tag-mappings": {"v1": "fe-v1", "v2": "fe-v2"}},
  {"source": "`+sh+`/demo/backend", "target": "`+dh+`/unified", "tag-mappings": {"v1": "be-v1", "v2": "be-v2"}}
]}`)
	emptyTMPDIR(t)
	r := regvault(t, "", copyArgs("--include-referrers", "--rules", rules, ref(src, registrytest.SampleFrontend), ref(src, registrytest.SampleBackend))...)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Loaded rules configuration: "+rules+"\n", "Copying with mappings...\n",
		"Successfully copied 4 tag(s) from 2 repository(ies) to "+dh+" with remapping in ")
	for from, to := range map[string]string{"v1": "fe-v1", "v2": "fe-v2"} {
		wantTag(t, dst, "unified", to, sample.Tags[registrytest.SampleFrontend][from])
	}
	for from, to := range map[string]string{"v1": "be-v1", "v2": "be-v2"} {
		wantTag(t, dst, "unified", to, sample.Tags[registrytest.SampleBackend][from])
	}
	wantSampleReferrers(t, dst, sample, registrytest.SampleFrontend, "unified")
	wantSampleReferrers(t, dst, sample, registrytest.SampleBackend, "unified")
}

// A source repository with a tag that is not there fails whole, as in a
// backup: under fail-fast nothing is pushed (exit code 1); with
// --fail-fast=false the others are copied and it is not (exit code 3).
func TestCopyMissingSourceTag(t *testing.T) {
	src, sample := sampleRegistry(t)
	dst := registrytest.NewInProcess(t)
	front := ref(src, registrytest.SampleFrontend) + ":v1,nope"
	r := regvault(t, "", copyArgs(front, ref(src, registrytest.SampleBackend), dst.Host())...)
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "Error: reading "+ref(src, registrytest.SampleFrontend)+": ", ":nope: not found",
		"Nothing was copied: --fail-fast stops at the first failure")
	if n := writes(dst); n != 0 {
		t.Errorf("a fail-fast copy of an unreadable source made %d writes", n)
	}

	r = regvault(t, "", copyArgs("--fail-fast=false", front, ref(src, registrytest.SampleBackend), dst.Host())...)
	r.wantCode(t, exitPartial)
	wantContains(t, "stdout", r.stdout, "  - "+ref(src, registrytest.SampleFrontend)+": (could not be read)\n",
		"  - "+ref(src, registrytest.SampleFrontend)+" (skipped)\n")
	wantContains(t, "stderr", r.stderr, "Error: Failed to copy "+ref(src, registrytest.SampleFrontend)+"\n",
		"  ✗ "+ref(src, registrytest.SampleFrontend)+" (tag not found)\n", "Partial copy: 1 of 2 repositories copied successfully\n")
	for tag, d := range sample.Tags[registrytest.SampleBackend] {
		wantTag(t, dst, registrytest.SampleBackend, tag, d)
	}
	wantNoTag(t, dst, registrytest.SampleFrontend, "v1")
}

// A copy none of whose sources can be read (a mistyped name, a refused
// --from-password) says why, naming each, and exits 1; it is not a usage
// error about an empty selection.
func TestCopyNoSourceReadable(t *testing.T) {
	src := registrytest.NewInProcess(t, registrytest.WithBasicAuth(map[string]string{"alice": "right-pass"}))
	dst := registrytest.NewInProcess(t)
	for _, ff := range []string{"--fail-fast=true", "--fail-fast=false"} {
		r := regvault(t, "", copyArgs(ff, "--from-username", "alice", "--from-password", "wrong-pass",
			ref(src, "app/one"), ref(src, "app/two"), dst.Host())...)
		r.wantCode(t, exitFailure)
		wantContains(t, "stderr", r.stderr, "reading "+ref(src, "app/one")+": ", "reading "+ref(src, "app/two")+": ",
			"Nothing was copied: no source repository could be read")
		if strings.Contains(r.stdout+r.stderr, "wrong-pass") {
			t.Errorf("%s: the password in the output:\n%s%s", ff, r.stdout, r.stderr)
		}
	}
	if n := writes(dst); n != 0 {
		t.Errorf("%d writes", n)
	}
}

// A copy resolves each source tag with one GET, whose manifest the walk
// then starts from: no HEAD per tag, and one manifest GET per manifest
// (the tags' included), one blob GET per blob.
func TestCopyResolvesEachSourceTagOnce(t *testing.T) {
	src, sample := sampleRegistry(t)
	dst := registrytest.NewInProcess(t)
	src.ResetStats()
	r := regvault(t, "", copyArgs("--include-referrers", ref(src, registrytest.SampleBackend), dst.Host())...)
	r.wantCode(t, exitOK)
	var manifests, blobs int64
	for _, d := range sample.Content[registrytest.SampleBackend] {
		if archive.IsManifest(d.MediaType) {
			manifests++
		} else {
			blobs++
		}
	}
	st := src.Stats()
	if n := st.Count(http.MethodHead, registrytest.KindManifest); n != 0 {
		t.Errorf("the copy made %d manifest HEADs at the source, want 0 (a tag is resolved by its GET)", n)
	}
	if n := st.Count(http.MethodGet, registrytest.KindManifest); n != manifests {
		t.Errorf("the copy made %d manifest GETs at the source, want %d (one per manifest)", n, manifests)
	}
	if n := st.Count(http.MethodGet, registrytest.KindBlob); n != blobs {
		t.Errorf("the copy made %d blob GETs at the source, want %d (one per blob)", n, blobs)
	}
	for tag, d := range sample.Tags[registrytest.SampleBackend] {
		wantTag(t, dst, registrytest.SampleBackend, tag, d)
	}
	wantSampleReferrers(t, dst, sample, registrytest.SampleBackend, registrytest.SampleBackend)
}

// More source repositories than request slots (--concurrency 1: 4) are
// resolved without waiting on each other for ever.
func TestCopyManyRepositoriesFewSlots(t *testing.T) {
	src := registrytest.NewInProcess(t)
	a := registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: "a/"})
	b := registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: "b/", Seed: "b"})
	dst := registrytest.NewInProcess(t)
	var args []string
	for _, s := range []registrytest.Sample{a, b} {
		for _, repo := range s.Repositories {
			args = append(args, ref(src, repo))
		}
	}
	done := make(chan result, 1)
	go func() {
		done <- regvault(t, "", copyArgs(append(append([]string{"--concurrency", "1"}, args...), dst.Host())...)...)
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("a copy of 6 repositories with --concurrency 1 did not end within 2 minutes")
	}
	r.wantCode(t, exitOK)
	for _, s := range []registrytest.Sample{a, b} {
		for repo, tags := range s.Tags {
			for tag, d := range tags {
				wantTag(t, dst, repo, tag, d)
			}
		}
	}
}
