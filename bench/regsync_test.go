package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRegsyncBackupRestoreCommands: one regsync once per backup and per
// restore, a layout directory per repository, the restore reading back
// what the backup wrote.
func TestRegsyncBackupRestoreCommands(t *testing.T) {
	w := copyWorkload()
	dir := t.TempDir()
	cmds, outs := regsyncBackup("/bin/regsync")(Env{W: w, Host: "127.0.0.1:1000", Dir: dir})
	cfg := filepath.Join(dir, "regsync.yml")
	if len(cmds) != 1 || cmds[0].String() != "/bin/regsync once -c "+cfg {
		t.Fatalf("backup: %v", cmds)
	}
	if want := []string{filepath.Join(dir, "layout", "0000"), filepath.Join(dir, "layout", "0001")}; strings.Join(outs, " ") != strings.Join(want, " ") {
		t.Errorf("backup outputs %v, want %v", outs, want)
	}
	text := string(cmds[0].Files[cfg])
	for _, want := range []string{
		"  - registry: \"127.0.0.1:1000\"\n    tls: disabled\n",
		"defaults:\n  referrers: true\n",
		"  - source: \"127.0.0.1:1000/d1/app-0\"\n    target: \"ocidir://" + outs[0] + "\"\n    type: repository\n",
		"  - source: \"127.0.0.1:1000/d1/app-1\"\n    target: \"ocidir://" + outs[1] + "\"\n    type: repository\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("backup configuration lacks %q:\n%s", want, text)
		}
	}

	rcmds := regsyncRestore("/bin/regsync")(Env{W: w, In: outs, Target: "127.0.0.1:2000"})
	rcfg := filepath.Join(dir, "regsync-restore.yml")
	if len(rcmds) != 1 || rcmds[0].String() != "/bin/regsync once -c "+rcfg {
		t.Fatalf("restore: %v", rcmds)
	}
	text = string(rcmds[0].Files[rcfg])
	for _, want := range []string{
		"  - registry: \"127.0.0.1:2000\"\n    tls: disabled\n",
		"  - source: \"ocidir://" + outs[1] + "\"\n    target: \"127.0.0.1:2000/d1/app-1\"\n    type: repository\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("restore configuration lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "127.0.0.1:1000") {
		t.Errorf("restore configuration names the source registry:\n%s", text)
	}
}

// regsyncBin is the regsync the benchmarks install ($REGVAULT_REGSYNC, or
// the harness's cache), or "".
func regsyncBin() string {
	if p := os.Getenv("REGVAULT_REGSYNC"); p != "" {
		return p
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	p := filepath.Join(base, "regvault", "bench", "bin", "regsync")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// TestRegsyncBackupRestore runs regsync's backup and restore through the
// harness's loops against real registries: both check out (tags with the
// source's digests, referrers included), and a backup that lost a blob
// does not.
func TestRegsyncBackupRestore(t *testing.T) {
	if os.Getenv("REGVAULT_DISTRIBUTION") == "" {
		t.Skip("REGVAULT_DISTRIBUTION is not set")
	}
	bin := regsyncBin()
	if bin == "" {
		t.Skip("no regsync: set REGVAULT_REGSYNC, or run the benchmarks once to install it")
	}
	if out, err := exec.Command("go", "version", "-m", bin).Output(); err != nil || !strings.Contains(string(out), RegsyncModule+"\t"+RegsyncVersion) {
		t.Skipf("%s is not regsync %s", bin, RegsyncVersion)
	}
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reg, w := seededD1(ctx, t, work, 2)
	px, err := StartProxy(reg.BackendHost(), ProfileLoopback)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	for _, d := range []string{"home", "tmp"} {
		os.MkdirAll(filepath.Join(work, d), 0o755)
	}
	tool := &Tool{Name: ToolRegsync, Path: bin, Referrers: true, Manifests: true, Backup: regsyncBackup(bin), Restore: regsyncRestore(bin)}
	r := &runner{cfg: Config{Runs: 1, Timeout: 2 * time.Minute, Keep: true, Out: &strings.Builder{}}, work: work, tools: []*Tool{tool}, logf: t.Logf}
	pdir := filepath.Join(work, "out")
	outs := map[string][]string{}
	bsec := r.newSection(w, ProfileLoopback, OpBackup)
	if err := r.backups(ctx, bsec, px, pdir, "", w, outs, 1, true); err != nil {
		t.Fatal(err)
	}
	run := bsec.Row(ToolRegsync).Runs[0]
	if !run.OK() {
		t.Fatalf("regsync backup: err %q, check %q", run.Err, run.Check)
	}
	if run.Stats.Count("GET", "blob") == 0 {
		t.Errorf("regsync backup fetched no blob through the proxy: %s", run.Stats)
	}
	rsec := r.newSection(w, ProfileLoopback, OpRestore)
	if err := r.restores(ctx, rsec, ProfileLoopback, &SeededSource{Registry: reg, Workload: w}, "", w, outs); err != nil {
		t.Fatal(err)
	}
	if run := rsec.Row(ToolRegsync).Runs[0]; !run.OK() || run.Stats.Method("PUT") == 0 {
		t.Fatalf("regsync restore: err %q, check %q, %s", run.Err, run.Check, run.Stats)
	}

	// The check sees what is missing: a referrer's blob gone from the
	// layout of the first repository.
	layout := outs[ToolRegsync][0]
	var ref string
	for _, tg := range w.Repos[0].Tags {
		for _, rf := range tg.Referrers {
			ref = rf.Digest
		}
	}
	if ref == "" {
		t.Fatal("the workload has no referrer")
	}
	if err := os.Remove(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(ref, "sha256:"))); err != nil {
		t.Fatal(err)
	}
	if got := checkBackup(tool, w, outs[ToolRegsync]); !strings.HasPrefix(got, "missing 1 of") {
		t.Errorf("check of a layout without a referrer: %s", got)
	}
}
