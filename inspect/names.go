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
	"github.com/regvault/regvault/source"
)

// Contents is what a backup's index.json names.
type Contents struct {
	// Repos are the full names (registry/path) of the repositories the
	// backup names, sorted: those of tagged entries and those recorded
	// for referrers.
	Repos []string
	// Unnamed are the tags of entries without a repository (a tag-only
	// backup, as oras v1.3 writes a single repository), sorted.
	Unnamed []string
	// Recorded is, for a backup whose tags are all unnamed, the
	// repositories its referrers record (regvault writes them even for a
	// single repository); nil otherwise.
	Recorded []string
}

// TagOnly says whether the backup names no repository: every tag is
// unnamed.
func (c Contents) TagOnly() bool { return len(c.Repos) == 0 && len(c.Unnamed) > 0 }

// ContentsOf reads index.json's entries.
func ContentsOf(entries []source.LayoutEntry) Contents {
	repos := map[string]bool{}
	unnamed := map[string]bool{}
	recorded := map[string]bool{}
	for _, e := range entries {
		switch {
		case e.Referrer:
			for _, r := range e.Repos {
				recorded[r] = true
			}
		case e.Repo != "":
			repos[e.Repo] = true
		case e.Tag != "":
			unnamed[e.Tag] = true
		}
	}
	c := Contents{Unnamed: sortedKeys(unnamed)}
	if len(repos) == 0 && len(unnamed) > 0 {
		// A tag-only backup: the referrers' repositories are the only
		// names it records; they are not listed as repositories.
		c.Recorded = sortedKeys(recorded)
		return c
	}
	for r := range recorded {
		repos[r] = true
	}
	c.Repos = sortedKeys(repos)
	return c
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RepoPath is a full repository name without its registry host, as the
// layout reader compares names (docker.io/library/alpine → library/alpine).
func RepoPath(full string) string {
	return source.LayoutEntry{Repo: full}.RepoPath()
}

// RepoMatches says whether repo (a full name, or a path without the
// registry) names the backup's repository full.
func RepoMatches(full, repo string) bool {
	return full == repo || RepoPath(full) == repo
}

// FindRepo returns the backup's repositories that repo names: one, or
// several when repo is a path found under more than one registry.
func (c Contents) FindRepo(repo string) []string {
	var out []string
	for _, r := range c.Repos {
		if r == repo {
			return []string{r}
		}
		if RepoMatches(r, repo) {
			out = append(out, r)
		}
	}
	return out
}

// Below lists the repositories under prefix (a full name or a path without
// the registry, with or without a trailing slash), relative to it, sorted;
// "" lists every repository by its full name.
func (c Contents) Below(prefix string) []string {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return slices.Clone(c.Repos)
	}
	set := map[string]bool{}
	for _, r := range c.Repos {
		for _, name := range []string{r, RepoPath(r)} {
			if rest, ok := strings.CutPrefix(name, prefix+"/"); ok && rest != "" {
				set[rest] = true
			}
		}
	}
	return sortedKeys(set)
}

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
		s := editDistance(RepoPath(name), RepoPath(want))
		if last(name) == last(want) {
			s -= 100
		}
		if strings.HasPrefix(name, want) || strings.HasPrefix(RepoPath(name), want) {
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
