package pipeline_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// backupSpooling is backup with a context and the run's spool directory
// given, so that a test can look into it afterwards.
func backupSpooling(ctx context.Context, t *testing.T, srv *registrytest.Server, output, spool string, repos []string, referrers bool) (*pipeline.Result, error) {
	t.Helper()
	return backupConc(ctx, t, srv, output, spool, repos, referrers, 8)
}

func backupConc(ctx context.Context, t *testing.T, srv *registrytest.Server, output, spool string, repos []string, referrers bool, conc int) (*pipeline.Result, error) {
	t.Helper()
	var full []string
	for _, a := range repos {
		full = append(full, srv.Host()+"/"+a)
	}
	p, err := plan.NewBackup(full, plan.BackupOptions{Output: output, IncludeReferrers: referrers, Concurrency: conc})
	require.NoError(t, err)
	c, err := registry.New(p.Registry, registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	l, err := sink.NewLayout(output, sink.LayoutOptions{FullReference: p.FullReference})
	require.NoError(t, err)
	res, _, err := pipeline.Run(ctx, pipeline.Job{
		Registry: p.Registry, Selections: pipeline.BackupSelections(p.Repos, p.IncludeReferrers),
		Concurrency: p.Concurrency, Source: source.NewRegistry(c), Sink: l, SpoolDir: spool,
	})
	return res, err
}

// requireNoPipelineGoroutines fails t unless every goroutine of the
// pipeline's own code has ended (a hang guard of 10 s, not a timing):
// those a run starts end with it.
func requireNoPipelineGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "regvault/regvault/pipeline.") && !strings.Contains(g, "_test.go") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	require.Empty(t, left, "goroutines of the run left after it returned")
}

// requireEmptyDir fails t unless dir holds nothing.
func requireEmptyDir(t *testing.T, dir, what string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Empty(t, names, what)
}

// blobBytes adds up the sizes of a tar's blobs/ members, and says
// whether it holds the blob of digest d.
func blobBytes(t *testing.T, path, d string) (int64, bool) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	var total int64
	has := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return total, has
		}
		require.NoError(t, err)
		if strings.HasPrefix(h.Name, "blobs/") {
			total += h.Size
			if strings.HasSuffix(h.Name, "/"+strings.TrimPrefix(d, "sha256:")) {
				has = true
			}
		}
	}
}

// A backup into a plain tar starts fetching a large blob as soon as the
// walk finds it, not after the last referrer is looked up: over a long
// round trip the walk is several round trips in which nothing moved. The
// archive is byte for byte the one a stream writes (which fetches after
// the walk), and each blob is still fetched once.
func TestBackupFetchesLargeBlobsWhileWalking(t *testing.T) {
	var big atomic.Value
	big.Store("")
	digest := func() string { return big.Load().(string) }
	blobSeen := newEvent()
	hold := &referrersHold{until: blobSeen, active: func() bool { return digest() != "" }}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(onBlobGet(digest, blobSeen)), registrytest.WithHandler(hold.wrap))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	big.Store(sample.BaseLayer.Digest.String())
	srv.ResetStats()
	dir := t.TempDir()
	spool := t.TempDir()
	out := filepath.Join(dir, "b.tar")
	res, err := backupSpooling(context.Background(), t, srv, out, spool, sample.Repositories, true)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.True(t, hold.held.Load(), "the registry was never asked for referrers")
	require.True(t, hold.beside.Load(), "no large blob was asked for while the referrers were looked up: the blobs waited for the whole walk")
	requireEmptyDir(t, spool, "the spool directory is left empty")
	requireNoPipelineGoroutines(t)

	st := srv.Stats()
	members := len(tarMembers(t, out)) - 2 // oci-layout, index.json
	// The referrers' tag-schema indexes are made by the sink, not fetched.
	schemaBlobs, _ := archivetest.TagSchemaBlobs(t, archivetest.ReadTar(t, out))
	require.Equal(t, int64(members-schemaBlobs), st.Count(http.MethodGet, registrytest.KindManifest)+st.Count(http.MethodGet, registrytest.KindBlob),
		"one GET per unique manifest or blob")
	moved, has := blobBytes(t, out, sample.BaseLayer.Digest.String())
	require.True(t, has)
	require.Equal(t, moved, res.Moved, "the bytes moved are the archive's blobs")

	// The same content through a stream, which fetches nothing early:
	// the same bytes.
	gz := filepath.Join(dir, "b.tar.gz")
	_, err = backupSpooling(context.Background(), t, srv, gz, t.TempDir(), sample.Repositories, true)
	require.NoError(t, err)
	plain := filepath.Join(t.TempDir(), "plain.tar")
	decompress(t, gz, plain)
	a, err := os.ReadFile(out)
	require.NoError(t, err)
	b, err := os.ReadFile(plain)
	require.NoError(t, err)
	require.True(t, bytes.Equal(a, b), "the plain tar differs from the stream's tar")
}

// bigRepos pushes two repositories: keep/app (a small image) and gone/app
// (an image with a 2 MiB layer of its own, tagged v1, and a second tag
// v2), and returns the large layer's digest.
func bigRepos(t *testing.T, srv *registrytest.Server) string {
	t.Helper()
	ctx := context.Background()
	_, err := registrytest.PushImage(ctx, registrytest.Repo(t, srv, "keep/app"), "v1", []byte("a small layer"))
	require.NoError(t, err)
	layer := registrytest.Bytes("gone's large layer", 2<<20)
	gone := registrytest.Repo(t, srv, "gone/app")
	_, err = registrytest.PushImage(ctx, gone, "v1", layer)
	require.NoError(t, err)
	_, err = registrytest.PushImage(ctx, gone, "v2", []byte("v2's layer"))
	require.NoError(t, err)
	return registrytest.Descriptor("", layer).Digest.String()
}

// A repository that fails while it is walked is left out as before, even
// when a large blob only it needs was already on its way: that copy is
// ended, its bytes are not counted as moved, and nothing of it stays in
// the spool directory or the archive.
func TestBackupEarlyBlobOfFailedRepositoryIsDiscarded(t *testing.T) {
	var big atomic.Value
	big.Store("")
	blobSeen := newEvent()
	var failed atomic.Bool
	h := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := big.Load().(string)
			if d == "" {
				next.ServeHTTP(w, r)
				return
			}
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				blobSeen.happen()
				// slow: still on its way when the repository fails
				next.ServeHTTP(&slowWriter{ResponseWriter: w, rate: 256 << 10}, r)
				return
			}
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/gone/app/manifests/v2") {
				if blobSeen.wait() {
					failed.Store(true)
				}
				http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`, http.StatusNotFound)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(h))
	d := bigRepos(t, srv)
	big.Store(d)
	dir := t.TempDir()
	spool := t.TempDir()
	out := filepath.Join(dir, "b.tar")
	res, err := backupSpooling(context.Background(), t, srv, out, spool, []string{"gone/app", "keep/app"}, false)
	require.NoError(t, err)
	require.True(t, failed.Load(), "the large layer was not asked for before the repository failed")
	var names []string
	for _, f := range res.Failed() {
		names = append(names, f.Repo)
	}
	require.Equal(t, []string{"gone/app"}, names)
	requireEmptyDir(t, spool, "the spool directory is left empty")
	requireNoPipelineGoroutines(t)
	moved, has := blobBytes(t, out, d)
	require.False(t, has, "the failed repository's layer is in the archive")
	require.Equal(t, moved, res.Moved, "the bytes moved are the archive's blobs: the discarded copy's are not counted")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the archive next to it")
}

// A run cancelled while a large blob fetched early is on its way ends
// every copy, and leaves no spool file, no archive and no temporary file.
func TestBackupCancelledWhileFetchingEarlyLeavesNothing(t *testing.T) {
	var big atomic.Value
	big.Store("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := big.Load().(string)
			if d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				cancel() // the user's ^C, with the blob on its way
				next.ServeHTTP(&slowWriter{ResponseWriter: w, rate: 256 << 10}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(h))
	d := bigRepos(t, srv)
	big.Store(d)
	dir := t.TempDir()
	spool := t.TempDir()
	done := make(chan error, 1)
	go func() {
		_, err := backupSpooling(ctx, t, srv, filepath.Join(dir, "b.tar"), spool, []string{"gone/app", "keep/app"}, true)
		done <- err
	}()
	select {
	case err := <-done:
		require.Error(t, err)
		require.True(t, errors.Is(err, context.Canceled), "%v", err)
	case <-time.After(30 * time.Second): // a hang guard, not a timing
		t.Fatal("the cancelled backup did not end")
	}
	requireEmptyDir(t, spool, "the spool directory is left empty")
	requireEmptyDir(t, dir, "no archive and no temporary file")
	requireNoPipelineGoroutines(t)
}

// A large blob fetched early whose bytes do not match its digest fails
// the backup as it always has (the source's fault, named by its digest),
// and leaves nothing behind.
func TestBackupEarlyCorruptBlobFails(t *testing.T) {
	var corrupt string
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(corruptBlob(&corrupt)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	corrupt = sample.BaseLayer.Digest.String()
	dir := t.TempDir()
	spool := t.TempDir()
	res, err := backupSpooling(context.Background(), t, srv, filepath.Join(dir, "b.tar"), spool, sample.Repositories, false)
	require.Error(t, err)
	require.Contains(t, err.Error(), sample.BaseLayer.Digest.String())
	for _, rr := range res.Repos {
		var te *pipeline.TransferError
		require.True(t, errors.As(rr.Err, &te), "%s: %v", rr.Repo, rr.Err)
		require.True(t, te.Source, "%s: the failure is not the source's", rr.Repo)
	}
	requireEmptyDir(t, spool, "the spool directory is left empty")
	requireEmptyDir(t, dir, "no output and no temporary file remain")
}

// A slow large blob started during the walk splits into ranges only as
// the transfer would have split it: beyond a connection's fair share of
// the run's bytes (see pipeline.pieces). Within it (here: two transfers
// at a time, the blob less than half the run) it stays one stream.
func TestBackupEarlyBlobWithinItsShareStaysOneStream(t *testing.T) {
	pipeline.SetSplitWaited(t, 0)
	var slow, counted string
	var ranges atomic.Int32
	digest := func() string { return slow }
	blobSeen := newEvent()
	hold := &referrersHold{until: blobSeen, active: func() bool { return slow != "" }}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(onBlobGet(digest, blobSeen)), registrytest.WithHandler(hold.wrap), registrytest.WithHandler(rangeCounter(&counted, &ranges)), registrytest.WithHandler(throttle(&slow, slowBlobRate)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 12 << 20})
	// A second large layer, fast, makes the run's bytes more than twice
	// the slow one's.
	_, err := registrytest.PushImage(context.Background(), registrytest.Repo(t, srv, "extra/big"), "v1", registrytest.Bytes("extra", 14<<20))
	require.NoError(t, err)
	slow, counted = sample.BaseLayer.Digest.String(), sample.BaseLayer.Digest.String()
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := backupConc(context.Background(), t, srv, out, t.TempDir(), append(sample.Repositories, "extra/big"), true, 2)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.True(t, hold.beside.Load(), "the layer was not asked for while the walk went on")
	require.Zero(t, ranges.Load(), "the layer, within its share, went in ranges")
	requireBlobIn(t, out, sample.BaseLayer)
}

// A large blob that two repositories share, fetched early while only the
// first of them was walked and found damaged, fails both, as the transfer
// of it would have: the error names every repository that needs it, the
// blob is fetched once (not again from the other repository: bytes that
// do not match are no reason to ask elsewhere), and the backup holds the
// third repository alone.
func TestBackupEarlyDamagedBlobFailsEveryRepositoryThatNeedsIt(t *testing.T) {
	var bad atomic.Value
	bad.Store("")
	blobSeen := newEvent()
	var held atomic.Bool
	var gets atomic.Int32
	h := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := bad.Load().(string)
			if d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				gets.Add(1)
				next.ServeHTTP(&registrytest.FlipWriter{ResponseWriter: w}, r)
				blobSeen.happen()
				return
			}
			// The second repository's manifest waits for the shared
			// blob's early fetch to be sent whole, and a moment more for
			// the fetch to find it damaged (were the moment too short,
			// the test would pass without testing that case, never fail).
			if d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/two/app/manifests/v1") {
				if blobSeen.wait() {
					held.Store(true)
					time.Sleep(300 * time.Millisecond)
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(h))
	ctx := context.Background()
	shared := registrytest.Bytes("a shared large layer", 2<<20)
	for _, repo := range []string{"one/app", "two/app"} {
		_, err := registrytest.PushImage(ctx, registrytest.Repo(t, srv, repo), "v1", shared, []byte(repo+"'s own layer"))
		require.NoError(t, err)
	}
	_, err := registrytest.PushImage(ctx, registrytest.Repo(t, srv, "three/app"), "v1", []byte("three's layer"))
	require.NoError(t, err)
	bad.Store(registrytest.Descriptor("", shared).Digest.String())

	dir := t.TempDir()
	spool := t.TempDir()
	out := filepath.Join(dir, "b.tar")
	res, err := backupSpooling(ctx, t, srv, out, spool, []string{"one/app", "three/app", "two/app"}, false)
	require.NoError(t, err)
	require.True(t, held.Load(), "the shared layer was not fetched before the second repository was walked")
	var failed []string
	for _, f := range res.Failed() {
		failed = append(failed, f.Repo)
		var te *pipeline.TransferError
		require.True(t, errors.As(f.Err, &te), "%s: %v", f.Repo, f.Err)
		require.True(t, te.Source, "%s: the failure is not the source's", f.Repo)
		require.ElementsMatch(t, []string{"one/app", "two/app"}, te.Repos, "%s: the repositories the error names", f.Repo)
	}
	require.ElementsMatch(t, []string{"one/app", "two/app"}, failed)
	require.Equal(t, int32(1), gets.Load(), "the damaged blob was fetched more than once")
	_, has := blobBytes(t, out, bad.Load().(string))
	require.False(t, has)
	requireEmptyDir(t, spool, "the spool directory is left empty")
}

// A large blob fetched early from the one repository the walk had found
// it in, which does not have it, is fetched from another that reached it
// since, as the transfer tries each: the backup is whole.
func TestBackupEarlyBlobMissingInOneRepositoryComesFromAnother(t *testing.T) {
	var layer atomic.Value
	layer.Store("")
	missed := newEvent()
	var held atomic.Bool
	h := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := layer.Load().(string)
			if d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/one/app/blobs/"+d) {
				// a registry that lost the blob's link in one repository
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`, http.StatusNotFound)
				missed.happen()
				return
			}
			if d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/two/app/manifests/v1") {
				if missed.wait() {
					held.Store(true)
					time.Sleep(300 * time.Millisecond) // for the early fetch to give up: see above
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(h))
	ctx := context.Background()
	shared := registrytest.Bytes("a shared large layer", 2<<20)
	for _, repo := range []string{"one/app", "two/app"} {
		_, err := registrytest.PushImage(ctx, registrytest.Repo(t, srv, repo), "v1", shared)
		require.NoError(t, err)
	}
	d := registrytest.Descriptor("", shared).Digest.String()
	layer.Store(d)
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := backupSpooling(ctx, t, srv, out, t.TempDir(), []string{"one/app", "two/app"}, false)
	require.NoError(t, err)
	require.True(t, held.Load(), "the layer was not asked for before the second repository was walked")
	require.Empty(t, res.Failed())
	_, has := blobBytes(t, out, d)
	require.True(t, has)
}

// gateWriter writes the first bytes of a body, then waits for open to
// close before writing more.
type gateWriter struct {
	http.ResponseWriter
	open    *event
	written int
	waited  *atomic.Bool
}

func (g *gateWriter) Write(p []byte) (int, error) {
	done := 0
	if head := 64<<10 - g.written; head > 0 {
		k, err := g.ResponseWriter.Write(p[:min(head, len(p))])
		g.written += k
		done += k
		if err != nil || done == len(p) {
			return done, err
		}
		g.ResponseWriter.(http.Flusher).Flush()
		if g.open.wait() {
			g.waited.Store(true)
		}
	}
	k, err := g.ResponseWriter.Write(p[done:])
	g.written += k
	return done + k, err
}

// The run's largest blob, found only once the transfer slots were all
// taken by blobs started during the walk, and much larger than them,
// starts as soon as the walk is done, not after them.
func TestBackupLargestBlobDoesNotWaitForEarlyOnes(t *testing.T) {
	var small, large atomic.Value
	small.Store("")
	large.Store("")
	smallSeen, largeSeen := newEvent(), newEvent()
	var beside atomic.Bool
	h := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, l := small.Load().(string), large.Load().(string)
			switch {
			case s != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+s):
				smallSeen.happen()
				// the first blob found goes on only once the largest is asked for
				next.ServeHTTP(&gateWriter{ResponseWriter: w, open: largeSeen, waited: &beside}, r)
				return
			case l != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+l):
				largeSeen.happen()
			case s != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/two/app/manifests/v1"):
				// the largest is found once the first holds the slot
				smallSeen.wait()
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(h))
	ctx := context.Background()
	first := registrytest.Bytes("found first", 2<<20)
	largest := registrytest.Bytes("the largest, found later", 5<<20)
	_, err := registrytest.PushImage(ctx, registrytest.Repo(t, srv, "one/app"), "v1", first)
	require.NoError(t, err)
	_, err = registrytest.PushImage(ctx, registrytest.Repo(t, srv, "two/app"), "v1", largest)
	require.NoError(t, err)
	small.Store(registrytest.Descriptor("", first).Digest.String())
	large.Store(registrytest.Descriptor("", largest).Digest.String())
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := backupConc(ctx, t, srv, out, t.TempDir(), []string{"one/app", "two/app"}, false, 1)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.True(t, beside.Load(), "the largest blob waited for the one started during the walk to end")
}
