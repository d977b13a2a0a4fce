package registry_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
)

// On a registry without the Referrers API, listings in many repositories
// at once ask the API once: the first finds out while the others wait,
// and then they all go on at once (the tag schema), not one after another.
func TestListReferrersAsksTheHostOnce(t *testing.T) {
	var inTag, most atomic.Int64
	slow := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/sha256-") {
				n := inTag.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				defer inTag.Add(-1)
				time.Sleep(100 * time.Millisecond) // long enough for the listings to overlap
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(false), registrytest.WithHandler(slow))
	ctx := context.Background()
	const repos = 8
	subjects, c := imagesInRepos(t, srv, repos)
	srv.ResetStats()
	var wg sync.WaitGroup
	errs := make([]error, repos)
	for i := range repos {
		wg.Go(func() {
			refs, err := c.ListReferrers(ctx, fmt.Sprintf("r%d", i), subjects[i])
			if err == nil && len(refs) != 0 {
				err = fmt.Errorf("%d referrers, want none", len(refs))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("r%d: %v", i, err)
		}
	}
	st := srv.Stats()
	if n := st.Count(http.MethodGet, registrytest.KindReferrers); n != 1 {
		t.Errorf("the Referrers API was asked about %d times, want once for the host", n)
	}
	if n := st.Count(http.MethodGet, registrytest.KindManifest); n != repos {
		t.Errorf("%d tag-schema lookups, want one per repository (%d)", n, repos)
	}
	if most.Load() < 2 {
		t.Errorf("the tag-schema lookups went one at a time: the listings waited for each other, not only for the first")
	}
}

// The listings that wait for the first to find out the host's Referrers
// API go on as soon as it has: when the API answered that it is not there
// and the first turns to the tag schema, not once the first's tag-schema
// lookup is answered too (a round trip more in front of every other
// repository's referrers).
func TestListReferrersOthersGoOnOnceTheAPIAnswered(t *testing.T) {
	var first atomic.Bool
	others := make(chan struct{})
	var othersOnce sync.Once
	var overlapped atomic.Bool
	var lookups atomic.Int64
	hold := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/sha256-") {
				held := first.CompareAndSwap(false, true)
				if held {
					select {
					case <-others:
						overlapped.Store(true)
					case <-time.After(10 * time.Second): // a hang guard, not a timing
					}
				}
				if !held && lookups.Add(1) == 1 {
					othersOnce.Do(func() { close(others) })
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(false), registrytest.WithHandler(hold))
	ctx := context.Background()
	const repos = 3
	subjects, c := imagesInRepos(t, srv, repos)
	srv.ResetStats()
	var wg sync.WaitGroup
	errs := make([]error, repos)
	for i := range repos {
		wg.Go(func() {
			_, errs[i] = c.ListReferrers(ctx, fmt.Sprintf("r%d", i), subjects[i])
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("r%d: %v", i, err)
		}
	}
	if n := srv.Stats().Count(http.MethodGet, registrytest.KindReferrers); n != 1 {
		t.Errorf("the Referrers API was asked about %d times, want once for the host", n)
	}
	if !overlapped.Load() {
		t.Errorf("no other repository's tag-schema lookup went out while the first one's was under way: the others waited for the whole first listing")
	}
}

// imagesInRepos pushes an image tagged v1 into each of the repositories
// r0 … r<n-1> of srv and returns their descriptors and a client of srv.
func imagesInRepos(t *testing.T, srv *registrytest.Server, n int) ([]ocispec.Descriptor, *registry.Client) {
	t.Helper()
	subjects := make([]ocispec.Descriptor, n)
	for i := range n {
		d, err := registrytest.PushImage(context.Background(), registrytest.Repo(t, srv, fmt.Sprintf("r%d", i)), "v1", []byte(fmt.Sprint("layer ", i)))
		if err != nil {
			t.Fatal(err)
		}
		subjects[i] = d
	}
	c, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	return subjects, c
}
