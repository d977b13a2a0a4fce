package pipeline_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
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

// orderSink is a registry sink that records when each node's Write began
// and ended, in one sequence.
type orderSink struct {
	*sink.Registry
	mu         sync.Mutex
	seq        int
	start, end map[digest.Digest]int
}

func (s *orderSink) Write(ctx context.Context, n *graph.Node, open sink.Opener) error {
	s.mu.Lock()
	s.seq++
	s.start[n.Desc.Digest] = s.seq
	s.mu.Unlock()
	err := s.Registry.Write(ctx, n, open)
	s.mu.Lock()
	s.seq++
	s.end[n.Desc.Digest] = s.seq
	s.mu.Unlock()
	return err
}

// slowManifestPuts delays every manifest push, so that a referrer pushed
// alongside its subject (not after it) shows in the order.
func slowManifestPuts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			time.Sleep(30 * time.Millisecond)
		}
		next.ServeHTTP(w, r)
	})
}

// A restore pushes a referrer only after its subject: had the subject
// failed (a damaged layer), the referrer would dangle, and on a registry
// without the Referrers API it would set a tag-schema tag.
func TestRestoreReferrerAfterSubjectReliability(t *testing.T) {
	src := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err := backup(t, src, out, sample.Repositories, true)
	require.NoError(t, err)

	for _, referrersAPI := range []bool{true, false} {
		dst := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(referrersAPI), registrytest.WithHandler(slowManifestPuts))
		ctx := context.Background()
		l, err := source.OpenLayout(ctx, out, nil, t.TempDir())
		require.NoError(t, err)
		var entries []plan.BackupEntry
		for _, e := range l.Entries() {
			if !e.Referrer && e.TagSchema == "" { // as the CLI reads index.json
				entries = append(entries, plan.BackupEntry{Repo: e.Repo, Tag: e.Tag, Digest: e.Desc.Digest, Size: e.Desc.Size})
			}
		}
		p, err := plan.NewRestore(entries, []string{dst.Host()}, "", plan.RestoreOptions{Concurrency: 8})
		require.NoError(t, err)
		snk := &orderSink{Registry: sink.NewRegistry(registry.NewClients(registry.Options{PlainHTTP: true}), true, 8),
			start: map[digest.Digest]int{}, end: map[digest.Digest]int{}}
		_, g, err := pipeline.Run(ctx, pipeline.Job{Selections: pipeline.RestoreSelections(p), FailFast: p.FailFast, WholeSource: true,
			Source: l, Sink: snk, Concurrency: 8})
		l.Close()
		require.NoError(t, err)
		refs := g.Referrers()
		require.NotEmpty(t, refs)
		for _, ref := range refs {
			rs, ok := snk.start[ref.Desc.Digest]
			require.True(t, ok, "referrer %s written", ref.Desc.Digest)
			se, ok := snk.end[ref.Subject]
			require.True(t, ok, "subject %s written", ref.Subject)
			require.Greater(t, rs, se, "referrersAPI=%v: referrer %s started (%d) before its subject %s was pushed (%d)",
				referrersAPI, ref.Desc.Digest, rs, ref.Subject, se)
		}
	}
}

// Referrers found through the tag schema are not content-addressed: two
// manifests can each list the other as a referrer. A backup with
// --include-referrers walks such a cycle once and completes.
func TestBackupTagSchemaReferrerCycleReliability(t *testing.T) {
	src := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(false))
	ctx := context.Background()
	repo := registrytest.Repo(t, src, "loop/app")
	a, err := registrytest.PushImage(ctx, repo, "v1", registrytest.Bytes("cycle/a", 64))
	require.NoError(t, err)
	b, err := registrytest.PushImage(ctx, repo, "", registrytest.Bytes("cycle/b", 64))
	require.NoError(t, err)
	tagOf := func(d ocispec.Descriptor) string { return d.Digest.Algorithm().String() + "-" + d.Digest.Encoded() }
	_, err = registrytest.PushIndex(ctx, repo, tagOf(a), b) // b "refers to" a
	require.NoError(t, err)
	_, err = registrytest.PushIndex(ctx, repo, tagOf(b), a) // a "refers to" b
	require.NoError(t, err)

	out := filepath.Join(t.TempDir(), "b.tar")
	done := make(chan struct{})
	var res *pipeline.Result
	go func() {
		defer close(done)
		res, err = backup(t, src, out, []string{"loop/app"}, true)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the backup of a referrer cycle does not end")
	}
	require.NoError(t, err)
	require.Empty(t, res.Failed())

	// The backup holds both, and restores.
	l, err := source.OpenLayout(ctx, out, nil, t.TempDir())
	require.NoError(t, err)
	listed := map[digest.Digest]bool{}
	for _, e := range l.Entries() {
		listed[e.Desc.Digest] = true
	}
	l.Close()
	require.True(t, listed[a.Digest] && listed[b.Digest], "index.json lists %v", listed)
	dst := registrytest.NewInProcess(t)
	res, _, err = restore(t, out, []string{dst.Host() + "/loop/app"}, false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	got, err := registrytest.Repo(t, dst, "loop/app").Resolve(ctx, "v1")
	require.NoError(t, err)
	require.Equal(t, a.Digest, got.Digest)
}
