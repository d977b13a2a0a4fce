package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/archive"
)

// DefaultReadTimeout is how long a registry may send nothing, neither the
// header of an answer nor a byte of its body, or take no byte of an
// upload, before the request counts as failed (and is retried, or a blob
// download resumes).
const DefaultReadTimeout = 60 * time.Second

// uploadHeaderTimeout bounds the wait for the answer to a request that
// carried a body (an upload) once all of the body is sent: the registry
// may take a while to store a large blob once it has all of it. (The
// transport's ResponseHeaderTimeout starts only then; while the body is
// being sent, the read timeout applies to each byte the registry takes.)
const uploadHeaderTimeout = 5 * time.Minute

// timeoutError is a registry that sent nothing, or took nothing of an
// upload, for the read timeout. It is a network timeout, which oras-go's
// retry policy retries, and so does the sink's upload restart.
// (The HTTP client names the request in front of it.)
type timeoutError struct {
	what  string // "no byte of the answer", ...
	after time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%s for %s (--read-timeout)", e.what, e.after)
}
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// Is makes every timeoutError ErrReadTimeout, and one of an upload
// ErrUploadTimeout as well.
func (e *timeoutError) Is(target error) bool {
	return target == ErrReadTimeout || (target == ErrUploadTimeout && e.what == uploadStalled)
}

// ErrReadTimeout is what errors.Is finds in a request that failed because
// the registry sent nothing, or took no byte of an upload, for the read
// timeout.
var ErrReadTimeout = errors.New("the registry sent nothing for the read timeout")

// ErrUploadTimeout is what errors.Is finds in a request that failed
// because the registry took no byte of its body (an upload) for the read
// timeout; errors.Is finds ErrReadTimeout in it too.
var ErrUploadTimeout = errors.New("the registry took no byte of an upload for the read timeout")

const uploadStalled = "the registry took no byte of the upload"

// The causes a timeoutTransport cancels a request with.
var (
	errHeaderTimeout = errors.New("no answer within the read timeout")
	errIdleTimeout   = errors.New("no byte within the read timeout")
	errUploadTimeout = errors.New("no byte of the upload taken within the read timeout")
)

func (t *timeoutTransport) causeError(ctx context.Context) error {
	switch context.Cause(ctx) {
	case errHeaderTimeout:
		return &timeoutError{what: "no byte of the answer", after: t.idle}
	case errIdleTimeout:
		return &timeoutError{what: "no byte of the rest of the answer", after: t.idle}
	case errUploadTimeout:
		return &timeoutError{what: uploadStalled, after: t.idle}
	}
	return nil
}

// timeoutTransport ends a request whose registry stalls: no answer within
// the read timeout after a request without a body, no byte of an upload
// taken for the read timeout, and no byte of an answer's body for the
// read timeout. All are timeouts, so the retry transport above retries
// them (an upload only where its body can be sent again), the sink starts
// a blob upload over, and a blob download resumes.
type timeoutTransport struct {
	base http.RoundTripper
	idle time.Duration
}

func (t *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	var header *time.Timer
	var up *uploadClock
	out := req.WithContext(ctx)
	if req.Body == nil || req.Body == http.NoBody {
		// An upload's answer waits up to the transport's
		// ResponseHeaderTimeout instead (uploadHeaderTimeout).
		header = time.AfterFunc(t.idle, func() { cancel(errHeaderTimeout) })
	} else {
		// The clock runs from here (connecting, sending the header)
		// and whenever the transport has bytes of the body it has not
		// yet handed to the connection: when the registry stops
		// reading, the socket's buffers fill and the transport stops
		// asking for more.
		up = &uploadClock{idle: t.idle}
		up.timer = time.AfterFunc(t.idle, func() { cancel(errUploadTimeout) })
		out.Body = &uploadBody{rc: req.Body, clock: up}
		if getBody := req.GetBody; getBody != nil {
			// The transport sends the body again through GetBody
			// when a reused connection turns out dead: that copy is
			// watched too. (The retry transport above rewinds its own
			// request, which comes through here anew.)
			out.GetBody = func() (io.ReadCloser, error) {
				rc, err := getBody()
				if err != nil || rc == http.NoBody {
					return rc, err
				}
				return &uploadBody{rc: rc, clock: up}, nil
			}
		}
	}
	resp, err := t.base.RoundTrip(out)
	if header != nil {
		header.Stop()
	}
	if up != nil {
		// The answer came (or the request failed): from here the
		// answer's clock applies, even if the transport still sends
		// the rest of a body the registry answered early.
		up.end()
	}
	if err != nil {
		if terr := t.causeError(ctx); terr != nil {
			err = terr
		}
		cancel(nil)
		return nil, err
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		cancel(nil)
		return resp, nil
	}
	b := &idleBody{rc: resp.Body, ctx: ctx, cancel: cancel, t: t}
	b.timer = time.AfterFunc(t.idle, func() { cancel(errIdleTimeout) })
	b.timer.Stop()
	resp.Body = b
	return resp, nil
}

// uploadClock times how long the transport goes without taking a byte of
// a request body. It runs while the transport holds bytes it was given
// (writing them to a connection whose buffers are full when the registry
// stopped reading) and stops while a Read of the source waits: a slow
// source (a compressed backup, standard input) is not a stalled registry.
type uploadClock struct {
	mu    sync.Mutex
	idle  time.Duration
	timer *time.Timer // cancels the request with errUploadTimeout
	ended bool        // the round trip returned
}

func (c *uploadClock) run() {
	c.mu.Lock()
	if !c.ended {
		c.timer.Reset(c.idle)
	}
	c.mu.Unlock()
}

func (c *uploadClock) pause() {
	c.mu.Lock()
	c.timer.Stop()
	c.mu.Unlock()
}

func (c *uploadClock) end() {
	c.mu.Lock()
	c.ended = true
	c.timer.Stop()
	c.mu.Unlock()
}

// uploadBody is a request body whose reads by the transport drive an
// uploadClock.
type uploadBody struct {
	rc    io.ReadCloser
	clock *uploadClock
}

func (b *uploadBody) Read(p []byte) (int, error) {
	b.clock.pause()
	n, err := b.rc.Read(p)
	if err == nil {
		// The transport writes these bytes before it asks again.
		b.clock.run()
	}
	// At the end of the body (io.EOF) the clock stays stopped: the
	// transport has handed all of it to the connection but for its last
	// write buffer, which fits in the socket's own, and the wait for the
	// answer is the transport's ResponseHeaderTimeout.
	return n, err
}

func (b *uploadBody) Close() error { return b.rc.Close() }

// idleBody is a response body whose reads fail with a timeoutError when
// no byte comes for the read timeout. The clock runs only while a Read
// waits: a slow consumer is not a stalled registry.
type idleBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	t      *timeoutTransport
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.t.idle)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF {
		if terr := b.t.causeError(b.ctx); terr != nil {
			err = terr
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// metadataTransport reads the answers that are metadata (manifests and
// indexes by tag or digest, tag-schema referrers indexes, tags/list pages
// and Referrers API answers) in full, at most archive.MaxManifestSize
// bytes, before handing them on. A body cut off mid-way then fails the
// request itself, and the retry transport above tries it again, with the
// same backoff as a 503: these answers are small, and oras-go reads them
// where regvault cannot resume them. A larger answer is refused before
// more than the limit is read, whatever its Content-Length says. Blob
// bodies stream on (they resume with Range, see source.resumingReader).
type metadataTransport struct{ base http.RoundTripper }

func (t *metadataTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK || req.Method != http.MethodGet {
		return resp, err
	}
	kind, name := metadataKind(req)
	if kind == "" {
		return resp, nil
	}
	if resp.ContentLength > archive.MaxManifestSize {
		resp.Body.Close()
		return nil, tooLarge(kind, name, resp.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, archive.MaxManifestSize+1))
	resp.Body.Close()
	if err != nil {
		if req.Context().Err() != nil {
			return nil, err
		}
		return nil, &bodyError{got: len(body), err: err}
	}
	if len(body) > archive.MaxManifestSize {
		return nil, tooLarge(kind, name, -1)
	}
	// The length is known now: oras-go needs it to describe a manifest
	// fetched by tag, and asks again with a HEAD when it is not given.
	resp.ContentLength = int64(len(body))
	resp.TransferEncoding = nil
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// metadataKind says which metadata a GET asks for ("" for anything else)
// and names it host/repository:reference. It looks at the end of the path
// only: a repository name may hold "manifests" or "tags" as a component.
func metadataKind(req *http.Request) (kind, name string) {
	p := req.URL.Path
	if !strings.HasPrefix(p, "/v2/") {
		return "", ""
	}
	if repo, ok := strings.CutSuffix(p, "/tags/list"); ok {
		return "tag list", req.URL.Host + "/" + strings.TrimPrefix(repo, "/v2/")
	}
	i := strings.LastIndexByte(p, '/')
	dir, last := p[:i], p[i+1:]
	if repo, ok := strings.CutSuffix(dir, "/manifests"); ok {
		sep := ":"
		if strings.Contains(last, ":") {
			sep = "@"
		}
		return "manifest", req.URL.Host + "/" + strings.TrimPrefix(repo, "/v2/") + sep + last
	}
	if repo, ok := strings.CutSuffix(dir, "/referrers"); ok {
		return "referrers list", req.URL.Host + "/" + strings.TrimPrefix(repo, "/v2/") + "@" + last
	}
	return "", ""
}

func tooLarge(kind, name string, size int64) error {
	if kind == "manifest" {
		return archive.ManifestTooLarge(name, size)
	}
	if size < 0 {
		return fmt.Errorf("the %s of %s is larger than the %s (%d bytes) limit: %w", kind, name, archive.MaxManifestSizeText, archive.MaxManifestSize, errdef.ErrSizeExceedsLimit)
	}
	return fmt.Errorf("the %s of %s is %d bytes, larger than the %s (%d bytes) limit: %w", kind, name, size, archive.MaxManifestSizeText, archive.MaxManifestSize, errdef.ErrSizeExceedsLimit)
}

// bodyError is a metadata answer whose body broke off (a reset, a cut
// connection, a read timeout). The HTTP client names the request in
// front of it.
type bodyError struct {
	got int
	err error
}

func (e *bodyError) Error() string {
	return fmt.Sprintf("the answer broke off after %d bytes: %v", e.got, e.err)
}

func (e *bodyError) Unwrap() error { return e.err }

// Is makes a body that broke off, whatever the cause, an unexpected end
// of it: oras-go's retry policy retries that.
func (e *bodyError) Is(target error) bool { return target == io.ErrUnexpectedEOF }

// Timeout says whether the body stalled (a timeoutError).
func (e *bodyError) Timeout() bool {
	var te *timeoutError
	return errors.As(e.err, &te)
}

// Temporary is part of net.Error.
func (e *bodyError) Temporary() bool { return true }

// roundTrips keeps the shortest wait for an answer seen by the requests of
// one client that carry no body (an upload's answer comes after its body):
// the round trip of the path to the registry, or close above it. A blob's
// first byte can wait much longer behind a server busy with other
// transfers, which says nothing about the path; the least of many small
// requests (tag lists, manifests, existence checks) does.
type roundTrips struct {
	base  http.RoundTripper
	least atomic.Int64 // nanoseconds; 0: none yet
}

func (t *roundTrips) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		return t.base.RoundTrip(req)
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		d := max(int64(time.Since(start)), 1)
		for {
			old := t.least.Load()
			if (old != 0 && old <= d) || t.least.CompareAndSwap(old, d) {
				break
			}
		}
	}
	return resp, err
}

// get is the least round trip seen, false before any.
func (t *roundTrips) get() (time.Duration, bool) {
	d := t.least.Load()
	return time.Duration(d), d != 0
}
