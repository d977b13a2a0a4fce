package e2e

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/bench"
	"github.com/regvault/regvault/internal/registrytest"
)

// SIGINT ends the planning of a large restore promptly: a --dry-run of one
// repository with 100,000 tags, interrupted while it reads and walks the
// backup, exits 1 saying it was interrupted, within a bound generous
// enough for a loaded machine (planning checks for the interruption in
// its loops; before, it went on for many seconds in loops that did not).
func TestInterruptedRestorePlanning(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a backup of 100,000 tags")
	}
	bin := build(t)
	in := filepath.Join(t.TempDir(), "layout")
	require.NoError(t, bench.WriteManyTags(in, "src.example/many/tags", 100_000, 20_000))
	dst := registrytest.NewInProcess(t)

	cmd := exec.Command(bin, "restore", "--plain-http", "--no-tty", "--dry-run", "-i", in, dst.Host()+"/many/tags")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20) // the header lists 100,000 tags on one line
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Planning is under way once the backup is open: the restore says so
	// ("Loaded backup archive") before it walks the 100,000 tags. The
	// bound only catches a hang.
	var seen []string
	started := time.After(time.Minute)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the restore ended before it loaded the backup; output:\n%s", strings.Join(seen, "\n"))
			}
			if len(l) > 200 {
				l = l[:200] + "..."
			}
			seen = append(seen, l)
			if strings.HasPrefix(l, "Loaded backup archive") {
				break wait
			}
		case <-started:
			_ = cmd.Process.Kill()
			t.Fatalf("no \"Loaded backup archive\" line within a minute; output so far:\n%s", strings.Join(seen, "\n"))
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	sent := time.Now()

	const bound = 8 * time.Second // the promise is one second; this only catches a hang
	timeout := time.After(bound)
collect:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break collect
			}
			if len(l) > 200 {
				l = l[:200] + "..."
			}
			seen = append(seen, l)
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("still running %s after SIGINT; output so far:\n%s", bound, strings.Join(seen, "\n"))
		}
	}
	err = cmd.Wait()
	took := time.Since(sent)
	t.Logf("ended %s after SIGINT", took.Round(time.Millisecond))
	require.Error(t, err, "an interrupted restore exits non-zero:\n%s", strings.Join(seen, "\n"))
	require.Equal(t, 1, cmd.ProcessState.ExitCode())
	require.Contains(t, strings.Join(seen, "\n"), "interrupted")
	require.NotContains(t, strings.Join(seen, "\n"), "No changes were made")
}
