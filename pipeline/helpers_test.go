package pipeline_test

import (
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

func decompress(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	var r io.Reader
	if strings.HasSuffix(from, ".gz") {
		zr, err := gzip.NewReader(in)
		require.NoError(t, err)
		r = zr
	} else {
		zr, err := zstd.NewReader(in)
		require.NoError(t, err)
		defer zr.Close()
		r = zr
	}
	out, err := os.Create(to)
	require.NoError(t, err)
	defer out.Close()
	_, err = io.Copy(out, r)
	require.NoError(t, err)
}

// corruptBlob flips a byte of the blob whose digest *d names, as a broken
// registry or a man in the middle would.
func corruptBlob(d *string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if *d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+*d) {
				next.ServeHTTP(&registrytest.FlipWriter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// dropOnce cuts the connection half-way through the first download of the
// blob whose digest *d names, as a flaky network would.
// Range requests for that blob are counted in *ranged.
func dropOnce(d *string, ranged *int) func(http.Handler) http.Handler {
	var dropped bool
	var mu sync.Mutex
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			victim := *d != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+*d)
			if victim && r.Header.Get("Range") != "" {
				*ranged++
			}
			drop := victim && !dropped && r.Method == http.MethodGet && r.Header.Get("Range") == ""
			if drop {
				dropped = true
			}
			mu.Unlock()
			if drop {
				next.ServeHTTP(&dropWriter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

type dropWriter struct {
	http.ResponseWriter
	written int
}

func (d *dropWriter) Write(p []byte) (int, error) {
	if d.written+len(p) > 1000 {
		p = p[:1000-d.written]
		d.ResponseWriter.Write(p)
		d.ResponseWriter.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(d.ResponseWriter).Hijack()
		if err == nil {
			conn.Close()
		}
		panic(http.ErrAbortHandler)
	}
	d.written += len(p)
	return d.ResponseWriter.Write(p)
}

// throttle slows every GET of the blob whose digest *d names to rate
// bytes a second per response, as a link that caps each stream does.
func throttle(d *string, rate int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if *d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+*d) {
				next.ServeHTTP(&slowWriter{ResponseWriter: w, rate: rate}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

type slowWriter struct {
	http.ResponseWriter
	rate int
}

func (s *slowWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), 32<<10)
		n, err := s.ResponseWriter.Write(p[:k])
		written += n
		if err != nil {
			return written, err
		}
		time.Sleep(time.Duration(k) * time.Second / time.Duration(s.rate))
		p = p[k:]
	}
	return written, nil
}

// corruptRanges flips a byte of every Range answer for the blob whose
// digest *d names; whole GETs are left alone.
func corruptRanges(d *string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if *d != "" && r.Method == http.MethodGet && r.Header.Get("Range") != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+*d) {
				next.ServeHTTP(&registrytest.FlipWriter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// event is what a test registry's handler waits for: it happens once, and
// waiting for it is bounded by a hang guard, never a timing.
type event struct {
	once sync.Once
	ch   chan struct{}
}

func newEvent() *event { return &event{ch: make(chan struct{})} }

func (e *event) happen() { e.once.Do(func() { close(e.ch) }) }

// wait reports whether the event happened before the hang guard.
func (e *event) wait() bool {
	select {
	case <-e.ch:
		return true
	case <-time.After(10 * time.Second): // a hang guard, not a timing
		return false
	}
}

// referrersHold holds the first referrers lookup a registry gets (a
// walk's last requests) until an event has happened; beside records that
// it did, the walk not yet done. active, if set, says when to hold.
type referrersHold struct {
	until        *event
	active       func() bool
	held, beside atomic.Bool
}

func (h *referrersHold) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (h.active == nil || h.active()) && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/referrers/") &&
			h.held.CompareAndSwap(false, true) && h.until.wait() {
			h.beside.Store(true)
		}
		next.ServeHTTP(w, r)
	})
}

// onBlobGet makes e happen at the first GET of the blob whose digest
// digest gives (nothing while it gives "").
func onBlobGet(digest func() string, e *event) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d := digest(); d != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				e.happen()
			}
			next.ServeHTTP(w, r)
		})
	}
}
