package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// result is what one in-process run of the CLI did.
type result struct {
	code           int
	stdout, stderr string
}

// regvault runs the CLI in-process with args and stdin.
func regvault(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	r := result{code: code, stdout: out.String(), stderr: errOut.String()}
	t.Logf("regvault %s\nexit %d\n[stdout]\n%s[stderr]\n%s", strings.Join(args, " "), code, truncate(r.stdout), r.stderr)
	return r
}

func truncate(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "...(truncated)\n"
	}
	return s
}

func (r result) wantCode(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, truncate(r.stdout), r.stderr)
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, truncate(s))
		}
	}
}

func wantNotContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s contains %q:\n%s", what, sub, truncate(s))
		}
	}
}

// wantEmptyDir fails unless dir holds nothing.
func wantEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("%s was written", filepath.Join(dir, e.Name()))
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.tar")
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"no arguments", "", []string{"backup", "--output", out},
			[]string{"Error: no repository given", "regvault backup --output <path>"}},
		{"missing output", "", []string{"backup", "localhost:5000/library/alpine"},
			[]string{"Error: --output is required"}},
		{"mixed registries", "", []string{"backup", "-o", out, "docker.io/library/alpine", "ghcr.io/oras-project/oras:v1.1.0"},
			[]string{"same registry", "docker.io, ghcr.io", "Create a separate backup for each registry", "regvault backup --output"}},
		{"no repository in reference", "", []string{"backup", "-o", out, "alpine"},
			[]string{"has no repository", "<registry>/<repository>"}},
		{"bad repository name", "", []string{"backup", "-o", out, "localhost:5000/Library/Alpine"},
			[]string{"invalid repository name"}},
		{"bad tag", "", []string{"backup", "-o", out, "localhost:5000/library/alpine:-bad"},
			[]string{"invalid tag"}},
		{"digest reference", "", []string{"backup", "-o", out, "localhost:5000/library/alpine@sha256:" + strings.Repeat("a", 64)},
			[]string{"digest references are not supported"}},
		{"restore flag on backup", "", []string{"backup", "-o", out, "--rules", "rules.json", "localhost:5000/a"},
			[]string{"unknown flag: --rules", "regvault backup --help"}},
		{"unknown shorthand", "", []string{"backup", "-z", "-o", out, "localhost:5000/a"},
			[]string{"unknown shorthand flag"}},
		{"bad format", "", []string{"backup", "--format", "yaml", "-o", out, "localhost:5000/a"},
			[]string{"--format \"yaml\": use text or json"}},
		{"bad concurrency", "", []string{"backup", "--concurrency", "0", "-o", out, "localhost:5000/a"},
			[]string{"--concurrency must be at least 1"}},
		{"concurrency not a number", "", []string{"backup", "--concurrency", "many", "-o", out, "localhost:5000/a"},
			[]string{"invalid argument \"many\""}},
		{"password twice", "secret-one", []string{"backup", "-u", "alice", "-p", "secret-two", "--password-stdin", "-o", out, "localhost:5000/a"},
			[]string{"--password and --password-stdin cannot be used together"}},
		{"both stdin secrets", "x", []string{"backup", "--password-stdin", "--identity-token-stdin", "-o", out, "localhost:5000/a"},
			[]string{"cannot be used together"}},
		{"bad header", "", []string{"backup", "-H", "no-colon", "-o", out, "localhost:5000/a"},
			[]string{"--header \"no-colon\": expected 'Name: value'"}},
		{"bad resolve", "", []string{"backup", "--resolve", "localhost:5000", "-o", out, "localhost:5000/a"},
			[]string{"--resolve \"localhost:5000\": expected host:port:address[:port]"}},
		{"bad distribution spec", "", []string{"backup", "--distribution-spec", "v2", "-o", out, "localhost:5000/a"},
			[]string{"--distribution-spec \"v2\""}},
		{"cert without key", "", []string{"backup", "--cert-file", "c.pem", "-o", out, "localhost:5000/a"},
			[]string{"--cert-file and --key-file go together"}},
		{"unknown command", "", []string{"frobnicate"},
			[]string{"unknown command \"frobnicate\""}},
		{"login without registry", "", []string{"login"},
			[]string{"regvault login takes one registry host, got 0"}},
		{"login with repository", "", []string{"login", "localhost:5000/library/alpine"},
			[]string{"give a registry host"}},
		{"login without credentials off a terminal", "", []string{"login", "--plain-http", "--registry-config", filepath.Join(dir, "config.json"), "localhost:5000"},
			[]string{"standard input is not a terminal", "--password-stdin"}},
		{"logout two registries", "", []string{"logout", "a.example", "b.example"},
			[]string{"regvault logout takes one registry host, got 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := regvault(t, tc.stdin, tc.args...)
			r.wantCode(t, exitUsage)
			if r.stdout != "" {
				t.Errorf("stdout should be empty, got:\n%s", r.stdout)
			}
			wantContains(t, "stderr", r.stderr, tc.want...)
			if !strings.HasPrefix(r.stderr, "Error: ") {
				t.Errorf("stderr does not start with \"Error: \":\n%s", r.stderr)
			}
			wantNotContains(t, "stderr", r.stderr, "secret-one", "secret-two")
			wantEmptyDir(t, dir)
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	r := regvault(t, "", "--version")
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "regvault version ")

	r = regvault(t, "", "backup", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "help", r.stdout,
		"Examples:", "regvault backup --output base-images.tar", "--include-referrers",
		"docker.io/library/alpine:3.18.0,3.19.0", ".tar.zst", "--output ./backup-dir", "--output - ",
		"--dry-run", "--password-stdin", "--full-reference",
		// registry flags
		"-u, --username", "-p, --password", "--identity-token", "--identity-token-stdin", "--registry-config",
		"--plain-http", "--insecure", "--ca-file", "--cert-file", "--key-file", "-H, --header", "--resolve",
		"--distribution-spec", "--concurrency int", "Default: adapts, starting at 8", "--max-retry-wait duration", "(default 1m0s)", "--no-tty", "-d, --debug",
		"-o, --output", "--fail-fast", "--format")

	r = regvault(t, "", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "help", r.stdout, "backup", "login", "logout", "Exit codes")
}

func TestHumanFormats(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 610: "610 B", 1023: "1023 B", 1024: "1 KB", 1638: "1.6 KB", 9533: "9.31 KB",
		2212495: "2.11 MB", 44879052: "42.8 MB", 10 << 20: "10 MB", 3 << 30: "3 GB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		340 * time.Millisecond: "340ms", 1200 * time.Millisecond: "1.2s", 52 * time.Second: "52s", 75 * time.Second: "1m 15s", 62 * time.Minute: "1h 2m",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
	d := digest.Digest("sha256:355b3a1c6b8f2c7f0a1b5e8c3d9f1e2a4b6c8d0e2f4a6b8c0e2f4a6b8c0e2f4a")
	if got := shortDigest(d); got != "sha256:355b3a1..." {
		t.Errorf("shortDigest = %q", got)
	}
}
