package pipeline_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

// With 10% of requests failing transiently (5xx, 429 with Retry-After,
// bodies cut off), a backup is byte-identical to a fault-free one and a
// restore gives the same tags and digests.
func TestTransientFaults(t *testing.T) {
	var srcFaults, dstFaults registrytest.FaultStats
	src := registrytest.NewInProcess(t, registrytest.WithHandler(registrytest.Faults(0.10, 1, &srcFaults)))
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	dir := t.TempDir()
	want := filepath.Join(dir, "clean.tar")
	_, err := backup(t, src, want, sample.Repositories, true)
	require.NoError(t, err)

	srcFaults.On.Store(true)
	got := filepath.Join(dir, "flaky.tar")
	_, err = backup(t, src, got, sample.Repositories, true)
	require.NoError(t, err)
	srcFaults.On.Store(false)
	require.Positive(t, srcFaults.Injected.Load(), "faults were injected")
	a, _ := os.ReadFile(want)
	b, _ := os.ReadFile(got)
	require.Equal(t, digest.FromBytes(a), digest.FromBytes(b), "byte-identical despite faults")

	dst := registrytest.NewInProcess(t, registrytest.WithHandler(registrytest.Faults(0.10, 2, &dstFaults)))
	dstFaults.On.Store(true)
	res, _, err := restore(t, got, []string{dst.Host()}, false)
	dstFaults.On.Store(false)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	require.Positive(t, dstFaults.Injected.Load(), "faults were injected")
	ctx := context.Background()
	for repo, tags := range sample.Tags {
		r := registrytest.Repo(t, dst, repo)
		for tag, want := range tags {
			got, err := r.Resolve(ctx, tag)
			require.NoError(t, err, "%s:%s", repo, tag)
			require.Equal(t, want.Digest, got.Digest)
		}
	}
}
