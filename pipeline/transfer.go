package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// copyNode streams one node from the source into the sink, verified.
func (r *run) copyNode(ctx context.Context, n *graph.Node) error {
	return r.copyNodeStarting(ctx, n, nil)
}

// copyNodeStarting is copyNode telling started (if not nil) once the
// sink reads the first byte of n, or is done with it without reading any
// (a mount, a failure).
func (r *run) copyNodeStarting(ctx context.Context, n *graph.Node, started func()) error {
	if started != nil {
		defer started()
	}
	var src sourceFaults
	open := func() (io.ReadCloser, error) { return src.track(r.open(ctx, n)) }
	if n.Content == nil && r.graph.Optional(n.Desc.Digest) {
		// A layer the source may not hold (a non-distributable layer
		// further on in a stream): the source tells by serving it or by
		// ending without it. Then it is left out, as the walk leaves out
		// one it knows absent, and the manifests that list it go without.
		rc, err := src.track(r.open(ctx, n))
		if err != nil {
			if errors.Is(err, errdef.ErrNotFound) && ctx.Err() == nil {
				r.graph.LeaveOut(n.Desc.Digest)
				r.progress.Total.Add(-n.Desc.Size)
				r.leftOut.Store(true)
				return nil
			}
			return src.wrap(ctx, n, err)
		}
		r.graph.Keep(n.Desc.Digest)
		var once sync.Once
		first := open
		open = func() (io.ReadCloser, error) {
			var got io.ReadCloser
			once.Do(func() { got, rc = rc, nil })
			if got != nil {
				return got, nil
			}
			return first()
		}
		defer func() {
			once.Do(func() {}) // a sink that never opened it: close it
			if rc != nil {
				rc.Close()
			}
		}()
	}
	if r.streaming && n.Content == nil {
		// A stream hands out each large blob once; a sink that needs the
		// bytes twice (two registries, a declined mount, a retry) reads
		// the copy made while the first reader went through.
		t := &teeOpener{open: open, dir: r.spoolDir, done: make(chan struct{})}
		defer t.cleanup()
		open = t.Open
	}
	if started != nil {
		first := open
		open = func() (io.ReadCloser, error) {
			rc, err := first()
			if err != nil {
				return nil, err
			}
			return &startReader{ReadCloser: rc, started: started}, nil
		}
	}
	if err := r.job.Sink.Write(ctx, n, open); err != nil {
		return src.wrap(ctx, n, err)
	}
	return nil
}

// startReader calls started on its first Read.
type startReader struct {
	io.ReadCloser
	started func()
}

func (s *startReader) Read(p []byte) (int, error) {
	s.started()
	return s.ReadCloser.Read(p)
}

// Verifying is implemented by sources whose Fetch already returns a
// digest-verified reader (source.Layout).
type Verifying interface{ Verifies() bool }

// Streaming is implemented by sources that can be read only once, in
// order (a compressed backup, standard input).
type Streaming interface{ Streaming() bool }

// teeOpener opens the source once and keeps a copy of what passes (in
// memory when small, else in a spool file); later opens wait for the
// first reader and read the copy.
type teeOpener struct {
	open func() (io.ReadCloser, error)
	dir  string

	mu       sync.Mutex
	started  bool
	done     chan struct{} // closed when the first reader is finished
	complete bool          // the copy holds every byte, verified
	file     string
}

func (t *teeOpener) Open() (io.ReadCloser, error) {
	t.mu.Lock()
	if t.started {
		t.mu.Unlock()
		<-t.done
		if !t.complete {
			return t.open()
		}
		return os.Open(t.file)
	}
	t.started = true
	t.mu.Unlock()
	rc, err := t.open()
	if err != nil {
		close(t.done)
		return nil, err
	}
	f, err := os.CreateTemp(t.dir, "tee-")
	if err != nil {
		rc.Close()
		close(t.done)
		return nil, err
	}
	t.file = f.Name()
	return &teeReader{t: t, rc: rc, spool: f}, nil
}

func (t *teeOpener) cleanup() {
	if t.file != "" {
		os.Remove(t.file)
	}
}

type teeReader struct {
	t      *teeOpener
	rc     io.ReadCloser
	spool  *os.File
	failed bool
	closed bool
}

func (tr *teeReader) Read(p []byte) (int, error) {
	n, err := tr.rc.Read(p)
	if n > 0 && !tr.failed {
		if _, werr := tr.spool.Write(p[:n]); werr != nil {
			tr.failed = true
		}
	}
	if err != nil && err != io.EOF {
		tr.failed = true
	}
	return n, err
}

// Close finishes the copy: what the first reader left unread is drained
// from the source into the spool, so a retry after a failed upload still
// has every byte.
func (tr *teeReader) Close() error {
	if tr.closed {
		return nil
	}
	tr.closed = true
	if !tr.failed {
		if _, err := io.Copy(tr.spool, tr.rc); err != nil {
			tr.failed = true
		}
	}
	err := tr.rc.Close()
	if cerr := tr.spool.Close(); cerr != nil {
		tr.failed = true
	}
	tr.t.complete = !tr.failed
	close(tr.t.done)
	return err
}

// open returns a verified reader of a node's bytes: a manifest from memory
// (the walk already fetched it), a blob from the source, trying each
// source repository that reached it (graph.Node.Sources) until one answers.
func (r *run) open(ctx context.Context, n *graph.Node) (io.ReadCloser, error) {
	if n.Content != nil {
		r.progress.Done.Add(int64(len(n.Content)))
		return io.NopCloser(source.VerifyReader(bytes.NewReader(n.Content), n.Desc)), nil
	}
	var errs []error
	for _, repo := range n.Sources() {
		release, err := r.walker.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		rc, err := r.job.Source.Fetch(ctx, repo, n.Desc)
		release()
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		cr := &countingReader{r: rc, n: &r.progress.Done}
		if v, ok := r.job.Source.(Verifying); ok && v.Verifies() {
			// The source checks the digest itself: hash each byte once.
			return readCloser{&holdLast{r: cr, left: n.Desc.Size}, rc}, nil
		}
		return readCloser{&holdLast{r: source.VerifyReader(cr, n.Desc), left: n.Desc.Size}, rc}, nil
	}
	return nil, errors.Join(errs...)
}

type readCloser struct {
	io.Reader
	io.Closer
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// memorySpool is the size up to which a blob fetched ahead is kept in
// memory rather than in a spool file.
const memorySpool = 1 << 20

// transferInOrder feeds a stream sink in its order while later blobs
// download: the blob at the head streams straight from the network into
// the sink; up to conc-1 blobs behind it are fetched ahead into spool
// space (memory for small ones, files for the rest) so that the stream
// does not wait on one request at a time.
func (r *run) transferInOrder(ctx context.Context, need []*graph.Node, conc int, done func(*graph.Node)) error {
	spoolDir, err := os.MkdirTemp(r.job.SpoolDir, "regvault-spool-")
	if err != nil {
		return fmt.Errorf("creating spool directory: %w", err)
	}
	defer os.RemoveAll(spoolDir)

	items := make([]*spoolItem, len(need))
	for i, n := range need {
		items[i] = &spoolItem{node: n, ready: make(chan struct{})}
	}
	ahead := make(chan struct{}, max(conc-1, 1)) // spooled blobs not yet consumed
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Cancel first, then wait: the prefetcher may be blocked sending
	// ahead to a writer that has stopped, and only the cancel frees it.
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.prefetch(ctx, items, ahead, spoolDir, &wg)
	}()

	for _, it := range items {
		if it.node.Content != nil || it.state.CompareAndSwap(0, claimedByWriter) {
			if err := r.copyNode(ctx, it.node); err != nil {
				return r.lost.fail(err)
			}
		} else {
			select {
			case <-it.ready:
			case <-ctx.Done():
				return ctx.Err()
			}
			err := it.err
			if err == nil {
				err = r.job.Sink.Write(ctx, it.node, it.open)
				if err != nil {
					err = nodeError(it.node, err)
				}
			}
			it.release()
			<-ahead
			if err != nil {
				return r.lost.fail(err)
			}
		}
		done(it.node)
	}
	return nil
}

const (
	claimedByWriter   = 1
	claimedByPrefetch = 2
)

type spoolItem struct {
	node  *graph.Node
	state atomic.Int32
	ready chan struct{}
	err   error
	mem   []byte
	file  string
}

// open reads the spooled copy, which was verified as it was written.
func (it *spoolItem) open() (io.ReadCloser, error) {
	if it.file == "" {
		return io.NopCloser(bytes.NewReader(it.mem)), nil
	}
	return os.Open(it.file)
}

func (it *spoolItem) release() {
	it.mem = nil
	if it.file != "" {
		os.Remove(it.file)
	}
}

// prefetch walks ahead of the writer, fetching blobs into spool space while
// there is room.
func (r *run) prefetch(ctx context.Context, items []*spoolItem, ahead chan struct{}, dir string, wg *sync.WaitGroup) {
	for _, it := range items {
		if it.node.Content != nil {
			continue
		}
		select {
		case ahead <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !it.state.CompareAndSwap(0, claimedByPrefetch) {
			<-ahead // the writer got there first and streams it itself
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(it.ready)
			it.err = r.spool(ctx, it, dir)
		}()
	}
}

func (r *run) spool(ctx context.Context, it *spoolItem, dir string) error {
	var src sourceFaults
	rc, err := src.track(r.open(ctx, it.node))
	if err != nil {
		return src.wrap(ctx, it.node, err)
	}
	defer rc.Close()
	if it.node.Desc.Size <= memorySpool {
		b, err := io.ReadAll(rc)
		if err != nil {
			return src.wrap(ctx, it.node, err)
		}
		it.mem = b
		return nil
	}
	f, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return nodeError(it.node, err)
	}
	it.file = f.Name()
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return src.wrap(ctx, it.node, err)
	}
	if err := f.Close(); err != nil {
		return nodeError(it.node, err)
	}
	return nil
}

// minPart is the smallest piece a large blob is fetched in: below it the
// round trip costs more than a second connection gains.
const minPart = 8 << 20

// parts says in how many pieces to fetch n: more than one only for a
// large blob, from a source that serves byte ranges, into a sink that
// takes parts, and only when n alone is more than share, a connection's
// fair share of the run's bytes. Below that the other connections are
// busy with other blobs for as long as n takes, so pieces would gain
// nothing and cost requests and a second read to verify the whole; above
// it (one big layer, or one much larger than the rest) a single stream
// would be the run's tail, and pieces of about share bytes shorten it.
func (r *run) parts(n *graph.Node, conc int, share int64) int {
	if r.streaming || n.Content != nil || r.noRanges.Load() {
		return 1
	}
	pw, ok := r.job.Sink.(sink.PartWriter)
	if !ok || !pw.AcceptsParts() {
		return 1
	}
	if _, ok := r.job.Source.(source.RangeFetcher); !ok {
		return 1
	}
	return pieces(n.Desc.Size, conc, share)
}

// pieces is parts' arithmetic: size split into pieces of about share
// bytes, no more than conc of them and none under minPart.
func pieces(size int64, conc int, share int64) int {
	share = max(share, minPart)
	if size <= share {
		return 1
	}
	k := (size + share - 1) / share
	return int(max(1, min(int64(conc), size/minPart, k)))
}

// transferParts fetches n in k ranges at once, each a task of g; the last
// to finish has the sink verify the whole. A source that turns out not to
// serve ranges gets the blob fetched whole instead.
func (r *run) transferParts(ctx context.Context, g *errgroup.Group, n *graph.Node, k int, done func(*graph.Node)) {
	pw := r.job.Sink.(sink.PartWriter)
	var left atomic.Int32
	var whole atomic.Bool
	left.Store(int32(k))
	size := n.Desc.Size
	for i := range k {
		off, end := size*int64(i)/int64(k), size*int64(i+1)/int64(k)
		g.Go(func() error {
			if r.lost.skip(n) {
				return nil
			}
			var src sourceFaults
			err := r.copyPart(ctx, pw, n, off, end-off, &src)
			if errors.Is(err, source.ErrRangeUnsupported) {
				whole.Store(true)
				r.noRanges.Store(true)
				err = nil
			}
			if err != nil {
				return r.lost.fail(src.wrap(ctx, n, err))
			}
			if left.Add(-1) > 0 {
				return nil
			}
			if whole.Load() {
				err = r.copyNode(ctx, n)
			} else if err = pw.FinishParts(ctx, n); err != nil {
				if errors.Is(err, content.ErrMismatchedDigest) {
					// Each part came from the source, and together they
					// are not the blob: the source's fault.
					src.note()
				}
				err = src.wrap(ctx, n, err)
			}
			if err != nil {
				return r.lost.fail(err)
			}
			done(n)
			return nil
		})
	}
}

// copyPart writes bytes [off, off+length) of n, resuming a range that
// broke off where it stopped.
func (r *run) copyPart(ctx context.Context, pw sink.PartWriter, n *graph.Node, off, length int64, src *sourceFaults) error {
	rf := r.job.Source.(source.RangeFetcher)
	rr := &rangeReader{ctx: ctx, rf: rf, repos: n.Sources(), desc: n.Desc, off: off, end: off + length, r: r}
	defer rr.Close()
	// Ask for the first range before handing the reader on, so a source
	// without ranges is found out before the sink writes anything.
	if err := rr.open(); err != nil {
		if !errors.Is(err, source.ErrRangeUnsupported) {
			src.note()
		}
		return err
	}
	return pw.WritePart(ctx, n, off, length, &countingReader{r: src.trackReader(rr), n: &r.progress.Done})
}

// rangeAttempts bounds how often one range resumes after a dropped
// connection.
const rangeAttempts = 5

type rangeReader struct {
	ctx      context.Context
	rf       source.RangeFetcher
	repos    []string
	desc     ocispec.Descriptor
	off, end int64
	rc       io.ReadCloser
	attempts int
	r        *run
}

func (rr *rangeReader) open() error {
	release, err := rr.r.walker.Acquire(rr.ctx)
	if err != nil {
		return err
	}
	defer release()
	var errs []error
	for _, repo := range rr.repos {
		rc, err := rr.rf.FetchRange(rr.ctx, repo, rr.desc, rr.off, rr.end-rr.off)
		if err == nil {
			rr.rc = rc
			return nil
		}
		if errors.Is(err, source.ErrRangeUnsupported) {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (rr *rangeReader) Read(p []byte) (int, error) {
	for {
		if rr.off >= rr.end {
			return 0, io.EOF
		}
		if rr.rc == nil {
			if err := rr.open(); err != nil {
				return 0, err
			}
		}
		if int64(len(p)) > rr.end-rr.off {
			p = p[:rr.end-rr.off]
		}
		n, err := rr.rc.Read(p)
		rr.off += int64(n)
		if err == nil || (err == io.EOF && rr.off >= rr.end) {
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
		// The range broke off (or ended early): reconnect where it
		// stopped, a bounded number of times.
		rr.rc.Close()
		rr.rc = nil
		rr.attempts++
		if rr.attempts > rangeAttempts || rr.ctx.Err() != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (rr *rangeReader) Close() error {
	if rr.rc != nil {
		return rr.rc.Close()
	}
	return nil
}

// holdLast passes on a verified blob's bytes but its last one, which it
// gives only once the verifying reader has ended cleanly. A digest that
// does not match comes with (or right after) the last bytes; keeping one
// back means an upload of the blob's size never completes with wrong
// content: the target receives a short body, not the wrong bytes whole.
type holdLast struct {
	r    io.Reader
	left int64 // bytes not passed on yet
	err  error
}

func (h *holdLast) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if h.left > 1 {
		if int64(len(p)) > h.left-1 {
			p = p[:h.left-1]
		}
		k, err := h.r.Read(p)
		h.left -= int64(k)
		if err != nil {
			h.err = err
			if err == io.EOF {
				h.err = io.ErrUnexpectedEOF
			}
			// Bytes before the last may go with an error: the body is
			// short either way.
			return k, h.err
		}
		return k, nil
	}
	var last [1]byte
	got := 0
	for h.left == 1 && got == 0 {
		k, err := h.r.Read(last[:])
		got = k
		if err != nil && (err != io.EOF || k == 0) {
			h.err = err
			if err == io.EOF {
				h.err = io.ErrUnexpectedEOF
			}
			return 0, h.err
		}
		if err == io.EOF {
			h.left, h.err = 0, io.EOF
			p[0] = last[0]
			return 1, nil
		}
	}
	// The verifier ends with io.EOF only once every byte matched.
	var more [1]byte
	for {
		k, err := h.r.Read(more[:])
		if k > 0 {
			h.err = fmt.Errorf("%w: more than the expected bytes", content.ErrTrailingData)
			return 0, h.err
		}
		if err == io.EOF {
			h.err = io.EOF
			if got == 1 {
				h.left = 0
				p[0] = last[0]
				return 1, nil
			}
			return 0, io.EOF
		}
		if err != nil {
			h.err = err
			return 0, err
		}
	}
}
