package bench

import (
	"context"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func testSweep() *Sweep {
	return &Sweep{Workload: "D1", Runs: 3, Unique: 145e6, DefaultAbout: "x", Series: []*SweepSeries{
		{Profile: "loopback", Op: OpBackup, Fixed: []float64{2, 1, 1.2, 1.5, 1.6}, Default: 1.05},
		{Profile: "far", Op: OpRestore, Fixed: []float64{9, 6, 4, 3, 0}, Default: 3.5, Errs: []string{"--concurrency 32: boom"}},
	}}
}

// TestSweepMarkdown: the best fixed level of each series in bold, the
// default's ratio to it and whether it is within 10%, failures said.
func TestSweepMarkdown(t *testing.T) {
	sw := testSweep()
	md := sw.Markdown("concurrency.svg")
	for _, want := range []string{
		"| --concurrency | loopback backup | far restore |\n",
		"| 4 | **1.00 s** | 6.00 s |\n",
		"| 16 | 1.50 s | **3.00 s** |\n",
		"| 32 | 1.60 s | failed |\n",
		"| default | 1.05 s | 3.50 s |\n",
		"| default / best | 1.05 (best 4; ok) | 1.17 (best 16; **over 10%**) |\n",
		"- far restore: --concurrency 32: boom",
		"![wall time relative to the best fixed --concurrency, per profile and operation](concurrency.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in\n%s", want, md)
		}
	}
	if sw.Met() {
		t.Error("met with a default 17% over the best")
	}
	sw.Series[1].Default = 3.2
	if !sw.Met() {
		t.Error("not met with every default within 10%")
	}
	sw.Series[0].Default = 0
	if sw.Met() {
		t.Error("met with a default that failed")
	}
}

// TestSweepSVG: the plot is well-formed XML with a line per series and a
// dot for each default.
func TestSweepSVG(t *testing.T) {
	svg := testSweep().SVG()
	d := xml.NewDecoder(strings.NewReader(svg))
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
	if count["svg"] != 1 || count["polyline"] != 2 {
		t.Errorf("elements %v, want one svg and a polyline per series", count)
	}
	// Fixed points (5 + 4) and the two defaults.
	if count["circle"] != 11 {
		t.Errorf("%d circles, want 11", count["circle"])
	}
	if !strings.Contains(svg, ">loopback backup<") || !strings.Contains(svg, ">far restore<") || !strings.Contains(svg, `stroke-dasharray="6,4"`) {
		t.Errorf("legend or restore dash missing:\n%s", svg)
	}
}

func TestWithConcurrency(t *testing.T) {
	cmds := []Command{{Args: []string{"/bin/regvault", "backup", "--output", "o.tar", "h/r"}}}
	got := withConcurrency(cmds, 16)
	if want := []string{"/bin/regvault", "backup", "--concurrency", "16", "--output", "o.tar", "h/r"}; !reflect.DeepEqual(got[0].Args, want) {
		t.Errorf("got %q, want %q", got[0].Args, want)
	}
	if !reflect.DeepEqual(cmds[0].Args, []string{"/bin/regvault", "backup", "--output", "o.tar", "h/r"}) {
		t.Errorf("the original changed: %q", cmds[0].Args)
	}
	if got := withConcurrency(cmds, 0); !reflect.DeepEqual(got, cmds) {
		t.Errorf("the default changed the command: %q", got[0].Args)
	}
}

// The concurrency sweep section (pasted from -ops sweep) survives a
// rewrite of the document, once, unchanged.
func TestMergeDocKeepsSweep(t *testing.T) {
	sweep := "### " + SweepTitle + " · D1\n\n" + testSweep().Markdown("concurrency.svg") + "\n"
	old := (&Report{PriorShards: "### plan and shards · generated plans\n\nfigures\n\n"}).Markdown() + sweep
	rep := &Report{}
	rep.MergeDoc(old)
	md := rep.Markdown()
	if strings.Count(md, sweep) != 1 {
		t.Fatalf("the sweep section is not kept once:\n%s", md)
	}
	rep2 := &Report{}
	rep2.MergeDoc(md)
	if md2 := rep2.Markdown(); md2 != md {
		t.Errorf("merging again changes the document:\n%s\n----\n%s", md, md2)
	}
}

// The sweep against a real registry: every level and the default back up
// and restore correctly (the checks of the other tables), each with its
// own --concurrency, the default with none.
func TestRunSweep(t *testing.T) {
	if os.Getenv("REGVAULT_DISTRIBUTION") == "" {
		t.Skip("REGVAULT_DISTRIBUTION is not set")
	}
	work := t.TempDir()
	for _, d := range []string{"home", "tmp"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb := &Toolbox{BinDir: filepath.Join(work, "peers"), BuildDir: filepath.Join(work, "bin"), Root: root, Logf: t.Logf}
	rv, err := tb.regvault(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src, w := seededD1(ctx, t, work, 2)
	px, err := StartProxy(src.BackendHost(), ProfileLoopback)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	r := &runner{cfg: Config{Runs: 1, Timeout: 2 * time.Minute, Keep: true, Out: io.Discard}, work: work, tools: []*Tool{rv}, logf: t.Logf, sweeps: map[string]*Sweep{}}
	pdir := filepath.Join(work, "D1", "loopback")
	if err := r.sweep(ctx, px, ProfileLoopback, pdir, "", w); err != nil {
		t.Fatal(err)
	}
	sw := r.sweeps[w.Name()]
	if sw == nil || len(sw.Series) != 2 {
		t.Fatalf("sweep %+v, want a backup and a restore series", sw)
	}
	for _, s := range sw.Series {
		if len(s.Errs) > 0 || s.Default == 0 || slices.Contains(s.Fixed, 0) {
			t.Errorf("%s %s: fixed %v, default %v, errors %q", s.Profile, s.Op, s.Fixed, s.Default, s.Errs)
		}
	}
	for level, want := range map[string]string{"16": "backup --concurrency 16 --output", "default": "backup --output"} {
		log, err := os.ReadFile(filepath.Join(pdir, "sweep", "backup-"+level+"-0.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), want) {
			t.Errorf("the backup at %s ran:\n%s\nwant %q in it", level, log, want)
		}
	}
}
