package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"

	"oras.land/oras-go/v2/registry/remote/errcode"
)

func TestTransient(t *testing.T) {
	req := func(err error) error {
		return &url.Error{Op: "Put", URL: "http://reg.example/v2/r/blobs/uploads/x", Err: err}
	}
	sys := func(errno error) error {
		return &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
	}
	status := func(code int) error {
		return fmt.Errorf("uploading: %w", &errcode.ErrorResponse{Method: http.MethodPut, URL: &url.URL{Path: "/v2/r/blobs/uploads/x"}, StatusCode: code})
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"closed before the answer (EOF)", req(io.EOF), true},
		{"closed in the answer", req(io.ErrUnexpectedEOF), true},
		{"connection reset", req(sys(syscall.ECONNRESET)), true},
		{"broken pipe", req(sys(syscall.EPIPE)), true},
		{"dial timeout", req(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "i/o timeout", IsTimeout: true}}), true},
		{"no answer for --read-timeout", req(&timeoutError{what: "no byte of the answer", after: 1}), true},
		{"upload not taken for --read-timeout", req(&timeoutError{what: uploadStalled, after: 1}), true},
		{"answer broke off (reset)", req(&bodyError{got: 10, err: sys(syscall.ECONNRESET)}), true},
		{"answer stalled", req(&bodyError{got: 10, err: &timeoutError{what: "no byte", after: 1}}), true},
		{"idle connection closed by the server", req(errors.New("http: server closed idle connection")), true},
		{"500", status(500), true},
		{"503", status(503), true},
		{"429", status(http.StatusTooManyRequests), true},
		{"408", status(http.StatusRequestTimeout), true},
		{"404", status(404), false},
		{"401", status(401), false},
		{"caller cancelled", req(context.Canceled), false},
		{"caller's deadline", req(context.DeadlineExceeded), false},
		{"cancelled while reading an answer", req(&bodyError{got: 10, err: context.Canceled}), false},
		{"untrusted certificate", req(x509.UnknownAuthorityError{}), false},
		{"connection refused", req(sys(syscall.ECONNREFUSED)), false},
		{"text that merely mentions EOF", errors.New("manifest invalid: unexpected EOF in JSON"), false},
		{"text that merely mentions a reset", errors.New("tag reset: connection reset requested"), false},
	} {
		if got := Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// The retry policy retries what Transient calls transient, and ends on
// anything else with that error.
func TestRetryPolicyFollowsTransient(t *testing.T) {
	p := newRetryPolicy("reg.example", 0, nil)
	pipe := &url.Error{Op: "Put", URL: "http://reg.example/v2/r/manifests/v1", Err: &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}}
	if ok, err := p.base.Retryable(nil, pipe); !ok || err != nil {
		t.Errorf("broken pipe: retryable %v (%v)", ok, err)
	}
	refused := &url.Error{Op: "Get", URL: "http://reg.example/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	if ok, err := p.base.Retryable(nil, refused); ok || err != refused {
		t.Errorf("connection refused: retryable %v (%v)", ok, err)
	}
	if ok, _ := p.base.Retryable(&http.Response{StatusCode: http.StatusBadGateway}, nil); !ok {
		t.Error("502: not retryable")
	}
	if ok, _ := p.base.Retryable(&http.Response{StatusCode: http.StatusNotFound}, nil); ok {
		t.Error("404: retryable")
	}
}
