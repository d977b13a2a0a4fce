package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

// uploads slows blob uploads down (while slow is set) and records the
// blobs whose upload the registry completed.
type uploads struct {
	slow     atomic.Bool
	inflight atomic.Int64 // requests being served
	mu       sync.Mutex
	done     map[digest.Digest]int // completed uploads of each blob
}

func (u *uploads) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.inflight.Add(1)
		defer u.inflight.Add(-1)
		put := r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
		if put && u.slow.Load() {
			select {
			case <-time.After(150 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		sw := &registrytest.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if put && sw.Status == http.StatusCreated {
			u.mu.Lock()
			u.done[digest.Digest(r.URL.Query().Get("digest"))]++
			u.mu.Unlock()
		}
	})
}

// marked records (never slows) the completed blob uploads of requests
// with the header holdHeader: mark (jobplay_test.go).
func (u *uploads) marked(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		put := r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && r.Header.Get(holdHeader) == "mark"
		sw := &registrytest.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if put && sw.Status == http.StatusCreated {
			u.mu.Lock()
			u.done[digest.Digest(r.URL.Query().Get("digest"))]++
			u.mu.Unlock()
		}
	})
}

func (u *uploads) completed() map[digest.Digest]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[digest.Digest]int, len(u.done))
	for d, n := range u.done {
		out[d] = n
	}
	return out
}

// A restore killed (SIGKILL: no chance to clean up) half-way completes on
// a second run, with the same tags and digests, without uploading again
// the large blobs the target got the first time: the second run sends
// fewer bytes than a whole restore, by at least those blobs. (Blobs under
// sink's headAlways, 1 MiB, in a repository that has no tag yet are sent
// again rather than asked for one by one: see sink.Registry.Check.)
func TestKilledRestoreCompletesOnRerun(t *testing.T) {
	const large = 1 << 20 // sink's headAlways
	bin := build(t)
	src := registrytest.NewInProcess(t)
	var repos []string
	tags := map[string]map[string]digest.Digest{}
	sizes := map[digest.Digest]int64{}
	for _, prefix := range []string{"a/", "b/"} {
		sample := registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: prefix, Seed: "kill-" + prefix, BaseLayerSize: 2 << 20, LayerSize: large})
		for _, r := range sample.Repositories {
			repos = append(repos, src.Host()+"/"+r)
			tags[r] = map[string]digest.Digest{}
			for tag, d := range sample.Tags[r] {
				tags[r][tag] = d.Digest
			}
			for _, d := range sample.Content[r] {
				sizes[d.Digest] = d.Size
			}
		}
	}
	in := filepath.Join(t.TempDir(), "backup.tar")
	out, err := exec.Command(bin, append([]string{"backup", "--plain-http", "--no-tty", "--include-referrers", "-o", in}, repos...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)

	// A whole restore, for the bytes it sends.
	full := registrytest.NewInProcess(t)
	out, err = exec.Command(bin, "restore", "--plain-http", "--no-tty", "-i", in, full.Host()).CombinedOutput()
	require.NoError(t, err, "%s", out)
	fullBytes := full.Stats().BytesIn

	up := &uploads{done: map[digest.Digest]int{}}
	up.slow.Store(true)
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(up.handler))
	cmd := exec.Command(bin, "restore", "--plain-http", "--no-tty", "--concurrency", "2", "-i", in, dst.Host())
	var output strings.Builder
	cmd.Stdout, cmd.Stderr = &output, &output
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(30 * time.Second)
	largeDone := func() int {
		n := 0
		for d := range up.completed() {
			if sizes[d] >= large {
				n++
			}
		}
		return n
	}
	for len(up.completed()) < 4 || largeDone() < 2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no uploads completed in time:\n%s", output.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Kill())
	err = cmd.Wait()
	require.Error(t, err, "killed")
	// An upload whose body was sent before the kill still completes in
	// the registry (it waits 150ms first): let those land.
	quiet := 0 // consecutive idle samples
	for deadline := time.Now().Add(10 * time.Second); quiet < 20 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if up.inflight.Load() == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	require.Equal(t, 20, quiet, "the registry is still serving the killed restore")
	first := up.completed()
	var firstBytes int64 // of the large blobs uploaded by the killed run
	for d := range first {
		if sizes[d] >= large {
			firstBytes += sizes[d]
		}
	}
	t.Logf("killed after %d blob uploads (%d bytes in large blobs); a whole restore sends %d bytes", len(first), firstBytes, fullBytes)
	require.Less(t, len(first), len(sizes), "the restore was killed before its end")
	// Killed before the tags: none is set.
	ctx := context.Background()
	for repo, ts := range tags {
		for tag := range ts {
			_, err := registrytest.Repo(t, dst, repo).Resolve(ctx, tag)
			require.Error(t, err, "%s:%s tagged by the killed restore", repo, tag)
		}
	}

	// The second run completes, and does not upload again what is there.
	up.slow.Store(false)
	dst.ResetStats()
	out, err = exec.Command(bin, "restore", "--plain-http", "--no-tty", "-i", in, dst.Host()).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for repo, ts := range tags {
		for tag, want := range ts {
			got, err := registrytest.Repo(t, dst, repo).Resolve(ctx, tag)
			require.NoError(t, err, "%s:%s", repo, tag)
			require.Equal(t, want, got.Digest, "%s:%s", repo, tag)
		}
	}
	second := dst.Stats()
	t.Logf("second run: %d bytes sent, %d blob PUTs, %d mounts", second.BytesIn, second.Count(http.MethodPut, registrytest.KindUpload), second.Mounts)
	again := up.completed()
	for d := range first {
		if sizes[d] >= large {
			require.Equal(t, 1, again[d], "blob %s (%d bytes) uploaded again by the second run", d, sizes[d])
		}
	}
	for d, n := range again {
		if n > 1 || (first[d] == 0 && n != 1) {
			t.Logf("blob %s (%d bytes): %d uploads", d, sizes[d], n)
		}
	}
	require.Less(t, second.BytesIn, fullBytes)
	require.LessOrEqual(t, second.BytesIn, fullBytes-firstBytes, "blobs the killed run uploaded are sent again")
}
