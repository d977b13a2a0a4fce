package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/source"
)

// nearbyMax is how many names an error lists at most.
const nearbyMax = 10

// Backup is an open backup for the inspection commands: repo ls, repo
// tags, manifest fetch, discover.
type Backup struct {
	Layout   *source.Layout
	Contents Contents
}

// Open opens the backup at path ("-": stdin) in any form restore reads: a
// directory, a tar, a gzip- or zstd-compressed tar (read as a stream,
// never extracted).
func Open(ctx context.Context, path string, stdin io.Reader) (*Backup, error) {
	l, err := source.OpenLayout(ctx, path, stdin, "")
	if err != nil {
		return nil, err
	}
	return &Backup{Layout: l, Contents: ContentsOf(l.Entries())}, nil
}

// Close releases the backup.
func (b *Backup) Close() error { return b.Layout.Close() }

// Name is how messages name the backup.
func (b *Backup) Name() string {
	if p := b.Layout.Path(); p != "-" {
		return p
	}
	return "on standard input"
}

// NotFoundError is an inspection command's "not found": what was asked
// for, and what the backup holds nearby.
type NotFoundError struct {
	Msg string
}

func (e *NotFoundError) Error() string { return e.Msg }

func (e *NotFoundError) Is(target error) bool { return target == errdef.ErrNotFound }

// Listing formats names for an error: one a line, indented, at most
// nearbyMax of them (the nearest to want), with how many were left out.
func Listing(names []string, want string) string {
	near := Nearby(names, want, nearbyMax)
	var sb strings.Builder
	for _, n := range near {
		sb.WriteString("\n  " + n)
	}
	if len(names) > len(near) {
		fmt.Fprintf(&sb, "\n  ... and %d more", len(names)-len(near))
	}
	return sb.String()
}

// repoNotFound says that repo is not in the backup, and what is.
func (b *Backup) repoNotFound(repo string) error {
	c := b.Contents
	if below := c.Below(repo); len(below) > 0 {
		return &NotFoundError{Msg: fmt.Sprintf("%q is not a repository in the backup %s, but it holds repositories under it (list them with 'regvault repo ls --oci-layout-path %s %s'):%s",
			repo, b.Name(), b.Layout.Path(), repo, Listing(below, ""))}
	}
	if len(c.Repos) == 0 {
		return &NotFoundError{Msg: fmt.Sprintf("repository %q is not in the backup %s: it names no repository at all", repo, b.Name())}
	}
	if ref, err := ParseReference(repo); err == nil {
		if found := c.FindRepo(ref.Repo); len(found) == 1 {
			return &NotFoundError{Msg: fmt.Sprintf("%q is a reference, not a repository: give the repository alone, %s", repo, found[0])}
		}
	}
	msg := fmt.Sprintf("repository %q is not in the backup %s. Repositories in it:%s", repo, b.Name(), Listing(c.Repos, repo))
	if len(c.Unnamed) > 0 {
		msg += fmt.Sprintf("\nand %d tag(s) without a repository name: %s", len(c.Unnamed), strings.Join(c.Unnamed, ", "))
	}
	return &NotFoundError{Msg: msg}
}

// checkRepo returns the full name of repo in the backup ("" when the
// backup is tag-only: any name stands for its one repository), or an
// error naming the repositories it holds.
func (b *Backup) checkRepo(repo string) (string, error) {
	if b.Contents.TagOnly() {
		return "", nil
	}
	found := b.Contents.FindRepo(repo)
	switch len(found) {
	case 0:
		return "", b.repoNotFound(repo)
	case 1:
		return found[0], nil
	}
	return "", &NotFoundError{Msg: fmt.Sprintf("%q is ambiguous in the backup %s: give the full name, one of:%s", repo, b.Name(), Listing(found, repo))}
}

// Tags lists the tags of repo, sorted. In a tag-only backup any repo
// names its one repository, as oras does.
func (b *Backup) Tags(ctx context.Context, repo string) ([]string, error) {
	if b.Contents.TagOnly() {
		return append([]string(nil), b.Contents.Unnamed...), nil
	}
	full, err := b.checkRepo(repo)
	if err != nil {
		return nil, err
	}
	tags, err := b.Layout.Tags(ctx, full)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, &NotFoundError{Msg: fmt.Sprintf("repository %s has no tags in the backup %s (it is named only as the source of referrers)", full, b.Name())}
	}
	return tags, err
}

// tagsOf formats repo's tags with their digests for an error.
func (b *Backup) tagsOf(full string) string {
	var lines []string
	for _, e := range b.Layout.Entries() {
		if e.Tag != "" && (e.Repo == full || e.Repo == "") {
			lines = append(lines, fmt.Sprintf("%s (%s)", e.Tag, e.Desc.Digest))
		}
	}
	if len(lines) == 0 {
		return " none"
	}
	return Listing(lines, "")
}

// repoName is how output names the repository the user gave.
func repoName(full, given string) string {
	if full != "" {
		return full
	}
	return given
}

// Resolved is a manifest found by reference.
type Resolved struct {
	// Repo is the repository's full name in the backup; the name given
	// for a tag-only backup.
	Repo string
	// Desc is the manifest's descriptor, without the backup's own
	// annotations (ref.name, repositories).
	Desc ocispec.Descriptor
	// Content is the manifest's bytes exactly as stored, verified.
	Content []byte
}

// Reference is Repo@digest, as oras prints a resolved reference.
func (r Resolved) Reference() string { return r.Repo + "@" + r.Desc.Digest.String() }

// Resolve finds the manifest ref names: a tag of a repository, or a
// manifest (tagged, a child of an index, or a referrer) of the repository
// by digest.
func (b *Backup) Resolve(ctx context.Context, ref Reference) (Resolved, error) {
	full, err := b.checkRepo(ref.Repo)
	if err != nil {
		return Resolved{}, err
	}
	name := repoName(full, ref.Repo)
	if ref.Digest == "" {
		tags, err := b.Tags(ctx, ref.Repo)
		if err != nil {
			return Resolved{}, err
		}
		if !slices.Contains(tags, ref.Tag) {
			return Resolved{}, &NotFoundError{Msg: fmt.Sprintf("tag %q of %s is not in the backup %s. Its tags:%s", ref.Tag, name, b.Name(), b.tagsOf(full))}
		}
		desc, data, err := b.Layout.Resolve(ctx, name, ref.Tag)
		if err != nil {
			return Resolved{}, fmt.Errorf("%s:%s: %w", name, ref.Tag, err)
		}
		return Resolved{Repo: name, Desc: plainDesc(desc), Content: data}, nil
	}
	desc, found, err := b.findManifest(ctx, full, ref.Digest)
	if err != nil {
		return Resolved{}, err
	}
	if !found {
		return Resolved{}, &NotFoundError{Msg: fmt.Sprintf("%s is not a manifest of %s in the backup %s. Its tags:%s", ref.Digest, name, b.Name(), b.tagsOf(full))}
	}
	if !archive.IsManifest(desc.MediaType) {
		return Resolved{}, fmt.Errorf("%s in %s is a blob (%s), not a manifest", ref.Digest, name, desc.MediaType)
	}
	data, err := b.read(ctx, full, desc)
	if err != nil {
		return Resolved{}, err
	}
	return Resolved{Repo: name, Desc: plainDesc(desc), Content: data}, nil
}

// plainDesc drops the backup's own annotations from a descriptor.
func plainDesc(d ocispec.Descriptor) ocispec.Descriptor {
	if len(d.Annotations) == 0 {
		return d
	}
	a := map[string]string{}
	for k, v := range d.Annotations {
		if k != ocispec.AnnotationRefName && k != archive.AnnotationRepositories {
			a[k] = v
		}
	}
	if len(a) == 0 {
		a = nil
	}
	d.Annotations = a
	return d
}

// read reads a manifest whole, verified.
func (b *Backup) read(ctx context.Context, repo string, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxManifest {
		return nil, archive.ManifestTooLarge(desc.Digest.String(), desc.Size)
	}
	rc, err := b.Layout.Fetch(ctx, repo, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	return data, nil
}

// findManifest looks for dgst among the descriptors reachable from the
// index.json entries of repo (full name; "" in a tag-only backup): its
// tags, their children, and its referrers. It reads manifests only.
func (b *Backup) findManifest(ctx context.Context, full string, dgst digest.Digest) (ocispec.Descriptor, bool, error) {
	var queue []ocispec.Descriptor
	for _, e := range b.Layout.Entries() {
		mine := e.Repo == full || e.Repo == "" && !e.Referrer
		if e.Referrer {
			mine = e.Repos == nil || full == "" || slices.Contains(e.Repos, full)
		}
		if !mine {
			continue
		}
		if e.Desc.Digest == dgst {
			return e.Desc, true, nil
		}
		queue = append(queue, e.Desc)
	}
	seen := map[digest.Digest]bool{}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.Digest] || !archive.IsManifest(d.MediaType) {
			continue
		}
		seen[d.Digest] = true
		data, err := b.read(ctx, full, d)
		if err != nil {
			return ocispec.Descriptor{}, false, err
		}
		m, err := parseSummary(data)
		if err != nil {
			return ocispec.Descriptor{}, false, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		mt := d.MediaType
		if mt == "" {
			mt = m.MediaType
		}
		kids, _ := m.children(mt)
		for _, c := range kids {
			if c.desc.Digest == dgst {
				return c.desc, true, nil
			}
			queue = append(queue, c.desc)
		}
	}
	return ocispec.Descriptor{}, false, nil
}

// Tree is a manifest and the referrers found for it, recursively, as
// `oras discover --format json` prints it.
type Tree struct {
	Reference    string            `json:"reference"`
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Referrers    []*Tree           `json:"referrers"`
}

// Discover finds the referrers of the manifest ref names, and theirs,
// recursively.
func (b *Backup) Discover(ctx context.Context, ref Reference) (*Tree, error) {
	res, err := b.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	// The repository referrers are recorded under. A tag-only backup
	// written by regvault records its one repository for the referrers:
	// use that name, whatever name was given for the tags.
	repo := res.Repo
	if b.Contents.TagOnly() && len(b.Contents.Recorded) == 1 {
		repo = b.Contents.Recorded[0]
	}
	root := &Tree{Reference: res.Reference(), MediaType: res.Desc.MediaType, Digest: res.Desc.Digest, Size: res.Desc.Size}
	if root.MediaType == "" {
		var m manifestSummary
		if json.Unmarshal(res.Content, &m) == nil {
			root.MediaType = m.MediaType
		}
	}
	seen := map[digest.Digest]bool{root.Digest: true}
	var walk func(t *Tree) error
	walk = func(t *Tree) error {
		refs, err := b.Layout.Referrers(ctx, repo, ocispec.Descriptor{MediaType: t.MediaType, Digest: t.Digest, Size: t.Size})
		if err != nil {
			return err
		}
		t.Referrers = []*Tree{}
		for _, r := range refs {
			if seen[r.Digest] {
				continue // a cycle
			}
			seen[r.Digest] = true
			child := &Tree{
				Reference:    res.Repo + "@" + r.Digest.String(),
				MediaType:    r.MediaType,
				Digest:       r.Digest,
				Size:         r.Size,
				ArtifactType: r.ArtifactType,
				Annotations:  r.Annotations,
			}
			t.Referrers = append(t.Referrers, child)
			if err := walk(child); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	return root, nil
}

// Count is the number of referrers in the tree, at every depth.
func (t *Tree) Count() int {
	n := 0
	for _, r := range t.Referrers {
		n += 1 + r.Count()
	}
	return n
}
