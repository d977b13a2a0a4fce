package main

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regvault/regvault/internal/registrytest"
)

// closeOnce closes the connection, without any answer, on the first
// request of each kind that kindOf names ("" is not closed): the request
// body is read first, so the client sees its connection end (EOF), not a
// reset. closed records the kinds it closed.
func closeOnce(kindOf func(r *http.Request) string, mu *sync.Mutex, closed map[string]int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			kind := kindOf(r)
			mu.Lock()
			first := kind != "" && closed[kind] == 0
			if first {
				closed[kind]++
			}
			mu.Unlock()
			if !first {
				next.ServeHTTP(w, r)
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			conn.Close()
		})
	}
}

// A connection closed without an answer on a mount POST, an upload's
// first POST or a manifest PUT is retried: the restore completes.
func TestRestoreRetriesClosedConnectionsReliability(t *testing.T) {
	_, sample, in := sampleBackup(t)
	var mu sync.Mutex
	closed := map[string]int{}
	kindOf := func(r *http.Request) string {
		switch {
		case r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
			return "mount POST"
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			return "upload POST"
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256:"):
			return "manifest PUT by digest"
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
			return "manifest PUT by tag"
		}
		return ""
	}
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(closeOnce(kindOf, &mu, closed)))
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
	r.wantCode(t, exitOK)
	mu.Lock()
	for _, kind := range []string{"mount POST", "upload POST", "manifest PUT by digest", "manifest PUT by tag"} {
		if closed[kind] != 1 {
			t.Errorf("%s: closed %d time(s), want 1 (the restore did not send one?)", kind, closed[kind])
		}
	}
	mu.Unlock()
	for repo, tags := range sample.Tags {
		for tag, d := range tags {
			wantTag(t, dst, repo, tag, d)
		}
		wantSampleReferrers(t, dst, sample, repo, repo)
	}
}

// slowDownOnce answers the first request that key names (a manifest PUT
// unless key is set) 429 with Retry-After: after, and records, by its own
// clock, when it did and when a request of the same key came again.
type slowDownOnce struct {
	after     string
	key       func(r *http.Request) string // "" for requests it lets through
	mu        sync.Mutex
	path      string // of the refused request
	refused   string // its key
	refusedAt time.Time
	againAt   time.Time
}

func manifestPUT(r *http.Request) string {
	if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
		return r.URL.Path
	}
	return ""
}

func (s *slowDownOnce) wrap(next http.Handler) http.Handler {
	if s.key == nil {
		s.key = manifestPUT
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := s.key(r); k != "" {
			s.mu.Lock()
			switch {
			case s.refused == "":
				s.refused, s.path, s.refusedAt = k, r.URL.Path, time.Now()
				s.mu.Unlock()
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Retry-After", s.after)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected: slow down"}]}`)
				return
			case k == s.refused && s.againAt.IsZero():
				s.againAt = time.Now()
			}
			s.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// A 429 with Retry-After: 5 is honoured (oras-go's policy alone cuts it
// to 3 s), and the progress output says that the registry asked to wait
// and how long; a Retry-After beyond --max-retry-wait is cut to it, and
// that is said too.
func TestRestoreHonoursRetryAfterReliability(t *testing.T) {
	r := regvault(t, "", "restore", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "restore --help", r.stdout, "a connection closed without an answer (a mount POST and a manifest\nPUT too",
		"Retry-After is honoured\nup to --max-retry-wait (default 60s)", "--max-retry-wait duration", "(default 1m0s)")

	_, sample, in := sampleBackup(t)
	t.Run("honoured", func(t *testing.T) {
		slow := &slowDownOnce{after: "5"}
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(slow.wrap))
		r := regvault(t, "", "-d", "restore", "--plain-http", "--no-tty", "-i", in, ref(dst, "demo/frontend"))
		r.wantCode(t, exitOK)
		slow.mu.Lock()
		defer slow.mu.Unlock()
		wantContains(t, "stderr", r.stderr,
			"Registry "+dst.Host()+" asked to wait 5s before retrying (429 on PUT "+slow.path+"): waiting 5s\n",
			"debug: PUT http://"+dst.Host()+slow.path+" -> 429")
		if slow.againAt.IsZero() {
			t.Fatalf("the refused PUT %s was not sent again", slow.path)
		}
		// By the registry's clock; generous: the registry asked for 5 s.
		if gap := slow.againAt.Sub(slow.refusedAt); gap < 4*time.Second {
			t.Errorf("the PUT came again %s after the 429 that asked for 5s", gap)
		}
		for tag, d := range sample.Tags["demo/frontend"] {
			wantTag(t, dst, "demo/frontend", tag, d)
		}
	})
	// A streamed blob upload cannot be sent again by the HTTP client: the
	// restore starts it over, after the wait.
	t.Run("honoured for a blob upload", func(t *testing.T) {
		slow := &slowDownOnce{after: "2", key: func(r *http.Request) string {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
				return r.URL.Query().Get("digest")
			}
			return ""
		}}
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(slow.wrap))
		r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, ref(dst, "demo/frontend"))
		r.wantCode(t, exitOK)
		slow.mu.Lock()
		defer slow.mu.Unlock()
		wantContains(t, "stderr", r.stderr,
			"Registry "+dst.Host()+" asked to wait 2s before retrying (429 on PUT "+slow.path+"): waiting 2s\n")
		if slow.againAt.IsZero() {
			t.Fatalf("the refused upload of %s was not sent again", slow.refused)
		}
		if gap := slow.againAt.Sub(slow.refusedAt); gap < 1500*time.Millisecond {
			t.Errorf("the upload came again %s after the 429 that asked for 2s", gap)
		}
		for tag, d := range sample.Tags["demo/frontend"] {
			wantTag(t, dst, "demo/frontend", tag, d)
		}
	})
	t.Run("cut to --max-retry-wait", func(t *testing.T) {
		slow := &slowDownOnce{after: "3600"}
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(slow.wrap))
		r := regvault(t, "", "restore", "--plain-http", "--no-tty", "--max-retry-wait", "1s", "-i", in, ref(dst, "demo/frontend"))
		r.wantCode(t, exitOK)
		slow.mu.Lock()
		defer slow.mu.Unlock()
		wantContains(t, "stderr", r.stderr,
			"Registry "+dst.Host()+" asked to wait 1h0m0s before retrying (429 on PUT "+slow.path+"): waiting 1s, the most --max-retry-wait allows\n")
		for tag, d := range sample.Tags["demo/frontend"] {
			wantTag(t, dst, "demo/frontend", tag, d)
		}
	})
}
