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
	src, err := StartRegistry("", work)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	spec, _ := NewSpec(WorkloadD1, "test", Options{Quick: true})
	spec.Repos = spec.Repos[:3]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w, err := Seed(ctx, src.BackendHost(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := runScale(ctx, bin, filepath.Join(work, "scale"), src.BackendHost(), w, ProfileLoopback, 1, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if s.Tags != 3*len(spec.Repos[0].Images) || s.Unique <= 0 {
		t.Errorf("plan: %d tags, %d unique bytes", s.Tags, s.Unique)
	}
	if len(s.Points) != len(ScaleShards) {
		t.Fatalf("%d points, want %d", len(s.Points), len(ScaleShards))
	}
	for i, p := range s.Points {
		if p.N != ScaleShards[i] || p.Requests == 0 || p.Fetched < s.Unique {
			t.Errorf("N=%d (want %d): %d requests, %d bytes fetched for %d unique", p.N, ScaleShards[i], p.Requests, p.Fetched, s.Unique)
		}
	}
}
