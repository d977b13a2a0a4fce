package pipeline_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/registrytest"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

func restore(t *testing.T, input string, targets []string, dryRun bool) (*pipeline.Result, *sink.Registry, error) {
	res, snk, _, err := restoreGraph(t, input, targets, dryRun)
	return res, snk, err
}

func restoreGraph(t *testing.T, input string, targets []string, dryRun bool) (*pipeline.Result, *sink.Registry, *graph.Graph, error) {
	t.Helper()
	ctx := context.Background()
	l, err := source.OpenLayout(ctx, input, nil, t.TempDir())
	require.NoError(t, err)
	defer l.Close()
	var entries []plan.BackupEntry
	for _, e := range l.Entries() {
		if !e.Referrer {
			entries = append(entries, plan.BackupEntry{Repo: e.Repo, Tag: e.Tag, Digest: e.Desc.Digest, Size: e.Desc.Size})
		}
	}
	p, err := plan.NewRestore(entries, targets, "", plan.RestoreOptions{Concurrency: 8})
	require.NoError(t, err)
	snk := sink.NewRegistry(registry.NewClients(registry.Options{PlainHTTP: true}), p.FailFast, 8)
	job := pipeline.RestoreJob{Plan: p, Source: l, Sink: snk, Concurrency: 8}
	if dryRun {
		job.Sink = nil
	}
	res, g, err := pipeline.RunRestore(ctx, job)
	return res, snk, g, err
}

// A multi-repository backup restored to a bare registry keeps every path,
// tag, digest and referrer; a second restore pushes nothing.
func TestRestoreWholeBackupTwice(t *testing.T) {
	src := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err := backup(t, src, out, sample.Repositories, true)
	require.NoError(t, err)

	dst := registrytest.NewInProcess(t)
	res, snk, g, err := restoreGraph(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	ctx := context.Background()
	for repo, tags := range sample.Tags {
		r := registrytest.Repo(t, dst, repo)
		for tag, want := range tags {
			got, err := r.Resolve(ctx, tag)
			require.NoError(t, err, "%s:%s", repo, tag)
			require.Equal(t, want.Digest, got.Digest)
		}
		for _, ref := range sample.Referrers[repo] {
			ok, err := r.Exists(ctx, ref.Descriptor)
			require.NoError(t, err)
			require.True(t, ok, "referrer %s in %s", ref.Descriptor.Digest, repo)
		}
	}
	// Each unique blob is uploaded once and mounted into the other
	// repositories that need it.
	var blobs, pairs int64
	var blobBytes int64
	for _, n := range g.Nodes() {
		if n.Kind != graph.KindManifest {
			blobs++
			blobBytes += n.Desc.Size
			pairs += int64(len(n.Repos))
		}
	}
	require.Equal(t, blobs, snk.Stats().Uploaded.Load())
	require.Equal(t, blobBytes, snk.Stats().UploadedBytes.Load())
	require.Equal(t, pairs-blobs, snk.Stats().Mounted.Load())
	require.Positive(t, snk.Stats().Mounted.Load())

	dst.ResetStats()
	res, snk, err = restore(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	st := dst.Stats()
	require.Zero(t, st.ByMethod("PUT")+st.ByMethod("POST")+st.ByMethod("PATCH"), "a second restore writes nothing")
	require.Zero(t, snk.Stats().Tagged.Load())
	require.EqualValues(t, 6, snk.Stats().TagsCurrent.Load())
}
