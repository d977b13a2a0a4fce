package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Peer versions. oras v1.3.6 is the version of the targets; crane
// is the newest go-containerregistry release on the module proxy when the
// harness was written (the one regvault's go.mod has too).
const (
	OrasModule    = "oras.land/oras"
	OrasVersion   = "v1.3.6"
	CraneModule   = "github.com/google/go-containerregistry"
	CraneVersion  = "v0.22.1"
	BaselineConns = 8
	// RegsyncModule and RegsyncVersion are regclient's regsync, the peer
	// of registry-to-registry copy: the Makefile's REGCTL_VERSION too (a
	// bench test checks).
	RegsyncModule  = "github.com/regclient/regclient"
	RegsyncVersion = "v0.11.7"
)

// Tool names.
const (
	ToolRegvault = "regvault"
	ToolOras     = "oras"
	ToolCrane    = "crane"
	ToolSkopeo   = "skopeo"
	ToolRegsync  = "regsync"
	ToolBaseline = "baseline"
)

// AllTools is the order of the rows of every table.
var AllTools = []string{ToolRegvault, ToolOras, ToolCrane, ToolSkopeo, ToolRegsync, ToolBaseline}

// Command is one process a tool run starts.
type Command struct {
	Args []string
	// Files are written (path: content) before the process starts: a
	// tool's configuration file.
	Files map[string][]byte
}

func (c Command) String() string { return strings.Join(c.Args, " ") }

// Tool is a program under measurement: how it backs a workload up and how
// it restores its own backup.
type Tool struct {
	Name    string
	Path    string
	Version string
	// Referrers tells whether the tool's backup and restore carry the
	// referrers (so the check expects them).
	Referrers bool
	// Manifests tells whether the tool moves manifests (all but the
	// baseline do).
	Manifests bool
	// NoRestore says why the tool cannot restore ("" when it can).
	NoRestore string
	// NoCopy says why the tool cannot copy registry to registry ("" when
	// it can).
	NoCopy string
	// BackupDoc, RestoreDoc, PlanDoc and CopyDoc are the commands, for
	// the report.
	BackupDoc, RestoreDoc, PlanDoc, CopyDoc string
	// Plan is the commands that resolve what a backup of e.W from e.Host
	// would hold without writing it (nil: the tool cannot).
	Plan func(e Env) []Command
	// Backup is the commands that back e.W up from the registry at
	// e.Host into e.Dir, and the paths of what they write.
	Backup func(e Env) ([]Command, []string)
	// Restore is the commands that restore the backup e.In (what Backup
	// wrote) into the registry at e.Target; e.Src is the source registry
	// itself, for tools that copy registry to registry.
	Restore func(e Env) []Command
	// Copy is the commands that copy e.W from the registry at e.Src to
	// the registry at e.Target (both their proxies), with e.Dir for any
	// file they need; nil: the tool does not copy registry to registry.
	Copy func(e Env) []Command
}

// Env is what a tool's commands are made from.
type Env struct {
	W        *Workload
	Host     string   // backup: the registry to back up (its proxy)
	Dir      string   // backup: an empty directory for the output; copy: for the tool's files
	In       []string // restore: what the backup wrote
	Src      string   // restore: the source registry, for registry-to-registry copies; copy: the source's proxy
	Target   string   // restore, copy: the registry to write into (its proxy)
	BlobList string   // the baseline's list of unique blobs (JSON)
}

// Toolbox finds, installs and builds the tools.
type Toolbox struct {
	BinDir string // <cache>/bench/bin: the peers
	// BuildDir is where regvault is built: a directory of this run (or
	// the profile directory), never the shared cache, so that two runs
	// at once (another checkout's) cannot replace each other's build.
	BuildDir string
	Root     string // the regvault module root
	Self     string // this program, for the baseline
	Logf     func(string, ...any)
	// NoInstall skips installing what is missing (skopeo with apt-get).
	NoInstall bool
	// Profile builds regvault with the profiling hook (profile.go).
	Profile bool
}

// Setup returns the tools named, installing or building them. A peer that
// cannot be had is left out with a note; regvault that does not build is
// an error.
func (tb *Toolbox) Setup(ctx context.Context, names []string) ([]*Tool, []string, error) {
	if err := os.MkdirAll(tb.BinDir, 0o755); err != nil {
		return nil, nil, err
	}
	var tools []*Tool
	var notes []string
	for _, name := range names {
		var t *Tool
		var err error
		switch name {
		case ToolRegvault:
			t, err = tb.regvault(ctx)
		case ToolOras:
			t, err = tb.oras(ctx)
		case ToolCrane:
			t, err = tb.crane(ctx)
		case ToolSkopeo:
			t, err = tb.skopeo(ctx)
		case ToolRegsync:
			t, err = tb.regsync(ctx)
		case ToolBaseline:
			t, err = tb.baseline()
		default:
			return nil, nil, fmt.Errorf("unknown tool %q (want %s)", name, strings.Join(AllTools, ", "))
		}
		if err != nil {
			if name == ToolRegvault {
				return nil, nil, err
			}
			notes = append(notes, fmt.Sprintf("%s: left out: %v", name, err))
			tb.Logf("  %s: left out: %v", name, err)
			continue
		}
		tb.Logf("  %-8s %s (%s)", t.Name, t.Version, t.Path)
		tools = append(tools, t)
	}
	return tools, notes, nil
}

func (tb *Toolbox) goInstall(ctx context.Context, module, pkg, version, bin string) (string, error) {
	path := filepath.Join(tb.BinDir, bin)
	if out, err := exec.CommandContext(ctx, "go", "version", "-m", path).Output(); err == nil {
		re := regexp.MustCompile(`(?m)^\s+mod\s+` + regexp.QuoteMeta(module) + `\s+` + regexp.QuoteMeta(version) + `(\s|$)`)
		if re.Match(out) {
			return path, nil
		}
	}
	tb.Logf("  installing %s@%s into %s", pkg, version, tb.BinDir)
	cmd := exec.CommandContext(ctx, "go", "install", pkg+"@"+version)
	cmd.Dir = os.TempDir() // outside the module: its go.mod must not matter
	cmd.Env = append(os.Environ(), "GOBIN="+tb.BinDir, "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", pkg, version, err, out)
	}
	return path, nil
}

func (tb *Toolbox) regvault(ctx context.Context) (*Tool, error) {
	if err := os.MkdirAll(tb.BuildDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(tb.BuildDir, "regvault")
	args := []string{"build", "-o", path}
	if tb.Profile {
		dir, err := os.MkdirTemp("", "regvault-bench-overlay-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		overlay, err := profilingOverlay(tb.Root, dir)
		if err != nil {
			return nil, err
		}
		path = filepath.Join(tb.BuildDir, "regvault-profiling")
		args = []string{"build", "-overlay", overlay, "-o", path}
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/regvault")...)
	cmd.Dir = tb.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/regvault: %v\n%s", err, out)
	}
	version := "build of the checkout"
	if out, err := exec.CommandContext(ctx, "git", "-C", tb.Root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		version = "checkout at " + strings.TrimSpace(string(out)) + " (with uncommitted changes, if any)"
	}
	if sum, err := fileDigest(path); err == nil {
		version += ", binary sha256:" + sum[:12]
	}
	if tb.Profile {
		version += ", built with CPU profiling"
	}
	t := &Tool{
		Name: ToolRegvault, Path: path, Version: version, Referrers: true, Manifests: true,
		BackupDoc:  "regvault backup --output <dir>/backup.tar --include-referrers --plain-http --no-tty <host>/<repo1> ... <host>/<repoN>",
		RestoreDoc: "regvault restore --input <dir>/backup.tar --plain-http --no-tty <target-host>   (<target-host>/<repo> for a backup of one repository)",
		Backup: func(e Env) ([]Command, []string) {
			host, w, dir := e.Host, e.W, e.Dir
			out := filepath.Join(dir, "backup.tar")
			args := []string{path, "backup", "--output", out, "--include-referrers", "--plain-http", "--no-tty"}
			for _, r := range w.Repos {
				args = append(args, host+"/"+r.Name)
			}
			return []Command{{Args: args}}, []string{out}
		},
		Restore: func(e Env) []Command {
			// A backup of one repository names tags alone (as oras does):
			// its restore names the target repository.
			target := e.Target
			if len(e.W.Repos) == 1 {
				target += "/" + e.W.Repos[0].Name
			}
			return []Command{{Args: []string{path, "restore", "--input", e.In[0], "--plain-http", "--no-tty", target}}}
		},
		PlanDoc: "regvault backup --dry-run --output <dir>/backup.tar --include-referrers --plain-http --no-tty <host>/<repo1> ... <host>/<repoN>",
		Plan: func(e Env) []Command {
			args := []string{path, "backup", "--dry-run", "--output", filepath.Join(e.Dir, "backup.tar"), "--include-referrers", "--plain-http", "--no-tty"}
			for _, r := range e.W.Repos {
				args = append(args, e.Host+"/"+r.Name)
			}
			return []Command{{Args: args}}
		},
	}
	t.CopyDoc = "regvault copy --from-plain-http --to-plain-http --include-referrers --no-tty <source-host>/<repo1> ... <source-host>/<repoN> <target-host>"
	t.Copy = regvaultCopy(path)
	// Restore and copy may not exist yet.
	if err := exec.CommandContext(ctx, path, "restore", "--help").Run(); err != nil {
		t.NoRestore = "regvault restore is not available in this build (`regvault restore --help` fails)"
	}
	if err := exec.CommandContext(ctx, path, "copy", "--help").Run(); err != nil {
		t.NoCopy = "regvault copy is not available in this build (`regvault copy --help` fails)"
	}
	return t, nil
}

func (tb *Toolbox) oras(ctx context.Context) (*Tool, error) {
	path, err := tb.goInstall(ctx, OrasModule, OrasModule+"/cmd/oras", OrasVersion, "oras")
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"backup", "restore"} {
		if err := exec.CommandContext(ctx, path, sub, "--help").Run(); err != nil {
			return nil, fmt.Errorf("oras %s: `oras %s --help` fails: %v", OrasVersion, sub, err)
		}
	}
	return &Tool{
		Name: ToolOras, Path: path, Version: OrasVersion, Referrers: true, Manifests: true,
		BackupDoc:  "oras backup --output <dir>/<i>.tar --include-referrers --plain-http --no-tty <host>/<repo>   (once per repository, one after the other)",
		RestoreDoc: "oras restore --input <dir>/<i>.tar --plain-http --no-tty <target-host>/<repo>   (once per repository)",
		Backup: func(e Env) ([]Command, []string) {
			host, w, dir := e.Host, e.W, e.Dir
			var cmds []Command
			var outs []string
			for i, r := range w.Repos {
				out := filepath.Join(dir, fmt.Sprintf("%04d.tar", i))
				cmds = append(cmds, Command{Args: []string{path, "backup", "--output", out, "--include-referrers", "--plain-http", "--no-tty", host + "/" + r.Name}})
				outs = append(outs, out)
			}
			return cmds, outs
		},
		Restore: func(e Env) []Command {
			in, target, w := e.In, e.Target, e.W
			var cmds []Command
			for i, r := range w.Repos {
				cmds = append(cmds, Command{Args: []string{path, "restore", "--input", in[i], "--plain-http", "--no-tty", target + "/" + r.Name}})
			}
			return cmds
		},
		CopyDoc: "oras cp -r --from-plain-http --to-plain-http --no-tty <source-host>/<repo>:<tag> <target-host>/<repo>:<tag>   (once per tag)",
		Copy:    orasCopy(path),
	}, nil
}

func (tb *Toolbox) crane(ctx context.Context) (*Tool, error) {
	path, err := tb.goInstall(ctx, CraneModule, CraneModule+"/cmd/crane", CraneVersion, "crane")
	if err != nil {
		return nil, err
	}
	return &Tool{
		Name: ToolCrane, Path: path, Version: CraneVersion, Manifests: true,
		// crane pull takes tags, not repositories: no referrers in the
		// backup. crane copy --all-tags copies the sha256-<hex> tags of
		// the referrers tag schema too, so the restore has them.
		BackupDoc:  "crane pull --format=oci --insecure <host>/<repo>:<tag> ... (every tag of every repository) <dir>/layout",
		RestoreDoc: "crane copy --all-tags --insecure <source-host>/<repo> <target-host>/<repo>   (once per repository; registry to registry, the source on loopback)",
		Backup: func(e Env) ([]Command, []string) {
			host, w, dir := e.Host, e.W, e.Dir
			out := filepath.Join(dir, "layout")
			args := []string{path, "pull", "--format=oci", "--insecure"}
			for _, r := range w.Repos {
				for _, t := range r.Tags {
					args = append(args, host+"/"+r.Name+":"+t.Name)
				}
			}
			args = append(args, out)
			return []Command{{Args: args}}, []string{out}
		},
		Restore: func(e Env) []Command {
			src, target, w := e.Src, e.Target, e.W
			var cmds []Command
			for _, r := range w.Repos {
				cmds = append(cmds, Command{Args: []string{path, "copy", "--all-tags", "--insecure", src + "/" + r.Name, target + "/" + r.Name}})
			}
			return cmds
		},
		CopyDoc: "crane copy --insecure <source-host>/<repo>:<tag> <target-host>/<repo>:<tag>   (once per tag)",
		Copy:    craneCopy(path),
	}, nil
}

func (tb *Toolbox) skopeo(ctx context.Context) (*Tool, error) {
	path, err := exec.LookPath("skopeo")
	if err != nil && !tb.NoInstall {
		if _, aerr := exec.LookPath("apt-get"); aerr != nil {
			return nil, errors.New("not installed, and no apt-get to install it with")
		}
		if os.Geteuid() != 0 {
			return nil, errors.New("not installed, and installing it with apt-get needs root")
		}
		tb.Logf("  installing skopeo: apt-get update && apt-get install -y skopeo")
		for _, args := range [][]string{{"update"}, {"install", "-y", "skopeo"}} {
			cmd := exec.CommandContext(ctx, "apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, lastLines(string(out), 5))
			}
		}
		path, err = exec.LookPath("skopeo")
	}
	if err != nil {
		return nil, fmt.Errorf("not installed (Debian: apt-get install skopeo): %v", err)
	}
	version := "?"
	if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
		version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "skopeo version "))
	}
	ociName := func(repo, tag string) string {
		return strings.NewReplacer("/", "_", ":", "_").Replace(repo) + "_" + tag
	}
	return &Tool{
		Name: ToolSkopeo, Path: path, Version: version + " (Debian package)", Manifests: true,
		// skopeo copies images, not referrers.
		BackupDoc:  "skopeo --insecure-policy copy --all --src-tls-verify=false docker://<host>/<repo>:<tag> oci:<dir>/layout:<repo>_<tag>   (once per tag, into one layout)",
		RestoreDoc: "skopeo --insecure-policy copy --all --src-tls-verify=false --dest-tls-verify=false docker://<source-host>/<repo>:<tag> docker://<target-host>/<repo>:<tag>   (once per tag; the source on loopback)",
		Backup: func(e Env) ([]Command, []string) {
			host, w, dir := e.Host, e.W, e.Dir
			out := filepath.Join(dir, "layout")
			var cmds []Command
			for _, r := range w.Repos {
				for _, t := range r.Tags {
					cmds = append(cmds, Command{Args: []string{path, "--insecure-policy", "copy", "--all", "--src-tls-verify=false",
						"docker://" + host + "/" + r.Name + ":" + t.Name, "oci:" + out + ":" + ociName(r.Name, t.Name)}})
				}
			}
			return cmds, []string{out}
		},
		Restore: func(e Env) []Command {
			src, target, w := e.Src, e.Target, e.W
			var cmds []Command
			for _, r := range w.Repos {
				for _, t := range r.Tags {
					cmds = append(cmds, Command{Args: []string{path, "--insecure-policy", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
						"docker://" + src + "/" + r.Name + ":" + t.Name, "docker://" + target + "/" + r.Name + ":" + t.Name}})
				}
			}
			return cmds
		},
		CopyDoc: "skopeo --insecure-policy copy --all --src-tls-verify=false --dest-tls-verify=false docker://<source-host>/<repo>:<tag> docker://<target-host>/<repo>:<tag>   (once per tag)",
		Copy:    skopeoCopy(path),
	}, nil
}

func (tb *Toolbox) regsync(ctx context.Context) (*Tool, error) {
	path, err := tb.goInstall(ctx, RegsyncModule, RegsyncModule+"/cmd/regsync", RegsyncVersion, "regsync")
	if err != nil {
		return nil, err
	}
	return &Tool{
		Name: ToolRegsync, Path: path, Version: RegsyncVersion, Referrers: true, Manifests: true,
		BackupDoc:  "regsync once -c <dir>/regsync.yml   (one sync entry of type repository per repository, <host>/<repo> to ocidir://<dir>/layout/<i>, referrers: true, tls: disabled)",
		RestoreDoc: "regsync once -c <dir>/regsync-restore.yml   (one sync entry of type repository per repository, ocidir://<dir>/layout/<i> to <target-host>/<repo>, referrers: true, tls: disabled)",
		Backup:     regsyncBackup(path),
		Restore:    regsyncRestore(path),
		CopyDoc:    "regsync once -c <dir>/regsync.yml   (one sync entry of type repository per repository, referrers: true, both hosts tls: disabled)",
		Copy:       regsyncCopy(path),
	}, nil
}

// regsyncBackup is one regsync once that syncs every repository of the
// registry at e.Host into an OCI layout directory of its own (regclient's
// ocidir://), tags and referrers; the layouts are what the backup wrote.
func regsyncBackup(path string) func(Env) ([]Command, []string) {
	return func(e Env) ([]Command, []string) {
		cfg := filepath.Join(e.Dir, "regsync.yml")
		var pairs [][2]string
		var outs []string
		for i, r := range e.W.Repos {
			out := filepath.Join(e.Dir, "layout", fmt.Sprintf("%04d", i))
			pairs = append(pairs, [2]string{e.Host + "/" + r.Name, "ocidir://" + out})
			outs = append(outs, out)
		}
		return []Command{{Args: []string{path, "once", "-c", cfg}, Files: map[string][]byte{cfg: regsyncConfig([]string{e.Host}, pairs)}}}, outs
	}
}

// regsyncRestore is one regsync once that syncs each layout regsyncBackup
// wrote (e.In, in repository order) to its repository at e.Target. The
// configuration goes beside the backup's.
func regsyncRestore(path string) func(Env) []Command {
	return func(e Env) []Command {
		var pairs [][2]string
		for i, r := range e.W.Repos {
			pairs = append(pairs, [2]string{"ocidir://" + e.In[i], e.Target + "/" + r.Name})
		}
		cfg := filepath.Join(filepath.Dir(filepath.Dir(e.In[0])), "regsync-restore.yml")
		return []Command{{Args: []string{path, "once", "-c", cfg}, Files: map[string][]byte{cfg: regsyncConfig([]string{e.Target}, pairs)}}}
	}
}

// The copy commands of each tool (the program at path).

// regvaultCopy is one regvault copy of every repository, as the CLI
// contract of copy says: the sources as backup's arguments, the target
// registry last.
func regvaultCopy(path string) func(Env) []Command {
	return func(e Env) []Command {
		args := []string{path, "copy", "--from-plain-http", "--to-plain-http", "--include-referrers", "--no-tty"}
		for _, r := range e.W.Repos {
			args = append(args, e.Src+"/"+r.Name)
		}
		return []Command{{Args: append(args, e.Target)}}
	}
}

func orasCopy(path string) func(Env) []Command {
	return func(e Env) []Command {
		return perTag(e.W, func(repo, tag string) []string {
			return []string{path, "cp", "-r", "--from-plain-http", "--to-plain-http", "--no-tty", e.Src + "/" + repo + ":" + tag, e.Target + "/" + repo + ":" + tag}
		})
	}
}

// craneCopy copies per tag, as a user moving tags does: no referrers.
func craneCopy(path string) func(Env) []Command {
	return func(e Env) []Command {
		return perTag(e.W, func(repo, tag string) []string {
			return []string{path, "copy", "--insecure", e.Src + "/" + repo + ":" + tag, e.Target + "/" + repo + ":" + tag}
		})
	}
}

func skopeoCopy(path string) func(Env) []Command {
	return func(e Env) []Command {
		return perTag(e.W, func(repo, tag string) []string {
			return []string{path, "--insecure-policy", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
				"docker://" + e.Src + "/" + repo + ":" + tag, "docker://" + e.Target + "/" + repo + ":" + tag}
		})
	}
}

// regsyncCopy is one regsync once over a configuration of every
// repository, written into e.Dir.
func regsyncCopy(path string) func(Env) []Command {
	return func(e Env) []Command {
		cfg := filepath.Join(e.Dir, "regsync.yml")
		return []Command{{Args: []string{path, "once", "-c", cfg}, Files: map[string][]byte{cfg: RegsyncConfig(e.W, e.Src, e.Target)}}}
	}
}

// RegsyncConfig is regsync's configuration copying every repository of w
// from the registry at src to the same name at target, tags and
// referrers, over plain HTTP.
func RegsyncConfig(w *Workload, src, target string) []byte {
	var pairs [][2]string
	for _, r := range w.Repos {
		pairs = append(pairs, [2]string{src + "/" + r.Name, target + "/" + r.Name})
	}
	return regsyncConfig([]string{src, target}, pairs)
}

// regsyncConfig is a regsync configuration with the registries hosts over
// plain HTTP and one sync entry of type repository, referrers included,
// per source and target pair (a registry repository or an ocidir://
// layout directory).
func regsyncConfig(hosts []string, pairs [][2]string) []byte {
	var b strings.Builder
	b.WriteString("version: 1\ncreds:\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "  - registry: %q\n    tls: disabled\n", h)
	}
	b.WriteString("defaults:\n  referrers: true\nsync:\n")
	for _, p := range pairs {
		fmt.Fprintf(&b, "  - source: %q\n    target: %q\n    type: repository\n", p[0], p[1])
	}
	return []byte(b.String())
}

// perTag is one command per tag of w, in workload order.
func perTag(w *Workload, args func(repo, tag string) []string) []Command {
	var cmds []Command
	for _, r := range w.Repos {
		for _, t := range r.Tags {
			cmds = append(cmds, Command{Args: args(r.Name, t.Name)})
		}
	}
	return cmds
}

func (tb *Toolbox) baseline() (*Tool, error) {
	self := tb.Self
	return &Tool{
		Name: ToolBaseline, Path: self, Version: fmt.Sprintf("plain HTTP, %d connections, SHA-256 of every blob checked", BaselineConns),
		BackupDoc:  fmt.Sprintf("bench baseline get -host <host> -list <blobs.json> -dir <dir>/blobs -conns %d   (GET of every unique blob into a file, fsynced, its SHA-256 checked as it arrives, %d at once)", BaselineConns, BaselineConns),
		RestoreDoc: fmt.Sprintf("bench baseline put -host <target-host> -list <blobs.json> -dir <dir>/blobs -conns %d   (POST + monolithic PUT of every unique blob, the SHA-256 of what is sent checked, %d at once)", BaselineConns, BaselineConns),
		Backup: func(e Env) ([]Command, []string) {
			host, dir := e.Host, e.Dir
			out := filepath.Join(dir, "blobs")
			return []Command{{Args: []string{self, "baseline", "get", "-host", host, "-list", e.BlobList, "-dir", out, "-conns", fmt.Sprint(BaselineConns)}}}, []string{out}
		},
		Restore: func(e Env) []Command {
			in, target := e.In, e.Target
			return []Command{{Args: []string{self, "baseline", "put", "-host", target, "-list", e.BlobList, "-dir", in[0], "-conns", fmt.Sprint(BaselineConns)}}}
		},
	}, nil
}

// fileDigest is the hex sha256 of the file at path: which build of
// regvault a result is from, uncommitted changes included.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
