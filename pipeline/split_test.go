package pipeline_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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

// A large blob that comes fast stays one stream: no Range request, and
// the archive is right. (Fast is against the threshold: the blob comes
// in well under the time left that is worth a split.)
func TestBackupFastLargeBlobIsOneStream(t *testing.T) {
	pipeline.SetSplitGain(t, 10*time.Second)
	var counted string
	var ranges atomic.Int32
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(rangeCounter(&counted, &ranges)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 20 << 20})
	counted = sample.BaseLayer.Digest.String()
	out := filepath.Join(t.TempDir(), "b.tar")
	_, err := backup(t, srv, out, sample.Repositories, true)
	require.NoError(t, err)
	require.Zero(t, ranges.Load(), "the layer came as one stream")
	requireBlobIn(t, out, sample.BaseLayer)
}

// partSink takes parts and keeps none of the bytes: it cannot read them
// back, so a blob written in parts is checked by the pipeline, in order,
// as the bytes arrive, or not at all.
type partSink struct {
	mu    sync.Mutex
	parts map[digest.Digest][][2]int64 // offset, length
	got   map[digest.Digest]digest.Digest
}

func (s *partSink) Prepare(_ context.Context, g *graph.Graph) ([]*graph.Node, sink.Ordering, error) {
	s.parts, s.got = map[digest.Digest][][2]int64{}, map[digest.Digest]digest.Digest{}
	return g.Nodes(), sink.AnyOrder, nil
}

func (s *partSink) Write(_ context.Context, _ *graph.Node, open sink.Opener) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func (s *partSink) AcceptsParts() bool { return true }

func (s *partSink) WritePart(_ context.Context, n *graph.Node, off, length int64, r io.Reader) error {
	k, err := io.Copy(io.Discard, io.LimitReader(r, length))
	if err == nil && k < length {
		err = io.ErrUnexpectedEOF
	}
	s.mu.Lock()
	s.parts[n.Desc.Digest] = append(s.parts[n.Desc.Digest], [2]int64{off, k})
	s.mu.Unlock()
	return err
}

func (s *partSink) FinishParts(_ context.Context, n *graph.Node, got digest.Digest) error {
	s.mu.Lock()
	s.got[n.Desc.Digest] = got
	s.mu.Unlock()
	if got != n.Desc.Digest {
		return content.ErrMismatchedDigest
	}
	return nil
}

// requireCover checks that the parts written of desc cover it once: no
// gap, no overlap.
func (s *partSink) requireCover(t *testing.T, desc ocispec.Descriptor) {
	t.Helper()
	parts := slices.Clone(s.parts[desc.Digest])
	slices.SortFunc(parts, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	var end int64
	for _, p := range parts {
		require.Equal(t, end, p[0], "parts %v: a gap or an overlap at %d", parts, end)
		end += p[1]
	}
	require.Equal(t, desc.Size, end, "parts %v cover the layer", parts)
}

func (s *partSink) Commit(context.Context) error { return nil }
func (s *partSink) Abort() error                 { return nil }

func backupInto(t *testing.T, srv *registrytest.Server, snk sink.Sink, repos []string) error {
	t.Helper()
	var full []string
	for _, a := range repos {
		full = append(full, srv.Host()+"/"+a)
	}
	p, err := plan.NewBackup(full, plan.BackupOptions{Output: filepath.Join(t.TempDir(), "unused.tar"), Concurrency: 8})
	require.NoError(t, err)
	c, err := registry.New(p.Registry, registry.Options{PlainHTTP: true})
	require.NoError(t, err)
	_, _, err = pipeline.Run(context.Background(), pipeline.Job{
		Registry: p.Registry, Selections: pipeline.BackupSelections(p.Repos, false),
		Concurrency: p.Concurrency, Source: source.NewRegistry(c), Sink: snk, SpoolDir: t.TempDir(),
	})
	return err
}

// A slow large blob split into ranges is hashed in order as its parts
// arrive, never read back: into a sink that keeps no bytes, the parts
// cover the blob once and the digest comes out right; with one range's
// bytes wrong, the mismatch is found all the same.
func TestSplitBlobHashedAsItArrives(t *testing.T) {
	pipeline.SetSplitWaited(t, 0)
	var slow, corrupt string
	var ranges atomic.Int32
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(rangeCounter(&slow, &ranges)), registrytest.WithHandler(corruptRanges(&corrupt)), registrytest.WithHandler(throttle(&slow, slowBlobRate)))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 20 << 20})
	layer := sample.BaseLayer
	slow = layer.Digest.String()

	snk := &partSink{}
	require.NoError(t, backupInto(t, srv, snk, []string{registrytest.SampleBase}))
	require.Positive(t, ranges.Load(), "the slow layer went on in ranges")
	require.Equal(t, layer.Digest, snk.got[layer.Digest], "hashed in order, without reading back")
	snk.requireCover(t, layer)

	corrupt = layer.Digest.String()
	snk = &partSink{}
	err := backupInto(t, srv, snk, []string{registrytest.SampleBase})
	require.Error(t, err)
	require.True(t, errors.Is(err, content.ErrMismatchedDigest), "%v", err)
	require.NotEqual(t, layer.Digest, snk.got[layer.Digest])
}

// A split blob that is the last transfer left takes the idle slots: the
// other blobs done, more streams join its ranges than it split into, and
// the parts still cover it once, hashed in order.
func TestSplitBlobTakesIdleSlots(t *testing.T) {
	pipeline.SetSplitWaited(t, 0)
	var joins atomic.Int32
	pipeline.CountJoins(t, &joins)
	var slow string
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(throttle(&slow, slowBlobRate)))
	// 20 MiB: the split makes two streams (minPart), eight slots.
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 20 << 20})
	layer := sample.BaseLayer
	slow = layer.Digest.String()

	snk := &partSink{}
	require.NoError(t, backupInto(t, srv, snk, []string{registrytest.SampleBase}))
	require.Positive(t, joins.Load(), "streams joined the split layer once the other blobs were done")
	require.Equal(t, layer.Digest, snk.got[layer.Digest])
	snk.requireCover(t, layer)
}
