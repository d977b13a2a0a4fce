package registrytest

import (
	"math/rand/v2"
	"net/http"
	"strconv"
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

// BodyFaultStats switches a BodyFaults handler on and off (it starts off)
// and counts what it did.
type BodyFaultStats struct {
	On          atomic.Bool
	Unavailable atomic.Int64 // 503 answers

	mu   sync.Mutex
	cuts map[string]int64 // by AnswerKind
}

// Cuts is how many answers of each kind (see AnswerKind) were cut off.
func (s *BodyFaultStats) Cuts() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.cuts))
	for k, v := range s.cuts {
		out[k] = v
	}
	return out
}

func (s *BodyFaultStats) cut(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cuts == nil {
		s.cuts = map[string]int64{}
	}
	s.cuts[kind]++
}

// AnswerKind names what a registry request asks for, by the end of its
// path: "manifest" (by tag), "manifest by digest", "referrers index" (a
// tag-schema `sha256-<hex>` tag), "tags" (a tags/list page), "referrers"
// (a Referrers API answer), "blob", or "" for anything else.
func AnswerKind(r *http.Request) string {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/v2/") {
		return ""
	}
	if strings.HasSuffix(p, "/tags/list") {
		return "tags"
	}
	i := strings.LastIndexByte(p, '/')
	switch dir, last := p[:i], p[i+1:]; {
	case strings.HasSuffix(dir, "/manifests") && strings.HasPrefix(last, "sha256-"):
		return "referrers index"
	case strings.HasSuffix(dir, "/manifests") && strings.Contains(last, ":"):
		return "manifest by digest"
	case strings.HasSuffix(dir, "/manifests"):
		return "manifest"
	case strings.HasSuffix(dir, "/referrers"):
		return "referrers"
	case strings.HasSuffix(dir, "/blobs"):
		return "blob"
	}
	return ""
}

// BodyFaults returns a handler wrapper that behaves as a flaky proxy: it
// answers a fraction unavailable of requests with 503, and cuts off a
// fraction cut of the successful GET answers (manifests, tags/list pages,
// referrers lists, blobs) half-way through their body, dropping the
// connection. With cutFirst, the first successful GET answer of each kind
// is cut too, so that every kind is exercised. A request is never failed
// twice in a row, so that bounded retries always get through. The choice
// is reproducible from seed; faults are injected only while stats.On is
// true.
func BodyFaults(cut, unavailable float64, cutFirst bool, seed uint64, stats *BodyFaultStats) func(http.Handler) http.Handler {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	failedLast := map[string]bool{}
	cutKinds := map[string]bool{}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !stats.On.Load() {
				next.ServeHTTP(w, r)
				return
			}
			key := r.Method + " " + r.URL.String() + " " + r.Header.Get("Range")
			kind := AnswerKind(r)
			mu.Lock()
			x := rng.Float64()
			fail503 := !failedLast[key] && x < unavailable
			doCut := !failedLast[key] && !fail503 && r.Method == http.MethodGet && kind != "" &&
				(x < unavailable+cut || (cutFirst && !cutKinds[kind]))
			failedLast[key] = fail503 || doCut
			mu.Unlock()
			switch {
			case fail503:
				stats.Unavailable.Add(1)
				if r.Body != nil {
					_, _ = drainBody(r)
				}
				http.Error(w, "injected fault", http.StatusServiceUnavailable)
			case doCut:
				next.ServeHTTP(&halfCutWriter{ResponseWriter: w, cut: func() {
					mu.Lock()
					cutKinds[kind] = true
					mu.Unlock()
					stats.cut(kind)
				}}, r)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

// halfCutWriter sends half of a successful answer's body (by its
// Content-Length, or of its first write), then drops the connection.
// Other answers pass unchanged.
type halfCutWriter struct {
	http.ResponseWriter
	cut     func()
	status  int
	after   int64
	written int64
}

func (c *halfCutWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
		c.after = -1
		if n, err := strconv.ParseInt(c.Header().Get("Content-Length"), 10, 64); err == nil && n > 1 {
			c.after = n / 2
		}
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *halfCutWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.status != http.StatusOK || len(p) == 0 {
		return c.ResponseWriter.Write(p)
	}
	if c.after < 0 {
		c.after = c.written + int64(len(p))/2
	}
	if c.written+int64(len(p)) <= c.after {
		c.written += int64(len(p))
		return c.ResponseWriter.Write(p)
	}
	_, _ = c.ResponseWriter.Write(p[:c.after-c.written])
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if conn, _, err := http.NewResponseController(c.ResponseWriter).Hijack(); err == nil {
		conn.Close()
	}
	c.cut()
	panic(http.ErrAbortHandler)
}

// FlipWriter flips the first byte of the body a handler writes through
// it (same length, wrong digest): a registry that serves corrupt content.
type FlipWriter struct {
	http.ResponseWriter
	done bool
}

func (w *FlipWriter) Write(p []byte) (int, error) {
	if !w.done && len(p) > 0 {
		q := append([]byte(nil), p...)
		q[0] ^= 0xff
		w.done = true
		return w.ResponseWriter.Write(q)
	}
	return w.ResponseWriter.Write(p)
}
