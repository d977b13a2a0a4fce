package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ops.
const (
	OpBackup  = "backup"
	OpRestore = "restore"
	OpPlan    = "plan" // regvault backup --dry-run: resolve and walk only
	OpCopy    = "copy" // registry to registry, both ends behind the profile
)

// The reference rows of a copy section: regvault's own backup and
// restore of the same set, measured in the same runs, which a copy (the
// two overlapped) should not be much slower than.
const (
	RowRefBackup  = "regvault backup"
	RowRefRestore = "regvault restore"
)

// Config is one invocation of the harness.
type Config struct {
	Workloads []string
	Profiles  []Profile
	Tools     []string
	Ops       []string
	Runs      int
	Options   Options
	Seed      string

	CacheDir string // <cache>/regvault/bench: bin/, seed/, results/
	WorkDir  string // where the run's files go; "" for os.TempDir()
	Root     string // the regvault module root
	Self     string // this program (for the baseline child)
	DistBin  string // the distribution registry binary; "" for $REGVAULT_DISTRIBUTION

	// DocPath is where the report goes ("" for nowhere); ResultsDir keeps
	// each section's results, from which the report is assembled ("" to
	// not keep them: the report then has this invocation's sections only).
	DocPath    string
	ResultsDir string

	// ProfileDir, if set, gets a CPU and a heap profile of every regvault
	// process (regvault is built with the hook of profile.go).
	ProfileDir string
	// TraceDir, if set, gets every request of every run (tab-separated,
	// from the proxy) and the log a summary of each.
	TraceDir string

	// Link is the cap, bytes per second each way, that all streams of one
	// proxy of OpScale and OpScaleCopy share (Profile.Link): one machine's
	// link. 0: none, the profile's per-stream cap only.
	Link float64

	// Note is said under every table of this run (the machine's load,
	// say); "" for nothing.
	Note string

	// SweepSVG is where OpSweep writes its plot ("" for nowhere).
	SweepSVG string

	Timeout     time.Duration // per tool run
	Keep        bool          // keep the work directory
	NoInstall   bool
	CommandLine string
	Out         io.Writer
}

// setDefaults gives a run at least one run of each tool and a limit per
// tool run.
func (cfg *Config) setDefaults() {
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
}

// logf prints a line of progress to cfg.Out.
func (cfg *Config) logf(format string, args ...any) { fmt.Fprintf(cfg.Out, format+"\n", args...) }

// Run runs the matrix: for each workload a seeded source registry, for
// each profile a proxy in front of it, and each tool's backup and restore
// Runs times (tools in a different order each run), then the report.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	logf := cfg.logf
	work, err := os.MkdirTemp(cfg.WorkDir, "regvault-bench-")
	if err != nil {
		return err
	}
	if cfg.Keep {
		logf("work directory (kept): %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	for _, d := range []string{"home", "tmp"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return err
		}
	}

	logf("tools:")
	buildDir := filepath.Join(work, "bin")
	if cfg.ProfileDir != "" {
		buildDir = cfg.ProfileDir // pprof reads the binary next to its profiles
	}
	tb := &Toolbox{BinDir: filepath.Join(cfg.CacheDir, "bin"), BuildDir: buildDir, Root: cfg.Root, Self: cfg.Self, Logf: logf, NoInstall: cfg.NoInstall, Profile: cfg.ProfileDir != ""}
	for _, d := range []string{cfg.ProfileDir, cfg.TraceDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	tools, notes, err := tb.Setup(ctx, cfg.Tools)
	if err != nil {
		return err
	}
	for _, t := range tools {
		if t.NoRestore != "" && contains(cfg.Ops, OpRestore) {
			logf("  note: %s", t.NoRestore)
		}
		if t.NoCopy != "" && contains(cfg.Ops, OpCopy) {
			logf("  note: %s", t.NoCopy)
		}
	}
	m := Machine()
	logf("machine: %s", m)

	r := &runner{cfg: cfg, work: work, tools: tools, logf: logf, timeBin: gnuTime(), sweeps: map[string]*Sweep{}}
	if r.timeBin == "" {
		logf("note: no GNU time (Debian: apt-get install time): peak RSS comes from wait4 and is at least the harness's own")
	}
	var planScale *PlanScale
	if contains(cfg.Ops, OpPlanScale) {
		logf("\n== restore planning, one repository with many tags")
		var bin string
		for _, t := range tools {
			if t.Name == ToolRegvault {
				bin = t.Path
			}
		}
		if bin == "" {
			return fmt.Errorf("-ops %s needs the regvault tool", OpPlanScale)
		}
		sizes := PlanScaleTags
		if cfg.Options.Quick {
			sizes = []int{1_000, 4_000, 10_000}
		}
		if planScale, err = runPlanScale(ctx, bin, work, sizes, cfg.Runs, logf); err != nil {
			return err
		}
		planScale.CommandLine = cfg.CommandLine
		fmt.Fprint(cfg.Out, "\n"+planScale.Markdown())
		if cfg.ResultsDir != "" {
			if err := savePlanScale(cfg.ResultsDir, planScale); err != nil {
				return err
			}
		}
	}
	var sections []*Section
	workloads := cfg.Workloads
	if !contains(cfg.Ops, OpBackup) && !contains(cfg.Ops, OpRestore) && !contains(cfg.Ops, OpPlan) && !contains(cfg.Ops, OpCopy) && !contains(cfg.Ops, OpScale) && !contains(cfg.Ops, OpSweep) {
		workloads = nil // planscale alone: nothing to seed
	}
	for _, name := range workloads {
		spec, err := NewSpec(name, cfg.Seed, cfg.Options)
		if err != nil {
			return err
		}
		logf("\n== workload %s (seed %q)", name, cfg.Seed)
		src, err := OpenSource(ctx, cfg.DistBin, cfg.CacheDir, work, spec, logf)
		if err != nil {
			return err
		}
		secs, err := r.workload(ctx, src)
		src.Close()
		sections = append(sections, secs...)
		if err != nil {
			return err
		}
	}

	// Interrupted: the runs cut short are no results.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.finishSweeps(); err != nil {
		return err
	}
	rep := &Report{Machine: m, Tools: tools, ToolNotes: notes, Sections: sections, PlanScale: planScale, Generated: time.Now().UTC().Format(time.RFC3339)}
	if cfg.ResultsDir != "" {
		rep.PlanScale = loadPlanScale(cfg.ResultsDir)
		if err := saveSections(cfg.ResultsDir, sections); err != nil {
			return err
		}
		all, err := loadSections(cfg.ResultsDir)
		if err != nil {
			return err
		}
		rep.Sections = all
	}
	if cfg.DocPath != "" {
		if old, err := os.ReadFile(cfg.DocPath); err == nil {
			rep.MergeDoc(string(old))
		}
		if err := os.WriteFile(cfg.DocPath, []byte(rep.Markdown()), 0o644); err != nil {
			return err
		}
		logf("\nwrote %s", cfg.DocPath)
	}
	logf("\n%s", rep.TargetsText())
	return nil
}

// WriteReport writes the report at docPath from the sections kept in
// resultsDir, without running anything, and prints the targets to out.
func WriteReport(resultsDir, docPath string, out io.Writer) error {
	secs, err := loadSections(resultsDir)
	if err != nil {
		return err
	}
	if len(secs) == 0 {
		return fmt.Errorf("no results in %s: run the benchmarks first", resultsDir)
	}
	rep := &Report{Machine: Machine(), Sections: secs, PlanScale: loadPlanScale(resultsDir), Generated: time.Now().UTC().Format(time.RFC3339)}
	if old, err := os.ReadFile(docPath); err == nil {
		rep.MergeDoc(string(old))
	}
	if err := os.WriteFile(docPath, []byte(rep.Markdown()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\n\n%s", docPath, rep.TargetsText())
	return nil
}

type runner struct {
	cfg   Config
	work  string
	tools []*Tool
	logf  func(string, ...any)
	// timeBin is GNU time, which measures each tool's peak RSS (see
	// gnuTime); "" to use the rusage of wait4 instead.
	timeBin string
	// srcTrace is a copy's source trace, for the timeline that its
	// target's trace completes (intoTarget).
	srcTrace *TraceOf
	// sweeps are OpSweep's results by workload, in sweepOrder.
	sweeps     map[string]*Sweep
	sweepOrder []string
}

// gnuTime is the path of GNU time, or "".
//
// The peak RSS of a process the harness starts cannot come from its own
// wait4: Go starts children with vfork, so at exec the child's ru_maxrss
// takes over the harness's high-water RSS (Linux folds the old mm's
// hiwater into signal->maxrss), and every tool would seem to use at least
// as much memory as the harness. GNU time forks from a process of about
// 1 MiB and reports its child's ru_maxrss (%M).
func gnuTime() string {
	for _, p := range []string{"/usr/bin/time", "/bin/time"} {
		out, err := exec.Command(p, "--version").CombinedOutput()
		if err == nil && strings.Contains(string(out), "GNU") {
			return p
		}
	}
	return ""
}

// readTimeRSS is the peak RSS in bytes that GNU time wrote to path (its
// last line, in KiB), or 0.
func readTimeRSS(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var kib int64
	fmt.Sscanf(strings.TrimSpace(lines[len(lines)-1]), "%d", &kib)
	return kib * 1024
}

func (r *runner) workload(ctx context.Context, src *SeededSource) ([]*Section, error) {
	w := src.Workload
	r.logf("  %s", w.Describe())
	wdir := filepath.Join(r.work, w.Name())
	if err := os.MkdirAll(wdir, 0o755); err != nil {
		return nil, err
	}
	blobList := filepath.Join(wdir, "blobs.json")
	data, _ := json.Marshal(w.Blobs)
	if err := os.WriteFile(blobList, data, 0o644); err != nil {
		return nil, err
	}
	var sections []*Section
	for _, prof := range r.cfg.Profiles {
		px, err := StartProxy(src.BackendHost(), prof)
		if err != nil {
			return sections, err
		}
		if r.cfg.TraceDir != "" {
			px.Trace()
		}
		pdir := filepath.Join(wdir, prof.Name)
		outs := map[string][]string{}
		if contains(r.cfg.Ops, OpBackup) {
			sec := r.newSection(w, prof, OpBackup)
			if err := r.backups(ctx, sec, px, pdir, blobList, w, outs, r.cfg.Runs, true); err != nil {
				px.Close()
				return sections, err
			}
			sections = append(sections, sec)
			fmt.Fprintln(r.cfg.Out)
			fmt.Fprint(r.cfg.Out, sec.Markdown())
		}
		if contains(r.cfg.Ops, OpRestore) {
			if len(outs) == 0 {
				// Restore alone: make the backups to restore, unmeasured,
				// over a loopback proxy.
				r.logf("  making the backups to restore from (not measured)")
				lp, err := StartProxy(src.BackendHost(), ProfileLoopback)
				if err != nil {
					px.Close()
					return sections, err
				}
				err = r.backups(ctx, r.newSection(w, ProfileLoopback, OpBackup), lp, pdir, blobList, w, outs, 1, false)
				lp.Close()
				if err != nil {
					px.Close()
					return sections, err
				}
			}
			sec := r.newSection(w, prof, OpRestore)
			if err := r.restores(ctx, sec, prof, src, blobList, w, outs); err != nil {
				px.Close()
				return sections, err
			}
			sections = append(sections, sec)
			fmt.Fprintln(r.cfg.Out)
			fmt.Fprint(r.cfg.Out, sec.Markdown())
		}
		if contains(r.cfg.Ops, OpCopy) {
			sec := r.newSection(w, prof, OpCopy)
			if err := r.copies(ctx, sec, px, prof, pdir, w); err != nil {
				px.Close()
				return sections, err
			}
			sections = append(sections, sec)
			fmt.Fprintln(r.cfg.Out)
			fmt.Fprint(r.cfg.Out, sec.Markdown())
		}
		if contains(r.cfg.Ops, OpPlan) {
			sec := r.newSection(w, prof, OpPlan)
			if err := r.plans(ctx, sec, px, pdir, w); err != nil {
				px.Close()
				return sections, err
			}
			sections = append(sections, sec)
			fmt.Fprintln(r.cfg.Out)
			fmt.Fprint(r.cfg.Out, sec.Markdown())
		}
		if contains(r.cfg.Ops, OpSweep) {
			if err := r.sweep(ctx, px, prof, pdir, blobList, w); err != nil {
				px.Close()
				return sections, err
			}
		}
		for _, op := range []string{OpScale, OpScaleCopy} {
			if !contains(r.cfg.Ops, op) {
				continue
			}
			if err := r.scale(ctx, op, src, prof, pdir, w); err != nil {
				px.Close()
				return sections, err
			}
		}
		px.Close()
		if !r.cfg.Keep {
			os.RemoveAll(pdir)
		}
	}
	return sections, nil
}

// scale runs OpScale or OpScaleCopy and prints its table (scale.go). The
// proxies get the link cap of Config.Link.
func (r *runner) scale(ctx context.Context, op string, src *SeededSource, prof Profile, pdir string, w *Workload) error {
	prof.Link = r.cfg.Link
	for _, t := range r.tools {
		if t.Name == ToolRegvault {
			s, err := runScale(ctx, op, t.Path, r.cfg.DistBin, filepath.Join(pdir, op), src.BackendHost(), w, prof, r.cfg.Runs, r.logf)
			if err != nil {
				return err
			}
			fmt.Fprint(r.cfg.Out, "\n"+s.Markdown())
			return nil
		}
	}
	return fmt.Errorf("-ops %s needs the regvault tool", op)
}

// plans runs the tools' dry runs: the cost of resolving and walking the
// whole workload (requests, time, RSS) without moving a layer.
func (r *runner) plans(ctx context.Context, sec *Section, px *Proxy, pdir string, w *Workload) error {
	for _, t := range r.tools {
		row := &Row{Tool: t.Name, Version: t.Version, Command: t.PlanDoc}
		if t.Plan == nil {
			row.NA = "no dry run"
		}
		sec.Rows = append(sec.Rows, row)
	}
	for k := 0; k < r.cfg.Runs; k++ {
		for _, t := range rotate(r.tools, k) {
			row := sec.Row(t.Name)
			if row.NA != "" {
				continue
			}
			dir := filepath.Join(pdir, t.Name, fmt.Sprintf("plan-%d", k))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			px.Reset()
			res := r.execute(ctx, t, fmt.Sprintf("%s-%s-plan-%d", w.Name(), px.profile.Name, k), t.Plan(Env{W: w, Host: px.Addr, Dir: dir}), filepath.Join(dir, "..", fmt.Sprintf("plan-%d.log", k)))
			res.Stats = px.Stats()
			if res.Err == "" {
				res.Check = "ok"
				if res.Stats.BytesOut > w.UniqueBytes()/2 && w.UniqueBytes() > 10*MB {
					res.Check = fmt.Sprintf("a dry run downloaded %s", mbString(res.Stats.BytesOut))
				}
			}
			row.Runs = append(row.Runs, res)
			r.logf("  %s %s plan run %d/%d: %s", sec.Profile, t.Name, k+1, r.cfg.Runs, res.Line(sec.UniqueBytes))
		}
	}
	return nil
}

func (r *runner) newSection(w *Workload, p Profile, op string) *Section {
	return &Section{
		Workload: w.Name(), Base: w.Spec.Name, About: w.Describe(), UniqueBytes: w.UniqueBytes(), BlobBytes: w.BlobBytes(),
		Repos: len(w.Repos), Tags: w.TagCount(), Referrers: w.Referrers(), Blobs: len(w.Blobs), Manifests: len(w.Manifests),
		Profile: p.Name, ProfileAbout: p.Describe(), Op: op,
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), CommandLine: r.cfg.CommandLine, Runs: r.cfg.Runs,
		Seed: r.cfg.Seed, Quick: r.cfg.Options.Quick, Machine: Machine().String(),
		Notes: notes(r.cfg.Note),
	}
}

func notes(note string) []string {
	if note == "" {
		return nil
	}
	return []string{note}
}

// rotate is the tools in the order for run k: each run starts with a
// different tool, so that no tool always runs first (cold caches) or
// right after the same other tool.
func rotate(tools []*Tool, k int) []*Tool {
	n := len(tools)
	out := make([]*Tool, n)
	for i := range tools {
		out[i] = tools[(i+k)%n]
	}
	return out
}

func (r *runner) row(sec *Section, t *Tool, op string) *Row {
	for _, row := range sec.Rows {
		if row.Tool == t.Name {
			return row
		}
	}
	doc := t.BackupDoc
	switch op {
	case OpRestore:
		doc = t.RestoreDoc
	case OpCopy:
		doc = t.CopyDoc
	}
	row := &Row{Tool: t.Name, Version: t.Version, Command: doc}
	sec.Rows = append(sec.Rows, row)
	return row
}

func (r *runner) backups(ctx context.Context, sec *Section, px *Proxy, pdir, blobList string, w *Workload, outs map[string][]string, runs int, measured bool) error {
	for _, t := range r.tools {
		if row := r.row(sec, t, OpBackup); t.Backup == nil {
			row.NA = "no backup: copies registry to registry only"
		}
	}
	for k := 0; k < runs; k++ {
		for _, t := range rotate(r.tools, k) {
			if t.Backup == nil {
				continue
			}
			dir := filepath.Join(pdir, t.Name, fmt.Sprintf("backup-%d", k))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			cmds, out := t.Backup(Env{W: w, Host: px.Addr, Dir: dir, BlobList: blobList})
			px.Reset()
			res := r.execute(ctx, t, fmt.Sprintf("%s-%s-backup-%d", w.Name(), px.profile.Name, k), cmds, filepath.Join(dir, "..", fmt.Sprintf("backup-%d.log", k)))
			res.Stats = px.Stats()
			if tr := r.trace(px, fmt.Sprintf("%s-%s-backup-%s-%d", w.Name(), px.profile.Name, t.Name, k), res); tr != nil && measured {
				r.timeline(fmt.Sprintf("%s · %s · backup · %s · run %d", w.Name(), px.profile.Name, t.Name, k+1), res, renamedAt(out, res), *tr)
			}
			if res.Err == "" {
				res.Check = checkBackup(t, w, out)
			}
			r.row(sec, t, OpBackup).Runs = append(r.row(sec, t, OpBackup).Runs, res)
			if measured {
				r.logf("  %s %s run %d/%d: %s", sec.Profile, t.Name, k+1, runs, res.Line(sec.UniqueBytes))
			} else if res.Err != "" || res.Check != "ok" {
				r.logf("  %s backup (for restore) failed: %s", t.Name, res.Line(sec.UniqueBytes))
			}
			// Keep the newest backup of each tool for the restores.
			if prev, ok := outs[t.Name]; ok && len(prev) > 0 {
				os.RemoveAll(filepath.Dir(prev[0]))
			}
			if res.Err == "" && res.Check == "ok" {
				outs[t.Name] = out
			} else {
				delete(outs, t.Name)
				if !r.cfg.Keep {
					os.RemoveAll(dir)
				}
			}
		}
	}
	return nil
}

func (r *runner) restores(ctx context.Context, sec *Section, prof Profile, src *SeededSource, blobList string, w *Workload, outs map[string][]string) error {
	for _, t := range r.tools {
		row := r.row(sec, t, OpRestore)
		switch {
		case t.NoRestore != "":
			row.NA = t.NoRestore
		case outs[t.Name] == nil:
			row.NA = "no backup to restore (the backup failed)"
		}
	}
	for k := 0; k < r.cfg.Runs; k++ {
		for _, t := range rotate(r.tools, k) {
			row := r.row(sec, t, OpRestore)
			if row.NA != "" {
				continue
			}
			target, err := StartRegistry(r.cfg.DistBin, r.work)
			if err != nil {
				return err
			}
			tpx, err := StartProxy(target.BackendHost(), prof)
			if err != nil {
				target.Close()
				return err
			}
			if r.cfg.TraceDir != "" {
				tpx.Trace()
			}
			in := outs[t.Name]
			cmds := t.Restore(Env{W: w, In: in, Src: src.BackendHost(), Target: tpx.Addr, BlobList: blobList})
			res := r.execute(ctx, t, fmt.Sprintf("%s-%s-restore-%d", w.Name(), prof.Name, k), cmds, filepath.Join(filepath.Dir(filepath.Dir(in[0])), fmt.Sprintf("restore-%d.log", k)))
			res.Stats = tpx.Stats()
			if tr := r.trace(tpx, fmt.Sprintf("%s-%s-restore-%s-%d", w.Name(), prof.Name, t.Name, k), res); tr != nil {
				r.timeline(fmt.Sprintf("%s · %s · restore · %s · run %d", w.Name(), prof.Name, t.Name, k+1), res, -1, *tr)
			}
			if res.Err == "" {
				res.Check = checkRestore(ctx, t, w, target.BackendHost())
			}
			tpx.Close()
			target.Close()
			row.Runs = append(row.Runs, res)
			r.logf("  %s %s restore run %d/%d: %s", prof.Name, t.Name, k+1, r.cfg.Runs, res.Line(sec.UniqueBytes))
		}
	}
	return nil
}

// copies runs each tool's registry-to-registry copy of w from the source
// behind px into a new, empty target registry behind its own proxy of the
// same profile, and, in the same rotation, regvault's backup (through px)
// and restore (into a new target) of the same set as reference rows. A
// run's Stats are the source's counts, its Target the target's; a copy
// counts only if the target then has every tag with the source's digest
// (and the referrers, for the tools that carry them).
func (r *runner) copies(ctx context.Context, sec *Section, px *Proxy, prof Profile, pdir string, w *Workload) error {
	type job struct {
		row *Row
		run func(k int) (RunResult, error)
	}
	var jobs []job
	var rv *Tool
	for _, t := range r.tools {
		row := r.row(sec, t, OpCopy)
		switch {
		case t.Copy == nil:
			row.NA = "no registry-to-registry copy"
		case t.NoCopy != "":
			row.NA = t.NoCopy
		}
		if t.Name == ToolRegvault {
			rv = t
		}
		if row.NA != "" {
			continue
		}
		t := t
		jobs = append(jobs, job{row, func(k int) (RunResult, error) {
			dir := filepath.Join(pdir, t.Name, fmt.Sprintf("copy-%d", k))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return RunResult{}, err
			}
			defer r.remove(dir)
			return r.intoTarget(ctx, prof, fmt.Sprintf("%s-%s-copy-%s-%d", w.Name(), prof.Name, t.Name, k), func(target string) (RunResult, error) {
				px.Reset()
				res := r.execute(ctx, t, fmt.Sprintf("%s-%s-copy-%d", w.Name(), prof.Name, k), t.Copy(Env{W: w, Src: px.Addr, Target: target, Dir: dir}), filepath.Join(pdir, t.Name, fmt.Sprintf("copy-%d.log", k)))
				res.Stats = px.Stats()
				r.srcTrace = r.trace(px, fmt.Sprintf("%s-%s-copy-%s-%d-source", w.Name(), prof.Name, t.Name, k), res)
				if r.srcTrace != nil {
					r.srcTrace.Label = "source"
				}
				return res, nil
			}, t, w)
		}})
	}
	if rv != nil && rv.Backup != nil && rv.NoRestore == "" {
		bRow := &Row{Tool: RowRefBackup, Version: rv.Version, Command: rv.BackupDoc}
		rRow := &Row{Tool: RowRefRestore, Version: rv.Version, Command: rv.RestoreDoc}
		sec.Rows = append(sec.Rows, bRow, rRow)
		jobs = append(jobs, job{bRow, func(k int) (RunResult, error) {
			dir := filepath.Join(pdir, "reference", fmt.Sprintf("backup-%d", k))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return RunResult{}, err
			}
			defer r.remove(dir)
			cmds, out := rv.Backup(Env{W: w, Host: px.Addr, Dir: dir})
			px.Reset()
			res := r.execute(ctx, rv, fmt.Sprintf("%s-%s-copyref-backup-%d", w.Name(), prof.Name, k), cmds, dir+".log")
			res.Stats = px.Stats()
			r.trace(px, fmt.Sprintf("%s-%s-copyref-backup-%d-source", w.Name(), prof.Name, k), res)
			if res.Err == "" {
				res.Check = checkBackup(rv, w, out)
			}
			if !res.OK() {
				rRow.Runs = append(rRow.Runs, RunResult{Err: "no backup to restore (the reference backup failed)"})
				return res, nil
			}
			r.logf("  %s %s run %d/%d: %s", sec.Profile, RowRefBackup, k+1, r.cfg.Runs, res.Line(sec.UniqueBytes))
			// The restore right after, into a new target: the other half.
			rres, err := r.intoTarget(ctx, prof, fmt.Sprintf("%s-%s-copyref-restore-%d", w.Name(), prof.Name, k), func(target string) (RunResult, error) {
				return r.execute(ctx, rv, fmt.Sprintf("%s-%s-copyref-restore-%d", w.Name(), prof.Name, k), rv.Restore(Env{W: w, In: out, Target: target}), dir+"-restore.log"), nil
			}, rv, w)
			if err != nil {
				return res, err
			}
			rRow.Runs = append(rRow.Runs, rres)
			r.logf("  %s %s run %d/%d: %s", sec.Profile, RowRefRestore, k+1, r.cfg.Runs, rres.Line(sec.UniqueBytes))
			return res, nil
		}})
	}
	for k := 0; k < r.cfg.Runs; k++ {
		for i := range jobs {
			j := jobs[(i+k)%len(jobs)]
			res, err := j.run(k)
			if err != nil {
				return err
			}
			j.row.Runs = append(j.row.Runs, res)
			if j.row.Tool != RowRefBackup {
				r.logf("  %s %s copy run %d/%d: %s", sec.Profile, j.row.Tool, k+1, r.cfg.Runs, res.Line(sec.UniqueBytes))
			}
		}
	}
	return nil
}

// remove removes what a run wrote, unless the work directory is kept.
func (r *runner) remove(dir string) {
	if !r.cfg.Keep {
		os.RemoveAll(dir)
	}
}

// intoTarget starts an empty target registry behind a proxy of profile
// prof, runs do with the proxy's address, and checks the target against w
// as t's restore would be checked. The result's Target is what the target
// proxy counted.
func (r *runner) intoTarget(ctx context.Context, prof Profile, traceName string, do func(target string) (RunResult, error), t *Tool, w *Workload) (RunResult, error) {
	target, err := StartRegistry(r.cfg.DistBin, r.work)
	if err != nil {
		return RunResult{}, err
	}
	defer target.Close()
	tpx, err := StartProxy(target.BackendHost(), prof)
	if err != nil {
		return RunResult{}, err
	}
	defer tpx.Close()
	if r.cfg.TraceDir != "" {
		tpx.Trace()
	}
	res, err := do(tpx.Addr)
	if err != nil {
		return res, err
	}
	ts := tpx.Stats()
	res.Target = &ts
	src := r.srcTrace
	r.srcTrace = nil
	if tr := r.trace(tpx, traceName+"-target", res); tr != nil && src != nil {
		tr.Label = "target"
		r.timeline(timelineName(traceName), res, -1, *src, *tr)
	}
	if res.Err == "" {
		res.Check = checkRestore(ctx, t, w, target.BackendHost())
	}
	return res, nil
}

// execute runs cmds one after the other, each measured with wait4: the
// wall time of them all, their peak RSS (the largest of any one), their
// CPU time (all of them). The first failure stops the run.
func (r *runner) execute(ctx context.Context, t *Tool, what string, cmds []Command, logPath string) RunResult {
	var res RunResult
	logf, err := os.Create(logPath)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer logf.Close()
	env := append(os.Environ(),
		"HOME="+filepath.Join(r.work, "home"),
		"DOCKER_CONFIG="+filepath.Join(r.work, "home", ".docker"),
		"TMPDIR="+filepath.Join(r.work, "tmp"),
	)
	if r.cfg.ProfileDir != "" && t.Name == ToolRegvault {
		prefix := filepath.Join(r.cfg.ProfileDir, what)
		env = append(env, ProfileEnv+"="+prefix)
		r.logf("  profiling regvault: %s-<pid>.pprof", prefix)
	}
	// Write back what earlier runs left dirty (their outputs, the
	// registries' files), so that this run does not pay for it.
	syscall.Sync()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	start := time.Now()
	res.Start = start
	rssFile := logPath + ".rss"
	for _, c := range cmds {
		for path, data := range c.Files {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				res.Err = err.Error()
				return res
			}
			fmt.Fprintf(logf, "# %s:\n%s\n", path, data)
		}
		fmt.Fprintf(logf, "$ %s\n", c)
		off, _ := logf.Seek(0, io.SeekCurrent)
		args := c.Args
		if r.timeBin != "" {
			args = append([]string{r.timeBin, "-f", "%M", "-o", rssFile}, args...)
			os.Remove(rssFile)
		}
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		// Its own process group, so that a timeout ends the tool and not
		// only the time wrapper.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		res.Procs++
		if ps := cmd.ProcessState; ps != nil {
			if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
				// CPU of the process and of its children (the tool,
				// under the time wrapper).
				res.CPUSec += tvSec(ru.Utime) + tvSec(ru.Stime)
				rss := ru.Maxrss * 1024
				if r.timeBin != "" {
					rss = readTimeRSS(rssFile)
				}
				if rss > res.MaxRSS {
					res.MaxRSS = rss
				}
			}
		}
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = fmt.Errorf("timed out after %s", r.cfg.Timeout)
			}
			tail, _ := os.ReadFile(logPath)
			if int64(len(tail)) > off {
				tail = tail[off:]
			}
			res.Err = fmt.Sprintf("%s %s: %v: %s", filepath.Base(c.Args[0]), c.Args[1], err, strings.ReplaceAll(lastLines(string(tail), 3), "\n", " | "))
			break
		}
	}
	res.WallSec = time.Since(start).Seconds()
	return res
}

// trace writes the requests px recorded to the trace directory and logs
// their summary; it returns them for a timeline of res (nil when not
// tracing).
func (r *runner) trace(px *Proxy, name string, res RunResult) *TraceOf {
	if r.cfg.TraceDir == "" {
		return nil
	}
	ev := px.Events()
	path := filepath.Join(r.cfg.TraceDir, name+".tsv")
	if err := WriteTrace(path, ev); err != nil {
		r.logf("  trace: %v", err)
	}
	r.logf("  trace %s: %s", name, TraceSummary(ev))
	return &TraceOf{Events: ev, Offset: res.Start.Sub(px.T0())}
}

// timeline prints the timeline of a traced run (a markdown part, for
// docs/benchmarks.md's timeline sections).
func (r *runner) timeline(name string, res RunResult, renamed time.Duration, traces ...TraceOf) {
	if res.Start.IsZero() || res.Err != "" {
		return
	}
	tl := NewTimeline(name, time.Duration(res.WallSec*float64(time.Second)), renamed, traces...)
	fmt.Fprintf(r.cfg.Out, "\n%s\n", tl.Markdown())
}

// timelineName turns a trace's name (D1-wan-copy-regvault-0) into a
// timeline's (D1 · wan · copy · regvault · run 1).
func timelineName(trace string) string {
	parts := strings.Split(trace, "-")
	if k, err := strconv.Atoi(parts[len(parts)-1]); err == nil {
		parts[len(parts)-1] = fmt.Sprintf("run %d", k+1)
	}
	return strings.Join(parts, " · ")
}

// renamedAt is when the run's output file was renamed into place, from
// the run's start: its inode's change time (rename sets it); -1 for a
// directory or when it cannot tell.
func renamedAt(out []string, res RunResult) time.Duration {
	if len(out) != 1 || res.Start.IsZero() {
		return -1
	}
	var st syscall.Stat_t
	if err := syscall.Stat(out[0], &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return -1
	}
	return time.Unix(st.Ctim.Sec, st.Ctim.Nsec).Sub(res.Start)
}

func tvSec(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// saveSections writes each section to dir as <workload>-<profile>-<op>.json,
// replacing an older result of the same cell.
func saveSections(dir string, secs []*Section) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, s := range secs {
		data, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, s.Workload+"-"+s.Profile+"-"+s.Op+".json"), data); err != nil {
			return err
		}
	}
	return nil
}

// loadSections reads every saved section of dir, in report order.
func loadSections(dir string) ([]*Section, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var secs []*Section
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var s Section
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		secs = append(secs, &s)
	}
	sortSections(secs)
	return secs, nil
}

func sortSections(secs []*Section) {
	idx := func(list []string, s string) int {
		for i, v := range list {
			if v == s {
				return i
			}
		}
		return len(list)
	}
	profiles := []string{}
	for _, p := range AllProfiles {
		profiles = append(profiles, p.Name)
	}
	sort.SliceStable(secs, func(i, j int) bool {
		a, b := secs[i], secs[j]
		if x, y := idx(AllWorkloads, a.Base), idx(AllWorkloads, b.Base); x != y {
			return x < y
		}
		if a.Workload != b.Workload {
			return a.Workload < b.Workload
		}
		if x, y := idx(profiles, a.Profile), idx(profiles, b.Profile); x != y {
			return x < y
		}
		ops := []string{OpBackup, OpRestore, OpCopy, OpPlan}
		return idx(ops, a.Op) < idx(ops, b.Op)
	})
}
