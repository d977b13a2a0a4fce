package planfile

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
)

// Validate checks everything Read checks: the version, names, digests,
// sizes, the order of every list (sorted, no duplicates), that every
// digest a tag, a manifest's children or a referrer names is in Content
// with the same size and media type, and that every piece of content is
// needed by some tag.
func (p *Plan) Validate() error {
	_, err := p.validate()
	return err
}

// validate is Validate, and gives the index it builds on the way (a pod
// of a sharded run needs it next: ReadIndex).
func (p *Plan) validate() (*Index, error) {
	if p.Version != Version {
		return nil, fmt.Errorf("plan format version %d is not supported: this regvault reads version %d", p.Version, Version)
	}
	if err := (registry.Reference{Registry: p.Registry}).ValidateRegistry(); err != nil || p.Registry == "" {
		return nil, fmt.Errorf("plan: registry %q is not a registry host (host[:port])", p.Registry)
	}
	// The places in messages are made only for an error: a plan holds
	// hundreds of thousands of entries.
	for i, c := range p.Content {
		where := func() string { return fmt.Sprintf("content[%d]", i) }
		if err := checkDigest(where, c.Digest); err != nil {
			return nil, err
		}
		if i > 0 && p.Content[i-1].Digest >= c.Digest {
			return nil, orderError(where(), "content", "digest", string(p.Content[i-1].Digest), string(c.Digest))
		}
		if c.Size < 0 {
			return nil, fmt.Errorf("plan: %s %s: size %d is negative", where(), c.Digest, c.Size)
		}
		if c.MediaType == "" {
			return nil, fmt.Errorf("plan: %s %s: no mediaType", where(), c.Digest)
		}
		switch c.Kind {
		case KindManifest:
		case KindConfig, KindLayer:
			if len(c.Children) > 0 {
				return nil, fmt.Errorf("plan: %s %s: a %s has no children", where(), c.Digest, c.Kind)
			}
		default:
			return nil, fmt.Errorf("plan: %s %s: kind %q is not one of %s, %s, %s", where(), c.Digest, c.Kind, KindManifest, KindConfig, KindLayer)
		}
	}
	x := NewIndex(p)
	manifest := func(where func() string, d digest.Digest, i int32) (int, error) {
		if i < 0 {
			// Not in Content (whose digests are checked above): say
			// whether it is a digest at all.
			if err := checkDigest(where, d); err != nil {
				return 0, err
			}
			return 0, fmt.Errorf("plan: %s: %s is not in the plan's content", where(), d)
		}
		if p.Content[i].Kind != KindManifest {
			return 0, fmt.Errorf("plan: %s: %s is a %s in the plan's content, not a manifest", where(), d, p.Content[i].Kind)
		}
		return int(i), nil
	}
	for i, c := range p.Content {
		if int(x.childStart[i+1]-x.childStart[i]) == len(c.Children) {
			// NewIndex found every child in Content, whose digests are
			// checked above: nothing to look up twice.
			continue
		}
		for j, d := range c.Children {
			where := func() string { return fmt.Sprintf("content[%d] %s: children[%d]", i, c.Digest, j) }
			if err := checkDigest(where, d); err != nil {
				return nil, err
			}
			if _, ok := x.lookup(d); !ok {
				return nil, fmt.Errorf("plan: %s: %s is not in the plan's content", where(), d)
			}
		}
	}
	for i, r := range p.Repositories {
		where := func() string { return fmt.Sprintf("repositories[%d]", i) }
		if err := (registry.Reference{Registry: p.Registry, Repository: r.Name}).ValidateRepository(); err != nil {
			return nil, fmt.Errorf("plan: %s: %q is not a repository name", where(), r.Name)
		}
		if i > 0 && p.Repositories[i-1].Name >= r.Name {
			return nil, orderError(where(), "repositories", "name", p.Repositories[i-1].Name, r.Name)
		}
		for j, t := range r.Tags {
			where := func() string { return fmt.Sprintf("repository %s: tags[%d] %s", r.Name, j, t.Name) }
			if !validTag(t.Name) {
				return nil, fmt.Errorf("plan: %s: %q is not a tag name", where(), t.Name)
			}
			if j > 0 && r.Tags[j-1].Name >= t.Name {
				return nil, orderError(where(), "tags of "+r.Name, "name", r.Tags[j-1].Name, t.Name)
			}
			ci, err := manifest(where, t.Digest, x.roots[int(x.tagStart[i])+j])
			if err != nil {
				return nil, err
			}
			if c := p.Content[ci]; c.Size != t.Size || c.MediaType != t.MediaType {
				return nil, fmt.Errorf("plan: %s: %s is %s of %d bytes, the plan's content gives %s of %d bytes",
					where(), t.Digest, t.MediaType, t.Size, c.MediaType, c.Size)
			}
		}
	}
	for i, r := range p.Referrers {
		where := func() string { return fmt.Sprintf("referrers[%d]", i) }
		if !p.IncludeReferrers {
			return nil, fmt.Errorf("plan: %s: the plan lists referrers but includeReferrers is false", where())
		}
		if _, err := manifest(where, r.Digest, x.find(r.Digest)); err != nil {
			return nil, err
		}
		if i > 0 && p.Referrers[i-1].Digest >= r.Digest {
			return nil, orderError(where(), "referrers", "digest", string(p.Referrers[i-1].Digest), string(r.Digest))
		}
		if _, err := manifest(func() string { return where() + " " + string(r.Digest) + ": subject" }, r.Subject, x.find(r.Subject)); err != nil {
			return nil, err
		}
		if len(r.Repositories) == 0 {
			return nil, fmt.Errorf("plan: %s %s: no repositories", where(), r.Digest)
		}
		for j, name := range r.Repositories {
			if j > 0 && r.Repositories[j-1] >= name {
				return nil, orderError(fmt.Sprintf("%s %s: repositories[%d]", where(), r.Digest, j), "repositories of a referrer", "name", r.Repositories[j-1], name)
			}
			if p.Repository(name) == nil {
				return nil, fmt.Errorf("plan: %s %s: repository %q is not one of the plan's repositories", where(), r.Digest, name)
			}
		}
	}
	// Everything listed is needed by some tag: a plan's unique bytes are
	// what a run moves, nothing else.
	for i, ok := range x.reached() {
		if !ok {
			return nil, fmt.Errorf("plan: content %s is needed by no tag of the plan", p.Content[i].Digest)
		}
	}
	return x, nil
}

func checkDigest(where func() string, d digest.Digest) error {
	// sha256 by hand (the common case, and go-digest's check is a
	// regular expression: a plan holds hundreds of thousands of digests).
	if s := string(d); len(s) == 71 && s[:7] == "sha256:" && lowerHex(s[7:]) {
		return nil
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("plan: %s: %q is not a digest: %v", where(), string(d), err)
	}
	return nil
}

// validTag is the distribution spec's tag rule, [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127},
// by hand (oras-go's check is a regular expression).
func validTag(t string) bool {
	if len(t) == 0 || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || i > 0 && (c == '.' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

func orderError(where, list, key, prev, cur string) error {
	if prev == cur {
		return fmt.Errorf("plan: %s: %s %q is listed twice in the %s", where, key, cur, list)
	}
	return fmt.Errorf("plan: %s: the %s are not sorted by %s (%q after %q): the plan file was edited or damaged; make it again with regvault plan", where, list, key, cur, prev)
}

func searchRepo(rs []Repository, name string) (int, bool) {
	return slices.BinarySearchFunc(rs, name, func(r Repository, n string) int { return strings.Compare(r.Name, n) })
}

func searchTag(ts []Tag, name string) (int, bool) {
	return slices.BinarySearchFunc(ts, name, func(t Tag, n string) int { return strings.Compare(t.Name, n) })
}

// Sort puts every list of p in the plan file's order; a builder calls it
// before Encode.
func (p *Plan) Sort() {
	sort.Slice(p.Repositories, func(i, j int) bool { return p.Repositories[i].Name < p.Repositories[j].Name })
	for _, r := range p.Repositories {
		sort.Slice(r.Tags, func(i, j int) bool { return r.Tags[i].Name < r.Tags[j].Name })
	}
	sort.Slice(p.Content, func(i, j int) bool { return p.Content[i].Digest < p.Content[j].Digest })
	sort.Slice(p.Referrers, func(i, j int) bool { return p.Referrers[i].Digest < p.Referrers[j].Digest })
	for _, r := range p.Referrers {
		slices.Sort(r.Repositories)
	}
}

func searchContent(cs []Content, d digest.Digest) (int, bool) {
	return slices.BinarySearchFunc(cs, d, func(c Content, d digest.Digest) int { return strings.Compare(string(c.Digest), string(d)) })
}

func lowerHex(s string) bool {
	var bad byte
	for i := 0; i < len(s); i++ {
		bad |= notLowerHex[s[i]]
	}
	return bad == 0
}

// notLowerHex is 1 for every byte that is not 0-9 or a-f: one lookup a
// byte and no branch (a plan's digests are most of its bytes).
var notLowerHex = func() (t [256]byte) {
	for c := range t {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			t[c] = 1
		}
	}
	return t
}()
