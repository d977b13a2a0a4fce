package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/regvault/regvault/internal/registrytest"
)

// Registry is a distribution registry process started by
// registrytest.StartDistribution, with the directory its storage lives in.
type Registry struct {
	*registrytest.Server
	// Storage is the registry's filesystem storage root.
	Storage string
	tmp     string
}

var tmpdirMu sync.Mutex

// StartRegistry starts a distribution registry process (bin, or
// $REGVAULT_DISTRIBUTION when bin is "") with its files under workDir.
//
// registrytest.StartDistribution keeps the registry's storage in a new
// directory of os.TempDir(); $TMPDIR is pointed at an empty directory of
// our own for the call, so that the storage directory is known and a
// seeded copy can be linked into it (see linkTree).
func StartRegistry(bin, workDir string) (*Registry, error) {
	tmp, err := os.MkdirTemp(workDir, "registry-")
	if err != nil {
		return nil, err
	}
	tmpdirMu.Lock()
	old, had := os.LookupEnv("TMPDIR")
	os.Setenv("TMPDIR", tmp)
	srv, err := registrytest.StartDistribution(registrytest.DistConfig{Binary: bin})
	if had {
		os.Setenv("TMPDIR", old)
	} else {
		os.Unsetenv("TMPDIR")
	}
	tmpdirMu.Unlock()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	r := &Registry{Server: srv, tmp: tmp}
	entries, err := os.ReadDir(tmp)
	if err != nil || len(entries) != 1 || !entries[0].IsDir() {
		r.Close()
		return nil, fmt.Errorf("cannot find the registry's directory in %s (registrytest.StartDistribution changed?)", tmp)
	}
	r.Storage = filepath.Join(tmp, entries[0].Name(), "storage")
	if _, err := os.Stat(filepath.Join(tmp, entries[0].Name(), "config.yml")); err != nil {
		r.Close()
		return nil, fmt.Errorf("no config.yml in the registry's directory: %w", err)
	}
	return r, nil
}

// Close stops the registry and removes its files.
func (r *Registry) Close() error {
	err := r.Server.Close()
	if rerr := os.RemoveAll(r.tmp); err == nil {
		err = rerr
	}
	return err
}

// StorageBytes is the size of the files in the registry's storage.
func (r *Registry) StorageBytes() int64 {
	var n int64
	filepath.WalkDir(r.Storage, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// linkTree makes dst a copy of the tree src with hard links (a plain copy
// where links are not possible): cheap, and the registry never rewrites
// blob files in place.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			if err := os.Link(p, target); err == nil {
				return nil
			} else if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EMLINK) {
				return err
			}
			return copyFile(p, target)
		}
		return nil
	})
}

// warmTree reads every file under dir once, into the page cache.
func warmTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(io.Discard, f)
		return err
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// client is a bare registry API client: plain HTTP, no auth, streaming
// bodies. The seeder and the baseline use it; nothing here retries or
// buffers a blob.
type client struct {
	base string // http://host
	hc   *http.Client
}

func newClient(host string, conns int) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = conns
	tr.DisableCompression = true
	return &client{base: "http://" + host, hc: &http.Client{Transport: tr}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

func (c *client) do(req *http.Request, want ...int) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(body)))
}

// exchange is do for a request whose answer body does not matter: the body
// is read to its end (so the connection is reused) and closed; the headers
// stay readable.
func (c *client) exchange(req *http.Request, want ...int) (*http.Response, error) {
	resp, err := c.do(req, want...)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// location is the upload URL of resp, resolved against its request.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: no Location", resp.Request.Method, resp.Request.URL.Path)
	}
	return resp.Request.URL.Parse(loc)
}

func withDigest(u *url.URL, dgst string) string {
	q := u.Query()
	q.Set("digest", dgst)
	u2 := *u
	u2.RawQuery = q.Encode()
	return u2.String()
}

// startUpload opens an upload session in repo.
func (c *client) startUpload(ctx context.Context, repo string) (*url.URL, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := c.exchange(req, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	return location(resp)
}

// uploadStream pushes the bytes of r (size unknown in advance) as a blob
// of repo in one streamed PATCH, hashing as they go, and returns the
// digest and size.
func (c *client) uploadStream(ctx context.Context, repo string, r io.Reader) (string, int64, error) {
	loc, err := c.startUpload(ctx, repo)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(r, h)}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), io.NopCloser(cr))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.exchange(req, http.StatusAccepted, http.StatusNoContent)
	if err != nil {
		return "", 0, err
	}
	if loc, err = location(resp); err != nil {
		return "", 0, err
	}
	dgst := "sha256:" + hex.EncodeToString(h.Sum(nil))
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, dgst), nil)
	if _, err := c.exchange(req, http.StatusCreated); err != nil {
		return "", 0, err
	}
	return dgst, cr.n, nil
}

// uploadMonolithic pushes size bytes of body with digest dgst as a blob of
// repo: POST to open the session, then one PUT with the whole body.
func (c *client) uploadMonolithic(ctx context.Context, repo, dgst string, size int64, body io.Reader) error {
	loc, err := c.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, dgst), io.NopCloser(body))
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	_, err = c.exchange(req, http.StatusCreated)
	return err
}

// uploadBytes is uploadMonolithic of data.
func (c *client) uploadBytes(ctx context.Context, repo string, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	dgst := "sha256:" + hex.EncodeToString(sum[:])
	return dgst, c.uploadMonolithic(ctx, repo, dgst, int64(len(data)), bytes.NewReader(data))
}

// mount asks the registry to mount dgst from the repository from into
// repo; false when it declined (the upload session it opened instead is
// cancelled).
func (c *client) mount(ctx context.Context, repo, from, dgst string) (bool, error) {
	q := url.Values{"mount": {dgst}, "from": {from}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v2/"+repo+"/blobs/uploads/?"+q.Encode(), nil)
	resp, err := c.exchange(req, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return false, err
	}
	if resp.StatusCode == http.StatusCreated {
		return true, nil
	}
	if loc, err := location(resp); err == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, loc.String(), nil)
		if resp, err := c.hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	return false, nil
}

// putManifest pushes a manifest under ref (a tag or its digest).
func (c *client) putManifest(ctx context.Context, repo, ref, mediaType string, data []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(data))
	req.Header.Set("Content-Type", mediaType)
	_, err := c.exchange(req, http.StatusCreated)
	return err
}

// headManifest is the digest the registry has for repo:ref, or "" when it
// has none.
func (c *client) headManifest(ctx context.Context, repo, ref string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, c.base+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", strings.Join(manifestTypes, ", "))
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Header.Get("Docker-Content-Digest"), nil
	case http.StatusNotFound:
		return "", nil
	}
	return "", fmt.Errorf("HEAD %s manifest %s: %s", repo, ref, resp.Status)
}

// headBlob tells whether repo has the blob.
func (c *client) headBlob(ctx context.Context, repo, dgst string) (bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, c.base+"/v2/"+repo+"/blobs/"+dgst, nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HEAD %s blob %s: %s", repo, dgst, resp.Status)
}

// getBlob streams repo's blob dgst into w.
func (c *client) getBlob(ctx context.Context, repo, dgst string, w io.Writer) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v2/"+repo+"/blobs/"+dgst, nil)
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

var manifestTypes = []string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	registrytest.MediaTypeDockerManifest,
	registrytest.MediaTypeDockerManifestList,
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
