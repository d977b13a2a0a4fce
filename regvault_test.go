package regvault_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/regvault/regvault"
	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
)

func startSample(t *testing.T) (*registrytest.Server, registrytest.Sample) {
	t.Helper()
	reg, err := registrytest.StartInProcess()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	sample, err := registrytest.SeedSample(context.Background(), reg.Target(), registrytest.SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return reg, sample
}

// A repository that fails is a *RepositoryError naming it and the
// operation, reachable with errors.As from the returned error and in the
// report; the others are done.
func TestBackupRepositoryError(t *testing.T) {
	reg, sample := startSample(t)
	out := filepath.Join(t.TempDir(), "b.tar")
	report, err := regvault.Backup(context.Background(), regvault.BackupOptions{
		Sources:  []string{reg.Host() + "/demo/frontend", reg.Host() + "/no/such"},
		Output:   out,
		Registry: registry.Options{PlainHTTP: true},
	})
	var re *regvault.RepositoryError
	if !errors.As(err, &re) {
		t.Fatalf("error %v: not a *RepositoryError", err)
	}
	if re.Op != regvault.OpBackup || re.Repository.Registry != reg.Host() || re.Repository.Path != "no/such" || re.Unwrap() == nil {
		t.Errorf("RepositoryError %+v: want op backup, repository %s/no/such, a cause", re, reg.Host())
	}
	if report == nil || report.Err != nil || len(report.Repositories) != 2 {
		t.Fatalf("report %+v: want two repositories, no failure of the whole run", report)
	}
	front, missing := report.Repositories[0], report.Repositories[1]
	if !front.OK() || len(front.Tags) != len(sample.Tags["demo/frontend"]) {
		t.Errorf("demo/frontend: %+v, want done with %d tags", front, len(sample.Tags["demo/frontend"]))
	}
	if missing.Err != re || missing.Stopped {
		t.Errorf("no/such: %+v, want the returned error", missing)
	}
	if got := report.Failure(graph.Repository{Registry: reg.Host(), Path: "no/such"}); got != re {
		t.Errorf("Failure(no/such) = %v", got)
	}
}

// Under FailFast only the repository that failed carries an error; the
// others are done or stopped, never blamed.
func TestBackupFailFastBlamesOne(t *testing.T) {
	reg, _ := startSample(t)
	report, err := regvault.Backup(context.Background(), regvault.BackupOptions{
		Sources:  []string{reg.Host() + "/demo/backend", reg.Host() + "/demo/frontend", reg.Host() + "/no/such", reg.Host() + "/library/base"},
		Output:   filepath.Join(t.TempDir(), "ff.tar"),
		FailFast: true,
		Registry: registry.Options{PlainHTTP: true},
	})
	if err == nil || report == nil {
		t.Fatalf("a fail-fast backup with a missing repository: err %v, report %v", err, report)
	}
	failed := report.Failed()
	if len(failed) != 1 || failed[0].Repository.Path != "no/such" {
		t.Fatalf("failed %+v: want no/such alone", failed)
	}
	for _, rr := range report.Repositories {
		if rr.Repository.Path != "no/such" && rr.Err != nil {
			t.Errorf("%s blamed: %v", rr.Repository, rr.Err)
		}
	}
}

// Restore pushes a backup made by Backup; its report names the target
// repositories and their tags. Bad options are a usage error, no report.
func TestRestoreReport(t *testing.T) {
	ctx := context.Background()
	reg, sample := startSample(t)
	out := filepath.Join(t.TempDir(), "b.tar")
	if _, err := regvault.Backup(ctx, regvault.BackupOptions{
		Sources: []string{reg.Host() + "/demo/frontend"}, Output: out, IncludeReferrers: true,
		Registry: registry.Options{PlainHTTP: true},
	}); err != nil {
		t.Fatal(err)
	}
	dst, err := registrytest.StartInProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	report, err := regvault.Restore(ctx, regvault.RestoreOptions{Input: out})
	var ue *plan.UsageError
	if report != nil || !errors.As(err, &ue) {
		t.Fatalf("no target: report %v, error %v; want a usage error", report, err)
	}

	report, err = regvault.Restore(ctx, regvault.RestoreOptions{
		Input: out, Targets: []string{dst.Host() + "/mirror/frontend"},
		Registry: registry.Options{PlainHTTP: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(report.Repositories) != 1 {
		t.Fatalf("repositories %+v", report.Repositories)
	}
	rr := report.Repositories[0]
	if rr.Repository.Registry != dst.Host() || rr.Repository.Path != "mirror/frontend" || !rr.OK() {
		t.Errorf("target %+v", rr)
	}
	for _, tr := range rr.Tags {
		if want := sample.Tags["demo/frontend"][tr.Name]; tr.Desc.Digest != want.Digest {
			t.Errorf("tag %s: %s, want %s", tr.Name, tr.Desc.Digest, want.Digest)
		}
	}
	if len(rr.Tags) != len(sample.Tags["demo/frontend"]) || report.Sink == nil || report.Sink.Stats().Tagged.Load() != int64(len(rr.Tags)) {
		t.Errorf("tags %+v, want every tag of demo/frontend set", rr.Tags)
	}
}

// Plan resolves tags to digests without writing anything; a repository
// that cannot be read is a RepositoryError of the plan.
func TestPlan(t *testing.T) {
	reg, sample := startSample(t)
	reg.ResetStats()
	sel, err := regvault.Plan(context.Background(), regvault.PlanOptions{
		Sources:  []string{reg.Host() + "/demo/backend", reg.Host() + "/no/such"},
		Registry: registry.Options{PlainHTTP: true},
	})
	var re *regvault.RepositoryError
	if !errors.As(err, &re) || re.Op != regvault.OpPlan || re.Repository.Path != "no/such" {
		t.Fatalf("error %v: want the plan's RepositoryError for no/such", err)
	}
	if sel == nil || len(sel.Repositories) != 2 || sel.UniqueNodes == 0 {
		t.Fatalf("selection %+v", sel)
	}
	backend := sel.Repositories[0]
	if len(backend.Tags) != len(sample.Tags["demo/backend"]) {
		t.Fatalf("demo/backend tags %+v", backend.Tags)
	}
	for _, tr := range backend.Tags {
		if want := sample.Tags["demo/backend"][tr.Name]; tr.Desc.Digest != want.Digest {
			t.Errorf("%s: %s, want %s", tr.Name, tr.Desc.Digest, want.Digest)
		}
	}
	st := reg.Stats()
	if n := st.ByMethod("PUT") + st.ByMethod("POST") + st.ByMethod("PATCH") + st.ByMethod("DELETE"); n != 0 {
		t.Errorf("a plan made %d writes", n)
	}
}

// Copy reports each target repository; a source repository that cannot
// be read is a RepositoryError of the copy naming it, and with FailFast
// off the others are copied.
func TestCopyReport(t *testing.T) {
	ctx := context.Background()
	src, sample := startSample(t)
	dst, err := registrytest.StartInProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	failFast := false
	report, err := regvault.Copy(ctx, regvault.CopyOptions{
		Sources:  []string{src.Host() + "/demo/frontend", src.Host() + "/no/such"},
		Targets:  []string{dst.Host() + "/mirror"},
		FailFast: &failFast,
		From:     registry.Options{PlainHTTP: true},
		To:       registry.Options{PlainHTTP: true},
	})
	var re *regvault.RepositoryError
	if !errors.As(err, &re) || re.Op != regvault.OpCopy || re.Repository.Registry != src.Host() || re.Repository.Path != "no/such" {
		t.Fatalf("error %v: want the copy's RepositoryError for %s/no/such", err, src.Host())
	}
	if report == nil || len(report.Repositories) != 2 {
		t.Fatalf("report %+v", report)
	}
	front := report.Repositories[0]
	if front.Repository.String() != dst.Host()+"/mirror/demo/frontend" || !front.OK() || len(front.Tags) != len(sample.Tags["demo/frontend"]) {
		t.Errorf("target %+v", front)
	}
	if report.Repositories[1].Err != re {
		t.Errorf("the failed source %+v is not the returned error", report.Repositories[1])
	}
}
