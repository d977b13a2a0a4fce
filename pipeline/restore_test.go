package pipeline_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

func restore(t *testing.T, input string, targets []string, dryRun bool) (*pipeline.Result, *sink.Registry, error) {
	res, snk, _, err := restoreGraph(t, input, targets, dryRun)
	return res, snk, err
}

func restoreGraph(t *testing.T, input string, targets []string, dryRun bool, opts ...plan.RestoreOptions) (*pipeline.Result, *sink.Registry, *graph.Graph, error) {
	t.Helper()
	ctx := context.Background()
	l, err := source.OpenLayout(ctx, input, nil, t.TempDir())
	require.NoError(t, err)
	defer l.Close()
	var entries []plan.BackupEntry
	for _, e := range l.Entries() {
		if !e.Referrer && e.TagSchema == "" { // as the CLI reads index.json
			entries = append(entries, plan.BackupEntry{Repo: e.Repo, Tag: e.Tag, Digest: e.Desc.Digest, Size: e.Desc.Size})
		}
	}
	o := plan.RestoreOptions{Concurrency: 8}
	if len(opts) > 0 {
		o = opts[0]
	}
	p, err := plan.NewRestore(entries, targets, "", o)
	require.NoError(t, err)
	snk := sink.NewRegistry(registry.NewClients(registry.Options{PlainHTTP: true}), p.FailFast, 8)
	job := pipeline.Job{Selections: pipeline.RestoreSelections(p), FailFast: p.FailFast, WholeSource: true,
		Source: l, Sink: snk, Concurrency: 8}
	if dryRun {
		job.Sink = nil
	}
	res, g, err := pipeline.Run(ctx, job)
	return res, snk, g, err
}

// A multi-repository backup restored to a bare registry keeps every path,
// tag, digest and referrer; a second restore pushes nothing.
func TestRestoreWholeBackupTwice(t *testing.T) {
	sample, dst, out, snk, g := restoreFreshSample(t, registrytest.SampleOptions{}, true)
	byTag := checkFreshRestoreRequests(t, dst.Stats(), g, snk)
	require.Empty(t, byTag, "every tagged manifest of the sample has a referrer: pushed by digest first")
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
	res, snk, err := restore(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	st := dst.Stats()
	require.Zero(t, st.ByMethod("PUT")+st.ByMethod("POST")+st.ByMethod("PATCH"), "a second restore writes nothing")
	require.Zero(t, snk.Stats().Tagged.Load())
	require.EqualValues(t, 6, snk.Stats().TagsCurrent.Load())
}

// restoreFreshSample backs the sample up (with or without referrers) and
// restores the backup into a new registry; it returns the sample, that
// registry, the backup and what the restore did.
func restoreFreshSample(t *testing.T, opts registrytest.SampleOptions, referrers bool) (registrytest.Sample, *registrytest.Server, string, *sink.Registry, *graph.Graph) {
	t.Helper()
	src := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, src, opts)
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err := backup(t, src, out, sample.Repositories, referrers)
	require.NoError(t, err)
	dst := registrytest.NewInProcess(t)
	res, snk, g, err := restoreGraph(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	return sample, dst, out, snk, g
}

// checkFreshRestoreRequests checks the requests of a restore into
// repositories that did not exist: one tags/list each instead of a HEAD per
// manifest and small blob (blobs of 1 MiB and more are still asked for); a
// tagged manifest with no referrers pushed once, by its tag, the others by
// digest and then tagged. It returns the repo@digest pushed by tag alone.
func checkFreshRestoreRequests(t *testing.T, st registrytest.Stats, g *graph.Graph, snk *sink.Registry) map[string]bool {
	t.Helper()
	repos := map[string]bool{}
	var manifestPairs, largePairs int64
	for _, n := range g.Nodes() {
		for _, r := range n.Repos {
			repos[r] = true
		}
		switch {
		case n.Kind == graph.KindManifest:
			manifestPairs += int64(len(n.Repos))
		case n.Desc.Size >= 1<<20:
			largePairs += int64(len(n.Repos))
		}
	}
	subjects := map[string]bool{}
	for _, ref := range g.Referrers() {
		for _, r := range ref.Repos {
			subjects[r+"@"+ref.Subject.String()] = true
		}
	}
	byTag := map[string]bool{}
	for _, tag := range g.Tags() {
		if k := tag.Repo + "@" + tag.Desc.Digest.String(); !subjects[k] {
			byTag[k] = true
		}
	}
	require.EqualValues(t, len(repos), st.Count("GET", registrytest.KindTags), "one tags/list per target repository")
	require.Zero(t, st.Count("HEAD", registrytest.KindManifest), "no HEAD for a manifest in a new repository")
	require.Equal(t, largePairs, st.Count("HEAD", registrytest.KindBlob), "HEADs only for blobs of 1 MiB and more")
	require.Equal(t, manifestPairs-int64(len(byTag))+int64(len(g.Tags())), st.Count("PUT", registrytest.KindManifest))
	require.Equal(t, manifestPairs, snk.Stats().Manifests.Load())
	return byTag
}

// Without referrers, each tagged manifest goes to a new repository in one
// PUT, by its tag, and the tags are right.
func TestRestoreFreshTargetPushesTaggedManifestsOnce(t *testing.T) {
	sample, dst, _, snk, g := restoreFreshSample(t, registrytest.SampleOptions{BaseLayerSize: 2 << 20}, false)
	byTag := checkFreshRestoreRequests(t, dst.Stats(), g, snk)
	require.Len(t, byTag, 6, "each of the 6 tags points at its own manifest, with no referrer")
	require.Positive(t, dst.Stats().Count("HEAD", registrytest.KindBlob), "the 2 MiB base layer is asked for")
	for repo, tags := range sample.Tags {
		for tag, want := range tags {
			got, err := registrytest.Repo(t, dst, repo).Resolve(context.Background(), tag)
			require.NoError(t, err, "%s:%s", repo, tag)
			require.Equal(t, want.Digest, got.Digest)
		}
	}
}

// A tagged manifest held back for its tag that the target refuses fails
// its repository before any other tag is set there: the repository's
// other tags (here one whose manifest has a referrer, pushed by digest
// earlier) stay unset, and the other repositories are restored.
func TestRestoreRefusedTaggedManifestSetsNoOtherTag(t *testing.T) {
	src := registrytest.NewInProcess(t)
	ctx := context.Background()
	repo := registrytest.Repo(t, src, "mix/app")
	_, err := registrytest.PushImage(ctx, repo, "a", registrytest.Bytes("mix-a", 1024))
	require.NoError(t, err)
	b, err := registrytest.PushImage(ctx, repo, "b", registrytest.Bytes("mix-b", 1024))
	require.NoError(t, err)
	_, err = registrytest.PushReferrer(ctx, repo, b, "application/vnd.example.sbom", []byte("sbom of b"))
	require.NoError(t, err)
	other, err := registrytest.PushImage(ctx, registrytest.Repo(t, src, "mix/other"), "v1", registrytest.Bytes("mix-other", 1024))
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err = backup(t, src, out, []string{"mix/app", "mix/other"}, true)
	require.NoError(t, err)

	refuse := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.URL.Path == "/v2/mix/app/manifests/a" {
				http.Error(w, `{"errors":[{"code":"DENIED","message":"quota exceeded"}]}`, http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	// Fail-fast (the default): the run stops there.
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(refuse))
	_, _, err = restore(t, out, []string{dst.Host()}, false)
	require.ErrorContains(t, err, "quota exceeded")
	_, err = registrytest.Repo(t, dst, "mix/app").Resolve(ctx, "b")
	require.Error(t, err, "mix/app:b set after the run failed")

	// Without fail-fast: that repository fails, the others are restored.
	noFailFast := false
	dst = registrytest.NewInProcess(t, registrytest.WithHandler(refuse))
	res, _, _, err := restoreGraph(t, out, []string{dst.Host()}, false, plan.RestoreOptions{Concurrency: 8, FailFast: &noFailFast})
	require.NoError(t, err)
	failed := res.Failed()
	require.Len(t, failed, 1)
	require.Equal(t, dst.Host()+"/mix/app", failed[0].Repo)
	require.ErrorContains(t, failed[0].Err, "quota exceeded")
	_, err = registrytest.Repo(t, dst, "mix/app").Resolve(ctx, "b")
	require.Error(t, err, "mix/app:b set in a repository that failed")
	got, err := registrytest.Repo(t, dst, "mix/other").Resolve(ctx, "v1")
	require.NoError(t, err)
	require.Equal(t, other.Digest, got.Digest)
}

// crossMount says whether r is a mount from another repository. A mount
// from the repository itself opens an upload session (or finds the blob
// there already): the sink opens the largest blob's upload so while its
// HEADs are still under way.
func crossMount(r *http.Request) bool {
	q := r.URL.Query()
	from := q.Get("from")
	return q.Get("mount") != "" && r.URL.Path != "/v2/"+from+"/blobs/uploads/"
}

// uploadOrder records, on a registry, which upload session the first
// upload (POST, not a mount from another repository) opened, and which session each blob was
// completed in (PUT ...?digest=).
type uploadOrder struct {
	mu        sync.Mutex
	posts     int
	first     string            // the first POST's session path, by arrival
	completed map[string]string // digest → session path
}

func (u *uploadOrder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upload := strings.Contains(r.URL.Path, "/blobs/uploads/")
		isFirst := false
		if upload && r.Method == http.MethodPost && !crossMount(r) {
			u.mu.Lock()
			u.posts++
			isFirst = u.posts == 1
			u.mu.Unlock()
		}
		if upload && r.Method == http.MethodPut {
			u.mu.Lock()
			u.completed[r.URL.Query().Get("digest")] = r.URL.Path
			u.mu.Unlock()
		}
		next.ServeHTTP(w, r)
		if isFirst {
			loc, err := url.Parse(w.Header().Get("Location"))
			if err == nil {
				u.mu.Lock()
				u.first = loc.Path
				u.mu.Unlock()
			}
		}
	})
}

// The largest blob's upload is the first to start: its upload session is
// opened before any other, rather than in a crowd of them where the
// registry may answer it last. (The time it saves is the benchmark's to
// show; this pins the order.)
func TestRestoreLargestBlobStartsFirst(t *testing.T) {
	src := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 3 << 20, LayerSize: 3 << 19})
	out := filepath.Join(t.TempDir(), "b.tar") // a plain tar: read with random access
	_, err := backup(t, src, out, sample.Repositories, true)
	require.NoError(t, err)
	for range 3 {
		order := &uploadOrder{completed: map[string]string{}}
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(order.wrap))
		res, snk, err := restore(t, out, []string{dst.Host()}, false)
		require.NoError(t, err)
		require.Empty(t, res.Failed())
		require.Greater(t, snk.Stats().Uploaded.Load(), int64(10))
		base := sample.BaseLayer.Digest.String()
		require.NotEmpty(t, order.completed[base], "the base layer was uploaded")
		require.Equal(t, order.first, order.completed[base], "the first upload session opened is not the largest blob's")
	}
}

// The HEADs of large blobs (asked for in every target repository, new or
// not) go out beside the listings that tell which target repositories
// exist, not after them: a restore's first upload waits one round trip,
// not two.
func TestRestoreAsksLargeBlobsBesideTheListings(t *testing.T) {
	_, sample, out := backedUpSample(t, false)
	// One listing per target repository; a HEAD counts as beside them
	// when it comes before the last of them is answered.
	var listed, beside atomic.Int32
	slowListing := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/tags/list"):
				defer listed.Add(1)
				time.Sleep(300 * time.Millisecond) // long enough for the HEADs to come
			case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") && int(listed.Load()) < len(sample.Repositories):
				beside.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(slowListing))
	res, _, err := restore(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.Positive(t, dst.Stats().Count(http.MethodHead, registrytest.KindBlob))
	require.EqualValues(t, len(sample.Repositories), dst.Stats().Count(http.MethodGet, registrytest.KindTags))
	require.Positive(t, beside.Load(), "every HEAD of a large blob waited for the listings")
}

// inFlight counts a registry's requests of one kind under way, and
// remembers whether the first upload session (a POST that is not a mount)
// was opened before any of them was answered: beside them, or before the
// first was even sent (goroutines race for the connection), but not
// after waiting for one.
type inFlight struct {
	match  func(*http.Request) bool
	delay  time.Duration
	now    atomic.Int32
	seen   atomic.Int32 // matched requests that came
	done   atomic.Int32 // matched requests answered
	posted atomic.Bool
	beside atomic.Bool // the first upload POST came before any was answered
	// mounted counts the mounts from another repository that were
	// answered 201, by digest.
	mu      sync.Mutex
	mounted map[string]int
}

func (f *inFlight) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case f.match(r):
			f.seen.Add(1)
			defer f.done.Add(1)
			f.now.Add(1)
			defer f.now.Add(-1)
			time.Sleep(f.delay)
		case r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/blobs/uploads/") && !crossMount(r):
			if !f.posted.Swap(true) && f.done.Load() == 0 {
				f.beside.Store(true)
			}
		}
		if q := r.URL.Query(); r.Method == http.MethodPost && crossMount(r) {
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status == http.StatusCreated {
				f.mu.Lock()
				if f.mounted == nil {
					f.mounted = map[string]int{}
				}
				f.mounted[q.Get("mount")]++
				f.mu.Unlock()
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// The largest blob's upload does not wait for the target's other answers
// (which repositories exist, the HEADs of the other blobs): its upload
// session opens while a listing is still being answered. (The time it
// saves is the benchmark's to show.)
func TestRestoreLargestUploadStartsBeforeTheChecks(t *testing.T) {
	_, sample, out := backedUpSample(t, true)
	slow := &inFlight{match: func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/tags/list") }, delay: 300 * time.Millisecond}
	dst, order := watchedTarget(t, slow.wrap)
	res, _, err := restore(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.Equal(t, order.first, order.completed[sample.BaseLayer.Digest.String()], "the first upload session opened is not the largest blob's")
	require.True(t, slow.beside.Load(), "the largest blob's upload waited for every listing")
	require.Positive(t, slow.seen.Load(), "the listings were asked")
	checkSampleTags(t, dst, sample)
}

// The largest blob's upload session opens beside its HEADs, not after
// them (they are asked anyway: a repository with no tag may hold it).
func TestRestoreLargestUploadOpensBesideItsHeads(t *testing.T) {
	_, sample, out := backedUpSample(t, true)
	base := sample.BaseLayer.Digest.String()
	slow := &inFlight{match: func(r *http.Request) bool {
		return r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/blobs/"+base)
	}, delay: 300 * time.Millisecond}
	dst, order := watchedTarget(t, slow.wrap)
	res, snk, err := restore(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.Equal(t, order.first, order.completed[base], "the first upload session opened is not the largest blob's")
	require.True(t, slow.beside.Load(), "the largest blob's upload session waited for its HEADs")
	require.Positive(t, slow.seen.Load(), "its HEADs were asked")
	require.Equal(t, len(sample.Repositories)-1, slow.mounted[base], "uploaded once, mounted into the others")
	require.Zero(t, snk.Stats().Present.Load())
	checkSampleTags(t, dst, sample)
}

// A target repository that holds the largest blob but no tag (a restore
// interrupted before its first tag) does not get it uploaded again, even
// though its upload session opens before the HEADs are answered: the
// session is left unused and the blob mounted from there.
func TestRestoreLargestBlobHeldUntaggedIsNotUploadedAgain(t *testing.T) {
	src, sample, out := backedUpSample(t, true)
	base := sample.BaseLayer.Digest.String()
	ctx := context.Background()
	data, err := content.FetchAll(ctx, registrytest.Repo(t, src, sample.Repositories[0]), sample.BaseLayer)
	require.NoError(t, err)

	for _, holder := range []string{sample.Repositories[0], sample.Repositories[len(sample.Repositories)-1]} {
		slow := &inFlight{match: func(r *http.Request) bool {
			return r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/blobs/"+base)
		}, delay: 300 * time.Millisecond}
		dst, order := watchedTarget(t, slow.wrap)
		_, err = registrytest.PushBlob(ctx, registrytest.Repo(t, dst, holder), sample.BaseLayer.MediaType, data)
		require.NoError(t, err)
		order.completed = map[string]string{}
		dst.ResetStats()
		res, snk, err := restore(t, out, []string{dst.Host()}, false)
		require.NoError(t, err)
		require.Empty(t, res.Failed())
		require.Empty(t, order.completed[base], "holder %s: the base layer was uploaded again", holder)
		require.Equal(t, len(sample.Repositories)-1, slow.mounted[base], "holder %s: mounted into the others", holder)
		require.EqualValues(t, 1, snk.Stats().Present.Load(), "holder %s: counted present once", holder)
		checkSampleTags(t, dst, sample)
	}
}

// checkSampleTags checks that every tag of the sample is in dst, at its
// digest.
func checkSampleTags(t *testing.T, dst *registrytest.Server, sample registrytest.Sample) {
	t.Helper()
	for repo, tags := range sample.Tags {
		for tag, want := range tags {
			got, err := registrytest.Repo(t, dst, repo).Resolve(context.Background(), tag)
			require.NoError(t, err, "%s:%s", repo, tag)
			require.Equal(t, want.Digest, got.Digest, "%s:%s", repo, tag)
		}
	}
}

// The largest blob's HEADs, which its upload waits for, do not queue
// behind the other questions asked before them: at --concurrency 1 (4
// small requests at once), with every slot held by a slow listing (6
// target repositories), its bytes still go before the first listing is
// answered.
func TestRestoreLargestBlobHeadsJumpTheQueue(t *testing.T) {
	src := registrytest.NewInProcess(t)
	var repos []string
	var base string
	for _, prefix := range []string{"a/", "b/"} {
		sample := registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: prefix, Seed: "queue-" + prefix, BaseLayerSize: 2 << 20 << len(repos)})
		repos = append(repos, sample.Repositories...)
		base = sample.BaseLayer.Digest.String() // b/'s, the larger
	}
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err := backup(t, src, out, repos, true)
	require.NoError(t, err)

	var answered atomic.Int32 // listings
	var beside atomic.Bool
	slow := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/tags/list"):
				defer answered.Add(1)
				time.Sleep(500 * time.Millisecond)
			case r.Method == http.MethodPut && r.URL.Query().Get("digest") == base:
				beside.Store(answered.Load() == 0)
			}
			next.ServeHTTP(w, r)
		})
	}
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(slow))
	ctx := context.Background()
	l, err := source.OpenLayout(ctx, out, nil, t.TempDir())
	require.NoError(t, err)
	defer l.Close()
	var entries []plan.BackupEntry
	for _, e := range l.Entries() {
		if !e.Referrer && e.TagSchema == "" {
			entries = append(entries, plan.BackupEntry{Repo: e.Repo, Tag: e.Tag, Digest: e.Desc.Digest, Size: e.Desc.Size})
		}
	}
	p, err := plan.NewRestore(entries, []string{dst.Host()}, "", plan.RestoreOptions{Concurrency: 1})
	require.NoError(t, err)
	snk := sink.NewRegistry(registry.NewClients(registry.Options{PlainHTTP: true}), p.FailFast, 1)
	res, _, err := pipeline.Run(ctx, pipeline.Job{Selections: pipeline.RestoreSelections(p), FailFast: p.FailFast, WholeSource: true,
		Source: l, Sink: snk, Concurrency: 1})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.GreaterOrEqual(t, len(repos), 6, "more listings than the 4 slots")
	require.True(t, beside.Load(), "the largest blob's upload waited for a listing asked ahead of its HEADs")
}

// A registry that refuses a mount from the repository itself (the form
// the largest blob's upload session is opened with) gets the blob by the
// ordinary upload, once.
func TestRestoreLargestBlobSelfMountRefused(t *testing.T) {
	_, sample, out := backedUpSample(t, true)
	var refused atomic.Int32
	refuse := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" && !crossMount(r) {
				refused.Add(1)
				http.Error(w, `{"errors":[{"code":"UNSUPPORTED","message":"no mount from the same repository"}]}`, http.StatusBadRequest)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	dst, order := watchedTarget(t, refuse)
	res, snk, err := restore(t, out, []string{dst.Host()}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.Positive(t, refused.Load(), "the upload session was not opened as a mount from the repository itself")
	require.NotEmpty(t, order.completed[sample.BaseLayer.Digest.String()], "the base layer was not uploaded")
	require.Zero(t, snk.Stats().Present.Load())
	checkSampleTags(t, dst, sample)
}

// backedUpSample seeds the sample, its base layer large (2 MiB), into a
// registry and backs it up into a plain tar.
func backedUpSample(t *testing.T, referrers bool) (*registrytest.Server, registrytest.Sample, string) {
	t.Helper()
	src := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err := backup(t, src, out, sample.Repositories, referrers)
	require.NoError(t, err)
	return src, sample, out
}

// watchedTarget is a target registry whose requests pass through outer,
// then an uploadOrder.
func watchedTarget(t *testing.T, outer func(http.Handler) http.Handler) (*registrytest.Server, *uploadOrder) {
	order := &uploadOrder{completed: map[string]string{}}
	return registrytest.NewInProcess(t, registrytest.WithHandler(func(next http.Handler) http.Handler { return outer(order.wrap(next)) })), order
}
