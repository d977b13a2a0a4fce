package inspect

import (
	"archive/tar"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// sample is an in-process registry with registrytest's sample.
func sample(t *testing.T) (*registrytest.Server, registrytest.Sample) {
	t.Helper()
	s := registrytest.NewInProcess(t)
	return s, registrytest.Seed(t, s, registrytest.SampleOptions{})
}

// backup runs the backup pipeline, as `regvault backup --include-referrers
// --output out refs...` does.
func backup(t *testing.T, out string, refs ...string) {
	t.Helper()
	ctx := context.Background()
	p, err := plan.NewBackup(refs, plan.BackupOptions{Output: out, IncludeReferrers: true, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	client, err := registry.New(p.Registry, registry.Options{PlainHTTP: true, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	layout, err := sink.NewLayout(p.Output, sink.LayoutOptions{FullReference: p.FullReference})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = pipeline.Run(ctx, pipeline.Job{
		Registry: p.Registry, Selections: pipeline.BackupSelections(p.Repos, true), Concurrency: 4,
		Source: source.NewRegistry(client), Sink: layout, Progress: &pipeline.Progress{},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func refs(s *registrytest.Server, repos ...string) []string {
	out := make([]string, len(repos))
	for i, r := range repos {
		out[i] = s.Host() + "/" + r
	}
	return out
}

func blobMember(data []byte) archivetest.Member {
	return archivetest.Member{Hdr: &tar.Header{Name: archive.BlobPath(digest.FromBytes(data)), Typeflag: tar.TypeReg, Mode: 0o644}, Data: data}
}

// editIndex changes index.json among ms.
func editIndex(t *testing.T, ms []archivetest.Member, edit func(idx map[string]any)) []archivetest.Member {
	t.Helper()
	out := make([]archivetest.Member, len(ms))
	copy(out, ms)
	for i, m := range out {
		if m.Hdr.Name == "index.json" {
			var idx map[string]any
			if err := json.Unmarshal(m.Data, &idx); err != nil {
				t.Fatal(err)
			}
			edit(idx)
			data, _ := json.Marshal(idx)
			h := *m.Hdr
			out[i] = archivetest.Member{Hdr: &h, Data: data}
		}
	}
	return out
}

func verify(t *testing.T, path string) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), path, VerifyOptions{Workers: 2})
	if err != nil {
		t.Fatalf("Verify(%s): %v", path, err)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("report of %s:\n%s", filepath.Base(path), b)
	return rep
}

func wantIn(t *testing.T, list []string, subs ...string) {
	t.Helper()
	all := strings.Join(list, "\n")
	for _, s := range subs {
		if !strings.Contains(all, s) {
			t.Errorf("%q not in:\n%s", s, all)
		}
	}
}
