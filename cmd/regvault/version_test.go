package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// `regvault version` prints what `oras version` does; --version the same
// on one line; the values set by `make build` win over Go's build
// information.
func TestVersionCommand(t *testing.T) {
	r := regvault(t, "", "version")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Version:        ", "Go version:     "+runtime.Version()+"\n",
		"OS/Arch:        "+runtime.GOOS+"/"+runtime.GOARCH+"\n", "Git commit:     ")
	if r.stderr != "" {
		t.Errorf("stderr: %q", r.stderr)
	}

	defer func(v, c, s string) { version, commit, treeState = v, c, s }(version, commit, treeState)
	version, commit, treeState = "v1.2.3", "0123456789abcdef0123456789abcdef01234567", "clean"
	r = regvault(t, "", "version")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Version:        v1.2.3\n", "Git commit:     0123456789abcdef0123456789abcdef01234567\n", "Git tree state: clean\n")
	r = regvault(t, "", "--version")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "regvault version v1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, "+runtime.Version()+", "+runtime.GOOS+"/"+runtime.GOARCH+")\n")

	r = regvault(t, "", "version", "extra")
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "regvault version takes no arguments")

	r = regvault(t, "", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "help", r.stdout, "version     Show the version", "completion  Print the shell completion script")
}

// `regvault completion <shell>` prints cobra's script for each shell; an
// unknown shell is a usage error; the bash script is valid bash.
func TestCompletionCommand(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash":       "# bash completion V2 for regvault",
		"zsh":        "#compdef regvault",
		"fish":       "complete -c regvault",
		"powershell": "Register-ArgumentCompleter",
	} {
		r := regvault(t, "", "completion", shell)
		r.wantCode(t, exitOK)
		wantContains(t, "completion "+shell, r.stdout, marker)
		if shell == "bash" {
			if bash, err := exec.LookPath("bash"); err == nil {
				script := filepath.Join(t.TempDir(), "regvault.bash")
				if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
					t.Errorf("bash -n: %v\n%s", err, out)
				}
			}
		}
	}
	r := regvault(t, "", "completion", "tcsh")
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, `unknown shell "tcsh": use bash, zsh, fish or powershell`)

	// The scripts call back into regvault for the words to complete.
	r = regvault(t, "", "__complete", "backup", "--include-ref")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "--include-referrers")

	r = regvault(t, "", "completion", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "help", r.stdout, "source <(regvault completion bash)", "bash", "zsh", "fish", "powershell")
}
