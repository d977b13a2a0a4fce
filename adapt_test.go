package regvault_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
)

// busyBlobs makes every blob GET of a server wait before its first byte
// and again after it, as a server busy with other transfers does on a
// short path (tag lists and manifests are answered at once, unless all
// is set: a long path, where everything waits), and counts the layers'
// GETs that started before the first of them ended: the level of the
// first transfers, before the throughput can move it.
type busyBlobs struct {
	layers map[string]bool // the blobs counted, by digest
	all    atomic.Bool

	mu      sync.Mutex
	started int
	early   int // started when the first ended; 0 until then
}

func (b *busyBlobs) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := strings.LastIndex(r.URL.Path, "/blobs/sha256:")
		if r.Method != http.MethodGet || i < 0 {
			if b.all.Load() {
				time.Sleep(60 * time.Millisecond)
			}
			next.ServeHTTP(w, r)
			return
		}
		if b.layers[r.URL.Path[i+len("/blobs/"):]] {
			b.mu.Lock()
			b.started++
			b.mu.Unlock()
			defer func() {
				b.mu.Lock()
				if b.early == 0 {
					b.early = b.started
				}
				b.mu.Unlock()
			}()
		}
		time.Sleep(60 * time.Millisecond)
		next.ServeHTTP(&heldWriter{ResponseWriter: w}, r)
	})
}

// heldWriter sends the first write at once and holds the rest a while:
// the first byte arrives, the transfer goes on.
type heldWriter struct {
	http.ResponseWriter
	wrote bool
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if !h.wrote && len(p) > 1 {
		h.wrote = true
		n, err := h.ResponseWriter.Write(p[:1])
		if err != nil {
			return n, err
		}
		if f, ok := h.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(200 * time.Millisecond)
		m, err := h.ResponseWriter.Write(p[1:])
		return n + m, err
	}
	return h.ResponseWriter.Write(p)
}

// The adaptive concurrency raises the number of blob transfers for a long
// path, not for a server that is merely slow to start each blob: when its
// small requests come back at once (a registry on the same machine, busy
// with the other transfers), the first blobs' late first bytes do not
// raise the level above where it starts (8), which would only queue more
// at the same server. When every request takes as long (a long path), the
// level is raised and the 16 layers go at once.
func TestAdaptRaisedForLongPathOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		longPath bool
	}{{"busy server", false}, {"long path", true}} {
		t.Run(tc.name, func(t *testing.T) {
			busy := &busyBlobs{layers: map[string]bool{}}
			reg := registrytest.NewInProcess(t, registrytest.WithHandler(busy.wrap))
			ctx := context.Background()
			repo := registrytest.Repo(t, reg, "busy/app")
			var layers [][]byte
			for i := range 16 {
				layers = append(layers, registrytest.Bytes(fmt.Sprintf("busy-%d", i), 1<<20+i))
				busy.layers[digest.FromBytes(layers[i]).String()] = true
			}
			if _, err := registrytest.PushImage(ctx, repo, "v1", layers...); err != nil {
				t.Fatal(err)
			}
			busy.all.Store(tc.longPath)
			report, err := regvault.Backup(ctx, regvault.BackupOptions{
				Sources:  []string{reg.Host() + "/busy/app"},
				Output:   filepath.Join(t.TempDir(), "b.tar"),
				Registry: registry.Options{PlainHTTP: true},
			})
			if err != nil {
				t.Fatal(err)
			}
			if !report.Repositories[0].OK() {
				t.Fatalf("report %+v", report.Repositories[0])
			}
			busy.mu.Lock()
			defer busy.mu.Unlock()
			if tc.longPath && busy.early <= 8 {
				t.Errorf("%d blob GETs before the first ended over a long path, want the level raised above 8", busy.early)
			}
			if !tc.longPath && busy.early > 8 {
				t.Errorf("%d blob GETs before the first ended, want the starting 8: the first bytes' wait raised the level for a server that answers small requests at once", busy.early)
			}
		})
	}
}
