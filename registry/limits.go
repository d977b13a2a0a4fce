package registry

// Limits on what one listing from a registry may hold. They bound the work
// a broken or hostile registry can make a run do (pagination whose Link
// header never ends, or points back at itself), and lie far beyond real
// repositories: 10,000 pages still hold 100,000 tags at 10 a page and
// 1,000,000 at the usual 100 (or more) a page.
const (
	// MaxTagPages bounds the pages of one repository's tag list.
	MaxTagPages = 10_000
	// MaxTags bounds the tags of one repository.
	MaxTags = 1_000_000
	// MaxReferrerPages bounds the pages of one manifest's referrers list
	// (Referrers API).
	MaxReferrerPages = 1_000
	// MaxReferrers bounds the referrers of one manifest.
	MaxReferrers = 10_000
)

// Limits on the repository listing (_catalog), as the tag list's.
const (
	// MaxCatalogPages bounds the pages of a registry's repository list.
	MaxCatalogPages = 10_000
	// MaxRepositories bounds the repositories of a registry.
	MaxRepositories = 1_000_000
	// CatalogPageSize is the page size asked for (a registry may clamp
	// it: distribution's default maximum is 1,000).
	CatalogPageSize = 1000
)
