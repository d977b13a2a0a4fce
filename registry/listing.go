package registry

import (
	"context"
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

// ListTags lists every tag of r, following pagination, within MaxTagPages
// and MaxTags. A tag listed twice is kept once; a page that lists only
// tags already listed means the pagination goes round (a Link header
// pointing back), and ends the listing with an error.
func ListTags(ctx context.Context, r *remote.Repository) ([]string, error) {
	l := newListing[string]("tags", MaxTags)
	err := r.Tags(ctx, "", func(page []string) error {
		return l.add(page, func(t string) string { return t })
	})
	if err != nil {
		return nil, limitError(err, "tags", MaxTagPages)
	}
	return l.items, nil
}

// ListReferrers lists the manifests whose subject is desc in r: the
// Referrers API, falling back to the tag schema (oras-go decides and
// remembers which), within MaxReferrerPages and MaxReferrers, a referrer
// listed twice kept once and a listing that goes round ended (as
// ListTags does). Backup (reading the source) and restore (checking the
// target) both list through it, so a hostile registry on either side
// costs a bounded amount of work.
func ListReferrers(ctx context.Context, r *remote.Repository, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	l := newListing[ocispec.Descriptor]("referrers", MaxReferrers)
	err := r.Referrers(ctx, desc, "", func(page []ocispec.Descriptor) error {
		return l.add(page, func(d ocispec.Descriptor) string { return d.Digest.String() })
	})
	if err != nil {
		return nil, limitError(err, "referrers", MaxReferrerPages)
	}
	return l.items, nil
}

// listing gathers the pages of one paginated list, dropping repeats, and
// stops one that goes round in a loop or grows beyond max items.
type listing[T any] struct {
	what  string
	max   int
	pages int
	seen  map[string]bool
	items []T
}

func newListing[T any](what string, max int) *listing[T] {
	return &listing[T]{what: what, max: max, seen: map[string]bool{}}
}

func (l *listing[T]) add(page []T, key func(T) string) error {
	l.pages++
	fresh := 0
	for _, it := range page {
		k := key(it)
		if l.seen[k] {
			continue
		}
		l.seen[k] = true
		l.items = append(l.items, it)
		fresh++
	}
	if len(page) > 0 && fresh == 0 {
		return fmt.Errorf("page %d of the %s lists only %s already listed (%s): the registry's pagination (its Link header) goes round in a loop",
			l.pages, l.what, l.what, key(page[0]))
	}
	if len(l.items) > l.max {
		return fmt.Errorf("more than %d %s, regvault's limit: the registry's pagination (its Link header) does not seem to end", l.max, l.what)
	}
	return nil
}

// limitError says in words that a listing had more pages than the limit
// (oras-go stops it there).
func limitError(err error, what string, maxPages int) error {
	if errors.Is(err, errdef.ErrTooManyPages) {
		return fmt.Errorf("more than %d pages of %s, regvault's limit: the registry's pagination (its Link header) does not end (%w)", maxPages, what, err)
	}
	return err
}
