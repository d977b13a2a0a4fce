package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/registrytest"
)

// syncBuffer is a bytes.Buffer safe for a server goroutine and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// served is a `regvault serve` running in-process.
type served struct {
	addr           string
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan error
	once           sync.Once
	err            error // how the command ended, once it has
}

// wait returns how the command ended, waiting for it.
func (s *served) wait() error {
	s.once.Do(func() { s.err = <-s.done })
	return s.err
}

// stop sends the server what SIGINT sends it (its context ends) and
// returns how the command ended.
func (s *served) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	ended := make(chan error, 1)
	go func() { ended <- s.wait() }()
	select {
	case err := <-ended:
		return err
	case <-time.After(time.Minute): // a hang, not a timing
		t.Fatal("regvault serve did not stop within a minute of its context ending")
		return nil
	}
}

var startupAddr = regexp.MustCompile(`at https?://([0-9.]+:[0-9]+)|"address":"([0-9.]+:[0-9]+)"`)

// startServe runs `regvault serve --listen 127.0.0.1:0 args...` until the
// test ends, and waits for its startup line.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	s := &served{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	c := &cli{stdin: strings.NewReader(""), stdout: s.stdout, stderr: s.stderr}
	root := c.rootCommand()
	root.SetArgs(append([]string{"serve", "--listen", "127.0.0.1:0"}, args...))
	root.SetOut(s.stdout)
	root.SetErr(s.stderr)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- root.ExecuteContext(ctx) }()
	deadline := time.After(time.Minute)
	for {
		if m := startupAddr.FindStringSubmatch(s.stdout.String()); m != nil {
			s.addr = m[1] + m[2]
			break
		}
		select {
		case err := <-s.done:
			s.once.Do(func() { s.err = err })
			t.Fatalf("regvault serve %s ended before serving: %v\n[stdout]\n%s[stderr]\n%s", strings.Join(args, " "), err, s.stdout, s.stderr)
		case <-deadline:
			t.Fatalf("regvault serve printed no startup line in a minute\n[stdout]\n%s[stderr]\n%s", s.stdout, s.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Cleanup(func() {
		cancel()
		_ = s.wait()
		t.Logf("regvault serve\n[stdout]\n%s[stderr]\n%s", s.stdout, truncate(s.stderr.String()))
	})
	return s
}

// servedBackup backs up the whole sample (with referrers) into a file or
// directory named name, and returns its path.
func servedBackup(t *testing.T, s *registrytest.Server, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	regvault(t, "", "backup", "--plain-http", "--include-referrers", "--output", out,
		ref(s, registrytest.SampleBase), ref(s, registrytest.SampleBackend), ref(s, registrytest.SampleFrontend)).wantCode(t, exitOK)
	return out
}

func servedRepo(t *testing.T, addr, name string) *remote.Repository {
	t.Helper()
	r, err := remote.NewRepository(addr + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	r.PlainHTTP = true
	return r
}

// httpDo makes one request and returns the response with its body read.
func httpDo(t *testing.T, method, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, body
}

// wantAPIError checks a distribution-spec error answer.
func wantAPIError(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if resp.StatusCode != status || json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != code {
		t.Errorf("%s: got %d %s, want %d with error code %s", what, resp.StatusCode, body, status, code)
	}
}

// TestServeSample serves a backup of the sample, as a tar and as a
// directory, and reads every tag, manifest, blob and referrer back with
// oras-go's registry client: what a client sees equals the source.
func TestServeSample(t *testing.T) {
	src, sample := sampleRegistry(t)
	tarPath := servedBackup(t, src, "sample.tar")
	dirPath := filepath.Join(t.TempDir(), "dir")
	regvault(t, "", "backup", "--plain-http", "--include-referrers", "--output", dirPath,
		ref(src, registrytest.SampleBase), ref(src, registrytest.SampleBackend), ref(src, registrytest.SampleFrontend)).wantCode(t, exitOK)
	for _, input := range []string{tarPath, dirPath} {
		t.Run(filepath.Base(input), func(t *testing.T) {
			srv := startServe(t, "--input", input)
			wantContains(t, "stdout", srv.stdout.String(),
				"read-only: 3 repositories, 6 tags\n",
				"  demo/backend ("+src.Host()+"/demo/backend): v1, v2\n",
				"  library/base ("+src.Host()+"/library/base): 1.0, 1.1\n")
			ctx := context.Background()
			reg, err := remote.NewRegistry(srv.addr)
			if err != nil {
				t.Fatal(err)
			}
			reg.PlainHTTP = true
			var names []string
			if err := reg.Repositories(ctx, "", func(r []string) error { names = append(names, r...); return nil }); err != nil {
				t.Fatal(err)
			}
			if want := sample.Repositories; !slices.Equal(names, want) {
				t.Errorf("_catalog: %v, want %v", names, want)
			}
			for _, name := range sample.Repositories {
				repo := servedRepo(t, srv.addr, name)
				var tags []string
				if err := repo.Tags(ctx, "", func(ts []string) error { tags = append(tags, ts...); return nil }); err != nil {
					t.Fatal(err)
				}
				var want []string
				for tag, d := range sample.Tags[name] {
					want = append(want, tag)
					got, err := repo.Resolve(ctx, tag)
					if err != nil {
						t.Fatalf("%s:%s: %v", name, tag, err)
					}
					if got.Digest != d.Digest || got.MediaType != d.MediaType || got.Size != d.Size {
						t.Errorf("%s:%s resolves to %s %s %d, the source's is %s %s %d", name, tag, got.MediaType, got.Digest, got.Size, d.MediaType, d.Digest, d.Size)
					}
				}
				slices.Sort(want)
				if !slices.Equal(tags, want) {
					t.Errorf("%s tags %v, want %v", name, tags, want)
				}
				// Every piece of content pushed to the source: fetched by
				// digest (manifests from manifests/, the rest from
				// blobs/), digest checked by oras-go.
				for _, d := range sample.Content[name] {
					var rc io.ReadCloser
					var err error
					if archive.IsManifest(d.MediaType) {
						rc, err = repo.Manifests().Fetch(ctx, d)
					} else {
						rc, err = repo.Blobs().Fetch(ctx, d)
					}
					if err != nil {
						t.Fatalf("%s@%s (%s): %v", name, d.Digest, d.MediaType, err)
					}
					if _, err := content.ReadAll(rc, d); err != nil {
						t.Errorf("%s@%s: %v", name, d.Digest, err)
					}
					rc.Close()
				}
				for _, rf := range sample.Referrers[name] {
					var got []digest.Digest
					if err := repo.Referrers(ctx, rf.Subject, "", func(rs []ocispec.Descriptor) error {
						for _, r := range rs {
							got = append(got, r.Digest)
						}
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					if !slices.Contains(got, rf.Descriptor.Digest) {
						t.Errorf("%s: referrers of %s: %v, want %s among them", name, rf.Subject.Digest, got, rf.Descriptor.Digest)
					}
				}
			}
			if err := srv.stop(t); err != nil {
				t.Errorf("serve ended with %v after its context ended, want nil (exit 0)", err)
			}
			wantContains(t, "stderr", srv.stderr.String(), "msg=request", "msg=\"shutting down\"")
		})
	}
}

// TestServeAPI checks the answers of the endpoints one by one: headers,
// pagination, Range, errors, writes, Accept negotiation, blobs only
// under a repository that reaches them.
func TestServeAPI(t *testing.T) {
	src, sample := sampleRegistry(t)
	srv := startServe(t, "--input", servedBackup(t, src, "sample.tar"))
	base := "http://" + srv.addr + "/v2/"

	resp, body := httpDo(t, "GET", base, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" || string(body) != "{}" {
		t.Errorf("GET /v2/: %d %q, Docker-Distribution-API-Version %q", resp.StatusCode, body, resp.Header.Get("Docker-Distribution-API-Version"))
	}

	// Manifests: by tag and digest, GET and HEAD, the headers a client reads.
	oci := sample.Tags[registrytest.SampleFrontend]["v1"]
	for _, ref := range []string{"v1", oci.Digest.String()} {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := httpDo(t, method, base+"demo/frontend/manifests/"+ref, map[string]string{"Accept": ocispec.MediaTypeImageManifest + ", " + ocispec.MediaTypeImageIndex})
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != oci.MediaType ||
				resp.Header.Get("Docker-Content-Digest") != oci.Digest.String() || resp.Header.Get("Content-Length") != fmt.Sprint(oci.Size) {
				t.Errorf("%s manifest %s: %d, headers %v", method, ref, resp.StatusCode, resp.Header)
			}
			if method == "GET" && digest.FromBytes(body) != oci.Digest {
				t.Errorf("GET manifest %s: the body is not the manifest", ref)
			}
			if method == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD manifest %s has a body", ref)
			}
		}
	}
	// Accept: as the distribution registry, an OCI manifest is not served
	// to a client that does not accept it; a Docker image always is; a
	// Docker manifest list asked for by tag without accepting it is
	// answered with its linux/amd64 image.
	resp, body = httpDo(t, "GET", base+"demo/frontend/manifests/v1", map[string]string{"Accept": archive.MediaTypeDockerManifest})
	wantAPIError(t, "an OCI manifest to a client that accepts only Docker's", resp, body, 404, "MANIFEST_UNKNOWN")
	list := sample.Tags[registrytest.SampleBase]["1.1"]
	if list.MediaType != archive.MediaTypeDockerManifestList {
		t.Fatalf("library/base:1.1 is %s, the test expects a Docker manifest list", list.MediaType)
	}
	resp, body = httpDo(t, "GET", base+"library/base/manifests/"+list.Digest.String(), map[string]string{"Accept": archive.MediaTypeDockerManifest})
	if resp.StatusCode != 200 || digest.FromBytes(body) != list.Digest {
		t.Errorf("a Docker manifest list by digest: %d, want 200 and the list", resp.StatusCode)
	}
	resp, body = httpDo(t, "GET", base+"library/base/manifests/1.1", map[string]string{"Accept": archive.MediaTypeDockerManifest})
	var img struct{ MediaType string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &img) != nil || img.MediaType != archive.MediaTypeDockerManifest ||
		resp.Header.Get("Docker-Content-Digest") != digest.FromBytes(body).String() {
		t.Errorf("a Docker manifest list by tag to a client without list support: %d %s, want its linux/amd64 Docker image", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// Errors of the spec.
	resp, body = httpDo(t, "GET", base+"no/such/manifests/v1", nil)
	wantAPIError(t, "unknown repository", resp, body, 404, "NAME_UNKNOWN")
	resp, body = httpDo(t, "GET", base+"demo/frontend/manifests/nosuchtag", nil)
	wantAPIError(t, "unknown tag", resp, body, 404, "MANIFEST_UNKNOWN")
	resp, body = httpDo(t, "GET", base+"demo/frontend/blobs/"+digest.FromString("nothing").String(), nil)
	wantAPIError(t, "unknown blob", resp, body, 404, "BLOB_UNKNOWN")
	// A layer of frontend only is not a blob of backend, though the
	// backup holds it.
	var frontendOnly ocispec.Descriptor
	for _, d := range sample.Content[registrytest.SampleFrontend] {
		if !archive.IsManifest(d.MediaType) && !slices.ContainsFunc(sample.Content[registrytest.SampleBackend], func(b ocispec.Descriptor) bool { return b.Digest == d.Digest }) {
			frontendOnly = d
			break
		}
	}
	resp, body = httpDo(t, "GET", base+"demo/backend/blobs/"+frontendOnly.Digest.String(), nil)
	wantAPIError(t, "a blob of another repository", resp, body, 404, "BLOB_UNKNOWN")
	resp, _ = httpDo(t, "GET", base+"demo/frontend/blobs/"+frontendOnly.Digest.String(), nil)
	if resp.StatusCode != 200 {
		t.Errorf("the blob under its own repository: %d", resp.StatusCode)
	}

	// Writes: 405 UNSUPPORTED, never a 500.
	for _, w := range []struct{ method, path string }{
		{"PUT", "demo/frontend/manifests/v3"}, {"DELETE", "demo/frontend/manifests/v1"},
		{"POST", "demo/frontend/blobs/uploads/"}, {"PATCH", "demo/frontend/blobs/uploads/abc"},
		{"PUT", "demo/frontend/blobs/uploads/abc?digest=" + frontendOnly.Digest.String()},
		{"DELETE", "demo/frontend/blobs/" + frontendOnly.Digest.String()}, {"POST", "new/repo/blobs/uploads/"},
	} {
		resp, body := httpDo(t, w.method, base+w.path, nil)
		wantAPIError(t, w.method+" "+w.path, resp, body, 405, "UNSUPPORTED")
	}

	// Blob: HEAD, Range.
	layer := sample.BaseLayer
	resp, body = httpDo(t, "HEAD", base+"demo/frontend/blobs/"+layer.Digest.String(), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != fmt.Sprint(layer.Size) || resp.Header.Get("Docker-Content-Digest") != layer.Digest.String() || len(body) != 0 {
		t.Errorf("HEAD blob: %d %v", resp.StatusCode, resp.Header)
	}
	_, whole := httpDo(t, "GET", base+"demo/frontend/blobs/"+layer.Digest.String(), nil)
	if digest.FromBytes(whole) != layer.Digest {
		t.Fatalf("GET blob: the body is not the blob")
	}
	for _, rg := range []struct {
		header     string
		start, end int64
	}{{"bytes=100-199", 100, 199}, {"bytes=1000-", 1000, layer.Size - 1}, {"bytes=-10", layer.Size - 10, layer.Size - 1}, {"bytes=0-", 0, layer.Size - 1}} {
		resp, body := httpDo(t, "GET", base+"demo/frontend/blobs/"+layer.Digest.String(), map[string]string{"Range": rg.header})
		wantRange := fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.end, layer.Size)
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != wantRange || !bytes.Equal(body, whole[rg.start:rg.end+1]) {
			t.Errorf("Range %s: %d, Content-Range %q (want %q), %d bytes", rg.header, resp.StatusCode, resp.Header.Get("Content-Range"), wantRange, len(body))
		}
	}
	resp, _ = httpDo(t, "GET", base+"demo/frontend/blobs/"+layer.Digest.String(), map[string]string{"Range": fmt.Sprintf("bytes=%d-", layer.Size)})
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", layer.Size) {
		t.Errorf("unsatisfiable Range: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}

	// tags/list and _catalog pagination.
	resp, body = httpDo(t, "GET", base+"demo/frontend/tags/list?n=1", nil)
	if string(body) != `{"name":"demo/frontend","tags":["v1"]}` || resp.Header.Get("Link") != `</v2/demo/frontend/tags/list?n=1&last=v1>; rel="next"` {
		t.Errorf("tags/list?n=1: %s, Link %q", body, resp.Header.Get("Link"))
	}
	resp, body = httpDo(t, "GET", base+"demo/frontend/tags/list?n=1&last=v1", nil)
	if string(body) != `{"name":"demo/frontend","tags":["v2"]}` || resp.Header.Get("Link") != "" {
		t.Errorf("tags/list?n=1&last=v1: %s, Link %q", body, resp.Header.Get("Link"))
	}
	resp, body = httpDo(t, "GET", base+"_catalog?n=2", nil)
	if string(body) != `{"repositories":["demo/backend","demo/frontend"]}` || resp.Header.Get("Link") != `</v2/_catalog?n=2&last=demo%2Ffrontend>; rel="next"` {
		t.Errorf("_catalog?n=2: %s, Link %q", body, resp.Header.Get("Link"))
	}
	_, body = httpDo(t, "GET", base+"_catalog?n=2&last=demo%2Ffrontend", nil)
	if string(body) != `{"repositories":["library/base"]}` {
		t.Errorf("_catalog second page: %s", body)
	}

	// Referrers: with and without an artifactType filter.
	rf := sample.Referrers[registrytest.SampleFrontend][0]
	resp, body = httpDo(t, "GET", base+"demo/frontend/referrers/"+rf.Subject.Digest.String(), nil)
	var idx ocispec.Index
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex || json.Unmarshal(body, &idx) != nil ||
		len(idx.Manifests) != 1 || idx.Manifests[0].Digest != rf.Descriptor.Digest || idx.Manifests[0].ArtifactType != rf.Descriptor.ArtifactType {
		t.Errorf("referrers: %d %s, want %s (%s)", resp.StatusCode, body, rf.Descriptor.Digest, rf.Descriptor.ArtifactType)
	}
	resp, body = httpDo(t, "GET", base+"demo/frontend/referrers/"+rf.Subject.Digest.String()+"?artifactType=application/x-other", nil)
	if resp.StatusCode != 200 || resp.Header.Get("OCI-Filters-Applied") != "artifactType" || json.Unmarshal(body, &idx) != nil || len(idx.Manifests) != 0 {
		t.Errorf("referrers filtered by another type: %d %s, OCI-Filters-Applied %q", resp.StatusCode, body, resp.Header.Get("OCI-Filters-Applied"))
	}
	_, body = httpDo(t, "GET", base+"demo/frontend/referrers/"+rf.Subject.Digest.String()+"?artifactType="+url.QueryEscape(rf.Descriptor.ArtifactType), nil)
	if json.Unmarshal(body, &idx) != nil || len(idx.Manifests) != 1 {
		t.Errorf("referrers filtered by their type: %s", body)
	}
	// The referrers of a subject of another repository are not listed.
	resp, body = httpDo(t, "GET", base+"demo/backend/referrers/"+rf.Subject.Digest.String(), nil)
	if resp.StatusCode != 200 || json.Unmarshal(body, &idx) != nil || len(idx.Manifests) != 0 {
		t.Errorf("referrers of frontend's subject under backend: %d %s, want an empty list", resp.StatusCode, body)
	}
}

// TestServeRefuses: forms that cannot be served, names missing or
// given for nothing, a damaged backup, bad flags: each refused before
// anything is served, saying what to do.
func TestServeRefuses(t *testing.T) {
	src, _ := sampleRegistry(t)
	dir := t.TempDir()
	zst := filepath.Join(dir, "sample.tar.zst")
	regvault(t, "", "backup", "--plain-http", "--output", zst, ref(src, registrytest.SampleFrontend)).wantCode(t, exitOK)
	r := regvault(t, "", "serve", "--input", zst)
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "zstd-compressed tar", "decompress", "regvault verify --input backup.tar")
	r = regvault(t, "", "serve", "--input", "-")
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "standard input cannot be served", "plain .tar")

	// A backup of one repository names its tags alone: --repository.
	one := filepath.Join(dir, "one.tar")
	regvault(t, "", "backup", "--plain-http", "--output", one, ref(src, registrytest.SampleFrontend)).wantCode(t, exitOK)
	r = regvault(t, "", "serve", "--input", one)
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "names its tags without a repository (v1, v2)", "--repository")
	srv := startServe(t, "--input", one, "--repository", "team/app")
	wantContains(t, "stdout", srv.stdout.String(), "  team/app: v1, v2\n")
	if _, body := httpDo(t, "GET", "http://"+srv.addr+"/v2/team/app/tags/list", nil); string(body) != `{"name":"team/app","tags":["v1","v2"]}` {
		t.Errorf("tags of the tag-only backup under --repository: %s", body)
	}

	full := servedBackup(t, src, "full.tar")
	r = regvault(t, "", "serve", "--input", full, "--repository", "x")
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "--repository is for a backup whose tags name no repository")

	// A layer missing from a directory backup: refused at start.
	damaged := filepath.Join(dir, "damaged")
	regvault(t, "", "backup", "--plain-http", "--output", damaged, ref(src, registrytest.SampleFrontend)).wantCode(t, exitOK)
	var layer string
	blobs, _ := filepath.Glob(filepath.Join(damaged, "blobs", "sha256", "*"))
	for _, b := range blobs {
		if fi, _ := os.Stat(b); fi.Size() == 4<<10 { // an image's own layer (registrytest's LayerSize)
			layer = b
		}
	}
	if layer == "" {
		t.Fatal("no 4 KiB layer in the backup")
	}
	if err := os.Remove(layer); err != nil {
		t.Fatal(err)
	}
	r = regvault(t, "", "serve", "--input", damaged, "--repository", "x")
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, damaged+" cannot be served", "sha256:"+filepath.Base(layer), "not found in the backup", "regvault verify --input")

	for _, bad := range [][]string{
		{"serve"},
		{"serve", "--input", full, "--tls-cert", "x.pem"},
		{"serve", "--input", full, "--format", "yaml"},
		{"serve", "--input", full, "--htpasswd", filepath.Join(dir, "none")},
	} {
		regvault(t, "", bad...).wantCode(t, exitUsage)
	}
	r = regvault(t, "", "serve", "--input", full, "--listen", "256.0.0.1:1")
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "--listen 256.0.0.1:1")
}

// TestServeCorruptBlobIsCut: a layer whose bytes changed on disk after
// the server started (or that only reading finds wrong) is not served as
// good: the connection is cut before the response completes, and the log
// says which blob.
func TestServeCorruptBlobIsCut(t *testing.T) {
	src, sample := sampleRegistry(t)
	dir := filepath.Join(t.TempDir(), "backup")
	regvault(t, "", "backup", "--plain-http", "--output", dir, ref(src, registrytest.SampleFrontend)).wantCode(t, exitOK)
	layer := sample.BaseLayer
	path := filepath.Join(dir, archive.BlobPath(layer.Digest))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff // same size: found only by reading
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, "--input", dir, "--repository", "app", "--format", "json")
	url := "http://" + srv.addr + "/v2/app/blobs/" + layer.Digest.String()
	for _, rg := range []string{"", "bytes=0-99"} {
		req, _ := http.NewRequest("GET", url, nil)
		if rg != "" {
			req.Header.Set("Range", rg)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil {
				t.Errorf("GET %s (Range %q) of a corrupt blob completed: %d, %d bytes", layer.Digest, rg, resp.StatusCode, len(body))
			}
		}
	}
	if !strings.Contains(srv.stderr.String(), `"msg":"corrupt blob: connection cut"`) || !strings.Contains(srv.stderr.String(), layer.Digest.String()) {
		t.Errorf("the log does not name the corrupt blob:\n%s", srv.stderr)
	}
	// HEAD says nothing about the bytes; the server goes on serving.
	resp, _ := httpDo(t, "HEAD", url, nil)
	if resp.StatusCode != 200 {
		t.Errorf("HEAD after the cut: %d", resp.StatusCode)
	}
}

// TestServeHtpasswdTLS: basic auth from a bcrypt htpasswd file, over
// HTTPS.
func TestServeHtpasswdTLS(t *testing.T) {
	src, sample := sampleRegistry(t)
	tarPath := servedBackup(t, src, "sample.tar")
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	md5 := filepath.Join(dir, "md5")
	os.WriteFile(md5, []byte("bob:$apr1$abc$def\n"), 0o600)
	r := regvault(t, "", "serve", "--input", tarPath, "--htpasswd", md5)
	r.wantCode(t, exitUsage)
	wantContains(t, "stderr", r.stderr, "line 1 (user bob): not a bcrypt hash", "htpasswd -B")

	certPEM, keyPEM, pool := selfSignedCert(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, keyPEM, 0o600)
	srv := startServe(t, "--input", tarPath, "--htpasswd", htpasswd, "--tls-cert", cert, "--tls-key", key)
	wantContains(t, "stdout", srv.stdout.String(), "at https://")

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfigWithPool(pool)}}
	resp, err := client.Get("https://" + srv.addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("without credentials: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	repo, err := remote.NewRepository(srv.addr + "/" + registrytest.SampleFrontend)
	if err != nil {
		t.Fatal(err)
	}
	repo.Client = &auth.Client{Client: client, Credential: auth.StaticCredential(srv.addr, auth.Credential{Username: "alice", Password: "wrong"})}
	if _, err := repo.Resolve(context.Background(), "v1"); err == nil {
		t.Errorf("a wrong password was accepted")
	}
	repo.Client = &auth.Client{Client: client, Credential: auth.StaticCredential(srv.addr, auth.Credential{Username: "alice", Password: "s3cret-pass"})}
	d, err := repo.Resolve(context.Background(), "v1")
	if err != nil || d.Digest != sample.Tags[registrytest.SampleFrontend]["v1"].Digest {
		t.Errorf("with alice's password over HTTPS: %v, %s", err, d.Digest)
	}
	wantNotContains(t, "stderr", srv.stderr.String(), "s3cret-pass")
}

// selfSignedCert makes a certificate for 127.0.0.1 and the pool that
// trusts it.
func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "regvault serve test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), pool
}

func tlsConfigWithPool(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
