package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/source"
)

// The parts of a sharded backup restore as one, with --input repeated or
// a glob: the target gets what a restore of one unsharded backup of the
// plan gives (tags, digests, referrers); verify and repo ls read the
// parts as one too.
func TestRestoreSeveralInputs(t *testing.T) {
	src, sample := sampleRegistry(t)
	p := makePlan(t, src)
	dir := t.TempDir()
	parts := []string{filepath.Join(dir, "part-0-of-2.tar.zst"), filepath.Join(dir, "part-1-of-2")}
	for i, out := range parts {
		r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--plan", p, "--shard", []string{"0/2", "1/2"}[i], "-o", out)
		r.wantCode(t, exitOK)
		wantContains(t, "stderr", r.stderr, "shard "+[]string{"0/2", "1/2"}[i]+" of plan "+p)
	}
	whole := filepath.Join(t.TempDir(), "whole.tar")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--plan", p, "-o", whole).wantCode(t, exitOK)

	// The shards split the tags: neither part has them all.
	tags0, tags1 := backupTags(t, parts[0]), backupTags(t, parts[1])
	all := backupTags(t, whole)
	union := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(tags0), tags1...))))
	if len(tags0) == 0 || len(tags1) == 0 || !slices.Equal(union, all) {
		t.Fatalf("parts %v and %v, whole %v", tags0, tags1, all)
	}

	one := registrytest.NewInProcess(t)
	regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", whole, one.Host()).wantCode(t, exitOK)
	want := targetState(t, one, sample, "")

	several := registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", parts[0], "-i", parts[1], several.Host())
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Loaded backup archive: "+parts[0]+", "+parts[1])
	if got := targetState(t, several, sample, ""); !maps.Equal(got, want) {
		t.Errorf("restore of the parts:\n%v\nrestore of one backup:\n%v", got, want)
	}

	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "--format", "json", "-i", parts[0], "-i", parts[1], several.Host())
	r.wantCode(t, exitOK)
	var js struct {
		Inputs []string `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || !slices.Equal(js.Inputs, parts) {
		t.Errorf("JSON inputs %v (%v), want %v", js.Inputs, err, parts)
	}

	glob := registrytest.NewInProcess(t)
	regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", filepath.Join(dir, "part-*"), glob.Host()+"/g").wantCode(t, exitOK)
	if got := targetState(t, glob, sample, "g/"); !maps.Equal(got, want) {
		t.Errorf("restore of the parts by a glob:\n%v\nwant\n%v", got, want)
	}

	r = regvault(t, "", "verify", "-i", filepath.Join(dir, "part-*"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "== "+parts[0]+" (1 of 2)", "== "+parts[1]+" (2 of 2)", "All 2 backups can be restored together (6 tags).")

	r = regvault(t, "", "repo", "ls", "--oci-layout-path", parts[0], "--oci-layout-path", parts[1])
	r.wantCode(t, exitOK)
	var full []string
	for _, repo := range allRepos {
		full = append(full, ref(src, repo))
	}
	if got := strings.Fields(r.stdout); !slices.Equal(got, full) {
		t.Errorf("repo ls of the parts: %v, want %v", got, full)
	}

	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", filepath.Join(dir, "nothing-*"), several.Host())
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "the pattern matches no file or directory")
	r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", parts[0], "-i", parts[0], several.Host())
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "is given twice")
}

// backupTags are the repository:tag entries of a backup in any form.
func backupTags(t *testing.T, path string) []string {
	t.Helper()
	l, err := source.OpenLayout(t.Context(), path, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []string
	for _, e := range l.Entries() {
		if e.IsTag() {
			out = append(out, e.Repo+":"+e.Tag)
		}
	}
	slices.Sort(out)
	return out
}

// Two backups that give a tag different manifests are refused by restore
// (exit 2, nothing pushed) and verify (exit 1), naming both.
func TestSeveralInputsDisagree(t *testing.T) {
	src, sample := sampleRegistry(t)
	repo := registrytest.SampleBase
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", a, ref(src, repo)).wantCode(t, exitOK)
	var tag string
	for name := range sample.Tags[repo] {
		tag = name
		break
	}
	if _, err := registrytest.PushImage(t.Context(), registrytest.Repo(t, src, repo), tag, registrytest.Bytes("moved", 128)); err != nil {
		t.Fatal(err)
	}
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", b, ref(src, repo)).wantCode(t, exitOK)

	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", a, "-i", b, dst.Host())
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, ref(src, repo)+":"+tag+" is ", "in backup "+a, "in backup "+b, "the backups do not agree")
	if _, err := registrytest.Repo(t, dst, repo).Resolve(t.Context(), tag); err == nil {
		t.Errorf("%s:%s was pushed", repo, tag)
	}

	r = regvault(t, "", "verify", "-i", a, "-i", b)
	r.wantCode(t, exitFailure)
	wantContains(t, "stdout", r.stdout, "✗ the backups do not agree: "+ref(src, repo)+":"+tag+" is ")
	wantContains(t, "stderr", r.stderr, "the 2 backups cannot be restored in full")
	if _, err := os.Stat(a); err != nil {
		t.Fatal(err)
	}
}
