package planfile

import "slices"

// Filter returns the plan of the tags keep accepts: their repositories
// (a repository left with no tag is dropped), the content they need and
// the referrers among it. A shard's plan is the plan filtered to its tags.
func (p *Plan) Filter(keep func(repo, tag string) bool) *Plan {
	return NewIndex(p).Filter(keep)
}

// Filter is Plan.Filter of the indexed plan, from the index: the content
// of a repository kept whole is the index's, the rest are walks of the
// tags kept.
func (x *Index) Filter(keep func(repo, tag string) bool) *Plan {
	p := x.plan
	q := &Plan{Version: p.Version, Registry: p.Registry, IncludeReferrers: p.IncludeReferrers}
	need := make([]bool, len(p.Content))
	var kept []int
	var buf []int32
	for r, repo := range p.Repositories {
		kept = kept[:0]
		for t, tg := range repo.Tags {
			if keep(repo.Name, tg.Name) {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 {
			continue
		}
		q.Repositories = append(q.Repositories, Repository{Name: repo.Name, Tags: make([]Tag, 0, len(kept))})
		tags := &q.Repositories[len(q.Repositories)-1].Tags
		for _, t := range kept {
			*tags = append(*tags, repo.Tags[t])
		}
		if len(kept) == len(repo.Tags) {
			for _, c := range x.RepositoryContent(r) {
				need[c] = true
			}
			continue
		}
		for _, t := range kept {
			buf = x.Needs(r, t, buf[:0])
			for _, c := range buf {
				need[c] = true
			}
		}
	}
	for i, c := range p.Content {
		if need[i] {
			q.Content = append(q.Content, c)
		}
	}
	for _, r := range p.Referrers {
		if d, s := x.find(r.Digest), x.find(r.Subject); d < 0 || s < 0 || !need[d] || !need[s] {
			continue
		}
		repos := slices.DeleteFunc(slices.Clone(r.Repositories), func(name string) bool { return q.Repository(name) == nil })
		if len(repos) > 0 {
			q.Referrers = append(q.Referrers, Referrer{Digest: r.Digest, Subject: r.Subject, Repositories: repos})
		}
	}
	return q
}
