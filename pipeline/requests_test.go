package pipeline_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

// A registry without the Referrers API (the distribution registry: the
// tag schema) is asked about the API once per run, not once per
// repository: the first listing finds out, and every other repository of
// the host goes straight to the tag schema. This holds on both ends of a
// copy: reading the source, and, on a second copy, checking what the
// target lists. Requests per tag stay what each tag needs.
func TestReferrersAPIAskedOncePerRegistry(t *testing.T) {
	src := registrytest.NewDistribution(t, registrytest.DistConfig{})
	// Two samples: six repositories of one registry.
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
	other := registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: "mirror/"})
	repos := append(sample.Repositories, other.Repositories...)
	dst := registrytest.NewDistribution(t, registrytest.DistConfig{})

	for run := 1; run <= 2; run++ {
		src.ResetStats()
		dst.ResetStats()
		res, _, _, err := copyRepos(t, src, repos, copyOptions{targets: []string{dst.Host()}, failFast: true})
		require.NoError(t, err)
		require.Empty(t, res.Failed())
		tags := 0
		for _, rr := range res.Repos {
			tags += len(rr.Tags)
		}
		s, d := src.Stats(), dst.Stats()
		t.Logf("run %d: %d tags; source: %d requests %v; target: %d requests %v", run, tags, s.Total(), s.Requests, d.Total(), d.Requests)
		require.LessOrEqual(t, s.Count(http.MethodGet, registrytest.KindReferrers), int64(1), "run %d: the source asked for the Referrers API in more than one repository", run)
		require.LessOrEqual(t, d.Count(http.MethodGet, registrytest.KindReferrers), int64(1), "run %d: the target was asked for the Referrers API in more than one repository", run)
	}
	requireCopied(t, src, dst, repos, func(r string) string { return r })
}
