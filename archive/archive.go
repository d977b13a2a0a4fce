// Package archive is regvault's backup format: a standard OCI image layout
// whose index.json names each backed-up tag and records each referrer's
// source repositories. Sinks write it and restore reads it through this
// package, so both agree on every name and annotation.
package archive

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/graph"
)

// AnnotationRepositories is set on a referrer's index.json entry: the
// source repositories (registry/path, comma-separated, sorted) it was
// backed up from.
const AnnotationRepositories = "dev.regvault.repositories"

// Kind is the form a backup takes on disk.
type Kind int

const (
	Directory Kind = iota
	Tar
	TarGzip
	TarZstd
	Stdout // plain tar on standard output
)

func (k Kind) String() string {
	return [...]string{"directory", "tar", "tar.gz", "tar.zst", "stdout"}[k]
}

// KindOf picks the output form from the --output name, as DESIGN.md says.
func KindOf(name string) Kind {
	lower := strings.ToLower(name)
	switch {
	case name == "-":
		return Stdout
	case strings.HasSuffix(lower, ".tar"):
		return Tar
	case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		return TarGzip
	case strings.HasSuffix(lower, ".tar.zst"), strings.HasSuffix(lower, ".tzst"):
		return TarZstd
	default:
		return Directory
	}
}

// BlobPath is the path of a blob inside a layout, slash-separated:
// blobs/<algorithm>/<encoded>.
func BlobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// LayoutFile is the content of oci-layout.
var LayoutFile = []byte(`{"imageLayoutVersion":"1.0.0"}`)

// Index builds index.json for g: one entry per tag, named by the tag alone
// or, with fullRef, by registry/repo:tag; then one entry per referrer,
// without a name, recording its repositories. Entries are sorted.
func Index(g *graph.Graph, fullRef bool) ocispec.Index {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	for _, t := range g.Tags() {
		d := graph.Plain(t.Desc)
		name := t.Name
		if fullRef {
			name = graph.FullRepo(g.Registry, t.Repo) + ":" + t.Name
		}
		d.Annotations = map[string]string{ocispec.AnnotationRefName: name}
		idx.Manifests = append(idx.Manifests, d)
	}
	for _, r := range g.Referrers() {
		d := r.Desc
		full := make([]string, len(r.Repos))
		for i, repo := range r.Repos {
			full[i] = graph.FullRepo(g.Registry, repo)
		}
		d.Annotations = map[string]string{AnnotationRepositories: strings.Join(full, ",")}
		idx.Manifests = append(idx.Manifests, d)
	}
	return idx
}

// Merge adds the entries of add to old, as when a backup is written into a
// directory that already holds one: a tag entry replaces the old entry of
// the same name, a referrer's repositories are united. The result is sorted.
func Merge(old, add ocispec.Index) ocispec.Index {
	byKey := map[string]ocispec.Descriptor{}
	for _, list := range [][]ocispec.Descriptor{old.Manifests, add.Manifests} {
		for _, d := range list {
			if name, ok := d.Annotations[ocispec.AnnotationRefName]; ok {
				byKey["t"+name] = d
				continue
			}
			key := "r" + d.Digest.String()
			if prev, ok := byKey[key]; ok {
				d.Annotations = cloneAnnotations(d.Annotations)
				d.Annotations[AnnotationRepositories] = unionList(
					prev.Annotations[AnnotationRepositories], d.Annotations[AnnotationRepositories])
			}
			byKey[key] = d
		}
	}
	out := add
	out.Manifests = make([]ocispec.Descriptor, 0, len(byKey))
	for _, d := range byKey {
		out.Manifests = append(out.Manifests, d)
	}
	Sort(out.Manifests)
	return out
}

// Sort orders index entries: named entries by (repository, tag), then
// unnamed ones by digest.
func Sort(ds []ocispec.Descriptor) {
	sort.SliceStable(ds, func(i, j int) bool {
		ni, iok := ds[i].Annotations[ocispec.AnnotationRefName]
		nj, jok := ds[j].Annotations[ocispec.AnnotationRefName]
		if iok != jok {
			return iok
		}
		if !iok {
			return ds[i].Digest < ds[j].Digest
		}
		ri, ti := SplitRef(ni)
		rj, tj := SplitRef(nj)
		if ri != rj {
			return ri < rj
		}
		return ti < tj
	})
}

// SplitRef splits a ref.name into repository and tag. A tag-only name has
// an empty repository.
func SplitRef(name string) (repo, tag string) {
	i := strings.LastIndexByte(name, ':')
	if i < 0 || strings.Contains(name[i+1:], "/") {
		// no colon, or the only colon is a registry port: not a full ref
		if !strings.Contains(name, "/") {
			return "", name
		}
		return name, ""
	}
	return name[:i], name[i+1:]
}

// Marshal encodes an index the same way every time: no HTML escaping, no
// indentation, a trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func cloneAnnotations(a map[string]string) map[string]string {
	out := make(map[string]string, len(a))
	for k, v := range a {
		out[k] = v
	}
	return out
}

func unionList(a, b string) string {
	set := map[string]bool{}
	for _, s := range strings.Split(a+","+b, ",") {
		if s != "" {
			set[s] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
