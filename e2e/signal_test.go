// Package e2e runs the built regvault binary as a user does, for what only
// a real process shows: signals and exit codes.
package e2e

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "regvault")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/regvault").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// slowBlobs delays every blob download, so that a backup is still running
// when the test interrupts it.
func slowBlobs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// SIGINT and SIGTERM during a backup stop it, exit non-zero and leave no
// file behind, neither the output nor its temporary. (The blobs take
// seconds each to arrive: a backup that ignored the signal would finish
// and exit 0.)
func TestInterruptedBackupLeavesNothing(t *testing.T) {
	bin := build(t)
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(slowBlobs))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			for _, out := range []string{"b.tar", "b.tar.zst", "layout"} {
				args := []string{"backup", "--plain-http", "--no-tty", "--output", filepath.Join(dir, out)}
				for _, r := range sample.Repositories {
					args = append(args, srv.Host()+"/"+r)
				}
				cmd := exec.Command(bin, args...)
				stdout, err := cmd.StdoutPipe()
				require.NoError(t, err)
				cmd.Stderr = cmd.Stdout
				require.NoError(t, cmd.Start())
				lines := bufio.NewScanner(stdout)
				var seen []string
				for lines.Scan() {
					seen = append(seen, lines.Text())
					if strings.HasPrefix(lines.Text(), "Backing up") {
						break
					}
				}
				time.Sleep(200 * time.Millisecond) // blob downloads are under way
				require.NoError(t, cmd.Process.Signal(sig))
				for lines.Scan() {
					seen = append(seen, lines.Text())
				}
				err = cmd.Wait()
				require.Error(t, err, "an interrupted backup exits non-zero")
				require.NotEqual(t, 0, cmd.ProcessState.ExitCode())
				require.Contains(t, strings.Join(seen, "\n"), "interrupted")
				entries, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Empty(t, entries, "%s: nothing is left behind", out)
			}
		})
	}
}

// A backup into a directory that holds a layout, interrupted, continues on
// re-run: the blobs that arrived before the interruption are not fetched
// again.
func TestInterruptedDirectoryBackupContinues(t *testing.T) {
	bin := build(t)
	var slow atomic.Value // digest whose download hangs until the test ends
	slow.Store("")
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	var blobGets atomic.Int64
	handler := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
				blobGets.Add(1)
				if d := slow.Load().(string); d != "" && strings.HasSuffix(r.URL.Path, d) {
					select {
					case <-hang:
					case <-r.Context().Done():
					}
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(handler))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	out := filepath.Join(t.TempDir(), "layout")
	run := func(repos ...string) *exec.Cmd {
		// --full-reference: a directory named by the tag alone takes no
		// other repository.
		args := []string{"backup", "--plain-http", "--no-tty", "--full-reference", "--output", out}
		for _, r := range repos {
			args = append(args, srv.Host()+"/"+r)
		}
		return exec.Command(bin, args...)
	}
	// The directory holds a layout of one repository.
	res, err := run(registrytest.SampleBase).CombinedOutput()
	require.NoError(t, err, "%s", res)

	// A blob only demo/backend has hangs; the rest arrive; interrupt.
	seen := map[string]bool{}
	for _, r := range []string{registrytest.SampleBase, registrytest.SampleFrontend} {
		for _, d := range sample.Content[r] {
			seen[d.Digest.String()] = true
		}
	}
	var victim string
	for _, d := range sample.Content[registrytest.SampleBackend] {
		if !seen[d.Digest.String()] && !strings.Contains(d.MediaType, "manifest") && !strings.Contains(d.MediaType, "index") {
			victim = d.Digest.String()
			break
		}
	}
	require.NotEmpty(t, victim)
	slow.Store(victim)
	cmd := run(registrytest.SampleBase, registrytest.SampleFrontend, registrytest.SampleBackend)
	require.NoError(t, cmd.Start())
	// Wait until the downloads have settled, all but the hanging one: no
	// new request, and no blob file being written but the hanging one's
	// (with many transfers at once every request goes out at the start,
	// and a busy disk takes its time to sync what they wrote).
	writing := func() int {
		entries, _ := os.ReadDir(filepath.Join(out, "blobs", "sha256"))
		n := 0
		for _, e := range entries {
			if strings.Contains(e.Name(), ".regvault-tmp-") {
				n++
			}
		}
		return n
	}
	for last, deadline := int64(-1), time.Now().Add(30*time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		now := blobGets.Load()
		if now > 0 && now == last && writing() <= 1 {
			break
		}
		last = now
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.Error(t, cmd.Wait())
	fetchedBefore := blobGets.Load()

	// Run again: only the blob that never arrived is fetched.
	slow.Store("")
	blobGets.Store(0)
	res, err = run(registrytest.SampleBase, registrytest.SampleFrontend, registrytest.SampleBackend).CombinedOutput()
	require.NoError(t, err, "%s", res)
	require.Positive(t, fetchedBefore)
	require.EqualValues(t, 1, blobGets.Load(), "only the blob the interrupted run did not get is fetched")
	_, err = os.Stat(filepath.Join(out, "blobs", "sha256", strings.TrimPrefix(victim, "sha256:")))
	require.NoError(t, err)
}
