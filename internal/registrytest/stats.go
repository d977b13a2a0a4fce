package registrytest

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Kind classifies a registry request by the API it addresses.
type Kind string

// Request kinds counted by the Server.
const (
	KindManifest  Kind = "manifest"  // /v2/<name>/manifests/<ref>
	KindBlob      Kind = "blob"      // /v2/<name>/blobs/<digest>
	KindUpload    Kind = "upload"    // /v2/<name>/blobs/uploads/... (POST, PATCH, PUT; mounts too)
	KindTags      Kind = "tags"      // /v2/<name>/tags/list
	KindReferrers Kind = "referrers" // /v2/<name>/referrers/<digest>
	KindOther     Kind = "other"     // /v2/, /v2/_catalog, anything else
)

// RequestKey is one cell of the request counters.
type RequestKey struct {
	Method string
	Kind   Kind
}

// Stats is a snapshot of what a Server has seen since it started or since
// the last ResetStats. Byte counts are HTTP bodies only (no headers).
type Stats struct {
	Requests map[RequestKey]int64 // by method and kind
	Status   map[int]int64        // responses by HTTP status code
	BytesIn  int64                // request body bytes read by the registry
	BytesOut int64                // response body bytes written to clients
	// Mounts counts cross-repository mount requests the registry accepted
	// (POST .../blobs/uploads/?mount=... answered 201 Created). A mount the
	// registry declined (202, an upload session instead) is not counted.
	Mounts int64
}

// Total is the number of requests.
func (s Stats) Total() int64 {
	var n int64
	for _, v := range s.Requests {
		n += v
	}
	return n
}

// ByMethod is the number of requests with this HTTP method.
func (s Stats) ByMethod(method string) int64 {
	var n int64
	for k, v := range s.Requests {
		if k.Method == method {
			n += v
		}
	}
	return n
}

// ByKind is the number of requests of this kind.
func (s Stats) ByKind(kind Kind) int64 {
	var n int64
	for k, v := range s.Requests {
		if k.Kind == kind {
			n += v
		}
	}
	return n
}

// Count is the number of requests with this method and kind.
func (s Stats) Count(method string, kind Kind) int64 {
	return s.Requests[RequestKey{Method: method, Kind: kind}]
}

// counter is the counting middleware's state.
type counter struct {
	mu       sync.Mutex
	requests map[RequestKey]int64
	status   map[int]int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	mounts   atomic.Int64
}

func newCounter() *counter {
	return &counter{requests: map[RequestKey]int64{}, status: map[int]int64{}}
}

func (c *counter) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		Requests: make(map[RequestKey]int64, len(c.requests)),
		Status:   make(map[int]int64, len(c.status)),
		BytesIn:  c.bytesIn.Load(),
		BytesOut: c.bytesOut.Load(),
		Mounts:   c.mounts.Load(),
	}
	for k, v := range c.requests {
		s.Requests[k] = v
	}
	for k, v := range c.status {
		s.Status[k] = v
	}
	return s
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = map[RequestKey]int64{}
	c.status = map[int]int64{}
	c.bytesIn.Store(0)
	c.bytesOut.Store(0)
	c.mounts.Store(0)
}

// wrap returns next with counting in front of it.
func (c *counter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := classify(r.URL.Path)
		c.mu.Lock()
		c.requests[RequestKey{Method: r.Method, Kind: kind}]++
		c.mu.Unlock()
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &countingBody{ReadCloser: r.Body, n: &c.bytesIn}
		}
		cw := &countingWriter{ResponseWriter: w, n: &c.bytesOut}
		next.ServeHTTP(cw, r)
		status := cw.status
		if status == 0 {
			status = http.StatusOK
		}
		c.mu.Lock()
		c.status[status]++
		c.mu.Unlock()
		if kind == KindUpload && r.Method == http.MethodPost && status == http.StatusCreated && r.URL.Query().Get("mount") != "" {
			c.mounts.Add(1)
		}
	})
}

// classify tells the kind of a registry request from its path.
func classify(path string) Kind {
	p := strings.TrimSuffix(path, "/")
	if !strings.HasPrefix(p, "/v2/") {
		return KindOther
	}
	elems := strings.Split(strings.TrimPrefix(p, "/v2/"), "/")
	n := len(elems)
	switch {
	case n >= 3 && elems[n-2] == "blobs" && elems[n-1] == "uploads":
		return KindUpload
	case n >= 4 && elems[n-3] == "blobs" && elems[n-2] == "uploads":
		return KindUpload
	case n >= 3 && elems[n-2] == "blobs":
		return KindBlob
	case n >= 3 && elems[n-2] == "manifests":
		return KindManifest
	case n >= 3 && elems[n-2] == "tags" && elems[n-1] == "list":
		return KindTags
	case n >= 3 && elems[n-2] == "referrers":
		return KindReferrers
	}
	return KindOther
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countingWriter counts response body bytes and remembers the status.
type countingWriter struct {
	http.ResponseWriter
	n      *atomic.Int64
	status int
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// Flush lets streaming handlers (the reverse proxy) flush through.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
