package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/archive"
)

// Layouts is several backups read as one source (restore --input a
// --input b): the parts of a sharded backup, say. Its entries are the
// union of theirs; a blob that several hold is read from one of them
// (Holder), once; the same repository:tag at different manifests in two
// backups is refused when the Layouts are made, naming both.
type Layouts struct {
	list []*Layout
	// pref is the order a blob's holder is looked for in: backups read
	// with random access first (they know at once what they hold), then
	// streams; each in the order given.
	pref []*Layout

	mu     sync.Mutex
	holder map[digest.Digest]*Layout
	// reach is, per streamed backup, the digests its entries reach
	// (manifests read as the stream passes them; built on first need):
	// a stream knows whether it holds a blob only once it has passed it.
	reach map[*Layout]map[digest.Digest]bool
}

// OpenLayouts opens each backup (OpenLayout; at most one may be "-",
// stdin) and makes them one source. On error, those opened are closed.
func OpenLayouts(ctx context.Context, paths []string, stdin io.Reader, spoolDir string) (*Layouts, error) {
	if len(paths) == 0 {
		return nil, errors.New("no backup given")
	}
	if n := slices.Index(paths, "-"); n >= 0 && slices.Index(paths[n+1:], "-") >= 0 {
		return nil, errors.New("standard input (-) given twice as a backup: it can be read once")
	}
	var list []*Layout
	closeAll := func() {
		for _, l := range list {
			_ = l.Close()
		}
	}
	for _, p := range paths {
		l, err := OpenLayout(ctx, p, stdin, spoolDir)
		if err != nil {
			closeAll()
			return nil, err
		}
		list = append(list, l)
	}
	ls, err := NewLayouts(list...)
	if err != nil {
		closeAll()
		return nil, err
	}
	return ls, nil
}

// NewLayouts makes opened backups one source. It refuses a tag that two
// backups give different manifests (a tag moved between their backups:
// which one to restore is the user's choice, not regvault's).
func NewLayouts(list ...*Layout) (*Layouts, error) {
	if len(list) == 0 {
		return nil, errors.New("no backup given")
	}
	type seen struct {
		d digest.Digest
		l *Layout
	}
	tags := map[string]seen{}
	for _, l := range list {
		for _, e := range l.entries {
			if !e.IsTag() {
				continue
			}
			k := e.Repo + ":" + e.Tag
			if s, ok := tags[k]; ok && s.l != l && s.d != e.Desc.Digest {
				name := k
				if e.Repo == "" {
					name = "tag " + e.Tag + " (of the one repository of a tag-only backup)"
				}
				return nil, fmt.Errorf("%s is %s in backup %s and %s in backup %s: the backups do not agree; restore them apart, or leave one out",
					name, s.d, s.l.name(), e.Desc.Digest, l.name())
			} else if !ok {
				tags[k] = seen{e.Desc.Digest, l}
			}
		}
	}
	ls := &Layouts{list: list, holder: map[digest.Digest]*Layout{}, reach: map[*Layout]map[digest.Digest]bool{}}
	for _, stream := range []bool{false, true} {
		for _, l := range list {
			if l.Streaming() == stream {
				ls.pref = append(ls.pref, l)
			}
		}
	}
	return ls, nil
}

// Layouts are the backups, in the order given.
func (ls *Layouts) Layouts() []*Layout { return slices.Clone(ls.list) }

// Entries is the union of the backups' index.json entries, in the order
// given: an entry that several backups list alike (the same tag at the
// same manifest, or the same unnamed manifest, whose recorded
// repositories are then united) comes once.
func (ls *Layouts) Entries() []archive.Entry {
	var out []archive.Entry
	at := map[string]int{}
	for _, l := range ls.list {
		for _, e := range l.entries {
			k := fmt.Sprintf("%t\x00%s\x00%s\x00%s\x00%s\x00%t", e.Referrer, e.Repo, e.Tag, e.TagSchema, e.Desc.Digest, e.Digested)
			i, ok := at[k]
			if !ok {
				at[k] = len(out)
				e.Repos = slices.Clone(e.Repos)
				out = append(out, e)
				continue
			}
			if e.Referrer {
				// Known repositories unite; unknown (nil) anywhere stays
				// unknown: the referrer may be in any repository.
				if out[i].Repos == nil || e.Repos == nil {
					out[i].Repos = nil
				} else {
					rs := append(out[i].Repos, e.Repos...)
					sort.Strings(rs)
					out[i].Repos = slices.Compact(rs)
				}
			}
		}
	}
	return out
}

// Tags lists the tags of repo in any of the backups, sorted.
func (ls *Layouts) Tags(ctx context.Context, repo string) ([]string, error) {
	var all []string
	for _, l := range ls.list {
		tags, err := l.Tags(ctx, repo)
		if errors.Is(err, errdef.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		all = append(all, tags...)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("repository %q: %w in backups %s", repo, errdef.ErrNotFound, ls.names())
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// Resolve returns the manifest tag of repo points at, from the backup
// that holds the tag. Two backups whose entries both match (repo a path
// that two registries' full names share) and differ are an error.
func (ls *Layouts) Resolve(ctx context.Context, repo, tag string) (ocispec.Descriptor, []byte, error) {
	var (
		desc ocispec.Descriptor
		body []byte
		from *Layout
	)
	for _, l := range ls.list {
		d, b, err := l.Resolve(ctx, repo, tag)
		if errors.Is(err, errdef.ErrNotFound) && !isMissing(err) {
			continue
		}
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		if from == nil {
			desc, body, from = d, b, l
		} else if d.Digest != desc.Digest {
			return ocispec.Descriptor{}, nil, fmt.Errorf("%s:%s is ambiguous: %s in backup %s, %s in backup %s",
				repo, tag, desc.Digest, from.name(), d.Digest, l.name())
		}
	}
	if from == nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s:%s: %w in backups %s", repo, tag, errdef.ErrNotFound, ls.names())
	}
	return desc, body, nil
}

// isMissing says whether err is content an archive lists but does not
// hold (a damaged backup), as opposed to a tag it does not list.
func isMissing(err error) bool {
	var m *MissingError
	return errors.As(err, &m)
}

// Fetch opens desc from the backup that holds it (Holder).
func (ls *Layouts) Fetch(ctx context.Context, repo string, desc ocispec.Descriptor) (io.ReadCloser, error) {
	l, err := ls.Holder(ctx, desc)
	if err != nil {
		return nil, err
	}
	return l.Fetch(ctx, repo, desc)
}

// Holder is the backup desc is read from: the first, in the order given,
// of those read with random access that holds it, else the first stream
// whose entries reach it. The answer is kept: a blob is read from one
// backup however often it is asked for. Content no backup holds is an
// error wrapping errdef.ErrNotFound.
func (ls *Layouts) Holder(ctx context.Context, desc ocispec.Descriptor) (*Layout, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("fetching %q: %w", desc.Digest, err)
	}
	ls.mu.Lock()
	l, ok := ls.holder[desc.Digest]
	ls.mu.Unlock()
	if ok {
		return l, nil
	}
	for _, l := range ls.pref {
		var has bool
		if l.Streaming() {
			reach, err := ls.reached(ctx, l)
			if err != nil {
				return nil, err
			}
			has = reach[desc.Digest]
		} else {
			var err error
			if has, err = l.Has(ctx, "", desc); err != nil {
				return nil, err
			}
		}
		if has {
			ls.mu.Lock()
			ls.holder[desc.Digest] = l
			ls.mu.Unlock()
			return l, nil
		}
	}
	if len(ls.list) == 1 {
		return ls.list[0], nil // its own error, as one backup gives it
	}
	return nil, &MissingError{Name: desc.Digest.String() + " (in none of " + ls.names() + ")"}
}

// reached is what the entries of streamed backup l reach: every entry,
// and the children of every manifest among them, recursively (what a
// complete backup holds). Manifests come first in a stream written by
// regvault, and are kept in memory once read.
func (ls *Layouts) reached(ctx context.Context, l *Layout) (map[digest.Digest]bool, error) {
	ls.mu.Lock()
	r, ok := ls.reach[l]
	ls.mu.Unlock()
	if ok {
		return r, nil
	}
	r = map[digest.Digest]bool{}
	var stack []ocispec.Descriptor
	for _, e := range l.entries {
		stack = append(stack, e.Desc)
	}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if r[d.Digest] {
			continue
		}
		r[d.Digest] = true
		if !archive.MayHaveSubject(d.MediaType) {
			continue
		}
		body, err := l.manifest(ctx, d)
		if err != nil {
			if errors.Is(err, errdef.ErrNotFound) {
				continue // not held: the walk says so, naming the tag
			}
			return nil, fmt.Errorf("backup %s: %w", l.name(), err)
		}
		m, err := parseManifest(d, body)
		if err != nil {
			continue // the walk reports a damaged manifest with its tag
		}
		for _, b := range m.blobs {
			r[b.desc.Digest] = true
		}
		stack = append(stack, m.manifests...)
	}
	ls.mu.Lock()
	ls.reach[l] = r
	ls.mu.Unlock()
	return r, nil
}

// Referrers lists the referrers of desc in repo in any of the backups,
// each once, sorted by digest.
func (ls *Layouts) Referrers(ctx context.Context, repo string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	for _, l := range ls.list {
		refs, err := l.Referrers(ctx, repo, desc)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if !slices.ContainsFunc(out, func(o ocispec.Descriptor) bool { return o.Digest == r.Digest }) {
				out = append(out, r)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// Has says whether some backup holds desc: true when one does, else
// ErrNotKnownYet when a stream has not reached it, else false.
func (ls *Layouts) Has(ctx context.Context, repo string, desc ocispec.Descriptor) (bool, error) {
	var later bool
	for _, l := range ls.pref {
		ok, err := l.Has(ctx, repo, desc)
		switch {
		case errors.Is(err, ErrNotKnownYet):
			later = true
		case err != nil:
			return false, err
		case ok:
			return true, nil
		}
	}
	if later {
		return false, ErrNotKnownYet
	}
	return false, nil
}

// Check says, without reading it, whether a backup holds desc at its
// size, as Layout.Check: nil when one does.
func (ls *Layouts) Check(ctx context.Context, desc ocispec.Descriptor) error {
	var first error
	for _, l := range ls.pref {
		err := l.Check(ctx, desc)
		if err == nil {
			return nil
		}
		if first == nil || errors.Is(first, errdef.ErrNotFound) && !errors.Is(err, errdef.ErrNotFound) {
			first = err // a size that differs says more than not found
		}
	}
	if len(ls.list) > 1 && errors.Is(first, errdef.ErrNotFound) {
		return &MissingError{Name: desc.Digest.String() + " (in none of " + ls.names() + ")"}
	}
	return first
}

// Verifies reports that Fetch's readers check digest and size.
func (ls *Layouts) Verifies() bool { return true }

// Streaming says whether any backup is read as a stream.
func (ls *Layouts) Streaming() bool {
	return slices.ContainsFunc(ls.list, (*Layout).Streaming)
}

// Notes are the backups' notes, each naming its backup when there are
// several.
func (ls *Layouts) Notes() []string {
	var out []string
	for _, l := range ls.list {
		for _, n := range l.Notes() {
			if len(ls.list) > 1 {
				n = l.name() + ": " + n
			}
			out = append(out, n)
		}
	}
	return out
}

// Finish reads each streamed backup to its end (Layout.Finish).
func (ls *Layouts) Finish(ctx context.Context) error {
	var errs []error
	for _, l := range ls.list {
		errs = append(errs, l.Finish(ctx))
	}
	return errors.Join(errs...)
}

// Close closes every backup.
func (ls *Layouts) Close() error {
	var errs []error
	for _, l := range ls.list {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

func (ls *Layouts) names() string {
	names := make([]string, len(ls.list))
	for i, l := range ls.list {
		names[i] = l.name()
	}
	return strings.Join(names, ", ")
}
