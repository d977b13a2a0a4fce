package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sampleServeResult() *ServeResult {
	return &ServeResult{
		Date: "2026-11-30 04:00 UTC", CommandLine: "go run ./bench/cmd/bench -ops serve", Machine: "2 cores",
		LoadBefore: "1.00 1.00 1.00", LoadAfter: "2.00 1.50 1.00", Workload: "L", About: "L: 20 repositories", BlobBytes: 2000 * MB,
		Tags: 40, Runs: 3, TarBytes: 2 * GiB, StartSec: 0.5, DistVersion: "v3.1.2",
		Pulls: []ServePull{
			{Server: ServerRegvault, Client: ClientCrane, Command: "crane pull", Bytes: 2000 * MB, WallSec: []float64{10, 20, 11}, CPUSec: []float64{1, 1, 1}},
			{Server: ServerRegvault, Client: ClientBaseline, Command: "bench baseline get", Bytes: 2000 * MB, WallSec: []float64{30}},
			{Server: ServerDistribution, Client: ClientCrane, Command: "crane pull", Bytes: 2000 * MB, WallSec: []float64{40, 40, 40}},
			{Server: ServerDistribution, Client: ClientBaseline, Command: "bench baseline get", Bytes: 2000 * MB, WallSec: []float64{20}},
			{Server: ServerRegvaultCold, Client: ClientCrane, Command: "crane pull", Bytes: 2000 * MB, WallSec: []float64{50, 45, 60}, ServerCPUSec: []float64{2.5, 2, 3}, Fresh: true},
		},
		Memory: []ServeMemory{
			{Server: ServerRegvault, IdleRSS: 10 * MiB, PeakRSS: 30 * MiB, Gets: 100},
			{Server: ServerDistribution, IdleRSS: 40 * MiB, PeakRSS: 200 * MiB, Gets: 100},
		},
		TTFB: []ServeTTFB{
			{Archive: "one image", ArchiveBytes: 50 * MiB, Blob: "config", Ms: []float64{1, 1, 2}},
			{Archive: "one image", ArchiveBytes: 50 * MiB, Blob: "largest layer", Ms: []float64{1, 1, 1}},
			{Archive: "all of L", ArchiveBytes: 2 * GiB, Blob: "config", Ms: []float64{1.2, 1.1, 1}},
			{Archive: "all of L", ArchiveBytes: 2 * GiB, Blob: "largest layer", Ms: []float64{1, 1, 1}},
		},
	}
}

// targetRow is the row of the targets table whose first cell contains
// what, or "".
func targetRow(md, what string) string {
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") && strings.Contains(strings.SplitN(line, " | ", 2)[0], what) {
			return line
		}
	}
	return ""
}

func TestServeMarkdownVerdicts(t *testing.T) {
	s := sampleServeResult()
	md := s.Markdown()
	if !strings.HasPrefix(md, serveHeading+"\n") {
		t.Fatalf("the section does not start with %q:\n%s", serveHeading, md)
	}
	for what, want := range map[string]string{
		"(crane pull of every tag, repeated)":    "| met |",     // 2000/11 MB/s ≥ 2000/40
		"(baseline GET of every blob, repeated)": "| not met |", // 30s against 20s
		"(crane pull of every tag, first pull":   "| not met |", // 50s against 40s
		"concurrent blob GETs < 100":             "| met |",
		"time to first byte":                     "| met |",
	} {
		row := targetRow(md, what)
		if row == "" || !strings.HasSuffix(row, want) {
			t.Errorf("target %q: row %q, want it to end with %q", what, row, want)
		}
	}
	for _, want := range []string{"30 MiB (after start 10 MiB); distribution 200 MiB", "11.0s", "10.0s 20.0s 11.0s", "| 2.50s | 50.0s 45.0s 60.0s |", "load average (1, 5, 15 min) at start 1.00 1.00 1.00, at end 2.00 1.50 1.00"} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}

	// Over the targets: memory, time to first byte, a failed pull.
	s.Memory[0].PeakRSS = 150 * MiB
	s.TTFB[2].Ms = []float64{5, 5, 5}
	s.Pulls[0].Err = "crane pull: exit status 1"
	md = s.Markdown()
	for what, want := range map[string]string{
		"(crane pull of every tag, repeated)": "failed: crane pull: exit status 1 | no |",
		"concurrent blob GETs < 100":          "| not met |",
		"time to first byte":                  "| not met |",
	} {
		if row := targetRow(md, what); !strings.HasSuffix(row, want) {
			t.Errorf("target %q: row %q, want it to end with %q", what, row, want)
		}
	}
}

func TestSpliceServe(t *testing.T) {
	sec := sampleServeResult().Markdown()
	doc := "# Benchmarks\n\n## Results\n\ntable\n"
	once := spliceServe(doc, sec)
	if !strings.HasPrefix(once, doc) || !strings.HasSuffix(once, sec) {
		t.Fatalf("spliceServe does not append the section to the report:\n%s", once)
	}
	// Replacing: the section changes, the report before it does not,
	// and no second Serve section appears.
	sec2 := strings.Replace(sec, "v3.1.2", "v9.9.9", 1)
	twice := spliceServe(once, sec2)
	if twice != spliceServe(doc, sec2) || strings.Count(twice, "\n"+serveHeading+"\n") != 1 {
		t.Errorf("splicing again does not replace the section:\n%s", twice)
	}
	if got := spliceServe("", sec); got != sec {
		t.Errorf("into an empty report: %q", got)
	}
	if got := spliceServe(sec, sec2); got != sec2 {
		t.Errorf("a report of the section alone is not replaced: %q", got)
	}

	// The file: written, and a nil result leaves it alone.
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SpliceServeSection(path, nil); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != doc {
		t.Errorf("a nil result changed the report: %q", data)
	}
	if err := SpliceServeSection(path, sampleServeResult()); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != once {
		t.Errorf("the report file is\n%s\nwant\n%s", data, once)
	}
}

func TestServeResultSaved(t *testing.T) {
	dir := t.TempDir()
	if LoadServe(dir) != nil {
		t.Fatal("a result from an empty directory")
	}
	s := sampleServeResult()
	if err := saveServe(dir, s); err != nil {
		t.Fatal(err)
	}
	got := LoadServe(dir)
	if got == nil || got.Markdown() != s.Markdown() {
		t.Fatalf("the kept result differs: %+v", got)
	}
	// The sections of the results directory are its *.json files: the
	// serve result must not be read as one.
	if secs, err := loadSections(dir); err != nil || len(secs) != 0 {
		t.Errorf("loadSections reads the serve result: %v %v", secs, err)
	}
}

func TestParseHWM(t *testing.T) {
	status := "Name:\tregvault\nVmPeak:\t 1300000 kB\nVmHWM:\t   24576 kB\nVmRSS:\t   20000 kB\n"
	if got := parseHWM(status); got != 24576*1024 {
		t.Errorf("parseHWM: %d", got)
	}
	if got := parseHWM("Name:\tx\n"); got != 0 {
		t.Errorf("parseHWM without VmHWM: %d", got)
	}
	if got := readHWM(os.Getpid()); got <= 0 {
		t.Errorf("readHWM of this process: %d", got)
	}
}

func TestServeAddrFromStartupLine(t *testing.T) {
	line := "Serving /tmp/l.tar (tar) at http://127.0.0.1:40123, read-only: 20 repositories, 40 tags"
	if m := serveAddr.FindStringSubmatch(line); m == nil || m[1] != "127.0.0.1:40123" {
		t.Errorf("the address of %q: %v", line, m)
	}
}

func TestLargestBlobs(t *testing.T) {
	blobs := []Blob{{Digest: "a", Size: 1}, {Digest: "b", Size: 3}, {Digest: "c", Size: 2}}
	got := largestBlobs(blobs, 5)
	var ds []string
	for _, b := range got {
		ds = append(ds, b.Digest)
	}
	if strings.Join(ds, "") != "bcabc" {
		t.Errorf("largestBlobs: %v", ds)
	}
	if got := largestBlobs(blobs, 2); len(got) != 2 || got[0].Digest != "b" || got[1].Digest != "c" {
		t.Errorf("largestBlobs(2): %v", got)
	}
	if got := largestBlobs(nil, 3); len(got) != 0 {
		t.Errorf("largestBlobs of none: %v", got)
	}
}

func TestCheckPulled(t *testing.T) {
	w := &Workload{
		Blobs:         []Blob{{Digest: "sha256:aa", Size: 2}, {Digest: "sha256:bb", Size: 3}, {Digest: "sha256:rr", Size: 1}},
		ReferrerBlobs: []string{"sha256:rr"},
	}
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(dir, name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(blobs, "aa", "xx")
	write(blobs, "bb", "xy")
	if msg := checkPulled(w, dir, true); !strings.Contains(msg, "1 of 3") || !strings.Contains(msg, "sha256:bb") {
		t.Errorf("a blob of the wrong size: %q", msg)
	}
	write(blobs, "bb", "xyz")
	if msg := checkPulled(w, dir, true); msg != "" {
		t.Errorf("a complete layout (referrer blobs left out, as crane pull does): %q", msg)
	}
	// The baseline's directory of blob files has the referrers' too.
	write(dir, "aa", "xx")
	write(dir, "bb", "xyz")
	if msg := checkPulled(w, dir, false); !strings.Contains(msg, "sha256:rr") {
		t.Errorf("the baseline's files without a referrer blob: %q", msg)
	}
}

func TestMedianAndPercentile(t *testing.T) {
	if got := medianOf(nil); got != 0 {
		t.Errorf("medianOf(nil) = %v", got)
	}
	if got := medianOf([]float64{3, 1, 2}); got != 2 {
		t.Errorf("medianOf odd = %v", got)
	}
	if got := medianOf([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("medianOf even = %v", got)
	}
	xs := []float64{10, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if got := percentile(xs, 0.9); got != 9 {
		t.Errorf("p90 = %v", got)
	}
	if got := percentile([]float64{5}, 0.9); got != 5 {
		t.Errorf("p90 of one = %v", got)
	}
}

// The client tests of regvault serve run the crane that the Makefile
// installs; the benchmarks install their own: both are the same version.
func TestCraneVersionMatchesMakefile(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mk), "\n") {
		if name, value, ok := strings.Cut(line, ":="); ok && strings.TrimSpace(name) == "CRANE_VERSION" {
			if v := strings.TrimSpace(value); v != CraneVersion {
				t.Errorf("Makefile CRANE_VERSION %s, bench.CraneVersion %s: pin one version in both", v, CraneVersion)
			}
			return
		}
	}
	t.Error("Makefile has no CRANE_VERSION")
}

// A report rewritten over a document with a Serve section keeps no part
// of that section in the result sections it carries over (the Serve
// section is put back whole at the end).
func TestMergeDocLeavesServeSection(t *testing.T) {
	old := "# Benchmarks\n\n## Results\n\n### B · loopback · restore\n\n| tool | wall |\n\n" + sampleServeResult().Markdown()
	r := &Report{}
	r.MergeDoc(old)
	if len(r.Sections) != 1 {
		t.Fatalf("kept sections: %d, want 1", len(r.Sections))
	}
	if raw := r.Sections[0].Raw; strings.Contains(raw, serveHeading) || strings.Contains(raw, "Serve targets") {
		t.Errorf("the kept section carries the Serve section:\n%s", raw)
	}
}

func TestParseProcCPU(t *testing.T) {
	// pid (comm with ") " in it) state ppid ... utime stime ...
	stat := "1234 (a) b) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 8 0 100 1000 200\n"
	if got := parseProcCPU(stat); got != 3.25 {
		t.Errorf("parseProcCPU = %v, want 3.25", got)
	}
	if got := parseProcCPU("garbage"); got != 0 {
		t.Errorf("parseProcCPU of garbage = %v", got)
	}
	if got := procCPU(os.Getpid()); got < 0 {
		t.Errorf("procCPU of this process: %v", got)
	}
}
