package source_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// backupTo writes repos of srv to output with sink.Layout, as backup does.
func backupTo(t *testing.T, srv *registrytest.Server, output string, repos ...string) {
	t.Helper()
	var full []string
	for _, r := range repos {
		full = append(full, srv.Host()+"/"+r)
	}
	p, err := plan.NewBackup(full, plan.BackupOptions{Output: output, IncludeReferrers: true, Concurrency: 4, FullReference: true})
	require.NoError(t, err)
	c, err := registry.New(p.Registry, registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	l, err := sink.NewLayout(output, sink.LayoutOptions{FullReference: p.FullReference})
	require.NoError(t, err)
	res, _, err := pipeline.Run(context.Background(), pipeline.Job{
		Registry: p.Registry, Selections: pipeline.BackupSelections(p.Repos, true), Concurrency: 4,
		Source: source.NewRegistry(c), Sink: l, SpoolDir: t.TempDir(),
	})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
}

// restoreFrom restores every repository of src to dst, keeping paths.
func restoreFrom(t *testing.T, src source.Source, entries []plan.BackupEntry, dst *registrytest.Server) {
	t.Helper()
	p, err := plan.NewRestore(entries, []string{dst.Host()}, "", plan.RestoreOptions{Concurrency: 4})
	require.NoError(t, err)
	snk := sink.NewRegistry(registry.NewClients(registry.Options{PlainHTTP: true}), false, 4)
	res, _, err := pipeline.Run(context.Background(), pipeline.Job{Selections: pipeline.RestoreSelections(p), WholeSource: true,
		Source: src, Sink: snk, Concurrency: 4, SpoolDir: t.TempDir()})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
}

func tagEntries(ls *source.Layouts) []plan.BackupEntry {
	var out []plan.BackupEntry
	for _, e := range ls.Entries() {
		if e.IsTag() {
			out = append(out, plan.BackupEntry{Repo: e.Repo, Tag: e.Tag, Digest: e.Desc.Digest, Size: e.Desc.Size})
		}
	}
	return out
}

type holderCase struct {
	desc ocispec.Descriptor
	want string // the backup's path
}

// ownLayer is a layer that only repo's content has.
func ownLayer(t *testing.T, sample registrytest.Sample, repo string) ocispec.Descriptor {
	t.Helper()
	others := map[string]bool{}
	for _, r := range sample.Repositories {
		if r != repo {
			for _, d := range sample.Content[r] {
				others[d.Digest.String()] = true
			}
		}
	}
	for _, d := range sample.Content[repo] {
		if d.MediaType == ocispec.MediaTypeImageLayerGzip && !others[d.Digest.String()] {
			return d
		}
	}
	t.Fatalf("no layer of %s alone", repo)
	return ocispec.Descriptor{}
}

// Two parts of a backup, both with the shared repository, read as one:
// every tag once, shared blobs read from the first part, and a restore of
// both gives the target what a restore of one whole backup gives, with
// as many uploads.
func TestLayoutsUnion(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	dir := t.TempDir()
	a, b, whole := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b"), filepath.Join(dir, "whole.tar")
	backupTo(t, srv, a, registrytest.SampleFrontend, registrytest.SampleBase)
	backupTo(t, srv, b, registrytest.SampleBackend, registrytest.SampleBase)
	backupTo(t, srv, whole, sample.Repositories...)

	ctx := context.Background()
	ls, err := source.OpenLayouts(ctx, []string{a, b}, nil, t.TempDir())
	require.NoError(t, err)
	defer ls.Close()
	entries := tagEntries(ls)
	require.Len(t, entries, 6, "the tags of library/base, in both parts, come once")
	for repo, tags := range sample.Tags {
		got, err := ls.Tags(ctx, srv.Host()+"/"+repo)
		require.NoError(t, err)
		require.Len(t, got, len(tags), repo)
		for tag, want := range tags {
			d, _, err := ls.Resolve(ctx, srv.Host()+"/"+repo, tag)
			require.NoError(t, err)
			require.Equal(t, want.Digest, d.Digest, "%s:%s", repo, tag)
		}
	}
	// The shared base layer is read from the first part; each
	// repository's own layer from the part that has it.
	for _, c := range []holderCase{
		{sample.BaseLayer, a},
		{ownLayer(t, sample, registrytest.SampleFrontend), a},
		{ownLayer(t, sample, registrytest.SampleBackend), b},
	} {
		desc, want := c.desc, c.want
		l, err := ls.Holder(ctx, desc)
		require.NoError(t, err)
		require.Equal(t, want, l.Path(), "holder of %s", desc.Digest)
		rc, err := ls.Fetch(ctx, "", desc)
		require.NoError(t, err)
		_, err = content.ReadAll(rc, desc)
		rc.Close()
		require.NoError(t, err)
	}

	dstParts := registrytest.NewInProcess(t)
	restoreFrom(t, ls, entries, dstParts)
	one, err := source.OpenLayout(ctx, whole, nil, t.TempDir())
	require.NoError(t, err)
	defer one.Close()
	dstWhole := registrytest.NewInProcess(t)
	var wholeEntries []plan.BackupEntry
	for _, e := range one.Entries() {
		if e.IsTag() {
			wholeEntries = append(wholeEntries, plan.BackupEntry{Repo: e.Repo, Tag: e.Tag, Digest: e.Desc.Digest, Size: e.Desc.Size})
		}
	}
	restoreFrom(t, one, wholeEntries, dstWhole)
	for _, repo := range sample.Repositories {
		for tag, want := range sample.Tags[repo] {
			for _, dst := range []*registrytest.Server{dstParts, dstWhole} {
				got, err := registrytest.Repo(t, dst, repo).Resolve(ctx, tag)
				require.NoError(t, err)
				require.Equal(t, want.Digest, got.Digest, "%s:%s", repo, tag)
			}
		}
		for _, ref := range sample.Referrers[repo] {
			ok, err := registrytest.Repo(t, dstParts, repo).Exists(ctx, ref.Descriptor)
			require.NoError(t, err)
			require.True(t, ok, "referrer %s in %s", ref.Descriptor.Digest, repo)
		}
	}
	parts, wholeStats := dstParts.Stats(), dstWhole.Stats()
	require.Positive(t, parts.Count(http.MethodPut, registrytest.KindUpload))
	require.Equal(t, wholeStats.Count(http.MethodPut, registrytest.KindUpload), parts.Count(http.MethodPut, registrytest.KindUpload),
		"blobs in both parts are uploaded once, as from one backup")
	require.Equal(t, wholeStats.Count(http.MethodPut, registrytest.KindManifest), parts.Count(http.MethodPut, registrytest.KindManifest))
}

// Two streamed parts: each blob comes from the stream that holds it; a
// backup read with random access is preferred to a stream.
func TestLayoutsStreams(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	dir := t.TempDir()
	a, b, plain := filepath.Join(dir, "a.tar.zst"), filepath.Join(dir, "b.tar.gz"), filepath.Join(dir, "base.tar")
	backupTo(t, srv, a, registrytest.SampleFrontend, registrytest.SampleBase)
	backupTo(t, srv, b, registrytest.SampleBackend, registrytest.SampleBase)
	backupTo(t, srv, plain, registrytest.SampleBase)
	ctx := context.Background()

	ls, err := source.OpenLayouts(ctx, []string{a, b, plain}, nil, t.TempDir())
	require.NoError(t, err)
	defer ls.Close()
	require.True(t, ls.Streaming())
	for _, c := range []holderCase{
		{sample.BaseLayer, plain},
		{ownLayer(t, sample, registrytest.SampleFrontend), a},
		{ownLayer(t, sample, registrytest.SampleBackend), b},
	} {
		desc, want := c.desc, c.want
		l, err := ls.Holder(ctx, desc)
		require.NoError(t, err)
		require.Equal(t, want, l.Path(), "holder of %s", desc.Digest)
	}

	// A restore of the two streams alone.
	two, err := source.OpenLayouts(ctx, []string{a, b}, nil, t.TempDir())
	require.NoError(t, err)
	defer two.Close()
	dst := registrytest.NewInProcess(t)
	restoreFrom(t, two, tagEntries(two), dst)
	for _, repo := range sample.Repositories {
		for tag, want := range sample.Tags[repo] {
			got, err := registrytest.Repo(t, dst, repo).Resolve(ctx, tag)
			require.NoError(t, err)
			require.Equal(t, want.Digest, got.Digest, "%s:%s", repo, tag)
		}
	}
	require.NoError(t, two.Finish(ctx))
}

// The same tag at two manifests in two backups is refused, naming both.
func TestLayoutsConflictingTag(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	registrytest.Seed(t, srv, registrytest.SampleOptions{})
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b")
	backupTo(t, srv, a, registrytest.SampleFrontend)
	_, err := registrytest.PushImage(context.Background(), registrytest.Repo(t, srv, registrytest.SampleFrontend), "v1", registrytest.Bytes("moved", 100))
	require.NoError(t, err)
	backupTo(t, srv, b, registrytest.SampleFrontend)

	_, err = source.OpenLayouts(context.Background(), []string{a, b}, nil, t.TempDir())
	require.Error(t, err)
	for _, want := range []string{srv.Host() + "/" + registrytest.SampleFrontend + ":v1 is sha256:", "in backup " + a, "in backup " + b, "do not agree"} {
		require.Contains(t, err.Error(), want)
	}
	// One backup twice agrees with itself.
	ls, err := source.OpenLayouts(context.Background(), []string{a, a}, nil, t.TempDir())
	require.NoError(t, err)
	require.NoError(t, ls.Close())
}

func TestLayoutsRefuses(t *testing.T) {
	_, err := source.OpenLayouts(context.Background(), nil, nil, "")
	require.ErrorContains(t, err, "no backup given")
	_, err = source.OpenLayouts(context.Background(), []string{"-", "-"}, strings.NewReader(""), "")
	require.ErrorContains(t, err, "standard input (-) given twice")
	_, err = source.OpenLayouts(context.Background(), []string{filepath.Join(t.TempDir(), "missing.tar")}, io.MultiReader(), "")
	require.Error(t, err)
}
