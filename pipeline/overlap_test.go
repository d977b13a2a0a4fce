package pipeline_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

// holdLarge holds the answer to the first GET of a large blob until a GET
// of a small one (a config, a small layer) arrives, or until a generous
// bound passes; heldBeside tells which of the two ended the wait.
type holdLarge struct {
	large, small map[string]bool // digests
	once         sync.Once
	smallSeen    chan struct{}
	smallOnce    sync.Once
	mu           sync.Mutex
	heldBeside   *bool
}

func (h *holdLarge) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 {
				d := r.URL.Path[i+len("/blobs/"):]
				if h.small[d] {
					h.smallOnce.Do(func() { close(h.smallSeen) })
				}
				if h.large[d] {
					h.once.Do(func() {
						beside := false
						select {
						case <-h.smallSeen:
							beside = true
						case <-time.After(10 * time.Second): // a hang guard, not a timing
						}
						h.mu.Lock()
						h.heldBeside = &beside
						h.mu.Unlock()
					})
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// A backup does not queue the small blobs (configs, small layers) behind
// the large ones: they are fetched on the pool of small requests while a
// large blob is still coming, even with --concurrency 1. Queued behind
// the large blobs they were a backup's tail over a far link, a round trip
// each for a few hundred bytes.
func TestBackupFetchesSmallBlobsBesideLarge(t *testing.T) {
	h := &holdLarge{large: map[string]bool{}, small: map[string]bool{}, smallSeen: make(chan struct{})}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(h.wrap))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	for _, descs := range sample.Content {
		for _, d := range descs {
			switch {
			case d.Size >= 1<<20:
				h.large[d.Digest.String()] = true
			case !strings.Contains(d.MediaType, "manifest") && !strings.Contains(d.MediaType, "index"):
				h.small[d.Digest.String()] = true
			}
		}
	}
	require.NotEmpty(t, h.large)
	require.NotEmpty(t, h.small)
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := backupWith(t, srv, out, sample.Repositories, true, 1)
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	h.mu.Lock()
	defer h.mu.Unlock()
	require.NotNil(t, h.heldBeside, "no large blob was fetched")
	require.True(t, *h.heldBeside, "no small blob was fetched while the first large one was under way: the small ones waited for the large ones' slots")
}

// A copy asks the target what it holds while the source is still being
// walked: the HEADs of the large blobs (asked wherever they go) go out as
// soon as the manifests listing them are read, not after the last
// referrer of the source is found. Over a far link those round trips were
// in front of the first byte moved.
func TestCopyAsksTheTargetWhileTheSourceIsWalked(t *testing.T) {
	headSeen := make(chan struct{})
	var headOnce sync.Once
	var held, beside atomic.Bool
	hold := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// the source's referrers lookups: the walk's last requests
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/referrers/") && held.CompareAndSwap(false, true) {
				select {
				case <-headSeen:
					beside.Store(true)
				case <-time.After(10 * time.Second): // a hang guard, not a timing
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	src := registrytest.NewInProcess(t, registrytest.WithHandler(hold))
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 2 << 20})
	seeHead := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
				headOnce.Do(func() { close(headSeen) })
			}
			next.ServeHTTP(w, r)
		})
	}
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(seeHead))
	res, _, _, err := copyRepos(t, src, sample.Repositories, copyOptions{targets: []string{dst.Host()}, failFast: true})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	requireCopied(t, src, dst, sample.Repositories, func(r string) string { return r })
	require.True(t, held.Load(), "the source was never asked for referrers")
	require.True(t, beside.Load(), "the target was asked nothing while the source's referrers were being looked up: its checks waited for the whole walk")
}
