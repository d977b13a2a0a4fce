package inspect

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/registrytest"
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
		Registry: p.Registry, Repos: p.Repos, IncludeReferrers: true, Concurrency: 4,
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

type member struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, path string) []member {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var ms []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, member{h, data})
	}
}

// tarBytes writes members as a tar, compressed as path's name says.
func tarBytes(t *testing.T, path string, ms []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		if m.hdr.Typeflag == tar.TypeReg {
			m.hdr.Size = int64(len(m.data))
		}
		if err := tw.WriteHeader(m.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	switch {
	case strings.HasSuffix(path, ".gz"):
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(out)
		zw.Close()
		out = z.Bytes()
	case strings.HasSuffix(path, ".zst"):
		zw, _ := zstd.NewWriter(nil)
		out = zw.EncodeAll(out, nil)
	}
	return out
}

func writeTar(t *testing.T, path string, ms []member) string {
	t.Helper()
	if err := os.WriteFile(path, tarBytes(t, path, ms), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func blobMember(data []byte) member {
	return member{&tar.Header{Name: archive.BlobPath(digest.FromBytes(data)), Typeflag: tar.TypeReg, Mode: 0o644}, data}
}

// editIndex changes index.json among ms.
func editIndex(t *testing.T, ms []member, edit func(idx map[string]any)) []member {
	t.Helper()
	out := make([]member, len(ms))
	copy(out, ms)
	for i, m := range out {
		if m.hdr.Name == "index.json" {
			var idx map[string]any
			if err := json.Unmarshal(m.data, &idx); err != nil {
				t.Fatal(err)
			}
			edit(idx)
			data, _ := json.Marshal(idx)
			h := *m.hdr
			out[i] = member{&h, data}
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
