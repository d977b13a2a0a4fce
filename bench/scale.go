package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/regvault/regvault/planfile"
)

// OpScale is a sharded backup: `regvault plan` of the workload once, then
// N processes of `regvault backup --plan plan.json --shard I/N` at once,
// each through its own proxy of the profile (one machine's link each),
// for N in ScaleShards.
const OpScale = "scale"

// ScaleShards are the shard counts of OpScale.
var ScaleShards = []int{1, 2, 4}

// Scale is the result of OpScale on one workload and profile.
type Scale struct {
	Workload, Profile string
	Tags              int
	Unique            int64 // the plan's unique bytes (Plan.UniqueBytes)
	Runs              int
	Points            []ScalePoint
}

// ScalePoint is one shard count: the medians over the runs.
type ScalePoint struct {
	N int
	// Wall is from the start of the N processes to the end of the last
	// (the slowest shard).
	Wall float64
	// Fetched is the response bytes of all N proxies: what the shards
	// downloaded together.
	Fetched  int64
	Requests int64
}

// Speedup is T1 / TN; Efficiency T1 / (N × TN). Both 0 without N = 1.
func (s *Scale) Speedup(p ScalePoint) float64 {
	if len(s.Points) == 0 || s.Points[0].N != 1 || p.Wall == 0 {
		return 0
	}
	return s.Points[0].Wall / p.Wall
}

func (s *Scale) Efficiency(p ScalePoint) float64 { return s.Speedup(p) / float64(p.N) }

// Markdown is the table of the result.
func (s *Scale) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sharded backup (`-ops %s`), %s, %s profile: %d tags, %.1f MB unique (the plan's), median of %d run(s). Each of the N processes runs `regvault backup --plan plan.json --shard I/N --output part-I.tar --plain-http --resolve <source>:<its proxy>` through its own proxy of the profile; wall is until the last shard ends.\n\n", OpScale, s.Workload, s.Profile, s.Tags, float64(s.Unique)/1e6, s.Runs)
	b.WriteString("| N | wall (slowest shard) | speedup | efficiency T1/(N×TN) | fetched, all shards | fetched / unique | requests |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range s.Points {
		fmt.Fprintf(&b, "| %d | %.2f s | %.2f× | %.0f%% | %.1f MB | %.3f | %d |\n", p.N, p.Wall, s.Speedup(p), 100*s.Efficiency(p), float64(p.Fetched)/1e6, float64(p.Fetched)/float64(max(s.Unique, 1)), p.Requests)
	}
	return b.String()
}

// runScale plans the workload at host (unshaped), then runs the shards.
func runScale(ctx context.Context, bin, dir, host string, w *Workload, prof Profile, runs int, logf func(string, ...any)) (*Scale, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	planPath := filepath.Join(dir, "plan.json")
	args := []string{"plan", "--output", planPath, "--include-referrers", "--plain-http", "--no-tty"}
	for _, r := range w.Repos {
		args = append(args, host+"/"+r.Name)
	}
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("regvault plan: %w\n%s", err, out)
	}
	f, err := os.Open(planPath)
	if err != nil {
		return nil, err
	}
	p, err := planfile.Read(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	s := &Scale{Workload: w.Name(), Profile: prof.Name, Tags: p.TagCount(), Unique: p.UniqueBytes(), Runs: runs}
	for _, n := range ScaleShards {
		var pts []ScalePoint
		for k := 0; k < runs; k++ {
			pt, err := runShards(ctx, bin, filepath.Join(dir, fmt.Sprintf("n%d-%d", n, k)), planPath, host, prof, n)
			if err != nil {
				return nil, err
			}
			logf("  %s scale N=%d run %d/%d: %.2f s, %.1f MB fetched, %d requests", prof.Name, n, k+1, runs, pt.Wall, float64(pt.Fetched)/1e6, pt.Requests)
			pts = append(pts, pt)
		}
		slices.SortFunc(pts, func(a, b ScalePoint) int { return int((a.Wall - b.Wall) * 1e6) })
		s.Points = append(s.Points, pts[len(pts)/2])
	}
	return s, nil
}

// runShards runs the n shards at once, each behind its own proxy, and
// removes their archives.
func runShards(ctx context.Context, bin, dir, planPath, host string, prof Profile, n int) (ScalePoint, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ScalePoint{}, err
	}
	defer os.RemoveAll(dir)
	var pxs []*Proxy
	defer func() {
		for _, px := range pxs {
			px.Close()
		}
	}()
	cmds := make([]*exec.Cmd, n)
	outs := make([]strings.Builder, n)
	for i := range n {
		px, err := StartProxy(host, prof)
		if err != nil {
			return ScalePoint{}, err
		}
		pxs = append(pxs, px)
		cmds[i] = exec.CommandContext(ctx, bin, "backup", "--plan", planPath, "--shard", fmt.Sprintf("%d/%d", i, n),
			"--output", filepath.Join(dir, fmt.Sprintf("part-%d-of-%d.tar", i, n)),
			"--plain-http", "--no-tty", "--resolve", host+":"+px.Addr)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Run()
		}()
	}
	wg.Wait()
	pt := ScalePoint{N: n, Wall: time.Since(start).Seconds()}
	for i, err := range errs {
		if err != nil {
			return pt, fmt.Errorf("shard %d/%d: %w\n%s", i, n, err, outs[i].String())
		}
	}
	for _, px := range pxs {
		st := px.Stats()
		pt.Fetched += st.BytesOut
		pt.Requests += st.Total()
	}
	return pt, nil
}
