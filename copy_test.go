package regvault_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
)

// authSeen records the Authorization headers a registry received.
type authSeen struct {
	mu   sync.Mutex
	seen []string
}

func (a *authSeen) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := r.Header.Get("Authorization"); h != "" {
			a.mu.Lock()
			a.seen = append(a.seen, h)
			a.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

func (a *authSeen) has(user, password string) (own, any bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	for _, h := range a.seen {
		if h == basic {
			own = true
		}
		if strings.Contains(h, user) || strings.Contains(h, password) {
			any = true
		}
		if strings.HasPrefix(h, "Basic ") {
			b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
			if strings.Contains(string(b), user) || strings.Contains(string(b), password) {
				any = true
			}
		}
	}
	return own, any
}

// requireSameContent checks that every tag of the sample's repositories
// has the same digest and media type in dst under prefix, and that every
// referrer of the sample is discoverable there.
func requireSameContent(t *testing.T, src, dst *registrytest.Server, sample registrytest.Sample, prefix string) {
	t.Helper()
	ctx := context.Background()
	for repo, tags := range sample.Tags {
		r := registrytest.Repo(t, dst, prefix+repo)
		for tag, want := range tags {
			got, err := r.Resolve(ctx, tag)
			if err != nil {
				t.Fatalf("%s:%s in the target: %v", prefix+repo, tag, err)
			}
			if got.Digest != want.Digest || got.MediaType != want.MediaType {
				t.Errorf("%s:%s: %s %s, want %s %s", prefix+repo, tag, got.MediaType, got.Digest, want.MediaType, want.Digest)
			}
		}
		for _, ref := range sample.Referrers[repo] {
			refs, err := registry.ListReferrers(ctx, r, ref.Subject)
			if err != nil {
				t.Fatalf("referrers of %s in %s: %v", ref.Subject.Digest, prefix+repo, err)
			}
			if !slices.ContainsFunc(refs, func(d ocispec.Descriptor) bool { return d.Digest == ref.Descriptor.Digest }) {
				t.Errorf("referrer %s of %s not discoverable in %s (found %d)", ref.Descriptor.Digest, ref.Subject.Digest, prefix+repo, len(refs))
			}
		}
	}
}

// Each end gets its own credentials only: the source's user and password
// never reach the target and the target's never reach the source, with
// htpasswd on both ends (in-process and distribution, both directions)
// and with one Docker config holding both hosts.
func TestCopyCredentialsPerEnd(t *testing.T) {
	const srcUser, srcPass, dstUser, dstPass = "alice", "src-secret-1", "bob", "dst-secret-2"
	type ends struct{ src, dst *registrytest.Server }
	var srcSeen, dstSeen authSeen
	start := map[string]func(t *testing.T) ends{
		"inprocess to distribution": func(t *testing.T) ends {
			return ends{
				registrytest.NewInProcess(t, registrytest.WithBasicAuth(map[string]string{srcUser: srcPass}), registrytest.WithHandler(srcSeen.wrap)),
				registrytest.NewDistribution(t, registrytest.DistConfig{Htpasswd: map[string]string{dstUser: dstPass}, Handler: dstSeen.wrap}),
			}
		},
		"distribution to inprocess": func(t *testing.T) ends {
			return ends{
				registrytest.NewDistribution(t, registrytest.DistConfig{Htpasswd: map[string]string{srcUser: srcPass}, Handler: srcSeen.wrap}),
				registrytest.NewInProcess(t, registrytest.WithBasicAuth(map[string]string{dstUser: dstPass}), registrytest.WithHandler(dstSeen.wrap)),
			}
		},
	}
	for name, f := range start {
		for _, how := range []string{"flags", "docker config"} {
			t.Run(name+" "+how, func(t *testing.T) {
				srcSeen, dstSeen = authSeen{}, authSeen{}
				e := f(t)
				_, err := registrytest.SeedSample(context.Background(), e.src.Target(), registrytest.SampleOptions{})
				if err != nil {
					t.Fatal(err)
				}
				srcSeen, dstSeen = authSeen{}, authSeen{}
				from := registry.Options{PlainHTTP: true, Username: srcUser, Password: srcPass}
				to := registry.Options{PlainHTTP: true, Username: dstUser, Password: dstPass}
				if how == "docker config" {
					cfg := filepath.Join(t.TempDir(), "config.json")
					enc := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
					b, _ := json.Marshal(map[string]any{"auths": map[string]any{
						e.src.Host(): map[string]string{"auth": enc(srcUser, srcPass)},
						e.dst.Host(): map[string]string{"auth": enc(dstUser, dstPass)},
					}})
					if err := os.WriteFile(cfg, b, 0o600); err != nil {
						t.Fatal(err)
					}
					from = registry.Options{PlainHTTP: true, RegistryConfig: cfg}
					to = registry.Options{PlainHTTP: true, RegistryConfig: cfg}
				}
				report, err := regvault.Copy(context.Background(), regvault.CopyOptions{
					Sources:          []string{e.src.Host() + "/demo/backend", e.src.Host() + "/library/base"},
					Targets:          []string{e.dst.Host() + "/m"},
					IncludeReferrers: true,
					From:             from,
					To:               to,
				})
				if err != nil {
					t.Fatalf("copy: %v", err)
				}
				if msg := fmt.Sprintf("%+v %v", report.Repositories, err); strings.Contains(msg, srcPass) || strings.Contains(msg, dstPass) {
					t.Errorf("a password in the report: %s", msg)
				}
				if own, _ := srcSeen.has(srcUser, srcPass); !own {
					t.Errorf("the source never got its credentials")
				}
				if own, _ := dstSeen.has(dstUser, dstPass); !own {
					t.Errorf("the target never got its credentials")
				}
				if _, leaked := srcSeen.has(dstUser, dstPass); leaked {
					t.Errorf("the target's credentials were sent to the source")
				}
				if _, leaked := dstSeen.has(srcUser, srcPass); leaked {
					t.Errorf("the source's credentials were sent to the target")
				}
				registrytest.Repo(t, e.dst, "m/demo/backend") // the helper authenticates as the target's user
			})
		}
	}
}

// corrupt serves wrong bytes for every GET whose path ends in suffix.
func corrupt(suffix *atomic.Pointer[string]) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s := suffix.Load(); s != nil && r.Method == http.MethodGet && (strings.HasSuffix(r.URL.Path, *s) || strings.HasSuffix(*s, "/") && strings.Contains(r.URL.Path, *s)) {
				next.ServeHTTP(&registrytest.FlipWriter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// A source that serves wrong bytes for a blob or a manifest fails the
// repository that needs it; the target never gets the wrong bytes, nor
// the tag; the other repositories are copied.
func TestCopySourceServesWrongBytes(t *testing.T) {
	for _, what := range []string{"layer", "manifest"} {
		t.Run(what, func(t *testing.T) {
			var suffix atomic.Pointer[string]
			src := registrytest.NewInProcess(t, registrytest.WithHandler(corrupt(&suffix)))
			var wrong atomic.Pointer[[]byte] // the victim's bytes as the source serves them
			var received atomic.Int64        // whole request bodies of those bytes
			dst := registrytest.NewInProcess(t, registrytest.WithHandler(func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodPut && r.Method != http.MethodPatch {
						next.ServeHTTP(w, r)
						return
					}
					body, err := io.ReadAll(r.Body)
					if w := wrong.Load(); err == nil && w != nil && bytes.Equal(body, *w) {
						received.Add(1)
					}
					r.Body = io.NopCloser(bytes.NewReader(body))
					next.ServeHTTP(w, r)
				})
			}))
			sample, err := registrytest.SeedSample(context.Background(), src.Target(), registrytest.SampleOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// demo/frontend's v1: its own (not shared) layer, or its manifest.
			v1 := sample.Tags["demo/frontend"]["v1"]
			var victim ocispec.Descriptor
			if what == "manifest" {
				victim = v1
			} else {
				for _, d := range sample.Content["demo/frontend"] {
					if d.Digest != sample.BaseLayer.Digest && strings.Contains(d.MediaType, "layer") {
						victim = d
						break
					}
				}
			}
			s := "/" + victim.Digest.String()
			if what == "manifest" {
				// by digest or by tag: whichever the copy fetches
				s = "/demo/frontend/manifests/"
			}
			good, err := content.FetchAll(context.Background(), registrytest.Repo(t, src, "demo/frontend"), victim)
			if err != nil {
				t.Fatal(err)
			}
			bad := append([]byte(nil), good...)
			bad[0] ^= 0xff
			wrong.Store(&bad)
			suffix.Store(&s)
			failFast := false
			report, err := regvault.Copy(context.Background(), regvault.CopyOptions{
				Sources:  []string{src.Host() + "/demo/frontend", src.Host() + "/demo/backend"},
				Targets:  []string{dst.Host() + "/m"},
				FailFast: &failFast,
				From:     registry.Options{PlainHTTP: true},
				To:       registry.Options{PlainHTTP: true},
			})
			// A wrong layer fails the target repository that needs it; a
			// wrong manifest is found where the copy resolves the source's
			// tags (one GET each, verified), so the source repository is
			// the one that could not be read, left out whole.
			want := "m/demo/frontend"
			if what == "manifest" {
				want = "demo/frontend"
			}
			var re *regvault.RepositoryError
			if !errors.As(err, &re) || re.Repository.Path != want {
				t.Fatalf("error %v: want the RepositoryError of %s", err, want)
			}
			if report == nil {
				t.Fatal("no report")
			}
			if n := received.Load(); n != 0 {
				t.Errorf("the target received the whole wrong %s %d time(s)", victim.Digest, n)
			}
			ctx := context.Background()
			fr := registrytest.Repo(t, dst, "m/demo/frontend")
			if what == "manifest" {
				if _, err := fr.Resolve(ctx, "v1"); err == nil {
					t.Errorf("m/demo/frontend:v1 was tagged from a corrupt manifest")
				}
			}
			if d, err := fr.Blobs().Resolve(ctx, victim.Digest.String()); err == nil {
				t.Errorf("the target has %s (%d bytes)", victim.Digest, d.Size)
			}
			if d, err := fr.Manifests().Resolve(ctx, victim.Digest.String()); err == nil {
				t.Errorf("the target has manifest %s (%d bytes)", victim.Digest, d.Size)
			}
			requireSameContent(t, src, dst, registrytest.Sample{Tags: map[string]map[string]ocispec.Descriptor{"demo/backend": sample.Tags["demo/backend"]}}, "m/")
		})
	}
}

// Between a tag-schema registry (distribution) and a Referrers-API
// registry (in-process), both ways, every tag keeps its digest and media
// type (Docker manifest lists and images, OCI indexes) and every
// referrer, nested ones too, is discoverable in the target.
func TestCopyBetweenReferrersSchemas(t *testing.T) {
	for _, dir := range []string{"distribution to inprocess", "inprocess to distribution"} {
		t.Run(dir, func(t *testing.T) {
			dist := registrytest.NewDistribution(t, registrytest.DistConfig{})
			inp := registrytest.NewInProcess(t)
			src, dst := dist, inp
			if dir == "inprocess to distribution" {
				src, dst = inp, dist
			}
			sample, err := registrytest.SeedSample(context.Background(), src.Target(), registrytest.SampleOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var sources []string
			for _, r := range sample.Repositories {
				sources = append(sources, src.Host()+"/"+r)
			}
			_, err = regvault.Copy(context.Background(), regvault.CopyOptions{
				Sources:          sources,
				Targets:          []string{dst.Host() + "/m"},
				IncludeReferrers: true,
				From:             registry.Options{PlainHTTP: true},
				To:               registry.Options{PlainHTTP: true},
			})
			if err != nil {
				t.Fatalf("copy: %v", err)
			}
			requireSameContent(t, src, dst, sample, "m/")
		})
	}
}

// A dry run pushes nothing: the target sees no POST, PUT, PATCH or DELETE.
func TestCopyDryRunWritesNothing(t *testing.T) {
	src, sample := startSample(t)
	dst := registrytest.NewInProcess(t)
	var sources []string
	for _, r := range sample.Repositories {
		sources = append(sources, src.Host()+"/"+r)
	}
	src.ResetStats()
	report, err := regvault.Copy(context.Background(), regvault.CopyOptions{
		Sources:          sources,
		Targets:          []string{dst.Host() + "/m"},
		IncludeReferrers: true,
		DryRun:           true,
		From:             registry.Options{PlainHTTP: true},
		To:               registry.Options{PlainHTTP: true},
	})
	if err != nil || report == nil || !report.DryRun {
		t.Fatalf("dry run: %v %+v", err, report)
	}
	for _, s := range []registrytest.Stats{dst.Stats(), src.Stats()} {
		if n := s.ByMethod("PUT") + s.ByMethod("POST") + s.ByMethod("PATCH") + s.ByMethod("DELETE"); n != 0 {
			t.Errorf("a dry run made %d writes: %v", n, s.Requests)
		}
	}
}

// blobPuts records the completed blob uploads (PUT answered 201) a
// registry received, by digest, and cancels a context after the first n
// of them.
type blobPuts struct {
	mu     sync.Mutex
	put    []string
	after  int
	cancel context.CancelFunc
}

func (b *blobPuts) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &registrytest.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && sw.Status == http.StatusCreated {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.put = append(b.put, r.URL.Query().Get("digest"))
			if b.cancel != nil && len(b.put) == b.after {
				b.cancel()
			}
		}
	})
}

func (b *blobPuts) uploads() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.put)
}

// A copy cancelled half-way ends with the context's error, and a re-run
// completes it, uploading no large blob that the cancelled run had
// already uploaded (small ones into a repository that has no tag yet may
// go again: sink/registry.go's headAlways). No goroutine of the copy
// outlives it.
func TestCopyInterruptedThenRerun(t *testing.T) {
	func() {
		start := func(opts ...registrytest.Option) *registrytest.Server {
			s, err := registrytest.StartInProcess(opts...)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		src := start()
		defer src.Close()
		ctx := context.Background()
		sample, err := registrytest.SeedSample(ctx, src.Target(), registrytest.SampleOptions{})
		if err != nil {
			t.Fatal(err)
		}
		layers := [][]byte{registrytest.Bytes("big-1", 3<<20), registrytest.Bytes("big-2", 2<<20), registrytest.Bytes("big-3", 3<<19)}
		big, err := registrytest.PushImage(ctx, registrytest.Repo(t, src, "big/app"), "1", layers...)
		if err != nil {
			t.Fatal(err)
		}
		sample.Tags["big/app"] = map[string]ocispec.Descriptor{"1": big}
		sources := []string{src.Host() + "/big/app"}
		for _, r := range sample.Repositories {
			sources = append(sources, src.Host()+"/"+r)
		}
		copyTo := func(ctx context.Context, dst *registrytest.Server) (*regvault.Report, error) {
			return regvault.Copy(ctx, regvault.CopyOptions{
				Sources:          sources,
				Targets:          []string{dst.Host() + "/m"},
				IncludeReferrers: true,
				Concurrency:      2,
				From:             registry.Options{PlainHTTP: true},
				To:               registry.Options{PlainHTTP: true},
			})
		}
		var fresh blobPuts
		dst0 := start(registrytest.WithHandler(fresh.wrap))
		defer dst0.Close()
		if _, err := copyTo(ctx, dst0); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cut := blobPuts{after: 1, cancel: cancel}
		dst := start(registrytest.WithHandler(cut.wrap))
		defer dst.Close()
		_, err = copyTo(cctx, dst)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled copy: %v, want context.Canceled", err)
		}
		first := cut.uploads()
		if len(first) >= len(fresh.uploads()) {
			t.Fatalf("the cancelled run uploaded %d of %d blobs: not interrupted", len(first), len(fresh.uploads()))
		}
		if _, err := copyTo(ctx, dst); err != nil {
			t.Fatalf("re-run: %v", err)
		}
		again := cut.uploads()[len(first):]
		large := map[string]bool{}
		for _, l := range layers {
			large[digest.FromBytes(l).String()] = true
		}
		if !slices.ContainsFunc(first, func(d string) bool { return large[d] }) {
			t.Fatalf("the cancelled run uploaded no large blob: %v", first)
		}
		for _, d := range first {
			if large[d] && slices.Contains(again, d) {
				t.Errorf("the re-run uploaded %s again", d)
			}
		}
		requireSameContent(t, src, dst, sample, "m/")
	}()
	// Only the copy's own goroutines are counted: other tests' and the
	// HTTP transport's idle connections are not its to end.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := copyGoroutines()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the copy left after it returned:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyGoroutines are the stacks of the running goroutines that are in
// regvault's code (not its tests, not the test registries).
func copyGoroutines() []string {
	buf := make([]byte, 4<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "github.com/regvault/regvault") && !strings.Contains(g, "_test.go") &&
			!strings.Contains(g, "internal/registrytest") {
			out = append(out, g)
		}
	}
	return out
}
