package pipeline

import (
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
