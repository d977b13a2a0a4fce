package pipeline

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Without --concurrency (Job.Adapt), the number of blob transfers in
// flight adapts to the link. It starts at Job.Concurrency and is only ever
// raised, up to AdaptMax:
//
//   - from the registry's first answer to a small request (the walk's),
//     before any transfer has its first byte (onPath: the blobs a backup
//     starts while walking take slots that early);
//   - from the latency of the first transfers (the time from a transfer's
//     start to its first byte, the least of the first few, or the least
//     time the registry took to answer a small request when that is
//     shorter: see linkLatency): a stream over a long round trip moves
//     little by itself, so more go at once from the start
//     (latencyLevel). A long latency can also be a busy server
//     rather than a long path: if the transfers started at the raised
//     level wait much longer for their first byte (the median of the next
//     few over twice the first least, plus 10 ms), the server queues them,
//     and the level goes back to where it started;
//   - then while the bytes moved per adaptWindow grow with the level:
//     doubled as long as a doubling brings at least half of the
//     proportional gain, and left where it no longer does (back to the
//     level below when it brought nothing).
//
// An explicit --concurrency is a fixed level: nothing adapts.

// AdaptMax is the most blob transfers the adaptive default runs at once.
const AdaptMax = 32

// pathPoll is how often, before the first transfers' first bytes, the
// adapter looks for the registry's first answer to a small request.
const pathPoll = 10 * time.Millisecond

// adaptWindow is how long the throughput of one level is measured; the
// window after a change is not judged (the new transfers are still
// starting).
const adaptWindow = 250 * time.Millisecond

// latencySamples is how many first-byte latencies decide the level the
// latency asks for, and how many of the transfers started after that
// raise tell whether the server queues them.
const latencySamples = 4

// queueing tells whether first bytes that took after (their median) at a
// raised level, against base (the least before it), show a server that
// queues requests rather than a long path: more than twice as long, and
// 10 ms more (a loopback's latencies are too small to double reliably).
func queueing(base, after time.Duration) bool {
	return after > 2*base+10*time.Millisecond
}

// latencyLevel is the level for a link whose least first-byte latency is
// rtt: start doubled for every doubling of rtt from 25 ms (a stream's rate
// is about its window per round trip), up to max.
func latencyLevel(start, max int, rtt time.Duration) int {
	level := start
	for d := 25 * time.Millisecond; rtt >= d && level < max; d *= 2 {
		level *= 2
	}
	return min(level, max)
}

// adapter decides the level from measurements; it holds no clock and no
// goroutine (see run.adapt for the one that feeds it).
type adapter struct {
	level, max int
	prev       int     // the level before the last doubling (0: none)
	prevRate   float64 // bytes/s measured at prev
	latency    bool    // the latency has been heard
	start      int     // the level before the latency raised it
	initial    int     // the level before anything raised it (0: not yet known)
	base       time.Duration
	checking   bool // the queueing check of the latency's raise is due
	settled    bool
}

// onPath takes the least time the registry took to answer a small
// request, before any transfer's first byte: a bound below the path's
// round trip that no queue of transfers inflates, so the level is raised
// for it at once (the blobs a walk starts early take slots before the
// first bytes say anything), and not checked for queueing. The first
// bytes may still raise it further (onLatency), counted from the same
// starting level.
func (a *adapter) onPath(rtt time.Duration) int {
	if a.latency || a.settled {
		return a.level
	}
	if a.initial == 0 {
		a.initial = a.level
	}
	a.level = max(a.level, latencyLevel(a.initial, a.max, rtt))
	return a.level
}

// onLatency takes the least first-byte latency of the first transfers;
// the level goes up to what it asks for, never down.
func (a *adapter) onLatency(rtt time.Duration) int {
	if a.latency || a.settled {
		return a.level
	}
	if a.initial == 0 {
		a.initial = a.level
	}
	a.latency = true
	a.start, a.base = a.level, rtt
	a.level = max(a.level, latencyLevel(a.initial, a.max, rtt))
	a.checking = a.level > a.start
	return a.level
}

// raised tells whether the latency raised the level and the queueing
// check is due; until it is done, the throughput does not move the level.
func (a *adapter) raised() bool { return a.checking }

// onQueueing takes the median first-byte latency of transfers started at
// the level the latency asked for: a server that queues them sends the
// level back to where it started, for good.
func (a *adapter) onQueueing(median time.Duration) int {
	if a.checking && queueing(a.base, median) {
		a.level, a.settled = a.start, true
	}
	a.checking = false
	return a.level
}

// onWindow takes the rate (bytes/s) of one window at the current level
// and whether the level bound the transfers throughout it (some waited
// for a slot at its start and at its end): only then does the rate say
// what the level can do. It returns the level for the next window.
func (a *adapter) onWindow(rate float64, bound bool) int {
	if a.settled || a.checking || !bound {
		return a.level
	}
	if a.prev == 0 || rate >= a.prevRate*(1+0.5*(float64(a.level)/float64(a.prev)-1)) {
		if a.level >= a.max {
			a.settled = true
			return a.level
		}
		a.prev, a.prevRate = a.level, rate
		a.level = min(a.level*2, a.max)
		return a.level
	}
	a.settled = true
	if rate <= a.prevRate {
		a.level = a.prev
	}
	return a.level
}

// limiter is a counting semaphore whose limit can change: the slots of
// the blob transfers.
type limiter struct {
	mu       sync.Mutex
	limit    int
	inFlight int
	waiting  int
	// waitedAt: something waited for a slot when the window began.
	waitedAt bool
	wake     chan struct{} // closed (and replaced) when a slot may be free
}

func newLimiter(n int) *limiter { return &limiter{limit: max(n, 1), wake: make(chan struct{})} }

func (l *limiter) acquire(ctx context.Context) error {
	l.mu.Lock()
	for l.inFlight >= l.limit {
		l.waiting++
		ch := l.wake
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			l.mu.Lock()
			l.waiting--
			l.mu.Unlock()
			return ctx.Err()
		}
		l.mu.Lock()
		l.waiting--
	}
	l.inFlight++
	l.mu.Unlock()
	return nil
}

// tryAcquire takes a slot if one is free now, without waiting.
func (l *limiter) tryAcquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight >= l.limit {
		return false
	}
	l.inFlight++
	return true
}

// tryAcquireIdle takes a slot only if one is free and no transfer waits
// for one: a split blob's extra streams (largeCopy.join) take what the
// run leaves idle, never a slot a transfer waits for.
func (l *limiter) tryAcquireIdle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight >= l.limit || l.waiting > 0 {
		return false
	}
	l.inFlight++
	return true
}

// freed is closed when a slot may have come free (a release, a raised
// limit).
func (l *limiter) freed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.wake
}

func (l *limiter) release() {
	l.mu.Lock()
	l.inFlight--
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
}

func (l *limiter) set(n int) {
	l.mu.Lock()
	if n > l.limit {
		close(l.wake)
		l.wake = make(chan struct{})
	}
	l.limit = max(n, 1)
	l.mu.Unlock()
}

// window tells whether transfers waited for a slot both when the last
// window began and now, and begins the next.
func (l *limiter) window() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	bound := l.waitedAt && l.waiting > 0
	l.waitedAt = l.waiting > 0
	return bound
}

// group runs tasks of g each holding a slot of l; Go blocks until a slot
// is free (as errgroup's SetLimit does). A task not started because ctx
// ended fails with ctx's error.
type group interface{ Go(func() error) }

type slotGroup struct {
	ctx context.Context
	g   *errgroup.Group
	l   *limiter
}

func (s slotGroup) Go(f func() error) {
	if err := s.l.acquire(s.ctx); err != nil {
		s.g.Go(func() error { return err })
		return
	}
	s.g.Go(func() error {
		defer s.l.release()
		return f()
	})
}

// latencies keeps first-byte latencies of a run: the first
// latencySamples, then as many of transfers started after since (once
// set: the raise).
type latencies struct {
	mu    sync.Mutex
	got   []time.Duration
	since time.Time
	after []time.Duration
	full  chan struct{} // closed at latencySamples first ones
	more  chan struct{} // closed at latencySamples after since
}

func newLatencies() *latencies {
	return &latencies{full: make(chan struct{}), more: make(chan struct{})}
}

func (ls *latencies) add(start time.Time, d time.Duration) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	switch {
	case len(ls.got) < latencySamples:
		ls.got = append(ls.got, d)
		if len(ls.got) == latencySamples {
			close(ls.full)
		}
	case !ls.since.IsZero() && !start.Before(ls.since) && len(ls.after) < latencySamples:
		ls.after = append(ls.after, d)
		if len(ls.after) == latencySamples {
			close(ls.more)
		}
	}
}

// least is the least latency heard, false with none.
func (ls *latencies) least() (time.Duration, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.got) == 0 {
		return 0, false
	}
	return slices.Min(ls.got), true
}

// watch starts collecting the latencies of transfers started from now.
func (ls *latencies) watch() {
	ls.mu.Lock()
	ls.since = time.Now()
	ls.mu.Unlock()
}

// median is the median of the latencies collected since watch.
func (ls *latencies) median() time.Duration {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := slices.Clone(ls.after)
	slices.Sort(s)
	return s[len(s)/2]
}

// timed wraps open so that the time from now to the first byte read
// counts as a first-byte latency.
func (ls *latencies) timed(open func() (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	start := time.Now()
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		return &firstByte{ReadCloser: rc, start: start, ls: ls}, nil
	}
}

type firstByte struct {
	io.ReadCloser
	start time.Time
	ls    *latencies
	seen  atomic.Bool
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if n > 0 && !f.seen.Swap(true) {
		f.ls.add(f.start, time.Since(f.start))
	}
	return n, err
}

// startSlots makes the transfer slots of a run: fixed at conc, or (Adapt)
// starting there with a goroutine adapting them, which ends with the
// returned stop.
func (r *run) startSlots(ctx context.Context, conc int) (stop func()) {
	r.slots = newLimiter(conc)
	if !r.job.Adapt {
		return func() {}
	}
	r.firstBytes = newLatencies()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.adapt(ctx, &adapter{level: conc, max: max(AdaptMax, conc)})
	}()
	return func() { cancel(); <-done }
}

// adapt feeds a the run's measurements until ctx ends.
func (r *run) adapt(ctx context.Context, a *adapter) {
	tick := time.NewTicker(adaptWindow)
	defer tick.Stop()
	full, more := r.firstBytes.full, (<-chan struct{})(nil)
	last, lastAt := r.progress.Done.Load(), time.Now()
	skip := true // the first window: transfers are starting
	// Until the first bytes come, the small requests' answers (the
	// walk's) tell of the path: looked at often, so that the blobs the
	// walk starts early start at the level the path asks for.
	path := time.NewTicker(pathPoll)
	defer path.Stop()
	set := func(n int) {
		if n != r.slots.limitNow() {
			r.slots.set(n)
			skip = true
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-full:
			full = nil
			if rtt, ok := r.linkLatency(); ok {
				set(a.onLatency(rtt))
				if a.raised() {
					r.firstBytes.watch()
					more = r.firstBytes.more
				}
			}
			continue
		case <-path.C:
			if a.latency || r.job.RoundTrip == nil {
				path.Stop()
				continue
			}
			if rt, ok := r.job.RoundTrip(); ok {
				path.Stop()
				set(a.onPath(rt))
			}
			continue
		case <-more:
			more = nil
			set(a.onQueueing(r.firstBytes.median()))
			continue
		case now := <-tick.C:
			done := r.progress.Done.Load()
			rate := float64(done-last) / now.Sub(lastAt).Seconds()
			last, lastAt = done, now
			bound := r.slots.window()
			if !a.latency {
				// Fewer transfers than samples so far: what there is.
				if rtt, ok := r.linkLatency(); ok {
					full = nil
					set(a.onLatency(rtt))
					if a.raised() {
						r.firstBytes.watch()
						more = r.firstBytes.more
					}
					continue
				}
			}
			if skip {
				skip = false
				continue
			}
			set(a.onWindow(rate, bound))
		}
	}
}

// linkLatency is the round trip the level is raised for: the least
// first-byte latency of the first transfers, or the registry's least
// answer to a small request (Job.RoundTrip) when that is shorter. A first
// byte also waits behind whatever else the server is busy with (on
// loopback, the walk's requests and the other transfers on the same
// cores), and a level raised for a busy server rather than a long path
// only adds to what it queues; the small requests' least shows the path.
func (r *run) linkLatency() (time.Duration, bool) {
	d, ok := r.firstBytes.least()
	if !ok || r.job.RoundTrip == nil {
		return d, ok
	}
	if rt, known := r.job.RoundTrip(); known && rt < d {
		return rt, true
	}
	return d, true
}

func (l *limiter) limitNow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}
