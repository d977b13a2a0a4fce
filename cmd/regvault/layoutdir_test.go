package main

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/registrytest"
)

// dirIndex reads index.json of a layout directory.
func dirIndex(t *testing.T, dir string) ocispec.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// dirTags maps the ref.names of a layout directory's index to digests.
func dirTags(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range dirIndex(t, dir).Manifests {
		if name, ok := d.Annotations[ocispec.AnnotationRefName]; ok {
			out[name] = d.Digest.String()
		}
	}
	return out
}

// dirSnapshot lists every file under dir with its size and content, to
// show that a refused run wrote nothing.
func dirSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantUnchanged(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := dirSnapshot(t, dir)
	var diff []string
	for p, b := range after {
		if before[p] != b {
			diff = append(diff, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			diff = append(diff, p)
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("a refused backup changed %s: %v", dir, diff)
	}
}

// A second backup into a directory that holds a tag-only backup of one
// repository never replaces that repository's tags: another repository,
// or full references, are refused with exit code 2 and nothing written;
// the same repository updates it, and a tag that moved is reported.
func TestBackupIntoDirectoryKeepsRepositoriesApart(t *testing.T) {
	s, sample := sampleRegistry(t)
	dir := filepath.Join(t.TempDir(), "layout")
	front, back := ref(s, registrytest.SampleFrontend), ref(s, registrytest.SampleBackend)
	backup := func(args ...string) result {
		return regvault(t, "", append([]string{"backup", "--plain-http", "--no-tty"}, args...)...)
	}

	backup("-o", dir, front).wantCode(t, exitOK)
	if got := dirIndex(t, dir).Annotations[archive.AnnotationRepository]; got != front {
		t.Errorf("index.json records repository %q, want %q", got, front)
	}
	v1 := sample.Tags[registrytest.SampleFrontend]["v1"].Digest.String()
	if got := dirTags(t, dir)["v1"]; got != v1 {
		t.Fatalf("v1 is %s, want demo/frontend's %s", got, v1)
	}
	before := dirSnapshot(t, dir)

	// Another repository: refused, nothing written, and said how to go on.
	r := backup("-o", dir, back)
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "holds the tags of "+front, "adding those of "+back, "new directory", "--full-reference")
	wantNotContains(t, "stdout", r.stdout, "Backing up")
	wantUnchanged(t, dir, before)
	// So says a dry run.
	backup("--dry-run", "-o", dir, back).wantCode(t, exitUsage)
	// Full references into tag-only names: refused.
	r = backup("--full-reference", "-o", dir, front)
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "named by the tag alone", "without --full-reference")
	wantUnchanged(t, dir, before)

	// The same repository, after v1 moved: updated, and reported.
	ctx := context.Background()
	moved, err := registrytest.PushImage(ctx, registrytest.Repo(t, s, registrytest.SampleFrontend), "v1", []byte("a new v1"))
	if err != nil {
		t.Fatal(err)
	}
	r = backup("-o", dir, front)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Updated 1 tag that moved to another digest", "v1: "+moved.Digest.String()+" (was "+v1+")")
	tags := dirTags(t, dir)
	if tags["v1"] != moved.Digest.String() || tags["v2"] != sample.Tags[registrytest.SampleFrontend]["v2"].Digest.String() || len(tags) != 2 {
		t.Errorf("tags after the update: %v", tags)
	}
	if got := dirIndex(t, dir).Annotations[archive.AnnotationRepository]; got != front {
		t.Errorf("index.json records repository %q after the update", got)
	}
	// Nothing moved: nothing reported.
	r = backup("-o", dir, front)
	r.wantCode(t, exitOK)
	wantNotContains(t, "stdout", r.stdout, "Updated")

	// The JSON summary lists a moved tag too.
	again, err := registrytest.PushImage(ctx, registrytest.Repo(t, s, registrytest.SampleFrontend), "v1", []byte("v1 once more"))
	if err != nil {
		t.Fatal(err)
	}
	r = backup("--format", "json", "-o", dir, front)
	r.wantCode(t, exitOK)
	var sum struct {
		MovedTags []struct{ Tag, From, To string } `json:"movedTags"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.MovedTags) != 1 || sum.MovedTags[0].Tag != "v1" || sum.MovedTags[0].From != moved.Digest.String() || sum.MovedTags[0].To != again.Digest.String() {
		t.Errorf("movedTags: %+v", sum.MovedTags)
	}
}

// A directory of full references takes only full references.
func TestBackupIntoFullReferenceDirectory(t *testing.T) {
	s, _ := sampleRegistry(t)
	dir := filepath.Join(t.TempDir(), "layout")
	front, back := ref(s, registrytest.SampleFrontend), ref(s, registrytest.SampleBackend)
	regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", dir, front, back).wantCode(t, exitOK)
	if ann := dirIndex(t, dir).Annotations; ann[archive.AnnotationRepository] != "" {
		t.Errorf("a full-reference layout records a single repository: %v", ann)
	}
	before := dirSnapshot(t, dir)
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", dir, front)
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "names its tags registry/repository:tag", "add to it with --full-reference")
	wantUnchanged(t, dir, before)
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", dir, front).wantCode(t, exitOK)
}

// A tag-only layout that does not record its repository (as oras writes
// one) is not added to: its tags could be another repository's.
func TestBackupIntoUnrecordedTagOnlyDirectory(t *testing.T) {
	s, _ := sampleRegistry(t)
	dir := filepath.Join(t.TempDir(), "layout")
	front := ref(s, registrytest.SampleFrontend)
	regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", dir, front).wantCode(t, exitOK)
	idx := dirIndex(t, dir)
	idx.Annotations = nil
	b, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	before := dirSnapshot(t, dir)
	for _, repo := range []string{front, ref(s, registrytest.SampleBackend)} {
		r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", dir, repo)
		r.wantCode(t, exitUsage)
		wantContains(t, "stderr", r.stderr, "does not record their repository", "new directory")
		wantUnchanged(t, dir, before)
	}
}

// A layout directory whose index.json cannot be read (here, cut short) is
// a failure (exit 1) that says what is wrong, not a usage error: only
// mixing repositories or naming is refused with exit code 2.
func TestBackupIntoDirectoryWithBrokenIndex(t *testing.T) {
	s, _ := sampleRegistry(t)
	dir := filepath.Join(t.TempDir(), "layout")
	front := ref(s, registrytest.SampleFrontend)
	backup := func() result {
		return regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", dir, front)
	}
	backup().wantCode(t, exitOK)
	idx := filepath.Join(dir, "index.json")
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(idx, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	r := backup()
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "layout "+dir, "reading index.json")
	wantNotContains(t, "stderr", r.stderr, "--help")
	wantNotContains(t, "stdout", r.stdout, "Backing up")
}
