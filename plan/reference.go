// Package plan turns command-line references, flags and rules files into a
// Plan: which repositories and tags, where each goes. All validation
// happens here, before any byte moves.
package plan

import (
	"fmt"
	"strings"

	"oras.land/oras-go/v2/registry"
)

// UsageError is bad input found before anything was done (exit code 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// RepoRef is one `<registry>/<repository>[:<tag>[,<tag>...]]` argument.
type RepoRef struct {
	Registry   string
	Repository string
	Tags       []string // nil: every tag
}

// ParseRepoRef parses `<registry>/<repository>[:<tag>[,<tag>...]]`.
func ParseRepoRef(s string) (RepoRef, error) {
	if s == "" {
		return RepoRef{}, usagef("empty reference: expected <registry>/<repository>[:<tag>[,<tag>...]]")
	}
	slash := strings.IndexByte(s, '/')
	if slash <= 0 {
		return RepoRef{}, usagef("%q has no repository: expected <registry>/<repository>[:<tag>[,<tag>...]], e.g. localhost:5000/library/alpine:3.19", s)
	}
	host, rest := s[:slash], s[slash+1:]
	if strings.Contains(rest, "@") {
		return RepoRef{}, usagef("%q: digest references are not supported; name tags (repo:tag1,tag2) or none for all tags", s)
	}
	var tags []string
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		list := rest[i+1:]
		rest = rest[:i]
		if list == "" {
			return RepoRef{}, usagef("%q ends with ':' but names no tag: drop the ':' to back up every tag", s)
		}
		// A set, not a search of the list: a plan's source names every
		// tag of a repository, tens of thousands of them.
		seen := map[string]bool{}
		for _, t := range strings.Split(list, ",") {
			ref := registry.Reference{Registry: host, Repository: rest, Reference: t}
			if t == "" || ref.ValidateReferenceAsTag() != nil {
				return RepoRef{}, usagef("%q: invalid tag %q: %s", s, t, tagRule)
			}
			if !seen[t] {
				seen[t] = true
				tags = append(tags, t)
			}
		}
	}
	ref := registry.Reference{Registry: host, Repository: rest}
	if err := ref.ValidateRegistry(); err != nil {
		return RepoRef{}, usagef("%q: invalid registry %q", s, host)
	}
	if err := ref.ValidateRepository(); err != nil {
		return RepoRef{}, usagef("%q: invalid repository name %q: use lowercase letters, digits and separators (. _ - /)", s, rest)
	}
	return RepoRef{Registry: host, Repository: rest, Tags: tags}, nil
}

// String formats the reference as it was given (tags comma-separated).
func (r RepoRef) String() string {
	s := r.Registry + "/" + r.Repository
	if len(r.Tags) > 0 {
		s += ":" + strings.Join(r.Tags, ",")
	}
	return s
}
