package regvault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// CopyOptions say what Copy moves from one registry where.
type CopyOptions struct {
	// Sources are the repositories to copy, as backup's arguments:
	// <registry>/<repository>[:<tag>[,<tag>...]], all of one registry.
	Sources []string
	// Targets are restore's targets
	// (<registry>[/<repository>][:<tag>[,<tag>...]]), or, instead of
	// them, a rules file whose sources are named as in the source
	// registry: RulesFile names it.
	Targets   []string
	RulesFile string
	// IncludeReferrers copies the referrers of what is copied
	// (recursively); ExcludeReferrers (and the rules file) leave them out
	// again per target.
	IncludeReferrers bool
	ExcludeReferrers bool
	// FailFast stops at the first repository that fails; nil: the rules
	// file's settings.fail-fast, else true.
	FailFast *bool
	// DryRun resolves the sources and asks the targets, read-only, what
	// they already have; nothing is pushed.
	DryRun bool
	// Concurrency is how many blob transfers may be under way at once
	// (Validate refuses less than 1; Copy takes 0 as: adapt, from 8 up
	// to pipeline.AdaptMax, as the backup's Concurrency says).
	Concurrency int
	// From holds the credentials and transport settings of the source
	// registry, To those of every target registry.
	From, To registry.Options

	Observe  pipeline.Observer
	Progress *pipeline.Progress
	// OnStart, if not nil, is called once the sources are resolved and
	// the plan made, before anything is pushed.
	OnStart func(*Report)
	// Shard, if not nil, copies only the tags of Sources it accepts
	// (repository path, tag): a shard of a plan (shard.Shard.Has). The
	// target table and rules are those of all Sources, so that each
	// repository goes where a copy of them all puts it (with one
	// repository left, "registry/x" would otherwise rename it to x).
	Shard func(repo, tag string) bool

	checked *plan.Copy
}

// Validate checks the sources, the targets or the rules file, and the
// target table as far as names decide it, without a registry. Copy calls
// it; a command calls it first to report a mistake before it asks for a
// password.
func (o *CopyOptions) Validate() error {
	c, err := plan.NewCopy(o.Sources, o.Targets, plan.CopyOptions{
		Rules:            o.RulesFile,
		IncludeReferrers: o.IncludeReferrers,
		ExcludeReferrers: o.ExcludeReferrers,
		FailFast:         o.FailFast,
		DryRun:           o.DryRun,
		Concurrency:      o.Concurrency,
	})
	if err != nil {
		return err
	}
	o.checked = c
	return nil
}

// SourceTags is what Copy found in the source registry: per source
// repository (full name), its tags, sorted.
type SourceTags struct {
	Registry string
	Repos    []string            // full names, sorted
	Tags     map[string][]string // full name → sorted tags
	// Digests are the manifests the tags resolved to: full name → tag →
	// digest.
	Digests map[string]map[string]digest.Digest
}

// Copy moves repositories from one registry into others, as a backup
// and a restore of the same selection would, without an archive: bytes
// stream from the source's GET into the target's PUT, nothing is written
// to disk. The error is that of the run as a whole, or the failed
// repositories' errors joined; the report says what was done either way.
// Bad options, and a plan that cannot be made (a target table that is
// ambiguous, tags that collide), are a *plan.UsageError with a nil
// report: nothing was pushed. So is, as a *RepositoryError, a source
// repository that cannot be read under fail-fast; when no source
// repository can be read, the error joins their *RepositoryErrors.
func Copy(ctx context.Context, o CopyOptions) (*Report, error) {
	adapt := o.Concurrency == 0
	if adapt {
		o.Concurrency = 8
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := o.checked
	client, err := registry.New(c.Registry, o.From)
	if err != nil {
		return nil, err
	}
	src := &resolvedSource{Registry: source.NewRegistry(client), tags: map[string]*resolvedTag{}}
	part := c
	if o.Shard != nil {
		part = shardOf(c, o.Shard)
	}
	entries, failed, err := resolveSources(ctx, src, part, o.Concurrency)
	if err != nil {
		return nil, err
	}
	if o.Shard != nil {
		entries = slices.DeleteFunc(entries, func(e plan.BackupEntry) bool {
			return !o.Shard(strings.TrimPrefix(e.Repo, c.Registry+"/"), e.Tag)
		})
	}
	if len(entries) == 0 && len(failed) > 0 {
		// Nothing could be read: say why (a name, a password), not that
		// the selection is empty.
		errs := make([]error, len(failed))
		for i, e := range failed {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	p, err := c.Restore(entries)
	if err != nil {
		return nil, err
	}
	if o.Shard != nil {
		// Only the shard's repositories are the copy's: the others are
		// other shards', not skipped.
		mine := map[string]bool{}
		for _, n := range part.Names() {
			mine[n] = true
		}
		p.Skipped = slices.DeleteFunc(p.Skipped, func(n string) bool { return !mine[n] })
	}
	if !o.IncludeReferrers {
		// As a backup: referrers only when asked for. Every mapping says
		// so too, so that none reads as an exception to the plan's policy.
		p.ExcludeReferrers = true
		for i := range p.Mappings {
			p.Mappings[i].ExcludeReferrers = true
		}
	}
	if len(failed) > 0 && p.FailFast {
		// Nothing is pushed when a source cannot be read under fail-fast.
		return nil, failed[0]
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = &pipeline.Progress{}
	}
	rep := &Report{RestorePlan: p, DryRun: p.DryRun, Progress: progress, Sources: sourceTags(part, entries)}
	clients := registry.NewClients(o.To)
	sels := pipeline.RestoreSelections(p)
	src.expect(c.Registry, sels)
	job := pipeline.Job{
		Selections:  sels,
		Concurrency: p.Concurrency,
		Adapt:       adapt,
		RoundTrip:   copyRoundTrip(client, clients),
		FailFast:    p.FailFast,
		Source:      src,
		Observe:     o.Observe,
		Progress:    progress,
	}
	if !p.DryRun {
		// Within one registry a blob is mounted from its source
		// repository, never downloaded.
		rep.Sink = sink.NewRegistry(clients, p.FailFast, p.Concurrency, sink.SourceRegistry(c.Registry))
		job.Sink = rep.Sink
	}
	if o.OnStart != nil {
		o.OnStart(rep)
	}
	var res *pipeline.Result
	var g *graph.Graph
	var runErr error
	if len(p.Mappings) > 0 {
		res, g, runErr = pipeline.Run(ctx, job)
	}
	finishRestore(ctx, rep, clients, res, g, runErr, OpCopy)
	for _, e := range failed {
		rep.Repositories = append(rep.Repositories, RepositoryReport{Repository: e.Repository, Err: e})
	}
	return rep, rep.outcome()
}

// resolveSources lists (where every tag is taken) and resolves the
// source tags, as backup does: tags of the referrers tag schema are left
// out. A source repository that cannot be read is returned as a failure
// of its own; the others go on.
func resolveSources(ctx context.Context, src *resolvedSource, c *plan.Copy, conc int) ([]plan.BackupEntry, []*RepositoryError, error) {
	var (
		mu      sync.Mutex
		entries []plan.BackupEntry
		failed  = make([]*RepositoryError, len(c.Repos))
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(int(pipeline.MetadataRequests(conc)))
	for i, r := range c.Repos {
		repo := graph.Repository{Registry: c.Registry, Path: r.Name}
		fail := func(tag string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if failed[i] == nil {
				failed[i] = &RepositoryError{Repository: repo, Op: OpCopy, Tag: tag, Err: err}
			}
		}
		g.Go(func() error {
			tags := r.Tags
			if tags == nil {
				all, err := src.Tags(gctx, r.Name)
				if err != nil {
					fail("", err)
					return nil
				}
				for _, t := range all {
					if !plan.IsReferrerTag(t) {
						tags = append(tags, t)
					}
				}
				if len(tags) == 0 {
					fail("", fmt.Errorf("%s has no tags", repo))
					return nil
				}
			}
			for _, t := range tags {
				resolve := func() error {
					// A GET, not a HEAD: the pipeline walks from the
					// manifest fetched here (resolvedSource), so a tag
					// costs one request.
					desc, body, err := src.Registry.Resolve(gctx, r.Name, t)
					if errors.Is(err, errdef.ErrNotFound) {
						// said once: repo:tag and why
						err = fmt.Errorf("%s:%s: %w", repo, t, errdef.ErrNotFound)
					}
					if err != nil {
						fail(t, err)
						return nil
					}
					src.keep(r.Name, t, desc, body)
					mu.Lock()
					entries = append(entries, plan.BackupEntry{Repo: repo.String(), Tag: t, Digest: desc.Digest, Size: desc.Size})
					mu.Unlock()
					return nil
				}
				// Not g.Go: with every slot held by a repository waiting
				// to start its tags, none would start. A tag without a
				// free slot is resolved here, in its repository's slot.
				if !g.TryGo(resolve) {
					_ = resolve()
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	// A repository that fails is left out whole, as backup leaves it
	// out: none of its tags is copied.
	var errs []*RepositoryError
	lost := map[string]bool{}
	for _, e := range failed {
		if e != nil {
			errs = append(errs, e)
			lost[e.Repository.String()] = true
		}
	}
	entries = slices.DeleteFunc(entries, func(e plan.BackupEntry) bool { return lost[e.Repo] })
	sort.Slice(entries, func(a, b int) bool {
		if entries[a].Repo != entries[b].Repo {
			return entries[a].Repo < entries[b].Repo
		}
		return entries[a].Tag < entries[b].Tag
	})
	return entries, errs, nil
}

// sourceTags lists every source repository, with the tags resolved (none
// for one that could not be read).
func sourceTags(c *plan.Copy, entries []plan.BackupEntry) *SourceTags {
	st := &SourceTags{Registry: c.Registry, Tags: map[string][]string{}, Digests: map[string]map[string]digest.Digest{}}
	for _, name := range c.Names() {
		if _, ok := st.Tags[name]; !ok {
			st.Repos = append(st.Repos, name)
			st.Tags[name] = nil
		}
	}
	for _, e := range entries {
		st.Tags[e.Repo] = append(st.Tags[e.Repo], e.Tag)
		if st.Digests[e.Repo] == nil {
			st.Digests[e.Repo] = map[string]digest.Digest{}
		}
		st.Digests[e.Repo][e.Tag] = e.Digest
	}
	sort.Strings(st.Repos)
	return st
}

// shardOf is c with the tags shard accepts: the repositories and tags
// to resolve. A repository taken with every tag stays whole (its tags are
// listed, then filtered).
func shardOf(c *plan.Copy, shard func(repo, tag string) bool) *plan.Copy {
	part := *c
	part.Repos = nil
	for _, r := range c.Repos {
		if r.Tags == nil {
			part.Repos = append(part.Repos, r)
			continue
		}
		var tags []string
		for _, t := range r.Tags {
			if shard(r.Name, t) {
				tags = append(tags, t)
			}
		}
		if len(tags) > 0 {
			part.Repos = append(part.Repos, plan.Repo{Name: r.Name, Tags: tags})
		}
	}
	return &part
}

// resolvedSource is the source registry of a copy, whose tags were
// resolved while planning: the pipeline's Resolve of such a tag answers
// with the manifest fetched then, so each source tag costs one GET
// (instead of a HEAD to plan and a GET to walk), and the walk starts
// from the very bytes the plan was made from.
type resolvedSource struct {
	*source.Registry
	mu   sync.Mutex
	tags map[string]*resolvedTag // path + ":" + tag
}

type resolvedTag struct {
	desc ocispec.Descriptor
	body []byte
	// uses: how many selections will resolve it (several targets); the
	// bytes are let go after the last, so a big plan does not hold every
	// manifest to the end of the run.
	uses int
}

func (s *resolvedSource) keep(repo, tag string, desc ocispec.Descriptor, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags[repo+":"+tag] = &resolvedTag{desc: desc, body: body}
}

// expect counts the selections that will resolve each tag, and lets go
// of the tags none will (left out by the plan).
func (s *resolvedSource) expect(registry string, sels []pipeline.Selection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sel := range sels {
		repo := strings.TrimPrefix(sel.Source, registry+"/")
		for _, tm := range sel.Tags {
			if t, ok := s.tags[repo+":"+tm.From]; ok {
				t.uses++
			}
		}
	}
	for k, t := range s.tags {
		if t.uses == 0 {
			delete(s.tags, k)
		}
	}
}

// Resolve answers with the manifest fetched while planning; a tag not
// resolved then is fetched.
func (s *resolvedSource) Resolve(ctx context.Context, repo, tag string) (ocispec.Descriptor, []byte, error) {
	s.mu.Lock()
	t, ok := s.tags[repo+":"+tag]
	if ok {
		if t.uses--; t.uses <= 0 {
			delete(s.tags, repo+":"+tag)
		}
	}
	s.mu.Unlock()
	if ok {
		return t.desc, t.body, nil
	}
	return s.Registry.Resolve(ctx, repo, tag)
}

// copyRoundTrip is a copy's link round trip for the adapter: a blob's
// first byte waits for the target's answer to the upload's start and
// then for the source's, so the two least round trips add up (known once
// both are).
func copyRoundTrip(from *registry.Client, to *registry.Clients) func() (time.Duration, bool) {
	return func() (time.Duration, bool) {
		a, ok := from.LeastRoundTrip()
		b, ok2 := to.LeastRoundTrip()
		return a + b, ok && ok2
	}
}
