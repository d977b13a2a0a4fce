package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
)

// ListRepositories lists, sorted, the repositories of the client's
// registry under prefix (ListRepositoriesOf).
func (c *Client) ListRepositories(ctx context.Context, prefix string) ([]string, error) {
	reg := c.Registry()
	reg.RepositoryListPageSize = CatalogPageSize
	return ListRepositoriesOf(ctx, reg, prefix)
}

// ListRepositoriesOf lists, sorted, the repositories of reg whose path is
// under prefix: "team/app" gives team/app/web and team/app/api, not
// team/app itself nor team/apple; "" gives every repository. It reads the
// registry's catalog (_catalog) page by page with oras-go (the Link
// header; reg.RepositoryListPageSize is the page size asked for), within
// MaxCatalogPages and MaxRepositories; a repository listed twice is kept
// once, and a page that lists only repositories already listed (the
// pagination goes round) ends the listing with an error, as ListTags.
func ListRepositoriesOf(ctx context.Context, reg *remote.Registry, prefix string) ([]string, error) {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := (registry.Reference{Registry: reg.Reference.Registry, Repository: prefix}).ValidateRepository(); err != nil {
			return nil, fmt.Errorf("%q is not a repository path to list the repositories under: use lower-case path components separated by /", prefix)
		}
	}
	l := newListing[string]("repositories", MaxRepositories)
	err := reg.Repositories(ctx, "", func(page []string) error {
		if l.pages >= MaxCatalogPages {
			return fmt.Errorf("more than %d pages of repositories, regvault's limit: the registry's pagination (its Link header) does not end", MaxCatalogPages)
		}
		for _, r := range page {
			if err := (registry.Reference{Registry: reg.Reference.Registry, Repository: r}).ValidateRepository(); err != nil {
				return fmt.Errorf("the catalog lists %q, which is not a repository name", r)
			}
		}
		return l.add(page, func(r string) string { return r })
	})
	if err != nil {
		return nil, fmt.Errorf("listing the repositories of %s (its catalog, /v2/_catalog): %w", reg.Reference.Registry, err)
	}
	var out []string
	for _, r := range l.items {
		if prefix == "" || strings.HasPrefix(r, prefix+"/") {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out, nil
}
