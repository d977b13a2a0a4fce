package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regvault/regvault/internal/registrytest"
)

// alwaysFail answers 503 to every request that match says, counting them.
func alwaysFail(match func(r *http.Request) bool, n *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if match(r) {
				n.Add(1)
				http.Error(w, "injected permanent fault", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// A fault that does not pass: the retries are bounded, the command fails
// with exit code 1 naming the repository and the digest, a backup leaves
// no file that looks like a finished backup, and a restore sets no tag.
func TestPermanentFaultsReliability(t *testing.T) {
	t.Run("backup, a layer never downloads", func(t *testing.T) {
		t.Parallel() // each waits out its retries
		var hits atomic.Int64
		var baseDigest atomic.Value
		baseDigest.Store("none")
		src, sample := sampleRegistry(t, registrytest.WithHandler(alwaysFail(func(r *http.Request) bool {
			return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+baseDigest.Load().(string))
		}, &hits)))
		baseDigest.Store(sample.BaseLayer.Digest.String())
		dir := t.TempDir()
		start := time.Now()
		r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", filepath.Join(dir, "b.tar"), ref(src, "demo/frontend"))
		elapsed := time.Since(start)
		r.wantCode(t, exitFailure)
		wantContains(t, "stderr", r.stderr, "Error: Failed to backup "+src.Host()+"/demo/frontend\n  Reason: layer "+sample.BaseLayer.Digest.String()+" (in [demo/frontend])",
			"fetching "+src.Host()+"/demo/frontend@"+sample.BaseLayer.Digest.String(), "response status code 503")
		wantEmptyDir(t, dir)
		t.Logf("%d attempts in %s", hits.Load(), elapsed.Round(time.Millisecond))
		if hits.Load() < 2 {
			t.Errorf("the download was tried %d times: no retry", hits.Load())
		}
	})
	t.Run("restore, a layer never uploads", func(t *testing.T) {
		t.Parallel()
		_, sample, in := sampleBackup(t)
		var hits atomic.Int64
		base := sample.BaseLayer.Digest.String()
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(alwaysFail(func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && r.URL.Query().Get("digest") == base
		}, &hits)))
		start := time.Now()
		r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host()+"/demo/frontend")
		elapsed := time.Since(start)
		r.wantCode(t, exitFailure)
		wantContains(t, "stderr", r.stderr, "Error: Failed to restore "+dst.Host()+"/demo/frontend", "uploading "+base+" to "+dst.Host()+"/demo/frontend", "503")
		wantNothingTagged(t, dst, sample)
		t.Logf("%d attempts in %s", hits.Load(), elapsed.Round(time.Millisecond))
		if hits.Load() < 2 || hits.Load() > 16 {
			t.Errorf("the upload was tried %d times", hits.Load())
		}
	})
}
