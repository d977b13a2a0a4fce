package planfile

import "slices"

// Filter returns the plan of the tags keep accepts: their repositories
// (a repository left with no tag is dropped), the content they need and
// the referrers among it. A shard's plan is the plan filtered to its tags.
func (p *Plan) Filter(keep func(repo, tag string) bool) *Plan {
	q := &Plan{Version: p.Version, Registry: p.Registry, IncludeReferrers: p.IncludeReferrers}
	for _, r := range p.Repositories {
		var tags []Tag
		for _, t := range r.Tags {
			if keep(r.Name, t.Name) {
				tags = append(tags, t)
			}
		}
		if len(tags) > 0 {
			q.Repositories = append(q.Repositories, Repository{Name: r.Name, Tags: tags})
		}
	}
	// Indexes over p with q's repositories: the referrers keep p's names.
	q.Content, q.Referrers = p.Content, p.Referrers
	need := NewIndex(q).reached()
	q.Content = nil
	for i, c := range p.Content {
		if need[i] {
			q.Content = append(q.Content, c)
		}
	}
	q.Referrers = nil
	for _, r := range p.Referrers {
		if _, ok := searchContent(q.Content, r.Digest); !ok {
			continue
		}
		if _, ok := searchContent(q.Content, r.Subject); !ok {
			continue
		}
		repos := slices.DeleteFunc(slices.Clone(r.Repositories), func(name string) bool { return q.Repository(name) == nil })
		if len(repos) > 0 {
			q.Referrers = append(q.Referrers, Referrer{Digest: r.Digest, Subject: r.Subject, Repositories: repos})
		}
	}
	return q
}
