package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// earlySpool bounds the bytes of all early copies that wait in spool
// files for Prepare: once it is reached, an early copy waits for its slot
// (its connection stalls) rather than spooling more. A walk over a long
// round trip spools a few MB per stream; a fast link could otherwise
// spool much of a run twice.
const earlySpool = 128 << 20

// earlyCopies start the large blobs a walk finds on their way at once,
// on the run's transfer slots, rather than after the whole graph is
// walked and the sink prepared: over a long round trip the walk is
// several round trips (tags, manifest, referrers, the referrers'
// manifests and their referrers), and no byte moved during them.
//
// Only into a sink that takes parts (a plain tar file): where a blob goes
// in it is known only once Prepare has laid out the whole file, so an
// early copy writes its parts into a spool file until the transfer
// adopts it; then what is spooled is copied into the blob's slot and the
// rest of its parts go there directly (spoolParts). The copy is verified
// as any other (copyParts: hashed in order as the bytes arrive). A copy
// whose blob the sink turns out not to need (its repositories failed
// during the walk) is cancelled and its spool file removed; stop ends
// every copy and removes the spool directory, however the run ends.
type earlyCopies struct {
	r      *run
	ctx    context.Context
	cancel context.CancelFunc
	conc   int
	budget atomic.Int64 // spool bytes left (earlySpool)
	// share: a connection's fair share of the run's bytes, as the
	// transfer reckons it (see parts); 0 until the sink is prepared.
	share atomic.Int64

	mu      sync.Mutex
	dir     string // created with the first copy
	copies  map[digest.Digest]*earlyCopy
	found   map[digest.Digest]bool
	pending []ocispec.Descriptor // large blobs found, not started
	closed  bool                 // no copy starts any more
	wg      sync.WaitGroup
}

// earlyCopy is one blob on its way before Prepare.
type earlyCopy struct {
	n       *graph.Node
	parts   *spoolParts
	cancel  context.CancelFunc
	done    chan struct{} // closed when the copy has ended
	err     error
	counted int64    // bytes added to the run's progress
	repos   []string // the source repositories it reads from
	adopted atomic.Bool
	opened  atomic.Bool // a source repository answered with the blob
}

// newEarlyCopies returns the early copies of a run, or nil when its
// source and sink do not allow them: a dry run, a stream read once, a
// sink that takes no parts, a source that serves no byte ranges.
func newEarlyCopies(ctx context.Context, r *run, conc int) *earlyCopies {
	if r.job.Sink == nil {
		return nil
	}
	if s, ok := r.job.Source.(Streaming); ok && s.Streaming() {
		return nil
	}
	if _, ok := r.job.Source.(source.RangeFetcher); !ok {
		return nil
	}
	if pw, ok := r.job.Sink.(sink.PartWriter); !ok || !pw.AcceptsParts() {
		return nil
	}
	e := &earlyCopies{r: r, conc: conc, copies: map[digest.Digest]*earlyCopy{}, found: map[digest.Digest]bool{}}
	e.ctx, e.cancel = context.WithCancel(ctx)
	e.budget.Store(earlySpool)
	return e
}

// onBlob notes a blob the walk just found and, if it is large, starts
// its copy when a transfer slot is free (see fill).
func (e *earlyCopies) onBlob(desc ocispec.Descriptor) {
	if e == nil || desc.Size < smallNode {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.found[desc.Digest] {
		return
	}
	e.found[desc.Digest] = true
	e.pending = append(e.pending, desc)
	e.fill()
}

// fill starts the largest blobs found and not started yet while a
// transfer slot is free: it never waits for one (the walk goes on, and
// the transfer fetches a blob not started early as it would have). It is
// called as blobs are found and as early copies end; e.mu is held.
func (e *earlyCopies) fill() {
	for len(e.pending) > 0 && !e.closed && e.ctx.Err() == nil {
		if e.dir == "" {
			dir, err := os.MkdirTemp(e.r.job.SpoolDir, "regvault-early-")
			if err != nil {
				// No spool: the transfer fetches the blobs as it would have.
				e.closed = true
				return
			}
			e.dir = dir
		}
		largest := 0
		for i, d := range e.pending {
			if d.Size > e.pending[largest].Size {
				largest = i
			}
		}
		desc := e.pending[largest]
		n := e.r.graph.Node(desc.Digest)
		repos := e.r.graph.SourcesOf(desc.Digest)
		if n == nil || n.Content != nil || len(repos) == 0 || e.r.graph.Optional(desc.Digest) {
			e.pending = slices.Delete(e.pending, largest, largest+1)
			continue
		}
		if !e.r.slots.tryAcquire() {
			return
		}
		e.pending = slices.Delete(e.pending, largest, largest+1)
		e.start(n, repos)
	}
}

// start runs the copy of n, from repos, on the slot just taken.
func (e *earlyCopies) start(n *graph.Node, repos []string) {
	ctx, cancel := context.WithCancel(e.ctx)
	c := &earlyCopy{n: n, repos: repos, cancel: cancel, done: make(chan struct{}),
		parts: &spoolParts{budget: &e.budget, handed: make(chan struct{})}}
	e.copies[n.Desc.Digest] = c
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer func() {
			// its slot to the next blob found
			e.mu.Lock()
			e.fill()
			e.mu.Unlock()
		}()
		defer close(c.done)
		defer e.r.slots.release()
		f, err := os.CreateTemp(e.dir, "blob-")
		if err != nil {
			c.err = nodeError(n, fmt.Errorf("creating a spool file: %w", err))
			return
		}
		c.parts.mu.Lock()
		c.parts.f = f
		c.parts.mu.Unlock()
		// The copy's own node: the walk still adds to the graph's (its
		// repositories, its kind), which adopt takes once it is done.
		own := &graph.Node{Desc: n.Desc, Repos: repos}
		// Hashed inline, as the transfer hashes a blob it fetches whole:
		// many early copies at once would each hold hashing buffers.
		c.counted, c.err = e.r.copyParts(ctx, &largeCopy{r: e.r, pw: c.parts, n: own, conc: e.conc, repos: repos,
			inlineHash: true, shareOf: e.shareOf, opened: func(took time.Duration) {
				c.opened.Store(true)
				// The first transfers' latencies set the level of the
				// slots (adapt.go): the early ones are the first. From
				// the request on: during the walk a request waits for
				// its slot among the walk's, which says nothing of the
				// link.
				if e.r.firstBytes != nil {
					e.r.firstBytes.add(time.Now().Add(-took), took)
				}
			}})
	}()
}

// shareOf is the share the copies split by (see largeCopy.shareOf): known
// once the transfer has set it. Until then no copy splits: whether a blob
// is larger than its share depends on every blob of the run.
func (e *earlyCopies) shareOf() (int64, bool) {
	s := e.share.Load()
	return s, s > 0
}

// setShare gives the copies the transfer's share (at least 1).
func (e *earlyCopies) setShare(share int64) {
	if e != nil {
		e.share.Store(max(share, 1))
	}
}

// take returns the early copy of n for the transfer to adopt, or nil.
func (e *earlyCopies) take(n *graph.Node) *earlyCopy {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.copies[n.Desc.Digest]
	if c == nil || c.n != n || !c.adopted.CompareAndSwap(false, true) {
		return nil
	}
	return c
}

// keep cancels, and waits for, the copies of blobs that need (what the
// sink asked for) does not hold, so that their slots and links go to the
// transfer; their bytes leave the progress.
func (e *earlyCopies) keep(need []*graph.Node) {
	if e == nil {
		return
	}
	want := make(map[*graph.Node]bool, len(need))
	for _, n := range need {
		want[n] = true
	}
	e.mu.Lock()
	// The transfer takes over: the blobs not started are its own.
	e.closed, e.pending = true, nil
	var drop []*earlyCopy
	for d, c := range e.copies {
		if !want[c.n] {
			drop = append(drop, c)
			delete(e.copies, d)
		}
	}
	e.mu.Unlock()
	for _, c := range drop {
		e.discard(c)
	}
}

// discard ends a copy that is not adopted and removes what it spooled.
func (e *earlyCopies) discard(c *earlyCopy) {
	c.cancel()
	<-c.done
	c.parts.remove()
	e.r.progress.Done.Add(-c.counted)
}

// stop ends every copy, removes the spool directory and waits for every
// goroutine started: no copy starts after it. The copies adopted are over
// by then (the transfer waits for them).
func (e *earlyCopies) stop() {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.closed = true
	copies := e.copies
	e.copies = nil
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	for _, c := range copies {
		if !c.adopted.Load() {
			e.r.progress.Done.Add(-c.counted)
		}
		c.parts.remove()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// adopt finishes the early copy c of a blob into the sink pw: what is
// spooled goes into its place, the rest of the copy goes there directly,
// and the blob counts as written once the copy is verified. A copy that
// failed fails as the transfer of the blob would have (the same error:
// a source's fault is the source's).
func (c *earlyCopy) adopt(ctx context.Context, pw sink.PartWriter) error {
	defer c.parts.remove()
	stop := func(err error) error {
		c.cancel()
		<-c.done
		return err
	}
	if err := c.parts.handOver(ctx, c.n, pw); err != nil {
		return stop(nodeError(c.n, err))
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return stop(ctx.Err())
	}
	if c.err != nil {
		if !c.opened.Load() && ctx.Err() == nil && len(c.n.Sources()) > len(c.repos) {
			// None of the repositories it tried had it, and the walk
			// found it in more since: the transfer tries each, as it
			// would have.
			return errRetrySources
		}
		var te *TransferError
		if errors.As(c.err, &te) {
			// Its repositories and kind as the walk ended: every
			// repository that needs the blob fails with it.
			te.Kind, te.Repos = c.n.Kind, slices.Clone(c.n.Repos)
		}
		return c.err
	}
	if err := pw.FinishParts(ctx, c.n, c.parts.got); err != nil {
		return nodeError(c.n, err)
	}
	return nil
}

// errRetrySources: an early copy failed, and the blob has more source
// repositories now than the copy tried; the transfer fetches it again.
var errRetrySources = errors.New("early copy failed; more sources to try")

// spoolParts is the sink.PartWriter of an early copy: parts go into a
// spool file, at their offsets in the blob, until handOver gives it the
// sink's; from then on parts go to the sink.
type spoolParts struct {
	f      *os.File
	budget *atomic.Int64
	handed chan struct{} // closed by handOver

	mu      sync.Mutex
	to      sink.PartWriter // the sink, once handed over
	spooled []span          // parts in f that the sink does not have yet
	got     digest.Digest   // set by FinishParts
	removed bool
}

type span struct{ off, length int64 }

func (s *spoolParts) AcceptsParts() bool { return true }

func (s *spoolParts) WritePart(ctx context.Context, n *graph.Node, off, length int64, r io.Reader) error {
	s.mu.Lock()
	to := s.to
	s.mu.Unlock()
	if to == nil && s.budget.Add(-length) < 0 {
		// The spool is full: wait for the sink rather than spool more.
		s.budget.Add(length)
		select {
		case <-s.handed:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
		to = s.to
		s.mu.Unlock()
	}
	if to != nil {
		return to.WritePart(ctx, n, off, length, r)
	}
	if err := sink.CopyExact(io.NewOffsetWriter(s.f, off), r, length); err != nil {
		return fmt.Errorf("spooling bytes %d-%d: %w", off, off+length-1, err)
	}
	s.mu.Lock()
	to = s.to
	if to == nil {
		s.spooled = append(s.spooled, span{off, length})
	}
	s.mu.Unlock()
	if to != nil {
		// Handed over while this part was spooled: it goes on itself.
		defer s.budget.Add(length)
		return to.WritePart(ctx, n, off, length, io.NewSectionReader(s.f, off, length))
	}
	return nil
}

// FinishParts checks the digest the copy hashed; the sink's FinishParts
// is called when the transfer adopts the copy.
func (s *spoolParts) FinishParts(_ context.Context, n *graph.Node, got digest.Digest) error {
	if got != n.Desc.Digest {
		return fmt.Errorf("%s: the bytes received do not match the digest (they hash to %s): %w", n.Desc.Digest, got, content.ErrMismatchedDigest)
	}
	s.mu.Lock()
	s.got = got
	s.mu.Unlock()
	return nil
}

// handOver makes to the writer of every part from now on and copies the
// parts already spooled into it.
func (s *spoolParts) handOver(ctx context.Context, n *graph.Node, to sink.PartWriter) error {
	s.mu.Lock()
	s.to = to
	spooled := s.spooled
	s.spooled = nil
	s.mu.Unlock()
	close(s.handed)
	for _, p := range spooled {
		if err := to.WritePart(ctx, n, p.off, p.length, io.NewSectionReader(s.f, p.off, p.length)); err != nil {
			return err
		}
		s.budget.Add(p.length)
	}
	return nil
}

// remove closes and removes the spool file; the parts still counted
// against the budget are given back.
func (s *spoolParts) remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed || s.f == nil {
		return
	}
	s.removed = true
	for _, p := range s.spooled {
		s.budget.Add(p.length)
	}
	s.spooled = nil
	_ = s.f.Close()
	_ = os.Remove(s.f.Name())
}
