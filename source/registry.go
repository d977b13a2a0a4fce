package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/registry"
)

// Registry reads repositories of one registry through oras-go.
type Registry struct {
	client *registry.Client
}

// NewRegistry returns a source reading from the client's registry.
func NewRegistry(c *registry.Client) *Registry { return &Registry{client: c} }

// Host is the registry host.
func (r *Registry) Host() string { return r.client.Host() }

// Repository is the oras-go repository of a path of this registry.
func (r *Registry) Repository(path string) (*remote.Repository, error) { return r.repo(path) }

func (r *Registry) repo(name string) (*remote.Repository, error) {
	return r.client.Repository(name)
}

// Tags lists every tag of repo, within the limits of registry.ListTags
// (pagination that goes round in a loop or does not end is an error).
func (r *Registry) Tags(ctx context.Context, repo string) ([]string, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return nil, err
	}
	tags, err := registry.ListTags(ctx, rp)
	if err != nil {
		return nil, fmt.Errorf("listing tags of %s: %w", r.full(repo), err)
	}
	return tags, nil
}

// Resolve fetches the manifest a tag points at in one request.
func (r *Registry) Resolve(ctx context.Context, repo, tag string) (ocispec.Descriptor, []byte, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	desc, rc, err := rp.FetchReference(ctx, tag)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return ocispec.Descriptor{}, nil, fmt.Errorf("%s:%s: tag not found: %w", r.full(repo), tag, err)
		}
		return ocispec.Descriptor{}, nil, fmt.Errorf("resolving %s:%s: %w", r.full(repo), tag, err)
	}
	defer rc.Close()
	if desc.Size > archive.MaxManifestSize {
		// The registry's transport refuses such an answer first; a
		// size from a HEAD (oras-go asks when a GET has no length) is
		// checked here, before content.ReadAll allocates it.
		return ocispec.Descriptor{}, nil, archive.ManifestTooLarge(r.full(repo)+":"+tag, desc.Size)
	}
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("reading manifest %s:%s (%s): %w", r.full(repo), tag, desc.Digest, err)
	}
	return desc, b, nil
}

// Fetch opens a manifest or blob by descriptor.
func (r *Registry) Fetch(ctx context.Context, repo string, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	if archive.IsManifest(desc.MediaType) {
		rc, err = rp.Manifests().Fetch(ctx, desc)
	} else {
		rc, err = rp.Blobs().Fetch(ctx, desc)
	}
	if err != nil {
		return nil, fmt.Errorf("fetching %s@%s: %w", r.full(repo), desc.Digest, err)
	}
	if s, ok := rc.(io.ReadSeekCloser); ok {
		return &resumingReader{ctx: ctx, rc: s, size: desc.Size, what: r.full(repo) + "@" + desc.Digest.String()}, nil
	}
	return rc, nil
}

// FetchRange reads bytes [off, off+length) of a blob with a Range request.
func (r *Registry) FetchRange(ctx context.Context, repo string, desc ocispec.Descriptor, off, length int64) (io.ReadCloser, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return nil, err
	}
	ref := rp.Reference
	ctx = auth.AppendRepositoryScope(ctx, ref, auth.ActionPull)
	scheme := "https"
	if rp.PlainHTTP {
		scheme = "http"
	}
	url := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, ref.Host(), ref.Repository, desc.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	resp, err := rp.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s@%s (bytes %d-%d): %w", r.full(repo), desc.Digest, off, off+length-1, err)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", off)) {
			resp.Body.Close()
			return nil, fmt.Errorf("fetching %s@%s: asked for bytes from %d, got %q", r.full(repo), desc.Digest, off, resp.Header.Get("Content-Range"))
		}
		return resp.Body, nil
	case http.StatusOK:
		resp.Body.Close()
		return nil, ErrRangeUnsupported
	default:
		defer resp.Body.Close()
		return nil, fmt.Errorf("fetching %s@%s (bytes %d-%d): %w", r.full(repo), desc.Digest, off, off+length-1, errutil(resp))
	}
}

// resumeAttempts bounds how often one download resumes after the
// connection drops.
const resumeAttempts = 5

// resumingReader continues a blob download that broke off in the middle
// of its body with a Range request from where it stopped (the registry
// said it takes ranges), instead of starting over. The bytes are still
// verified end to end by the caller.
type resumingReader struct {
	ctx      context.Context
	rc       io.ReadSeekCloser
	size     int64
	off      int64
	attempts int
	what     string
	pending  error
}

func (r *resumingReader) Read(p []byte) (int, error) {
	for {
		if r.pending != nil {
			err := r.pending
			r.pending = nil
			if !r.resume(err) {
				return 0, err
			}
		}
		n, err := r.rc.Read(p)
		r.off += int64(n)
		if err == nil || err == io.EOF || r.off >= r.size {
			return n, err
		}
		if n > 0 {
			// Hand over what arrived; resume on the next call.
			r.pending = err
			return n, nil
		}
		r.pending = err
	}
}

// resume reconnects at the current offset; it reports whether it did.
func (r *resumingReader) resume(cause error) bool {
	if r.attempts >= resumeAttempts || r.ctx.Err() != nil {
		return false
	}
	r.attempts++
	select {
	case <-time.After(time.Duration(r.attempts*r.attempts) * 100 * time.Millisecond):
	case <-r.ctx.Done():
		return false
	}
	// oras-go's seeker skips a seek to where it already is, so move to
	// the end first (no request) to make it reconnect at the offset.
	if _, err := r.rc.Seek(r.size, io.SeekStart); err != nil {
		return false
	}
	if _, err := r.rc.Seek(r.off, io.SeekStart); err != nil {
		return false
	}
	return true
}

func (r *resumingReader) Close() error { return r.rc.Close() }

// Referrers lists the manifests whose subject is desc, within the limits
// of registry.ListReferrers.
func (r *Registry) Referrers(ctx context.Context, repo string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	refs, err := r.client.ListReferrers(ctx, repo, desc)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s@%s: %w", r.full(repo), desc.Digest, err)
	}
	return refs, nil
}

func (r *Registry) full(repo string) string { return r.client.Host() + "/" + repo }

// errutil turns an error answer into oras-go's error type, so callers
// (and the CLI's recommendations) see the status code.
func errutil(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	e := &errcode.ErrorResponse{Method: resp.Request.Method, URL: resp.Request.URL, StatusCode: resp.StatusCode}
	var parsed struct {
		Errors errcode.Errors `json:"errors"`
	}
	if json.Unmarshal(body, &parsed) == nil {
		e.Errors = parsed.Errors
	}
	return e
}
