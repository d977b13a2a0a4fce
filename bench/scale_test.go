package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The scale table: speedup T1/TN, efficiency T1/(N×TN), fetched over the
// plan's unique bytes.
func TestScaleMarkdown(t *testing.T) {
	s := &Scale{Workload: "D1", Profile: "wan", Tags: 24, Unique: 100e6, Runs: 3, Points: []ScalePoint{
		{N: 1, Wall: 8, Largest: 1, Fetched: 100e6, Requests: 10},
		{N: 2, Wall: 5, Largest: 1.02, Fetched: 150e6, Requests: 12},
		{N: 4, Wall: 4, Largest: 1.25, Fetched: 250e6, Requests: 20},
	}}
	md := s.Markdown()
	for _, want := range []string{
		"| 1 | 8.00 s | 1.00× | 100% | 1.000 | 100.0 MB | 1.000 | 10 |\n",
		"| 2 | 5.00 s | 1.60× | 80% | 1.020 | 150.0 MB | 1.500 | 12 |\n",
		"| 4 | 4.00 s | 2.00× | 50% | 1.250 | 250.0 MB | 2.500 | 20 |\n",
		"24 tags, 100.0 MB unique",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the table lacks %q:\n%s", want, md)
		}
	}
	// The copy variant: the bytes sent to the target too, and the link.
	s.Op, s.Link = OpScaleCopy, 40*MB
	s.Points[1].Sent = 120e6
	md = s.Markdown()
	for _, want := range []string{
		"| 2 | 5.00 s | 1.60× | 80% | 1.020 | 150.0 MB | 1.500 | 120.0 MB | 12 |\n",
		"Sharded copy (`-ops scalecopy`)",
		"a link of 40 MB/s each way that all streams of one proxy share",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the copy table lacks %q:\n%s", want, md)
		}
	}
	// Without N = 1 there is nothing to compare with.
	if got := (&Scale{Points: []ScalePoint{{N: 2, Wall: 1}}}).Speedup(ScalePoint{N: 2, Wall: 1}); got != 0 {
		t.Errorf("speedup without N = 1: %v, want 0", got)
	}
}

// runScale against a real registry: every shard count runs, and the
// shards together fetch at least the plan's unique bytes (more only for
// content shared across shards).
func TestRunScale(t *testing.T) {
	if os.Getenv("REGVAULT_DISTRIBUTION") == "" {
		t.Skip("REGVAULT_DISTRIBUTION is not set")
	}
	work := t.TempDir()
	bin := filepath.Join(work, "regvault")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/regvault").CombinedOutput(); err != nil {
		t.Fatalf("building regvault: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, w := seededD1(ctx, t, work, 3)
	s, err := runScale(ctx, OpScale, bin, "", filepath.Join(work, "scale"), src.BackendHost(), w, ProfileLoopback, 1, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if s.Tags != 3*len(w.Spec.Repos[0].Images) || s.Unique <= 0 {
		t.Errorf("plan: %d tags, %d unique bytes", s.Tags, s.Unique)
	}
	if len(s.Points) != len(ScaleShards) {
		t.Fatalf("%d points, want %d", len(s.Points), len(ScaleShards))
	}
	for i, p := range s.Points {
		if p.N != ScaleShards[i] || p.Requests == 0 || p.Fetched < s.Unique || p.Largest < 1 {
			t.Errorf("N=%d (want %d): %d requests, %d bytes fetched for %d unique", p.N, ScaleShards[i], p.Requests, p.Fetched, s.Unique)
		}
	}
	// The copy: runScale itself fails when the target of N shards is not
	// that of one run; every shard count sends at least the unique bytes.
	c, err := runScale(ctx, OpScaleCopy, bin, "", filepath.Join(work, "scalecopy"), src.BackendHost(), w, ProfileLoopback, 1, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range c.Points {
		if p.N != ScaleShards[i] || p.Sent < c.Unique || p.Fetched < c.Unique {
			t.Errorf("copy N=%d (want %d): %d bytes fetched, %d sent for %d unique", p.N, ScaleShards[i], p.Fetched, p.Sent, c.Unique)
		}
	}
}

// The target state of a copy: its tags with digests and the referrers it
// holds; a registry missing a tag differs.
func TestTargetStateDiff(t *testing.T) {
	want := []string{"a:1 sha256:x", "a@sha256:r referrer present=true"}
	if d := firstDiff(want, want[:1]); !strings.Contains(d, "lacks a@sha256:r") {
		t.Errorf("firstDiff: %s", d)
	}
	if d := firstDiff(want[:1], want); !strings.Contains(d, "has a@sha256:r") {
		t.Errorf("firstDiff: %s", d)
	}
}

// A link is shared: bytes booked by any stream pass one after another at
// its rate, so two streams together get the rate of one.
func TestLinkShared(t *testing.T) {
	l := &link{rate: 1000} // bytes per second
	first := l.take(500)   // one stream
	second := l.take(500)  // another, at once
	if got := second.Sub(first); got < 499*time.Millisecond || got > 501*time.Millisecond {
		t.Errorf("the second stream's 500 bytes pass %v after the first's, want 500ms", got)
	}
	// A pacer with a link waits for the link as well as its own rate.
	p := newPacer(0, &link{rate: 1e9})
	if !p.paced() || p.limit(1<<20) != chunk {
		t.Errorf("a pacer with a link only is not paced")
	}
	if newPacer(0, nil).paced() {
		t.Errorf("a pacer without rate or link is paced")
	}
}
