package registrytest

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// FaultStats switches a Faults handler on and off (it starts off, so a
// test can seed the registry first) and counts the faults it injected.
type FaultStats struct {
	On       atomic.Bool
	Injected atomic.Int64 // requests answered with a fault
	Resets   atomic.Int64 // of which bodies cut off mid-way
}

// Faults returns a handler wrapper (for WithHandler or DistConfig.Handler)
// that makes a fraction rate of requests fail transiently, the way a
// loaded registry or a flaky network does: 500, 502 and 503 answers, 429
// with Retry-After, and blob downloads cut off in the middle of their
// body. The choice is reproducible from seed. A request is never failed
// twice in a row, so that bounded retries always get through. Faults are
// injected only while stats.On is true.
func Faults(rate float64, seed uint64, stats *FaultStats) func(http.Handler) http.Handler {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	failedLast := map[string]bool{}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !stats.On.Load() {
				next.ServeHTTP(w, r)
				return
			}
			key := r.Method + " " + r.URL.Path
			mu.Lock()
			fail := !failedLast[key] && rng.Float64() < rate
			kind := rng.IntN(5)
			failedLast[key] = fail
			mu.Unlock()
			if !fail {
				next.ServeHTTP(w, r)
				return
			}
			stats.Injected.Add(1)
			// Drain what the client sent, as a proxy that fails would.
			if r.Body != nil {
				_, _ = drainBody(r)
			}
			switch kind {
			case 0:
				http.Error(w, "injected fault", http.StatusInternalServerError)
			case 1:
				http.Error(w, "injected fault", http.StatusBadGateway)
			case 2:
				http.Error(w, "injected fault", http.StatusServiceUnavailable)
			case 3:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "injected fault: slow down", http.StatusTooManyRequests)
			default:
				if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Range") == "" {
					stats.Resets.Add(1)
					next.ServeHTTP(&cutWriter{ResponseWriter: w, after: 512}, r)
					return
				}
				http.Error(w, "injected fault", http.StatusServiceUnavailable)
			}
		})
	}
}

func drainBody(r *http.Request) (int64, error) {
	var buf [32 << 10]byte
	var n int64
	for {
		k, err := r.Body.Read(buf[:])
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}

// cutWriter sends the first after bytes of a body, then drops the
// connection.
type cutWriter struct {
	http.ResponseWriter
	after   int
	written int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.written+len(p) <= c.after {
		c.written += len(p)
		return c.ResponseWriter.Write(p)
	}
	_, _ = c.ResponseWriter.Write(p[:c.after-c.written])
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if conn, _, err := http.NewResponseController(c.ResponseWriter).Hijack(); err == nil {
		conn.Close()
	}
	panic(http.ErrAbortHandler)
}
