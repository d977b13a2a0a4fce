package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regvault/regvault/internal/registrytest"
)

// rejectUploads answers 400 to every blob upload's closing PUT, the
// request whose URL carries the upload's `_state` token, and records the
// tokens it saw. In front of a registry that does not hand out such a
// token (the in-process one), it adds one to the upload URL, as the
// distribution registry does.
func rejectUploads(mu *sync.Mutex, states *[]string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				if loc := rec.Header().Get("Location"); loc != "" && !strings.Contains(loc, "_state=") {
					u, err := url.Parse(loc)
					if err == nil {
						q := u.Query()
						q.Set("_state", fmt.Sprintf("c3RhdGUtdG9rZW4tc2VjcmV0-%d", time.Now().UnixNano()))
						u.RawQuery = q.Encode()
						rec.Header().Set("Location", u.String())
					}
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
				if st := r.URL.Query().Get("_state"); st != "" {
					mu.Lock()
					*states = append(*states, st)
					mu.Unlock()
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"injected: upload refused"}]}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// An upload that fails names its URL in the error; the URL's `_state`
// token (it lets its holder write to the upload) is masked there as in
// --debug lines, in text and JSON output.
func TestUploadStateMaskedReliability(t *testing.T) {
	_, _, in := sampleBackup(t)
	t.Run("in-process", func(t *testing.T) {
		var mu sync.Mutex
		var states []string
		dst := registrytest.NewInProcess(t, registrytest.WithHandler(rejectUploads(&mu, &states)))
		wantUploadStateMasked(t, in, dst, &mu, &states)
	})
	t.Run("distribution", func(t *testing.T) {
		var mu sync.Mutex
		var states []string
		dst := registrytest.NewDistribution(t, registrytest.DistConfig{Handler: rejectUploads(&mu, &states)})
		wantUploadStateMasked(t, in, dst, &mu, &states)
	})
}

func wantUploadStateMasked(t *testing.T, in string, dst *registrytest.Server, mu *sync.Mutex, states *[]string) {
	for _, args := range [][]string{
		{"restore", "--plain-http", "--no-tty", "-i", in, ref(dst, "demo/frontend")},
		{"restore", "--plain-http", "--no-tty", "--format", "json", "-i", in, ref(dst, "demo/frontend")},
		{"-d", "restore", "--plain-http", "--no-tty", "-i", in, ref(dst, "demo/frontend")},
	} {
		r := regvault(t, "", args...)
		r.wantCode(t, exitFailure)
		out := r.stdout + r.stderr
		// The error names the upload URL, with its token masked.
		wantContains(t, "output", out, "uploading ", "/blobs/uploads/", "_state=***", "response status code 400")
		mu.Lock()
		seen := append([]string(nil), *states...)
		mu.Unlock()
		if len(seen) == 0 {
			t.Fatal("no upload with a _state token reached the registry")
		}
		for _, st := range seen {
			wantNotContains(t, "output", out, st)
			if len(st) > 24 {
				wantNotContains(t, "output", out, st[:24])
			}
		}
	}
}
