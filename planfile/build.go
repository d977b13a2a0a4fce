package planfile

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/graph"
)

// FromGraph makes the plan of a walked graph (what backup --dry-run walks:
// every tag, every node with its children, the referrers with their
// repositories). Only content some tag needs is kept. includeReferrers is
// the policy the graph was walked with.
func FromGraph(g *graph.Graph, includeReferrers bool) (*Plan, error) {
	p := &Plan{Version: Version, Registry: g.Registry, IncludeReferrers: includeReferrers}
	for _, t := range g.Tags() {
		if n := len(p.Repositories); n == 0 || p.Repositories[n-1].Name != t.Repo {
			p.Repositories = append(p.Repositories, Repository{Name: t.Repo})
		}
		r := &p.Repositories[len(p.Repositories)-1]
		r.Tags = append(r.Tags, Tag{Name: t.Name, Digest: t.Desc.Digest, MediaType: t.Desc.MediaType, Size: t.Desc.Size})
	}
	nodes := g.Nodes()
	have := make(map[digest.Digest]bool, len(nodes))
	for _, n := range nodes {
		have[n.Desc.Digest] = true
	}
	for _, n := range nodes {
		c := Content{Digest: n.Desc.Digest, MediaType: n.Desc.MediaType, Size: n.Desc.Size, Kind: n.Kind.String()}
		for _, d := range n.Children {
			// A layer a stream left out (graph.LeaveOut) is no longer a
			// node: nothing moves it.
			if have[d] {
				c.Children = append(c.Children, d)
			}
		}
		p.Content = append(p.Content, c)
	}
	for _, r := range g.Referrers() {
		if !have[r.Desc.Digest] || !have[r.Subject] {
			continue
		}
		p.Referrers = append(p.Referrers, Referrer{Digest: r.Desc.Digest, Subject: r.Subject, Repositories: r.Repos})
	}
	p.Sort()
	// Referrers only in repositories with no tag, and content no tag
	// needs, are left out.
	for i := range p.Referrers {
		rs := p.Referrers[i].Repositories[:0:0]
		for _, name := range p.Referrers[i].Repositories {
			if p.Repository(name) != nil {
				rs = append(rs, name)
			}
		}
		p.Referrers[i].Repositories = rs
	}
	need := NewIndex(p).reached()
	content := p.Content[:0:0]
	for i, c := range p.Content {
		if need[i] {
			content = append(content, c)
		}
	}
	p.Content = content
	refs := p.Referrers[:0:0]
	for _, r := range p.Referrers {
		if len(r.Repositories) > 0 && needed(p, r.Digest) && needed(p, r.Subject) {
			refs = append(refs, r)
		}
	}
	p.Referrers = refs
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("the walked graph gives an invalid plan: %w", err)
	}
	return p, nil
}

func needed(p *Plan, d digest.Digest) bool {
	_, ok := searchContent(p.Content, d)
	return ok
}
