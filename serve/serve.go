// Package serve answers the read side of the OCI distribution API from a
// backup, in place: a directory's blob files and a plain tar's members are
// read at their offsets, never extracted. New reads what the backup serves
// (every tag's manifests, the referrers recorded for each repository) and
// refuses a damaged backup before anything is served; Handler is the
// http.Handler; Run is the server's life, from listening to a graceful
// shutdown.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/source"
)

// Options tunes New.
type Options struct {
	// Repository is the name a tag-only backup's tags are served under
	// (such a backup does not record its repository's name). A backup
	// that names its repositories refuses it.
	Repository string
	// Users are the htpasswd users (ReadHtpasswd): nil serves everyone.
	Users *Users
	// Log receives a line per request and the server's events; nil
	// logs nothing.
	Log *slog.Logger
}

// UsageError is a refusal of the options, the backup untouched: the
// CLI's exit code 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Repository is what one served repository holds.
type Repository struct {
	// Name is the name it is served under (library/alpine); Source the
	// name the backup records (docker.io/library/alpine; "" for a
	// tag-only backup).
	Name, Source string
	// Tags, sorted.
	Tags []string

	tags      map[string]ocispec.Descriptor
	manifests map[digest.Digest]ocispec.Descriptor // every manifest its tags and referrers reach
	blobs     map[digest.Digest]ocispec.Descriptor // every blob they reach (configs, layers, manifests too)
	referrers map[digest.Digest][]ocispec.Descriptor
}

// Handler serves a backup; see New.
type Handler struct {
	layout *source.Layout
	repos  map[string]*Repository
	names  []string // sorted
	users  *Users
	log    *slog.Logger

	// verified are the blobs read whole and found intact: a Range
	// request of one of them needs no hashing of the rest.
	verified sync.Map
}

// New reads what the backup l serves: each tag's manifest, its children
// and the referrers recorded for its repository, recursively. Every
// manifest is read and its digest checked; every blob is looked up (in
// place, at its size) without being read. A backup in which any is
// missing, of the wrong size or corrupt is refused: serving it would hand
// out broken images. l must be read with random access (a directory or a
// plain tar file); it stays the caller's to close, after the Handler.
func New(ctx context.Context, l *source.Layout, opts Options) (*Handler, error) {
	if l.Streaming() {
		return nil, &UsageError{Msg: fmt.Sprintf("%s is a %s read as a stream: %s", l.Path(), l.Kind(), ServableHint)}
	}
	h := &Handler{layout: l, repos: map[string]*Repository{}, users: opts.Users, log: opts.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	entries := l.Entries()
	c := archive.Summarize(entries)
	if len(c.TagEntries) == 0 {
		return nil, fmt.Errorf("%s names no tag in its index.json: there is nothing to serve by name (regvault verify --input %s lists what it holds)", l.Path(), l.Path())
	}
	served := map[string]string{} // backup's name → served name
	switch {
	case c.TagOnly() || (len(c.TagRepos) == 1 && c.TagRepos[0] == ""):
		if opts.Repository == "" {
			return nil, &UsageError{Msg: fmt.Sprintf("%s names its tags without a repository (%s): give the name to serve them under with --repository, e.g. --repository library/app", l.Path(), sample(c.Unnamed))}
		}
		if !validName(opts.Repository) {
			return nil, &UsageError{Msg: fmt.Sprintf("--repository %q is not a repository name: lowercase path components of letters, digits and separators (., _, __, -), joined by /", opts.Repository)}
		}
		served[""] = opts.Repository
	default:
		if opts.Repository != "" {
			return nil, &UsageError{Msg: fmt.Sprintf("--repository is for a backup whose tags name no repository; %s names its repositories, served under their paths: %s", l.Path(), sample(c.TagRepos))}
		}
		// Under the path without the registry, unless two registries
		// share it: then each under its full name.
		byPath := map[string][]string{}
		for _, full := range c.TagRepos {
			if full == "" {
				return nil, fmt.Errorf("%s mixes tags with and without a repository name: it cannot be served (regvault verify --input %s says more)", l.Path(), l.Path())
			}
			byPath[archive.RepoPath(full)] = append(byPath[archive.RepoPath(full)], full)
		}
		for path, fulls := range byPath {
			for _, full := range fulls {
				name := path
				if len(fulls) > 1 {
					name = full
				}
				if !validName(name) {
					return nil, fmt.Errorf("%s: repository %q cannot be served: %q is not a repository name of the distribution API", l.Path(), full, name)
				}
				served[full] = name
			}
		}
	}
	for full, name := range served {
		r := &Repository{Name: name, Source: full, tags: map[string]ocispec.Descriptor{},
			manifests: map[digest.Digest]ocispec.Descriptor{}, blobs: map[digest.Digest]ocispec.Descriptor{},
			referrers: map[digest.Digest][]ocispec.Descriptor{}}
		h.repos[name] = r
		h.names = append(h.names, name)
	}
	sort.Strings(h.names)
	for _, e := range c.TagEntries {
		r := h.repos[served[e.Repo]]
		d := e.Desc
		d.Annotations = nil
		if old, ok := r.tags[e.Tag]; ok && old.Digest != d.Digest {
			return nil, fmt.Errorf("%s is damaged: tag %s of %s is listed twice, at %s and %s (regvault verify --input %s says more)", l.Path(), e.Tag, repoLabel(r), old.Digest, d.Digest, l.Path())
		}
		r.tags[e.Tag] = d
	}
	for _, name := range h.names {
		r := h.repos[name]
		for t := range r.tags {
			r.Tags = append(r.Tags, t)
		}
		sort.Strings(r.Tags)
		for _, t := range r.Tags {
			if err := h.reach(ctx, r, r.tags[t]); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("%s cannot be served: %s:%s: %w (regvault verify --input %s lists every problem)", l.Path(), repoLabel(r), t, err, l.Path())
			}
		}
	}
	return h, nil
}

// ServableHint says how to get a backup serve can read.
const ServableHint = "serve reads each blob at its place in the backup, so it needs a directory or a plain .tar file; decompress the archive once (zstd -d backup.tar.zst, or gunzip backup.tar.gz), check it with regvault verify --input backup.tar, then serve the .tar"

// Repositories lists the served repositories, sorted by name.
func (h *Handler) Repositories() []Repository {
	out := make([]Repository, 0, len(h.names))
	for _, n := range h.names {
		r := h.repos[n]
		out = append(out, Repository{Name: r.Name, Source: r.Source, Tags: slices.Clone(r.Tags)})
	}
	return out
}

// reach adds the manifest desc and all it reaches in the backup to r:
// children, and the referrers of each manifest recorded for r.
func (h *Handler) reach(ctx context.Context, r *Repository, desc ocispec.Descriptor) error {
	stack := []ocispec.Descriptor{desc}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, seen := r.manifests[d.Digest]; seen {
			continue
		}
		data, err := h.readManifest(ctx, d)
		if err != nil {
			return err
		}
		var m archive.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		if d.MediaType == "" {
			d.MediaType = m.MediaType
		}
		d.Annotations, d.Platform, d.URLs, d.Data = nil, nil, nil, nil
		children, err := m.Children(d.MediaType)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		r.manifests[d.Digest] = d
		r.blobs[d.Digest] = d
		for _, ch := range children {
			cd := ch.Desc
			if err := source.CheckDescriptor(cd); err != nil {
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			if ch.Role == archive.RoleManifest {
				stack = append(stack, cd)
				continue
			}
			if _, ok := r.blobs[cd.Digest]; ok {
				continue
			}
			if err := h.layout.Check(ctx, cd); err != nil {
				if source.IsNonDistributable(cd) && errors.As(err, new(*source.MissingError)) {
					continue // fetched from its urls by clients, as from any registry
				}
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			r.blobs[cd.Digest] = ocispec.Descriptor{MediaType: cd.MediaType, Digest: cd.Digest, Size: cd.Size}
		}
		refs, err := h.layout.Referrers(ctx, r.Source, d)
		if err != nil {
			return err
		}
		for _, ref := range refs {
			if !slices.ContainsFunc(r.referrers[d.Digest], func(x ocispec.Descriptor) bool { return x.Digest == ref.Digest }) {
				r.referrers[d.Digest] = append(r.referrers[d.Digest], ref)
			}
			stack = append(stack, ocispec.Descriptor{MediaType: ref.MediaType, Digest: ref.Digest, Size: ref.Size})
		}
	}
	return nil
}

// readManifest reads a manifest whole, its digest and size checked.
func (h *Handler) readManifest(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > archive.MaxManifestSize {
		return nil, archive.ManifestTooLarge(d.Digest.String(), d.Size)
	}
	rc, err := h.layout.Fetch(ctx, "", d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return data, nil
}

func repoLabel(r *Repository) string {
	if r.Source != "" {
		return r.Source
	}
	return r.Name
}

// sample lists at most 5 names.
func sample(names []string) string {
	if len(names) > 5 {
		return fmt.Sprintf("%s and %d more", joinComma(names[:5]), len(names)-5)
	}
	return joinComma(names)
}

func joinComma(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}
