package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// uploadSize is far more than the sockets' buffers on 127.0.0.1 hold, so
// a registry that stops reading makes the client's writes block.
const uploadSize = 16 << 20

// stallingServer is a registry endpoint on 127.0.0.1 whose first stalls
// uploads are read for 64 KiB and then no more (the connection is held,
// unread, until the test ends); the others are read whole and answered
// 201. It counts the uploads it got.
func stallingServer(t *testing.T, stalls int64) (host string, uploads *atomic.Int64) {
	t.Helper()
	uploads = new(atomic.Int64)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if uploads.Add(1) <= stalls {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			// A small receive buffer keeps the kernel from taking
			// the whole body on the registry's behalf.
			_ = conn.(*net.TCPConn).SetReadBuffer(16 << 10)
			_, _ = io.CopyN(io.Discard, brw, 64<<10)
			<-done
			conn.Close()
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || n != r.ContentLength {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // first: lets the held connections go
	return strings.TrimPrefix(srv.URL, "http://"), uploads
}

// put sends body to host with a client of New (--read-timeout 1s), as
// oras-go sends an upload, and fails the test if it does not end within a
// generous bound.
func put(t *testing.T, host string, body io.Reader, size int64) (*http.Response, error) {
	t.Helper()
	return putWithin(t, host, body, size, time.Second)
}

// putWithin is put with a client whose --read-timeout is readTimeout.
func putWithin(t *testing.T, host string, body io.Reader, size int64, readTimeout time.Duration) (*http.Response, error) {
	t.Helper()
	c, err := New(host, Options{PlainHTTP: true, ReadTimeout: readTimeout})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, "http://"+host+"/v2/app/blobs/uploads/x?digest=sha256:0", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	type result struct {
		resp *http.Response
		err  error
	}
	finished := make(chan result, 1)
	go func() {
		resp, err := c.auth.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		finished <- result{resp, err}
	}()
	select {
	case r := <-finished:
		return r.resp, r.err
	case <-time.After(time.Minute):
		t.Fatal("the upload to a registry that stopped reading did not end")
		return nil, nil
	}
}

// streamed is a body that cannot be sent again (no GetBody), as a blob
// upload streamed from a backup.
type streamed struct{ io.Reader }

func TestUploadStalled(t *testing.T) {
	t.Parallel()
	host, uploads := stallingServer(t, 1<<30)
	_, err := put(t, host, streamed{bytes.NewReader(make([]byte, uploadSize))}, uploadSize)
	if err == nil {
		t.Fatal("the upload that the registry stopped reading succeeded")
	}
	if !errors.Is(err, ErrReadTimeout) || !errors.Is(err, ErrUploadTimeout) {
		t.Errorf("%v: not ErrReadTimeout and ErrUploadTimeout", err)
	}
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Errorf("%v: not a network timeout (the sink's upload restart would not retry it)", err)
	}
	if want := "the registry took no byte of the upload for 1s (--read-timeout)"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	// A streamed body cannot be rewound: the sink starts it over.
	if uploads.Load() != 1 {
		t.Errorf("%d uploads, want 1", uploads.Load())
	}
}

// A body that can be sent again (a manifest) is sent again after the
// stall, and the second attempt goes through.
func TestUploadStalledOnceRetried(t *testing.T) {
	t.Parallel()
	host, uploads := stallingServer(t, 1)
	resp, err := put(t, host, bytes.NewReader(make([]byte, uploadSize)), uploadSize)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("status %d", resp.StatusCode)
	}
	if uploads.Load() != 2 {
		t.Errorf("%d uploads, want 2", uploads.Load())
	}
}

// slowSource waits in one Read, as a compressed backup or standard input
// may: that is no stalled registry.
type slowSource struct {
	r     io.Reader
	n     int
	pause time.Duration
}

func (s *slowSource) Read(p []byte) (int, error) {
	if s.n++; s.n == 10 {
		time.Sleep(s.pause)
	}
	return s.r.Read(p)
}

func TestUploadSlowSourceIsNoStall(t *testing.T) {
	t.Parallel()
	host, uploads := stallingServer(t, 0)
	// The source pauses far longer than the read timeout, and the
	// timeout is long enough that a registry slowed by a loaded machine
	// still takes each write within it: only the source's pause could
	// end the upload.
	src := &slowSource{r: bytes.NewReader(make([]byte, uploadSize)), pause: 8 * time.Second}
	resp, err := putWithin(t, host, src, uploadSize, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated || uploads.Load() != 1 || src.n < 10 {
		t.Errorf("status %d, %d uploads, %d reads", resp.StatusCode, uploads.Load(), src.n)
	}
}

// An empty body (http.NoBody) is left alone: the request goes as one
// without a body.
func TestUploadNoBody(t *testing.T) {
	t.Parallel()
	host, _ := stallingServer(t, 0)
	resp, err := put(t, host, http.NoBody, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// Over HTTP/2 (TLS) a registry that stops reading stops granting flow
// control: the upload times out the same way.
func TestUploadStalledHTTP2(t *testing.T) {
	t.Parallel()
	var uploads, h2 atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uploads.Add(1)
		if r.ProtoMajor == 2 {
			h2.Add(1)
		}
		_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
		select {
		case <-r.Context().Done(): // the client reset the stream
		case <-time.After(time.Minute):
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	c, err := New(host, Options{Insecure: true, ReadTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, srv.URL+"/v2/app/blobs/uploads/x?digest=sha256:0", streamed{bytes.NewReader(make([]byte, uploadSize))})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = uploadSize
	finished := make(chan error, 1)
	go func() {
		resp, err := c.auth.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		finished <- err
	}()
	select {
	case err = <-finished:
	case <-time.After(time.Minute):
		t.Fatal("the upload to a registry that stopped reading did not end")
	}
	if !errors.Is(err, ErrUploadTimeout) || !strings.Contains(err.Error(), "the registry took no byte of the upload for 1s (--read-timeout)") {
		t.Errorf("error %v, want the upload timeout", err)
	}
	if uploads.Load() != 1 || h2.Load() != 1 {
		t.Errorf("%d uploads, %d over HTTP/2, want 1", uploads.Load(), h2.Load())
	}
}
