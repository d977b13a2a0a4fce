package pipeline

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
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

// RestoreJob pushes what a backup, or a source registry (a copy), holds
// into registries as a plan says.
type RestoreJob struct {
	Plan *plan.Restore
	// Source is the backup, whose repository names are the plan's
	// sources, or a registry (source.Registry), read at the paths of the
	// plan's sources (registry/path).
	Source source.Source
	// Sink receives the content under target names (host/path); nil walks
	// only (--dry-run). A copy within one registry mounts rather than
	// downloads (sink.SourceRegistry).
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
// once and pushed to each target registry once; each node is read from a
// source repository whose tags reached it (graph.Node.From). Unless the
// plan is fail-fast, a node the source cannot deliver fails the targets
// that need it (their tags are not set) and the others are committed.
func RunRestore(ctx context.Context, job RestoreJob) (*Result, *graph.Graph, error) {
	start := time.Now()
	conc := max(job.Concurrency, 1)
	name := sourceName(job.Source)
	sources := sourcesOf(job.Plan, name)
	r := &run{
		// FailFast: a node the source cannot deliver stops the run
		// rather than failing only the targets that need it.
		job:      Job{Source: job.Source, Sink: job.Sink, Concurrency: conc, SpoolDir: job.SpoolDir, FailFast: job.Plan.FailFast},
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
	targetSources := func(target string) []string { return sources[target] }
	withRefs := &source.Walker{Src: job.Source, Graph: r.graph, IncludeReferrers: true, Requests: requests, Sources: targetSources}
	noRefs := &source.Walker{Src: job.Source, Graph: r.graph, Requests: requests, Sources: targetSources}
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
				desc, body, err := job.Source.Resolve(gctx, name(m.Source), tm.From)
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
				return w.WalkFrom(gctx, target, name(m.Source), desc, body)
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
		if err := r.settleOptional(ctx, job.Source); err != nil {
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
	if err == nil && r.lost != nil && r.lost.record(res) > 0 {
		// Targets that need a node the source could not deliver are left
		// out (sink.Dropper): their tags are not set, the others are.
		err = r.dropLostTargets(ctx, res)
	}
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
			if i, ok := byTarget[repo]; ok && res.Repos[i].Err == nil {
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
func (r *run) settleOptional(ctx context.Context, src source.Source) error {
	if f, ok := src.(Finisher); ok {
		if err := f.Finish(ctx); err != nil {
			return err
		}
	}
	h, ok := src.(source.Holder)
	for repo, descs := range r.graph.OptionalDescs() {
		for _, d := range descs {
			has := true
			var err error
			if n := r.graph.Node(d.Digest); ok && n != nil && len(n.From) > 0 {
				has, err = h.Has(ctx, n.From[0], d)
			}
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

// sourcesOf maps each target repository of the plan to the source
// repositories restored or copied into it (as the source names them), in
// the plan's order.
func sourcesOf(p *plan.Restore, name func(string) string) map[string][]string {
	out := map[string][]string{}
	for _, m := range p.Mappings {
		t, s := m.Target.String(), name(m.Source)
		if !slices.Contains(out[t], s) {
			out[t] = append(out[t], s)
		}
	}
	return out
}

// sourceName returns how src names a plan's source repository. A plan
// names sources in full, registry/path (a backup's names, or a copy's
// sources); a registry reads its repositories by path.
func sourceName(src source.Source) func(string) string {
	h, ok := src.(interface{ Host() string })
	if !ok {
		return func(s string) string { return s }
	}
	prefix := strings.TrimSuffix(h.Host(), "/") + "/"
	return func(s string) string { return strings.TrimPrefix(s, prefix) }
}

// dropLostTargets leaves the targets that failed during the transfer out
// of the graph and the sink, so that the others are committed as a run of
// them alone would be.
func (r *run) dropLostTargets(ctx context.Context, res *Result) error {
	for _, rr := range res.Repos {
		if rr.Err != nil {
			r.graph.RemoveRepo(rr.Repo)
		}
	}
	d, can := r.job.Sink.(sink.Dropper)
	if !can {
		return ErrCannotDrop
	}
	return d.Drop(ctx, r.graph)
}
