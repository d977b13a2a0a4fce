package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"5":    5 * time.Second,
		"120":  2 * time.Minute,
		"0":    -1,
		"-3":   -1,
		"soon": -1,
		"":     -1,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     -1,
	} {
		got, ok := retryAfter(v, now)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

// The policy retries a connection closed without an answer, and waits
// what Retry-After asks, up to its maximum, saying so.
func TestRetryPolicy(t *testing.T) {
	var notice strings.Builder
	p := requestPolicy{newRetryPolicy("reg.example", 10*time.Second, &notice), context.Background()}
	eof := &url.Error{Op: "Put", URL: "http://reg.example/v2/r/manifests/v1", Err: io.EOF}
	if d, err := p.Retry(0, nil, eof); d < 0 || err != nil {
		t.Errorf("EOF: not retried (%s, %v)", d, err)
	}
	if d, _ := p.Retry(0, nil, errors.New("certificate signed by unknown authority")); d >= 0 {
		t.Errorf("a TLS error is retried after %s", d)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://reg.example/v2/r/tags/list?_state=secret", nil)
	for after, want := range map[string]time.Duration{"7": 7 * time.Second, "30": 10 * time.Second} {
		notice.Reset()
		resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {after}}, Request: req}
		if d, err := p.Retry(0, resp, nil); d != want || err != nil {
			t.Errorf("Retry-After %s: waits %s (%v), want %s", after, d, err, want)
		}
		if !strings.Contains(notice.String(), "Registry reg.example asked to wait "+after+"s before retrying (429 on GET /v2/r/tags/list): waiting "+want.String()) {
			t.Errorf("notice: %q", notice.String())
		}
		if strings.Contains(notice.String(), "secret") {
			t.Errorf("notice shows the query: %q", notice.String())
		}
	}
}
