package bench

import (
	"strings"
	"testing"
)

func farSection(base, workload, op string, walls map[string]float64) *Section {
	s := &Section{Workload: workload, Base: base, Profile: ProfileFar.Name, Op: op}
	for _, tool := range AllTools {
		if w, ok := walls[tool]; ok {
			s.Rows = append(s.Rows, &Row{Tool: tool, Runs: []RunResult{{WallSec: w, Check: "ok"}}})
		}
	}
	return s
}

// The far targets: regvault against the fastest peer that succeeded
// (the baseline is no peer), per workload and operation, S at the size
// it was measured at.
func TestFarTargets(t *testing.T) {
	failed := &Row{Tool: ToolOras, Runs: []RunResult{{WallSec: 1, Err: "timed out"}}}
	d1b := farSection(WorkloadD1, "D1", OpBackup, map[string]float64{ToolRegvault: 4, ToolCrane: 30, ToolRegsync: 25, ToolSkopeo: 50, ToolBaseline: 3})
	d1b.Rows = append(d1b.Rows, failed)
	d1r := farSection(WorkloadD1, "D1", OpRestore, map[string]float64{ToolRegvault: 8, ToolCrane: 35, ToolOras: 100})
	sb := farSection(WorkloadS, "S-50", OpBackup, map[string]float64{ToolRegvault: 10, ToolCrane: 200})
	rep := &Report{Sections: []*Section{d1b, d1r, sb}}
	got := map[string]Target{}
	for _, tg := range rep.Targets() {
		got[tg.Name] = tg
	}
	name := func(base, op string) string {
		return base + " far " + op + " ≥ 5× faster than the fastest of oras, crane, skopeo, regsync (+150ms per request, 10 MB/s per stream)"
	}
	for _, c := range []struct {
		base, op, status, measured string
	}{
		{WorkloadD1, OpBackup, "met", "6.25× the fastest peer, regsync (regvault 4.00 s; oras no result, crane 30.00 s, skopeo 50.00 s, regsync 25.00 s)"},
		{WorkloadD1, OpRestore, "missed", "4.38× the fastest peer, crane (regvault 8.00 s; oras 100.00 s, crane 35.00 s)"},
		{WorkloadS, OpBackup, "met", "20.00× the fastest peer, crane (regvault 10.00 s; crane 200.00 s) on S-50"},
		{WorkloadS, OpRestore, "not measured", ""},
	} {
		tg, ok := got[name(c.base, c.op)]
		if !ok {
			t.Errorf("no target %q", name(c.base, c.op))
			continue
		}
		if tg.Status != c.status || tg.Measured != c.measured {
			t.Errorf("%s %s: %s, %q; want %s, %q", c.base, c.op, tg.Status, tg.Measured, c.status, c.measured)
		}
	}
}

// Requests per tag on S: at most the fewest needed + 1 (a tag list per
// repository is 0.2 a tag; a Referrers API probe per repository another
// 0.2; GETs instead of HEADs more).
func TestRequestsPerTagTarget(t *testing.T) {
	const tname = "no tag costs more than a few round trips (S: requests per tag ≤ the fewest needed + 1)"
	sec := func(op string, requests map[string]int64) *Section {
		return &Section{Workload: "S", Base: WorkloadS, Profile: "loopback", Op: op, Tags: 1000, Blobs: 2200, Manifests: 1000,
			Rows: []*Row{{Tool: ToolRegvault, Runs: []RunResult{{WallSec: 10, Check: "ok", Stats: ProxyStats{Requests: requests}}}}}}
	}
	status := func(secs ...*Section) Target {
		for _, tg := range (&Report{Sections: secs}).Targets() {
			if tg.Name == tname {
				return tg
			}
		}
		t.Fatalf("no target %q", tname)
		return Target{}
	}
	// Backup: fewest 4.2 a tag (a GET per blob and manifest, a referrers
	// lookup per manifest); 4.4 with the tag lists is met.
	fine := map[string]int64{"GET blob": 2200, "GET manifest": 1000, "GET referrers-tag": 1000, "GET tags": 200, "GET referrers": 1}
	if tg := status(sec(OpBackup, fine)); tg.Status != "met" || !strings.Contains(tg.Measured, "S loopback backup: 4.4 requests per tag (fewest 4.2)") {
		t.Errorf("backup at 4.4 a tag: %s, %s", tg.Status, tg.Measured)
	}
	// A HEAD and a GET per manifest (5.6 a tag): more than one over.
	heavy := map[string]int64{"GET blob": 2200, "GET manifest": 1000, "HEAD manifest": 1000, "GET referrers-tag": 1000, "GET tags": 200, "GET referrers": 200}
	if tg := status(sec(OpBackup, heavy)); tg.Status != "missed" {
		t.Errorf("backup at 5.6 a tag (fewest 4.2): %s, %s", tg.Status, tg.Measured)
	}
	// Restore: fewest 5.4 (POST and PUT per blob, PUT per manifest).
	restore := map[string]int64{"POST upload": 2200, "PUT upload": 2200, "PUT manifest": 1000, "GET tags": 200}
	if tg := status(sec(OpRestore, restore)); tg.Status != "met" {
		t.Errorf("restore at 5.6 a tag (fewest 5.4): %s, %s", tg.Status, tg.Measured)
	}
}
