package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"oras.land/oras-go/v2/registry/remote/retry"
)

// DefaultMaxRetryWait is the longest a registry's Retry-After is honoured
// for by default (Options.MaxRetryWait); a longer one is cut to it.
const DefaultMaxRetryWait = 60 * time.Second

// retryPolicy is oras-go's default retry policy (5xx, 429 and 408
// answers; 5 retries with exponential backoff of 0.25 to 3 s) with two
// changes:
//
//   - A failed request is retried where Transient says so, which takes
//     in a connection closed before any answer (EOF) too. Every
//     request regvault sends may be sent twice: reads, mounts and upload
//     starts (a second POST starts another upload session), manifest and
//     blob PUTs by digest (the same bytes under the same name).
//   - A Retry-After (seconds or a date, on any retried answer) is honoured
//     up to maxWait instead of being cut to 3 s, and the wait is announced
//     on notice: the registry asked for it, and a run that pauses for a
//     minute must say why.
type retryPolicy struct {
	base    *retry.GenericPolicy
	maxWait time.Duration
	host    string
	notice  io.Writer
	mu      *sync.Mutex // serializes notices
}

func newRetryPolicy(host string, maxWait time.Duration, notice io.Writer) *retryPolicy {
	if maxWait <= 0 {
		maxWait = DefaultMaxRetryWait
	}
	def := retry.DefaultPolicy.(*retry.GenericPolicy)
	base := *def
	base.Retryable = func(resp *http.Response, err error) (bool, error) {
		if err != nil {
			if Transient(err) {
				return true, nil
			}
			return false, err // as oras-go's predicate: the error ends the retries
		}
		return def.Retryable(resp, nil)
	}
	return &retryPolicy{base: &base, maxWait: maxWait, host: host, notice: notice, mu: &sync.Mutex{}}
}

// retryTransport is oras-go's retry transport with a retryPolicy bound to
// each request's context: the wait for a request that cannot be sent
// again (see Retry) ends with the caller's context, not with that of the
// attempt, which the transports below end once its answer is read.
type retryTransport struct {
	base   http.RoundTripper
	policy *retryPolicy
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	rt := &retry.Transport{Base: t.base, Policy: func() retry.Policy { return requestPolicy{t.policy, ctx} }}
	return rt.RoundTrip(req)
}

// requestPolicy is a retryPolicy for the request of context ctx.
type requestPolicy struct {
	*retryPolicy
	ctx context.Context
}

func (p requestPolicy) Retry(attempt int, resp *http.Response, err error) (time.Duration, error) {
	d, rerr := p.base.Retry(attempt, resp, err)
	if d < 0 || rerr != nil || resp == nil {
		return d, rerr
	}
	asked, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now())
	if !ok {
		return d, nil
	}
	wait := min(asked, p.maxWait)
	p.announce(resp, asked, wait)
	if req := resp.Request; req != nil && req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		// A request whose body cannot be sent again (a streamed blob
		// upload) is not retried here but by its caller, after this
		// returns: wait here, so that the caller's retry comes after
		// the wait the registry asked for.
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.ctx.Done():
		}
	}
	return wait, nil
}

func (p *retryPolicy) announce(resp *http.Response, asked, wait time.Duration) {
	if p.notice == nil {
		return
	}
	what := ""
	if req := resp.Request; req != nil {
		what = fmt.Sprintf(" (%d on %s %s)", resp.StatusCode, req.Method, req.URL.Path)
	}
	msg := fmt.Sprintf("Registry %s asked to wait %s before retrying%s: waiting %s\n", p.host, asked, what, wait)
	if wait < asked {
		msg = fmt.Sprintf("Registry %s asked to wait %s before retrying%s: waiting %s, the most --max-retry-wait allows\n", p.host, asked, what, wait)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = io.WriteString(p.notice, msg)
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0, false
		}
		if s > int64(24*time.Hour/time.Second) {
			s = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now).Round(time.Second), true
	}
	return 0, false
}
