package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
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
	if e := r.earlyLargest; e != nil && e.n == n {
		return e.wait(ctx, started) // started before Prepare (startEarly)
	}
	return r.copyNodeWith(ctx, n, started, r.job.Sink.Write, r.firstBytes)
}

// copyNodeWith is copyNodeStarting writing through write, its first
// byte's latency recorded in firstBytes (if not nil).
func (r *run) copyNodeWith(ctx context.Context, n *graph.Node, started func(), write func(context.Context, *graph.Node, sink.Opener) error, firstBytes *latencies) error {
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
	if firstBytes != nil {
		open = firstBytes.timed(open)
	}
	if err := write(ctx, n, open); err != nil {
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
	rc, err := r.fetch(ctx, n)
	if err != nil {
		return nil, err
	}
	if v, ok := r.job.Source.(Verifying); ok && v.Verifies() {
		// The source checks the digest itself: hash each byte once.
		return readCloser{&holdLast{r: rc, left: n.Desc.Size}, rc}, nil
	}
	return readCloser{&holdLast{r: source.VerifyReader(rc, n.Desc), left: n.Desc.Size}, rc}, nil
}

// fetch opens a blob's bytes from the first source repository that
// answers, counted in the progress, not verified.
func (r *run) fetch(ctx context.Context, n *graph.Node) (io.ReadCloser, error) {
	return r.fetchFrom(ctx, n, n.Sources())
}

// fetchFrom is fetch trying the source repositories repos.
func (r *run) fetchFrom(ctx context.Context, n *graph.Node, repos []string) (io.ReadCloser, error) {
	rc, _, err := r.fetchTimed(ctx, n, repos)
	return rc, err
}

// fetchTimed is fetchFrom telling too how long the answer took from the
// request (not from the wait for a request slot before it).
func (r *run) fetchTimed(ctx context.Context, n *graph.Node, repos []string) (io.ReadCloser, time.Duration, error) {
	var errs []error
	for _, repo := range repos {
		release, err := r.walker.Acquire(ctx)
		if err != nil {
			return nil, 0, err
		}
		sent := time.Now()
		rc, err := r.job.Source.Fetch(ctx, repo, n.Desc)
		took := time.Since(sent)
		release()
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		return readCloser{&countingReader{r: rc, n: &r.progress.Done}, rc}, took, nil
	}
	return nil, 0, errors.Join(errs...)
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

// parts says in how many pieces n may be fetched: more than one only for
// a large blob, from a source that serves byte ranges, into a sink that
// takes parts, and only when n alone is more than share, a connection's
// fair share of the run's bytes. Below that the other connections are
// busy with other blobs for as long as n takes, so pieces would gain
// nothing and cost requests; above it (one big layer, or one much larger
// than the rest) a single slow stream would be the run's tail, and pieces
// of about share bytes shorten it. Whether n is split at all, copyLarge
// decides from the rate of its first stream. The ranges of a split blob
// are connections beside the conc transfers: pieces-1 at most, and as
// only blobs larger than share qualify and pieces are about share bytes,
// those of all a run's blobs together are about conc at most.
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

// The decision to split a large blob's stream (see copyLarge). A single
// HTTP stream that stays under slowStream is held back by its own path: a
// window over a round trip, a per-connection cap at the registry or a
// proxy (the WAN profile of bench/ caps each stream at 25 MB/s), and more
// streams multiply it. One at or above it is bound by this end (the disk,
// hashing, the local link), where more streams only compete for the same
// limit and cost requests and buffers: on loopback one stream is as fast
// as eight. splitWindow is long enough for a rate to show (a capped stream
// runs at its cap from the first bytes) and short enough that a blob that
// gains from ranges loses little: at 25 MB/s it is 2.5 MB of a 32 MiB
// blob. A stream with less than splitGain to go at its rate is left
// alone: ranges would save a fraction of that at the price of a round
// trip each.
var (
	splitWindow = 100 * time.Millisecond
	slowStream  = 100e6 // bytes per second
	splitGain   = 500 * time.Millisecond
	splitWaited = 0.8 // the part of the time spent waiting for the bytes: see splitNow
)

// earlyProbe is how long after its share is known an early copy's rate
// is looked at after every probeSegment.
const earlyProbe = 300 * time.Millisecond

// probeSegment is how much of a large blob's stream is written at a time
// while its rate is not known yet; steadySegment afterwards. The rate is
// looked at between segments.
const (
	probeSegment  = 1 << 20
	steadySegment = 8 << 20
)

// rangeBuffers bounds the memory of the ranges of one split blob: the
// bytes that arrived ahead of the hash wait in buffers that take it
// together.
const rangeBuffers = 64 << 20

// copyLarge copies a blob that may gain from byte ranges (see parts) into
// a sink that takes parts. It starts as one stream, written in order and
// hashed as it goes. When that stream turns out slow (see slowStream),
// what is left of the blob is cut into ranges fetched over several
// connections, up to pieces of them at once, the first stream carrying on
// with the first. The ranges' bytes are written at their offsets and
// hashed in order as the gaps before them fill, from buffers of bounded
// size (rangeBuffers): the file is never read back. A source that
// answers a range with the whole blob gets the blob as one stream.
func (r *run) copyLarge(ctx context.Context, n *graph.Node, conc int, share int64) error {
	_, err := r.copyParts(ctx, &largeCopy{r: r, pw: r.job.Sink.(sink.PartWriter), n: n, conc: conc, share: share})
	return err
}

// copyParts is copyLarge into the part writer (and with the sources and
// share) that base gives. It returns the bytes it added to the run's
// progress.
func (r *run) copyParts(ctx context.Context, base *largeCopy) (int64, error) {
	n := base.n
	fresh := func() *largeCopy {
		return &largeCopy{r: r, pw: base.pw, n: n, conc: base.conc, share: base.share, shareOf: base.shareOf, opened: base.opened, inlineHash: base.inlineHash, repos: base.repos, src: &sourceFaults{}}
	}
	lc := fresh()
	err := lc.copy(ctx)
	if errors.Is(err, source.ErrRangeUnsupported) && ctx.Err() == nil {
		// A range after the first was answered whole: start over as
		// one stream, which never splits now.
		r.noRanges.Store(true)
		r.progress.Done.Add(-lc.counted.Load())
		lc = fresh()
		err = lc.copy(ctx)
	}
	if err != nil {
		return lc.counted.Load(), lc.src.wrap(ctx, n, err)
	}
	got := digest.NewDigestFromBytes(n.Desc.Digest.Algorithm(), lc.h.Sum(nil))
	if err := lc.pw.FinishParts(ctx, n, got); err != nil {
		if errors.Is(err, content.ErrMismatchedDigest) {
			// Each part came from the source, and together they are
			// not the blob: the source's fault.
			lc.src.note()
		}
		return lc.counted.Load(), lc.src.wrap(ctx, n, err)
	}
	return lc.counted.Load(), nil
}

type largeCopy struct {
	r     *run
	pw    sink.PartWriter
	n     *graph.Node
	conc  int
	share int64
	// shareOf, if set, gives share once it is known (a copy that starts
	// while the walk still finds the run's bytes: earlyCopies); until
	// then the stream does not split, and its rate is looked at after
	// every probeSegment, so that it splits soon after.
	shareOf func() (int64, bool)
	// inlineHash: the stream is hashed on its own goroutine (see
	// inlineHash), not ahead of it.
	inlineHash bool
	// opened, if set, is told when the stream's answer has come, and
	// how long it took.
	opened func(time.Duration)
	// repos, if set, are the source repositories to read n from (else
	// n.Sources()): a copy started during the walk reads a snapshot.
	repos       []string
	src         *sourceFaults
	h           hash.Hash    // n's bytes so far, in order
	ahead       *aheadHash   // the stream's bytes on their way into h
	counted     atomic.Int64 // bytes added to the run's progress
	noSplit     bool         // the split was tried and not taken
	chunks      []*chunk     // the ranges after the first stream's part
	next        atomic.Int64 // the next chunk to fetch
	bufs        chan []byte  // free buffers (nil: not allocated yet)
	chunkSize   int64
	firstStream chan struct{} // closed when the first stream's part is hashed
}

// chunk is one range of a split blob; ready is closed when buf holds its
// bytes, written to the sink, and waiting to be hashed.
type chunk struct {
	off, end int64
	buf      []byte
	ready    chan struct{}
}

// copy streams n in order, hashing it, until the stream turns out slow;
// then it splits.
func (lc *largeCopy) copy(ctx context.Context) error {
	n, size := lc.n, lc.n.Desc.Size
	lc.h = n.Desc.Digest.Algorithm().Hash()
	rc, took, err := lc.r.fetchTimed(ctx, n, lc.sources())
	if rc, err = lc.src.track(rc, err); err != nil {
		return err
	}
	if lc.opened != nil {
		lc.opened(took)
	}
	closeStream := sync.OnceValue(rc.Close)
	defer closeStream()
	wait := &waitReader{r: rc}
	var ahead *aheadHash
	if lc.inlineHash {
		ahead = inlineHash(lc.h)
	} else {
		ahead = newAheadHash(lc.h)
	}
	defer ahead.wait()
	lc.ahead = ahead
	stream := io.TeeReader(&countingReader{r: wait, n: &lc.counted}, ahead)
	start := time.Now()
	var pos int64
	var checked, waitedThen time.Duration // at the last look at the rate
	var knownAt time.Time                 // when the share was first known
	for pos < size {
		seg := int64(steadySegment)
		_, known := lc.shareNow()
		if known && knownAt.IsZero() {
			knownAt = time.Now()
		}
		if time.Since(start) < splitWindow || !known || lc.shareOf != nil && time.Since(knownAt) < earlyProbe {
			// The rate is looked at often while it is new, and, for an
			// early copy, for a while after the share that says whether
			// to split is known: it comes with the transfer, a busy
			// moment, after a copy may have waited for its spool (the
			// bytes that piled up meanwhile come at once, unwaited for).
			seg = probeSegment
		} else if el := time.Since(start).Seconds(); pos > 0 && float64(pos)/el < slowStream {
			// A stream under slowStream may still split (splitNow): a
			// steady segment of it takes long enough (0.3 s at 25 MB/s)
			// that the split would come late, with the run's other
			// transfers done and the rest of this blob alone.
			seg = 2 * probeSegment
		}
		seg = min(seg, size-pos)
		var r io.Reader = stream
		if pos+seg < size {
			r = io.LimitReader(stream, seg)
		} // the last segment reads on to the end: bytes beyond the size are an error
		if err := lc.pw.WritePart(ctx, n, pos, seg, r); err != nil {
			return err
		}
		pos += seg
		elapsed := time.Since(start)
		waited := recentWait(elapsed, wait.waited, checked, waitedThen)
		checked, waitedThen = elapsed, wait.waited
		if pos < size && lc.slow(pos, elapsed, waited) {
			split, err := lc.split(ctx, pos, stream, closeStream)
			if split || err != nil {
				return err
			}
		}
	}
	return nil
}

// slow says whether the stream should split now.
func (lc *largeCopy) slow(pos int64, elapsed, waited time.Duration) bool {
	if lc.noSplit || lc.r.noRanges.Load() {
		return false
	}
	if lc.shareOf != nil {
		share, known := lc.shareOf()
		if !known {
			return false
		}
		if pieces(lc.n.Desc.Size, lc.conc, share) < 2 {
			// A blob the transfer would have fetched as one stream
			// (see parts): it stays one.
			lc.noSplit = true
			return false
		}
	}
	return splitNow(pos, lc.n.Desc.Size, elapsed, waited)
}

// shareNow is the share the stream splits by, and whether it is known.
func (lc *largeCopy) shareNow() (int64, bool) {
	if lc.shareOf != nil {
		return lc.shareOf()
	}
	return lc.share, true
}

// splitNow says whether a stream of a blob of size bytes that has
// brought pos of them in elapsed, waiting for them for waited of it,
// should split what is left into ranges. A stream this end waits for
// most of the time (a capped one: nine tenths and more) is held back on
// its way here; one whose bytes are there when asked for is held back by
// this end (the disk, hashing, a busy machine: a loopback stream starved
// of CPU is waited for some two thirds of the time), and more streams
// would only add to that.
func splitNow(pos, size int64, elapsed, waited time.Duration) bool {
	if elapsed < splitWindow || pos <= 0 || waited.Seconds() < splitWaited*elapsed.Seconds() {
		return false
	}
	rate := float64(pos) / elapsed.Seconds()
	left := time.Duration(float64(size-pos) / rate * float64(time.Second))
	return rate < slowStream && left > splitGain
}

// recentWait is the time waited for the stream as splitNow takes it:
// the share of the time since the last look (at checked, having waited
// waitedThen) spent waiting, over the whole of elapsed. The share of the
// last segment, not of the whole stream: a stream that was not waited
// for while other transfers kept this end busy, and is waited for now
// that they are done (the last large blob of a run), splits then.
func recentWait(elapsed, waited, checked, waitedThen time.Duration) time.Duration {
	if checked <= 0 || elapsed <= checked {
		return waited
	}
	share := float64(waited-waitedThen) / float64(elapsed-checked)
	return time.Duration(share * float64(elapsed))
}

// waitReader adds up the time its reads take: waiting for bytes, for
// the most part.
type waitReader struct {
	r      io.Reader
	waited time.Duration
}

func (w *waitReader) Read(p []byte) (int, error) {
	t := time.Now()
	n, err := w.r.Read(p)
	w.waited += time.Since(t)
	return n, err
}

// split fetches [pos, size) of n in ranges, the stream, positioned at
// pos, taking the first. It reports false (and the stream goes on alone)
// when the rest is too small for pieces, or the source answers the first
// range with anything but that range.
func (lc *largeCopy) split(ctx context.Context, pos int64, stream io.Reader, closeStream func() error) (bool, error) {
	size := lc.n.Desc.Size
	share, _ := lc.shareNow()
	w := pieces(size-pos, lc.conc, share)
	if w < 2 && size-pos >= minPart {
		// Less than a fair share is left, but splitNow found it takes
		// over splitGain at this stream's rate: two streams halve that
		// (the last large blob of a run, alone on a capped link).
		w = 2
	}
	if w < 2 {
		lc.noSplit = true
		return false, nil
	}
	// w pieces of the rest, or smaller ones when the buffers of as many
	// streams as may join (join: up to conc) would not hold them (see
	// fetchChunks: two per stream and one to spare).
	most := max(w, lc.conc)
	c := min((size-pos+int64(w)-1)/int64(w), rangeBuffers/int64(2*most+1))
	lc.chunkSize = c
	for off := pos + c; off < size; off += c {
		lc.chunks = append(lc.chunks, &chunk{off: off, end: min(off+c, size), ready: make(chan struct{})})
	}
	// Ask for the first range before anything depends on it: a source
	// that does not serve ranges, or fails to, is left to the stream.
	g, gctx := errgroup.WithContext(ctx)
	rr := lc.rangeReader(gctx, lc.chunks[0])
	if err := rr.open(); err != nil {
		lc.chunks, lc.noSplit = nil, true
		if errors.Is(err, source.ErrRangeUnsupported) {
			lc.r.noRanges.Store(true)
		} else if ctx.Err() != nil {
			return true, err
		}
		return false, nil
	}
	lc.bufs = make(chan []byte, 2*most+1)
	for range 2*w + 1 {
		lc.bufs <- nil
	}
	lc.next.Store(1) // chunk 0 goes to the range just opened, with a buffer
	first := &openingRange{c: lc.chunks[0], buf: chunkBuffer(<-lc.bufs, c, lc.chunks[0]), rr: rr, opened: make(chan struct{})}
	close(first.opened)
	lc.firstStream = make(chan struct{})

	g.Go(func() error { return lc.hash(gctx) })
	g.Go(func() error { return lc.fetchChunks(gctx, first) })
	for range w - 2 {
		g.Go(func() error { return lc.fetchChunks(gctx, nil) })
	}
	g.Go(func() error { return lc.join(gctx, g, w, most) })
	g.Go(func() error {
		// The first stream carries on up to the first range, hashed as
		// it goes, then fetches ranges as the others do.
		err := lc.pw.WritePart(gctx, lc.n, pos, c, io.LimitReader(stream, c))
		closeStream()
		if err != nil {
			return err
		}
		lc.ahead.wait() // the chunks are hashed into lc.h after the stream's part
		close(lc.firstStream)
		return lc.fetchChunks(gctx, nil)
	})
	return true, g.Wait()
}

// join adds a stream to the split blob's w whenever a transfer slot is
// idle (no transfer waits for it), up to most streams in all, while at
// least two chunks are left to claim: the run's last large blob, split
// while the others still took the link, would otherwise end alone on its
// w streams, the slots of the finished transfers idle beside it. A
// joined stream holds its slot until it finds no chunk left.
func (lc *largeCopy) join(ctx context.Context, g *errgroup.Group, w, most int) error {
	l := lc.r.slots
	if l == nil {
		return nil
	}
	tick := time.NewTicker(joinPoll)
	defer tick.Stop()
	for streams := w; streams < most; {
		freed := l.freed()
		if lc.next.Load() >= int64(len(lc.chunks))-1 {
			return nil
		}
		if l.tryAcquireIdle() {
			streams++
			if onJoin != nil {
				onJoin()
			}
			lc.bufs <- nil // its two buffers (the channel holds most streams')
			lc.bufs <- nil
			g.Go(func() error {
				defer l.release()
				return lc.fetchChunks(ctx, nil)
			})
			continue
		}
		select {
		case <-freed:
		case <-tick.C: // the chunks claimed meanwhile
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// onJoin, if set (by a test), is called as a stream joins.
var onJoin func()

// joinPoll is how often join looks whether chunks are left when no slot
// comes free.
const joinPoll = 20 * time.Millisecond

func (lc *largeCopy) rangeReader(ctx context.Context, c *chunk) *rangeReader {
	return &rangeReader{ctx: ctx, rf: lc.r.job.Source.(source.RangeFetcher), repos: lc.sources(), desc: lc.n.Desc, off: c.off, end: c.end, r: lc.r}
}

// sources are the source repositories n is read from.
func (lc *largeCopy) sources() []string {
	if lc.repos != nil {
		return lc.repos
	}
	return lc.n.Sources()
}

// fetchChunks fetches chunks until none is left; first, if not nil, is
// chunk 0, its range already open. Every chunk is claimed with a buffer
// of its own, so the chunk the hash waits for always has one and is being
// read. While a stream reads one chunk it has the range of its next one
// opened, so that it does not wait a round trip between chunks, but only
// with a buffer that is free at once: it never waits for a buffer while
// it holds a chunk not yet read.
func (lc *largeCopy) fetchChunks(ctx context.Context, first *openingRange) error {
	cur := first
	defer func() {
		if cur != nil {
			<-cur.opened
			cur.rr.Close()
		}
	}()
	for {
		if cur == nil {
			var buf []byte
			select {
			case buf = <-lc.bufs:
			case <-ctx.Done():
				return ctx.Err()
			}
			if cur = lc.claim(ctx, buf); cur == nil {
				return nil
			}
		}
		var next *openingRange
		select {
		case buf := <-lc.bufs:
			next = lc.claim(ctx, buf)
		default:
		}
		c, buf := cur.c, cur.buf
		<-cur.opened
		counted := &countingReader{r: &countingReader{r: lc.src.trackReader(cur.rr), n: &lc.r.progress.Done}, n: &lc.counted}
		_, err := io.ReadFull(counted, buf)
		cur.rr.Close()
		cur = next
		if err == nil {
			err = lc.pw.WritePart(ctx, lc.n, c.off, int64(len(buf)), bytes.NewReader(buf))
		}
		if err != nil {
			return err
		}
		c.buf = buf
		close(c.ready)
	}
}

// openingRange is a chunk claimed by a stream, with its buffer, its range
// being opened.
type openingRange struct {
	c      *chunk
	buf    []byte
	rr     *rangeReader
	opened chan struct{} // closed once rr is open or failed to (rr.Read then tries again)
}

// claim takes the next chunk with buf (nil: one is allocated), if any
// chunk is left, and starts opening its range; else buf goes back.
func (lc *largeCopy) claim(ctx context.Context, buf []byte) *openingRange {
	i := lc.next.Add(1) - 1
	if i >= int64(len(lc.chunks)) {
		lc.bufs <- buf
		return nil
	}
	c := lc.chunks[i]
	o := &openingRange{c: c, buf: chunkBuffer(buf, lc.chunkSize, c), rr: lc.rangeReader(ctx, c), opened: make(chan struct{})}
	go func() {
		defer close(o.opened)
		_ = o.rr.open() // an error shows again when the range is read
	}()
	return o
}

// chunkBuffer is buf, or a new buffer of size bytes, cut to c's length.
func chunkBuffer(buf []byte, size int64, c *chunk) []byte {
	if buf == nil {
		buf = make([]byte, size)
	}
	return buf[:c.end-c.off]
}

// hash goes on from the first stream's part through the chunks, in
// order, each as soon as it is there, and frees its buffer.
func (lc *largeCopy) hash(ctx context.Context) error {
	select {
	case <-lc.firstStream:
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, c := range lc.chunks {
		select {
		case <-c.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		lc.h.Write(c.buf)
		lc.bufs <- c.buf[:cap(c.buf)]
		c.buf = nil
	}
	return nil
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
