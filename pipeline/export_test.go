package pipeline

import (
	"sync/atomic"
	"testing"
	"time"
)

// SetSplitGain sets, for one test, the time left below which a slow
// stream is not split (see splitNow).
func SetSplitGain(t testing.TB, d time.Duration) {
	old := splitGain
	splitGain = d
	t.Cleanup(func() { splitGain = old })
}

// SetSplitWaited sets, for one test, the part of its time a slow stream
// must spend waiting for its bytes to split (see splitNow). The tests of
// what a split does set it to 0: on a machine busy with other work, a
// throttled stream in the same process is not always waited for most of
// the time, and whether it should be is TestSplitNow's.
func SetSplitWaited(t testing.TB, f float64) {
	old := splitWaited
	splitWaited = f
	t.Cleanup(func() { splitWaited = old })
}

// CountJoins counts, for one test, the streams that join a split blob
// (see largeCopy.join).
func CountJoins(t testing.TB, n *atomic.Int32) {
	onJoin = func() { n.Add(1) }
	t.Cleanup(func() { onJoin = nil })
}
