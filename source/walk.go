package source

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// MaxReferrerDepth bounds how deep referrers of referrers are followed (a
// signature of an SBOM of an image is 2 deep). A chain that goes deeper
// is a registry that makes up referrers without end; the cycle guard
// (visited) stops only chains that come back to a manifest already seen.
const MaxReferrerDepth = 16

// MaxIndexDepth bounds how deep indexes of indexes are followed (real
// ones are 1 or 2 deep): as MaxReferrerDepth, for an index whose children
// are made-up indexes without end.
const MaxIndexDepth = 1000

// Walker records into a graph everything reachable from tags: manifests,
// index children, configs, layers and, when asked, referrers (recursively,
// with referrers of referrers and of index children). Each manifest is
// fetched once per run however many repositories reach it; each
// repository walks it once (referrers are per repository).
type Walker struct {
	Src              Source
	Graph            *graph.Graph
	IncludeReferrers bool
	// Requests bounds the requests under way at once, across all walks.
	Requests *semaphore.Weighted
	// OnBlob, if set, is told of each blob as a manifest that lists it is
	// recorded (a manifest's blobs largest first), in the graph's
	// repository repo: the sink may start asking
	// the target about it while the walk goes on (sink.Asker).
	OnBlob func(repo string, desc ocispec.Descriptor)

	manifests once[digest.Digest, []byte]
	visited   set[string]
	held      once[string, holding] // repo@digest of non-distributable layers: does the source hold it
}

// holding is what a source says of a non-distributable layer.
type holding int

const (
	held    holding = iota
	notHeld         // left out
	later           // a stream tells when it is read that far: optional
)

// has says whether the source holds a non-distributable layer, asked once
// per repository; a source that cannot tell is taken to hold it.
func (w *Walker) has(ctx context.Context, from string, desc ocispec.Descriptor) (holding, error) {
	h, ok := w.Src.(Holder)
	if !ok {
		return held, nil
	}
	return w.held.Do(ctx, from+"@"+desc.Digest.String(), func() (holding, error) {
		release, err := w.Acquire(ctx)
		if err != nil {
			return notHeld, err
		}
		defer release()
		ok, err := h.Has(ctx, from, desc)
		switch {
		case errors.Is(err, ErrNotKnownYet):
			return later, nil
		case err != nil:
			return notHeld, err
		case !ok:
			return notHeld, nil
		}
		return held, nil
	})
}

// Walk records the graph of root (a tag's manifest, content already
// fetched) in repo.
func (w *Walker) Walk(ctx context.Context, repo string, root ocispec.Descriptor, rootContent []byte) error {
	return w.walk(ctx, repo, repo, root, rootContent, 0, 0)
}

// WalkFrom is Walk for a tag of the source repository from recorded in
// the graph's repository repo (a restore or copy: repo is the target).
// The nodes record from as where to read them (graph.Node.Sources).
func (w *Walker) WalkFrom(ctx context.Context, repo, from string, root ocispec.Descriptor, rootContent []byte) error {
	return w.walk(ctx, repo, from, root, rootContent, 0, 0)
}

// walk records desc, depth referrers and nest index children away from
// the tag it was reached from, read from the source repository from.
func (w *Walker) walk(ctx context.Context, repo, from string, desc ocispec.Descriptor, body []byte, depth, nest int) error {
	// The cycle guard: a manifest is walked once per repository (and per
	// source repository feeding it: each lists its own referrers), so a
	// referrer that refers (transitively) to itself ends here.
	key := repo + "@" + desc.Digest.String()
	if from != repo {
		key = repo + "<" + from + "@" + desc.Digest.String()
	}
	if !w.visited.Add(key) {
		return nil
	}
	w.Graph.AddNodeFrom(repo, from, desc, graph.KindManifest)
	if body == nil {
		var err error
		body, err = w.manifests.Do(ctx, desc.Digest, func() ([]byte, error) { return w.fetchManifest(ctx, from, desc) })
		if err != nil {
			return err
		}
	}
	m, err := parseManifest(desc, body)
	if err != nil {
		return fmt.Errorf("%s@%s: %w", repo, desc.Digest, err)
	}
	children := make([]digest.Digest, 0, len(m.blobs)+len(m.manifests))
	var found []ocispec.Descriptor // told to OnBlob
	for _, b := range m.blobs {
		if b.kind == graph.KindLayer && IsNonDistributable(b.desc) {
			has, err := w.has(ctx, from, b.desc)
			if err != nil {
				return fmt.Errorf("%s@%s: layer %s: %w", repo, desc.Digest, b.desc.Digest, err)
			}
			switch has {
			case notHeld:
				// Left out, as oras and skopeo do: the manifest goes
				// without it, and the reports count it.
				w.Graph.AddAbsent(repo, desc.Digest, b.desc)
				continue
			case later:
				// Moved if the stream holds it, else left out then.
				w.Graph.AddOptional(repo, desc.Digest, b.desc)
			}
		}
		n, _ := w.Graph.AddNodeFrom(repo, from, b.desc, b.kind)
		if n.Desc.Size != b.desc.Size {
			// One digest, two sizes: one descriptor lies.
			return fmt.Errorf("%s@%s: %s %s has size %d, another manifest gives it %d", repo, desc.Digest, b.kind, b.desc.Digest, b.desc.Size, n.Desc.Size)
		}
		children = append(children, b.desc.Digest)
		found = append(found, b.desc)
	}
	if w.OnBlob != nil {
		// Largest first: whoever listens may start moving what it is
		// told of at once, and a manifest's largest layer is the one
		// that should not wait for a slot its small ones took.
		slices.SortStableFunc(found, func(a, b ocispec.Descriptor) int { return cmp.Compare(b.Size, a.Size) })
		for _, d := range found {
			w.OnBlob(repo, d)
		}
	}
	for _, c := range m.manifests {
		children = append(children, c.Digest)
	}
	w.Graph.SetManifest(desc.Digest, body, children)

	if len(m.manifests) > 0 && nest >= MaxIndexDepth {
		return fmt.Errorf("%s@%s: indexes nested more than %d deep (an index of an index of …), regvault's limit",
			repo, desc.Digest, MaxIndexDepth)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range m.manifests {
		g.Go(func() error { return w.walk(gctx, repo, from, c, nil, depth, nest+1) })
	}
	if w.IncludeReferrers {
		g.Go(func() error {
			refs, err := w.referrers(gctx, from, desc)
			if err != nil {
				return err
			}
			if len(refs) > 0 && depth >= MaxReferrerDepth {
				return fmt.Errorf("%s@%s: referrers nested more than %d deep (a referrer of a referrer of …), regvault's limit: the registry's chain of referrers does not end",
					repo, desc.Digest, MaxReferrerDepth)
			}
			for _, r := range refs {
				w.Graph.AddReferrer(repo, r, desc.Digest)
				g.Go(func() error { return w.walk(gctx, repo, from, r, nil, depth+1, nest) })
			}
			return nil
		})
	}
	return g.Wait()
}

// Acquire takes one of the request slots shared by all walks; call the
// returned function to give it back.
func (w *Walker) Acquire(ctx context.Context) (func(), error) {
	if w.Requests == nil {
		return func() {}, nil
	}
	if err := w.Requests.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	return func() { w.Requests.Release(1) }, nil
}

func (w *Walker) fetchManifest(ctx context.Context, repo string, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > archive.MaxManifestSize {
		return nil, archive.ManifestTooLarge(repo+"@"+desc.Digest.String(), desc.Size)
	}
	release, err := w.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	rc, err := w.Src.Fetch(ctx, repo, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := content.ReadAll(io.LimitReader(rc, desc.Size+1), desc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s@%s: %w", repo, desc.Digest, err)
	}
	return b, nil
}

func (w *Walker) referrers(ctx context.Context, repo string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	release, err := w.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return w.Src.Referrers(ctx, repo, desc)
}

type blobRef struct {
	desc ocispec.Descriptor
	kind graph.Kind
}

type parsedManifest struct {
	blobs     []blobRef
	manifests []ocispec.Descriptor
}

// parseManifest finds a manifest's children (archive.Manifest.Children),
// blobs and manifests apart.
func parseManifest(desc ocispec.Descriptor, body []byte) (parsedManifest, error) {
	// Its own type: a JSON error names it, as it always has.
	var m struct {
		MediaType string               `json:"mediaType"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Blobs     []ocispec.Descriptor `json:"blobs"`
		Manifests []ocispec.Descriptor `json:"manifests"`
		Subject   *ocispec.Descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return parsedManifest{}, fmt.Errorf("invalid manifest JSON: %w", err)
	}
	var out parsedManifest
	kids, err := archive.Manifest(m).Children(desc.MediaType)
	switch {
	case errors.Is(err, archive.ErrNoConfig):
		return out, fmt.Errorf("image manifest without a config")
	case errors.Is(err, archive.ErrSchema1):
		return out, fmt.Errorf("Docker schema 1 manifests are deprecated and not supported")
	case err != nil:
		return out, err
	}
	for _, c := range kids {
		switch c.Role {
		case archive.RoleConfig:
			out.blobs = append(out.blobs, blobRef{c.Desc, graph.KindConfig})
		case archive.RoleManifest:
			out.manifests = append(out.manifests, c.Desc)
		default:
			out.blobs = append(out.blobs, blobRef{c.Desc, graph.KindLayer})
		}
	}
	// Every descriptor, by its place in the manifest, before anything
	// uses it: a registry would refuse the manifest only after its blobs
	// were pushed.
	check := func(field string, d ocispec.Descriptor) error {
		if err := CheckDescriptor(d); err != nil {
			return &DescriptorError{Field: field, Err: err}
		}
		return nil
	}
	if m.Config != nil {
		if err := check("config", *m.Config); err != nil {
			return out, err
		}
	}
	for _, list := range []struct {
		field string
		descs []ocispec.Descriptor
	}{{"layers", m.Layers}, {"blobs", m.Blobs}, {"manifests", m.Manifests}} {
		for i, d := range list.descs {
			if err := check(fmt.Sprintf("%s[%d]", list.field, i), d); err != nil {
				return out, err
			}
		}
	}
	if m.Subject != nil {
		if err := check("subject", *m.Subject); err != nil {
			return out, err
		}
	}
	return out, nil
}

// DescriptorError is a descriptor of a manifest that no registry could
// take: Field is its place in the manifest (config, layers[2], subject).
type DescriptorError struct {
	Field string
	Err   error
}

func (e *DescriptorError) Error() string {
	return "damaged manifest: " + e.Field + ": " + e.Err.Error()
}
func (e *DescriptorError) Unwrap() error { return e.Err }
