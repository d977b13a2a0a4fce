package pipeline_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

// A copy asks the target what it holds while the source is still being
// walked: the HEADs of the large blobs (asked wherever they go) go out as
// soon as the manifests listing them are read, not after the last
// referrer of the source is found. Over a far link those round trips were
// in front of the first byte moved.
func TestCopyAsksTheTargetWhileTheSourceIsWalked(t *testing.T) {
	headSeen := newEvent()
	// the source's referrers lookups: the walk's last requests
	hold := &referrersHold{until: headSeen}
	src := registrytest.NewInProcess(t, registrytest.WithHandler(hold.wrap))
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	seeHead := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
				headSeen.happen()
			}
			next.ServeHTTP(w, r)
		})
	}
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(seeHead))
	res, _, _, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	requireCopied(t, src, dst, sample.Repositories, func(r string) string { return r })
	require.True(t, hold.held.Load(), "the source was never asked for referrers")
	require.True(t, hold.beside.Load(), "the target was asked nothing while the source's referrers were being looked up: its checks waited for the whole walk")
}
