package e2e

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

// hangingBlob makes the download of one blob (set victim) hang until the
// request ends, and counts blob downloads.
type hangingBlob struct {
	victim atomic.Value // string: a digest, or ""
	gets   atomic.Int64
}

func (h *hangingBlob) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			h.gets.Add(1)
			if d, _ := h.victim.Load().(string); d != "" && strings.HasSuffix(r.URL.Path, d) {
				<-r.Context().Done()
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// temporaries lists the names in dir that regvault gives its temporaries.
func temporaries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".regvault-tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// blobFiles counts the complete blob files under a layout directory.
func blobFiles(dir string) int {
	files, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	n := 0
	for _, f := range files {
		if !strings.Contains(f.Name(), ".regvault-tmp-") {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds; the bound only detects a hang.
func waitFor(t *testing.T, cmd *exec.Cmd, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("waiting for %s", what)
		}
	}
}

// A backup killed with SIGKILL (no chance to clean up) leaves its
// temporary file or directory; the next backup to the same output removes
// it, and a new directory is resumed: the re-run fetches only the blobs
// the killed run did not get, and the result is the same as a backup that
// was never killed.
func TestKilledBackupLeftoversAreCleanedAndResumed(t *testing.T) {
	bin := build(t)
	h := &hangingBlob{}
	h.victim.Store("")
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(h.handler))
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	var repos []string
	for _, r := range sample.Repositories {
		repos = append(repos, srv.Host()+"/"+r)
	}
	backup := func(out string) *exec.Cmd {
		return exec.Command(bin, append([]string{"backup", "--plain-http", "--no-tty", "--output", out}, repos...)...)
	}
	var victim string
	for _, d := range sample.Unique() {
		if !strings.Contains(d.MediaType, "manifest") && !strings.Contains(d.MediaType, "index") {
			victim = d.Digest.String()
			break
		}
	}
	require.NotEmpty(t, victim)

	// What a backup that is never killed writes.
	want := t.TempDir()
	for _, name := range []string{"layout", "b.tar", "b.tar.zst"} {
		res, err := backup(filepath.Join(want, name)).CombinedOutput()
		require.NoError(t, err, "%s", res)
	}
	wantBlobs := blobFiles(filepath.Join(want, "layout"))
	require.Positive(t, wantBlobs)

	for _, name := range []string{"b.tar", "b.tar.zst", "layout"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, name)
			h.victim.Store(victim)
			cmd := backup(out)
			var output bytes.Buffer
			cmd.Stdout, cmd.Stderr = &output, &output
			require.NoError(t, cmd.Start())
			waitFor(t, cmd, "the temporary", func() bool { return len(temporaries(t, dir)) == 1 })
			left := filepath.Join(dir, temporaries(t, dir)[0])
			if name == "layout" {
				// Every blob but the one that hangs is in.
				waitFor(t, cmd, "the blobs", func() bool { return blobFiles(left) == wantBlobs-1 })
			}
			require.NoError(t, cmd.Process.Kill())
			require.Error(t, cmd.Wait())
			require.Len(t, temporaries(t, dir), 1, "the killed run left its temporary: %s", output.String())
			_, err := os.Stat(out)
			require.ErrorIs(t, err, os.ErrNotExist, "nothing looks like a finished backup")

			h.victim.Store("")
			h.gets.Store(0)
			res, err := backup(out).CombinedOutput()
			require.NoError(t, err, "%s", res)
			assert.Empty(t, temporaries(t, dir), "the re-run removed the killed run's temporary")
			if name == "layout" {
				require.EqualValues(t, 1, h.gets.Load(), "the re-run fetched blobs the killed run had: %s", res)
				require.Contains(t, string(res), "blob(s) were already there (resumed from a killed run's temporary directory)")
				for _, f := range []string{"oci-layout", "index.json"} {
					got, err := os.ReadFile(filepath.Join(out, f))
					require.NoError(t, err)
					exp, err := os.ReadFile(filepath.Join(want, name, f))
					require.NoError(t, err)
					require.Equal(t, string(exp), string(got), f)
				}
				require.Equal(t, wantBlobs, blobFiles(out))
				return
			}
			got, err := os.ReadFile(out)
			require.NoError(t, err)
			exp, err := os.ReadFile(filepath.Join(want, name))
			require.NoError(t, err)
			require.True(t, bytes.Equal(exp, got), "the re-run's archive differs from one never killed")
		})
	}
}
