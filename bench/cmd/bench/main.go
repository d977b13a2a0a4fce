// Command bench runs regvault's benchmarks against its peers (oras, crane,
// skopeo, regsync) and a plain-HTTP baseline, and writes docs/benchmarks.md. See
// package bench. `make bench` runs the full set:
//
//	go run ./bench/cmd/bench                      # everything, 3 runs
//	go run ./bench/cmd/bench -quick               # small workloads, 1 run
//	go run ./bench/cmd/bench -w D1 -p wan -runs 5 # one workload, one profile
//
// `bench baseline get|put ...` is the baseline tool itself, which the
// harness runs as a child process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/regvault/regvault/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		if err := bench.RunBaseline(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	cacheBase := os.Getenv("XDG_CACHE_HOME")
	if cacheBase == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return err
		}
		cacheBase = filepath.Join(home, ".cache")
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/cmd/bench [flags]\n\nBenchmarks regvault against oras, crane, skopeo, regsync and a plain-HTTP\nbaseline on generated workloads; writes docs/benchmarks.md.\n\nflags:\n")
		fs.PrintDefaults()
	}
	workloads := fs.String("w", strings.Join(bench.AllWorkloads, ","), "workloads: D1 (8 repos × 3 tags, shared layers, referrers), L (≥2 GiB unique, 20 repos), S (200 repos × 5 small tags), B (one 2 GiB layer)")
	profiles := fs.String("p", "wan,loopback", "network profiles: wan (+40 ms per request, 25 MB/s per body stream), far (+150 ms per request, 10 MB/s per body stream), loopback")
	tools := fs.String("t", strings.Join(bench.AllTools, ","), "tools")
	ops := fs.String("ops", "backup,restore,copy,planscale", "operations: backup, restore, copy (registry to registry, source and target each behind a proxy of the profile; with regvault's backup and restore of the same set as reference rows), plan (regvault backup --dry-run), planscale (regvault restore --dry-run of one repository with 10k/40k/100k tags), serve (regvault serve of a .tar of L next to the distribution registry: pull throughput, peak RSS under 100 blob GETs, time to first byte; the Serve section at the end of the report), scale (regvault plan, then N = 1, 2, 4 shards of regvault backup --plan --shard at once, each behind its own proxy of the profile: wall, speedup, efficiency, bytes fetched against the plan's unique bytes; printed, not written to the report), scalecopy (the same with regvault copy --plan --shard into one new target, each shard behind its own proxies to the source and the target; the target is checked against N = 1's), sweep (regvault backup and restore at --concurrency 2, 4, 8, 16, 32 and at the default, on each profile: a table printed, the plot written to -sweep-svg)")
	link := fs.Float64("link", 0, "for -ops scale and scalecopy: a cap in MB/s, each way, that all streams of one proxy share (one machine's link; the profiles cap each stream only); 0 for none")
	runs := fs.Int("runs", 3, "runs of each tool per table; the median is reported (default 1 with -quick)")
	quick := fs.Bool("quick", false, "small workloads (D1 layers 1/16, L 64 MiB, S 20 repos, B 128 MiB), 1 run; nothing saved unless -doc or -save is given")
	seed := fs.String("seed", "regvault-bench", "seed of the generated content")
	lsize := fs.Int64("lsize", 0, "unique size of L in MiB (default 2048; quick 64)")
	bsize := fs.Int64("bsize", 0, "size of B's layer in MiB (default 2048; quick 128)")
	srepos := fs.Int("srepos", 0, "repositories of S, 5 tags each (default 200; quick 20)")
	cache := fs.String("cache", filepath.Join(cacheBase, "regvault", "bench"), "cache: peers (bin/), seeded registries (seed/), results (results/)")
	workdir := fs.String("workdir", "", "where backups and registries of a run go (default: the system temp directory); same disk as the cache keeps seeding a hard link")
	doc := fs.String("doc", "", "report to write (default docs/benchmarks.md; none with -quick); - for none")
	save := fs.Bool("save", false, "keep this run's tables in <cache>/results (default: yes, but not with -quick)")
	dist := fs.String("dist", "", "distribution registry binary (default $REGVAULT_DISTRIBUTION, else "+filepath.Join(cacheBase, "regvault", "bin", "registry")+")")
	timeout := fs.Duration("timeout", 30*time.Minute, "limit for one tool run")
	keep := fs.Bool("keep", false, "keep the work directory (outputs and logs)")
	reportOnly := fs.Bool("report", false, "run nothing: write the report from the results kept in <cache>/results")
	note := fs.String("note", "", "a note said under every table of this run (the load of a shared machine, say)")
	noInstall := fs.Bool("no-install", false, "do not install missing peers (skopeo through apt-get)")
	trace := fs.String("trace", "", "directory for every run's requests as the proxy saw them (tab-separated: start, end, method, kind, bytes, path); the log gets a summary of each run, and a timeline of each backup, restore and copy (milestones, critical path, concurrency over time) as markdown")
	sweepSVG := fs.String("sweep-svg", "", "where -ops sweep writes its plot (default docs/concurrency.svg; - for none)")
	cpuprofile := fs.String("cpuprofile", "", "directory for a CPU and heap profile of every regvault process (regvault is built with a profiling hook through go build -overlay; the checkout is not changed). The profiling build goes into the directory too. Read with: go tool pprof -top <dir>/regvault-profiling <dir>/<file>")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick && !set["runs"] {
		*runs = 1
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, p := range []*string{cpuprofile, trace} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	cfg := bench.Config{
		Runs:        *runs,
		Seed:        *seed,
		CacheDir:    *cache,
		WorkDir:     *workdir,
		Root:        root,
		Self:        self,
		Timeout:     *timeout,
		Keep:        *keep,
		NoInstall:   *noInstall,
		ProfileDir:  *cpuprofile,
		TraceDir:    *trace,
		CommandLine: commandLine(),
		Note:        *note,
		Link:        *link * bench.MB,
		Out:         os.Stdout,
		Options:     bench.Options{Quick: *quick, LSize: *lsize * bench.MiB, BSize: *bsize * bench.MiB, SRepos: *srepos},
	}
	for _, w := range split(*workloads) {
		w = strings.ToUpper(w)
		if _, err := bench.NewSpec(w, *seed, cfg.Options); err != nil {
			return err
		}
		cfg.Workloads = append(cfg.Workloads, w)
	}
	for _, p := range split(*profiles) {
		prof, err := bench.ProfileByName(p)
		if err != nil {
			return err
		}
		cfg.Profiles = append(cfg.Profiles, prof)
	}
	cfg.Tools = split(*tools)
	serveOp := false
	for _, op := range split(*ops) {
		switch op {
		case bench.OpServe:
			serveOp = true
		case bench.OpBackup, bench.OpRestore, bench.OpCopy, bench.OpPlan, bench.OpPlanScale, bench.OpScale, bench.OpScaleCopy, bench.OpSweep:
			cfg.Ops = append(cfg.Ops, op)
		default:
			return fmt.Errorf("unknown operation %q (want backup, restore, copy, plan, planscale, scale, scalecopy, sweep, serve)", op)
		}
	}
	switch {
	case *doc == "-":
	case *doc != "":
		cfg.DocPath = *doc
	case !*quick:
		cfg.DocPath = filepath.Join(root, "docs", "benchmarks.md")
	}
	switch *sweepSVG {
	case "-":
	case "":
		cfg.SweepSVG = filepath.Join(root, "docs", "concurrency.svg")
	default:
		cfg.SweepSVG = *sweepSVG
	}
	if *save || (!*quick && !set["save"]) {
		cfg.ResultsDir = filepath.Join(*cache, "results")
	}
	cfg.DistBin = *dist
	if cfg.DistBin == "" && os.Getenv("REGVAULT_DISTRIBUTION") == "" {
		cfg.DistBin = filepath.Join(cacheBase, "regvault", "bin", "registry")
		if _, err := os.Stat(cfg.DistBin); err != nil {
			return fmt.Errorf("no distribution registry: set $REGVAULT_DISTRIBUTION or run `make distribution` (builds %s)", cfg.DistBin)
		}
	}

	if *reportOnly {
		if cfg.DocPath == "" {
			cfg.DocPath = filepath.Join(root, "docs", "benchmarks.md")
		}
		if err := bench.WriteReport(filepath.Join(*cache, "results"), cfg.DocPath, os.Stdout); err != nil {
			return err
		}
		return bench.SpliceServeSection(cfg.DocPath, bench.LoadServe(filepath.Join(*cache, "results")))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(cfg.Ops) > 0 {
		if err := bench.Run(ctx, cfg); err != nil {
			return err
		}
	}
	if serveOp {
		_, err := bench.RunServe(ctx, cfg)
		return err
	}
	// Run rewrote the report: the kept Serve section stays its last.
	if len(cfg.Ops) > 0 && cfg.DocPath != "" && cfg.ResultsDir != "" {
		return bench.SpliceServeSection(cfg.DocPath, bench.LoadServe(cfg.ResultsDir))
	}
	return nil
}

// moduleRoot is the directory of regvault's go.mod, at or above the
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/regvault/regvault\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run bench inside the regvault module (no go.mod of github.com/regvault/regvault above the working directory)")
		}
		dir = parent
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// commandLine is how this run was started, for the report.
func commandLine() string {
	args := []string{"go run ./bench/cmd/bench"}
	skip := false
	for _, a := range os.Args[1:] {
		// The note is said under the tables already.
		if skip {
			skip = false
			continue
		}
		if name := strings.TrimLeft(a, "-"); strings.HasPrefix(a, "-") && (name == "note" || strings.HasPrefix(name, "note=")) {
			skip = name == "note"
			continue
		}
		if strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}
