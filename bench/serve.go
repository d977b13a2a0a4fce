package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// OpServe measures `regvault serve` (a backup as a read-only registry):
// pull throughput against the distribution registry, the server's memory
// under concurrent blob GETs, and the time to the first byte of a blob
// for two archive sizes.
const OpServe = "serve"

// Serve benchmark parameters.
const (
	// ServeConcurrentGets is how many blob GETs run at once while the
	// server's peak RSS is measured.
	ServeConcurrentGets = 100
	// ServeRSSTarget is the target peak RSS of the server under that load.
	ServeRSSTarget = 100 * MiB
	// ServeTTFBSamples is the number of requests of each time-to-first-byte
	// measurement.
	ServeTTFBSamples = 30
)

// Server and client names of the throughput table.
const (
	ServerRegvault     = "regvault serve (.tar)"
	ServerRegvaultCold = "regvault serve (.tar), a fresh process per run"
	ServerDistribution = "distribution (filesystem store)"
	ClientCrane        = "crane pull of every tag"
	ClientBaseline     = "baseline GET of every blob"
)

// ServeResult is one run of the serve benchmark.
type ServeResult struct {
	Date        string `json:"date"`
	CommandLine string `json:"commandLine"`
	Machine     string `json:"machine"`
	// LoadBefore and LoadAfter are /proc/loadavg's 1, 5 and 15 minute
	// averages when the benchmark started and ended.
	LoadBefore string `json:"loadBefore"`
	LoadAfter  string `json:"loadAfter"`
	Workload   string `json:"workload"`
	About      string `json:"about"`
	BlobBytes  int64  `json:"blobBytes"`
	Tags       int    `json:"tags"`
	Runs       int    `json:"runs"`
	// TarBytes is the size of the served .tar; StartSec how long regvault
	// serve took from its start to its startup line on it (reading the
	// listing, checking every manifest).
	TarBytes     int64         `json:"tarBytes"`
	StartSec     float64       `json:"startSec"`
	DistVersion  string        `json:"distVersion"`
	CraneVersion string        `json:"craneVersion"`
	Pulls        []ServePull   `json:"pulls"`
	Memory       []ServeMemory `json:"memory"`
	TTFB         []ServeTTFB   `json:"ttfb"`
	Notes        []string      `json:"notes,omitempty"`
}

// ServePull is one client against one server: every run's wall time.
type ServePull struct {
	Server  string    `json:"server"`
	Client  string    `json:"client"`
	Command string    `json:"command"`
	Bytes   int64     `json:"bytes"` // the unique blob bytes moved
	WallSec []float64 `json:"wallSec"`
	CPUSec  []float64 `json:"cpuSec"` // the client's
	// ServerCPUSec is the server process's CPU time (user + system)
	// during each run.
	ServerCPUSec []float64 `json:"serverCpuSec,omitempty"`
	// Fresh: each run against a server process started for it, the
	// first read of every blob by that process.
	Fresh bool   `json:"fresh,omitempty"`
	Err   string `json:"err,omitempty"`
}

// MBps is the throughput of the median run (0 without runs).
func (p ServePull) MBps() float64 {
	m := medianOf(p.WallSec)
	if m <= 0 {
		return 0
	}
	return float64(p.Bytes) / MB / m
}

// ServeMemory is a server's peak RSS: after starting (the listing and
// indexes it holds) and under ServeConcurrentGets blob GETs at once.
type ServeMemory struct {
	Server   string  `json:"server"`
	IdleRSS  int64   `json:"idleRSS"` // VmHWM after start, before the load
	PeakRSS  int64   `json:"peakRSS"` // VmHWM after the load
	Gets     int     `json:"gets"`
	Bytes    int64   `json:"bytes"` // body bytes the GETs read
	WallSec  float64 `json:"wallSec"`
	Err      string  `json:"err,omitempty"`
	Fresh    bool    `json:"fresh"` // a process started for this measurement
	Measured string  `json:"measured"`
}

// ServeTTFB is the time to the first body byte of two blobs of one
// repository, served by regvault serve from an archive of a given size.
type ServeTTFB struct {
	Archive      string    `json:"archive"`
	ArchiveBytes int64     `json:"archiveBytes"`
	StartSec     float64   `json:"startSec"`
	Blob         string    `json:"blob"` // what the blob is (config, largest layer)
	BlobBytes    int64     `json:"blobBytes"`
	Ms           []float64 `json:"ms"`
	Err          string    `json:"err,omitempty"`
}

// serveEnv is what the steps of RunServe share.
type serveEnv struct {
	cfg   Config
	r     *runner
	work  string
	logf  func(string, ...any)
	rv    *Tool
	crane *Tool
	base  *Tool
}

// RunServe runs the serve benchmark on workload L (cfg.Options sizes it),
// prints its section, saves it in cfg.ResultsDir and puts it at the end of
// cfg.DocPath (the rest of that file is left as it is).
func RunServe(ctx context.Context, cfg Config) (*ServeResult, error) {
	cfg.setDefaults()
	logf := cfg.logf
	work, err := os.MkdirTemp(cfg.WorkDir, "regvault-bench-serve-")
	if err != nil {
		return nil, err
	}
	if cfg.Keep {
		logf("work directory (kept): %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	for _, d := range []string{"home", "tmp"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			return nil, err
		}
	}
	res := &ServeResult{
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), CommandLine: cfg.CommandLine, Machine: Machine().String(),
		LoadBefore: loadAvg(), Runs: cfg.Runs, CraneVersion: CraneVersion,
	}
	logf("\n== serve (workload L)")
	buildDir := filepath.Join(work, "bin")
	if cfg.ProfileDir != "" {
		buildDir = cfg.ProfileDir // pprof reads the binary next to its profiles
		if err := os.MkdirAll(buildDir, 0o755); err != nil {
			return nil, err
		}
	}
	tb := &Toolbox{BinDir: filepath.Join(cfg.CacheDir, "bin"), BuildDir: buildDir, Root: cfg.Root, Self: cfg.Self, Logf: logf, NoInstall: true, Profile: cfg.ProfileDir != ""}
	if err := os.MkdirAll(tb.BinDir, 0o755); err != nil {
		return nil, err
	}
	e := &serveEnv{cfg: cfg, work: work, logf: logf, r: &runner{cfg: cfg, work: work, logf: logf, timeBin: gnuTime()}}
	if e.rv, err = tb.regvault(ctx); err != nil {
		return nil, err
	}
	if e.crane, err = tb.crane(ctx); err != nil {
		return nil, err
	}
	if e.base, err = tb.baseline(); err != nil {
		return nil, err
	}
	res.DistVersion = distVersion(ctx, cfg.DistBin)

	spec, err := NewSpec(WorkloadL, cfg.Seed, cfg.Options)
	if err != nil {
		return nil, err
	}
	src, err := OpenSource(ctx, cfg.DistBin, cfg.CacheDir, work, spec, logf)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	w := src.Workload
	res.Workload, res.About, res.BlobBytes, res.Tags = w.Name(), w.Describe(), w.BlobBytes(), w.TagCount()
	logf("  %s", w.Describe())

	// The archives: all of L, and one image of it (tags only: served
	// under --repository).
	big := filepath.Join(work, "l.tar")
	small := filepath.Join(work, "one-image.tar")
	first := w.Repos[0]
	args := []string{"backup", "--output", big, "--include-referrers", "--plain-http", "--no-tty"}
	for _, r := range w.Repos {
		args = append(args, src.BackendHost()+"/"+r.Name)
	}
	logf("  writing the archives (not measured)")
	for _, a := range [][]string{args, {"backup", "--output", small, "--plain-http", "--no-tty", src.BackendHost() + "/" + first.Name + ":" + first.Tags[0].Name}} {
		if out, err := exec.CommandContext(ctx, e.rv.Path, a...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("regvault %s: %v\n%s", strings.Join(a, " "), err, lastLines(string(out), 5))
		}
	}
	if fi, err := os.Stat(big); err == nil {
		res.TarBytes = fi.Size()
	}

	// Throughput: both servers, both clients, the order rotated per run.
	rs, err := e.startServe(ctx, "serve-throughput", big)
	if err != nil {
		return nil, err
	}
	res.StartSec = rs.startSec
	logf("  regvault serve at %s (started in %.2fs on a %s archive)", rs.addr, rs.startSec, sizeString(res.TarBytes))
	res.Pulls = e.pulls(ctx, w, rs, big, src.BackendHost(), processWith(src.tmp))
	throughputRSS := rs.hwm()
	rs.stop()
	if throughputRSS > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("peak RSS of the regvault serve process over all the pulls above: %s", rssString(throughputRSS)))
	}

	// Memory: fresh processes of both servers, 100 blob GETs at once.
	blobs := largestBlobs(w.Blobs, ServeConcurrentGets)
	if rs, err := e.startServe(ctx, "serve-memory", big); err != nil {
		res.Memory = append(res.Memory, ServeMemory{Server: ServerRegvault, Err: err.Error()})
	} else {
		res.Memory = append(res.Memory, e.memory(ctx, ServerRegvault, rs.addr, rs.pid, blobs))
		rs.stop()
	}
	if fresh, err := OpenSource(ctx, cfg.DistBin, cfg.CacheDir, work, spec, nil); err != nil {
		res.Memory = append(res.Memory, ServeMemory{Server: ServerDistribution, Err: err.Error()})
	} else {
		if pid := processWith(fresh.tmp); pid > 0 {
			res.Memory = append(res.Memory, e.memory(ctx, ServerDistribution, fresh.BackendHost(), pid, blobs))
		} else {
			res.Memory = append(res.Memory, ServeMemory{Server: ServerDistribution, Err: "its process was not found in /proc"})
		}
		fresh.Close()
	}

	// Time to first byte: the config and the largest layer of the first
	// image, served from the one-image archive and from all of L.
	img := imageBlobs(ctx, src.BackendHost(), first.Name, first.Tags[0].Digest)
	for _, a := range []struct {
		name, path string
		args       []string
	}{
		{"one image", small, []string{"--repository", first.Name}},
		{"all of " + w.Name(), big, nil},
	} {
		rs, err := e.startServe(ctx, "serve-ttfb", a.path, a.args...)
		var size int64
		if fi, err := os.Stat(a.path); err == nil {
			size = fi.Size()
		}
		for _, b := range img {
			t := ServeTTFB{Archive: a.name, ArchiveBytes: size, Blob: b.MediaType, BlobBytes: b.Size}
			if err != nil {
				t.Err = err.Error()
			} else {
				t.StartSec = rs.startSec
				t.Ms, err = timeToFirstByte(ctx, rs.addr, first.Name, b.Digest, ServeTTFBSamples)
				if err != nil {
					t.Err = err.Error()
				}
				logf("  ttfb %s (%s) %s: median %.2f ms", a.name, sizeString(size), b.MediaType, medianOf(t.Ms))
			}
			res.TTFB = append(res.TTFB, t)
		}
		if err == nil {
			rs.stop()
		}
	}
	res.LoadAfter = loadAvg()

	fmt.Fprint(cfg.Out, "\n"+res.Markdown())
	if cfg.ResultsDir != "" {
		if err := saveServe(cfg.ResultsDir, res); err != nil {
			return res, err
		}
	}
	if cfg.DocPath != "" {
		if err := SpliceServeSection(cfg.DocPath, res); err != nil {
			return res, err
		}
		logf("\nwrote the Serve section of %s", cfg.DocPath)
	}
	return res, nil
}

// pulls runs each client against each server cfg.Runs times, and crane
// against a fresh regvault serve process per run (its first read of every
// blob: each is hashed as it is sent). Before the runs, every blob is read
// once from each long-running server (not measured), so that their rows
// are repeated pulls: regvault serve has checked every blob, and both
// servers' files are in the page cache.
func (e *serveEnv) pulls(ctx context.Context, w *Workload, rs *servedProc, archivePath, dist string, distPid int) []ServePull {
	blobList := filepath.Join(e.work, "blobs.json")
	data, _ := json.Marshal(w.Blobs)
	if err := os.WriteFile(blobList, data, 0o644); err != nil {
		return []ServePull{{Err: err.Error()}}
	}
	type cell struct {
		pull  *ServePull
		host  string
		pid   int
		fresh bool
		tool  *Tool
	}
	var cells []*cell
	pulls := make([]ServePull, 0, 5)
	for _, srv := range []struct {
		name, host string
		pid        int
	}{{ServerRegvault, rs.addr, rs.pid}, {ServerDistribution, dist, distPid}} {
		for _, t := range []*Tool{e.crane, e.base} {
			name := ClientCrane
			cmd := e.crane.BackupDoc
			if t == e.base {
				name, cmd = ClientBaseline, e.base.BackupDoc
			}
			pulls = append(pulls, ServePull{Server: srv.name, Client: name, Command: cmd, Bytes: w.BlobBytes()})
			cells = append(cells, &cell{host: srv.host, pid: srv.pid, tool: t})
		}
	}
	pulls = append(pulls, ServePull{Server: ServerRegvaultCold, Client: ClientCrane, Command: e.crane.BackupDoc, Bytes: w.BlobBytes(), Fresh: true})
	cells = append(cells, &cell{tool: e.crane, fresh: true})
	for i := range cells {
		cells[i].pull = &pulls[i]
	}
	for _, c := range cells[:4] {
		if c.tool != e.base {
			continue
		}
		start := time.Now()
		run := e.r.execute(ctx, c.tool, "serve-warmup", mustBackup(c.tool, Env{W: w, Host: c.host, Dir: filepath.Join(e.work, "warmup"), BlobList: blobList}), filepath.Join(e.work, "warmup.log"))
		os.RemoveAll(filepath.Join(e.work, "warmup"))
		e.logf("  warm-up of %s (every blob read once, not measured): %.2fs %s", c.pull.Server, time.Since(start).Seconds(), run.Err)
	}
	for k := 0; k < e.cfg.Runs; k++ {
		for i := range cells {
			c := cells[(i+k)%len(cells)]
			if c.pull.Err != "" {
				continue
			}
			dir := filepath.Join(e.work, "pull", fmt.Sprint(k))
			os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				c.pull.Err = err.Error()
				continue
			}
			host, pid := c.host, c.pid
			var fresh *servedProc
			if c.fresh {
				var err error
				if fresh, err = e.startServe(ctx, "serve-fresh", archivePath); err != nil {
					c.pull.Err = err.Error()
					continue
				}
				host, pid = fresh.addr, fresh.pid
			}
			cmds, out := c.tool.Backup(Env{W: w, Host: host, Dir: dir, BlobList: blobList})
			cpu0 := procCPU(pid)
			run := e.r.execute(ctx, c.tool, "serve-pull", cmds, filepath.Join(e.work, fmt.Sprintf("pull-%s-%d.log", c.tool.Name, k)))
			serverCPU := procCPU(pid) - cpu0
			if fresh != nil {
				fresh.stop()
			}
			if run.Err == "" {
				if msg := checkPulled(w, out[0], c.tool == e.crane); msg != "" {
					run.Err = msg
				}
			}
			if run.Err != "" {
				c.pull.Err = run.Err
			} else {
				c.pull.WallSec = append(c.pull.WallSec, run.WallSec)
				c.pull.CPUSec = append(c.pull.CPUSec, run.CPUSec)
				if pid > 0 {
					c.pull.ServerCPUSec = append(c.pull.ServerCPUSec, serverCPU)
				}
			}
			e.logf("  %s, %s, run %d/%d: %.2fs (server CPU %.2fs) %s", c.pull.Server, c.pull.Client, k+1, e.cfg.Runs, run.WallSec, serverCPU, run.Err)
			os.RemoveAll(dir)
		}
	}
	return pulls
}

func mustBackup(t *Tool, env Env) []Command {
	cmds, _ := t.Backup(env)
	return cmds
}

// procCPU is the CPU time (user + system) of process pid so far, in
// seconds, or 0.
func procCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	return parseProcCPU(string(data))
}

// parseProcCPU reads utime and stime (fields 14 and 15, in clock ticks of
// 1/100 s on Linux) of a /proc/<pid>/stat line.
func parseProcCPU(stat string) float64 {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0
	}
	var u, s float64
	fmt.Sscanf(f[11], "%g", &u)
	fmt.Sscanf(f[12], "%g", &s)
	return (u + s) / 100
}

// checkPulled is "" when what a pull wrote holds every blob of w (every
// layer and config; in an OCI layout, under blobs/sha256), or says what
// is missing.
func checkPulled(w *Workload, out string, layout bool) string {
	dir := out
	if layout {
		dir = filepath.Join(out, "blobs", "sha256")
	}
	refs := map[string]bool{}
	for _, d := range w.ReferrerBlobs {
		refs[d] = true
	}
	missing := 0
	var first string
	for _, b := range w.Blobs {
		if refs[b.Digest] && layout {
			continue // crane pull takes tags: no referrers
		}
		fi, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(b.Digest, "sha256:")))
		if err != nil || fi.Size() != b.Size {
			if missing == 0 {
				first = b.Digest
			}
			missing++
		}
	}
	if missing > 0 {
		return fmt.Sprintf("%d of %d blobs missing or of the wrong size in %s (first %s)", missing, len(w.Blobs), out, first)
	}
	return ""
}

// memory GETs blobs all at once from host and reads the peak RSS (VmHWM)
// of the server process pid before and after.
func (e *serveEnv) memory(ctx context.Context, server, host string, pid int, blobs []Blob) ServeMemory {
	m := ServeMemory{Server: server, Gets: len(blobs), Fresh: true, Measured: "VmHWM of /proc/<pid>/status"}
	m.IdleRSS = readHWM(pid)
	tr := &http.Transport{MaxIdleConnsPerHost: len(blobs), DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for _, b := range blobs {
		wg.Add(1)
		go func(b Blob) {
			defer wg.Done()
			n, err := getBlobBody(ctx, hc, host, b)
			mu.Lock()
			defer mu.Unlock()
			m.Bytes += n
			if err != nil && m.Err == "" {
				m.Err = err.Error()
			}
		}(b)
	}
	wg.Wait()
	m.WallSec = time.Since(start).Seconds()
	m.PeakRSS = readHWM(pid)
	e.logf("  %s: %d blob GETs at once, %s in %.1fs: peak RSS %s (after start %s) %s", server, len(blobs), mbString(m.Bytes), m.WallSec, rssString(m.PeakRSS), rssString(m.IdleRSS), m.Err)
	return m
}

func getBlobBody(ctx context.Context, hc *http.Client, host string, b Blob) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/"+b.Repo+"/blobs/"+b.Digest, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s blob %s: %s", b.Repo, b.Digest, resp.Status)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n != b.Size {
		err = fmt.Errorf("GET %s blob %s: %d bytes, want %d", b.Repo, b.Digest, n, b.Size)
	}
	return n, err
}

// timeToFirstByte GETs repo's blob dgst n times, each on a new connection,
// and returns the milliseconds from sending each request to reading the
// first byte of its body.
func timeToFirstByte(ctx context.Context, host, repo, dgst string, n int) ([]float64, error) {
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var out []float64
	buf := make([]byte, 1)
	for i := 0; i < n; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/"+repo+"/blobs/"+dgst, nil)
		if err != nil {
			return out, err
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return out, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return out, fmt.Errorf("GET %s blob %s: %s", repo, dgst, resp.Status)
		}
		_, err = io.ReadFull(resp.Body, buf)
		first := time.Now()
		resp.Body.Close()
		if err != nil {
			return out, err
		}
		out = append(out, float64(first.Sub(start).Microseconds())/1000)
	}
	return out, nil
}

// imageBlobs is the config and the largest layer of the image manifest
// repo@dgst at host.
func imageBlobs(ctx context.Context, host, repo, dgst string) []Blob {
	c := newClient(host, 1)
	defer c.close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v2/"+repo+"/manifests/"+dgst, nil)
	req.Header.Set("Accept", strings.Join(manifestTypes, ", "))
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m struct {
		Config Blob   `json:"config"`
		Layers []Blob `json:"layers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil
	}
	out := []Blob{{Digest: m.Config.Digest, Size: m.Config.Size, MediaType: "config", Repo: repo}}
	sortBySizeDesc(m.Layers)
	if len(m.Layers) > 0 {
		out = append(out, Blob{Digest: m.Layers[0].Digest, Size: m.Layers[0].Size, MediaType: "largest layer", Repo: repo})
	}
	return out
}

// largestBlobs is the n largest blobs (again from the largest when there
// are fewer than n).
func largestBlobs(blobs []Blob, n int) []Blob {
	order := append([]Blob(nil), blobs...)
	sortBySizeDesc(order)
	out := make([]Blob, 0, n)
	for i := 0; len(order) > 0 && len(out) < n; i++ {
		out = append(out, order[i%len(order)])
	}
	return out
}

// servedProc is a regvault serve process.
type servedProc struct {
	cmd      *exec.Cmd
	pid      int
	addr     string
	startSec float64
	done     chan struct{}
}

var serveAddr = regexp.MustCompile(`at https?://([0-9.]+:[0-9]+)`)

// startServe starts `regvault serve --input input --listen 127.0.0.1:0
// args...` and waits for its startup line.
func (e *serveEnv) startServe(ctx context.Context, name, input string, args ...string) (*servedProc, error) {
	logPath := filepath.Join(e.work, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.rv.Path, append([]string{"serve", "--input", input, "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = logFile
	if e.cfg.ProfileDir != "" {
		cmd.Env = append(os.Environ(), ProfileEnv+"="+filepath.Join(e.cfg.ProfileDir, name))
		e.logf("  profiling regvault serve: %s-<pid>.pprof", filepath.Join(e.cfg.ProfileDir, name))
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &servedProc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		defer close(p.done)
		defer logFile.Close()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			if m := serveAddr.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
	}()
	select {
	case p.addr = <-addrc:
		p.startSec = time.Since(start).Seconds()
		return p, nil
	case <-p.done:
		data, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("regvault serve --input %s ended before serving: %s", input, lastLines(string(data), 3))
	case <-time.After(10 * time.Minute): // a hang, not a timing
	case <-ctx.Done():
	}
	p.stop()
	return nil, fmt.Errorf("regvault serve --input %s printed no startup line", input)
}

func (p *servedProc) hwm() int64 { return readHWM(p.pid) }

// stop ends the server with SIGTERM (SIGKILL after 30s) and waits.
func (p *servedProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// readHWM is the peak resident set (VmHWM) of process pid in bytes, or 0.
func readHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return parseHWM(string(data))
}

func parseHWM(status string) int64 {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

// processWith is the pid of a process whose command line contains s (a
// registry's directory: the one we started), or 0.
func processWith(s string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(data), s) && strings.Contains(string(data), "serve") {
			return pid
		}
	}
	return 0
}

func distVersion(ctx context.Context, bin string) string {
	if bin == "" {
		bin = os.Getenv("REGVAULT_DISTRIBUTION")
	}
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return "?"
	}
	if m := regexp.MustCompile(`(?m)^\s+mod\s+\S+\s+(v\S+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "?"
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// medianOf is the median of xs (0 for none).
func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// serveResultPath is where a ServeResult is kept in the results
// directory (a subdirectory: the sections are the *.json files of the
// directory itself).
func serveResultPath(dir string) string { return filepath.Join(dir, OpServe, "result.json") }

func saveServe(dir string, s *ServeResult) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, OpServe), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(serveResultPath(dir), data)
}

// LoadServe is the serve result kept in dir, or nil.
func LoadServe(dir string) *ServeResult {
	data, err := os.ReadFile(serveResultPath(dir))
	if err != nil {
		return nil
	}
	var s ServeResult
	if json.Unmarshal(data, &s) != nil {
		return nil
	}
	return &s
}

// serveHeading starts the Serve section, the last of docs/benchmarks.md.
const serveHeading = "## Serve"

// SpliceServeSection puts s's section at the end of the report at
// docPath, replacing the Serve section there (everything from its
// heading on); the rest of the file is kept. A nil s leaves the file
// alone.
func SpliceServeSection(docPath string, s *ServeResult) error {
	if s == nil {
		return nil
	}
	data, err := os.ReadFile(docPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(docPath, []byte(spliceServe(string(data), s.Markdown())), 0o644)
}

func spliceServe(doc, section string) string {
	if i := strings.Index(doc, "\n"+serveHeading+"\n"); i >= 0 {
		doc = doc[:i+1]
	} else if strings.HasPrefix(doc, serveHeading+"\n") {
		doc = ""
	}
	if doc != "" {
		doc = strings.TrimRight(doc, "\n") + "\n\n"
	}
	return doc + section
}

// Verdicts of the targets.
func (s *ServeResult) pull(server, client string) *ServePull {
	for i := range s.Pulls {
		if s.Pulls[i].Server == server && s.Pulls[i].Client == client {
			return &s.Pulls[i]
		}
	}
	return nil
}

func (s *ServeResult) memory(server string) *ServeMemory {
	for i := range s.Memory {
		if s.Memory[i].Server == server {
			return &s.Memory[i]
		}
	}
	return nil
}

// throughputMet: for each client, regvault serve's median throughput is
// at least the distribution registry's.
func (s *ServeResult) throughputMet(server, client string) (string, string) {
	a, b := s.pull(server, client), s.pull(ServerDistribution, client)
	switch {
	case a == nil || b == nil:
		return "not measured", "?"
	case a.Err != "" || b.Err != "" || len(a.WallSec) == 0 || len(b.WallSec) == 0:
		return "failed: " + firstNonEmpty(a.Err, b.Err), "no"
	}
	figures := fmt.Sprintf("%.0f MB/s served vs %.0f MB/s distribution (%+.0f%%)", a.MBps(), b.MBps(), 100*(a.MBps()/b.MBps()-1))
	if a.MBps() >= b.MBps() {
		return figures, "met"
	}
	return figures, "not met"
}

func (s *ServeResult) rssMet() (string, string) {
	m := s.memory(ServerRegvault)
	switch {
	case m == nil:
		return "not measured", "?"
	case m.Err != "":
		return "failed: " + m.Err, "no"
	}
	figures := fmt.Sprintf("%s (after start %s)", rssString(m.PeakRSS), rssString(m.IdleRSS))
	if d := s.memory(ServerDistribution); d != nil && d.Err == "" {
		figures += fmt.Sprintf("; distribution %s", rssString(d.PeakRSS))
	}
	if m.PeakRSS > 0 && m.PeakRSS < ServeRSSTarget {
		return figures, "met"
	}
	return figures, "not met"
}

// ttfbMet: for each blob, the median time to the first byte from the
// whole archive is within 1.5× (or 1 ms) of that from the one-image
// archive. The server looks a blob up in an index built at start, so the
// archive's size should not show; the margin is for a loaded machine.
func (s *ServeResult) ttfbMet() (string, string) {
	if len(s.TTFB) == 0 {
		return "not measured", "?"
	}
	byBlob := map[string][]ServeTTFB{}
	var blobs []string
	for _, t := range s.TTFB {
		if t.Err != "" {
			return "failed: " + t.Err, "no"
		}
		if _, ok := byBlob[t.Blob]; !ok {
			blobs = append(blobs, t.Blob)
		}
		byBlob[t.Blob] = append(byBlob[t.Blob], t)
	}
	met := true
	var parts []string
	for _, b := range blobs {
		ts := byBlob[b]
		if len(ts) != 2 {
			return "incomplete", "?"
		}
		small, big := medianOf(ts[0].Ms), medianOf(ts[1].Ms)
		parts = append(parts, fmt.Sprintf("%s: %.2f ms (%s archive) vs %.2f ms (%s)", b, small, sizeString(ts[0].ArchiveBytes), big, sizeString(ts[1].ArchiveBytes)))
		if big > 1.5*small && big-small > 1 {
			met = false
		}
	}
	if met {
		return strings.Join(parts, "; "), "met"
	}
	return strings.Join(parts, "; "), "not met"
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// Markdown is the Serve section of docs/benchmarks.md.
func (s *ServeResult) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("%s\n\n", serveHeading)
	p("`regvault serve` of a plain .tar of workload %s (%s), side by side with the distribution registry %s serving the same content from its filesystem store, on loopback without a proxy, in one run.\n\n", s.Workload, s.About, s.DistVersion)
	p("- measured %s with `%s`; %d run(s) of each pull, medians\n", s.Date, s.CommandLine, s.Runs)
	p("- machine: %s\n", s.Machine)
	p("- load average (1, 5, 15 min) at start %s, at end %s\n", s.LoadBefore, s.LoadAfter)
	p("- the served archive: %s; regvault serve printed its startup line %.2fs after it started (reading the listing, checking every manifest)\n\n", sizeString(s.TarBytes), s.StartSec)

	p("### Serve targets\n\n| target | figures | |\n|---|---|---|\n")
	for _, c := range []struct{ server, client, what string }{
		{ServerRegvault, ClientCrane, ClientCrane + ", repeated"},
		{ServerRegvault, ClientBaseline, ClientBaseline + ", repeated"},
		{ServerRegvaultCold, ClientCrane, ClientCrane + ", first pull from a fresh regvault serve"},
	} {
		if s.pull(c.server, c.client) == nil {
			continue // a result from before the fresh-process row
		}
		f, v := s.throughputMet(c.server, c.client)
		p("| pull throughput of a served .tar ≥ the distribution registry's (%s) | %s | %s |\n", c.what, f, v)
	}
	f, v := s.rssMet()
	p("| peak RSS of the server under %d concurrent blob GETs < %s | %s | %s |\n", ServeConcurrentGets, rssString(ServeRSSTarget), f, v)
	f, v = s.ttfbMet()
	p("| time to first byte of a blob independent of the archive's size (L within 1.5× or 1 ms of one image) | %s | %s |\n\n", f, v)

	p("### Serve: pull throughput\n\n| server | client | wall (median) | MB/s | client CPU (median) | server CPU (median) | runs |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, pl := range s.Pulls {
		if pl.Err != "" {
			p("| %s | %s | failed: %s | | | | |\n", pl.Server, pl.Client, pl.Err)
			continue
		}
		runs := make([]string, len(pl.WallSec))
		for i, w := range pl.WallSec {
			runs[i] = fmt.Sprintf("%.1fs", w)
		}
		server := "?"
		if len(pl.ServerCPUSec) > 0 {
			server = fmt.Sprintf("%.2fs", medianOf(pl.ServerCPUSec))
		}
		p("| %s | %s | %.1fs | %.0f | %.1fs | %s | %s |\n", pl.Server, pl.Client, medianOf(pl.WallSec), pl.MBps(), medianOf(pl.CPUSec), server, strings.Join(runs, " "))
	}
	p("\nMB/s is the unique blob bytes (%s) over the wall time. Commands (the host is the server's address): `%s`; `%s`.\n", mbString(s.BlobBytes), firstCommand(s.Pulls, ClientCrane), firstCommand(s.Pulls, ClientBaseline))
	p("The cells run in turn, each run starting one cell later. Before the runs every blob is read once from each of the two long-running servers (not measured), so their rows are repeated pulls: regvault serve sends a blob it has checked whole once straight from the file (sendfile), and both servers' files are in the page cache. The fresh-process row starts a regvault serve for each run: its first read of every blob, hashed as it is sent (the digest check; the distribution registry checks no digest when it serves). Server CPU is the server process's user + system time during the run. On loopback, client and server share the machine's cores: a body sent with sendfile costs the server little, but the receiving client more (the copy the server no longer makes moves to the client's side of the connection), so compare wall times and client + server CPU.\n\n")

	p("### Serve: memory under %d concurrent blob GETs\n\n| server | peak RSS after start | peak RSS after the GETs | bytes read | wall |\n|---|---:|---:|---:|---:|\n", ServeConcurrentGets)
	for _, m := range s.Memory {
		if m.Err != "" {
			p("| %s | failed: %s | | | |\n", m.Server, m.Err)
			continue
		}
		p("| %s | %s | %s | %s | %.1fs |\n", m.Server, rssString(m.IdleRSS), rssString(m.PeakRSS), mbString(m.Bytes), m.WallSec)
	}
	p("\nEach server is a fresh process; the %d GETs (the largest blobs of %s, each read to its end) start at once from the harness; peak RSS is VmHWM of /proc/<pid>/status.\n\n", ServeConcurrentGets, s.Workload)

	p("### Serve: time to first byte\n\n| archive | size | startup | blob | blob size | median | p90 |\n|---|---:|---:|---|---:|---:|---:|\n")
	for _, t := range s.TTFB {
		if t.Err != "" {
			p("| %s | %s | | %s | | failed: %s | |\n", t.Archive, sizeString(t.ArchiveBytes), t.Blob, t.Err)
			continue
		}
		p("| %s | %s | %.2fs | %s | %s | %.2f ms | %.2f ms |\n", t.Archive, sizeString(t.ArchiveBytes), t.StartSec, t.Blob, sizeString(t.BlobBytes), medianOf(t.Ms), percentile(t.Ms, 0.9))
	}
	p("\n%d GETs of each blob of the first image, each on a new connection, timed from sending the request to reading the first byte of the body.\n", ServeTTFBSamples)
	for _, n := range s.Notes {
		p("\nNote: %s.\n", n)
	}
	return b.String()
}

func firstCommand(pulls []ServePull, client string) string {
	for _, p := range pulls {
		if p.Client == client {
			return p.Command
		}
	}
	return "?"
}

func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(q*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}
