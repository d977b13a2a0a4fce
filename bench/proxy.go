package bench

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Profile is the network between a tool and the registry, as the proxy
// makes it.
type Profile struct {
	Name string
	// Latency is added to every request before it is forwarded.
	Latency time.Duration
	// Rate caps every request body and every response body, each stream
	// on its own, in bytes per second; 0 means no cap.
	Rate float64
	// Link caps all the streams of one proxy together, in bytes per
	// second each way (request bodies share one cap, response bodies
	// another): one machine's link, which parallel streams cannot widen.
	// 0 means no cap.
	Link float64
}

// The profiles.
var (
	ProfileWAN      = Profile{Name: "wan", Latency: 40 * time.Millisecond, Rate: 25 * MB}
	ProfileLoopback = Profile{Name: "loopback"}
	// ProfileFar is an intercontinental link: a long round trip and a
	// slow stream.
	ProfileFar = Profile{Name: "far", Latency: 150 * time.Millisecond, Rate: 10 * MB}
)

// AllProfiles is the order in which profiles run and are reported.
var AllProfiles = []Profile{ProfileWAN, ProfileFar, ProfileLoopback}

// ProfileByName is the profile called name.
func ProfileByName(name string) (Profile, error) {
	for _, p := range AllProfiles {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, fmt.Errorf("unknown profile %q (want wan, far or loopback)", name)
}

// Describe says what the profile does, for the report.
func (p Profile) Describe() string {
	link := ""
	if p.Link > 0 {
		link = fmt.Sprintf("; all streams of one proxy share a link of %.0f MB/s each way", p.Link/MB)
	}
	if p.Latency == 0 && p.Rate == 0 {
		return "loopback: the counting proxy only, no added latency, no cap" + link
	}
	return fmt.Sprintf("%s: +%s per request, each request and response body stream capped at %.0f MB/s", p.Name, p.Latency, p.Rate/MB) + link
}

// Proxy is a reverse proxy on 127.0.0.1 in front of one registry. It
// counts requests by method and kind, body bytes both ways, ranged GETs
// and status codes, and shapes traffic as its profile says.
type Proxy struct {
	Addr    string // 127.0.0.1:PORT, what tools talk to
	profile Profile
	// linkIn and linkOut pace all request and all response bodies
	// together (Profile.Link); nil without a link cap.
	linkIn, linkOut *link
	srv             *http.Server
	tr              *http.Transport
	done            chan error

	mu       sync.Mutex
	requests map[string]int64 // "GET blob"
	status   map[int]int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	ranged   atomic.Int64
	mounts   atomic.Int64
	uploads  atomic.Int64
	inflight atomic.Int64
	maxInfl  atomic.Int64
	conns    atomic.Int64 // TCP connections the clients opened

	// trace, when on, records every request (see Trace).
	tracing bool
	t0      time.Time
	events  []TraceEvent
}

// TraceEvent is one request as the proxy saw it, times from Reset.
type TraceEvent struct {
	Start, End time.Duration
	// First is when the first body byte went through (the response's
	// for a GET, the request's for an upload); 0 when none did.
	First   time.Duration
	Method  string
	Kind    string
	Path    string
	Range   string
	Status  int
	In, Out int64
}

// Trace turns request recording on: Events returns what was recorded
// since the last Reset.
func (p *Proxy) Trace() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tracing = true
	p.t0 = time.Now()
}

// T0 is the time the events' times count from (the last Reset or Trace).
func (p *Proxy) T0() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.t0
}

// Events is the requests recorded since the last Reset, by start time.
func (p *Proxy) Events() []TraceEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TraceEvent, len(p.events))
	copy(out, p.events)
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// StartProxy starts a proxy for the registry at backend (plain HTTP).
func StartProxy(backend string, p Profile) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 256
	tr.DisableCompression = true
	tr.ForceAttemptHTTP2 = false
	target := &url.URL{Scheme: "http", Host: backend}
	px := &Proxy{Addr: l.Addr().String(), profile: p, tr: tr, done: make(chan error, 1), requests: map[string]int64{}, status: map[int]int64{}}
	if p.Link > 0 {
		px.linkIn, px.linkOut = &link{rate: p.Link}, &link{rate: p.Link}
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // Location headers point at the proxy
		},
		Transport:     tr,
		FlushInterval: -1, // write through: the pacer does the shaping
		ErrorLog:      log.New(io.Discard, "", 0),
		BufferPool:    bufferPool{},
	}
	px.srv = &http.Server{Handler: px.handler(rp), ReadHeaderTimeout: time.Minute, ErrorLog: log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				px.conns.Add(1)
			}
		}}
	go func() { px.done <- px.srv.Serve(l) }()
	return px, nil
}

// Close stops the proxy.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	p.tr.CloseIdleConnections()
	if serr := <-p.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

func (p *Proxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.inflight.Add(1)
		defer p.inflight.Add(-1)
		for {
			m := p.maxInfl.Load()
			if n <= m || p.maxInfl.CompareAndSwap(m, n) {
				break
			}
		}
		kind := classify(r.URL.Path)
		p.mu.Lock()
		p.requests[r.Method+" "+kind]++
		tracing, t0 := p.tracing, p.t0
		p.mu.Unlock()
		start := time.Now()
		if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			p.ranged.Add(1)
		}
		if p.profile.Latency > 0 {
			time.Sleep(p.profile.Latency)
		}
		var first atomic.Int64 // time.Time.UnixNano of the first body byte
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &pacedBody{ReadCloser: r.Body, n: &p.bytesIn, pace: newPacer(p.profile.Rate, p.linkIn), first: &first}
		}
		// The status is counted as the header goes out, before the client
		// can see it: a client that reads its answer and then asks for
		// Stats must find it counted.
		onStatus := func(status int) {
			p.mu.Lock()
			p.status[status]++
			p.mu.Unlock()
			if kind == "upload" && status == http.StatusCreated {
				switch q := r.URL.Query(); {
				case r.Method == http.MethodPost && q.Get("mount") != "":
					p.mounts.Add(1)
				case r.Method == http.MethodPut, r.Method == http.MethodPost && q.Get("digest") != "":
					// A blob stored: the PUT that ends an upload, or a
					// monolithic POST with the digest.
					p.uploads.Add(1)
				}
			}
		}
		pw := &pacedWriter{ResponseWriter: w, n: &p.bytesOut, pace: newPacer(p.profile.Rate, p.linkOut), onStatus: onStatus, first: &first}
		next.ServeHTTP(pw, r)
		pw.setStatus(http.StatusOK) // a handler that wrote nothing answered 200
		status := pw.status
		p.mu.Lock()
		if tracing && len(p.events) < 1<<20 {
			var in int64
			if pb, ok := r.Body.(*pacedBody); ok {
				in = pb.count.Load()
			}
			var firstAt time.Duration
			if f := first.Load(); f != 0 {
				firstAt = time.Unix(0, f).Sub(t0)
			}
			p.events = append(p.events, TraceEvent{Start: start.Sub(t0), End: time.Since(t0), First: firstAt, Method: r.Method, Kind: kind, Path: r.URL.Path, Range: r.Header.Get("Range"), Status: status, In: in, Out: pw.count})
		}
		p.mu.Unlock()
	})
}

// ProxyStats is what a proxy counted.
type ProxyStats struct {
	Requests map[string]int64 `json:"requests"` // by "METHOD kind"
	Status   map[int]int64    `json:"status"`
	BytesIn  int64            `json:"bytesIn"`  // request bodies (uploads)
	BytesOut int64            `json:"bytesOut"` // response bodies (downloads)
	Ranged   int64            `json:"ranged"`   // GETs with a Range header
	Mounts   int64            `json:"mounts"`   // accepted cross-repository mounts
	Uploads  int64            `json:"uploads"`  // completed blob uploads (201 to a PUT, or to a POST with the digest)
	MaxConc  int64            `json:"maxConcurrent"`
	Conns    int64            `json:"conns"` // TCP connections opened by the clients
}

// Stats is a snapshot of the counters.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProxyStats{Requests: map[string]int64{}, Status: map[int]int64{}, BytesIn: p.bytesIn.Load(), BytesOut: p.bytesOut.Load(), Ranged: p.ranged.Load(), Mounts: p.mounts.Load(), Uploads: p.uploads.Load(), MaxConc: p.maxInfl.Load(), Conns: p.conns.Load()}
	for k, v := range p.requests {
		s.Requests[k] = v
	}
	for k, v := range p.status {
		s.Status[k] = v
	}
	return s
}

// Reset sets the counters back to zero.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = map[string]int64{}
	p.status = map[int]int64{}
	p.bytesIn.Store(0)
	p.bytesOut.Store(0)
	p.ranged.Store(0)
	p.mounts.Store(0)
	p.uploads.Store(0)
	p.maxInfl.Store(0)
	p.conns.Store(0)
	p.events = nil
	p.t0 = time.Now()
}

// Method is the number of requests with this method.
func (s ProxyStats) Method(m string) int64 {
	var n int64
	for k, v := range s.Requests {
		if strings.HasPrefix(k, m+" ") {
			n += v
		}
	}
	return n
}

// Count is the number of requests with this method and kind.
func (s ProxyStats) Count(method, kind string) int64 { return s.Requests[method+" "+kind] }

// Total is the number of requests.
func (s ProxyStats) Total() int64 {
	var n int64
	for _, v := range s.Requests {
		n += v
	}
	return n
}

// Errors is the number of answers with a status of 400 or more, but 404
// (which is how a registry says "not there yet", asked on purpose).
func (s ProxyStats) Errors() int64 {
	var n int64
	for code, v := range s.Status {
		if code >= 400 && code != http.StatusNotFound {
			n += v
		}
	}
	return n
}

// String lists the counters compactly: "GET blob 27, GET manifest 48, ...".
func (s ProxyStats) String() string {
	keys := make([]string, 0, len(s.Requests))
	for k := range s.Requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.Requests[k]))
	}
	return strings.Join(parts, ", ")
}

// classify is the kind of a registry request, from its path.
func classify(path string) string {
	p := strings.TrimSuffix(path, "/")
	if !strings.HasPrefix(p, "/v2/") {
		return "other"
	}
	e := strings.Split(strings.TrimPrefix(p, "/v2/"), "/")
	n := len(e)
	switch {
	case n >= 3 && e[n-2] == "blobs" && e[n-1] == "uploads", n >= 4 && e[n-3] == "blobs" && e[n-2] == "uploads":
		return "upload"
	case n >= 3 && e[n-2] == "blobs":
		return "blob"
	case n >= 3 && e[n-2] == "manifests" && isReferrersTag(e[n-1]):
		return "referrers-tag"
	case n >= 3 && e[n-2] == "manifests":
		return "manifest"
	case n >= 3 && e[n-2] == "tags" && e[n-1] == "list":
		return "tags"
	case n >= 3 && e[n-2] == "referrers":
		return "referrers"
	}
	return "other"
}

// isReferrersTag tells whether ref is a tag of the referrers tag schema
// (sha256-<64 hex>): looking referrers up, not fetching content.
func isReferrersTag(ref string) bool {
	hex, ok := strings.CutPrefix(ref, "sha256-")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// WriteTrace writes events as a tab-separated table to path.
func WriteTrace(path string, events []TraceEvent) error {
	var b strings.Builder
	b.WriteString("start_ms\tend_ms\tmethod\tkind\tstatus\tin\tout\trange\tpath\n")
	for _, e := range events {
		fmt.Fprintf(&b, "%.1f\t%.1f\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", ms(e.Start), ms(e.End), e.Method, e.Kind, e.Status, e.In, e.Out, e.Range, e.Path)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// TraceSummary says where the time of a run went, from its requests: when
// the first request, the first blob transfer and the largest transfer
// started, how long the transfers ran, and how many requests were under
// way on average.
func TraceSummary(events []TraceEvent) string {
	if len(events) == 0 {
		return "no requests"
	}
	var end, firstXfer, bigStart, busy time.Duration
	firstXfer = -1
	var big int64
	for _, e := range events {
		if e.End > end {
			end = e.End
		}
		busy += e.End - e.Start
		n := e.In + e.Out
		if (e.Kind == "blob" && e.Method == "GET") || (e.Kind == "upload" && n > 0) {
			if firstXfer < 0 || e.Start < firstXfer {
				firstXfer = e.Start
			}
			if n > big {
				big, bigStart = n, e.Start
			}
		}
	}
	s := fmt.Sprintf("%d requests over %.0f ms, %.1f under way on average; first at %.0f ms", len(events), ms(end-events[0].Start), float64(busy)/float64(end-events[0].Start), ms(events[0].Start))
	if firstXfer >= 0 {
		s += fmt.Sprintf(", first blob transfer at %.0f ms, the largest (%s) at %.0f ms", ms(firstXfer), sizeString(big), ms(bigStart))
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pacer spaces a stream of bytes to a rate: after n bytes it sleeps until
// n/rate seconds have passed since the first byte; and, with a link, until
// the link has carried them too.
type pacer struct {
	rate  float64
	link  *link // nil: none
	start time.Time
	n     int64
}

func newPacer(rate float64, l *link) *pacer { return &pacer{rate: rate, link: l} }

func (p *pacer) paced() bool { return p.rate > 0 || p.link != nil }

// chunk is the most a paced stream moves between two waits.
const chunk = 64 * KiB

func (p *pacer) limit(n int) int {
	if p.paced() && n > chunk {
		return chunk
	}
	return n
}

func (p *pacer) wait(n int) {
	if !p.paced() || n <= 0 {
		return
	}
	var due time.Time
	if p.rate > 0 {
		if p.start.IsZero() {
			p.start = time.Now()
		}
		p.n += int64(n)
		due = p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	}
	if p.link != nil {
		if l := p.link.take(n); l.After(due) {
			due = l
		}
	}
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

// link is a cap shared by streams: bytes pass one after another at rate,
// in the order the streams ask (a link left idle saves nothing up).
type link struct {
	rate float64
	mu   sync.Mutex
	next time.Time // when the bytes taken so far have passed
}

// take books n bytes on the link and gives when they have passed.
func (l *link) take(n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	return l.next
}

type pacedBody struct {
	io.ReadCloser
	n     *atomic.Int64
	pace  *pacer
	count atomic.Int64
	first *atomic.Int64 // set at the first byte (UnixNano), for the trace
}

// markFirst sets *first to now unless it is set.
func markFirst(first *atomic.Int64, n int) {
	if first != nil && n > 0 && first.Load() == 0 {
		first.CompareAndSwap(0, time.Now().UnixNano())
	}
}

func (b *pacedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p[:b.pace.limit(len(p))])
	markFirst(b.first, n)
	b.n.Add(int64(n))
	b.count.Add(int64(n))
	b.pace.wait(n)
	return n, err
}

type pacedWriter struct {
	http.ResponseWriter
	n      *atomic.Int64
	pace   *pacer
	status int
	count  int64
	// onStatus is called once, with the first status set.
	onStatus func(int)
	first    *atomic.Int64 // set at the first body byte (UnixNano), for the trace
}

func (w *pacedWriter) setStatus(code int) {
	if w.status == 0 {
		w.status = code
		if w.onStatus != nil {
			w.onStatus(code)
		}
	}
}

func (w *pacedWriter) WriteHeader(code int) {
	// 1xx answers are interim; the final status comes after them.
	if code >= 200 {
		w.setStatus(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	w.setStatus(http.StatusOK)
	total := 0
	for len(p) > 0 {
		n, err := w.ResponseWriter.Write(p[:w.pace.limit(len(p))])
		markFirst(w.first, n)
		total += n
		w.n.Add(int64(n))
		w.count += int64(n)
		if w.pace.paced() {
			if f, ok := w.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
		}
		w.pace.wait(n)
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

func (w *pacedWriter) Flush() {
	w.setStatus(http.StatusOK)
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *pacedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferPool gives the reverse proxy 256 KiB copy buffers: on loopback
// the proxy should cost the tools as little as it can.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 256*KiB); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
