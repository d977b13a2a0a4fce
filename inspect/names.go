// Package inspect reads a backup (an OCI image layout written by regvault or
// oras) without restoring it: it lists its repositories and tags, finds
// manifests and referrers, and verifies every blob and every manifest's
// references. The CLI prints what it finds.
package inspect

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/archive"
)

// Contents is what a backup's index.json names (archive.Summarize).
type Contents = archive.Contents

// ContentsOf reads index.json's entries.
func ContentsOf(entries []archive.Entry) Contents { return archive.Summarize(entries) }

// Nearby returns up to n of names, those most like want first: the same
// last path element, a shared prefix, a small edit distance. All of names
// when there are at most n.
func Nearby(names []string, want string, n int) []string {
	if len(names) <= n {
		return slices.Clone(names)
	}
	type scored struct {
		name  string
		score int
	}
	last := func(s string) string { return s[strings.LastIndexByte(s, '/')+1:] }
	list := make([]scored, len(names))
	for i, name := range names {
		s := editDistance(archive.RepoPath(name), archive.RepoPath(want))
		if last(name) == last(want) {
			s -= 100
		}
		if strings.HasPrefix(name, want) || strings.HasPrefix(archive.RepoPath(name), want) {
			s -= 50
		}
		list[i] = scored{name, s}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].score < list[j].score })
	out := make([]string, 0, n)
	for _, s := range list[:n] {
		out = append(out, s.name)
	}
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Reference is REPO:TAG or REPO@DIGEST as the inspection commands take it.
type Reference struct {
	Repo   string
	Tag    string        // "" with a digest
	Digest digest.Digest // "" with a tag
}

func (r Reference) String() string {
	if r.Digest != "" {
		return r.Repo + "@" + r.Digest.String()
	}
	return r.Repo + ":" + r.Tag
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ParseReference reads REPO:TAG or REPO@DIGEST. REPO is a full name
// (registry/path) or a path without the registry.
func ParseReference(s string) (Reference, error) {
	const form = "expected <repository>:<tag> or <repository>@<digest>, e.g. docker.io/library/alpine:3.19"
	if repo, dgst, ok := strings.Cut(s, "@"); ok {
		d := digest.Digest(dgst)
		if err := d.Validate(); err != nil {
			return Reference{}, fmt.Errorf("%q: invalid digest %q: %v", s, dgst, err)
		}
		// repo:tag@digest: the digest decides, as docker does.
		if r, t := archive.SplitRef(repo); r != "" && t != "" {
			repo = r
		}
		if repo == "" {
			return Reference{}, fmt.Errorf("%q has no repository: %s", s, form)
		}
		return Reference{Repo: repo, Digest: d}, nil
	}
	if !strings.Contains(s, ":") {
		return Reference{}, fmt.Errorf("%q has no tag: %s", s, form)
	}
	repo, tag := archive.SplitRef(s)
	switch {
	case tag == "":
		return Reference{}, fmt.Errorf("%q has no tag: %s", s, form)
	case repo == "":
		return Reference{}, fmt.Errorf("%q has no repository: %s", s, form)
	case !tagRE.MatchString(tag):
		return Reference{}, fmt.Errorf("%q: invalid tag %q: a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with . or -", s, tag)
	}
	return Reference{Repo: repo, Tag: tag}, nil
}
