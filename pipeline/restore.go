package pipeline

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// RestoreJob pushes what a backup holds into registries as a plan says.
type RestoreJob struct {
	Plan *plan.Restore
	// Source is the backup; its repository names are the plan's sources.
	Source source.Source
	// Sink receives the content under target names (host/path); nil walks
	// only (--dry-run).
	Sink        sink.Sink
	Concurrency int
	// SpoolDir holds copies of streamed blobs that a sink reads twice; ""
	// is the system temporary directory.
	SpoolDir string
	Observe  Observer
	Progress *Progress
}

// RunRestore walks the backup for every mapping of the plan, then transfers
// and commits like Run. The graph's repositories are the targets
// (host/path), so a node shared by several targets is read from the backup
// once and pushed to each target registry once.
func RunRestore(ctx context.Context, job RestoreJob) (*Result, *graph.Graph, error) {
	start := time.Now()
	conc := max(job.Concurrency, 1)
	renamed := newRenamedSource(job.Source, job.Plan)
	r := &run{
		job:      Job{Source: renamed, Sink: job.Sink, Concurrency: conc, SpoolDir: job.SpoolDir},
		graph:    graph.New(""),
		observe:  job.Observe,
		progress: job.Progress,
	}
	if r.observe == nil {
		r.observe = func(Event) {}
	}
	if r.progress == nil {
		r.progress = &Progress{}
	}
	requests := semaphore.NewWeighted(MetadataRequests(conc))
	withRefs := &source.Walker{Src: renamed, Graph: r.graph, IncludeReferrers: true, Requests: requests}
	noRefs := &source.Walker{Src: renamed, Graph: r.graph, Requests: requests}
	r.walker = withRefs

	res := &Result{}
	byTarget := map[string]int{}
	for _, m := range job.Plan.Mappings {
		t := m.Target.String()
		if _, ok := byTarget[t]; !ok {
			byTarget[t] = len(res.Repos)
			res.Repos = append(res.Repos, RepoResult{Repo: t})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	// A goroutine per tag under way, not per tag: a plan of 100,000 tags
	// would otherwise park 100,000 goroutines on the request slots. Twice
	// the slots keeps every slot busy while walks start and end.
	g.SetLimit(2 * int(MetadataRequests(conc)))
	var tagsMu sync.Mutex
	for _, m := range job.Plan.Mappings {
		target := m.Target.String()
		w := withRefs
		if m.ExcludeReferrers || job.Plan.ExcludeReferrers {
			w = noRefs
		}
		for _, tm := range m.Tags {
			if gctx.Err() != nil {
				break // interrupted, or a tag failed: start no more
			}
			g.Go(func() error {
				release, err := w.Acquire(gctx)
				if err != nil {
					return err
				}
				desc, body, err := job.Source.Resolve(gctx, m.Source, tm.From)
				release()
				if err != nil {
					return err
				}
				desc = graph.Plain(desc)
				r.graph.AddTag(graph.Tag{Repo: target, Name: tm.To, Desc: desc})
				tagsMu.Lock()
				rr := &res.Repos[byTarget[target]]
				rr.Tags = append(rr.Tags, TagResult{Name: tm.To, Desc: desc})
				tagsMu.Unlock()
				r.observe(Event{Kind: TagResolved, Repo: target, Tag: tm.To, Desc: desc})
				return w.Walk(gctx, target, desc, body)
			})
		}
	}
	if err := g.Wait(); err != nil {
		res.Duration = time.Since(start)
		if job.Sink != nil {
			_ = job.Sink.Abort()
		}
		return res, r.graph, err
	}
	// A backup read with random access tells at once whether it holds
	// every blob at the size the manifests give: a blob missing or of
	// another size is found before anything is pushed.
	if c, ok := job.Source.(Checker); ok {
		for _, n := range r.graph.Nodes() {
			if n.Content != nil {
				continue
			}
			if err := c.Check(ctx, n.Desc); err != nil {
				res.Duration = time.Since(start)
				if job.Sink != nil {
					_ = job.Sink.Abort()
				}
				return res, r.graph, nodeError(n, err)
			}
		}
	}
	if job.Sink == nil && r.graph.HasOptional() {
		// A dry run moves nothing that would tell whether a stream holds
		// its optional layers: read it to its end, keeping nothing, and
		// ask again.
		if err := r.settleOptional(ctx, job.Source, renamed); err != nil {
			res.Duration = time.Since(start)
			return res, r.graph, err
		}
	}
	for i := range res.Repos {
		rr := &res.Repos[i]
		sort.Slice(rr.Tags, func(a, b int) bool { return rr.Tags[a].Name < rr.Tags[b].Name })
		r.summarize(rr)
		r.observe(Event{Kind: RepoWalked, Repo: rr.Repo, Tags: rr.Tags, Count: rr.Artifacts, Bytes: rr.Bytes})
	}
	res.UniqueNodes = r.graph.Len()
	res.UniqueBytes = r.graph.Size()
	if job.Sink == nil {
		res.Duration = time.Since(start)
		return res, r.graph, nil
	}
	err := r.transfer(ctx, res, conc)
	if r.leftOut.Load() {
		// Optional layers the stream turned out not to hold are left out
		// now: count again as the walk would have.
		for i := range res.Repos {
			r.resummarize(&res.Repos[i])
		}
		res.UniqueNodes = r.graph.Len()
		res.UniqueBytes = r.graph.Size()
	}
	if f, ok := job.Source.(Finisher); ok && err == nil {
		err = f.Finish(ctx)
	}
	if err == nil {
		r.observe(Event{Kind: Committing})
		err = job.Sink.Commit(ctx)
	}
	if err != nil {
		_ = job.Sink.Abort()
	}
	if f, ok := job.Sink.(interface{ Failures() map[string]error }); ok {
		for repo, ferr := range f.Failures() {
			if i, ok := byTarget[repo]; ok {
				res.Repos[i].Err = ferr
				r.observe(Event{Kind: RepoFailed, Repo: repo, Err: ferr})
			}
		}
	}
	res.Duration = time.Since(start)
	return res, r.graph, err
}

// settleOptional reads a stream to its end (Finisher) and then settles
// each optional layer of the graph: held, or left out.
func (r *run) settleOptional(ctx context.Context, src source.Source, renamed *renamedSource) error {
	if f, ok := src.(Finisher); ok {
		if err := f.Finish(ctx); err != nil {
			return err
		}
	}
	for repo, descs := range r.graph.OptionalDescs() {
		for _, d := range descs {
			has, err := renamed.Has(ctx, repo, d)
			if err != nil {
				return fmt.Errorf("%s: layer %s: %w", repo, d.Digest, err)
			}
			if has {
				r.graph.Keep(d.Digest)
			} else {
				r.graph.LeaveOut(d.Digest)
			}
		}
	}
	return nil
}

// resummarize counts a repository's result again (summarize).
func (r *run) resummarize(rr *RepoResult) {
	if rr.Err != nil {
		return
	}
	rr.Artifacts, rr.Bytes, rr.NonDistributable = 0, 0, 0
	for i := range rr.Tags {
		t := &rr.Tags[i]
		t.Artifacts, t.Bytes, t.Referrers, t.NonDistributable = 0, 0, 0, 0
	}
	r.summarize(rr)
}

// Checker is a source that tells, without reading it, whether it holds
// content at its size (source.Layout): an error when it does not.
type Checker interface {
	Check(ctx context.Context, desc ocispec.Descriptor) error
}

// Finisher is a source that checks, once everything is transferred, that
// the rest of its input is sound too (source.Layout on a stream): an
// error keeps the tags from being set.
type Finisher interface {
	Finish(ctx context.Context) error
}

// renamedSource reads a backup under target names: a target repository
// reads from the source repositories mapped into it.
type renamedSource struct {
	src     source.Source
	sources map[string][]string // target → sources
}

func newRenamedSource(src source.Source, p *plan.Restore) *renamedSource {
	rs := &renamedSource{src: src, sources: map[string][]string{}}
	for _, m := range p.Mappings {
		t := m.Target.String()
		if !slices.Contains(rs.sources[t], m.Source) {
			rs.sources[t] = append(rs.sources[t], m.Source)
		}
	}
	return rs
}

// Verifies passes on whether the backup's reads are verified already.
func (rs *renamedSource) Verifies() bool {
	v, ok := rs.src.(Verifying)
	return ok && v.Verifies()
}

// Streaming passes on whether the backup can be read only once.
func (rs *renamedSource) Streaming() bool {
	s, ok := rs.src.(Streaming)
	return ok && s.Streaming()
}

func (rs *renamedSource) first(target string) string {
	if s := rs.sources[target]; len(s) > 0 {
		return s[0]
	}
	return target
}

func (rs *renamedSource) Tags(ctx context.Context, repo string) ([]string, error) {
	return rs.src.Tags(ctx, rs.first(repo))
}

func (rs *renamedSource) Resolve(ctx context.Context, repo, tag string) (ocispec.Descriptor, []byte, error) {
	return rs.src.Resolve(ctx, rs.first(repo), tag)
}

// Has passes the question on to the backup, for the target's first
// source.
func (rs *renamedSource) Has(ctx context.Context, repo string, desc ocispec.Descriptor) (bool, error) {
	if h, ok := rs.src.(source.Holder); ok {
		return h.Has(ctx, rs.first(repo), desc)
	}
	return true, nil
}

func (rs *renamedSource) Fetch(ctx context.Context, repo string, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return rs.src.Fetch(ctx, rs.first(repo), desc)
}

// Referrers unites the referrers of every source mapped into the target.
func (rs *renamedSource) Referrers(ctx context.Context, repo string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	seen := map[string]bool{}
	for _, s := range rs.sources[repo] {
		refs, err := rs.src.Referrers(ctx, s, desc)
		if err != nil {
			return nil, err
		}
		for _, d := range refs {
			if !seen[d.Digest.String()] {
				seen[d.Digest.String()] = true
				out = append(out, d)
			}
		}
	}
	return out, nil
}
