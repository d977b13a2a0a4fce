package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
)

// backupSample backs up repos of s (all tags, with referrers) into out
// with the CLI and returns the full source repository names.
func backupSample(t *testing.T, s *registrytest.Server, out string, repos ...string) {
	t.Helper()
	args := []string{"backup", "--plain-http", "--no-tty", "--include-referrers", "-o", out}
	for _, repo := range repos {
		args = append(args, ref(s, repo))
	}
	r := regvault(t, "", args...)
	r.wantCode(t, exitOK)
}

// allRepos are the sample's repositories, sorted.
var allRepos = []string{registrytest.SampleBackend, registrytest.SampleFrontend, registrytest.SampleBase}

// sampleBackup is a source registry with the sample and a backup of all
// of it (tar, with referrers).
func sampleBackup(t *testing.T) (*registrytest.Server, registrytest.Sample, string) {
	t.Helper()
	src, sample := sampleRegistry(t)
	out := filepath.Join(t.TempDir(), "apps.tar")
	backupSample(t, src, out, allRepos...)
	return src, sample, out
}

// wantTag fails unless repo:tag in s is the manifest want.
func wantTag(t *testing.T, s *registrytest.Server, repo, tag string, want ocispec.Descriptor) {
	t.Helper()
	got, err := registrytest.Repo(t, s, repo).Resolve(context.Background(), tag)
	if err != nil {
		t.Errorf("%s:%s: %v", repo, tag, err)
		return
	}
	if got.Digest != want.Digest {
		t.Errorf("%s:%s is %s, want %s", repo, tag, got.Digest, want.Digest)
	}
}

// wantNoTag fails unless repo:tag is absent from s.
func wantNoTag(t *testing.T, s *registrytest.Server, repo, tag string) {
	t.Helper()
	_, err := registrytest.Repo(t, s, repo).Resolve(context.Background(), tag)
	if err == nil {
		t.Errorf("%s:%s was restored", repo, tag)
	} else if !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("%s:%s: %v", repo, tag, err)
	}
}

// referrersOf lists the referrers of subject in repo of s, with oras-go
// (Referrers API, or the tag schema where the registry has none).
func referrersOf(t *testing.T, s *registrytest.Server, repo string, subject ocispec.Descriptor) []ocispec.Descriptor {
	t.Helper()
	var out []ocispec.Descriptor
	err := registrytest.Repo(t, s, repo).Referrers(context.Background(), subject, "", func(page []ocispec.Descriptor) error {
		out = append(out, page...)
		return nil
	})
	if err != nil {
		t.Fatalf("referrers of %s in %s: %v", subject.Digest, repo, err)
	}
	return out
}

// wantSampleReferrers fails unless every referrer of the sample's repo is
// found, through its subject, in target of s.
func wantSampleReferrers(t *testing.T, s *registrytest.Server, sample registrytest.Sample, repo, target string) {
	t.Helper()
	for _, ref := range sample.Referrers[repo] {
		found := false
		for _, d := range referrersOf(t, s, target, ref.Subject) {
			if d.Digest == ref.Descriptor.Digest {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: referrer %s of %s not found", target, ref.Descriptor.Digest, ref.Subject.Digest)
		}
	}
}

// writes counts the requests that change a registry.
func writes(s *registrytest.Server) int64 {
	st := s.Stats()
	return st.ByMethod(http.MethodPut) + st.ByMethod(http.MethodPost) + st.ByMethod(http.MethodPatch) + st.ByMethod(http.MethodDelete)
}

// Mode 1: a bare registry gets every repository, path kept, same digests,
// referrers too; a second identical restore pushes nothing and says so.
func TestRestoreMode1(t *testing.T) {
	src, sample, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "--input", in, dst.Host())
	r.wantCode(t, exitOK)
	sh, dh := src.Host(), dst.Host()
	wantContains(t, "stdout", r.stdout,
		"Loaded backup archive: "+in+" (",
		"Found 3 repository(ies) with 6 tag(s):\n",
		"  - "+sh+"/demo/backend: v1, v2\n",
		"  - "+sh+"/demo/frontend: v1, v2\n",
		"  - "+sh+"/library/base: 1.0, 1.1\n",
		"Mapping 3 repository(ies):\n",
		"  ✓ "+sh+"/demo/backend → "+dh+"/demo/backend (2 tags)\n",
		"  ✓ "+sh+"/library/base → "+dh+"/library/base (2 tags)\n",
		"Restoring to "+dh+"...\n",
		"✓ Restored "+dh+"/demo/backend:v2 with 3 referrer(s)\n",
		"✓ Restored "+dh+"/demo/frontend:v1 with 1 referrer(s)\n",
		"✓ Restored "+dh+"/library/base:1.1 with 1 referrer(s)\n",
		"Successfully restored 6 tag(s) from 3 repository(ies) to "+dh+" in ")
	wantNotContains(t, "stdout", r.stdout, "(skipped)", "Note:", "Nothing to push")
	if n := strings.Count(r.stdout, "✓ Restored "); n != 6 {
		t.Errorf("%d '✓ Restored' lines, want 6", n)
	}
	if r.stderr != "" {
		t.Errorf("stderr: %s", r.stderr)
	}
	for repo, tags := range sample.Tags {
		for tag, d := range tags {
			wantTag(t, dst, repo, tag, d)
		}
		wantSampleReferrers(t, dst, sample, repo, repo)
	}

	dst.ResetStats()
	r = regvault(t, "", "restore", "--plain-http", "--input", in, dst.Host())
	r.wantCode(t, exitOK)
	if n := writes(dst); n != 0 {
		t.Errorf("a second identical restore made %d PUT/POST/PATCH/DELETE requests", n)
	}
	wantContains(t, "stdout", r.stdout,
		"Nothing to push: every blob and tag is already in place (6 tags up to date).\n",
		"Successfully restored 6 tag(s) from 3 repository(ies) to "+dh)
}

// Mode 2: selected repositories, and :tags.
func TestRestoreMode2(t *testing.T) {
	src, sample, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t)
	sh, dh := src.Host(), dst.Host()
	r := regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "demo/frontend"), ref(dst, "library/base")+":1.0")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"Mapping 2 of 3 repository(ies):\n",
		"  ✓ "+sh+"/demo/frontend → "+dh+"/demo/frontend (2 tags)\n",
		"  ✓ "+sh+"/library/base → "+dh+"/library/base (1 tag)\n",
		"  - "+sh+"/demo/backend (skipped)\n",
		"Restoring selected tags from 2 repository(ies)...\n",
		"✓ Restored "+dh+"/library/base:1.0 with 1 referrer(s)\n",
		"Successfully restored 3 tag(s) from 2 repository(ies) to "+dh+" in ",
		"Note: 1 repository(ies) in backup were not restored.\n")
	wantTag(t, dst, "demo/frontend", "v1", sample.Tags["demo/frontend"]["v1"])
	wantTag(t, dst, "demo/frontend", "v2", sample.Tags["demo/frontend"]["v2"])
	wantTag(t, dst, "library/base", "1.0", sample.Tags["library/base"]["1.0"])
	wantNoTag(t, dst, "library/base", "1.1")
	wantNoTag(t, dst, "demo/backend", "v1")

	// Without tags, the action line is "Restoring to <registry>".
	dst2 := registrytest.NewInProcess(t)
	r = regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst2, "demo/backend"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Restoring to "+dst2.Host()+"...\n",
		"Successfully restored 2 tag(s) from 1 repository(ies)")
	wantTag(t, dst2, "demo/backend", "v2", sample.Tags["demo/backend"]["v2"])
	wantSampleReferrers(t, dst2, sample, "demo/backend", "demo/backend")
}

// Several targets on different registries.
func TestRestoreTwoRegistries(t *testing.T) {
	_, sample, in := sampleBackup(t)
	a, b := registrytest.NewInProcess(t), registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "-i", in, ref(a, "demo/frontend")+":v1", ref(b, "library"))
	r.wantCode(t, exitOK)
	hosts := []string{a.Host(), b.Host()}
	sort.Strings(hosts)
	wantContains(t, "stdout", r.stdout, "Successfully restored 3 tag(s) from 2 repository(ies) to "+strings.Join(hosts, ", ")+" in ")
	wantTag(t, a, "demo/frontend", "v1", sample.Tags["demo/frontend"]["v1"])
	wantTag(t, b, "library/base", "1.1", sample.Tags["library/base"]["1.1"])
	wantNoTag(t, b, "demo/frontend", "v1")
}

// A target whose last element names one repository renames it; a single
// target that matches nothing is a prefix for every repository.
func TestRestoreRenameAndPrefix(t *testing.T) {
	src, sample, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t)
	sh, dh := src.Host(), dst.Host()
	r := regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "apps/frontend")+":v2")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "  ✓ "+sh+"/demo/frontend → "+dh+"/apps/frontend (1 tag)\n",
		"✓ Restored "+dh+"/apps/frontend:v2 with 1 referrer(s)")
	v2 := sample.Tags["demo/frontend"]["v2"]
	wantTag(t, dst, "apps/frontend", "v2", v2)
	for _, ref := range sample.Referrers["demo/frontend"] {
		got := referrersOf(t, dst, "apps/frontend", ref.Subject)
		if want := ref.Subject.Digest == v2.Digest; want != (len(got) == 1 && got[0].Digest == ref.Descriptor.Digest) {
			t.Errorf("referrers of %s in apps/frontend: %v", ref.Subject.Digest, got)
		}
	}

	r = regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "mirror"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"  ✓ "+sh+"/demo/frontend → "+dh+"/mirror/demo/frontend (2 tags)\n",
		"  ✓ "+sh+"/library/base → "+dh+"/mirror/library/base (2 tags)\n")
	for repo, tags := range sample.Tags {
		for tag, d := range tags {
			wantTag(t, dst, "mirror/"+repo, tag, d)
		}
	}
	wantSampleReferrers(t, dst, sample, "demo/backend", "mirror/demo/backend")
}

// Two repositories named frontend: a target ending in frontend is
// ambiguous, and nothing is pushed.
func TestRestoreAmbiguousTarget(t *testing.T) {
	src, _ := sampleRegistry(t)
	registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: "mirror/", Seed: "other"})
	in := filepath.Join(t.TempDir(), "b.tar")
	backupSample(t, src, in, "demo/frontend", "mirror/demo/frontend")
	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "apps/frontend"))
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "Error: target \""+ref(dst, "apps/frontend")+"\" is ambiguous",
		src.Host()+"/demo/frontend", src.Host()+"/mirror/demo/frontend", "--rules")
	if r.stdout != "" {
		t.Errorf("stdout: %s", r.stdout)
	}
	if n := dst.Stats().Total(); n != 0 {
		t.Errorf("%d requests to the target", n)
	}

	// Several targets that match nothing, too.
	r = regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "x"), ref(dst, "y"))
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "matches no repository in the backup")
	if n := dst.Stats().Total(); n != 0 {
		t.Errorf("%d requests to the target", n)
	}
}

// Mode 3: a rules file with comments, consolidation, tag mappings,
// selected tags and referrers excluded for one mapping.
func TestRestoreRules(t *testing.T) {
	src, sample, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t)
	sh, dh := src.Host(), dst.Host()
	rules := filepath.Join(t.TempDir(), "restore-rules.json")
	writeFile(t, rules, `{
  // consolidation: two sources, tags renamed so they do not collide
  "settings": {"fail-fast": true},
  "mappings": [
    {
      "source": "`+sh+`/demo/frontend",
      "target": "`+dh+`/unified/services",
      "tag-mappings": {"v1": "frontend-v1", "v2": "frontend-v2"}
    },
    {
      "source": "`+sh+`/demo/backend",
      "target": "`+dh+`/unified/services",
      "tags": ["v2"],
      "tag-mappings": {"v2": "backend-v2"}
    },
    /* the base image, one tag, promoted, without referrers */
    {
      "source": "`+sh+`/library/base",
      "target": "`+dh+`/base/os",
      "tags": ["1.1"],
      "tag-mappings": {"1.1": "stable"},
      "exclude-referrers": true
    }
  ]
}
`)
	r := regvault(t, "", "restore", "--plain-http", "-i", in, "--rules", rules)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"Loaded rules configuration: "+rules+"\n",
		"Found 3 repository(ies) with 6 tag(s):\n",
		"Applying 3 mapping rule(s)\n",
		"Restoring with mappings...\n",
		"  ✓ "+sh+"/demo/frontend → "+dh+"/unified/services (2 tags; v1 as frontend-v1, v2 as frontend-v2)\n",
		"  ✓ "+sh+"/demo/backend → "+dh+"/unified/services (1 tag; v2 as backend-v2)\n",
		"  ✓ "+sh+"/library/base → "+dh+"/base/os (1 tag; 1.1 as stable; without referrers)\n",
		"✓ Restored "+dh+"/base/os:stable with 0 referrer(s)\n",
		"✓ Restored "+dh+"/unified/services:backend-v2 with 3 referrer(s)\n",
		"Successfully restored 4 tag(s) from 3 repository(ies) to "+dh+" with remapping in ")
	fe, be, base := sample.Tags["demo/frontend"], sample.Tags["demo/backend"], sample.Tags["library/base"]
	wantTag(t, dst, "unified/services", "frontend-v1", fe["v1"])
	wantTag(t, dst, "unified/services", "frontend-v2", fe["v2"])
	wantTag(t, dst, "unified/services", "backend-v2", be["v2"])
	wantTag(t, dst, "base/os", "stable", base["1.1"])
	// a renamed tag is pushed under its new name only
	for _, tag := range []string{"v1", "v2"} {
		wantNoTag(t, dst, "unified/services", tag)
	}
	wantNoTag(t, dst, "base/os", "1.1")
	wantNoTag(t, dst, "base/os", "1.0")
	// referrers: where they came from, and not for base/os
	for _, ref := range sample.Referrers["demo/frontend"] {
		if got := referrersOf(t, dst, "unified/services", ref.Subject); len(got) != 1 || got[0].Digest != ref.Descriptor.Digest {
			t.Errorf("referrers of %s in unified/services: %v, want %s", ref.Subject.Digest, got, ref.Descriptor.Digest)
		}
	}
	if got := referrersOf(t, dst, "base/os", base["1.1"]); len(got) != 0 {
		t.Errorf("base/os has referrers %v; the rules exclude them", got)
	}
	if ok, _ := registrytest.Repo(t, dst, "base/os").Exists(context.Background(), sample.Referrers["library/base"][1].Descriptor); ok {
		t.Errorf("the SBOM of base 1.1 was pushed to base/os")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Rules errors are found before anything is pushed.
func TestRestoreRulesErrors(t *testing.T) {
	src, _, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t)
	sh, dh := src.Host(), dst.Host()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.json")
	for _, tc := range []struct {
		name, rules string
		want        []string
	}{
		{"collision", `{"mappings": [
  {"source": "` + sh + `/demo/frontend", "target": "` + dh + `/unified/services"},
  {"source": "` + sh + `/demo/backend", "target": "` + dh + `/unified/services"}
]}`, []string{"rules.json:2:", "mappings[0]", "mappings[1]", "would put", dh + "/unified/services:v1", "tag-mappings"}},
		{"unknown source", `{"mappings": [{"source": "` + sh + `/nope", "target": "` + dh + `/x"}]}`,
			[]string{"rules.json:1:", "mappings[0]", "is not in the backup"}},
		{"unknown tag", `{"mappings": [{"source": "` + sh + `/demo/frontend", "target": "` + dh + `/x", "tags": ["v9"]}]}`,
			[]string{"tag \"v9\" is not in the backup"}},
		{"unknown key", `{"mappings": [{"source": "` + sh + `/demo/frontend", "target": "` + dh + `/x", "tag": ["v1"]}]}`,
			[]string{"unknown key \"tag\""}},
		{"syntax", "{\n  \"mappings\": [\n    {\"source\": \"a\",}\n  ]\n}", []string{"rules.json:3:", "syntax error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, rules, tc.rules)
			r := regvault(t, "", "restore", "--plain-http", "-i", in, "--rules", rules)
			r.wantCode(t, exitUsage)
			wantContains(t, "stderr", r.stderr, tc.want...)
			if r.stdout != "" {
				t.Errorf("stdout: %s", r.stdout)
			}
			if n := dst.Stats().Total(); n != 0 {
				t.Errorf("%d requests to the target", n)
			}
		})
	}

	// --rules with positional targets: refused, showing the three forms.
	writeFile(t, rules, `{"mappings": [{"source": "`+sh+`/demo/frontend", "target": "`+dh+`/x"}]}`)
	r := regvault(t, "", "restore", "-i", in, "--rules", rules, ref(dst, "repo"))
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, `Error: --rules cannot be used with positional repository arguments.

Use either:
  - Positional args for direct/selective restore:
      regvault restore --input backup.tar registry.io/repo1 registry.io/repo2
  
  - Rules file for repository mapping:
      regvault restore --input backup.tar --rules rules.json
`)
	if n := dst.Stats().Total(); n != 0 {
		t.Errorf("%d requests to the target", n)
	}
}

// hashTree hashes every file's name and content under dir.
func hashTree(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		io.WriteString(h, rel+"\x00"+fi.Mode().String()+"\x00")
		if d.Type().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// --dry-run pushes nothing, leaves the input as it was, and says how much
// the target already has.
func TestRestoreDryRun(t *testing.T) {
	src, sample := sampleRegistry(t)
	in := filepath.Join(t.TempDir(), "layout")
	backupSample(t, src, in, allRepos...)
	before := hashTree(t, in)
	dst := registrytest.NewInProcess(t)
	dh := dst.Host()
	r := regvault(t, "", "restore", "--plain-http", "-i", in, dh, "--dry-run")
	r.wantCode(t, exitOK)
	if n := writes(dst); n != 0 {
		t.Errorf("a dry run made %d PUT/POST/PATCH/DELETE requests", n)
	}
	if hashTree(t, in) != before {
		t.Errorf("the dry run changed the input directory")
	}
	wantContains(t, "stdout", r.stdout,
		"Loaded backup archive: "+in+" (",
		"Found 3 repository(ies) with 6 tag(s):\n",
		"[DRY RUN] The following operations would be performed:\n",
		"\nRegistry: "+dh+"\n",
		"  Repository: demo/backend\n",
		"    ✓ v2 ("+shortDigest(sample.Tags["demo/backend"]["v2"].Digest)+") + 3 referrer(s)\n",
		"    ✓ 1.0 ("+shortDigest(sample.Tags["library/base"]["1.0"].Digest)+") + 1 referrer(s)\n",
		"[DRY RUN] Would restore 6 tag(s) from 3 repository(ies)\n",
		"[DRY RUN] Total artifacts: 14 (including referrers)\n",
		"[DRY RUN] Estimated upload size: ",
		"[DRY RUN] Already in the target registry: nothing; all of it would be uploaded\n",
		"No changes were made. Remove --dry-run to perform actual restore.\n")
	wantNotContains(t, "stdout", r.stdout, "Restoring to", "✓ Restored", "Successfully")
	// Estimated: each unique blob once on the one registry, manifests in
	// each repository, so at least the unique bytes.
	m := regexp.MustCompile(`Estimated upload size: ([0-9.]+ (B|KB|MB))`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no estimated size")
	}

	// With renamed tags, the source tag is shown.
	r = regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "apps/frontend")+":v1", "--dry-run")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "  Repository: apps/frontend (from "+src.Host()+"/demo/frontend)\n")

	// After the restore: everything is there.
	regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dh).wantCode(t, exitOK)
	dst.ResetStats()
	r = regvault(t, "", "restore", "--plain-http", "-i", in, dh, "--dry-run")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "[DRY RUN] Already in the target registry: every manifest and blob (")
	if n := writes(dst); n != 0 {
		t.Errorf("a dry run made %d PUT/POST/PATCH/DELETE requests", n)
	}

	// Part of it: a new repository on the same registry.
	r = regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "other/frontend")+":v1", "--dry-run")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "[DRY RUN] Already in the target registry: nothing")

	// A target that cannot be reached: an upper bound.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	r = regvault(t, "", "restore", "--plain-http", "-i", in, dead, "--dry-run")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"[DRY RUN] Could not ask the target registry what it already has (registry unreachable): the upload size is an upper bound\n",
		"No changes were made.")
}

// The backup on standard input, and a zstd-compressed backup.
func TestRestoreStdinAndZstd(t *testing.T) {
	_, sample, in := sampleBackup(t)
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	dst := registrytest.NewInProcess(t)
	r := regvault(t, string(data), "restore", "--plain-http", "-i", "-", dst.Host())
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Loaded backup archive: standard input\n",
		"Successfully restored 6 tag(s) from 3 repository(ies)")
	for repo, tags := range sample.Tags {
		for tag, d := range tags {
			wantTag(t, dst, repo, tag, d)
		}
	}

	src2, sample2 := sampleRegistry(t)
	zst := filepath.Join(t.TempDir(), "apps.tar.zst")
	backupSample(t, src2, zst, allRepos...)
	// The form is found from the content, not the name.
	renamed := filepath.Join(t.TempDir(), "backup.bin")
	if err := os.Rename(zst, renamed); err != nil {
		t.Fatal(err)
	}
	dst2 := registrytest.NewInProcess(t)
	r = regvault(t, "", "restore", "--plain-http", "-i", renamed, ref(dst2, "mirror"))
	r.wantCode(t, exitOK)
	for repo, tags := range sample2.Tags {
		for tag, d := range tags {
			wantTag(t, dst2, "mirror/"+repo, tag, d)
		}
		wantSampleReferrers(t, dst2, sample2, repo, "mirror/"+repo)
	}
	// zstd from standard input
	zdata, err := os.ReadFile(renamed)
	if err != nil {
		t.Fatal(err)
	}
	dst3 := registrytest.NewInProcess(t)
	r = regvault(t, string(zdata), "restore", "--plain-http", "-i", "-", ref(dst3, "demo/backend"))
	r.wantCode(t, exitOK)
	wantTag(t, dst3, "demo/backend", "v2", sample2.Tags["demo/backend"]["v2"])
	wantSampleReferrers(t, dst3, sample2, "demo/backend", "demo/backend")
}

// A registry without the Referrers API (distribution): referrers are
// found through the tag schema after the restore.
func TestRestoreDistribution(t *testing.T) {
	_, sample, in := sampleBackup(t)
	dst := registrytest.NewDistribution(t, registrytest.DistConfig{})
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
	r.wantCode(t, exitOK)
	for repo, tags := range sample.Tags {
		for tag, d := range tags {
			wantTag(t, dst, repo, tag, d)
		}
		wantSampleReferrers(t, dst, sample, repo, repo)
	}
	// Tag-schema indexes exist: sha256-<hex> tags.
	var tags []string
	err := registrytest.Repo(t, dst, "demo/frontend").Tags(context.Background(), "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	schema := 0
	for _, tag := range tags {
		if strings.HasPrefix(tag, "sha256-") {
			schema++
		}
	}
	if schema != 2 {
		t.Errorf("demo/frontend tags %v: want 2 referrers tag-schema tags", tags)
	}

	// Again: nothing is pushed.
	dst.ResetStats()
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Nothing to push")
	if n := writes(dst); n != 0 {
		t.Errorf("a second restore made %d PUT/POST/PATCH/DELETE requests", n)
	}
}

// A tagged manifest that is also an index's child goes to the target
// before the index: distribution refuses an index whose children it lacks.
// (A tagged manifest nothing refers to is pushed once, by its tag, at the
// end; this one must not be held back so.)
func TestRestoreTaggedIndexChildDistribution(t *testing.T) {
	src := registrytest.NewInProcess(t)
	ctx := context.Background()
	repo := registrytest.Repo(t, src, "multi/app")
	amd, err := registrytest.PushImage(ctx, repo, "amd64", registrytest.Bytes("child-amd64", 4096))
	if err != nil {
		t.Fatal(err)
	}
	arm, err := registrytest.PushImage(ctx, repo, "", registrytest.Bytes("child-arm64", 4096))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := registrytest.PushIndex(ctx, repo, "v1", amd, arm)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "multi.tar")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", in, ref(src, "multi/app"))
	r.wantCode(t, exitOK)

	dst := registrytest.NewDistribution(t, registrytest.DistConfig{})
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
	r.wantCode(t, exitOK)
	wantTag(t, dst, "multi/app", "v1", idx)
	wantTag(t, dst, "multi/app", "amd64", amd)
}

// A single-repository backup written as oras backup v1.3 writes it (tag-only
// names) restores under any name.
func TestRestoreTagOnlyBackup(t *testing.T) {
	src, sample := sampleRegistry(t)
	in := filepath.Join(t.TempDir(), "frontend.tar")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", in, ref(src, "demo/frontend"))
	r.wantCode(t, exitOK)
	if got := layoutTags(t, in); strings.Join(got, " ") != "v1 v2" {
		t.Fatalf("not a tag-only backup: %v", got)
	}
	dst := registrytest.NewInProcess(t)
	r = regvault(t, "", "restore", "--plain-http", "-i", in, ref(dst, "other")+":v1")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"Found 1 repository(ies) with 2 tag(s):\n  - (the tag-only backup's repository): v1, v2\n",
		"  ✓ (the tag-only backup's repository) → "+dst.Host()+"/other (1 tag)\n",
		"✓ Restored "+dst.Host()+"/other:v1 with 0 referrer(s)\n",
		"Successfully restored 1 tag(s) from 1 repository(ies) to "+dst.Host())
	wantTag(t, dst, "other", "v1", sample.Tags["demo/frontend"]["v1"])
	wantNoTag(t, dst, "other", "v2")

	// A bare registry cannot keep a path the backup does not record.
	r = regvault(t, "", "restore", "--plain-http", "-i", in, dst.Host())
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "tag-only backup")
}

type restoreJSONOutput struct {
	Input      string   `json:"input"`
	DryRun     bool     `json:"dryRun"`
	Registries []string `json:"registries"`
	Targets    []struct {
		Target  string   `json:"target"`
		Sources []string `json:"sources"`
		Status  string   `json:"status"`
		Error   string   `json:"error"`
		Tags    []struct {
			Tag       string `json:"tag"`
			Source    string `json:"source"`
			SourceTag string `json:"sourceTag"`
			Digest    string `json:"digest"`
			Referrers int    `json:"referrers"`
		} `json:"tags"`
	} `json:"targets"`
	Skipped              []string `json:"skipped"`
	Tags                 int      `json:"tags"`
	Referrers            int      `json:"referrers"`
	Uploaded             int64    `json:"uploaded"`
	UploadedBytes        int64    `json:"uploadedBytes"`
	Mounted              int64    `json:"mounted"`
	Manifests            int64    `json:"manifests"`
	Tagged               int64    `json:"tagged"`
	TagsCurrent          int64    `json:"tagsCurrent"`
	BlobsSkipped         int      `json:"blobsSkipped"`
	EstimatedUploadBytes int64    `json:"estimatedUploadBytes"`
	PresentBlobs         *int     `json:"presentBlobs"`
	DurationSeconds      *float64 `json:"durationSeconds"`
	Failures             []struct {
		Target, Reason, Error string
	} `json:"failures"`
	Recommendations []string `json:"recommendations"`
	ExitCode        *int     `json:"exitCode"`
}

func parseRestoreJSON(t *testing.T, s string) restoreJSONOutput {
	t.Helper()
	var out restoreJSONOutput
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", s)
	}
	return out
}

func TestRestoreJSON(t *testing.T) {
	src, sample, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "--format", "json", "-i", in, ref(dst, "demo/frontend"), ref(dst, "library/base")+":1.1")
	r.wantCode(t, exitOK)
	if r.stderr != "" {
		t.Errorf("stderr: %s", r.stderr)
	}
	wantNotContains(t, "stdout", r.stdout, "Loaded backup", "✓")
	js := parseRestoreJSON(t, r.stdout)
	if js.Input != in || js.DryRun || len(js.Registries) != 1 || js.Registries[0] != dst.Host() {
		t.Errorf("input %q dryRun %v registries %v", js.Input, js.DryRun, js.Registries)
	}
	if js.ExitCode == nil || *js.ExitCode != 0 || js.DurationSeconds == nil || *js.DurationSeconds <= 0 {
		t.Errorf("exitCode %v durationSeconds %v", js.ExitCode, js.DurationSeconds)
	}
	if len(js.Skipped) != 1 || js.Skipped[0] != src.Host()+"/demo/backend" {
		t.Errorf("skipped %v", js.Skipped)
	}
	if len(js.Targets) != 2 || js.Tags != 3 || js.Referrers != 3 {
		t.Fatalf("targets %d tags %d referrers %d, want 2, 3, 3", len(js.Targets), js.Tags, js.Referrers)
	}
	for _, tg := range js.Targets {
		_, repo, _ := strings.Cut(tg.Target, "/")
		if tg.Status != "ok" || len(tg.Sources) != 1 || tg.Sources[0] != src.Host()+"/"+repo {
			t.Errorf("%s: status %q sources %v", tg.Target, tg.Status, tg.Sources)
		}
		for _, tag := range tg.Tags {
			if want := sample.Tags[repo][tag.Tag]; tag.Digest != want.Digest.String() || tag.SourceTag != tag.Tag || tag.Referrers != 1 {
				t.Errorf("%s:%s: %+v, want digest %s", tg.Target, tag.Tag, tag, want.Digest)
			}
		}
	}
	if js.Uploaded == 0 || js.UploadedBytes == 0 || js.Manifests == 0 || js.Tagged != 3 || js.TagsCurrent != 0 {
		t.Errorf("uploaded %d (%d bytes) manifests %d tagged %d current %d", js.Uploaded, js.UploadedBytes, js.Manifests, js.Tagged, js.TagsCurrent)
	}
	if len(js.Failures) != 0 {
		t.Errorf("failures: %v", js.Failures)
	}

	// Again: nothing pushed, every tag current.
	r = regvault(t, "", "restore", "--plain-http", "--format", "json", "-i", in, ref(dst, "demo/frontend"), ref(dst, "library/base")+":1.1")
	r.wantCode(t, exitOK)
	js = parseRestoreJSON(t, r.stdout)
	if js.Uploaded != 0 || js.Mounted != 0 || js.Manifests != 0 || js.Tagged != 0 || js.TagsCurrent != 3 || js.BlobsSkipped == 0 {
		t.Errorf("second run: %+v", js)
	}

	// Dry run
	dst2 := registrytest.NewInProcess(t)
	r = regvault(t, "", "restore", "--plain-http", "--format", "json", "--dry-run", "-i", in, dst2.Host())
	r.wantCode(t, exitOK)
	js = parseRestoreJSON(t, r.stdout)
	if !js.DryRun || js.Tags != 6 || js.EstimatedUploadBytes < sample.UniqueBytes() || js.PresentBlobs == nil || *js.PresentBlobs != 0 {
		t.Errorf("dry run: %+v", js)
	}
	for _, tg := range js.Targets {
		if tg.Status != "planned" {
			t.Errorf("%s: status %q", tg.Target, tg.Status)
		}
	}
	if n := writes(dst2); n != 0 {
		t.Errorf("a dry run made %d writes", n)
	}
}

// denyPushes answers 403 DENIED to every write under /v2/<repo>/.
func denyPushes(repo string) registrytest.Option {
	return registrytest.WithHandler(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead && strings.HasPrefix(r.URL.Path, "/v2/"+repo+"/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
}

// A repository that cannot be pushed stops the restore by default;
// --fail-fast=false restores the others (exit code 3).
func TestRestoreFailures(t *testing.T) {
	_, sample, in := sampleBackup(t)

	dst := registrytest.NewInProcess(t, denyPushes("demo/backend"))
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
	r.wantCode(t, exitFailure)
	dh := dst.Host()
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to restore "+dh+"/demo/backend\n",
		"  Reason: ",
		"Restore stopped at the first failure (fail-fast)",
		"  ✗ "+dh+"/demo/backend (access denied)\n",
		"  - "+dh+"/library/base (stopped)\n",
		"Recommendations:\n",
		"may not have push access",
		"--fail-fast=false")
	wantNotContains(t, "stdout", r.stdout, "Successfully")

	dst = registrytest.NewInProcess(t, denyPushes("demo/backend"))
	dh = dst.Host()
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "--fail-fast=false", "-i", in, dh)
	r.wantCode(t, exitPartial)
	wantContains(t, "stdout", r.stdout,
		"✓ Restored "+dh+"/demo/frontend:v1 with 1 referrer(s)",
		"Restored 4 tag(s) from 2 repository(ies) to "+dh)
	wantNotContains(t, "stdout", r.stdout, "Successfully", "✓ Restored "+dh+"/demo/backend")
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to restore "+dh+"/demo/backend\n",
		"Partial restore: 2 of 3 repositories restored successfully\n",
		"  ✓ "+dh+"/demo/frontend (2 tags)\n",
		"  ✓ "+dh+"/library/base (2 tags)\n",
		"  ✗ "+dh+"/demo/backend (access denied)\n")
	wantTag(t, dst, "demo/frontend", "v2", sample.Tags["demo/frontend"]["v2"])
	wantTag(t, dst, "library/base", "1.1", sample.Tags["library/base"]["1.1"])

	// The rules' settings.fail-fast false does the same; JSON lists the failure.
	dst = registrytest.NewInProcess(t, denyPushes("demo/backend"))
	dh = dst.Host()
	rules := filepath.Join(t.TempDir(), "rules.json")
	sh := strings.TrimSuffix(sample.Host, "/")
	writeFile(t, rules, `{"settings": {"fail-fast": false}, "mappings": [
  {"source": "`+sh+`/demo/frontend", "target": "`+dh+`/demo/frontend"},
  {"source": "`+sh+`/demo/backend", "target": "`+dh+`/demo/backend"}]}`)
	r = regvault(t, "", "restore", "--plain-http", "--format", "json", "-i", in, "--rules", rules)
	r.wantCode(t, exitPartial)
	js := parseRestoreJSON(t, r.stdout)
	if len(js.Failures) != 1 || js.Failures[0].Target != dh+"/demo/backend" || js.Failures[0].Reason != "access denied" ||
		js.ExitCode == nil || *js.ExitCode != exitPartial || len(js.Recommendations) == 0 {
		t.Errorf("failures %+v exit %v recommendations %v", js.Failures, js.ExitCode, js.Recommendations)
	}
	wantContains(t, "stderr", r.stderr, "Error: Failed to restore "+dh+"/demo/backend: access denied")

	// Nothing answers: one culprit named, the others stopped.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dead)
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "(registry unreachable)\n", "Check the registry address "+dead+": nothing answered there")
	if n := strings.Count(r.stderr, "  ✗ "); n != 1 {
		t.Errorf("%d ✗ lines, want 1 (the others stopped)", n)
	}
	if n := strings.Count(r.stderr, "Error: Failed to restore"); n != 1 {
		t.Errorf("%d 'Error: Failed to restore' lines, want 1", n)
	}
}

func TestRestoreUsageErrors(t *testing.T) {
	_, _, in := sampleBackup(t)
	dir := t.TempDir()
	notBackup := filepath.Join(dir, "notes.txt")
	writeFile(t, notBackup, "hello\n")
	emptyDir := t.TempDir()
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"no input", "", []string{"restore", "localhost:5000"}, []string{"--input is required", "a directory, a tar file"}},
		{"no target", "", []string{"restore", "-i", in}, []string{"no target given", "--rules <file>"}},
		{"not a backup", "", []string{"restore", "-i", notBackup, "localhost:5000"},
			[]string{"--input " + notBackup + ": not a backup", "a gzip- or zstd-compressed tar"}},
		{"empty directory", "", []string{"restore", "-i", emptyDir, "localhost:5000"},
			[]string{"not a backup", "no oci-layout file", "a directory, a tar file"}},
		{"missing file", "", []string{"restore", "-i", filepath.Join(dir, "nope.tar"), "localhost:5000"},
			[]string{"not a backup", "no such file"}},
		{"garbage on stdin", "not a tar", []string{"restore", "-i", "-", "localhost:5000"},
			[]string{"--input - (standard input): not a backup"}},
		{"stdin twice", "x", []string{"restore", "-i", "-", "--password-stdin", "-u", "a", "localhost:5000"},
			[]string{"standard input"}},
		{"bad target", "", []string{"restore", "-i", in, "localhost:5000/Bad"}, []string{"invalid repository name"}},
		{"tag not in backup", "", []string{"restore", "-i", in, "localhost:5000/demo/frontend:v9"},
			[]string{"tag \"v9\" is not in the backup"}},
		{"bad format", "", []string{"restore", "--format", "xml", "-i", in, "localhost:5000"}, []string{"--format \"xml\""}},
		{"missing rules file", "", []string{"restore", "-i", in, "--rules", filepath.Join(dir, "none.json")},
			[]string{"cannot read rules file"}},
		{"bad concurrency", "", []string{"restore", "--concurrency", "0", "-i", in, "localhost:5000"},
			[]string{"--concurrency must be at least 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := regvault(t, tc.stdin, tc.args...)
			r.wantCode(t, exitUsage)
			if r.stdout != "" {
				t.Errorf("stdout should be empty, got:\n%s", r.stdout)
			}
			if !strings.HasPrefix(r.stderr, "Error: ") {
				t.Errorf("stderr does not start with \"Error: \":\n%s", r.stderr)
			}
			wantContains(t, "stderr", r.stderr, tc.want...)
		})
	}
}

func TestRestoreHelp(t *testing.T) {
	r := regvault(t, "", "restore", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "help", r.stdout,
		"regvault restore --input base-images.tar registry.mycompany.com\n",
		"registry.mycompany.com/library/alpine \\\n    registry.mycompany.com/library/busybox",
		"registry.mycompany.com/library/alpine:3.19.0",
		"--rules restore-rules.json", "--dry-run", "--input -", "\"tag-mappings\"", "\"exclude-referrers\"",
		"-i, --input", "--rules", "--exclude-referrers", "--fail-fast", "--format",
		"-u, --username", "--plain-http", "--concurrency int", "--no-tty")
	r = regvault(t, "", "--help")
	wantContains(t, "help", r.stdout, "restore")
}

// Nine repositories sharing one large layer, restored from a zstd stream on
// standard input: the layer's bytes reach the registry once (mounted into
// the others), and no spool file is left behind.
func TestRestoreSharedLayerOnce(t *testing.T) {
	src := registrytest.NewInProcess(t)
	var repos []string
	var sample registrytest.Sample
	tags := map[string]map[string]ocispec.Descriptor{}
	for _, prefix := range []string{"", "a/", "b/"} {
		sample = registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: prefix, BaseLayerSize: 4 << 20})
		repos = append(repos, sample.Repositories...)
		for repo, m := range sample.Tags {
			tags[repo] = m
		}
	}
	in := filepath.Join(t.TempDir(), "all.tar.zst")
	backupSample(t, src, in, repos...)
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dst := registrytest.NewInProcess(t)
	r := regvault(t, string(data), "restore", "--plain-http", "--no-tty", "-i", "-", dst.Host())
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Successfully restored 18 tag(s) from 9 repository(ies)")
	st := dst.Stats()
	if st.BytesIn >= 2*sample.BaseLayer.Size {
		t.Errorf("the registry received %d bytes: the %d-byte shared layer more than once", st.BytesIn, sample.BaseLayer.Size)
	}
	if st.Mounts == 0 {
		t.Errorf("no cross-repository mount")
	}
	for repo, m := range tags {
		for tag, d := range m {
			wantTag(t, dst, repo, tag, d)
		}
	}
	wantEmptyDir(t, tmp)
}

// A tag-only backup in a rules file: "source" left out. A single-repository
// backup with --full-reference restores under another name (README's
// target table, the only target).
func TestRestoreSingleRepositoryForms(t *testing.T) {
	src, sample := sampleRegistry(t)
	dir := t.TempDir()
	tagOnly := filepath.Join(dir, "frontend.tar")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", tagOnly, ref(src, "demo/frontend")).wantCode(t, exitOK)
	dst := registrytest.NewInProcess(t)
	rules := filepath.Join(dir, "rules.json")
	writeFile(t, rules, `{"mappings": [{"target": "`+dst.Host()+`/web", "tag-mappings": {"v2": "latest"}}]}`)
	r := regvault(t, "", "restore", "--plain-http", "-i", tagOnly, "--rules", rules)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "(the tag-only backup's repository) → "+dst.Host()+"/web (2 tags; v2 as latest)")
	wantTag(t, dst, "web", "latest", sample.Tags["demo/frontend"]["v2"])
	wantTag(t, dst, "web", "v1", sample.Tags["demo/frontend"]["v1"])

	full := filepath.Join(dir, "full.tar.gz")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--include-referrers", "--full-reference", "-o", full, ref(src, "demo/backend")+":v2").wantCode(t, exitOK)
	r = regvault(t, "", "restore", "--plain-http", "-i", full, ref(dst, "backend")+":v2")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "  ✓ "+src.Host()+"/demo/backend → "+dst.Host()+"/backend (1 tag)\n")
	wantTag(t, dst, "backend", "v2", sample.Tags["demo/backend"]["v2"])
	v1 := sample.Tags["demo/backend"]["v1"].Digest
	for _, rf := range sample.Referrers["demo/backend"] {
		got := referrersOf(t, dst, "backend", rf.Subject)
		found := len(got) == 1 && got[0].Digest == rf.Descriptor.Digest
		if found != (rf.Subject.Digest != v1) {
			t.Errorf("referrers of %s in backend: %v", rf.Subject.Digest, got)
		}
	}
}

// --exclude-referrers: no referrer reaches the target.
func TestRestoreExcludeReferrers(t *testing.T) {
	_, sample, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "--exclude-referrers", "-i", in, ref(dst, "demo/backend"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "✓ Restored "+dst.Host()+"/demo/backend:v2 with 0 referrer(s)")
	wantTag(t, dst, "demo/backend", "v2", sample.Tags["demo/backend"]["v2"])
	for _, ref := range sample.Referrers["demo/backend"] {
		if got := referrersOf(t, dst, "demo/backend", ref.Subject); len(got) != 0 {
			t.Errorf("referrers of %s: %v", ref.Subject.Digest, got)
		}
	}
}

// The terminal path: a progress bar on stderr while restored lines arrive.
func TestRestoreReporterProgressBar(t *testing.T) {
	var out, errOut bytes.Buffer
	var mu sync.Mutex
	c := &cli{stdout: lockedWriter{&mu, &out}, stderr: lockedWriter{&mu, &errOut}}
	p := &plan.Restore{Concurrency: 1}
	rep := &restoreReporter{c: c, out: c.stdout, plan: p, in: &backupIndex{size: -1}, tty: true}
	pr := &pipeline.Progress{}
	rep.start(pr)
	pr.Total.Store(10 << 20)
	var wg sync.WaitGroup
	for _, name := range []string{"reg.example/a", "reg.example/b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				pr.Done.Add(1 << 20)
				time.Sleep(30 * time.Millisecond)
			}
			rep.observe(pipeline.Event{Kind: pipeline.RepoDone, Repo: name, Tags: []pipeline.TagResult{{Name: "v1", Referrers: 2}}})
		}()
	}
	wg.Wait()
	rep.stop()
	mu.Lock()
	defer mu.Unlock()
	wantContains(t, "stdout", out.String(),
		"✓ Restored reg.example/a:v1 with 2 referrer(s)\n", "✓ Restored reg.example/b:v1 with 2 referrer(s)\n")
	wantContains(t, "progress bar", errOut.String(), "Restoring", "MB")
}

// From a stream, a blob over 1 MiB that two target registries need is read
// from the stream once and pushed to both (the pipeline keeps a copy for
// the second).
func TestRestoreStreamBlobForTwoRegistries(t *testing.T) {
	src := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 3 << 20})
	in := filepath.Join(t.TempDir(), "apps.tar.gz")
	backupSample(t, src, in, allRepos...)
	a, b := registrytest.NewInProcess(t), registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "--concurrency", "1", "-i", in, ref(a, "demo/frontend"), ref(b, "demo/backend"))
	r.wantCode(t, exitOK)
	wantTag(t, a, "demo/frontend", "v1", sample.Tags["demo/frontend"]["v1"])
	wantTag(t, b, "demo/backend", "v1", sample.Tags["demo/backend"]["v1"])
}

// From a stream, a registry that declines a cross-repository mount
// (answers 202, as ECR does; ggcr's registry without the compatibility
// layer) gets the blob uploaded again from the pipeline's copy.
func TestRestoreStreamMountDeclined(t *testing.T) {
	src := registrytest.NewInProcess(t)
	registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 3 << 20})
	in := filepath.Join(t.TempDir(), "apps.tar.zst")
	backupSample(t, src, in, allRepos...)
	dst := registrytest.NewInProcess(t, registrytest.WithoutFixes())
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "--concurrency", "1", "-i", in, dst.Host())
	r.wantCode(t, exitOK)
}

// Content of a repository that failed is not counted as already present:
// a restore into an empty registry reports nothing in place.
func TestRestorePresentExcludesFailedRepository(t *testing.T) {
	_, _, in := sampleBackup(t)
	dst := registrytest.NewInProcess(t, denyPushes("demo/backend"))
	r := regvault(t, "", "restore", "--plain-http", "--fail-fast=false", "--format", "json", "-i", in, dst.Host())
	r.wantCode(t, exitPartial)
	var js struct {
		Present int64 `json:"present"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatal(err)
	}
	if js.Present != 0 {
		t.Errorf("the target was empty, but the sink counts %d manifest(s)/blob(s) as already present", js.Present)
	}
}

// Authentication and TLS: htpasswd over HTTPS with the registry's CA. A
// wrong password fails with a reason and a recommendation, and never
// appears in the output; the right one restores.
func TestRestoreDistributionAuthTLS(t *testing.T) {
	const password = "restore-password-4242"
	const wrong = "restore-wrong-pass-77"
	_, sample, in := sampleBackup(t)
	dst := registrytest.NewDistribution(t, registrytest.DistConfig{TLS: true, Htpasswd: map[string]string{"alice": password}})
	r := regvault(t, wrong, "restore", "--no-tty", "--ca-file", dst.CAFile(), "-u", "alice", "--password-stdin", "-i", in, ref(dst, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "Error: Failed to restore "+dst.Host()+"/demo/frontend",
		"(authentication required)", "Check credentials for "+dst.Host())
	wantNotContains(t, "output", r.stdout+r.stderr, wrong, password)

	r = regvault(t, "", "restore", "--no-tty", "-u", "alice", "-p", password, "-i", in, ref(dst, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "TLS certificate not trusted", "--ca-file")

	r = regvault(t, password, "restore", "--no-tty", "--ca-file", dst.CAFile(), "-u", "alice", "--password-stdin", "-i", in, ref(dst, "demo/frontend"))
	r.wantCode(t, exitOK)
	wantNotContains(t, "output", r.stdout+r.stderr, password)
	ctx := context.Background()
	repo := registrytest.Repo(t, dst, "demo/frontend")
	for tag, want := range sample.Tags["demo/frontend"] {
		got, err := repo.Resolve(ctx, tag)
		if err != nil || got.Digest != want.Digest {
			t.Errorf("demo/frontend:%s: %v %v", tag, got.Digest, err)
		}
	}

	// A dry run asks with the same credentials, read-only.
	dst.ResetStats()
	r = regvault(t, password, "restore", "--dry-run", "--ca-file", dst.CAFile(), "-u", "alice", "--password-stdin", "-i", in, dst.Host())
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "[DRY RUN] Already in the target registry: ")
	wantNotContains(t, "stdout", r.stdout, "Could not ask")
	if n := writes(dst); n != 0 {
		t.Errorf("a dry run made %d writes", n)
	}
}

// The dry run's line on what the targets have, when asking them failed,
// hides the secrets given on the command line as every other line does.
func TestRestoreDryRunPresentLineRedacts(t *testing.T) {
	const password = "pw-S3cret-dryrun-41c7"
	c := &cli{secrets: []string{password}}
	s := &restoreSummary{
		plan:     &plan.Restore{},
		checkErr: errors.New("asking the target: server said: bad credentials " + password),
	}
	line := presentLine(s, c.redact, 100, 100, 2)
	wantNotContains(t, "line", line, password)
	wantContains(t, "line", line, "Could not ask the target registry", "***")
}
