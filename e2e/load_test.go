package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/regvault/regvault/internal/registrytest"
)

// procUsage is the most a process held at once, sampled from /proc.
type procUsage struct {
	fds   int
	rssKB int64
}

// runSampled runs bin with args and samples its open file descriptors
// and resident memory every few milliseconds until it exits.
func runSampled(t *testing.T, bin string, args ...string) (procUsage, string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	var (
		max  procUsage
		done = make(chan error, 1)
	)
	go func() { done <- cmd.Wait() }()
	fdDir := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	for {
		select {
		case err := <-done:
			return max, out.String(), err
		case <-time.After(5 * time.Millisecond):
		}
		if entries, err := os.ReadDir(fdDir); err == nil {
			max.fds = maxInt(max.fds, len(entries))
		}
		if f, err := os.Open(status); err == nil {
			s := bufio.NewScanner(f)
			for s.Scan() {
				if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
					kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					max.rssKB = max64(max.rssKB, kb)
				}
			}
			f.Close()
		}
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Load: 200 repositories in one backup and one restore with
// --concurrency 8. Both complete, every tag comes back with its digest,
// and the process holds a bounded number of file descriptors (connections
// are pooled and bounded by --concurrency, not one per repository) and a
// bounded amount of memory.
func TestLoad200Repositories(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	const repos = 200
	bin := build(t)
	src := registrytest.NewInProcess(t)
	ctx := context.Background()
	base := registrytest.Bytes("load/base", 2<<10)
	tags := make([]digest.Digest, repos)
	var refs []string
	var eg errgroup.Group
	eg.SetLimit(16)
	for i := range repos {
		name := fmt.Sprintf("load/r%03d", i)
		refs = append(refs, src.Host()+"/"+name)
		eg.Go(func() error {
			d, err := registrytest.PushImage(ctx, registrytest.Repo(t, src, name), "v1", base, registrytest.Bytes(name, 512))
			tags[i] = d.Digest
			return err
		})
	}
	require.NoError(t, eg.Wait())

	in := filepath.Join(t.TempDir(), "load.tar")
	start := time.Now()
	use, out, err := runSampled(t, bin, append([]string{"backup", "--plain-http", "--no-tty", "--concurrency", "8", "-o", in}, refs...)...)
	require.NoError(t, err, "%s", out)
	require.Contains(t, out, fmt.Sprintf("Successfully backed up %d tag(s) from %d repository(ies)", repos, repos))
	t.Logf("backup of %d repositories: %s, at most %d file descriptors, %d MB resident", repos, time.Since(start).Round(time.Millisecond), use.fds, use.rssKB>>10)
	checkUsage(t, "backup", use)

	dst := registrytest.NewInProcess(t)
	start = time.Now()
	use, out, err = runSampled(t, bin, "restore", "--plain-http", "--no-tty", "--concurrency", "8", "-i", in, dst.Host())
	require.NoError(t, err, "%s", out)
	require.Contains(t, out, fmt.Sprintf("Successfully restored %d tag(s) from %d repository(ies)", repos, repos))
	t.Logf("restore of %d repositories: %s, at most %d file descriptors, %d MB resident", repos, time.Since(start).Round(time.Millisecond), use.fds, use.rssKB>>10)
	checkUsage(t, "restore", use)

	var mu sync.Mutex
	var wrong []string
	eg = errgroup.Group{}
	eg.SetLimit(16)
	for i := range repos {
		name := fmt.Sprintf("load/r%03d", i)
		eg.Go(func() error {
			got, err := registrytest.Repo(t, dst, name).Resolve(ctx, "v1")
			if err != nil {
				return fmt.Errorf("%s:v1: %w", name, err)
			}
			if got.Digest != tags[i] {
				mu.Lock()
				wrong = append(wrong, name)
				mu.Unlock()
			}
			return nil
		})
	}
	require.NoError(t, eg.Wait())
	require.Empty(t, wrong, "restored with another digest")
}

// checkUsage: the descriptors stay well below one per repository (a
// restore that mounted a shared blob into every repository at once held
// 223). --concurrency 8 allows 8 transfers and 4x as many small requests,
// each with at most a connection (about 50 descriptors in all, with the
// archive, the standard streams and the runtime's own).
func checkUsage(t *testing.T, what string, use procUsage) {
	t.Helper()
	require.Positive(t, use.fds, "%s: no sample", what)
	require.Less(t, use.fds, 100, "%s: %d file descriptors open at once for 200 repositories", what, use.fds)
	require.Less(t, use.rssKB, int64(512<<10), "%s: %d kB resident", what, use.rssKB)
}
