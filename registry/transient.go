package registry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Transient reports whether err, the failure of a request to a registry,
// may pass on a second try: the registry answered 5xx, 429 or 408, the
// connection broke (closed before or during the answer, reset, a broken
// pipe), or a network timeout, among them the read timeouts of this
// package (ErrReadTimeout). A request the caller gave up on (its context
// ended) is not transient. The retry policy of the clients of this
// package and the registry sink's upload restarts both ask it.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrReadTimeout) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// net/http reports a connection the registry closed as it was about
	// to be reused with an unexported error value, nothing to test with
	// errors.Is: only its text tells.
	return strings.Contains(err.Error(), "server closed idle connection")
}
