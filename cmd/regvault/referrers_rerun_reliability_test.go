package main

import (
	"math/rand/v2"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
)

// referrersTagPut matches the PUT of a referrers tag-schema index.
var referrersTagPut = regexp.MustCompile(`^/v2/.+/manifests/sha256-[0-9a-f]{64}$`)

// indexFaults fails, while failIndex is on, every PUT of a tag-schema
// referrers index with 503 (the client's retries run out); and, while
// rate429 > 0, answers that fraction of all requests with 429 (never the
// same request twice in a row, so that retries get through).
type indexFaults struct {
	failIndex atomic.Bool
	indexPuts atomic.Int64 // index PUTs failed

	mu      sync.Mutex
	rate429 float64
	rng     *rand.Rand
	last    map[string]bool
}

func (f *indexFaults) set429(rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rate429 = rate
}

func newIndexFaults() *indexFaults {
	return &indexFaults{rng: rand.New(rand.NewPCG(14, 1)), last: map[string]bool{}}
}

func (f *indexFaults) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.failIndex.Load() && r.Method == http.MethodPut && referrersTagPut.MatchString(r.URL.Path) {
			f.indexPuts.Add(1)
			http.Error(w, "injected: the referrers index cannot be written now", http.StatusServiceUnavailable)
			return
		}
		key := r.Method + " " + r.URL.String()
		f.mu.Lock()
		fail := f.rate429 > 0 && !f.last[key] && f.rng.Float64() < f.rate429
		f.last[key] = fail
		f.mu.Unlock()
		if fail {
			http.Error(w, "injected: slow down", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// A restore into a registry without the Referrers API whose PUT of a
// referrers tag-schema index fails (the referrer manifest itself went in)
// exits 1; the re-run then makes the target complete: it finds the
// referrer missing from its subject's listing and pushes it again, which
// writes the index, so every referrer is found through its subject (as
// oras discover looks for it); it does not claim "Nothing to push". A third
// run has nothing to push and says so, with zero writes. Also with 429s on
// 40% of the requests, and on the distribution registry.
func TestRestoreRerunCompletesReferrerIndexesReliability(t *testing.T) {
	_, sample, in := sampleBackup(t)
	for _, tc := range []struct {
		name    string
		rate429 float64
		dist    bool
	}{
		{"in-process, tag schema", 0, false},
		{"in-process, tag schema, 429s on 40% of requests", 0.4, false},
		{"distribution", 0, true},
		{"distribution, 429s on 40% of requests", 0.4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newIndexFaults()
			var dst *registrytest.Server
			if tc.dist {
				dst = registrytest.NewDistribution(t, registrytest.DistConfig{Handler: f.handler})
			} else {
				dst = registrytest.NewInProcess(t, registrytest.WithReferrersAPI(false), registrytest.WithHandler(f.handler))
			}
			args := []string{"restore", "--plain-http", "--no-tty", "--input", in, dst.Host()}
			// The target's repositories exist (one tag each), as when a
			// newer backup is restored over an older one.
			r := regvault(t, "", "restore", "--plain-http", "--no-tty", "--input", in,
				dst.Host()+"/demo/backend:v1", dst.Host()+"/demo/frontend:v1", dst.Host()+"/library/base:1.0")
			r.wantCode(t, exitOK)

			f.set429(tc.rate429)
			f.failIndex.Store(true)
			r = regvault(t, "", args...)
			r.wantCode(t, exitFailure)
			if f.indexPuts.Load() == 0 {
				t.Fatal("no referrers index PUT was failed: the test does not test anything")
			}

			f.failIndex.Store(false)
			r = regvault(t, "", args...)
			// With 429s on 40% of the requests a re-run may fail by them
			// too (retries of one request can meet several 429s when
			// requests run at once): then the next run goes on.
			more := 0
			for ; tc.rate429 > 0 && r.code == exitFailure && more < 4; more++ {
				r = regvault(t, "", args...)
			}
			f.set429(0)
			r.wantCode(t, exitOK)
			if more == 0 {
				// the first re-run pushed the referrers whose index was missing
				wantNotContains(t, "stdout", r.stdout, "Nothing to push")
			}
			wantContains(t, "stdout", r.stdout, "Successfully restored 6 tag(s)")
			for repo, tags := range sample.Tags {
				for tag, d := range tags {
					wantTag(t, dst, repo, tag, d)
				}
				wantSampleReferrers(t, dst, sample, repo, repo)
			}

			dst.ResetStats()
			r = regvault(t, "", args...)
			r.wantCode(t, exitOK)
			wantContains(t, "stdout", r.stdout, "Nothing to push: every blob and tag is already in place (6 tags up to date).")
			if n := writes(dst); n != 0 {
				t.Errorf("a restore with nothing to push made %d PUT/POST/PATCH/DELETE requests: %v", n, dst.Stats().Requests)
			}
		})
	}
}
