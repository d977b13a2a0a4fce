package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/registrytest"
)

// Through a proxy that cuts 5% of answers half-way through their body
// (and the first answer of every kind: manifests by tag and by digest,
// indexes, tags/list pages, Referrers API answers, tag-schema referrers
// indexes, blobs) and answers 10% with 503, a backup with referrers is
// byte-identical to a fault-free one, with the Referrers API and with the
// tag schema.
func TestMidBodyResetsReliability(t *testing.T) {
	check := func(t *testing.T, s *registrytest.Server, stats *registrytest.BodyFaultStats, repos []string, kinds ...string) {
		dir := t.TempDir()
		refs := make([]string, len(repos))
		for i, r := range repos {
			refs[i] = ref(s, r)
		}
		args := []string{"backup", "--plain-http", "--no-tty", "--include-referrers"}
		clean := filepath.Join(dir, "clean.tar")
		regvault(t, "", append(append(args, "-o", clean), refs...)...).wantCode(t, 0)
		stats.On.Store(true)
		flaky := filepath.Join(dir, "flaky.tar")
		r := regvault(t, "", append(append(args, "-o", flaky), refs...)...)
		stats.On.Store(false)
		r.wantCode(t, 0)
		cuts := stats.Cuts()
		t.Logf("cut answers by kind: %v; 503 answers: %d", cuts, stats.Unavailable.Load())
		for _, k := range kinds {
			if cuts[k] == 0 {
				t.Errorf("no %s answer was cut: the test does not cover it", k)
			}
		}
		a, err := os.ReadFile(clean)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(flaky)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("the backup through the faults (%s) differs from the fault-free one (%s)", digest.FromBytes(b), digest.FromBytes(a))
		}
	}
	t.Run("Referrers API", func(t *testing.T) {
		t.Parallel()
		var stats registrytest.BodyFaultStats
		s, sample := sampleRegistry(t, registrytest.WithTagPageSize(1),
			registrytest.WithHandler(registrytest.BodyFaults(0.05, 0.10, true, 7, &stats)))
		check(t, s, &stats, sample.Repositories, "manifest", "manifest by digest", "tags", "referrers", "blob")
	})
	t.Run("tag schema", func(t *testing.T) {
		t.Parallel()
		var stats registrytest.BodyFaultStats
		s, sample := sampleRegistry(t, registrytest.WithTagPageSize(1), registrytest.WithReferrersAPI(false),
			registrytest.WithHandler(registrytest.BodyFaults(0.05, 0.10, true, 8, &stats)))
		check(t, s, &stats, sample.Repositories, "manifest", "manifest by digest", "tags", "referrers index", "blob")
	})
	t.Run("distribution, tag schema", func(t *testing.T) {
		t.Parallel()
		var stats registrytest.BodyFaultStats
		s := registrytest.NewDistribution(t, registrytest.DistConfig{MaxTags: 1, Handler: registrytest.BodyFaults(0.05, 0.10, true, 9, &stats)})
		sample := registrytest.Seed(t, s, registrytest.SampleOptions{})
		check(t, s, &stats, sample.Repositories, "manifest", "manifest by digest", "tags", "referrers index", "blob")
	})
}

// allocated runs f and returns the bytes the process allocated meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A hostile registry whose manifest answer by tag claims a huge size (or
// sends no size and never ends) gets an error naming the 4 MiB limit, and
// regvault's memory stays bounded: it reads at most the limit.
func TestHugeManifestAnswerReliability(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length string // Content-Length; "" sends a chunked body
	}{
		{"Content-Length 1000000000000", "1000000000000"},
		{"Content-Length 64 MiB", fmt.Sprint(64 << 20)},
		{"no Content-Length, endless", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			s := registrytest.NewInProcess(t, registrytest.WithHandler(func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !strings.HasPrefix(r.URL.Path, "/v2/hostile/app/manifests/") {
						next.ServeHTTP(w, r)
						return
					}
					w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
					w.Header().Set("Docker-Content-Digest", digest.FromString("hostile").String())
					if tc.length != "" {
						w.Header().Set("Content-Length", tc.length)
					}
					w.WriteHeader(http.StatusOK)
					if r.Method == http.MethodHead {
						return
					}
					// A slow body of spaces (valid JSON whitespace), up to
					// 256 MiB at most, until the client goes away.
					chunk := bytes.Repeat([]byte(" "), 64<<10)
					for sent.Load() < 256<<20 {
						if _, err := w.Write(chunk); err != nil {
							return
						}
						sent.Add(int64(len(chunk)))
						http.NewResponseController(w).Flush()
						select {
						case <-r.Context().Done():
							return
						case <-time.After(time.Millisecond):
						}
					}
				})
			}))
			var r result
			used := allocated(func() {
				r = regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", filepath.Join(t.TempDir(), "b.tar"), ref(s, "hostile/app")+":v1")
			})
			r.wantCode(t, exitFailure)
			wantContains(t, "stderr", r.stderr, "hostile/app:v1", "larger than the 4 MiB (4194304 bytes) limit for a manifest")
			t.Logf("the server sent %d bytes; the run allocated %d bytes", sent.Load(), used)
			if used > 32<<20 {
				t.Errorf("the run allocated %d MiB for one manifest: not bounded by the limit", used>>20)
			}
		})
	}
}

// bigManifestHandler serves, for repository repo, one tag v1 whose image
// manifest (config and layer in the registry) is padded to size bytes with
// an annotation: registries refuse such a push, a hostile or old one may
// still hold it.
func bigManifestHandler(repo string, manifest *atomic.Pointer[[]byte]) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m := manifest.Load()
			p := "/v2/" + repo + "/manifests/"
			if m == nil || !strings.HasPrefix(r.URL.Path, p) || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
				next.ServeHTTP(w, r)
				return
			}
			d := digest.FromBytes(*m)
			if ref := strings.TrimPrefix(r.URL.Path, p); ref != "v1" && ref != d.String() {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
			w.Header().Set("Docker-Content-Digest", d.String())
			w.Header().Set("Content-Length", fmt.Sprint(len(*m)))
			if r.Method == http.MethodGet {
				_, _ = w.Write(*m)
			}
		})
	}
}

// paddedManifest is an image manifest of exactly size bytes.
func paddedManifest(t *testing.T, config, layer ocispec.Descriptor, size int) []byte {
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: config, Layers: []ocispec.Descriptor{layer}, Annotations: map[string]string{"pad": ""}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m.Annotations["pad"] = strings.Repeat("x", size-len(b))
	if b, err = json.Marshal(m); err != nil || len(b) != size {
		t.Fatalf("padded manifest of %d bytes, want %d (%v)", len(b), size, err)
	}
	return b
}

// Backup, verify and restore agree on one manifest limit: a manifest of
// exactly 4 MiB goes through all three; one byte more fails that
// repository at backup time (exit 3, the others written), naming the
// limit, and the backup verifies.
func TestManifestLimitAgreesReliability(t *testing.T) {
	var big atomic.Pointer[[]byte]
	s, _ := sampleRegistry(t, registrytest.WithHandler(bigManifestHandler("big/app", &big)))
	ctx := context.Background()
	repo := registrytest.Repo(t, s, "big/app")
	config, err := registrytest.PushBlob(ctx, repo, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := registrytest.PushBlob(ctx, repo, ocispec.MediaTypeImageLayer, []byte("a layer"))
	if err != nil {
		t.Fatal(err)
	}
	// tags/list of big/app needs a tag the registry itself holds.
	if _, err := registrytest.PushImage(ctx, repo, "small", []byte("small layer")); err != nil {
		t.Fatal(err)
	}

	t.Run("at the limit", func(t *testing.T) {
		m := paddedManifest(t, config, layer, archive.MaxManifestSize)
		big.Store(&m)
		out := filepath.Join(t.TempDir(), "b.tar")
		regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", out, ref(s, "big/app")+":v1", ref(s, "demo/frontend")).wantCode(t, 0)
		regvault(t, "", "verify", "--input", out).wantCode(t, 0)
		dst := registrytest.NewInProcess(t)
		regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", out, dst.Host()).wantCode(t, 0)
		wantTag(t, dst, "big/app", "v1", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))})
	})
	t.Run("one byte more", func(t *testing.T) {
		m := paddedManifest(t, config, layer, archive.MaxManifestSize+1)
		big.Store(&m)
		out := filepath.Join(t.TempDir(), "b.tar")
		r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", out, ref(s, "big/app")+":v1", ref(s, "demo/frontend"))
		r.wantCode(t, exitPartial)
		wantContains(t, "stderr", r.stderr, "Error: Failed to backup "+s.Host()+"/big/app",
			"manifest "+s.Host()+"/big/app:v1 is 4194305 bytes, larger than the 4 MiB (4194304 bytes) limit for a manifest",
			"  ✗ "+s.Host()+"/big/app (larger than the 4 MiB limit)", "refused at backup time")
		tags := layoutTags(t, out)
		sort.Strings(tags)
		if want := s.Host() + "/demo/frontend:v1 " + s.Host() + "/demo/frontend:v2"; strings.Join(tags, " ") != want {
			t.Errorf("tags %v, want %s", tags, want)
		}
		regvault(t, "", "verify", "--input", out).wantCode(t, 0)
	})
}

// stallHandler answers the first GET of each path that match says with
// half of its body, then stalls until the client gives up (counted in
// gaveUp) or 30 s pass (then it ends the answer short).
func stallHandler(match func(*http.Request) bool, stalled, gaveUp *atomic.Int64) func(http.Handler) http.Handler {
	seen := map[string]bool{}
	var mu = make(chan struct{}, 1)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu <- struct{}{}
			first := r.Method == http.MethodGet && r.Header.Get("Range") == "" && match(r) && !seen[r.URL.Path]
			if first {
				seen[r.URL.Path] = true
			}
			<-mu
			if !first {
				next.ServeHTTP(w, r)
				return
			}
			stalled.Add(1)
			next.ServeHTTP(&stallWriter{ResponseWriter: w, r: r, gaveUp: gaveUp}, r)
		})
	}
}

type stallWriter struct {
	http.ResponseWriter
	r       *http.Request
	gaveUp  *atomic.Int64
	stalled bool
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if s.stalled {
		return 0, http.ErrAbortHandler
	}
	s.stalled = true
	half := len(p) / 2
	n, _ := s.ResponseWriter.Write(p[:half])
	http.NewResponseController(s.ResponseWriter).Flush()
	select {
	case <-s.r.Context().Done():
		s.gaveUp.Add(1)
	case <-time.After(30 * time.Second):
	}
	return n, http.ErrAbortHandler
}

// A registry that stops sending in the middle of a body (a manifest, a
// blob) is given up on after --read-timeout and the request retried (the
// blob resumed), so the backup completes; one that never answers fails
// the run after bounded retries, naming the timeout.
func TestReadTimeoutReliability(t *testing.T) {
	t.Run("stalled bodies", func(t *testing.T) {
		t.Parallel()
		var stalled, gaveUp atomic.Int64
		var base atomic.Value
		base.Store("none")
		s, sample := sampleRegistry(t, registrytest.WithHandler(stallHandler(func(r *http.Request) bool {
			return strings.HasSuffix(r.URL.Path, "/manifests/v1") || strings.HasSuffix(r.URL.Path, "/blobs/"+base.Load().(string))
		}, &stalled, &gaveUp)))
		base.Store(sample.BaseLayer.Digest.String())
		out := filepath.Join(t.TempDir(), "b.tar")
		r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--read-timeout", "1s", "-o", out, ref(s, "demo/frontend"), ref(s, "demo/backend"))
		r.wantCode(t, 0)
		regvault(t, "", "verify", "--input", out).wantCode(t, 0)
		if stalled.Load() < 3 || gaveUp.Load() != stalled.Load() {
			t.Errorf("%d answers stalled, regvault gave up on %d", stalled.Load(), gaveUp.Load())
		}
	})
	t.Run("no answer", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var accepted atomic.Int64
		done := make(chan struct{})
		t.Cleanup(func() { close(done); l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				go func() { <-done; c.Close() }() // read nothing, answer nothing
			}
		}()
		host := l.Addr().String()
		finished := make(chan result, 1)
		go func() {
			finished <- regvault(t, "", "backup", "--plain-http", "--no-tty", "--read-timeout", "1s", "-o", filepath.Join(t.TempDir(), "b.tar"), host+"/silent/app:v1")
		}()
		var r result
		select {
		case r = <-finished:
		case <-time.After(3 * time.Minute):
			t.Fatal("the backup from a registry that never answers did not end")
		}
		r.wantCode(t, exitFailure)
		wantContains(t, "stderr", r.stderr, "silent/app", "no byte of the answer for 1s (--read-timeout)",
			"  ✗ "+host+"/silent/app (the registry stopped sending)", "give a slow registry more time with --read-timeout")
		if accepted.Load() < 2 {
			t.Errorf("%d connection(s): the request was not retried", accepted.Load())
		}
	})
	t.Run("flag", func(t *testing.T) {
		r := regvault(t, "", "backup", "--plain-http", "--read-timeout", "0s", "-o", filepath.Join(t.TempDir(), "b.tar"), "127.0.0.1:1/x")
		r.wantCode(t, exitUsage)
		wantContains(t, "stderr", r.stderr, "--read-timeout 0s: give a duration above zero")
		for _, cmd := range [][]string{{"backup"}, {"restore"}, {"login"}} {
			h := regvault(t, "", append(cmd, "--help")...)
			wantContains(t, strings.Join(cmd, " ")+" --help", h.stdout, "--read-timeout duration", "(default 1m0s)")
		}
		wantContains(t, "backup --help", regvault(t, "", "backup", "--help").stdout, "4 MiB", "--read-timeout")
		wantContains(t, "verify --help", regvault(t, "", "verify", "--help").stdout, "4 MiB")
	})
}
