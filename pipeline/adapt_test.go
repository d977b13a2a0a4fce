package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLatencyLevel(t *testing.T) {
	for _, tc := range []struct {
		rtt  time.Duration
		want int
	}{
		{0, 8}, {time.Millisecond, 8}, {24 * time.Millisecond, 8},
		{25 * time.Millisecond, 16}, {45 * time.Millisecond, 16}, // the wan profile: +40 ms
		{50 * time.Millisecond, 32}, {150 * time.Millisecond, 32}, // far: +150 ms
		{10 * time.Second, 32},
	} {
		if got := latencyLevel(8, AdaptMax, tc.rtt); got != tc.want {
			t.Errorf("latencyLevel(8, %d, %s) = %d, want %d", AdaptMax, tc.rtt, got, tc.want)
		}
	}
}

// run feeds the adapter windows of a link whose throughput at a level is
// rate(level), every window bound, and returns the levels it chose.
func feed(a *adapter, windows int, rate func(level int) float64) []int {
	var levels []int
	for range windows {
		levels = append(levels, a.onWindow(rate(a.level), true))
	}
	return levels
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A link whose streams are each capped (a long round trip, a shaped
// WAN): the throughput grows with the level, so the level is doubled up
// to the most.
func TestAdapterRaisesWhileThroughputGrows(t *testing.T) {
	a := &adapter{level: 8, max: 32}
	got := feed(a, 5, func(l int) float64 { return float64(l) * 10e6 })
	if want := []int{16, 32, 32, 32, 32}; !equal(got, want) {
		t.Errorf("levels %v, want %v", got, want)
	}
}

// A link saturated at 8 (loopback, bound by the CPU or the disk): 16
// brings nothing, so it goes back to 8 and stays there.
func TestAdapterBacksOffWithoutGain(t *testing.T) {
	a := &adapter{level: 8, max: 32}
	got := feed(a, 5, func(l int) float64 { return 300e6 - float64(l)*1e6 })
	if want := []int{16, 8, 8, 8, 8}; !equal(got, want) {
		t.Errorf("levels %v, want %v", got, want)
	}
}

// A link that gains from 16 but less than half the doubling's share at
// 32: the level stays at 32 (it did gain), and is not raised again.
func TestAdapterSettlesOnSmallGain(t *testing.T) {
	a := &adapter{level: 8, max: 64}
	rates := map[int]float64{8: 80e6, 16: 160e6, 32: 200e6, 64: 400e6}
	got := feed(a, 4, func(l int) float64 { return rates[l] })
	if want := []int{16, 32, 32, 32}; !equal(got, want) {
		t.Errorf("levels %v, want %v", got, want)
	}
}

// Windows in which the level did not bind (fewer transfers left than
// slots: the tail of a run) say nothing about the level.
func TestAdapterIgnoresUnboundWindows(t *testing.T) {
	a := &adapter{level: 8, max: 32}
	a.onWindow(80e6, true) // → 16
	for range 3 {
		if got := a.onWindow(1e6, false); got != 16 {
			t.Fatalf("an unbound window of 1 MB/s moved the level to %d", got)
		}
	}
	if got := a.onWindow(160e6, true); got != 32 {
		t.Errorf("after a bound window twice as fast: %d, want 32", got)
	}
}

// The latency raises the level once, never lowers it, and not after the
// throughput settled it.
func TestAdapterLatency(t *testing.T) {
	a := &adapter{level: 8, max: 32}
	if got := a.onLatency(150 * time.Millisecond); got != 32 {
		t.Errorf("far link: %d, want 32", got)
	}
	if got := a.onLatency(time.Millisecond); got != 32 {
		t.Errorf("a second latency changed the level: %d", got)
	}
	a = &adapter{level: 16, max: 32}
	if got := a.onLatency(time.Millisecond); got != 16 {
		t.Errorf("a short latency lowered 16 to %d", got)
	}
	// At the most, a bound window settles it there.
	a = &adapter{level: 32, max: 32}
	a.onLatency(time.Second)
	if got := feed(a, 2, func(int) float64 { return 1e6 }); !equal(got, []int{32, 32}) {
		t.Errorf("at the most: %v", got)
	}
}

// The limiter holds at most its limit; raising it lets a waiter in at
// once; window reports a wait at both ends of a window.
func TestLimiter(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(2)
	for range 2 {
		if err := l.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan error, 1)
	go func() { got <- l.acquire(ctx) }()
	select {
	case err := <-got:
		t.Fatalf("a third slot of 2: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiting == 1 })
	if l.window() {
		t.Error("bound in the first window (nothing waited when it began)")
	}
	if !l.window() {
		t.Error("not bound with a waiter at both ends")
	}
	l.set(3)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("raising the limit did not let the waiter in")
	}
	if l.window() {
		t.Error("bound with nothing waiting")
	}
	// Lowered below what is in flight: a new one waits for releases.
	l.set(1)
	cctx, cancel := context.WithCancel(ctx)
	go func() { got <- l.acquire(cctx) }()
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiting == 1 })
	l.release()
	l.release()
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("with 1 of 1 still in flight: %v, want the cancel", err)
	}
	l.release()
	if err := l.acquire(ctx); err != nil {
		t.Errorf("with every slot free: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within a minute")
		}
		time.Sleep(time.Millisecond)
	}
}

// A long first latency raises the level; the transfers started then tell
// a long path (their first bytes as quick as before: kept) from a busy
// server (theirs much slower: back to where it started, for good).
func TestAdapterQueueingCheck(t *testing.T) {
	// far: 150 ms before and after the raise.
	a := &adapter{level: 8, max: 32}
	if got := a.onLatency(150 * time.Millisecond); got != 32 || !a.raised() {
		t.Fatalf("far: %d (check due %v), want 32 with the check due", got, a.raised())
	}
	if got := a.onWindow(1e9, true); got != 32 {
		t.Errorf("a window before the check moved the level to %d", got)
	}
	if got := a.onQueueing(170 * time.Millisecond); got != 32 || a.raised() {
		t.Errorf("far after the check: %d, want 32", got)
	}
	// After the check the throughput decides again (at the most: settled).
	if got := a.onWindow(320e6, true); got != 32 {
		t.Errorf("far, then a window: %d", got)
	}

	// A busy server: 60 ms at first, 400 ms once 32 are asked at once.
	a = &adapter{level: 8, max: 32}
	a.onLatency(60 * time.Millisecond)
	if got := a.onQueueing(400 * time.Millisecond); got != 8 {
		t.Errorf("busy server: %d, want back to 8", got)
	}
	if got := feed(a, 3, func(l int) float64 { return float64(l) * 10e6 }); !equal(got, []int{8, 8, 8}) {
		t.Errorf("after backing off the level moved: %v", got)
	}

	// Small latencies (loopback) do not count as queueing for a few ms.
	if queueing(time.Millisecond, 8*time.Millisecond) {
		t.Error("1 ms then 8 ms counted as queueing")
	}
	if !queueing(30*time.Millisecond, 80*time.Millisecond) {
		t.Error("30 ms then 80 ms not counted as queueing")
	}
}

// The latencies of transfers started before the raise do not count in
// the queueing check.
func TestLatenciesAfterRaise(t *testing.T) {
	ls := newLatencies()
	early := time.Now()
	for range latencySamples {
		ls.add(early, time.Millisecond)
	}
	select {
	case <-ls.full:
	default:
		t.Fatal("full not closed after the first samples")
	}
	ls.watch()
	for range latencySamples {
		ls.add(early, time.Millisecond) // started before the raise
	}
	select {
	case <-ls.more:
		t.Fatal("samples of transfers started before the raise counted")
	default:
	}
	late := time.Now()
	for i := range latencySamples {
		ls.add(late, time.Duration(i+1)*100*time.Millisecond)
	}
	<-ls.more
	if got := ls.median(); got != 300*time.Millisecond {
		t.Errorf("median %s, want 300ms", got)
	}
}

// The path's round trip, known from the small requests before any first
// byte, raises the level at once, from where it started; the first bytes
// then raise it further by the same rule, never above what the starting
// level and their latency ask for, and never down.
func TestAdapterPath(t *testing.T) {
	for _, tc := range []struct {
		path, first time.Duration
		afterPath   int
		afterFirst  int
	}{
		{time.Millisecond, 60 * time.Millisecond, 8, 32},       // loopback: the first bytes decide (and the run's RoundTrip caps them: linkLatency)
		{40 * time.Millisecond, 45 * time.Millisecond, 16, 16}, // wan: 16 at once, not 32
		{40 * time.Millisecond, 60 * time.Millisecond, 16, 32},
		{150 * time.Millisecond, 150 * time.Millisecond, 32, 32}, // far: 32 before the first byte
	} {
		a := &adapter{level: 8, max: AdaptMax}
		if got := a.onPath(tc.path); got != tc.afterPath {
			t.Errorf("path %s: level %d, want %d", tc.path, got, tc.afterPath)
		}
		if got := a.onLatency(tc.first); got != tc.afterFirst {
			t.Errorf("path %s, first byte %s: level %d, want %d", tc.path, tc.first, got, tc.afterFirst)
		}
	}
	// Once the first bytes are heard, the path says nothing more.
	a := &adapter{level: 8, max: AdaptMax}
	a.onLatency(time.Millisecond)
	if got := a.onPath(150 * time.Millisecond); got != 8 {
		t.Errorf("path after the first bytes: level %d, want 8", got)
	}
}
