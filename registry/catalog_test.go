package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
)

var catalogRepos = []string{"other/e", "team", "team/a", "team/b/c", "team/bb", "teamx/d"}

func pushCatalog(t *testing.T, srv *registrytest.Server, names []string) {
	t.Helper()
	for _, name := range names {
		if _, err := registrytest.PushImage(context.Background(), registrytest.Repo(t, srv, name), "v1", registrytest.Bytes(name, 64)); err != nil {
			t.Fatal(err)
		}
	}
}

func client(t *testing.T, srv *registrytest.Server) *registry.Client {
	t.Helper()
	c, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkPrefixes(t *testing.T, list func(prefix string) ([]string, error)) {
	t.Helper()
	for prefix, want := range map[string][]string{
		"":        catalogRepos,
		"team":    {"team/a", "team/b/c", "team/bb"},
		"team/":   {"team/a", "team/b/c", "team/bb"},
		"team/b":  {"team/b/c"},
		"teamx":   {"teamx/d"},
		"nothing": nil,
	} {
		got, err := list(prefix)
		if err != nil {
			t.Fatalf("prefix %q: %v", prefix, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("prefix %q: %v, want %v", prefix, got, want)
		}
	}
	if _, err := list("Team"); err == nil || !strings.Contains(err.Error(), `"Team" is not a repository path`) {
		t.Errorf("prefix Team: %v", err)
	}
}

func TestListRepositoriesInProcess(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	pushCatalog(t, srv, catalogRepos)
	c := client(t, srv)
	checkPrefixes(t, func(prefix string) ([]string, error) { return c.ListRepositories(context.Background(), prefix) })
}

// Distribution paginates its catalog with Link headers: every page is read.
func TestListRepositoriesDistributionPages(t *testing.T) {
	srv := registrytest.NewDistribution(t, registrytest.DistConfig{})
	pushCatalog(t, srv, catalogRepos)
	c := client(t, srv)
	srv.ResetStats()
	reg := c.Registry()
	reg.RepositoryListPageSize = 2
	checkPrefixes(t, func(prefix string) ([]string, error) {
		return registry.ListRepositoriesOf(context.Background(), reg, prefix)
	})
	// 7 listings (the refused prefix asks nothing) of 3 pages of 2 and a
	// last, empty or not, one.
	if got := srv.Stats().Count(http.MethodGet, registrytest.KindOther); got < 6*3 {
		t.Errorf("%d catalog GETs, want at least %d (pages of 2)", got, 6*3)
	}
}

// catalogServer answers the catalog with page(i) for the i-th request,
// and a Link to the next one unless the page is nil.
func catalogServer(t *testing.T, page func(i int) []string) *registrytest.Server {
	i := 0
	return registrytest.NewInProcess(t, registrytest.WithHandler(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v2/_catalog" {
				next.ServeHTTP(w, r)
				return
			}
			i++
			p := page(i)
			w.Header().Set("Content-Type", "application/json")
			if p != nil {
				w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?n=1&last=x%d>; rel="next"`, i))
			}
			_ = json.NewEncoder(w).Encode(map[string][]string{"repositories": p})
		})
	}))
}

func TestListRepositoriesLoop(t *testing.T) {
	srv := catalogServer(t, func(int) []string { return []string{"a/b", "c"} })
	_, err := client(t, srv).ListRepositories(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "page 2 of the repositories lists only repositories already listed (a/b)") {
		t.Fatalf("a catalog that goes round: %v", err)
	}
}

func TestListRepositoriesEndless(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 pages")
	}
	srv := catalogServer(t, func(i int) []string { return []string{fmt.Sprintf("r%d", i)} })
	_, err := client(t, srv).ListRepositories(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "more than 10000 pages of repositories, regvault's limit") {
		t.Fatalf("a catalog without end: %v", err)
	}
}

func TestListRepositoriesInvalidName(t *testing.T) {
	srv := catalogServer(t, func(i int) []string {
		if i > 1 {
			return nil
		}
		return []string{"ok", "../etc"}
	})
	_, err := client(t, srv).ListRepositories(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), `the catalog lists "../etc", which is not a repository name`) {
		t.Fatalf("a catalog with an invalid name: %v", err)
	}
}

// The catalog of a registry with authentication: oras-go asks for the
// registry:catalog:* scope with the credentials given.
func TestListRepositoriesDistributionAuth(t *testing.T) {
	users := map[string]string{"alice": "s3cret"}
	srv := registrytest.NewDistribution(t, registrytest.DistConfig{Htpasswd: users})
	pushCatalog(t, srv, catalogRepos)
	c, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true, Username: "alice", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.ListRepositories(context.Background(), "team")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"team/a", "team/b/c", "team/bb"}; !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	anon, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true, RegistryConfig: filepath.Join(t.TempDir(), "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.ListRepositories(context.Background(), "team"); err == nil || !strings.Contains(err.Error(), "listing the repositories of "+srv.Host()) {
		t.Errorf("without credentials: %v", err)
	}
}
