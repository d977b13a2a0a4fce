package pipeline

import (
	"testing"
	"time"
)

func TestPieces(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		name        string
		size, total int64
		conc, want  int
	}{
		{"one big layer alone: every connection takes a piece", 2048 * MiB, 2048 * MiB, 8, 8},
		{"many similar blobs keep the connections busy: whole", 40 * MiB, 2048 * MiB, 8, 1},
		{"one layer much larger than the rest: pieces of about a fair share", 32 * MiB, 151 * MiB, 8, 2},
		{"never under minPart", 12 * MiB, 12 * MiB, 8, 1},
		{"at most conc", 100 * MiB, 100 * MiB, 4, 4},
		{"small blob", 1 * MiB, 1 * MiB, 8, 1},
	} {
		if got := pieces(c.size, c.conc, c.total/int64(c.conc)); got != c.want {
			t.Errorf("%s: pieces(%d MiB, conc %d, share of %d MiB) = %d, want %d", c.name, c.size/MiB, c.conc, c.total/MiB, got, c.want)
		}
	}
}

func TestSplitNow(t *testing.T) {
	const MiB = 1 << 20
	ms := time.Millisecond
	for _, c := range []struct {
		name            string
		pos, size       int64
		elapsed, waited time.Duration
		want            bool
	}{
		{"a stream capped at 25 MB/s with 2 GiB to go splits", 2500000, 2048 * MiB, 100 * ms, 95 * ms, true},
		{"the 32 MiB layer of D1 at 25 MB/s splits", 2500000, 32 * MiB, 100 * ms, 95 * ms, true},
		{"a loopback stream at 500 MB/s does not", 50000000, 2048 * MiB, 100 * ms, 20 * ms, false},
		{"a slow stream whose bytes are there when asked for is held back here: it does not", 2500000, 2048 * MiB, 100 * ms, 30 * ms, false},
		{"nor one starved of CPU, waited for two thirds of the time", 3300000, 2048 * MiB, 100 * ms, 66 * ms, false},
		{"nothing is decided before the window", 1 * MiB, 2048 * MiB, 40 * ms, 40 * ms, false},
		{"a slow stream almost done does not", 30 * MiB, 32 * MiB, 1200 * ms, 1100 * ms, false},
		{"a stream that slowed down later splits", 400 * MiB, 2048 * MiB, 8000 * ms, 7000 * ms, true},
	} {
		if got := splitNow(c.pos, c.size, c.elapsed, c.waited); got != c.want {
			t.Errorf("%s: splitNow(%d, %d, %v, %v) = %v, want %v", c.name, c.pos, c.size, c.elapsed, c.waited, got, c.want)
		}
	}
}

// TestRecentWait: the split looks at the share of the last segment spent
// waiting, so a stream held back here at first (other transfers busy)
// and waited for later splits.
func TestRecentWait(t *testing.T) {
	const MiB = 1 << 20
	ms := time.Millisecond
	// 400 ms in, waited 200 ms of it (half: not enough), but 190 of the
	// last 200 ms: as if waited 380 of 400.
	if got := recentWait(400*ms, 200*ms, 200*ms, 10*ms); got != 380*ms {
		t.Errorf("recentWait = %v, want 380ms", got)
	}
	if splitNow(10*MiB, 32*MiB, 400*ms, 200*ms) {
		t.Error("the whole stream's share (half) splits: the case is no test")
	}
	if !splitNow(10*MiB, 32*MiB, 400*ms, recentWait(400*ms, 200*ms, 200*ms, 10*ms)) {
		t.Error("a stream waited for over the last segment does not split")
	}
	// The first look has no last segment: the whole stream's share.
	if got := recentWait(100*ms, 95*ms, 0, 0); got != 95*ms {
		t.Errorf("first look: recentWait = %v, want 95ms", got)
	}
}
