package bench

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// RunResult is one run of one tool.
type RunResult struct {
	WallSec float64    `json:"wallSec"`
	CPUSec  float64    `json:"cpuSec"` // user + system, all processes
	MaxRSS  int64      `json:"maxRSS"` // bytes, the largest of any process
	Procs   int        `json:"procs"`  // processes started
	Stats   ProxyStats `json:"stats"`
	// Target is what the target's proxy counted, for a copy (whose Stats
	// are the source's); nil otherwise.
	Target *ProxyStats `json:"target,omitempty"`
	Err    string      `json:"err,omitempty"`
	Check  string      `json:"check,omitempty"` // "ok" or what is missing
	// Start is when the run began, for its timeline (-trace).
	Start time.Time `json:"-"`
}

// OK tells whether the run succeeded and its output checked out.
func (r RunResult) OK() bool { return r.Err == "" && r.Check == "ok" }

// MBps is the unique bytes per second of the run.
func (r RunResult) MBps(unique int64) float64 {
	if r.WallSec <= 0 {
		return 0
	}
	return float64(unique) / MB / r.WallSec
}

// Line is a one-line summary, for the progress log.
func (r RunResult) Line(unique int64) string {
	s := fmt.Sprintf("%.2f s, %.1f MB/s, %d requests (GET blob %d, GET manifest %d) on %d connections, down %s, up %s, peak RSS %s, CPU %.1f s",
		r.WallSec, r.MBps(unique), r.Stats.Total(), r.Stats.Count("GET", "blob"), r.Stats.Count("GET", "manifest"), r.Stats.Conns,
		mbString(r.Stats.BytesOut), mbString(r.Stats.BytesIn), rssString(r.MaxRSS), r.CPUSec)
	if t := r.Target; t != nil {
		s += fmt.Sprintf("; target: %d requests on %d connections, %d uploads, %d mounts, up %s", t.Total(), t.Conns, t.Uploads, t.Mounts, mbString(t.BytesIn))
	}
	switch {
	case r.Err != "":
		s += ": FAILED: " + r.Err
	case r.Check != "ok":
		s += ": CHECK FAILED: " + r.Check
	}
	return s
}

// Row is one tool in a section.
type Row struct {
	Tool    string      `json:"tool"`
	Version string      `json:"version"`
	Command string      `json:"command"`
	Runs    []RunResult `json:"runs"`
	NA      string      `json:"na,omitempty"` // why the tool has no result
}

// Median is the successful run with the median wall time (the lower of
// the two middle ones for an even count), and false if no run succeeded.
func (r *Row) Median() (RunResult, bool) {
	var ok []RunResult
	for _, run := range r.Runs {
		if run.OK() {
			ok = append(ok, run)
		}
	}
	if len(ok) == 0 {
		return RunResult{}, false
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].WallSec < ok[j].WallSec })
	return ok[(len(ok)-1)/2], true
}

// why says why the row has no result: not applicable, or its last
// failure.
func (r *Row) why() string {
	why := r.NA
	if why == "" && len(r.Runs) > 0 {
		last := r.Runs[len(r.Runs)-1]
		why = "failed: " + last.Err
		if last.Err == "" {
			why = "output incomplete: " + last.Check
		}
	}
	return why
}

// PeakRSS is the largest peak RSS over the successful runs.
func (r *Row) PeakRSS() int64 {
	var m int64
	for _, run := range r.Runs {
		if run.OK() && run.MaxRSS > m {
			m = run.MaxRSS
		}
	}
	return m
}

// Section is one table: a workload, a profile and an operation.
type Section struct {
	Workload     string   `json:"workload"` // D1, or D1-quick
	Base         string   `json:"base"`     // D1
	About        string   `json:"about"`
	UniqueBytes  int64    `json:"uniqueBytes"`
	BlobBytes    int64    `json:"blobBytes"`
	Repos        int      `json:"repos"`
	Tags         int      `json:"tags"`
	Referrers    int      `json:"referrers"`
	Blobs        int      `json:"blobs"`
	Manifests    int      `json:"manifests"`
	Profile      string   `json:"profile"`
	ProfileAbout string   `json:"profileAbout"`
	Op           string   `json:"op"`
	Date         string   `json:"date"`
	CommandLine  string   `json:"commandLine"`
	Runs         int      `json:"runs"`
	Seed         string   `json:"seed"`
	Quick        bool     `json:"quick,omitempty"`
	Machine      string   `json:"machine,omitempty"`
	Rows         []*Row   `json:"rows"`
	Notes        []string `json:"notes,omitempty"`
	// Raw is the section as a kept document had it (see MergeDoc): its
	// Markdown, with no rows to compute targets from.
	Raw string `json:"-"`
}

// Row is the row of the tool, or nil.
func (s *Section) Row(tool string) *Row {
	for _, r := range s.Rows {
		if r.Tool == tool {
			return r
		}
	}
	return nil
}

// Title is "D1 · wan · backup".
func (s *Section) Title() string { return s.Workload + " · " + s.Profile + " · " + s.Op }

// Markdown is the section's table and details.
func (s *Section) Markdown() string {
	if s.Raw != "" {
		return s.Raw
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", s.Title())
	fmt.Fprintf(&b, "%s  \n", s.About)
	fmt.Fprintf(&b, "Profile %s. %s, median of %d run(s), `%s`.", s.ProfileAbout, s.Date, s.Runs, s.CommandLine)
	if s.Machine != "" {
		fmt.Fprintf(&b, " Machine: %s.", s.Machine)
	}
	b.WriteString("\n\n")
	var ref float64
	if rv := s.Row(ToolRegvault); rv != nil {
		if m, ok := rv.Median(); ok {
			ref = m.WallSec
		}
	}
	if s.Op == OpCopy {
		s.copyTable(&b, ref)
	} else {
		s.table(&b, ref)
	}
	s.details(&b)
	return b.String()
}

// table is the rows of a backup, restore or plan section.
func (s *Section) table(b *strings.Builder, ref float64) {
	b.WriteString("| tool | wall | MB/s | tool ÷ regvault | GET blob | GET manifest | GET referrers tag | GET tags | HEAD | POST | PUT | PATCH | other | down | up | peak RSS | CPU |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range s.Rows {
		m, ok := r.Median()
		if !ok {
			fmt.Fprintf(b, "| %s | — | | | | | | | | | | | | | | | %s |\n", r.Tool, mdEscape(r.why()))
			continue
		}
		ratio := "—"
		if r.Tool != ToolRegvault && ref > 0 {
			ratio = fmt.Sprintf("%.2f×", m.WallSec/ref)
		}
		st := m.Stats
		counted := st.Count("GET", "blob") + st.Count("GET", "manifest") + st.Count("GET", "referrers-tag") + st.Count("GET", "tags") +
			st.Method("HEAD") + st.Method("POST") + st.Method("PUT") + st.Method("PATCH")
		mbps := fmt.Sprintf("%.1f", m.MBps(s.UniqueBytes))
		if s.Op == OpPlan {
			mbps = "—" // a dry run moves no layer
		}
		fmt.Fprintf(b, "| %s | %.2f s | %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s | %s | %.1f s |\n",
			r.Tool, m.WallSec, mbps, ratio,
			st.Count("GET", "blob"), st.Count("GET", "manifest"), st.Count("GET", "referrers-tag"), st.Count("GET", "tags"),
			st.Method("HEAD"), st.Method("POST"), st.Method("PUT"), st.Method("PATCH"), st.Total()-counted,
			mbString(st.BytesOut), mbString(st.BytesIn), rssString(r.PeakRSS()), m.CPUSec)
	}
}

// details are the runs, requests and failures of each row, and the
// section's notes.
func (s *Section) details(b *strings.Builder) {
	b.WriteString("\n")
	for _, r := range s.Rows {
		if len(r.Runs) == 0 {
			continue
		}
		var walls []string
		for _, run := range r.Runs {
			w := fmt.Sprintf("%.2f", run.WallSec)
			if !run.OK() {
				w += " (failed)"
			}
			walls = append(walls, w)
		}
		m, _ := r.Median()
		extra := ""
		if m.Stats.Ranged > 0 {
			extra += fmt.Sprintf(", %d ranged GETs", m.Stats.Ranged)
		}
		if m.Stats.Mounts > 0 {
			extra += fmt.Sprintf(", %d mounts", m.Stats.Mounts)
		}
		if e := m.Stats.Errors(); e > 0 {
			extra += fmt.Sprintf(", %d error answers", e)
		}
		if m.Target != nil {
			if m.Target.Mounts > 0 {
				extra += fmt.Sprintf(", %d mounts at the target", m.Target.Mounts)
			}
			if e := m.Target.Errors(); e > 0 {
				extra += fmt.Sprintf(", %d error answers from the target", e)
			}
		}
		reqs := "Requests: " + m.Stats.String()
		if m.Target != nil {
			reqs = "Requests at the source: " + orNone(m.Stats.String()) + "; at the target (" + fmt.Sprint(m.Target.Conns) + " connection(s)): " + orNone(m.Target.String())
		}
		// A row with no source (a reference restore) says the target's.
		conns := m.Stats
		if conns.Total() == 0 && m.Target != nil {
			conns = *m.Target
		}
		fmt.Fprintf(b, "- %s: runs %s s; %d process(es), %d connection(s), at most %d requests at once%s. %s.\n", r.Tool, strings.Join(walls, ", "), m.Procs, conns.Conns, conns.MaxConc, extra, reqs)
		for _, run := range r.Runs {
			if !run.OK() {
				msg := run.Err
				if msg == "" {
					msg = "check: " + run.Check
				}
				fmt.Fprintf(b, "  - failed run: %s\n", mdEscape(msg))
				break
			}
		}
	}
	for _, n := range s.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	b.WriteString("\n")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// copyTable is the rows of a copy section: the source's downloads, the
// target's uploads, and the reference rows (regvault's backup from the
// source and restore into a target, measured alongside).
func (s *Section) copyTable(b *strings.Builder, ref float64) {
	b.WriteString("| tool | wall | MB/s | tool ÷ regvault copy | source: GET blob | GET manifest | GET referrers tag | requests | down | target: uploads | mounts | requests | up | peak RSS | CPU |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range s.Rows {
		m, ok := r.Median()
		if !ok {
			fmt.Fprintf(b, "| %s | — | | | | | | | | | | | | | %s |\n", r.Tool, mdEscape(r.why()))
			continue
		}
		ratio := "—"
		if r.Tool != ToolRegvault && ref > 0 {
			ratio = fmt.Sprintf("%.2f×", m.WallSec/ref)
		}
		src := "— | — | — | — | —"
		if st := m.Stats; st.Total() > 0 {
			src = fmt.Sprintf("%d | %d | %d | %d | %s", st.Count("GET", "blob"), st.Count("GET", "manifest"), st.Count("GET", "referrers-tag"), st.Total(), mbString(st.BytesOut))
		}
		tgt := "— | — | — | —"
		if t := m.Target; t != nil {
			tgt = fmt.Sprintf("%d | %d | %d | %s", t.Uploads, t.Mounts, t.Total(), mbString(t.BytesIn))
		}
		fmt.Fprintf(b, "| %s | %.2f s | %.1f | %s | %s | %s | %s | %.1f s |\n", r.Tool, m.WallSec, m.MBps(s.UniqueBytes), ratio, src, tgt, rssString(r.PeakRSS()), m.CPUSec)
	}
}

// MachineInfo describes the machine.
type MachineInfo struct {
	Cores   int
	Memory  string
	CPU     string
	Kernel  string
	OS      string
	Go      string
	LoadAvg string
}

func (m MachineInfo) String() string {
	return fmt.Sprintf("%d cores (%s), %s memory, %s, Linux %s, %s; load average at start %s", m.Cores, m.CPU, m.Memory, m.OS, m.Kernel, m.Go, m.LoadAvg)
}

// Machine describes this machine.
func Machine() MachineInfo {
	m := MachineInfo{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "?", Memory: "?", Kernel: "?", OS: runtime.GOOS, LoadAvg: "?"}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
				m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// Report is what docs/benchmarks.md says.
type Report struct {
	Machine   MachineInfo
	Tools     []*Tool
	ToolNotes []string
	Sections  []*Section
	PlanScale *PlanScale // nil: not measured
	Generated string
	// PriorTools and PriorTargets are the tools table rows and the
	// measured targets of the document this report replaces, kept where
	// this report has nothing (see MergeDoc).
	PriorTools     map[string][5]string
	PriorTargets   map[string]Target
	PriorPlanScale string
	// PriorShards is the "plan and shards" section, measured by the shard
	// package's benchmarks and tests (go test), kept as it is.
	PriorShards string
	// PriorSweep is the "concurrency sweep" section (-ops sweep, whose
	// table is pasted by hand: sweep.go), kept as it is.
	PriorSweep string
}

// Markdown is the whole document.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Generated by the harness in `bench/` (`make bench`, or `go run ./bench/cmd/bench`); do not edit by hand. ")
	b.WriteString("Each table below says when and with which command it was measured: a run of a subset (`-w`, `-p`) replaces those tables only.\n\n")
	fmt.Fprintf(&b, "- Machine: %s.\n", r.Machine)
	fmt.Fprintf(&b, "- Written: %s.\n", r.Generated)
	b.WriteString("- Registry: the CNCF distribution registry v3.1.2 process (`internal/registrytest.StartDistribution`), filesystem storage on the same disk as the outputs; no Referrers API, so referrers are found through the `sha256-<hex>` tag schema. Every tool talks to it through the harness's proxy on 127.0.0.1, over plain HTTP.\n")
	b.WriteString("- MB/s is unique bytes (every unique blob and manifest of the workload, 1 MB = 10⁶ bytes) over wall time, for every tool alike. Wall time is from the first process start to the last exit, the median of the successful runs; peak RSS is the largest maximum resident set size of any one process over the runs, measured with GNU time (`%M`: the process's `ru_maxrss`; the harness's own wait4 would report at least the harness's RSS, which a vfork-ed child inherits at exec); CPU is user + system of all processes.\n")
	b.WriteString("- Requests are counted by the proxy in front of the registry the tool talks to (for a restore: the target; for a copy: both, the source's and the target's apart); \"GET referrers tag\" is `GET /v2/<repo>/manifests/sha256-<hex>` (referrers lookups); \"down\"/\"up\" are response/request body bytes. \"tool ÷ regvault\" is the tool's wall time over regvault's: above 1 regvault is faster.\n\n")

	b.WriteString("## How to run\n\n")
	b.WriteString("```\nmake bench                                  # every workload, both profiles, 3 runs\ngo run ./bench/cmd/bench -quick             # small workloads, 1 run, for developing the harness\ngo run ./bench/cmd/bench -w D1 -p wan -runs 5\ngo run ./bench/cmd/bench -w B -t regvault -p loopback   # one tool\ngo run ./bench/cmd/bench -w S -srepos 2000 -ops plan -t regvault   # planning 10,000 tags\ngo run ./bench/cmd/bench -w D1 -p wan -ops copy -t regvault,regsync,crane,skopeo,oras   # registry to registry\ngo run ./bench/cmd/bench -w D1,S -srepos 50 -p far -ops backup,restore -runs 1 -timeout 20m   # an intercontinental link, every peer (S at 50 repositories: the peers take minutes)\ngo run ./bench/cmd/bench -ops planscale -t regvault   # restore planning, one repository with 10k/40k/100k tags\ngo run ./bench/cmd/bench -w D1 -p wan -t regvault -ops scale   # N = 1, 2, 4 shards of backup --plan --shard, each behind its own proxy\ngo run ./bench/cmd/bench -w D1 -p wan -t regvault -trace /tmp/tr -cpuprofile /tmp/pp -save=false -doc -   # why is it slow\ngo run ./bench/cmd/bench -report            # rewrite this file from the kept results, run nothing\ngo run ./bench/cmd/bench -h                 # every flag\n```\n\n")
	b.WriteString("Peers are installed into `$XDG_CACHE_HOME/regvault/bench/bin` (or `~/.cache/...`): oras, crane and regsync with `go install`, skopeo with `apt-get install skopeo` when it is missing and the harness runs as root. regvault is built from the checkout into the run's own work directory (two runs at once, of two checkouts, do not replace each other's build). A seeded registry's storage is kept in `.../regvault/bench/seed/<workload>-<hash>` (keyed by workload, size and seed) and hard-linked into the registry of later runs; the per-section results in `.../regvault/bench/results`.\n\n")

	b.WriteString("## Tools and commands\n\n")
	b.WriteString("| tool | version | backup | restore | copy |\n| --- | --- | --- | --- | --- |\n")
	for _, t := range r.toolRows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t[0], mdEscape(t[1]), mdEscape(t[2]), mdEscape(t[3]), mdEscape(t[4]))
	}
	for _, n := range r.ToolNotes {
		fmt.Fprintf(&b, "\n- %s", n)
	}
	b.WriteString("\n\nEvery tool runs with its default concurrency. crane and skopeo copy tags, not referrers: their backups hold the images only (less to move than regvault and oras); `crane copy --all-tags` copies the referrers' `sha256-<hex>` tags and so the referrers too. For the registry-to-registry copies (crane, skopeo restore) the source is the seeded registry itself, unshaped: only the target is behind the profile's proxy, as a restore from a local file would be. regsync backs up into one OCI layout directory per repository (regclient's `ocidir://`) and restores from those: a blob shared by repositories is fetched, and stored, once per repository.\n\n")
	b.WriteString("A copy (registry to registry) has both ends behind a proxy of the profile, each end its own distribution registry, the target empty at the start of every run. Its table has the source's downloads (GET blob, GET manifest, referrers lookups) and the target's writes: \"uploads\" are completed blob uploads (a 201 to the PUT that ends an upload, or to a monolithic POST with the digest), \"mounts\" accepted cross-repository mounts. A run counts only if the target then has every tag with the source's digest, and the referrers for the tools that copy them (regvault with `--include-referrers`, `oras cp -r`, regsync with `referrers: true`; crane and skopeo copy the tags' images only). The rows \"regvault backup\" and \"regvault restore\" of a copy table are regvault's backup of the same set through the source's proxy and the restore of that backup into a new target behind its own proxy, measured in the same runs as the copies: a copy overlaps the two, so it should take little more than the larger.\n\n")

	b.WriteString("## Profiles\n\n")
	for _, p := range AllProfiles {
		fmt.Fprintf(&b, "- %s\n", p.Describe())
	}
	b.WriteString("\nThe WAN profile charges every request, not every connection: opening a TCP connection costs nothing extra here, where a real network would add a round trip (two with TLS). The connections each tool opened are listed under each table, so that cost can be judged.\n")
	b.WriteString("\n## Targets\n\n")
	b.WriteString(r.targetsMarkdown())
	b.WriteString("\n## Results\n\n")
	if r.PlanScale != nil {
		b.WriteString(r.PlanScale.Markdown())
	} else if r.PriorPlanScale != "" {
		b.WriteString(r.PriorPlanScale)
	}
	b.WriteString(r.PriorShards)
	b.WriteString(r.PriorSweep)
	for _, s := range r.Sections {
		b.WriteString(s.Markdown())
	}
	return b.String()
}

// toolRows are the tools of the report's sections (and of this run), in
// AllTools order: name, version, backup, restore and copy command. The
// newest section that has a tool says its version; a tool of the kept
// document (PriorTools) that neither has keeps its row.
func (r *Report) toolRows() [][5]string {
	type info struct{ version, backup, restore, copy, date string }
	infos := map[string]*info{}
	get := func(name string) *info {
		if infos[name] == nil {
			infos[name] = &info{}
		}
		return infos[name]
	}
	for _, s := range r.Sections {
		for _, row := range s.Rows {
			in := get(row.Tool)
			if s.Date >= in.date {
				in.version, in.date = row.Version, s.Date
			}
			cmd := code(row.Command)
			if row.NA != "" && row.Command == "" {
				continue
			}
			switch s.Op {
			case OpBackup:
				in.backup = cmd
			case OpRestore:
				in.restore = cmd
				if row.NA != "" && strings.Contains(row.NA, "not available") {
					in.restore += " — " + row.NA
				}
			case OpCopy:
				in.copy = cmd
				if row.NA != "" && strings.Contains(row.NA, "not available") {
					in.copy += " — " + row.NA
				}
			}
		}
	}
	for _, t := range r.Tools {
		in := get(t.Name)
		in.version = t.Version
		in.backup = code(t.BackupDoc)
		in.restore = code(t.RestoreDoc)
		if t.NoRestore != "" {
			in.restore += " — " + t.NoRestore
		}
		in.copy = code(t.CopyDoc)
		if t.NoCopy != "" {
			in.copy += " — " + t.NoCopy
		}
	}
	var out [][5]string
	for _, name := range AllTools {
		in, ok := infos[name]
		p, prior := r.PriorTools[name]
		switch {
		case ok:
			row := [5]string{name, in.version, in.backup, in.restore, in.copy}
			// What this report does not say, the kept document does.
			for i := 1; prior && i < len(row); i++ {
				if row[i] == "" {
					row[i] = p[i]
				}
			}
			out = append(out, row)
		case prior:
			out = append(out, p)
		}
	}
	return out
}

// code is s as inline code, or "" for "".
func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

// Target is one of the benchmark targets, as measured.
type Target struct {
	Name     string
	Measured string
	Status   string // met, missed, not measured
}

// Targets evaluates the benchmark targets from the sections there are.
func (r *Report) Targets() []Target {
	find := func(base, profile, op string) *Section {
		for _, s := range r.Sections {
			if s.Base == base && s.Profile == profile && s.Op == op && !s.Quick {
				return s
			}
		}
		for _, s := range r.Sections {
			if s.Base == base && s.Profile == profile && s.Op == op {
				return s
			}
		}
		return nil
	}
	median := func(s *Section, tool string) (RunResult, bool) {
		if s == nil {
			return RunResult{}, false
		}
		row := s.Row(tool)
		if row == nil {
			return RunResult{}, false
		}
		return row.Median()
	}
	tag := func(s *Section) string {
		if s != nil && s.Quick {
			return " (quick workload: indicative only)"
		}
		return ""
	}
	var ts []Target
	ratio := func(name string, s *Section, peer string, want float64) {
		t := Target{Name: name, Status: "not measured"}
		rv, ok1 := median(s, ToolRegvault)
		p, ok2 := median(s, peer)
		switch {
		case s == nil:
		case !ok1:
			t.Measured = "no successful regvault run"
			if row := s.Row(ToolRegvault); row != nil && row.NA != "" {
				t.Measured = row.NA
			}
		case !ok2:
			t.Measured = "no successful " + peer + " run"
		default:
			x := p.WallSec / rv.WallSec
			t.Measured = fmt.Sprintf("%.2f× (regvault %.2f s, %s %.2f s)%s", x, rv.WallSec, peer, p.WallSec, tag(s))
			t.Status = metOr(x >= want)
		}
		ts = append(ts, t)
	}
	d1b, d1r := find(WorkloadD1, "wan", OpBackup), find(WorkloadD1, "wan", OpRestore)
	ratio("D1 WAN backup ≥ 8× faster than oras (looped per repository)", d1b, ToolOras, 8)
	ratio("D1 WAN backup ≥ 3× faster than crane (pull of every tag into one layout)", d1b, ToolCrane, 3)
	ratio("D1 WAN restore ≥ 8× faster than oras restore (per repository)", d1r, ToolOras, 8)
	ratio("D1 WAN restore ≥ 5× faster than skopeo copy (per tag)", d1r, ToolSkopeo, 5)
	ts = append(ts, copyTargets(find(WorkloadD1, "wan", OpCopy), r.Sections)...)
	for _, base := range []string{WorkloadD1, WorkloadS} {
		for _, op := range []string{OpBackup, OpRestore} {
			ts = append(ts, farTarget(base, op, find(base, ProfileFar.Name, op)))
		}
	}

	// Each blob fetched once: a GET per unique manifest, and per unique
	// blob a whole GET or ranged GETs (parallel parts of one blob). A blob
	// fetched whole twice shows as more whole GETs than unique blobs.
	{
		t := Target{Name: "each blob and manifest fetched once per backup (GET manifest = unique manifests; whole-blob GETs ≤ unique blobs ≤ all blob GETs)", Status: "not measured"}
		var parts []string
		met := true
		for _, s := range r.Sections {
			if s.Op != OpBackup {
				continue
			}
			m, ok := median(s, ToolRegvault)
			if !ok {
				continue
			}
			gb, gm, ranged := m.Stats.Count("GET", "blob"), m.Stats.Count("GET", "manifest"), m.Stats.Ranged
			whole := gb - ranged
			p := fmt.Sprintf("%s %s: %d manifest GETs for %d, %d blob GETs (%d whole, %d ranged) for %d blobs, %s down for %s", s.Workload, s.Profile, gm, s.Manifests, gb, whole, ranged, s.Blobs, mbString(m.Stats.BytesOut), mbString(s.UniqueBytes))
			parts = append(parts, p)
			if gm != int64(s.Manifests) || whole > int64(s.Blobs) || gb < int64(s.Blobs) {
				met = false
			}
		}
		if len(parts) > 0 {
			t.Measured = strings.Join(parts, "; ")
			t.Status = metOr(met)
		}
		ts = append(ts, t)
	}
	// Each shared blob uploaded once per target: no more blob uploads
	// (PUT that completes an upload) than unique blobs; the rest mounted.
	{
		t := Target{Name: "a shared blob is uploaded once per target registry (completed uploads ≤ unique blobs)", Status: "not measured"}
		var parts []string
		met := true
		for _, s := range r.Sections {
			if s.Op != OpRestore {
				continue
			}
			m, ok := median(s, ToolRegvault)
			if !ok {
				continue
			}
			puts := m.Stats.Count("PUT", "upload")
			parts = append(parts, fmt.Sprintf("%s %s: %d uploads for %d unique blobs, %d mounts, %s up for %s unique", s.Workload, s.Profile, puts, s.Blobs, m.Stats.Mounts, mbString(m.Stats.BytesIn), mbString(s.UniqueBytes)))
			if puts > int64(s.Blobs) {
				met = false
			}
		}
		if len(parts) > 0 {
			t.Measured = strings.Join(parts, "; ")
			t.Status = metOr(met)
		}
		ts = append(ts, t)
	}
	// Round trips per tag: requests per tag on S, against the fewest a
	// tool needs: on backup a GET per unique blob and manifest and a
	// referrers lookup per manifest; on restore a POST and a PUT per
	// unique blob and a PUT per manifest.
	{
		t := Target{Name: "no tag costs more than a few round trips (S: requests per tag ≤ the fewest needed + 1)", Status: "not measured"}
		var parts []string
		met := true
		for _, s := range r.Sections {
			if s.Base != WorkloadS || (s.Op != OpBackup && s.Op != OpRestore) {
				continue
			}
			m, ok := median(s, ToolRegvault)
			if !ok {
				continue
			}
			per := float64(m.Stats.Total()) / float64(s.Tags)
			least := float64(s.Blobs+2*s.Manifests) / float64(s.Tags)
			if s.Op == OpRestore {
				least = float64(2*s.Blobs+s.Manifests) / float64(s.Tags)
			}
			parts = append(parts, fmt.Sprintf("%s %s %s: %.1f requests per tag (fewest %.1f), %.1f ms per tag", s.Workload, s.Profile, s.Op, per, least, m.WallSec*1000/float64(s.Tags)))
			if per > least+1 {
				met = false
			}
		}
		if len(parts) > 0 {
			t.Measured = strings.Join(parts, "; ")
			t.Status = metOr(met)
		}
		ts = append(ts, t)
	}
	// L loopback vs baseline.
	for _, op := range []string{OpBackup, OpRestore} {
		t := Target{Name: fmt.Sprintf("L loopback %s ≥ 95%% of the throughput of the plain parallel baseline that verifies (SHA-256 of every blob)", op), Status: "not measured"}
		s := find(WorkloadL, "loopback", op)
		rv, ok1 := median(s, ToolRegvault)
		bl, ok2 := median(s, ToolBaseline)
		switch {
		case s == nil:
		case !ok1:
			t.Measured = "no successful regvault run"
			if row := s.Row(ToolRegvault); row != nil && row.NA != "" {
				t.Measured = row.NA
			}
		case !ok2:
			t.Measured = "no successful baseline run"
		default:
			x := bl.WallSec / rv.WallSec
			t.Measured = fmt.Sprintf("%.1f%% (regvault %.1f MB/s, baseline %.1f MB/s)%s", 100*x, rv.MBps(s.UniqueBytes), bl.MBps(s.UniqueBytes), tag(s))
			t.Status = metOr(x >= 0.95)
		}
		ts = append(ts, t)
	}
	// B: RSS.
	for _, op := range []string{OpBackup, OpRestore} {
		t := Target{Name: fmt.Sprintf("B %s peak RSS < 150 MiB", op), Status: "not measured"}
		var parts []string
		met := true
		for _, s := range r.Sections {
			if s.Base != WorkloadB || s.Op != op {
				continue
			}
			row := s.Row(ToolRegvault)
			if row == nil {
				continue
			}
			if _, ok := row.Median(); !ok {
				if row.NA != "" {
					parts = append(parts, s.Profile+": "+row.NA)
				}
				continue
			}
			parts = append(parts, fmt.Sprintf("%s: %s%s", s.Profile, rssString(row.PeakRSS()), tag(s)))
			if row.PeakRSS() >= 150*MiB {
				met = false
			}
		}
		if len(parts) > 0 {
			t.Measured = strings.Join(parts, "; ")
			if strings.Contains(t.Measured, "MiB") {
				t.Status = metOr(met)
			}
		}
		ts = append(ts, t)
	}
	// B over WAN: parallel ranges, ≥ 4× the single-stream rate.
	{
		t := Target{Name: "B WAN backup: one blob in parallel ranges, ≥ 4× the single-stream rate (≥ 100 MB/s)", Status: "not measured"}
		s := find(WorkloadB, "wan", OpBackup)
		if m, ok := median(s, ToolRegvault); ok {
			x := m.MBps(s.UniqueBytes) / (ProfileWAN.Rate / MB)
			t.Measured = fmt.Sprintf("%.1f MB/s = %.2f× the %.0f MB/s stream cap, %d ranged GETs%s", m.MBps(s.UniqueBytes), x, ProfileWAN.Rate/MB, m.Stats.Ranged, tag(s))
			t.Status = metOr(x >= 4)
		}
		ts = append(ts, t)
	}
	// S linear: per-tag time over several sizes.
	{
		t := Target{Name: "S: time grows linearly with the number of tags", Status: "not measured"}
		type pt struct {
			tags int
			sec  float64
			key  string
		}
		byKey := map[string][]pt{}
		for _, s := range r.Sections {
			if s.Base != WorkloadS {
				continue
			}
			if m, ok := median(s, ToolRegvault); ok {
				k := s.Profile + " " + s.Op
				byKey[k] = append(byKey[k], pt{s.Tags, m.WallSec, k})
			}
		}
		var parts []string
		met, any := true, false
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			pts := byKey[k]
			if len(pts) < 2 {
				continue
			}
			sort.Slice(pts, func(i, j int) bool { return pts[i].tags < pts[j].tags })
			a, z := pts[0], pts[len(pts)-1]
			if a.tags == z.tags {
				continue
			}
			any = true
			perA, perZ := a.sec/float64(a.tags), z.sec/float64(z.tags)
			parts = append(parts, fmt.Sprintf("%s: %.1f ms/tag at %d tags, %.1f ms/tag at %d tags", k, perA*1000, a.tags, perZ*1000, z.tags))
			if perZ > 1.25*perA {
				met = false
			}
		}
		if any {
			t.Measured = strings.Join(parts, "; ")
			t.Status = metOr(met)
		} else {
			t.Measured = "needs S at two sizes (e.g. -w S -srepos 100 and 200 with -results)"
		}
		ts = append(ts, t)
	}
	// Planning 10,000 tags.
	{
		t := Target{Name: "planning 10,000 tags stays under 300 MiB RSS", Status: "not measured"}
		for _, s := range r.Sections {
			if s.Op != OpPlan || s.Tags < 10000 {
				continue
			}
			row := s.Row(ToolRegvault)
			if row == nil {
				continue
			}
			if m, ok := row.Median(); ok {
				t.Measured = fmt.Sprintf("%s for %d tags in %d repositories (%s, %.1f s)", rssString(row.PeakRSS()), s.Tags, s.Repos, s.Profile, m.WallSec)
				t.Status = metOr(row.PeakRSS() < 300*MiB)
			}
		}
		if t.Status == "not measured" {
			t.Measured = "run: -w S -srepos 2000 -ops plan -t regvault"
		}
		ts = append(ts, t)
	}
	if r.PlanScale != nil {
		ts = append(ts, r.PlanScale.Target())
	} else {
		ts = append(ts, Target{Name: "restore planning linear in tags: CPU time per tag at 10k/40k/100k tags in one repository (restore --dry-run of a directory backup)", Measured: "run: -ops planscale -t regvault", Status: "not measured"})
	}
	return ts
}

// FarPeers are the tools regvault's backup and restore over the far
// profile are measured against.
var FarPeers = []string{ToolOras, ToolCrane, ToolSkopeo, ToolRegsync}

// farTarget is the target of s, the far section of workload base and
// operation op (nil: not measured): regvault at least 5× faster than the
// fastest peer that succeeded.
func farTarget(base, op string, s *Section) Target {
	t := Target{Name: fmt.Sprintf("%s far %s ≥ 5× faster than the fastest of oras, crane, skopeo, regsync (+%s per request, %.0f MB/s per stream)", base, op, ProfileFar.Latency, ProfileFar.Rate/MB), Status: "not measured"}
	if s == nil {
		return t
	}
	row := s.Row(ToolRegvault)
	if row == nil {
		return t
	}
	rv, ok := row.Median()
	if !ok {
		t.Measured = "no successful regvault run: " + row.why()
		return t
	}
	best, bestName, others := fastestPeer(s, FarPeers)
	where := ""
	if s.Workload != base {
		where = " on " + s.Workload
	}
	if s.Quick {
		where += " (quick workload: indicative only)"
	}
	if bestName == "" {
		t.Measured = "no successful peer run" + where
		return t
	}
	x := best.WallSec / rv.WallSec
	t.Measured = fmt.Sprintf("%.2f× the fastest peer, %s (regvault %.2f s; %s)%s", x, bestName, rv.WallSec, strings.Join(others, ", "), where)
	t.Status = metOr(x >= 5)
	return t
}

// fastestPeer is the fastest of peers that have a successful run in s
// (bestName "" if none), and every peer's median wall time, or "no
// result", in the order of peers, for the report.
func fastestPeer(s *Section, peers []string) (best RunResult, bestName string, others []string) {
	for _, p := range peers {
		row := s.Row(p)
		if row == nil {
			continue
		}
		m, ok := row.Median()
		if !ok {
			others = append(others, p+" no result")
			continue
		}
		others = append(others, fmt.Sprintf("%s %.2f s", p, m.WallSec))
		if bestName == "" || m.WallSec < best.WallSec {
			best, bestName = m, p
		}
	}
	return best, bestName, others
}

// CopyPeers are the tools regvault copy is measured against.
var CopyPeers = []string{ToolRegsync, ToolCrane, ToolSkopeo, ToolOras}

// copyTargets are the targets of registry-to-registry copy: d1 is the
// D1 WAN copy section (nil: not measured), all every section (the RSS
// target looks at every copy section, B's above all).
func copyTargets(d1 *Section, all []*Section) []Target {
	speed := Target{Name: "D1 WAN copy ≥ 5× faster than the fastest of regsync, crane copy, skopeo copy, oras cp (both ends behind the WAN proxy)", Status: "not measured"}
	overlap := Target{Name: "D1 WAN copy wall ≤ 1.2× the larger of regvault's backup and restore of the same set (measured in the same runs)", Status: "not measured"}
	gets := Target{Name: "D1 WAN copy: GETs at the source = unique blobs + manifests (ranged parts of one blob count as one)", Status: "not measured"}
	uploads := Target{Name: "D1 WAN copy: completed uploads ≤ unique blobs per target registry", Status: "not measured"}
	rss := Target{Name: "copy peak RSS < 150 MiB (the issue names B, one 2 GiB layer)", Status: "not measured"}
	tag := ""
	if d1 != nil && d1.Quick {
		tag = " (quick workload: indicative only)"
	}
	var rv RunResult
	ok := false
	if d1 != nil {
		row := d1.Row(ToolRegvault)
		switch {
		case row == nil:
		case row.NA != "":
			for _, t := range []*Target{&speed, &overlap, &gets, &uploads} {
				t.Measured = row.NA
			}
		default:
			if rv, ok = row.Median(); !ok {
				for _, t := range []*Target{&speed, &overlap, &gets, &uploads} {
					t.Measured = "no successful regvault copy: " + row.why()
				}
			}
		}
	}
	if ok {
		best, bestName, others := fastestPeer(d1, CopyPeers)
		if bestName == "" {
			speed.Measured = "no successful peer copy"
		} else {
			x := best.WallSec / rv.WallSec
			speed.Measured = fmt.Sprintf("%.2f× the fastest peer, %s (regvault %.2f s; %s)%s", x, bestName, rv.WallSec, strings.Join(others, ", "), tag)
			speed.Status = metOr(x >= 5)
		}
		b, bok := rowMedian(d1, RowRefBackup)
		rs, rok := rowMedian(d1, RowRefRestore)
		if bok && rok {
			larger := max(b.WallSec, rs.WallSec)
			x := rv.WallSec / larger
			overlap.Measured = fmt.Sprintf("%.2f× (copy %.2f s; backup %.2f s, restore %.2f s)%s", x, rv.WallSec, b.WallSec, rs.WallSec, tag)
			overlap.Status = metOr(x <= 1.2)
		} else {
			overlap.Measured = "no successful reference backup and restore in the copy section"
		}
		gb, gm, ranged := rv.Stats.Count("GET", "blob"), rv.Stats.Count("GET", "manifest"), rv.Stats.Ranged
		whole := gb - ranged
		gets.Measured = fmt.Sprintf("%d blob GETs (%d whole, %d ranged) for %d unique blobs, %d manifest GETs for %d manifests, %s down for %s unique%s",
			gb, whole, ranged, d1.Blobs, gm, d1.Manifests, mbString(rv.Stats.BytesOut), mbString(d1.UniqueBytes), tag)
		gets.Status = metOr(gm == int64(d1.Manifests) && whole <= int64(d1.Blobs) && gb >= int64(d1.Blobs) && (ranged > 0 || gb == int64(d1.Blobs)))
		if rv.Target != nil {
			uploads.Measured = fmt.Sprintf("%d completed uploads for %d unique blobs, %d mounts, %s up for %s unique%s", rv.Target.Uploads, d1.Blobs, rv.Target.Mounts, mbString(rv.Target.BytesIn), mbString(d1.UniqueBytes), tag)
			uploads.Status = metOr(rv.Target.Uploads <= int64(d1.Blobs))
		}
	}
	var parts []string
	met, measuredB := true, false
	for _, s := range all {
		if s.Op != OpCopy {
			continue
		}
		row := s.Row(ToolRegvault)
		if row == nil {
			continue
		}
		if _, ok := row.Median(); !ok {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s: %s", s.Workload, s.Profile, rssString(row.PeakRSS())))
		if row.PeakRSS() >= 150*MiB {
			met = false
		}
		if s.Base == WorkloadB {
			measuredB = true
		}
	}
	if len(parts) > 0 {
		rss.Measured = strings.Join(parts, "; ")
		if !measuredB {
			rss.Measured += " (B not measured: -w B -ops copy)"
		}
		rss.Status = metOr(met)
	}
	return []Target{speed, overlap, gets, uploads, rss}
}

// rowMedian is the median run of the row called tool in s.
func rowMedian(s *Section, tool string) (RunResult, bool) {
	if s == nil {
		return RunResult{}, false
	}
	row := s.Row(tool)
	if row == nil {
		return RunResult{}, false
	}
	return row.Median()
}

func metOr(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// targets are Targets, with the prior document's result for a target
// this report cannot measure.
func (r *Report) targets() []Target {
	ts := r.Targets()
	for i, t := range ts {
		if t.Status != "not measured" {
			continue
		}
		if p, ok := r.PriorTargets[t.Name]; ok {
			if p.Status != "not measured" {
				ts[i] = p
			}
			continue
		}
		// A target whose name says more once measured (the plan-scale
		// one): the one prior target of the same name up to its colon.
		key, _, _ := strings.Cut(t.Name, ":")
		var found []Target
		for _, p := range r.PriorTargets {
			if pk, _, _ := strings.Cut(p.Name, ":"); pk == key && p.Status != "not measured" {
				found = append(found, p)
			}
		}
		if len(found) == 1 {
			ts[i] = found[0]
		}
	}
	return ts
}

func (r *Report) targetsMarkdown() string {
	var b strings.Builder
	b.WriteString("| target | measured | status |\n| --- | --- | --- |\n")
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", mdEscape(t.Name), mdEscape(t.Measured), t.Status)
	}
	return b.String()
}

// TargetsText is the targets for the terminal.
func (r *Report) TargetsText() string {
	var b strings.Builder
	b.WriteString("targets:\n")
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "  [%s] %s: %s\n", t.Status, t.Name, t.Measured)
	}
	return b.String()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func mbString(n int64) string {
	switch {
	case n >= 10*MB:
		return fmt.Sprintf("%.0f MB", float64(n)/MB)
	case n >= MB/10:
		return fmt.Sprintf("%.1f MB", float64(n)/MB)
	}
	return fmt.Sprintf("%.1f kB", float64(n)/1e3)
}

func rssString(n int64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/MiB)
}

// MergeDoc keeps what the document old (the report this one replaces)
// has and this report lacks, so that a run of a subset of the matrix
// does not drop the other tables when their results are not kept in a
// results directory: the result sections of other titles, the plan-scale
// section, the tools table rows of other tools, and the targets this
// report cannot measure.
func (r *Report) MergeDoc(old string) {
	have := map[string]bool{}
	for _, s := range r.Sections {
		have[s.Title()] = true
	}
	_, results, _ := strings.Cut(old, "\n## Results\n")
	results, _, _ = strings.Cut(results, "\n## ") // the Serve section (serve.go) follows
	for _, chunk := range splitBefore(results, "### ") {
		title, _, _ := strings.Cut(strings.TrimPrefix(chunk, "### "), "\n")
		parts := strings.Split(title, " · ")
		switch {
		case strings.HasPrefix(title, "restore planning"):
			r.PriorPlanScale = chunk
		case strings.HasPrefix(title, "plan and shards"):
			r.PriorShards = chunk
		case strings.HasPrefix(title, SweepTitle):
			r.PriorSweep = chunk
		case len(parts) == 3 && !have[title]:
			base, _, _ := strings.Cut(parts[0], "-")
			r.Sections = append(r.Sections, &Section{Workload: parts[0], Base: base, Profile: parts[1], Op: parts[2], Raw: chunk})
		}
	}
	sortSections(r.Sections)
	r.PriorTools = map[string][5]string{}
	for _, cells := range mdTable(old, "\n## Tools and commands\n") {
		var row [5]string
		copy(row[:], cells)
		if len(cells) == 4 {
			row[4] = "" // a document from before copy
		}
		r.PriorTools[row[0]] = row
	}
	r.PriorTargets = map[string]Target{}
	for _, cells := range mdTable(old, "\n## Targets\n") {
		if len(cells) == 3 {
			r.PriorTargets[cells[0]] = Target{Name: cells[0], Measured: cells[1], Status: cells[2]}
		}
	}
}

// splitBefore splits s before every line that starts with prefix; what
// comes before the first such line is dropped.
func splitBefore(s, prefix string) []string {
	var out []string
	lines := strings.SplitAfter(s, "\n")
	cur := -1
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, "")
			cur++
		}
		if cur >= 0 {
			out[cur] += l
		}
	}
	return out
}

// mdTable is the body rows of the first table after the heading line
// heading in doc, each split into its unescaped cells.
func mdTable(doc, heading string) [][]string {
	_, rest, ok := strings.Cut(doc, heading)
	if !ok {
		return nil
	}
	var rows [][]string
	started := false
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "|") {
			if started || strings.HasPrefix(line, "#") {
				break
			}
			continue
		}
		if !started { // the header
			started = true
			continue
		}
		if strings.HasPrefix(line, "| ---") {
			continue
		}
		line = strings.ReplaceAll(strings.Trim(line, "|"), `\|`, "\x00")
		var cells []string
		for _, c := range strings.Split(line, "|") {
			cells = append(cells, strings.ReplaceAll(strings.TrimSpace(c), "\x00", "|"))
		}
		rows = append(rows, cells)
	}
	return rows
}
