package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// OpSweep runs regvault's backup and restore of a workload at each fixed
// --concurrency of SweepLevels and at the default (no flag), on each
// profile: how far the default is from the best fixed level.
const OpSweep = "sweep"

// SweepTitle begins the title of the report's section of the sweep,
// which a rewrite of the report keeps (Report.MergeDoc).
const SweepTitle = "concurrency sweep"

// SweepLevels are the fixed --concurrency values of OpSweep.
var SweepLevels = []int{2, 4, 8, 16, 32}

// SweepTolerance is how much slower than the best fixed level the default
// may be on every profile and operation (the target: within 10%).
const SweepTolerance = 1.10

// Sweep is the result of OpSweep on one workload: a series per profile
// and operation.
type Sweep struct {
	Workload string
	Runs     int
	Unique   int64
	// DefaultAbout says what the default does (regvault's --help).
	DefaultAbout string
	Series       []*SweepSeries
	Note         string
}

// SweepSeries is one profile and operation: the median wall time at each
// level and at the default; 0 where no run succeeded.
type SweepSeries struct {
	Profile, Op string
	Fixed       []float64 // by SweepLevels
	Default     float64
	// Errs says what failed, if anything.
	Errs []string
}

// Best is the fastest fixed level and its time (0, 0 with none).
func (s *SweepSeries) Best() (int, float64) {
	level, best := 0, 0.0
	for i, w := range s.Fixed {
		if w > 0 && (best == 0 || w < best) {
			level, best = SweepLevels[i], w
		}
	}
	return level, best
}

// Ratio is the default's time over the best fixed level's (0 unknown).
func (s *SweepSeries) Ratio() float64 {
	_, best := s.Best()
	if best == 0 || s.Default == 0 {
		return 0
	}
	return s.Default / best
}

// Met tells whether the default is within SweepTolerance of the best on
// every series (false with any unknown).
func (sw *Sweep) Met() bool {
	for _, s := range sw.Series {
		if r := s.Ratio(); r == 0 || r > SweepTolerance {
			return false
		}
	}
	return len(sw.Series) > 0
}

func secString(w float64) string {
	if w == 0 {
		return "failed"
	}
	return fmt.Sprintf("%.2f s", w)
}

// Markdown is the table: a row per level, a column per series, the best
// fixed level of each in bold, and the default against it.
func (sw *Sweep) Markdown(svg string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Concurrency sweep (`-ops %s`), %s (%.1f MB unique): regvault backup and restore at `--concurrency N` and at the default (no flag: %s); wall time, median of %d run(s). The restore is of one backup made at the default, into an empty registry behind a proxy of the same profile.\n\n", OpSweep, sw.Workload, float64(sw.Unique)/1e6, sw.DefaultAbout, sw.Runs)
	b.WriteString("| --concurrency |")
	for _, s := range sw.Series {
		fmt.Fprintf(&b, " %s %s |", s.Profile, s.Op)
	}
	b.WriteString("\n| ---: |" + strings.Repeat(" ---: |", len(sw.Series)) + "\n")
	for i, level := range SweepLevels {
		fmt.Fprintf(&b, "| %d |", level)
		for _, s := range sw.Series {
			cell := secString(s.Fixed[i])
			if l, _ := s.Best(); l == level {
				cell = "**" + cell + "**"
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("| default |")
	for _, s := range sw.Series {
		fmt.Fprintf(&b, " %s |", secString(s.Default))
	}
	b.WriteString("\n| default / best |")
	for _, s := range sw.Series {
		r := s.Ratio()
		if r == 0 {
			b.WriteString(" — |")
			continue
		}
		l, _ := s.Best()
		verdict := "ok"
		if r > SweepTolerance {
			verdict = "**over 10%**"
		}
		fmt.Fprintf(&b, " %.2f (best %d; %s) |", r, l, verdict)
	}
	b.WriteString("\n")
	for _, s := range sw.Series {
		for _, e := range s.Errs {
			fmt.Fprintf(&b, "\n- %s %s: %s", s.Profile, s.Op, e)
		}
	}
	if sw.Note != "" {
		fmt.Fprintf(&b, "\n\n%s", sw.Note)
	}
	if svg != "" {
		fmt.Fprintf(&b, "\n\n![wall time relative to the best fixed --concurrency, per profile and operation](%s)", svg)
	}
	b.WriteString("\n")
	return b.String()
}

// SVG is a line plot of the sweep: x the level (2…32, then the default),
// y the wall time relative to the best fixed level of the series (1 = the
// best), a line per series (a colour per profile, dashed for restore),
// the default a dot, and the 10% bound a grey line. Hand-written: no
// dependency for a plot.
func (sw *Sweep) SVG() string {
	const (
		W, H                  = 640, 360
		left, right, top, bot = 56, 170, 24, 48
	)
	pw, ph := float64(W-left-right), float64(H-top-bot)
	ymax := 1.5
	for _, s := range sw.Series {
		_, best := s.Best()
		if best == 0 {
			continue
		}
		for _, w := range append(slices.Clone(s.Fixed), s.Default) {
			ymax = math.Max(ymax, w/best)
		}
	}
	ymax = math.Ceil(ymax*4) / 4
	cols := len(SweepLevels) + 1 // the default last
	x := func(i int) float64 { return float64(left) + pw*(float64(i)+0.5)/float64(cols) }
	y := func(v float64) float64 { return float64(top) + ph*(1-(v-1)/(ymax-1)) }
	colors := map[string]string{"loopback": "#1b9e77", "wan": "#d95f02", "far": "#7570b3"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13">regvault %s: wall time / best fixed --concurrency (1 = best)</text>`+"\n", left, sw.Workload)
	// Grid and y labels.
	step := 0.25
	for ymax-1 > 12*step {
		step *= 2
	}
	for v := 1.0; v <= ymax+1e-9; v += step {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(v), float64(left)+pw, y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.2f</text>`+"\n", left-6, y(v)+4, v)
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#888" stroke-dasharray="2,3"/>`+"\n", left, y(SweepTolerance), float64(left)+pw, y(SweepTolerance))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#888" text-anchor="end">+10%%</text>`+"\n", float64(left)+pw-2, y(SweepTolerance)-3)
	// X labels.
	for i := 0; i < cols; i++ {
		label := "default"
		if i < len(SweepLevels) {
			label = fmt.Sprint(SweepLevels[i])
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(i), H-bot+16, label)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">--concurrency</text>`+"\n", float64(left)+pw/2, H-bot+34)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%.0f" stroke="black"/>`+"\n", left, top, left, float64(top)+ph)
	fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", left, float64(top)+ph, float64(left)+pw, float64(top)+ph)
	// Series.
	for k, s := range sw.Series {
		_, best := s.Best()
		if best == 0 {
			continue
		}
		color := colors[s.Profile]
		if color == "" {
			color = "#666"
		}
		dash := ""
		if s.Op == OpRestore {
			dash = ` stroke-dasharray="6,4"`
		}
		var pts []string
		for i, w := range s.Fixed {
			if w > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(w/best)))
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), color, dash)
		for i, w := range s.Fixed {
			if w > 0 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", x(i), y(w/best), color)
			}
		}
		if s.Default > 0 {
			fill := color
			if s.Op == OpRestore {
				fill = "white"
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s" stroke="%s" stroke-width="2"/>`+"\n", x(cols-1), y(s.Default/best), fill, color)
		}
		// Legend.
		ly := float64(top) + 10 + 18*float64(k)
		lx := float64(W - right + 14)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly, lx+24, ly, color, dash)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s %s</text>`+"\n", lx+30, ly+4, s.Profile, s.Op)
	}
	ly := float64(top) + 10 + 18*float64(len(sw.Series)) + 8
	fmt.Fprintf(&b, `<text x="%d" y="%.0f" fill="#444">big dot: the default</text>`+"\n", W-right+14, ly)
	b.WriteString("</svg>\n")
	return b.String()
}

// sweep runs OpSweep on one profile and adds its two series to r.sweeps.
func (r *runner) sweep(ctx context.Context, px *Proxy, prof Profile, pdir, blobList string, w *Workload) error {
	var rv *Tool
	for _, t := range r.tools {
		if t.Name == ToolRegvault {
			rv = t
		}
	}
	if rv == nil {
		return fmt.Errorf("-ops %s needs the regvault tool", OpSweep)
	}
	sw := r.sweeps[w.Name()]
	if sw == nil {
		sw = &Sweep{Workload: w.Name(), Runs: r.cfg.Runs, Unique: w.UniqueBytes(), DefaultAbout: SweepDefaultAbout, Note: r.cfg.Note}
		r.sweeps[w.Name()] = sw
		r.sweepOrder = append(r.sweepOrder, w.Name())
	}
	levels := append(slices.Clone(SweepLevels), 0) // 0: the default
	name := func(l int) string {
		if l == 0 {
			return "default"
		}
		return fmt.Sprint(l)
	}
	backup := &SweepSeries{Profile: prof.Name, Op: OpBackup, Fixed: make([]float64, len(SweepLevels))}
	restore := &SweepSeries{Profile: prof.Name, Op: OpRestore, Fixed: make([]float64, len(SweepLevels))}
	walls := map[string][]float64{}
	var kept []string // a backup made at the default, for the restores
	for k := 0; k < r.cfg.Runs; k++ {
		for i := range levels {
			l := levels[(i+k)%len(levels)]
			dir := filepath.Join(pdir, "sweep", fmt.Sprintf("backup-%s-%d", name(l), k))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			cmds, out := rv.Backup(Env{W: w, Host: px.Addr, Dir: dir})
			px.Reset()
			res := r.execute(ctx, rv, fmt.Sprintf("%s-%s-sweep-backup-%s-%d", w.Name(), prof.Name, name(l), k), withConcurrency(cmds, l), dir+".log")
			res.Stats = px.Stats()
			if res.Err == "" {
				res.Check = checkBackup(rv, w, out)
			}
			r.logf("  %s sweep backup --concurrency %s run %d/%d: %s", prof.Name, name(l), k+1, r.cfg.Runs, res.Line(w.UniqueBytes()))
			if res.OK() {
				walls["backup "+name(l)] = append(walls["backup "+name(l)], res.WallSec)
				if l == 0 && kept == nil {
					kept = out
					continue
				}
			} else {
				backup.Errs = append(backup.Errs, fmt.Sprintf("--concurrency %s: %s%s", name(l), res.Err, checkNote(res)))
			}
			r.remove(dir)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for k := 0; kept != nil && k < r.cfg.Runs; k++ {
		for i := range levels {
			l := levels[(i+k)%len(levels)]
			what := fmt.Sprintf("%s-%s-sweep-restore-%s-%d", w.Name(), prof.Name, name(l), k)
			res, err := r.intoTarget(ctx, prof, what, func(target string) (RunResult, error) {
				return r.execute(ctx, rv, what, withConcurrency(rv.Restore(Env{W: w, In: kept, Target: target}), l), filepath.Join(pdir, "sweep", what+".log")), nil
			}, rv, w)
			if err != nil {
				return err
			}
			r.logf("  %s sweep restore --concurrency %s run %d/%d: %s", prof.Name, name(l), k+1, r.cfg.Runs, res.Line(w.UniqueBytes()))
			if res.OK() {
				walls["restore "+name(l)] = append(walls["restore "+name(l)], res.WallSec)
			} else {
				restore.Errs = append(restore.Errs, fmt.Sprintf("--concurrency %s: %s%s", name(l), res.Err, checkNote(res)))
			}
		}
	}
	if kept == nil {
		restore.Errs = append(restore.Errs, "no backup at the default to restore")
	}
	for _, s := range []*SweepSeries{backup, restore} {
		for i, l := range SweepLevels {
			s.Fixed[i] = medianOf(walls[s.Op+" "+name(l)])
		}
		s.Default = medianOf(walls[s.Op+" default"])
	}
	sw.Series = append(sw.Series, backup, restore)
	return ctx.Err()
}

func checkNote(res RunResult) string {
	if res.Err == "" && res.Check != "ok" {
		return "check: " + res.Check
	}
	return ""
}

// withConcurrency adds --concurrency n to regvault's command (after its
// subcommand); n = 0 leaves the default.
func withConcurrency(cmds []Command, n int) []Command {
	if n == 0 {
		return cmds
	}
	out := make([]Command, len(cmds))
	for i, c := range cmds {
		args := append(slices.Clone(c.Args[:2]), "--concurrency", fmt.Sprint(n))
		c.Args = append(args, c.Args[2:]...)
		out[i] = c
	}
	return out
}

// finishSweeps prints each sweep's table and writes the plot of the
// first to cfg.SweepSVG.
func (r *runner) finishSweeps() error {
	for i, name := range r.sweepOrder {
		sw := r.sweeps[name]
		rel := ""
		if i == 0 && r.cfg.SweepSVG != "" {
			if err := os.WriteFile(r.cfg.SweepSVG, []byte(sw.SVG()), 0o644); err != nil {
				return err
			}
			r.logf("\nwrote %s", r.cfg.SweepSVG)
			rel = filepath.Base(r.cfg.SweepSVG)
		}
		fmt.Fprint(r.cfg.Out, "\n"+sw.Markdown(rel))
		if sw.Met() {
			r.logf("\nsweep %s: the default is within 10%% of the best fixed --concurrency on every profile and operation", name)
		} else {
			r.logf("\nsweep %s: the default is NOT within 10%% of the best fixed --concurrency everywhere", name)
		}
	}
	return nil
}

// SweepDefaultAbout is what regvault does without --concurrency, for the
// sweep's table.
const SweepDefaultAbout = "adapts: from 8 blob transfers at once, raised by the registry's first answer to a small request and by the first transfers' latency (16 from 25 ms, 32 from 50 ms, or less when the registry answers a small request sooner; back to 8 if the transfers started then wait over twice as long for their first byte), then doubled while the throughput grows with it, up to 32"
