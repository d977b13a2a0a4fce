package graph

import (
	"fmt"
	"strings"
)

// Repository is a repository on a registry: the registry host (with its
// port, if any) and the path there, e.g. {"127.0.0.1:5000", "library/alpine"}.
type Repository struct {
	Registry string
	Path     string
}

// String is the full name "registry/path".
func (r Repository) String() string { return r.Registry + "/" + r.Path }

// ParseRepository splits a full name "registry/path" at its first "/":
// the registry is everything before it, whatever it looks like.
func ParseRepository(s string) (Repository, error) {
	host, path, ok := strings.Cut(s, "/")
	if !ok || path == "" {
		return Repository{}, fmt.Errorf("%q is not host/repository", s)
	}
	return Repository{Registry: host, Path: path}, nil
}

// Compare orders repositories by their full names, not field by field:
// "a.b/x" sorts before "a/y" as a string ('.' < '/') but after it by
// registry ("a" < "a.b"). Which target repository gets an upload rather
// than a mount follows this order, so it must stay the string order.
func Compare(a, b Repository) int { return strings.Compare(a.String(), b.String()) }
