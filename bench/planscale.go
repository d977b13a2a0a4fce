package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/regvault/regvault/internal/registrytest"
)

// OpPlanScale is restore planning at growing tag counts: `regvault restore
// --dry-run` of one repository with 10,000, 40,000 and 100,000 tags.
const OpPlanScale = "planscale"

// PlanScaleTags are the tag counts of OpPlanScale.
var PlanScaleTags = []int{10_000, 40_000, 100_000}

// planScaleFlat is how far the CPU time per tag may drift between tag
// counts (largest over smallest) for planning to count as linear.
const planScaleFlat = 1.20

// PlanScale is the result of OpPlanScale.
type PlanScale struct {
	Date        string      `json:"date"`
	Machine     string      `json:"machine"`
	CommandLine string      `json:"commandLine"`
	Runs        int         `json:"runs"`
	Points      []PlanPoint `json:"points"`
}

// PlanPoint is one tag count: the median wall and CPU time of its runs.
type PlanPoint struct {
	Tags int     `json:"tags"`
	Wall float64 `json:"wallSeconds"`
	CPU  float64 `json:"cpuSeconds"`
	Err  string  `json:"error,omitempty"`
}

// WallPerTag and CPUPerTag are in microseconds.
func (p PlanPoint) WallPerTag() float64 { return p.Wall / float64(p.Tags) * 1e6 }
func (p PlanPoint) CPUPerTag() float64  { return p.CPU / float64(p.Tags) * 1e6 }

// Spread is the largest time per tag over the smallest, by wall and by
// CPU time (1 is perfectly linear).
func (s *PlanScale) Spread() (wall, cpu float64) {
	spread := func(f func(PlanPoint) float64) float64 {
		lo, hi := 0.0, 0.0
		for i, p := range s.Points {
			v := f(p)
			if i == 0 || v < lo {
				lo = v
			}
			if v > hi {
				hi = v
			}
		}
		if lo == 0 {
			return 0
		}
		return hi / lo
	}
	return spread(PlanPoint.WallPerTag), spread(PlanPoint.CPUPerTag)
}

// runPlanScale writes a backup of one repository with each count of tags
// (a manifest of its own per tag) and times regvault's dry run of it
// against an empty in-process registry, runs times each.
func runPlanScale(ctx context.Context, regvault, work string, tags []int, runs int, logf func(string, ...any)) (*PlanScale, error) {
	dst, err := registrytest.StartInProcess()
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	out := &PlanScale{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Machine: Machine().String(), Runs: runs}
	for _, n := range tags {
		dir := filepath.Join(work, fmt.Sprintf("planscale-%d", n))
		logf("  writing a backup of one repository with %d tags", n)
		if err := WriteManyTags(dir, "src.example/many/tags", n, n); err != nil {
			return nil, err
		}
		var walls, cpus []float64
		pt := PlanPoint{Tags: n}
		for k := range runs {
			cmd := exec.CommandContext(ctx, regvault, "restore", "--plain-http", "--no-tty", "--dry-run", "-i", dir, dst.Host()+"/many/tags")
			cmd.Env = append(os.Environ(), "HOME="+work, "DOCKER_CONFIG="+filepath.Join(work, "docker"))
			start := time.Now()
			outb, err := cmd.CombinedOutput()
			wall := time.Since(start)
			if err != nil {
				pt.Err = fmt.Sprintf("%v: %s", err, lastLine(string(outb)))
				break
			}
			ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			var cpu time.Duration
			if ru != nil {
				cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			walls = append(walls, wall.Seconds())
			cpus = append(cpus, cpu.Seconds())
			logf("  %d tags, run %d/%d: %.2f s wall (%.0f µs per tag), %.2f s CPU", n, k+1, runs, wall.Seconds(), wall.Seconds()/float64(n)*1e6, cpu.Seconds())
		}
		if len(walls) > 0 {
			pt.Wall, pt.CPU = median(walls), median(cpus)
		}
		out.Points = append(out.Points, pt)
		os.RemoveAll(dir)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// Target is the OpPlanScale target for the targets table.
func (s *PlanScale) Target() Target {
	wall, cpu := s.Spread()
	var parts []string
	ok := len(s.Points) > 1
	for _, p := range s.Points {
		if p.Err != "" {
			ok = false
			parts = append(parts, fmt.Sprintf("%d tags: %s", p.Tags, p.Err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d tags: %.0f µs CPU/tag", p.Tags, p.CPUPerTag()))
	}
	measured := fmt.Sprintf("%s; largest over smallest %.2f CPU (%.2f wall)", strings.Join(parts, ", "), cpu, wall)
	return Target{Name: "restore planning linear in tags: CPU time per tag flat within 20% at 10k/40k/100k tags in one repository (restore --dry-run of a directory backup)",
		Measured: measured, Status: metOr(ok && cpu <= planScaleFlat)}
}

// Markdown is the section of the report.
func (s *PlanScale) Markdown() string {
	var b strings.Builder
	b.WriteString("### restore planning · one repository, many tags\n\n")
	b.WriteString("`regvault restore --dry-run -i <dir> <target>/many/tags` of a directory backup of one repository whose every tag is a small image manifest of its own (one shared config and layer), against an empty in-process registry: reading index.json, planning, resolving and walking every tag, the report. ")
	fmt.Fprintf(&b, "%s, median of %d run(s), `%s`. Machine: %s.\n\n", s.Date, s.Runs, s.CommandLine, s.Machine)
	b.WriteString("| tags | wall | wall per tag | CPU | CPU per tag |\n| ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range s.Points {
		if p.Err != "" {
			fmt.Fprintf(&b, "| %d | failed: %s | | | |\n", p.Tags, mdEscape(p.Err))
			continue
		}
		fmt.Fprintf(&b, "| %d | %.2f s | %.0f µs | %.2f s | %.0f µs |\n", p.Tags, p.Wall, p.WallPerTag(), p.CPU, p.CPUPerTag())
	}
	wall, cpu := s.Spread()
	fmt.Fprintf(&b, "\nTime per tag, largest over smallest: %.2f CPU, %.2f wall (linear: at most %.2f). The target is judged on CPU time (user + system of the regvault process): planning is CPU-bound, and on a machine shared with other work the wall time measures the load as much as regvault.\n\n", cpu, wall, planScaleFlat)
	return b.String()
}

// savePlanScale and loadPlanScale keep the result next to the sections
// (in a directory of its own: every *.json of dir is a section).
func savePlanScale(dir string, s *PlanScale) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, OpPlanScale), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, OpPlanScale, "result.json"), data)
}

func loadPlanScale(dir string) *PlanScale {
	data, err := os.ReadFile(filepath.Join(dir, OpPlanScale, "result.json"))
	if err != nil {
		return nil
	}
	var s PlanScale
	if json.Unmarshal(data, &s) != nil {
		return nil
	}
	return &s
}
