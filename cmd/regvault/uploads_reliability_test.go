package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regvault/regvault/internal/registrytest"
)

// stopReading is a registry that, on the first stalls uploads (PUT or
// PATCH of a blob) that match says, reads 64 KiB of the body and then no
// more: it holds the connection unread until the test ends. Other
// requests go on to the registry.
func stopReading(t *testing.T, match func(r *http.Request) bool, stalls int64, n *atomic.Int64) func(http.Handler) http.Handler {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !match(r) || n.Add(1) > stalls {
				next.ServeHTTP(w, r)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				// A small receive buffer keeps the kernel from taking
				// the whole body on the registry's behalf.
				_ = tc.SetReadBuffer(16 << 10)
			}
			_, _ = io.CopyN(io.Discard, brw, 64<<10)
			<-done
			conn.Close()
		})
	}
}

// A registry that stops reading an upload's body: the upload is given up
// on after --read-timeout and started over; when every attempt stalls,
// the restore ends with exit code 1 naming the timeout, the blob and the
// repository, and sets no tag; when only the first one does, the restore
// completes.
func TestUploadStallReliability(t *testing.T) {
	src := registrytest.NewInProcess(t)
	// The layer is far larger than the sockets' buffers on 127.0.0.1.
	sample := registrytest.Seed(t, src, registrytest.SampleOptions{BaseLayerSize: 8 << 20})
	in := filepath.Join(t.TempDir(), "b.tar")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", in, ref(src, registrytest.SampleFrontend)).wantCode(t, exitOK)
	base := sample.BaseLayer.Digest.String()
	isBaseUpload := func(r *http.Request) bool {
		return (r.Method == http.MethodPut || r.Method == http.MethodPatch) && strings.Contains(r.URL.Path, "/blobs/uploads/") &&
			(r.Method == http.MethodPatch || r.URL.Query().Get("digest") == base)
	}
	restore := func(t *testing.T, dst *registrytest.Server) result {
		finished := make(chan result, 1)
		go func() {
			finished <- regvault(t, "", "restore", "--plain-http", "--no-tty", "--read-timeout", "1s", "-i", in, dst.Host()+"/"+registrytest.SampleFrontend)
		}()
		select {
		case r := <-finished:
			return r
		case <-time.After(2 * time.Minute):
			t.Fatal("the restore into a registry that stopped reading an upload did not end")
			return result{}
		}
	}

	t.Run("every attempt stalls", func(t *testing.T) {
		t.Parallel()
		var stalled atomic.Int64
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(stopReading(t, isBaseUpload, 1<<30, &stalled)))
		r := restore(t, dst)
		r.wantCode(t, exitFailure)
		target := dst.Host() + "/" + registrytest.SampleFrontend
		wantContains(t, "stderr", r.stderr, "Error: Failed to restore "+target, "uploading "+base+" to "+target,
			"the registry took no byte of the upload for 1s (--read-timeout)",
			"  ✗ "+target+" (the registry stopped taking the upload)")
		wantNothingTagged(t, dst, sample)
		if stalled.Load() < 2 || stalled.Load() > 8 {
			t.Errorf("the upload was tried %d times", stalled.Load())
		}
	})
	t.Run("help", func(t *testing.T) {
		h := regvault(t, "", "restore", "--help")
		wantContains(t, "restore --help", h.stdout, "or take no byte of an upload before the request counts as failed",
			"takes no byte of an upload (a blob, a manifest) for it counts as a\ntransient fault", "up to 5\nminutes")
	})
	t.Run("the first attempt stalls", func(t *testing.T) {
		t.Parallel()
		var stalled atomic.Int64
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(stopReading(t, isBaseUpload, 1, &stalled)))
		r := restore(t, dst)
		r.wantCode(t, exitOK)
		for tag, desc := range sample.Tags[registrytest.SampleFrontend] {
			wantTag(t, dst, registrytest.SampleFrontend, tag, desc)
		}
		if stalled.Load() != 2 {
			t.Errorf("%d uploads of the layer, want 2 (one stalled, one through)", stalled.Load())
		}
	})
}
