package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/planfile"
)

func readPlan(t *testing.T, path string) *planfile.Plan {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planfile.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

func planRepos(p *planfile.Plan) []string {
	var out []string
	for _, r := range p.Repositories {
		out = append(out, r.Name)
	}
	return out
}

// regvault plan resolves the selection once into a deterministic plan
// file: a <registry>/<prefix>/* pattern lists the catalog, the same
// registry state gives the same bytes, the tags and digests are the
// registry's, and the summary names the counts.
func TestPlanCommand(t *testing.T) {
	src, sample := sampleRegistry(t)
	dir := t.TempDir()
	one := filepath.Join(dir, "one.json")
	r := regvault(t, "", "plan", "--plain-http", "--no-tty", "--include-referrers", "-o", one, src.Host()+"/demo/*")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Plan of "+src.Host()+" written to "+one+": 2 repositories", ", with referrers")
	p := readPlan(t, one)
	if got, want := planRepos(p), []string{registrytest.SampleBackend, registrytest.SampleFrontend}; !slices.Equal(got, want) {
		t.Fatalf("plan of demo/*: repositories %v, want %v", got, want)
	}
	if !p.IncludeReferrers || len(p.Referrers) == 0 {
		t.Errorf("plan with --include-referrers: includeReferrers %v, %d referrers", p.IncludeReferrers, len(p.Referrers))
	}
	for _, repo := range p.Repositories {
		for _, tag := range repo.Tags {
			want := sample.Tags[repo.Name][tag.Name]
			if tag.Digest != want.Digest {
				t.Errorf("%s:%s: %s in the plan, %s in the registry", repo.Name, tag.Name, tag.Digest, want.Digest)
			}
		}
		if len(repo.Tags) != len(sample.Tags[repo.Name]) {
			t.Errorf("%s: %d tags in the plan, %d in the registry", repo.Name, len(repo.Tags), len(sample.Tags[repo.Name]))
		}
	}

	// The same state, the same bytes; the named repositories are the
	// pattern's.
	two := filepath.Join(dir, "two.json")
	regvault(t, "", "plan", "--plain-http", "--no-tty", "--include-referrers", "-o", two,
		ref(src, registrytest.SampleFrontend), ref(src, registrytest.SampleBackend)).wantCode(t, exitOK)
	a, _ := os.ReadFile(one)
	b, _ := os.ReadFile(two)
	if !bytes.Equal(a, b) {
		t.Errorf("two plans of the same selection differ:\n%s\n---\n%s", a, b)
	}
	// No temporary file is left next to it.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the plan's directory holds %v, want one.json and two.json", entries)
	}

	// Every repository, to standard output, with the shards' division.
	r = regvault(t, "", "plan", "--plain-http", "--no-tty", "-o", "-", "--shards", "2", src.Host()+"/*")
	r.wantCode(t, exitOK)
	all, err := planfile.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatalf("plan on stdout: %v", err)
	}
	if got := planRepos(all); !slices.Equal(got, allRepos) {
		t.Errorf("plan of <registry>/*: %v, want %v", got, allRepos)
	}
	wantContains(t, "stderr", r.stderr, "3 repositories", "2 shards (--shard I/2):", "  0/2: ", "  1/2: ")
}

func TestPlanErrors(t *testing.T) {
	src, _ := sampleRegistry(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "plan.json")
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("the named pipe was replaced: %v %v", fi, err)
		}
	}()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no output", []string{src.Host() + "/demo/*"}, exitUsage, "--output is required"},
		{"no source", []string{"-o", out}, exitUsage, "no repository given"},
		{"pattern with a tag", []string{"-o", out, src.Host() + "/demo/*:v1"}, exitUsage, "only a last path element * is a pattern"},
		{"empty prefix", []string{"-o", out, src.Host() + "/nothing/*"}, exitFailure, "does not list any repository under nothing/"},
		{"a tag not there", []string{"-o", out, ref(src, registrytest.SampleFrontend) + ":nope"}, exitFailure, "no plan written: 1 of 1 repository could not be read"},
		{"not a regular file", []string{"-o", fifo, ref(src, registrytest.SampleFrontend)}, exitUsage, "is not a regular file (a device or a named pipe)"},
		{"bad shards", []string{"-o", out, "--shards", "1", ref(src, registrytest.SampleFrontend)}, exitUsage, "--shards 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := regvault(t, "", append([]string{"plan", "--plain-http", "--no-tty"}, tc.args...)...)
			r.wantCode(t, tc.code)
			wantContains(t, "stderr", r.stderr, tc.want)
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a plan was written")
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// makePlan writes the plan of the sample's repositories, with referrers.
func makePlan(t *testing.T, src *registrytest.Server) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "plan.json")
	regvault(t, "", "plan", "--plain-http", "--no-tty", "--include-referrers", "-o", out, src.Host()+"/*").wantCode(t, exitOK)
	return out
}

// Bad --plan and --shard are usage errors: nothing is done (exit code 2).
func TestPlanShardUsageErrors(t *testing.T) {
	src, _ := sampleRegistry(t)
	p := makePlan(t, src)
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version": 1, "registry": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "part.tar")
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"shard without plan", "", []string{"backup", "--shard", "0/2", "-o", out, ref(src, registrytest.SampleBase)}, "--shard 0/2 needs --plan"},
		{"plan and sources", "", []string{"backup", "--plan", p, "-o", out, ref(src, registrytest.SampleBase)}, "give no repositories as arguments"},
		{"plan missing", "", []string{"backup", "--plan", filepath.Join(dir, "nope.json"), "-o", out}, "--plan: open"},
		{"plan invalid", "", []string{"backup", "--plan", bad, "-o", out}, "--plan " + bad + ": invalid plan file"},
		{"index out of range", "", []string{"backup", "--plan", p, "--shard", "2/2", "-o", out}, "index 2 is out of range"},
		{"bad spec", "", []string{"backup", "--plan", p, "--shard", "two", "-o", out}, "use I/N"},
		{"auto unset", "", []string{"backup", "--plan", p, "--shard", "auto/2", "-o", out}, "$JOB_COMPLETION_INDEX is not set"},
		{"auto out of range", "5", []string{"backup", "--plan", p, "--shard", "auto/2", "-o", out}, "index 5 ($JOB_COMPLETION_INDEX) is out of range"},
		{"copy plan and sources", "", []string{"copy", "--plan", p, ref(src, registrytest.SampleBase), src.Host() + "/x"}, "the arguments are the targets only"},
		{"copy no target", "", []string{"copy", "--plan", p}, "no target given"},
		{"copy bad shard", "", []string{"copy", "--plan", p, "--shard", "0/0", src.Host() + "/x"}, "must be a whole number from 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("JOB_COMPLETION_INDEX", tc.env)
			r := regvault(t, "", tc.args...)
			r.wantCode(t, exitUsage)
			wantContains(t, "stderr", r.stderr, tc.want)
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("written: %v", entries)
	}
}

// planOfSample makes a plan of the sample registry and picks a tag of
// it to move: its repository, name and planned descriptor.
func planOfSample(t *testing.T) (src *registrytest.Server, plan, repo, tag string, old ocispec.Descriptor) {
	t.Helper()
	src, sample := sampleRegistry(t)
	plan = makePlan(t, src)
	repo = registrytest.SampleBase
	for name := range sample.Tags[repo] {
		tag = name
		break
	}
	return src, plan, repo, tag, sample.Tags[repo][tag]
}

// A tag that moved since the plan was made is backed up as it is now,
// with a warning naming both digests.
func TestPlanMovedTag(t *testing.T) {
	src, p, repo, tag, old := planOfSample(t)
	moved, err := registrytest.PushImage(context.Background(), registrytest.Repo(t, src, repo), tag, registrytest.Bytes("moved", 128))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "all.tar")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--plan", p, "-o", out)
	r.wantCode(t, exitOK)
	wantContains(t, "stderr", r.stderr, "Warning: "+src.Host()+"/"+repo+":"+tag+" moved since the plan was made: the plan has "+old.Digest.String()+", the registry now "+moved.Digest.String()+" (used)")
	if got := layoutTags(t, out); !slices.Contains(got, src.Host()+"/"+repo+":"+tag) {
		t.Errorf("tags %v lack the moved one", got)
	}
	dst := registrytest.NewInProcess(t)
	r = regvault(t, "", "copy", "--from-plain-http", "--to-plain-http", "--no-tty", "--plan", p, dst.Host())
	r.wantCode(t, exitOK)
	wantContains(t, "stderr", r.stderr, "Warning: "+src.Host()+"/"+repo+":"+tag+" moved since the plan was made")
	wantTag(t, dst, repo, tag, moved)
	if strings.Count(r.stderr, "Warning: ") != 1 {
		t.Errorf("stderr: %s", r.stderr)
	}
}

// With --format json, the report of backup and copy --plan lists the tags
// that moved since the plan was made (movedSincePlan), as the warning on
// standard error does; a run where nothing moved has no such field.
func TestPlanMovedTagJSON(t *testing.T) {
	src, p, repo, tag, old := planOfSample(t)
	type move struct{ Reference, Tag, Planned, Now string }
	moves := func(t *testing.T, r result) []move {
		t.Helper()
		var js struct {
			MovedSincePlan *[]move `json:"movedSincePlan"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
			t.Fatalf("stdout is not the JSON report: %v\n%s", err, r.stdout)
		}
		if js.MovedSincePlan == nil {
			return nil
		}
		return *js.MovedSincePlan
	}
	// Nothing moved yet.
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--format", "json", "--plan", p, "-o", filepath.Join(t.TempDir(), "before.tar"))
	r.wantCode(t, exitOK)
	if got := moves(t, r); got != nil {
		t.Errorf("nothing moved, movedSincePlan is %v", got)
	}
	moved, err := registrytest.PushImage(context.Background(), registrytest.Repo(t, src, repo), tag, registrytest.Bytes("moved", 128))
	if err != nil {
		t.Fatal(err)
	}
	want := []move{{Reference: src.Host() + "/" + repo, Tag: tag, Planned: old.Digest.String(), Now: moved.Digest.String()}}
	r = regvault(t, "", "backup", "--plain-http", "--no-tty", "--format", "json", "--plan", p, "-o", filepath.Join(t.TempDir(), "all.tar"))
	r.wantCode(t, exitOK)
	if got := moves(t, r); !slices.Equal(got, want) {
		t.Errorf("backup: movedSincePlan %v, want %v", got, want)
	}
	wantContains(t, "stderr", r.stderr, "Warning: "+src.Host()+"/"+repo+":"+tag+" moved since the plan was made")
	dst := registrytest.NewInProcess(t)
	r = regvault(t, "", "copy", "--from-plain-http", "--to-plain-http", "--no-tty", "--format", "json", "--plan", p, dst.Host())
	r.wantCode(t, exitOK)
	if got := moves(t, r); !slices.Equal(got, want) {
		t.Errorf("copy: movedSincePlan %v, want %v", got, want)
	}
	wantTag(t, dst, repo, tag, moved)
}

// <registry>/<prefix>/* names the repositories of the catalog under
// prefix for backup and copy too.
func TestSourcePatterns(t *testing.T) {
	src, sample := sampleRegistry(t)
	out := filepath.Join(t.TempDir(), "demo")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", out, src.Host()+"/demo/*")
	r.wantCode(t, exitOK)
	var want []string
	for _, repo := range []string{registrytest.SampleBackend, registrytest.SampleFrontend} {
		for tag := range sample.Tags[repo] {
			want = append(want, ref(src, repo)+":"+tag)
		}
	}
	slices.Sort(want)
	if got := layoutTags(t, out); !slices.Equal(got, want) {
		t.Errorf("backup of demo/*: %v, want %v", got, want)
	}
	dst := registrytest.NewInProcess(t)
	regvault(t, "", "copy", "--from-plain-http", "--to-plain-http", "--no-tty", src.Host()+"/library/*", dst.Host()+"/m").wantCode(t, exitOK)
	for tag, d := range sample.Tags[registrytest.SampleBase] {
		wantTag(t, dst, "m", tag, d) // one repository: renamed to m, as the table says
	}
	r = regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", out+"2", src.Host()+"/none/*")
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "does not list any repository under none/")
}

// A shard with no tag (more shards than the plan has tags) does nothing
// and exits 0: its pod completes.
func TestPlanEmptyShard(t *testing.T) {
	src, sample := sampleRegistry(t)
	var tag string
	for name := range sample.Tags[registrytest.SampleBase] {
		tag = name
		break
	}
	p := filepath.Join(t.TempDir(), "plan.json")
	regvault(t, "", "plan", "--plain-http", "--no-tty", "-o", p, ref(src, registrytest.SampleBase)+":"+tag).wantCode(t, exitOK)
	dir := t.TempDir()
	var ran int
	for _, spec := range []string{"0/2", "1/2"} {
		out := filepath.Join(dir, strings.ReplaceAll(spec, "/", "-of-")+".tar")
		r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--plan", p, "--shard", spec, "-o", out)
		r.wantCode(t, exitOK)
		if strings.Contains(r.stdout, "has no tag to move") {
			if _, err := os.Stat(out); err == nil {
				t.Errorf("shard %s without tags wrote %s", spec, out)
			}
			continue
		}
		ran++
		if got := layoutTags(t, out); !slices.Equal(got, []string{ref(src, registrytest.SampleBase) + ":" + tag}) {
			t.Errorf("shard %s: %v", spec, got)
		}
	}
	if ran != 1 {
		t.Errorf("%d shards ran, want 1", ran)
	}
	dst := registrytest.NewInProcess(t)
	for _, spec := range []string{"0/2", "1/2"} {
		regvault(t, "", "copy", "--from-plain-http", "--to-plain-http", "--no-tty", "--plan", p, "--shard", spec, dst.Host()).wantCode(t, exitOK)
	}
	wantTag(t, dst, registrytest.SampleBase, tag, sample.Tags[registrytest.SampleBase][tag])
}

// A repository the catalog lists with no tag (distribution keeps listing
// one whose tags were all deleted) is left out of a plan of a pattern,
// with a note; named as such, it is a failure.
func TestPlanLeavesOutEmptyRepositories(t *testing.T) {
	src := registrytest.NewDistribution(t, registrytest.DistConfig{})
	registrytest.Seed(t, src, registrytest.SampleOptions{})
	r := registrytest.Repo(t, src, "demo/empty")
	d, err := registrytest.PushImage(t.Context(), r, "gone", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "plan.json")
	res := regvault(t, "", "plan", "--plain-http", "--no-tty", "-o", out, src.Host()+"/demo/*")
	res.wantCode(t, exitOK)
	wantContains(t, "stderr", res.stderr, "Note: "+src.Host()+"/demo/empty has no tags (the catalog lists it, its tags were deleted): left out of the plan")
	if got, want := planRepos(readPlan(t, out)), []string{registrytest.SampleBackend, registrytest.SampleFrontend}; !slices.Equal(got, want) {
		t.Errorf("plan: %v, want %v", got, want)
	}
	res = regvault(t, "", "plan", "--plain-http", "--no-tty", "-o", out+"2", src.Host()+"/demo/*", ref(src, "demo/empty"))
	res.wantCode(t, exitFailure)
	wantContains(t, "stdout", res.stdout, src.Host()+"/demo/empty has no tags")
}
