package pipeline_test

import (
	"archive/tar"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

func backup(t *testing.T, srv *registrytest.Server, output string, args []string, referrers bool) (*pipeline.Result, error) {
	t.Helper()
	var full []string
	for _, a := range args {
		full = append(full, srv.Host()+"/"+a)
	}
	p, err := plan.NewBackup(full, plan.BackupOptions{Output: output, IncludeReferrers: referrers, Concurrency: 8})
	require.NoError(t, err)
	c, err := registry.New(p.Registry, registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	var snk sink.Sink
	if output != "" {
		l, err := sink.NewLayout(output, sink.LayoutOptions{FullReference: p.FullReference})
		require.NoError(t, err)
		snk = l
	}
	res, _, err := pipeline.Run(context.Background(), pipeline.Job{
		Registry: p.Registry, Selections: pipeline.BackupSelections(p.Repos, p.IncludeReferrers),
		Concurrency: p.Concurrency, Source: source.NewRegistry(c), Sink: snk, SpoolDir: t.TempDir(),
	})
	return res, err
}

// Every form of output holds every tag and every reachable blob of every
// repository, and each shared blob once.
func TestBackupSampleEveryForm(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	dir := t.TempDir()
	for _, name := range []string{"b.tar", "b.tar.gz", "b.tar.zst", "b-dir"} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(dir, name)
			res, err := backup(t, srv, out, sample.Repositories, true)
			require.NoError(t, err)
			require.Empty(t, res.Failed())
			require.Equal(t, 6, res.TagCount())
			store := openLayout(t, out)
			ctx := context.Background()
			for repo, tags := range sample.Tags {
				for tag, want := range tags {
					got, err := store.Resolve(ctx, srv.Host()+"/"+repo+":"+tag)
					require.NoError(t, err, "%s:%s", repo, tag)
					require.Equal(t, want.Digest, got.Digest)
				}
			}
			for repo, descs := range sample.Content {
				for _, d := range descs {
					ok, err := store.Exists(ctx, d)
					require.NoError(t, err)
					require.True(t, ok, "%s: %s %s missing", repo, d.MediaType, d.Digest)
					if d.Size < 1<<20 {
						rc, err := store.Fetch(ctx, d)
						require.NoError(t, err)
						_, err = content.ReadAll(rc, d)
						rc.Close()
						require.NoError(t, err)
					}
				}
			}
			if strings.HasSuffix(name, ".tar") {
				members := tarMembers(t, out)
				require.Equal(t, "oci-layout", members[0])
				require.Equal(t, "index.json", members[1])
				base := "blobs/sha256/" + sample.BaseLayer.Digest.Encoded()
				n := 0
				for _, m := range members {
					if m == base {
						n++
					}
				}
				require.Equal(t, 1, n, "the base layer shared by every image is stored once")
			}
		})
	}
}

// Backing up unchanged content twice gives byte-identical archives.
func TestBackupIsByteIdentical(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	dir := t.TempDir()
	for _, ext := range []string{".tar", ".tar.gz", ".tar.zst"} {
		a, b := filepath.Join(dir, "a"+ext), filepath.Join(dir, "b"+ext)
		_, err := backup(t, srv, a, sample.Repositories, true)
		require.NoError(t, err)
		_, err = backup(t, srv, b, sample.Repositories, true)
		require.NoError(t, err)
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		require.Equal(t, digest.FromBytes(ab), digest.FromBytes(bb), ext)
	}
}

// Each unique blob is fetched from the registry once however many
// repositories share it.
func TestBackupFetchesEachBlobOnce(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	srv.ResetStats()
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := backup(t, srv, out, sample.Repositories, true)
	require.NoError(t, err)
	st := srv.Stats()
	blobs := 0
	for _, n := range tarMembers(t, out)[2:] {
		_ = n
		blobs++
	}
	// The referrers' tag-schema indexes are made by the sink, not fetched.
	schemaBlobs, _ := archivetest.TagSchemaBlobs(t, archivetest.ReadTar(t, out))
	blobs -= schemaBlobs
	manifestGets := st.Count("GET", registrytest.KindManifest)
	blobGets := st.Count("GET", registrytest.KindBlob)
	require.Equal(t, int64(blobs), manifestGets+blobGets, "one GET per unique manifest or blob (tags resolve with the manifest GET)")
	require.Equal(t, res.UniqueNodes, blobs)
}

// A repository that does not exist fails alone; the others are backed up.
func TestBackupMissingRepositoryIsPartial(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := backup(t, srv, out, append(sample.Repositories, "no/such-repo"), false)
	require.NoError(t, err)
	failed := res.Failed()
	require.Len(t, failed, 1)
	require.Equal(t, "no/such-repo", failed[0].Repo)
	store := openLayout(t, out)
	_, err = store.Resolve(context.Background(), srv.Host()+"/demo/frontend:v1")
	require.NoError(t, err)
}

// A blob whose bytes do not match its digest fails the backup, and
// nothing that looks like a backup is left.
func TestBackupCorruptBlobFails(t *testing.T) {
	var corrupt string
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(corruptBlob(&corrupt)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	corrupt = sample.BaseLayer.Digest.String()
	dir := t.TempDir()
	out := filepath.Join(dir, "b.tar")
	_, err := backup(t, srv, out, sample.Repositories, false)
	require.Error(t, err)
	require.Contains(t, err.Error(), sample.BaseLayer.Digest.String())
	entries, _ := os.ReadDir(dir)
	require.Empty(t, entries, "no output and no temporary file remain")
}

func openLayout(t *testing.T, path string) interface {
	content.ReadOnlyStorage
	Resolve(context.Context, string) (ocispec.Descriptor, error)
} {
	t.Helper()
	switch {
	case strings.HasSuffix(path, ".tar"):
		s, err := oci.NewFromTar(context.Background(), path)
		require.NoError(t, err)
		return s
	case strings.HasSuffix(path, ".tar.gz"), strings.HasSuffix(path, ".tar.zst"):
		plain := filepath.Join(t.TempDir(), "plain.tar")
		decompress(t, path, plain)
		return openLayout(t, plain)
	default:
		s, err := oci.NewFromFS(context.Background(), os.DirFS(path))
		require.NoError(t, err)
		return s
	}
}

// requireBlobIn fails t unless the layout at path holds desc, whole and
// matching its digest.
func requireBlobIn(t *testing.T, path string, desc ocispec.Descriptor) {
	t.Helper()
	rc, err := openLayout(t, path).Fetch(context.Background(), desc)
	require.NoError(t, err)
	defer rc.Close()
	_, err = content.ReadAll(rc, desc)
	require.NoError(t, err, desc.Digest)
}

func tarMembers(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

// On the distribution registry (no Referrers API) referrers are found
// through the tag schema, and the schema's sha256-… tags are not backed up
// as tags.
func TestBackupDistributionTagSchemaReferrers(t *testing.T) {
	srv := registrytest.NewDistribution(t, registrytest.DistConfig{})
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := backup(t, srv, out, sample.Repositories, true)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.Equal(t, 6, res.TagCount(), "only the six real tags, no sha256-… schema tags")
	store := openLayout(t, out)
	ctx := context.Background()
	for repo, refs := range sample.Referrers {
		for _, ref := range refs {
			ok, err := store.Exists(ctx, ref.Descriptor)
			require.NoError(t, err)
			require.True(t, ok, "referrer %s of %s (%s)", ref.Descriptor.Digest, repo, ref.Descriptor.ArtifactType)
		}
	}
}

// A download cut off in the middle resumes with a Range request and the
// backup is byte-identical to one made without the fault.
func TestBackupResumesDroppedDownload(t *testing.T) {
	var victim string
	var ranged int
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(dropOnce(&victim, &ranged)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.tar")
	_, err := backup(t, srv, clean, sample.Repositories, true)
	require.NoError(t, err)

	victim = sample.BaseLayer.Digest.String()
	faulty := filepath.Join(dir, "faulty.tar")
	_, err = backup(t, srv, faulty, sample.Repositories, true)
	require.NoError(t, err)
	a, _ := os.ReadFile(clean)
	b, _ := os.ReadFile(faulty)
	require.Equal(t, digest.FromBytes(a), digest.FromBytes(b))
	require.Equal(t, 1, ranged, "the dropped download resumed with one Range request")
}

// A second backup into a directory that holds a layout fetches only what
// the directory lacks and keeps the earlier tags.
func TestBackupIntoExistingDirectoryFetchesOnlyNew(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	out := filepath.Join(t.TempDir(), "layout")
	_, err := backup(t, srv, out, []string{registrytest.SampleFrontend, registrytest.SampleBackend}, false)
	require.NoError(t, err)

	srv.ResetStats()
	res, err := backup(t, srv, out, []string{registrytest.SampleFrontend + ":v1", registrytest.SampleBase}, false)
	require.NoError(t, err)
	require.Positive(t, res.Skipped)
	st := srv.Stats()
	// The base layer is already there: it is not fetched again.
	require.Less(t, st.BytesOut, int64(sample.BaseLayer.Size))
	store := openLayout(t, out)
	for _, ref := range []string{"demo/backend:v2", "demo/frontend:v2", "library/base:1.1"} {
		_, err := store.Resolve(context.Background(), srv.Host()+"/"+ref)
		require.NoError(t, err, ref)
	}
}

// rangeCounter counts the Range requests for the blob whose digest *d
// names.
func rangeCounter(d *string, n *atomic.Int32) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if *d != "" && r.Header.Get("Range") != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+*d) {
				n.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// slowBlobRate caps each response for the large blob of these tests at
// 8 MiB/s: a stream far slower than what ranges give (see splitNow).
const slowBlobRate = 8 << 20

// A large blob that comes slowly goes on in parallel byte ranges into its
// slot of a plain tar, and the archive is the same as one written in
// order.
func TestBackupSlowLargeBlobSplitsIntoRanges(t *testing.T) {
	pipeline.SetSplitWaited(t, 0)
	var slow, counted string
	var ranges atomic.Int32
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(rangeCounter(&counted, &ranges)), registrytest.WithHandler(throttle(&slow, slowBlobRate)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 20 << 20})
	dir := t.TempDir()
	streamed := filepath.Join(dir, "b.tar.zst")
	_, err := backup(t, srv, streamed, sample.Repositories, true)
	require.NoError(t, err)

	slow, counted = sample.BaseLayer.Digest.String(), sample.BaseLayer.Digest.String()
	ranged := filepath.Join(dir, "b.tar")
	_, err = backup(t, srv, ranged, sample.Repositories, true)
	require.NoError(t, err)
	require.Positive(t, ranges.Load(), "the slow 20 MiB layer went on in ranges")

	plain := filepath.Join(dir, "plain.tar")
	decompress(t, streamed, plain)
	a, _ := os.ReadFile(ranged)
	b, _ := os.ReadFile(plain)
	require.Equal(t, digest.FromBytes(b), digest.FromBytes(a))
}

// A registry that ignores Range and sends the whole blob gets the blob
// fetched whole, as one stream, even when that stream is slow; the
// archive is still right.
func TestBackupLargeBlobWithoutRanges(t *testing.T) {
	pipeline.SetSplitWaited(t, 0)
	noRanges := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			next.ServeHTTP(w, r)
		})
	}
	var slow string
	var asked atomic.Int32
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(rangeCounter(&slow, &asked)), registrytest.WithHandler(noRanges), registrytest.WithHandler(throttle(&slow, slowBlobRate)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 20 << 20})
	slow = sample.BaseLayer.Digest.String()
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err := backup(t, srv, out, sample.Repositories, true)
	require.NoError(t, err)
	require.Positive(t, asked.Load(), "the slow layer was asked for in ranges")
	requireBlobIn(t, out, sample.BaseLayer)
}

// A large blob fetched in byte ranges whose parts do not add up to its
// digest (one range's bytes are wrong, the stream's are right) fails the
// repositories that need it, and only them: the tar holds the others,
// byte for byte as a backup of them alone.
func TestBackupCorruptRangedBlobFailsItsRepositories(t *testing.T) {
	pipeline.SetSplitWaited(t, 0)
	var corrupt string
	var ranges atomic.Int32
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(rangeCounter(&corrupt, &ranges)), registrytest.WithHandler(corruptRanges(&corrupt)), registrytest.WithHandler(throttle(&corrupt, slowBlobRate)))
	small := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	big := registrytest.Seed(t, srv, registrytest.SampleOptions{Prefix: "big/", Seed: "big", BaseLayerSize: 20 << 20})
	dir := t.TempDir()
	want := filepath.Join(dir, "small.tar")
	_, err := backup(t, srv, want, small.Repositories, false)
	require.NoError(t, err)

	corrupt = big.BaseLayer.Digest.String()
	got := filepath.Join(dir, "all.tar")
	res, err := backup(t, srv, got, append(slices.Clone(small.Repositories), big.Repositories...), false)
	require.NoError(t, err)
	require.Positive(t, ranges.Load(), "the slow 20 MiB layer went on in ranges")
	var failed []string
	for _, rr := range res.Failed() {
		failed = append(failed, rr.Repo)
		require.ErrorIs(t, rr.Err, content.ErrMismatchedDigest)
		require.Contains(t, rr.Err.Error(), big.BaseLayer.Digest.String())
	}
	require.Equal(t, big.Repositories, failed)
	a, _ := os.ReadFile(got)
	b, _ := os.ReadFile(want)
	require.Equal(t, digest.FromBytes(b), digest.FromBytes(a), "the backup of the healthy repositories alone")
}

// Small blobs (configs, small layers: a round trip each, not bandwidth)
// are fetched beside the large ones, not only once every large one has
// started: with one transfer slot, no config waits until the base layer
// is in. On a long round trip they were the run's tail, a slot's worth at
// a time.
func TestBackupFetchesSmallBlobsBesideLargeOnes(t *testing.T) {
	var base string
	var baseDone atomic.Bool
	var small, after atomic.Int32
	slowBase := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				if base != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+base) {
					defer baseDone.Store(true)
					time.Sleep(300 * time.Millisecond) // long enough for the small ones to come
				} else {
					small.Add(1)
					if baseDone.Load() {
						after.Add(1)
					}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(slowBase))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	base = sample.BaseLayer.Digest.String()
	var full []string
	for _, a := range sample.Repositories {
		full = append(full, srv.Host()+"/"+a)
	}
	out := filepath.Join(t.TempDir(), "b.tar")
	p, err := plan.NewBackup(full, plan.BackupOptions{Output: out, Concurrency: 1})
	require.NoError(t, err)
	c, err := registry.New(p.Registry, registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	l, err := sink.NewLayout(out, sink.LayoutOptions{FullReference: p.FullReference})
	require.NoError(t, err)
	res, _, err := pipeline.Run(context.Background(), pipeline.Job{
		Registry: p.Registry, Selections: pipeline.BackupSelections(p.Repos, false),
		Concurrency: 1, Source: source.NewRegistry(c), Sink: l, SpoolDir: t.TempDir(),
	})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	l2, err := source.OpenLayout(context.Background(), out, nil, t.TempDir())
	require.NoError(t, err)
	defer l2.Close()
	var tags int
	for _, e := range l2.Entries() {
		if !e.Referrer {
			tags++
		}
	}
	require.Equal(t, len(sample.References()), tags, "every tag is in the backup")
	require.LessOrEqual(t, srv.Stats().Count(http.MethodGet, registrytest.KindBlob), int64(len(sample.Unique())), "a blob fetched twice")
	require.Positive(t, small.Load())
	require.Zero(t, after.Load(), "small blobs waited for the base layer (%d of %d)", after.Load(), small.Load())
}
