package bench

import (
	"strings"
	"testing"
)

// The scale table: speedup T1/TN, efficiency T1/(N×TN), fetched over the
// plan's unique bytes.
func TestScaleMarkdown(t *testing.T) {
	s := &Scale{Workload: "D1", Profile: "wan", Tags: 24, Unique: 100e6, Runs: 3, Points: []ScalePoint{
		{N: 1, Wall: 8, Fetched: 100e6, Requests: 10},
		{N: 2, Wall: 5, Fetched: 150e6, Requests: 12},
		{N: 4, Wall: 4, Fetched: 250e6, Requests: 20},
	}}
	md := s.Markdown()
	for _, want := range []string{
		"| 1 | 8.00 s | 1.00× | 100% | 100.0 MB | 1.000 | 10 |\n",
		"| 2 | 5.00 s | 1.60× | 80% | 150.0 MB | 1.500 | 12 |\n",
		"| 4 | 4.00 s | 2.00× | 50% | 250.0 MB | 2.500 | 20 |\n",
		"24 tags, 100.0 MB unique",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the table lacks %q:\n%s", want, md)
		}
	}
	// Without N = 1 there is nothing to compare with.
	if got := (&Scale{Points: []ScalePoint{{N: 2, Wall: 1}}}).Speedup(ScalePoint{N: 2, Wall: 1}); got != 0 {
		t.Errorf("speedup without N = 1: %v, want 0", got)
	}
}
