package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// copyOptions say where a copy goes: positional targets or a rules file
// (JSON), and whether it stops at the first failure.
type copyOptions struct {
	targets  []string
	rules    string
	failFast bool
}

// copyRepos copies every tag of the source repositories of src (paths)
// through the pipeline with the registry as its source, as `regvault
// copy` does: the selections are those of restore's plan over the tags
// the source lists.
func copyRepos(t *testing.T, src *registrytest.Server, repos []string, o copyOptions) (*pipeline.Result, *sink.Registry, *graph.Graph, error) {
	t.Helper()
	ctx := context.Background()
	var entries []plan.BackupEntry
	for _, repo := range repos {
		r := registrytest.Repo(t, src, repo)
		tags, err := registry.ListTags(ctx, r)
		require.NoError(t, err)
		for _, tag := range tags {
			if plan.IsReferrerTag(tag) {
				continue
			}
			d, err := r.Resolve(ctx, tag)
			require.NoError(t, err)
			entries = append(entries, plan.BackupEntry{Repo: src.Host() + "/" + repo, Tag: tag, Digest: d.Digest, Size: d.Size})
		}
	}
	failFast := o.failFast
	opts := plan.RestoreOptions{Concurrency: 8, FailFast: &failFast}
	var p *plan.Restore
	var err error
	if o.rules != "" {
		rules, perr := plan.ParseRules("rules.json", []byte(o.rules))
		require.NoError(t, perr)
		p, err = plan.NewRestoreWithRules(entries, rules, opts)
	} else {
		p, err = plan.NewRestore(entries, o.targets, "", opts)
	}
	require.NoError(t, err)
	c, err := registry.New(src.Host(), registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	snk := sink.NewRegistry(registry.NewClients(registry.Options{PlainHTTP: true}), p.FailFast, 8, sink.SourceRegistry(src.Host()))
	res, g, err := pipeline.Run(ctx, pipeline.Job{Selections: pipeline.RestoreSelections(p), FailFast: p.FailFast,
		Source: source.NewRegistry(c), Sink: snk, Concurrency: 8})
	return res, snk, g, err
}

// repoContent is what a repository holds, as a backup of it sees it: its
// tags, and every manifest, blob and referrer reachable from them.
type repoContent struct {
	tags      map[string]digest.Digest
	nodes     []digest.Digest
	referrers []digest.Digest
}

// contentOf walks repositories of srv (a dry-run backup) and returns the
// union of what they hold.
func contentOf(t *testing.T, srv *registrytest.Server, repos ...string) repoContent {
	t.Helper()
	c, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	var prepos []plan.Repo
	for _, r := range repos {
		prepos = append(prepos, plan.Repo{Name: r})
	}
	res, g, err := pipeline.Run(context.Background(), pipeline.Job{Registry: srv.Host(), Selections: pipeline.BackupSelections(prepos, true),
		Concurrency: 4, Source: source.NewRegistry(c)})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	out := repoContent{tags: map[string]digest.Digest{}}
	for _, tag := range g.Tags() {
		out.tags[tag.Name] = tag.Desc.Digest
	}
	for _, n := range g.Nodes() {
		out.nodes = append(out.nodes, n.Desc.Digest)
	}
	for _, r := range g.Referrers() {
		out.referrers = append(out.referrers, r.Desc.Digest)
	}
	slices.Sort(out.nodes)
	slices.Sort(out.referrers)
	return out
}

// requireCopied checks that each source repository's content is in the
// target repository of the same path: same tags, digests and referrers.
func requireCopied(t *testing.T, src, dst *registrytest.Server, repos []string, targetOf func(string) string) {
	t.Helper()
	for _, repo := range repos {
		want := contentOf(t, src, repo)
		got := contentOf(t, dst, targetOf(repo))
		require.Equal(t, want, got, "%s copied to %s", repo, targetOf(repo))
		require.NotEmpty(t, got.tags)
	}
}

// A copy from one registry to another gives the target exactly what the
// source holds (tags, digests, referrers, nested ones too), uploads each
// blob once per registry and mounts it into the other repositories; a
// second copy writes nothing.
func TestCopyRegistryToRegistry(t *testing.T) {
	src := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	dst := registrytest.NewInProcess(t)
	res, snk, g, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	requireCopied(t, src, dst, sample.Repositories, func(r string) string { return r })

	var blobs int64
	for _, n := range g.Nodes() {
		if n.Kind != graph.KindManifest {
			blobs++
		}
	}
	require.Equal(t, blobs, snk.Stats().Uploaded.Load(), "each blob uploaded once")
	require.Positive(t, snk.Stats().Mounted.Load())
	require.Equal(t, blobs, src.Stats().Count(http.MethodGet, registrytest.KindBlob), "each blob read from the source once")

	dst.ResetStats()
	src.ResetStats()
	res, snk, _, err = copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	st := dst.Stats()
	require.Zero(t, st.ByMethod(http.MethodPut)+st.ByMethod(http.MethodPost)+st.ByMethod(http.MethodPatch), "a second copy writes nothing")
	require.Zero(t, src.Stats().Count(http.MethodGet, registrytest.KindBlob), "nor reads a blob")
	require.Zero(t, snk.Stats().Tagged.Load())
}

// Two source repositories consolidated into one target repository: each
// node is read from the source repository whose tags reached it, and the
// target gets the tags, content and referrers of both.
func TestCopyConsolidatesTwoSources(t *testing.T) {
	for _, referrersAPI := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", referrersAPI), func(t *testing.T) {
			src := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(referrersAPI))
			dst := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(referrersAPI))
			ctx := context.Background()
			for _, name := range []string{"a", "b"} {
				repo := registrytest.Repo(t, src, "team/"+name)
				img, err := registrytest.PushImage(ctx, repo, name+"1", registrytest.Bytes("consolidate/"+name, 2048))
				require.NoError(t, err)
				_, err = registrytest.PushReferrer(ctx, repo, img, "application/vnd.example.sbom", []byte("sbom of "+name))
				require.NoError(t, err)
			}
			rules := fmt.Sprintf(`{"mappings": [
  {"source": "%[1]s/team/a", "target": "%[2]s/all/one"},
  {"source": "%[1]s/team/b", "target": "%[2]s/all/one"}]}`, src.Host(), dst.Host())
			src.ResetStats()
			res, _, _, err := copyRepos(t, src, []string{"team/a", "team/b"}, copyOptions{rules: rules, failFast: true})
			require.NoError(t, err)
			require.Empty(t, res.Failed())
			if referrersAPI {
				// (The tag schema asks for tags that do not exist.)
				require.Zero(t, src.Stats().Status[http.StatusNotFound], "nothing asked for where it is not")
				// Each source is asked for the referrers of its own
				// manifests (an image and its SBOM), not of every
				// manifest of the target: consolidating many sources
				// stays linear.
				require.EqualValues(t, 4, src.Stats().Count(http.MethodGet, registrytest.KindReferrers))
			}
			require.Equal(t, contentOf(t, src, "team/a", "team/b"), contentOf(t, dst, "all/one"))
		})
	}
}

// A copy within one registry mounts every blob from its source
// repository: no blob is downloaded or uploaded.
func TestCopySameRegistryMountsEveryBlob(t *testing.T) {
	for _, kind := range []string{"in-process", "distribution"} {
		t.Run(kind, func(t *testing.T) {
			var srv *registrytest.Server
			if kind == "distribution" {
				srv = registrytest.NewDistribution(t, registrytest.DistConfig{})
			} else {
				srv = registrytest.NewInProcess(t)
			}
			sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
			var mappings []string
			for _, r := range sample.Repositories {
				mappings = append(mappings, fmt.Sprintf(`{"source": "%[1]s/%[2]s", "target": "%[1]s/copy/%[2]s"}`, srv.Host(), r))
			}
			srv.ResetStats()
			res, snk, g, err := copyRepos(t, srv, sample.Repositories, copyOptions{rules: `{"mappings": [` + strings.Join(mappings, ",") + `]}`, failFast: true})
			require.NoError(t, err)
			require.Empty(t, res.Failed())
			st := srv.Stats()
			require.Zero(t, st.Count(http.MethodGet, registrytest.KindBlob), "a blob was downloaded")
			require.Zero(t, snk.Stats().Uploaded.Load(), "a blob was uploaded")
			var pairs int64
			for _, n := range g.Nodes() {
				if n.Kind != graph.KindManifest {
					pairs += int64(len(n.Repos))
				}
			}
			require.Equal(t, pairs, snk.Stats().Mounted.Load())
			require.Equal(t, pairs, st.Mounts, "every blob of every target mounted by the registry")
			requireCopied(t, srv, srv, sample.Repositories, func(r string) string { return "copy/" + r })
		})
	}
}

// missingBlob answers 404 for the blob whose digest d names, as a
// registry does once the blob is deleted (until back is set), and counts
// the GETs of it.
func missingBlob(d digest.Digest, gets *atomic.Int64, back *atomic.Bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !back.Load() && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				if r.Method == http.MethodGet {
					gets.Add(1)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// ownLayer is a layer of repo's content that no other repository of the
// sample holds.
func ownLayer(t *testing.T, sample registrytest.Sample, repo string) ocispec.Descriptor {
	t.Helper()
	elsewhere := map[digest.Digest]bool{}
	for r, descs := range sample.Content {
		if r != repo {
			for _, d := range descs {
				elsewhere[d.Digest] = true
			}
		}
	}
	for _, d := range sample.Content[repo] {
		if d.MediaType == ocispec.MediaTypeImageLayerGzip && !elsewhere[d.Digest] {
			return d
		}
	}
	t.Fatalf("no layer of %s alone", repo)
	return ocispec.Descriptor{}
}

// A blob deleted from the source fails only the target repositories that
// need it: their tags are not set, the others are copied. The run ends
// (no wait for the lost blob), and reads the missing blob once, not once
// per target. With fail-fast, it stops and sets no tag.
func TestCopyDeletedSourceBlobFailsOnlyItsRepositories(t *testing.T) {
	plain := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, plain, registrytest.SampleOptions{})
	lost := ownLayer(t, sample, registrytest.SampleFrontend)
	var gets atomic.Int64
	var back atomic.Bool
	src := registrytest.NewInProcess(t, registrytest.WithHandler(missingBlob(lost.Digest, &gets, &back)))
	registrytest.Seed(t, src, registrytest.SampleOptions{})

	for _, failFast := range []bool{false, true} {
		t.Run(fmt.Sprintf("failFast=%v", failFast), func(t *testing.T) {
			var writesMu sync.Mutex
			var writes []string
			dst := registrytest.NewInProcess(t, registrytest.WithHandler(func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodGet && r.Method != http.MethodHead {
						writesMu.Lock()
						writes = append(writes, r.Method+" "+r.URL.Path)
						writesMu.Unlock()
					}
					next.ServeHTTP(w, r)
				})
			}))
			gets.Store(0)
			type outcome struct {
				res *pipeline.Result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, _, _, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: failFast})
				done <- outcome{res, err}
			}()
			var o outcome
			select {
			case o = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("the copy does not end after a blob of the source is lost")
			}
			ctx := context.Background()
			frontend := dst.Host() + "/" + registrytest.SampleFrontend
			if failFast {
				require.Error(t, o.err)
				require.ErrorContains(t, o.err, lost.Digest.String())
				for _, repo := range sample.Repositories {
					_, err := registrytest.Repo(t, dst, repo).Resolve(ctx, "v1")
					require.Error(t, err, "%s:v1 set after a fail-fast stop", repo)
				}
				return
			}
			require.NoError(t, o.err)
			failed := o.res.Failed()
			require.Len(t, failed, 1)
			require.Equal(t, frontend, failed[0].Repo)
			require.ErrorContains(t, failed[0].Err, lost.Digest.String())
			var te *pipeline.TransferError
			require.ErrorAs(t, failed[0].Err, &te)
			require.True(t, te.Source, "the source's failure")
			for tag := range sample.Tags[registrytest.SampleFrontend] {
				_, err := registrytest.Repo(t, dst, registrytest.SampleFrontend).Resolve(ctx, tag)
				require.Error(t, err, "%s:%s set though its layer is lost", frontend, tag)
			}
			for _, repo := range sample.Repositories {
				if repo == registrytest.SampleFrontend {
					continue
				}
				for tag, want := range sample.Tags[repo] {
					got, err := registrytest.Repo(t, dst, repo).Resolve(ctx, tag)
					require.NoError(t, err, "%s:%s", repo, tag)
					require.Equal(t, want.Digest, got.Digest)
				}
			}
			require.EqualValues(t, 1, gets.Load(), "the lost blob asked for once")

			// The blob is back: a re-run sends only what the target
			// still lacks, all of it for the repository that failed.
			back.Store(true)
			defer back.Store(false)
			writes = nil
			res, _, _, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
			require.NoError(t, err)
			require.Empty(t, res.Failed())
			require.NotEmpty(t, writes)
			for _, w := range writes {
				require.Contains(t, w, "/v2/"+registrytest.SampleFrontend+"/", "a re-run writes only where something is missing")
			}
			for tag, want := range sample.Tags[registrytest.SampleFrontend] {
				got, err := registrytest.Repo(t, dst, registrytest.SampleFrontend).Resolve(ctx, tag)
				require.NoError(t, err, "%s:%s", frontend, tag)
				require.Equal(t, want.Digest, got.Digest)
			}
		})
	}
}

// Between two distribution registries (referrers in the tag schema), a
// copy gives the target the source's tags, digests and referrers, nested
// ones too, and a second copy writes nothing.
func TestCopyDistribution(t *testing.T) {
	src := registrytest.NewDistribution(t, registrytest.DistConfig{})
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	dst := registrytest.NewDistribution(t, registrytest.DistConfig{})
	res, _, _, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	requireCopied(t, src, dst, sample.Repositories, func(r string) string { return r })

	dst.ResetStats()
	res, _, _, err = copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	st := dst.Stats()
	require.Zero(t, st.ByMethod(http.MethodPut)+st.ByMethod(http.MethodPost)+st.ByMethod(http.MethodPatch), "a second copy writes nothing")
}

// largeCopyBlob is the size of the blob TestCopyLargeBlobStreams copies:
// large enough that holding it would show, small enough for every run.
const largeCopyBlob = 64 << 20

// A large blob streams from the source's GET to the target's PUT: the
// copy allocates a small part of its size (both registries are processes
// of their own, so what this process allocates is the copy's).
func TestCopyLargeBlobStreams(t *testing.T) {
	src := registrytest.NewDistribution(t, registrytest.DistConfig{})
	dst := registrytest.NewDistribution(t, registrytest.DistConfig{})
	ctx := context.Background()
	repo := registrytest.Repo(t, src, "big/app")
	const seed = "copy/large-blob"
	h := digest.SHA256.Digester()
	_, err := io.Copy(h.Hash(), registrytest.NewReader(seed, largeCopyBlob))
	require.NoError(t, err)
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: h.Digest(), Size: largeCopyBlob}
	require.NoError(t, repo.Blobs().Push(ctx, layer, registrytest.NewReader(seed, largeCopyBlob)))
	config, err := registrytest.PushBlob(ctx, repo, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	require.NoError(t, err)
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: config, Layers: []ocispec.Descriptor{layer}})
	require.NoError(t, err)
	want, err := registrytest.PushManifest(ctx, repo, "v1", ocispec.MediaTypeImageManifest, m)
	require.NoError(t, err)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, snk, _, err := copyRepos(t, src, []string{"big/app"}, copyOptions{targets: []string{dst.Host()}, failFast: true})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.EqualValues(t, largeCopyBlob+config.Size, snk.Stats().UploadedBytes.Load())
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(largeCopyBlob/4), "the blob is not buffered")
	got, err := registrytest.Repo(t, dst, "big/app").Resolve(ctx, "v1")
	require.NoError(t, err)
	require.Equal(t, want.Digest, got.Digest)
	ok, err := registrytest.Repo(t, dst, "big/app").Blobs().Exists(ctx, layer)
	require.NoError(t, err)
	require.True(t, ok)
}

// A source repository of a copy whose tag cannot be resolved fails its
// target alone, as a backup fails that repository: a registry is not one
// whole the way a backup is (Job.WholeSource).
func TestCopyUnresolvableTagFailsOnlyItsTarget(t *testing.T) {
	gone := "/v2/" + registrytest.SampleFrontend + "/manifests/v2"
	src := registrytest.NewInProcess(t, registrytest.WithHandler(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == gone {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	dst := registrytest.NewInProcess(t)
	res, _, _, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}})
	require.NoError(t, err)
	failed := res.Failed()
	require.Len(t, failed, 1)
	require.Equal(t, dst.Host()+"/"+registrytest.SampleFrontend, failed[0].Repo)
	require.ErrorContains(t, failed[0].Err, "v2")
	_, err = registrytest.Repo(t, dst, registrytest.SampleFrontend).Resolve(context.Background(), "v1")
	require.Error(t, err, "a tag of the failed target set")
	others := slices.DeleteFunc(slices.Clone(sample.Repositories), func(r string) bool { return r == registrytest.SampleFrontend })
	requireCopied(t, src, dst, others, func(r string) string { return r })
}

// Consolidated sources each bring their own referrers: of one image that
// both hold, the target gets the referrer of the source that takes
// referrers, and not that of the source mapped with exclude-referrers.
func TestCopyConsolidatedSourcesBringTheirOwnReferrers(t *testing.T) {
	src := registrytest.NewInProcess(t)
	dst := registrytest.NewInProcess(t)
	ctx := context.Background()
	refs := map[string]ocispec.Descriptor{}
	var img ocispec.Descriptor
	for _, name := range []string{"a", "b"} {
		repo := registrytest.Repo(t, src, "team/"+name)
		var err error
		img, err = registrytest.PushImage(ctx, repo, name, registrytest.Bytes("shared-image", 2048))
		require.NoError(t, err)
		refs[name], err = registrytest.PushReferrer(ctx, repo, img, "application/vnd.example.sbom", []byte("sbom from "+name))
		require.NoError(t, err)
	}
	rules := fmt.Sprintf(`{"mappings": [
  {"source": "%[1]s/team/a", "target": "%[2]s/all/one"},
  {"source": "%[1]s/team/b", "target": "%[2]s/all/one", "exclude-referrers": true}]}`, src.Host(), dst.Host())
	res, _, _, err := copyRepos(t, src, []string{"team/a", "team/b"}, copyOptions{rules: rules, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	got, err := registry.ListReferrers(ctx, registrytest.Repo(t, dst, "all/one"), img)
	require.NoError(t, err)
	var digests []digest.Digest
	for _, d := range got {
		digests = append(digests, d.Digest)
	}
	require.Equal(t, []digest.Digest{refs["a"].Digest}, digests)
}

// A copy opens the largest blob at the source (its GET) beside the upload
// session at the target, not after it: each is a round trip.
func TestCopyLargestBlobFetchedBesideItsUploadSession(t *testing.T) {
	var answered, beside atomic.Bool // the session, the GET before it
	var base atomic.Value            // digest string, once seeded
	base.Store("")
	watch := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if b := base.Load().(string); b != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+b) && !answered.Load() {
				beside.Store(true)
			}
			next.ServeHTTP(w, r)
		})
	}
	src := registrytest.NewInProcess(t, registrytest.WithHandler(watch))
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	base.Store(sample.BaseLayer.Digest.String())
	slowSession := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Query().Get("mount") == base.Load().(string) && !crossMount(r) {
				time.Sleep(300 * time.Millisecond)
				answered.Store(true)
			}
			next.ServeHTTP(w, r)
		})
	}
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(slowSession))
	res, _, _, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.True(t, answered.Load(), "the upload session was not opened as a mount from the repository itself")
	require.True(t, beside.Load(), "the largest blob was fetched from the source only after its upload session was open")
	requireCopied(t, src, dst, sample.Repositories, func(r string) string { return r })
}
