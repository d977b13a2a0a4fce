package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
)

// loopingReferrers adds, while on, to every Referrers API answer a Link
// header pointing at the page itself: a listing that goes round for ever.
// It counts the referrers lists asked for.
type loopingReferrers struct {
	on    atomic.Bool
	asked atomic.Int64
}

func (l *loopingReferrers) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/referrers/") {
			l.asked.Add(1)
			if l.on.Load() {
				w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", r.URL.RequestURI()))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// A re-run of a restore into a target whose referrers listing goes round
// in a loop (its Link header points back at the page) ends after a few
// requests, as a backup's listing of such a source does, and succeeds: the
// referrers of a subject whose listing failed are pushed again (the same
// bytes), and --debug says why. Before, the target's listing followed the
// loop for 1,000 pages per subject and failed the repository.
func TestRestoreTargetReferrersLoopReliability(t *testing.T) {
	_, sample, in := sampleBackup(t)
	loop := &loopingReferrers{}
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(loop.handler))
	args := []string{"restore", "--plain-http", "--no-tty", "--input", in, dst.Host()}
	r := regvault(t, "", args...)
	r.wantCode(t, exitOK)

	loop.on.Store(true)
	loop.asked.Store(0)
	r = regvault(t, "", append([]string{"--debug"}, args...)...)
	r.wantCode(t, exitOK)
	asked := loop.asked.Load()
	if asked == 0 {
		t.Fatal("the re-run listed no referrers: the test does not test anything")
	}
	// Two pages per subject find the loop; a handful of subjects.
	if asked > 50 {
		t.Errorf("the re-run asked for %d referrers lists: the loop was followed", asked)
	}
	wantContains(t, "stdout", r.stdout, "Successfully restored 6 tag(s)")
	wantContains(t, "stderr", r.stderr, "goes round in a loop: pushing its", "referrer(s) again")

	loop.on.Store(false)
	for repo, tags := range sample.Tags {
		for tag, d := range tags {
			wantTag(t, dst, repo, tag, d)
		}
		wantSampleReferrers(t, dst, sample, repo, repo)
	}
}
