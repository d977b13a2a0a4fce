package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/regvault/regvault/planfile"
	"github.com/regvault/regvault/shard"
)

// OpScale is a sharded backup: `regvault plan` of the workload once, then
// N processes of `regvault backup --plan plan.json --shard I/N` at once,
// each through its own proxy of the profile (one machine's link each),
// for N in ScaleShards.
const OpScale = "scale"

// OpScaleCopy is OpScale of copy: N processes of `regvault copy --plan
// plan.json --shard I/N` at once into one new target registry, each
// through its own proxy of the profile to the source and another to the
// target; the target is checked against that of N = 1 (the same tags,
// digests and referrers).
const OpScaleCopy = "scalecopy"

// ScaleShards are the shard counts of OpScale.
var ScaleShards = []int{1, 2, 4}

// Scale is the result of OpScale on one workload and profile.
type Scale struct {
	Op                string // OpScale or OpScaleCopy
	Workload, Profile string
	// Link is the proxies' shared cap (Profile.Link), bytes per second;
	// 0: none.
	Link   float64
	Tags   int
	Unique int64 // the plan's unique bytes (Plan.UniqueBytes)
	Runs   int
	Points []ScalePoint
}

// ScalePoint is one shard count: the medians over the runs.
type ScalePoint struct {
	N int
	// Wall is from the start of the N processes to the end of the last
	// (the slowest shard).
	Wall float64
	// Fetched is the response bytes of all N proxies: what the shards
	// downloaded together.
	Fetched int64
	// Largest is the unique bytes of the largest shard over the plan's
	// unique bytes ÷ N (shard.Assign): the best TN can be is T1 × Largest
	// ÷ N, however fast the shards run.
	Largest float64
	// Sent is the request bytes of the target's proxies (OpScaleCopy):
	// what the shards uploaded together.
	Sent     int64
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
	link := ""
	if s.Link > 0 {
		link = fmt.Sprintf(", and a link of %.0f MB/s each way that all streams of one proxy share (one machine's link)", s.Link/MB)
	}
	if s.Op == OpScaleCopy {
		fmt.Fprintf(&b, "Sharded copy (`-ops %s`), %s, %s profile%s: %d tags, %.1f MB unique (the plan's), median of %d run(s). Each of the N processes runs `regvault copy --plan plan.json --shard I/N --from-resolve <source>:<its source proxy> <its target proxy>` into one new target registry, through its own proxies of the profile (to the source, to the target); wall is until the last shard ends; the target's tags, digests and referrers equal those of N = 1 (checked).\n\n", OpScaleCopy, s.Workload, s.Profile, link, s.Tags, float64(s.Unique)/1e6, s.Runs)
		b.WriteString("| N | wall (slowest shard) | speedup | efficiency T1/(N×TN) | largest shard / (unique ÷ N) | fetched, all shards | fetched / unique | sent, all shards | requests |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, p := range s.Points {
			fmt.Fprintf(&b, "| %d | %.2f s | %.2f× | %.0f%% | %.3f | %.1f MB | %.3f | %.1f MB | %d |\n", p.N, p.Wall, s.Speedup(p), 100*s.Efficiency(p), p.Largest, float64(p.Fetched)/1e6, float64(p.Fetched)/float64(max(s.Unique, 1)), float64(p.Sent)/1e6, p.Requests)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "Sharded backup (`-ops %s`), %s, %s profile%s: %d tags, %.1f MB unique (the plan's), median of %d run(s). Each of the N processes runs `regvault backup --plan plan.json --shard I/N --output part-I.tar --plain-http --resolve <source>:<its proxy>` through its own proxy of the profile; wall is until the last shard ends.\n\n", OpScale, s.Workload, s.Profile, link, s.Tags, float64(s.Unique)/1e6, s.Runs)
	b.WriteString("| N | wall (slowest shard) | speedup | efficiency T1/(N×TN) | largest shard / (unique ÷ N) | fetched, all shards | fetched / unique | requests |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range s.Points {
		fmt.Fprintf(&b, "| %d | %.2f s | %.2f× | %.0f%% | %.3f | %.1f MB | %.3f | %d |\n", p.N, p.Wall, s.Speedup(p), 100*s.Efficiency(p), p.Largest, float64(p.Fetched)/1e6, float64(p.Fetched)/float64(max(s.Unique, 1)), p.Requests)
	}
	return b.String()
}

// runScale plans the workload at host (unshaped), then runs the shards of
// op (OpScale, OpScaleCopy: its targets are registries of distBin, ""
// for $REGVAULT_DISTRIBUTION).
func runScale(ctx context.Context, op, bin, distBin, dir, host string, w *Workload, prof Profile, runs int, logf func(string, ...any)) (*Scale, error) {
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
	s := &Scale{Op: op, Workload: w.Name(), Profile: prof.Name, Link: prof.Link, Tags: p.TagCount(), Unique: p.UniqueBytes(), Runs: runs}
	var want []string // the target of the first copy, N = 1
	for _, n := range ScaleShards {
		a, err := shard.Assign(p, n)
		if err != nil {
			return nil, err
		}
		var largest int64
		for _, sh := range a.Shards {
			largest = max(largest, sh.Bytes)
		}
		var pts []ScalePoint
		for k := 0; k < runs; k++ {
			run := filepath.Join(dir, fmt.Sprintf("n%d-%d", n, k))
			var pt ScalePoint
			if op == OpScaleCopy {
				var got []string
				pt, got, err = runCopyShards(ctx, bin, distBin, run, planPath, host, w, prof, n)
				if err == nil && want == nil {
					want = got
				} else if err == nil && !slices.Equal(got, want) {
					err = fmt.Errorf("the target of %d shards differs from that of one run: %s", n, firstDiff(want, got))
				}
			} else {
				pt, err = runShards(ctx, bin, run, planPath, host, prof, n)
			}
			if err != nil {
				return nil, err
			}
			logf("  %s %s N=%d run %d/%d: %.2f s, %.1f MB fetched, %.1f MB sent, %d requests", prof.Name, op, n, k+1, runs, pt.Wall, float64(pt.Fetched)/1e6, float64(pt.Sent)/1e6, pt.Requests)
			pts = append(pts, pt)
		}
		slices.SortFunc(pts, func(a, b ScalePoint) int { return int((a.Wall - b.Wall) * 1e6) })
		pt := pts[len(pts)/2]
		pt.Largest = float64(largest) * float64(n) / float64(max(s.Unique, 1))
		s.Points = append(s.Points, pt)
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
	pt := ScalePoint{N: n}
	if err := runAll(cmds, outs, &pt); err != nil {
		return pt, err
	}
	for _, px := range pxs {
		st := px.Stats()
		pt.Fetched += st.BytesOut
		pt.Requests += st.Total()
	}
	return pt, nil
}

// runAll runs cmds at once and sets pt.Wall to when the last ended.
func runAll(cmds []*exec.Cmd, outs []strings.Builder, pt *ScalePoint) error {
	n := len(cmds)
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
	pt.Wall = time.Since(start).Seconds()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("shard %d/%d: %w\n%s", i, n, err, outs[i].String())
		}
	}
	return nil
}

// runCopyShards runs n shards of copy at once into a new target registry,
// each behind its own proxy to the source and to the target, and gives the
// target's state (targetState).
func runCopyShards(ctx context.Context, bin, distBin, dir, planPath, host string, w *Workload, prof Profile, n int) (ScalePoint, []string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ScalePoint{}, nil, err
	}
	defer os.RemoveAll(dir)
	target, err := StartRegistry(distBin, dir)
	if err != nil {
		return ScalePoint{}, nil, err
	}
	defer target.Close()
	var from, to []*Proxy
	defer func() {
		for _, px := range append(from, to...) {
			px.Close()
		}
	}()
	cmds := make([]*exec.Cmd, n)
	outs := make([]strings.Builder, n)
	for i := range n {
		fpx, err := StartProxy(host, prof)
		if err != nil {
			return ScalePoint{}, nil, err
		}
		from = append(from, fpx)
		tpx, err := StartProxy(target.BackendHost(), prof)
		if err != nil {
			return ScalePoint{}, nil, err
		}
		to = append(to, tpx)
		cmds[i] = exec.CommandContext(ctx, bin, "copy", "--plan", planPath, "--shard", fmt.Sprintf("%d/%d", i, n),
			"--from-plain-http", "--to-plain-http", "--no-tty", "--from-resolve", host+":"+fpx.Addr, tpx.Addr)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
	}
	pt := ScalePoint{N: n}
	if err := runAll(cmds, outs, &pt); err != nil {
		return pt, nil, err
	}
	for _, px := range from {
		st := px.Stats()
		pt.Fetched += st.BytesOut
		pt.Requests += st.Total()
	}
	for _, px := range to {
		st := px.Stats()
		pt.Sent += st.BytesIn
		pt.Requests += st.Total()
	}
	state, err := targetState(ctx, target.BackendHost(), w)
	return pt, state, err
}

// targetState is what a copy of w left in the registry at host: every
// tag of its repositories (as the registry lists them) with its digest,
// and which of w's referrers each repository holds, one sorted line each.
func targetState(ctx context.Context, host string, w *Workload) ([]string, error) {
	c := newClient(host, 4)
	defer c.close()
	var out []string
	for _, r := range w.Repos {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v2/"+r.Name+"/tags/list", nil)
		resp, err := c.do(req, http.StatusOK, http.StatusNotFound)
		if err != nil {
			return nil, err
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil && resp.StatusCode == http.StatusOK {
			return nil, fmt.Errorf("tags of %s: %w", r.Name, err)
		}
		for _, tag := range list.Tags {
			d, err := c.headManifest(ctx, r.Name, tag)
			if err != nil {
				return nil, err
			}
			out = append(out, r.Name+":"+tag+" "+d)
		}
		for _, tg := range r.Tags {
			for _, rf := range tg.Referrers {
				d, err := c.headManifest(ctx, r.Name, rf.Digest)
				if err != nil {
					return nil, err
				}
				out = append(out, r.Name+"@"+rf.Digest+" referrer present="+fmt.Sprint(d == rf.Digest))
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// firstDiff names the first line of want or got the other lacks.
func firstDiff(want, got []string) string {
	for _, l := range want {
		if !slices.Contains(got, l) {
			return "lacks " + l
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			return "has " + l + " besides"
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(got), len(want))
}
