package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set by `make build` with
// -ldflags "-X main.version=... -X main.commit=..."; where they are not,
// they come from the build information Go records in the binary (the
// module version of `go install ...@v1.2.3`, the VCS revision of a build
// in a git checkout).
var (
	version   = ""
	commit    = ""
	treeState = "" // clean or dirty, with commit
)

// buildInfo is what `regvault version` prints.
type buildInfo struct {
	Version   string
	GoVersion string
	Platform  string
	Commit    string
	TreeState string // clean, dirty, or "" when unknown
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Commit: commit, TreeState: treeState}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				if commit == "" { // the -ldflags commit says nothing of the tree
					b.TreeState = map[string]string{"true": "dirty", "false": "clean"}[s.Value]
				}
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

func versionString() string { return readBuildInfo().Version }

// write prints the build information the way `oras version` does.
func (b buildInfo) write(w io.Writer) {
	fmt.Fprintf(w, "Version:        %s\n", b.Version)
	fmt.Fprintf(w, "Go version:     %s\n", b.GoVersion)
	fmt.Fprintf(w, "OS/Arch:        %s\n", b.Platform)
	fmt.Fprintf(w, "Git commit:     %s\n", orUnknown(b.Commit))
	if b.TreeState != "" {
		fmt.Fprintf(w, "Git tree state: %s\n", b.TreeState)
	}
}

// oneLine is the --version answer.
func (b buildInfo) oneLine() string {
	return fmt.Sprintf("regvault version %s (commit %s, %s, %s)", b.Version, orUnknown(b.Commit), b.GoVersion, b.Platform)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the version, commit, Go version and platform of regvault",
		Long: `Show the version, git commit, Go version and platform (OS/arch) regvault was
built with, as 'oras version' does. 'regvault --version' prints the same
on one line.

A release build ('make build', or 'go install ...@<version>') knows its
version; a build from a git checkout knows its commit and whether the tree
had local changes; otherwise the version is "devel" and the commit
"unknown".`,
		Example: `  regvault version
  regvault --version`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			readBuildInfo().write(c.stdout)
			return nil
		},
	}
}

// completionCommand sets up cobra's `completion` command (bash, zsh, fish,
// powershell) with help of regvault's own, and makes an unknown shell a
// usage error (cobra would print the help and exit 0).
func (c *cli) completionCommand(root *cobra.Command) {
	root.SetOut(c.stdout) // cobra's scripts go where the output is set now
	root.InitDefaultCompletionCmd()
	for _, cmd := range root.Commands() {
		if cmd.Name() != "completion" {
			continue
		}
		cmd.Short = "Print the shell completion script for bash, zsh, fish or powershell"
		cmd.Long = `Print the script that completes regvault's commands, flags and arguments
in bash, zsh, fish or powershell, on standard output. 'regvault completion
<shell> --help' says how to load it for good.

An unknown shell is a usage error (exit code 2).`
		cmd.Example = `  source <(regvault completion bash)
  regvault completion zsh > "${fpath[1]}/_regvault"
  regvault completion fish > ~/.config/fish/completions/regvault.fish
  regvault completion powershell | Out-String | Invoke-Expression`
		cmd.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown shell %q: use bash, zsh, fish or powershell", args[0])
			}
			return nil
		}
	}
}
