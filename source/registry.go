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

func (r *Registry) repo(name string) (*remote.Repository, error) {
	return r.client.Repository(name)
}

// Tags lists every tag of repo, following pagination, within the limits
// of registry.MaxTagPages and registry.MaxTags. A tag listed twice is kept
// once; a page that lists only tags already listed means the pagination
// goes round (a Link header pointing back), and ends the listing with an
// error.
func (r *Registry) Tags(ctx context.Context, repo string) ([]string, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return nil, err
	}
	l := newListing[string]("tags", registry.MaxTags)
	err = rp.Tags(ctx, "", func(page []string) error {
		return l.add(page, func(t string) string { return t })
	})
	if err != nil {
		return nil, fmt.Errorf("listing tags of %s: %w", r.full(repo), limitError(err, "tags", registry.MaxTagPages))
	}
	return l.items, nil
}

// listing gathers the pages of one paginated list, dropping repeats, and
// stops one that goes round in a loop or grows beyond max items.
type listing[T any] struct {
	what  string
	max   int
	pages int
	seen  map[string]bool
	items []T
}

func newListing[T any](what string, max int) *listing[T] {
	return &listing[T]{what: what, max: max, seen: map[string]bool{}}
}

func (l *listing[T]) add(page []T, key func(T) string) error {
	l.pages++
	fresh := 0
	for _, it := range page {
		k := key(it)
		if l.seen[k] {
			continue
		}
		l.seen[k] = true
		l.items = append(l.items, it)
		fresh++
	}
	if len(page) > 0 && fresh == 0 {
		return fmt.Errorf("page %d of the %s lists only %s already listed (%s): the registry's pagination (its Link header) goes round in a loop",
			l.pages, l.what, l.what, key(page[0]))
	}
	if len(l.items) > l.max {
		return fmt.Errorf("more than %d %s, regvault's limit: the registry's pagination (its Link header) does not seem to end", l.max, l.what)
	}
	return nil
}

// limitError says in words that a listing had more pages than the limit
// (oras-go stops it there).
func limitError(err error, what string, maxPages int) error {
	if errors.Is(err, errdef.ErrTooManyPages) {
		return fmt.Errorf("more than %d pages of %s, regvault's limit: the registry's pagination (its Link header) does not end (%w)", maxPages, what, err)
	}
	return err
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

// Referrers lists the manifests whose subject is desc: the Referrers API,
// falling back to the tag schema (oras-go decides and remembers which),
// within registry.MaxReferrerPages and registry.MaxReferrers, a referrer
// listed twice kept once (as Tags does).
func (r *Registry) Referrers(ctx context.Context, repo string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	rp, err := r.repo(repo)
	if err != nil {
		return nil, err
	}
	l := newListing[ocispec.Descriptor]("referrers", registry.MaxReferrers)
	err = rp.Referrers(ctx, desc, "", func(page []ocispec.Descriptor) error {
		return l.add(page, func(d ocispec.Descriptor) string { return d.Digest.String() })
	})
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s@%s: %w", r.full(repo), desc.Digest, limitError(err, "referrers", registry.MaxReferrerPages))
	}
	return l.items, nil
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
