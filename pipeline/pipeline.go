// Package pipeline moves a content graph from a source to a sink:
// resolve → walk → dedup → transfer → commit, each stage with bounded
// concurrency. Backup, restore and copy are this pipeline with different
// ends: one Run over a Job of Selections.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// Selection is one part of a job: tags of a source repository, the
// repository they go to, and whether their referrers go with them.
type Selection struct {
	// Source is the source repository: its path on a registry (a full
	// name, registry/path, is read at its path), or the name a backup
	// gives it.
	Source string
	// Target names the repository in the graph, the result and the sink:
	// the source's path for a backup (the archive records it), the
	// target's registry/path for a restore or copy.
	Target string
	// Tags map source tags to target tags; nil takes every tag the source
	// lists (but the referrers tag schema's), each under its own name.
	Tags []plan.TagMapping
	// Referrers: the referrers of what the tags reach go too, referrers
	// of referrers included.
	Referrers bool
}

// NoTagsError is a repository taken with every tag that lists none (a
// registry's catalog still lists a repository whose tags were all
// deleted).
type NoTagsError struct {
	Repository string // registry/path
}

func (e *NoTagsError) Error() string { return e.Repository + " has no tags" }

// BackupSelections selects the repositories of a backup plan, each under
// its own name.
func BackupSelections(repos []plan.Repo, referrers bool) []Selection {
	out := make([]Selection, len(repos))
	for i, r := range repos {
		out[i] = Selection{Source: r.Name, Target: r.Name, Referrers: referrers}
		if r.Tags != nil {
			out[i].Tags = make([]plan.TagMapping, len(r.Tags))
			for j, t := range r.Tags {
				out[i].Tags[j] = plan.TagMapping{From: t, To: t}
			}
		}
	}
	return out
}

// RestoreSelections selects what a restore plan (or a copy's) maps: each
// mapping's tags into its target.
func RestoreSelections(p *plan.Restore) []Selection {
	out := make([]Selection, len(p.Mappings))
	for i, m := range p.Mappings {
		out[i] = Selection{Source: m.Source, Target: m.Target.String(), Tags: m.Tags,
			Referrers: !m.ExcludeReferrers && !p.ExcludeReferrers}
		if out[i].Tags == nil {
			out[i].Tags = []plan.TagMapping{} // the plan's tags, even none: not every tag
		}
	}
	return out
}

// Job is one run from a source to a sink.
type Job struct {
	Registry   string // the source registry of a backup, for names in the result
	Selections []Selection
	// Concurrency counts blob transfers (see MetadataRequests).
	Concurrency int
	// Adapt makes Concurrency where the number of blob transfers starts,
	// raised while the link gives more with more (adapt.go); false keeps
	// it fixed.
	Adapt bool
	// RoundTrip, if not nil, is the least time the registry at the far
	// end of the blob transfers (a backup's source, a restore's target)
	// has taken to answer a small request so far, false before any: with
	// Adapt, the link's round trip is the least of it and of the first
	// transfers' first-byte latencies.
	RoundTrip func() (time.Duration, bool)
	FailFast  bool
	// WholeSource says the source is read as one whole (a backup being
	// restored): an error resolving or walking it fails the run, not one
	// target repository, and targets that all fail during the transfer
	// are reported each, not as ErrNothingDone.
	WholeSource bool

	Source source.Source
	// Sink receives the content; nil resolves and walks only (--dry-run).
	Sink sink.Sink
	// SpoolDir holds blobs downloaded ahead of an in-order sink and copies
	// of streamed blobs that a sink reads twice; "" is the system
	// temporary directory.
	SpoolDir string

	Observe  Observer  // may be nil
	Progress *Progress // may be nil
}

// MetadataRequests is how many small requests (tag lists, manifests,
// referrers, existence checks) may be under way at once for a given
// --concurrency, which counts blob transfers. A walk is bound by round
// trips, not bandwidth: more of them in flight hide the latency.
func MetadataRequests(concurrency int) int64 { return int64(max(concurrency, 1) * 4) }

// ErrNothingDone is returned when every repository failed.
var ErrNothingDone = errors.New("no repository could be read")

// Run resolves and walks every selection of the job, then (unless Sink is
// nil) transfers each unique node once and commits. The graph's
// repositories are the selections' targets, so a node shared by several
// is read from the source once and written to the sink once (a registry
// sink: once per target registry). The graph is returned for reporting (a
// dry run prints it). A target repository that fails is recorded in the
// result and left out, unless FailFast: while it is resolved and walked
// (unless WholeSource), or, if the sink can still leave it out
// (sink.Dropper), when the source cannot deliver a node it needs. The
// error is for failures of the whole run (the sink, fail-fast, a stream
// that cannot leave a repository out: ErrCannotDrop, cancellation,
// nothing to do).
func Run(ctx context.Context, job Job) (*Result, *graph.Graph, error) {
	start := time.Now()
	r := &run{job: job, observe: job.Observe, progress: job.Progress, name: sourceName(job.Source)}
	if r.observe == nil {
		r.observe = func(Event) {}
	}
	if r.progress == nil {
		r.progress = &Progress{}
	}
	conc := max(job.Concurrency, 1)
	r.graph = graph.New(job.Registry)
	requests := semaphore.NewWeighted(MetadataRequests(conc))
	r.walkers[1] = &source.Walker{Src: job.Source, Graph: r.graph, IncludeReferrers: true, Requests: requests}
	r.walkers[0] = &source.Walker{Src: job.Source, Graph: r.graph, Requests: requests}
	r.walker = r.walkers[1]
	if r.early = newEarlyCopies(ctx, r, conc); r.early != nil {
		// The early copies take the run's transfer slots: they start
		// before the walk.
		stop := r.startSlots(ctx, conc)
		defer stop()
		defer r.early.stop()
		for _, w := range r.walkers {
			w.OnBlob = func(_ string, desc ocispec.Descriptor) { r.early.onBlob(desc) }
		}
	}
	if a, ok := job.Sink.(sink.Asker); ok {
		// The target is asked what Prepare needs to know while the source
		// is walked, not after: over a far link those round trips were
		// in front of the first byte moved (a copy).
		var repos []string
		seen := map[string]bool{}
		for _, s := range job.Selections {
			if !seen[s.Target] {
				seen[s.Target] = true
				repos = append(repos, s.Target)
			}
		}
		a.AskRepos(ctx, repos)
		for _, w := range r.walkers {
			early := w.OnBlob
			w.OnBlob = func(repo string, desc ocispec.Descriptor) {
				if early != nil {
					early(repo, desc)
				}
				a.AskBlob(ctx, repo, desc)
			}
		}
	}

	fail := func(res *Result, err error) (*Result, *graph.Graph, error) {
		res.Duration = time.Since(start)
		if job.Sink != nil {
			_ = job.Sink.Abort()
		}
		return res, r.graph, err
	}
	res, err := r.resolveAll(ctx)
	if err != nil {
		return fail(res, err)
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
				return fail(res, nodeError(n, err))
			}
		}
	}
	if job.Sink == nil && r.graph.HasOptional() {
		// A dry run moves nothing that would tell whether a stream holds
		// its optional layers: read it to its end, keeping nothing, and
		// ask again.
		if err := r.settleOptional(ctx, job.Source); err != nil {
			return fail(res, err)
		}
	}
	if err := r.walked(res); err != nil {
		return fail(res, err)
	}
	if job.Sink == nil {
		res.Duration = time.Since(start)
		return res, r.graph, nil
	}
	err = r.transfer(ctx, res, conc)
	if r.lost != nil && r.lost.record(res, r.sinkFailures()) > 0 && err == nil {
		err = r.dropLost(ctx, res)
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
	// A registry sink fails a target by itself (a refused push): those
	// are its targets' errors.
	index := map[string]int{}
	for i, rr := range res.Repos {
		index[rr.Repo] = i
	}
	for repo, ferr := range r.sinkFailures() {
		if i, ok := index[repo]; ok && res.Repos[i].Err == nil {
			res.Repos[i].Err = ferr
			r.observe(Event{Kind: RepoFailed, Repo: repo, Err: ferr})
		}
	}
	res.Duration = time.Since(start)
	return res, r.graph, err
}

// sinkFailures are the target repositories the sink failed by itself.
func (r *run) sinkFailures() map[string]error {
	if f, ok := r.job.Sink.(interface{ Failures() map[string]error }); ok {
		return f.Failures()
	}
	return nil
}

// dropLost leaves the repositories that failed during the transfer out of
// the graph and the sink, so that the others are committed as a run of
// them alone would be.
func (r *run) dropLost(ctx context.Context, res *Result) error {
	ok := 0
	var first error
	for _, rr := range res.Repos {
		switch {
		case rr.Err == nil:
			ok++
		case first == nil:
			first = rr.Err
			fallthrough
		default:
			r.graph.RemoveRepo(rr.Repo)
		}
	}
	if ok == 0 && !r.job.WholeSource {
		return fmt.Errorf("%w: %w", ErrNothingDone, first)
	}
	d, can := r.job.Sink.(sink.Dropper)
	if !can {
		return ErrCannotDrop
	}
	if err := d.Drop(ctx, r.graph); err != nil {
		return err
	}
	res.UniqueNodes = r.graph.Len()
	res.UniqueBytes = r.graph.Size()
	return nil
}

type run struct {
	job   Job
	graph *graph.Graph
	// walkers: with referrers ([1]) and without ([0]); walker is one of
	// them, for their shared request slots.
	walkers  [2]*source.Walker
	walker   *source.Walker
	name     func(string) string // a selection's source as the source names it
	observe  Observer
	progress *Progress
	// streaming: the source reads each blob once (see teeOpener), and
	// spoolDir keeps the copies.
	streaming bool
	spoolDir  string
	// noRanges: a range request was answered with the whole blob; fetch
	// whole blobs from now on.
	noRanges atomic.Bool
	// lost: repositories that failed during the transfer.
	lost *lostRepos
	// leftOut: an optional node was left out during the transfer
	// (graph.LeaveOut): the counts of the walk are redone.
	leftOut atomic.Bool
	// earlyLargest is the largest blob's transfer into a sink.Early,
	// started before Prepare (startEarly); nil if none.
	earlyLargest *earlyWrite
	// slots hold the blob transfers in flight (adapt.go); firstBytes, when
	// they adapt, the first transfers' latencies.
	slots      *limiter
	firstBytes *latencies
	// early: large blobs started while the walk goes on (early.go); nil
	// when the source and sink do not allow it.
	early *earlyCopies
}

func (r *run) walkerFor(referrers bool) *source.Walker {
	if referrers {
		return r.walkers[1]
	}
	return r.walkers[0]
}

// resolveAll resolves and walks every selection at once; the shared
// request semaphore bounds the work across selections and tags. The
// result has one repository per target, in the order the selections
// first name them.
func (r *run) resolveAll(ctx context.Context) (*Result, error) {
	sels := r.job.Selections
	res := &Result{Registry: r.job.Registry}
	index := map[string]int{}
	count := map[string]int{} // target → its selections
	for _, s := range sels {
		if _, ok := index[s.Target]; !ok {
			index[s.Target] = len(res.Repos)
			res.Repos = append(res.Repos, RepoResult{Repo: s.Target})
		}
		count[s.Target]++
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Selections and (in resolveSelection) tags are worked on a bounded
	// number at a time: the requests are bounded anyway (walker.Acquire),
	// and a goroutine per repository and tag created up front was most of
	// the memory of planning 10,000 tags.
	limit := int(MetadataRequests(r.job.Concurrency))
	slots := make(chan struct{}, limit)
	outs := make([][]TagResult, len(sels))
	errs := make([]error, len(sels))
	var started sync.Map
	var wg sync.WaitGroup
	for i, sel := range sels {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if _, again := started.LoadOrStore(sel.Target, true); !again {
				r.observe(Event{Kind: RepoStarted, Repo: sel.Target})
			}
			tags, err := r.resolveSelection(ctx, sel, limit)
			outs[i] = tags
			if err != nil {
				if ctx.Err() != nil && context.Cause(ctx) != nil && !errors.Is(context.Cause(ctx), err) {
					// Cancelled because another repository failed first:
					// its cause, marked so that the repository is told
					// apart from the one that failed.
					err = &StoppedError{Cause: context.Cause(ctx)}
				}
				errs[i] = err
				if r.job.FailFast || r.job.WholeSource {
					cancel(err)
				}
			}
		}()
	}
	wg.Wait()
	for i, sel := range sels {
		rr := &res.Repos[index[sel.Target]]
		rr.Tags = append(rr.Tags, outs[i]...)
		if errs[i] != nil && rr.Err == nil && !r.job.WholeSource {
			rr.Err = errs[i]
		}
	}
	for i := range res.Repos {
		if rr := &res.Repos[i]; count[rr.Repo] > 1 {
			// several sources into one target: its tags by name
			sort.SliceStable(rr.Tags, func(a, b int) bool { return rr.Tags[a].Name < rr.Tags[b].Name })
		}
	}
	if err := ctx.Err(); err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return res, cause
		}
		return res, err
	}
	return res, nil
}

// walked leaves the repositories that failed out of the graph and counts
// what the others hold; ErrNothingDone when none is left.
func (r *run) walked(res *Result) error {
	ok := 0
	for i := range res.Repos {
		rr := &res.Repos[i]
		if rr.Err != nil {
			r.graph.RemoveRepo(rr.Repo)
			r.observe(Event{Kind: RepoFailed, Repo: rr.Repo, Err: rr.Err})
			continue
		}
		ok++
	}
	// Counts after failed repositories are gone, so shared content is
	// reported once for the repositories that have it.
	for i := range res.Repos {
		rr := &res.Repos[i]
		if rr.Err != nil {
			continue
		}
		r.summarize(rr)
		r.observe(Event{Kind: RepoWalked, Repo: rr.Repo, Tags: rr.Tags, Count: rr.Artifacts, Bytes: rr.Bytes})
	}
	res.UniqueNodes = r.graph.Len()
	res.UniqueBytes = r.graph.Size()
	if ok == 0 {
		return ErrNothingDone
	}
	return nil
}

// resolveSelection resolves the tags of one selection (listing them when
// it names none) and walks what each reaches.
func (r *run) resolveSelection(ctx context.Context, sel Selection, limit int) ([]TagResult, error) {
	w := r.walkerFor(sel.Referrers)
	from := r.name(sel.Source)
	tags := sel.Tags
	if tags == nil {
		release, err := w.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		all, err := r.job.Source.Tags(ctx, from)
		release()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, t := range all {
			// not a tag a user made: an index of the referrers tag schema
			if !plan.IsReferrerTag(t) {
				names = append(names, t)
			}
		}
		if len(names) == 0 {
			return nil, &NoTagsError{Repository: r.job.Registry + "/" + sel.Source}
		}
		sort.Strings(names)
		for _, t := range names {
			tags = append(tags, plan.TagMapping{From: t, To: t})
		}
	}
	out := make([]TagResult, len(tags))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for i, tm := range tags {
		g.Go(func() error {
			release, err := w.Acquire(gctx)
			if err != nil {
				return err
			}
			desc, body, err := r.job.Source.Resolve(gctx, from, tm.From)
			release()
			if err != nil {
				return err
			}
			desc = graph.Plain(desc)
			out[i] = TagResult{Name: tm.To, Desc: desc}
			r.graph.AddTag(graph.Tag{Repo: sel.Target, Name: tm.To, Desc: desc})
			r.observe(Event{Kind: TagResolved, Repo: sel.Target, Tag: tm.To, Desc: desc})
			return w.WalkFrom(gctx, sel.Target, from, desc, body)
		})
	}
	if err := g.Wait(); err != nil {
		return out, err
	}
	return out, nil
}

// summarize counts, for each tag of a repository, the artifacts, bytes and
// referrers reached from it, and for the repository the union of them.
func (r *run) summarize(rr *RepoResult) {
	refs := map[digest.Digest][]digest.Digest{} // subject → referrers in this repo
	for _, ref := range r.graph.Referrers() {
		if slices.Contains(ref.Repos, rr.Repo) {
			refs[ref.Subject] = append(refs[ref.Subject], ref.Desc.Digest)
		}
	}
	isRef := map[digest.Digest]bool{}
	for _, list := range refs {
		for _, d := range list {
			isRef[d] = true
		}
	}
	repoSeen := map[digest.Digest]bool{}
	repoAbsent := map[digest.Digest]bool{}
	for i := range rr.Tags {
		t := &rr.Tags[i]
		seen := map[digest.Digest]bool{}
		absent := map[digest.Digest]bool{}
		var visit func(d digest.Digest)
		visit = func(d digest.Digest) {
			if seen[d] {
				return
			}
			seen[d] = true
			n := r.graph.Node(d)
			if n == nil {
				return
			}
			t.Artifacts++
			t.Bytes += n.Desc.Size
			if isRef[d] {
				t.Referrers++
			}
			if !repoSeen[d] {
				repoSeen[d] = true
				rr.Artifacts++
				rr.Bytes += n.Desc.Size
			}
			for _, c := range n.Children {
				visit(c)
			}
			for _, a := range r.graph.AbsentOf(d) {
				if !absent[a] {
					absent[a] = true
					t.NonDistributable++
				}
				if !repoAbsent[a] {
					repoAbsent[a] = true
					rr.NonDistributable++
				}
			}
			for _, ref := range refs[d] {
				visit(ref)
			}
		}
		visit(t.Desc.Digest)
	}
}

// transfer moves every node the sink needs, each once, in the order the
// sink asks for.
func (r *run) transfer(ctx context.Context, res *Result, conc int) error {
	if s, ok := r.job.Source.(Streaming); ok && s.Streaming() {
		r.streaming = true
		var err error
		r.spoolDir, err = os.MkdirTemp(r.job.SpoolDir, "regvault-tee-")
		if err != nil {
			return fmt.Errorf("creating spool directory: %w", err)
		}
		defer os.RemoveAll(r.spoolDir)
	}
	r.earlyLargest = r.startEarly(ctx)
	defer r.earlyLargest.stop()
	need, ord, err := r.job.Sink.Prepare(ctx, r.graph)
	if err != nil {
		return err
	}
	if e := r.earlyLargest; e != nil && !slices.Contains(need, e.n) {
		need = append(need, e.n) // under way: needed whatever Prepare found
	}
	if ord == sink.AnyOrder {
		r.early.keep(need)
	} else {
		r.early.keep(nil)
	}
	var total int64
	for _, n := range need {
		total += n.Desc.Size
	}
	r.lost = newLostRepos(r.job.Sink, r.job.FailFast, r.observe)
	res.Skipped = r.graph.Len() - len(need)
	r.progress.Total.Store(total)
	r.observe(Event{Kind: TransferStarted, Count: len(need), Bytes: total})

	if r.slots == nil {
		stop := r.startSlots(ctx, conc)
		defer stop()
	}
	track := newRepoTracker(res, need, r.observe)
	done := func(n *graph.Node) {
		r.observe(Event{Kind: NodeDone, Desc: n.Desc, Bytes: n.Desc.Size})
		track.done(n)
	}
	switch ord {
	case sink.InOrder:
		err = r.transferInOrder(ctx, need, conc, done)
	case sink.ChildrenFirst:
		err = r.transferChildrenFirst(ctx, need, conc, done)
	default:
		err = r.transferAny(ctx, need, conc, done)
	}
	res.Moved = r.progress.Done.Load()
	return err
}

func (r *run) transferAny(ctx context.Context, need []*graph.Node, conc int, done func(*graph.Node)) error {
	// Largest first: the longest transfer starts at once and the small
	// ones fill the other slots around it.
	need = slices.Clone(need)
	sort.SliceStable(need, func(i, j int) bool { return need[i].Desc.Size > need[j].Desc.Size })
	var total int64
	for _, n := range need {
		total += n.Desc.Size
	}
	share := total / int64(max(conc, 1))
	r.early.setShare(share)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eg, gctx := errgroup.WithContext(ctx)
	g := slotGroup{ctx: gctx, g: eg, l: r.slots}
	// The first failure is the run's: the cancels it causes in the
	// other pool are not.
	var firstOnce sync.Once
	var first error
	oneWith := func(n *graph.Node, move func(context.Context, *graph.Node) error) error {
		if r.lost.skip(n) {
			return nil
		}
		if err := move(gctx, n); err != nil {
			if err := r.lost.fail(err); err != nil {
				if gctx.Err() == nil { // not a cancel caused by another failure
					firstOnce.Do(func() { first = err })
				}
				cancel()
				return err
			}
			return nil // lost: its repositories are left out
		}
		done(n)
		return nil
	}
	one := func(n *graph.Node) error { return oneWith(n, r.copyNode) }
	whole := func(ctx context.Context, n *graph.Node) error {
		if r.parts(n, conc, share) > 1 {
			return r.copyLarge(ctx, n, conc, share)
		}
		return r.copyNode(ctx, n)
	}
	// The blobs started during the walk first: each holds a slot of its
	// own already, and is adopted into the sink where Prepare placed it.
	var rest []*graph.Node
	var earliest int64 // the largest blob started during the walk
	for _, n := range need {
		c := r.early.take(n)
		if c == nil {
			rest = append(rest, n)
			continue
		}
		earliest = max(earliest, n.Desc.Size)
		eg.Go(func() error {
			if r.lost.skip(n) {
				// its repositories failed already: nothing to adopt
				r.early.discard(c)
				return nil
			}
			return oneWith(n, func(ctx context.Context, n *graph.Node) error {
				err := c.adopt(ctx, r.job.Sink.(sink.PartWriter))
				if errors.Is(err, errRetrySources) {
					r.progress.Done.Add(-c.counted)
					return whole(ctx, n)
				}
				return err
			})
		})
	}
	need = rest
	// Small nodes (configs, small layers) cost a round trip each, not
	// bandwidth: they go at once on the pool of small requests, beside
	// the large ones, rather than conc at a time after the last large one
	// has started (the run's tail on a long round trip).
	var small errgroup.Group
	small.SetLimit(int(MetadataRequests(conc)))
	launched := make(chan struct{})
	go func() {
		defer close(launched)
		for _, n := range need {
			if n.Desc.Size >= smallNode || n.Content != nil {
				continue
			}
			if gctx.Err() != nil {
				return
			}
			small.Go(func() error { return one(n) })
		}
	}()
	for i, n := range need {
		if n.Desc.Size < smallNode && n.Content == nil {
			continue
		}
		if i == 0 && earliest > 0 && n.Desc.Size > 2*earliest {
			// The run's largest blob, found once the slots were taken by
			// blobs started during the walk, and much larger than any of
			// them: it starts now, not after them (it is the run's
			// longest transfer by far), one beyond the slots.
			eg.Go(func() error { return oneWith(n, whole) })
			continue
		}
		g.Go(func() error { return oneWith(n, whole) })
	}
	<-launched
	// The small ones first: g.Wait cancels gctx, which they use.
	serr := small.Wait()
	err := eg.Wait()
	if err == nil {
		err = serr
	}
	if first != nil {
		return first
	}
	return err
}

// smallNode is the size below which a node's transfer costs about a round
// trip (1 MiB at 25 MB/s is 40 ms): such nodes are latency-bound.
const smallNode = 1 << 20

// transferChildrenFirst writes a manifest only after everything it
// references. Two pools work at once: large blobs, largest first, on conc
// slots; manifests and small blobs (configs, small layers: latency-bound)
// on the 4× pool of small requests, so that a manifest goes as soon as its
// own children are there rather than after every large upload has
// started. Each pool starts its nodes in dependency order, so a node
// waiting for its children never holds a slot that a child needs.
func (r *run) transferChildrenFirst(ctx context.Context, need []*graph.Node, conc int, done func(*graph.Node)) error {
	// A referrer comes after its subject too: a referrer whose subject
	// could not be pushed (its blob was damaged, say) would dangle, and on
	// a registry without the Referrers API it would set a tag-schema tag.
	subjects := map[digest.Digest]digest.Digest{}
	for _, ref := range r.graph.Referrers() {
		subjects[ref.Desc.Digest] = ref.Subject
	}
	deps := func(n *graph.Node) []digest.Digest {
		if s, ok := subjects[n.Desc.Digest]; ok {
			return append(slices.Clone(n.Children), s)
		}
		return n.Children
	}
	order, depth := dependencyOrder(need, deps)
	finished := make(map[digest.Digest]chan struct{}, len(order))
	for _, n := range order {
		finished[n.Desc.Digest] = make(chan struct{})
	}

	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var failOnce sync.Once
	var first error
	fail := func(err error) error {
		failOnce.Do(func() { first = err; cancel() })
		return err
	}
	task := func(n *graph.Node, started func()) func() error {
		return func() error {
			if started != nil {
				defer started() // however it ends
			}
			for _, c := range deps(n) {
				// only what comes before it in the order: a cycle
				// (impossible with content addressing) cannot deadlock
				if ch, ok := finished[c]; ok && depth[c] < depth[n.Desc.Digest] {
					select {
					case <-ch:
					case <-tctx.Done():
						return tctx.Err()
					}
				}
			}
			if r.lost.skip(n) {
				// Every target that needs it failed (a child the source
				// could not deliver): release what waits for it, which
				// finds its targets failed too.
				close(finished[n.Desc.Digest])
				return nil
			}
			if err := r.copyNodeStarting(tctx, n, started); err != nil {
				if err := r.lost.fail(err); err != nil {
					return fail(err)
				}
				// Lost: its targets fail and are left out (sink.Dropper);
				// the waiters go on, and skip it.
				close(finished[n.Desc.Digest])
				return nil
			}
			close(finished[n.Desc.Digest])
			done(n)
			return nil
		}
	}
	// Optional layers (graph.AddOptional: a stream may or may not hold
	// them) are asked for only once every other blob is read: waiting for
	// one earlier would make the stream read on past the members the
	// others need, spooling them, to find a layer that may not be there.
	// They take no pool slot, so the manifests that wait for them (in
	// the small pool) cannot starve them.
	isOptional := map[digest.Digest]bool{} // fixed here: the transfer settles them as it goes
	optional := func(n *graph.Node) bool { return isOptional[n.Desc.Digest] }
	var others []chan struct{}
	var deferred []*graph.Node
	for _, n := range order {
		switch {
		case n.Content == nil && r.graph.Optional(n.Desc.Digest):
			isOptional[n.Desc.Digest] = true
			deferred = append(deferred, n)
		case n.Content == nil:
			others = append(others, finished[n.Desc.Digest])
		}
	}
	var late errgroup.Group
	if len(deferred) > 0 {
		late.Go(func() error {
			for _, ch := range others {
				select {
				case <-ch:
				case <-tctx.Done():
					return tctx.Err()
				}
			}
			var each errgroup.Group
			for _, n := range deferred {
				each.Go(task(n, nil))
			}
			return each.Wait()
		})
	}
	isLarge := func(n *graph.Node) bool {
		return n.Kind != graph.KindManifest && n.Desc.Size >= smallNode && !optional(n)
	}
	// The largest blob goes first, alone: its upload is the run's
	// longest, everything else fits beside it, and its first requests
	// (HEAD, POST) must not queue behind dozens of small ones at the
	// registry. The others start once its bytes flow (or it is done
	// without them). Not from a stream: it hands out its members in its
	// own order, and waiting for one far into it would only spool the
	// members before it.
	var largest *graph.Node
	for _, n := range order {
		if !r.streaming && isLarge(n) && (largest == nil || n.Desc.Size > largest.Desc.Size) {
			largest = n
		}
	}
	if r.earlyLargest != nil && slices.Contains(order, r.earlyLargest.n) {
		largest = r.earlyLargest.n // under way since before Prepare: its task waits for it
	}
	going := make(chan struct{})
	var goingOnce sync.Once
	started := func() { goingOnce.Do(func() { close(going) }) }
	if largest == nil {
		started()
	}
	var largeG, small errgroup.Group
	large := slotGroup{ctx: tctx, g: &largeG, l: r.slots}
	small.SetLimit(int(MetadataRequests(conc)))
	if largest != nil {
		large.Go(task(largest, started))
	}
	var launchers sync.WaitGroup
	for _, pool := range []struct {
		g     group
		takes func(*graph.Node) bool
	}{
		{large, func(n *graph.Node) bool { return isLarge(n) && n != largest }},
		{&small, func(n *graph.Node) bool {
			return (n.Kind == graph.KindManifest || n.Desc.Size < smallNode) && !optional(n)
		}},
	} {
		launchers.Add(1)
		go func() {
			defer launchers.Done()
			select {
			case <-going:
			case <-tctx.Done():
				return
			}
			for _, n := range order {
				if tctx.Err() != nil {
					return
				}
				if pool.takes(n) {
					pool.g.Go(task(n, nil))
				}
			}
		}()
	}
	launchers.Wait()
	_ = largeG.Wait()
	_ = small.Wait()
	_ = late.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// dependencyOrder sorts nodes so that each comes after what deps says it
// needs (its children, a referrer's subject): by depth (blobs 0, a
// manifest one more than its deepest dependency), stable. It returns the
// depths too.
func dependencyOrder(nodes []*graph.Node, deps func(*graph.Node) []digest.Digest) ([]*graph.Node, map[digest.Digest]int) {
	byDigest := make(map[digest.Digest]*graph.Node, len(nodes))
	for _, n := range nodes {
		byDigest[n.Desc.Digest] = n
	}
	depth := map[digest.Digest]int{}
	var visit func(n *graph.Node, stack map[digest.Digest]bool) int
	visit = func(n *graph.Node, stack map[digest.Digest]bool) int {
		if d, ok := depth[n.Desc.Digest]; ok {
			return d
		}
		if stack[n.Desc.Digest] {
			return 0 // a cycle cannot be ordered; content addressing makes it impossible anyway
		}
		stack[n.Desc.Digest] = true
		d := 0
		for _, c := range deps(n) {
			if cn, ok := byDigest[c]; ok {
				d = max(d, visit(cn, stack)+1)
			}
		}
		delete(stack, n.Desc.Digest)
		depth[n.Desc.Digest] = d
		return d
	}
	out := slices.Clone(nodes)
	for _, n := range out {
		visit(n, map[digest.Digest]bool{})
	}
	// By depth, and within a depth largest first, so the longest upload
	// starts at once.
	sort.SliceStable(out, func(i, j int) bool {
		di, dj := depth[out[i].Desc.Digest], depth[out[j].Desc.Digest]
		if di != dj {
			return di < dj
		}
		return out[i].Desc.Size > out[j].Desc.Size
	})
	return out, depth
}

// repoTracker reports a repository done once every node it needs is.
type repoTracker struct {
	mu      sync.Mutex
	pending map[string]int
	repos   map[string]RepoResult
	observe Observer
}

func newRepoTracker(res *Result, need []*graph.Node, observe Observer) *repoTracker {
	t := &repoTracker{pending: map[string]int{}, repos: map[string]RepoResult{}, observe: observe}
	for _, n := range need {
		for _, repo := range n.Repos {
			t.pending[repo]++
		}
	}
	for _, rr := range res.Repos {
		if rr.Err != nil {
			continue
		}
		t.repos[rr.Repo] = rr
		if t.pending[rr.Repo] == 0 {
			t.report(rr.Repo)
		}
	}
	return t
}

func (t *repoTracker) done(n *graph.Node) {
	t.mu.Lock()
	var finished []string
	for _, repo := range n.Repos {
		t.pending[repo]--
		if t.pending[repo] == 0 {
			finished = append(finished, repo)
		}
	}
	t.mu.Unlock()
	for _, repo := range finished {
		t.report(repo)
	}
}

func (t *repoTracker) report(repo string) {
	rr := t.repos[repo]
	t.observe(Event{Kind: RepoDone, Repo: repo, Tags: rr.Tags, Count: rr.Artifacts, Bytes: rr.Bytes})
}
