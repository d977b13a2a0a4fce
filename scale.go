package regvault

import (
	"context"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/planfile"
	"github.com/regvault/regvault/registry"
)

// IsPattern says whether a source names the repositories under a prefix,
// <registry>/<prefix>/* (or <registry>/* for every repository), which
// ExpandSources lists through the registry's catalog.
func IsPattern(source string) bool { return strings.HasSuffix(source, "/*") }

// ExpandSources replaces each source <registry>/<prefix>/* (IsPattern) by
// the repositories the registry's catalog (/v2/_catalog, paginated) lists
// under the prefix, sorted, every tag of each; the other sources are kept
// as they are, in place. A pattern with tags or a * elsewhere is a
// *plan.UsageError; a prefix under which the catalog lists nothing is an
// error that says so (a mistyped namespace must not make an empty plan).
func ExpandSources(ctx context.Context, sources []string, o registry.Options) ([]string, error) {
	out, _, err := expandSources(ctx, sources, o)
	return out, err
}

// expandSources is ExpandSources, and the repositories (full names) that
// only a pattern named.
func expandSources(ctx context.Context, sources []string, o registry.Options) ([]string, map[string]bool, error) {
	var out []string
	named := map[string]bool{}
	listed := map[string]bool{}
	clients := map[string]*registry.Client{}
	for _, s := range sources {
		if !IsPattern(s) {
			if strings.Contains(s, "*") {
				return nil, nil, &plan.UsageError{Msg: fmt.Sprintf("%q: only a last path element * is a pattern (<registry>/<prefix>/* for every repository under prefix)", s)}
			}
			out = append(out, s)
			if ref, err := plan.ParseRepoRef(s); err == nil {
				named[ref.Registry+"/"+ref.Repository] = true
			}
			continue
		}
		host, prefix, _ := strings.Cut(strings.TrimSuffix(s, "/*"), "/")
		if host == "" || strings.ContainsAny(host, "*@/") || strings.ContainsAny(prefix, "*:@") {
			return nil, nil, &plan.UsageError{Msg: fmt.Sprintf("%q: a pattern is <registry>/<prefix>/* (every repository under prefix, every tag) or <registry>/*; it takes no tag", s)}
		}
		c := clients[host]
		if c == nil {
			var err error
			if c, err = registry.New(host, o); err != nil {
				return nil, nil, err
			}
			clients[host] = c
		}
		repos, err := c.ListRepositories(ctx, prefix)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s, err)
		}
		if len(repos) == 0 {
			where := "any repository"
			if prefix != "" {
				where = "any repository under " + prefix + "/"
			}
			return nil, nil, fmt.Errorf("%s: the catalog of %s does not list %s", s, host, where)
		}
		for _, r := range repos {
			out = append(out, host+"/"+r)
			listed[host+"/"+r] = true
		}
	}
	for n := range named {
		delete(listed, n)
	}
	return out, listed, nil
}

// File is the plan file (package planfile) of the selection: what
// `regvault plan` writes and `--plan` reads.
func (s *Selection) File() (*planfile.Plan, error) {
	if s.Graph == nil {
		return nil, fmt.Errorf("the selection of %s has no content graph", s.Registry)
	}
	return planfile.FromGraph(s.Graph, s.IncludeReferrers)
}

// PlanSources are the sources (as backup's and copy's arguments) that
// select exactly the tags of p, a plan or a shard's plan (shard.Shard.Plan):
// every tag named, so that nothing is listed again.
func PlanSources(p *planfile.Plan) []string {
	out := make([]string, 0, len(p.Repositories))
	for _, r := range p.Repositories {
		tags := make([]string, len(r.Tags))
		for i, t := range r.Tags {
			tags[i] = t.Name
		}
		out = append(out, p.Registry+"/"+r.Name+":"+strings.Join(tags, ","))
	}
	return out
}

// MovedTag is a tag of a plan that the registry resolved to another
// manifest when the plan was run: the tag moved after the plan was made.
type MovedTag struct {
	Repository graph.Repository
	Tag        string
	Planned    digest.Digest // in the plan
	Now        digest.Digest // in the registry, what was used
}

func (m MovedTag) String() string {
	return fmt.Sprintf("%s:%s moved since the plan was made: the plan has %s, the registry now %s (used)", m.Repository, m.Tag, m.Planned, m.Now)
}

// PlanMoved compares the tags a Backup or Copy of PlanSources(p) resolved
// with the plan p: the tags that moved since the plan was made, in the
// plan's order. The run took their new manifests.
func (r *Report) PlanMoved(p *planfile.Plan) []MovedTag {
	now := map[string]map[string]digest.Digest{} // repository path → tag → digest
	switch {
	case r.BackupPlan != nil:
		for _, rr := range r.Repositories {
			m := map[string]digest.Digest{}
			for _, t := range rr.Tags {
				m[t.Name] = t.Desc.Digest
			}
			now[rr.Repository.Path] = m
		}
	case r.Sources != nil:
		for full, m := range r.Sources.Digests {
			now[strings.TrimPrefix(full, r.Sources.Registry+"/")] = m
		}
	}
	var out []MovedTag
	for _, repo := range p.Repositories {
		m := now[repo.Name]
		for _, t := range repo.Tags {
			if d, ok := m[t.Name]; ok && d != t.Digest {
				out = append(out, MovedTag{Repository: graph.Repository{Registry: p.Registry, Path: repo.Name}, Tag: t.Name, Planned: t.Digest, Now: d})
			}
		}
	}
	return out
}
