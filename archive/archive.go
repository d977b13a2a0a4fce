// Package archive is regvault's backup format: a standard OCI image layout
// whose index.json names each backed-up tag and records each referrer's
// source repositories. Sinks write it and restore reads it through this
// package, so both agree on every name and annotation. docs/format.md
// specifies it.
package archive

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
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

// AnnotationRepository is set on index.json itself (the index's own
// annotations, which oras and other readers ignore) when the layout names
// its tags by the tag alone: the one repository (registry/path) they are
// tags of. A later backup into the same directory reads it to refuse
// mixing the tags of two repositories (see CheckAdd).
const AnnotationRepository = "dev.regvault.repository"

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

// KindOf picks the output form from the --output name (docs/format.md,
// Forms): "-" is standard output, .tar, .tar.gz/.tgz and .tar.zst/.tzst
// (any case) are files, anything else a directory.
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
// or, with fullRef, by registry/repo:tag; one entry per referrer, without a
// name, recording its repositories; one entry per other manifest (the
// children of an index), without a name, recording its repositories, so
// that tools which find a layout's manifests by its index.json entries
// (oras) find them; and one entry per referrers tag-schema index that g
// holds (see TagSchema), named sha256-<hex> or registry/repo:sha256-<hex>.
// Entries are sorted. Named by the tag alone, the index records its
// repository (AnnotationRepository).
func Index(g *graph.Graph, fullRef bool) ocispec.Index {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	listed := map[digest.Digest]bool{}
	for _, t := range g.Tags() {
		d := graph.Plain(t.Desc)
		name := t.Name
		if fullRef {
			name = graph.FullRepo(g.Registry, t.Repo) + ":" + t.Name
		} else {
			idx.Annotations = map[string]string{AnnotationRepository: graph.FullRepo(g.Registry, t.Repo)}
		}
		d.Annotations = map[string]string{ocispec.AnnotationRefName: name}
		idx.Manifests = append(idx.Manifests, d)
		listed[d.Digest] = true
	}
	for _, ts := range TagSchema(g, fullRef) {
		if g.Node(ts.Desc.Digest) == nil {
			continue // not added to g: not in the archive
		}
		d := ts.Desc
		d.Annotations = map[string]string{ocispec.AnnotationRefName: ts.Name}
		idx.Manifests = append(idx.Manifests, d)
		listed[d.Digest] = true
	}
	fullRepos := func(repos []string) string {
		full := make([]string, len(repos))
		for i, repo := range repos {
			full[i] = graph.FullRepo(g.Registry, repo)
		}
		sort.Strings(full)
		return strings.Join(full, ",")
	}
	for _, r := range g.Referrers() {
		d := r.Desc
		d.Annotations = map[string]string{AnnotationRepositories: fullRepos(r.Repos)}
		idx.Manifests = append(idx.Manifests, d)
		listed[d.Digest] = true
	}
	for _, n := range g.Nodes() {
		if n.Kind != graph.KindManifest || listed[n.Desc.Digest] {
			continue
		}
		d := graph.Plain(n.Desc)
		d.Annotations = map[string]string{AnnotationRepositories: fullRepos(n.Repos)}
		idx.Manifests = append(idx.Manifests, d)
	}
	Sort(idx.Manifests)
	return idx
}

// TagSchemaIndex is an index of the referrers of one subject, as the
// referrers tag schema of the distribution spec keeps it in a registry
// without the Referrers API, and as oras backups and regctl's OCI layouts
// hold it: index.json names it sha256-<hex of the subject digest>.
type TagSchemaIndex struct {
	// Name is its ref.name: sha256-<hex>, or registry/repo:sha256-<hex>
	// in a full-reference archive.
	Name    string
	Subject digest.Digest
	// Repos are the repositories (paths) of the referrers it lists.
	Repos     []string
	Referrers []digest.Digest // sorted
	Desc      ocispec.Descriptor
	Content   []byte
}

// TagSchema builds the tag-schema index of every subject of g's referrers:
// per repository and subject with fullRef, per subject otherwise (a
// tag-only archive holds one repository). Each lists the referrers by
// digest, each with its artifact type and annotations read from its
// manifest, so that the same referrers always give the same bytes. Sorted
// by name.
func TagSchema(g *graph.Graph, fullRef bool) []TagSchemaIndex {
	type key struct {
		repo    string
		subject digest.Digest
	}
	groups := map[key][]graph.Referrer{}
	for _, r := range g.Referrers() {
		if fullRef {
			for _, repo := range r.Repos {
				k := key{repo, r.Subject}
				groups[k] = append(groups[k], r)
			}
			continue
		}
		k := key{"", r.Subject}
		groups[k] = append(groups[k], r)
	}
	out := make([]TagSchemaIndex, 0, len(groups))
	for k, refs := range groups {
		if k.subject.Validate() != nil {
			continue
		}
		ts := TagSchemaIndex{Name: TagSchemaTag(k.subject), Subject: k.subject}
		if fullRef {
			ts.Name = graph.FullRepo(g.Registry, k.repo) + ":" + ts.Name
		}
		list := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
		list.SchemaVersion = 2
		for _, r := range refs {
			list.Manifests = append(list.Manifests, referrerDescriptor(g, r))
			ts.Referrers = append(ts.Referrers, r.Desc.Digest)
			if fullRef {
				ts.Repos = []string{k.repo}
			} else {
				for _, repo := range r.Repos {
					if !slices.Contains(ts.Repos, repo) {
						ts.Repos = append(ts.Repos, repo)
					}
				}
			}
		}
		sort.Strings(ts.Repos)
		sort.Slice(list.Manifests, func(i, j int) bool { return list.Manifests[i].Digest < list.Manifests[j].Digest })
		slices.Sort(ts.Referrers)
		content, err := Marshal(list)
		if err != nil {
			continue // descriptors always encode
		}
		ts.Content = content
		ts.Desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(content), Size: int64(len(content))}
		out = append(out, ts)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TagSchemaTag is the tag of the referrers tag schema for subject:
// <algorithm>-<encoded>, the encoded part cut to 64 characters.
func TagSchemaTag(subject digest.Digest) string {
	enc := subject.Encoded()
	if len(enc) > 64 {
		enc = enc[:64]
	}
	return subject.Algorithm().String() + "-" + enc
}

// tagSchemaTagRE is a ref.name's tag part in the tag schema's form.
var tagSchemaTagRE = regexp.MustCompile(`^[a-z0-9]+-[a-f0-9]{64}$`)

// IsTagSchema says whether an index.json entry is a referrers tag-schema
// index rather than a tag: its tag (the part of ref.name after the
// repository) has the schema's form (sha256-<64 hex>) and it is an OCI
// image index, as the schema requires.
func IsTagSchema(tag, mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex && tagSchemaTagRE.MatchString(tag)
}

// referrerDescriptor is r as a referrers list shows it: media type,
// digest, size, artifact type (the manifest's, else its config's media
// type) and the manifest's annotations.
func referrerDescriptor(g *graph.Graph, r graph.Referrer) ocispec.Descriptor {
	d := graph.Plain(r.Desc)
	d.ArtifactType = r.Desc.ArtifactType
	if n := g.Node(r.Desc.Digest); n != nil && n.Content != nil {
		var m struct {
			ArtifactType string              `json:"artifactType"`
			Config       *ocispec.Descriptor `json:"config"`
			Annotations  map[string]string   `json:"annotations"`
		}
		if json.Unmarshal(n.Content, &m) == nil {
			d.ArtifactType = m.ArtifactType
			if d.ArtifactType == "" && m.Config != nil {
				d.ArtifactType = m.Config.MediaType
			}
			if len(m.Annotations) > 0 {
				d.Annotations = m.Annotations
			}
		}
	}
	return d
}

// AddTagSchema adds the tag-schema indexes of g (TagSchema) to g as
// manifest nodes, for an archive sink to write with the rest, and returns
// them.
func AddTagSchema(g *graph.Graph, fullRef bool) []TagSchemaIndex {
	list := TagSchema(g, fullRef)
	for _, ts := range list {
		for _, repo := range ts.Repos {
			g.AddNode(repo, ts.Desc, graph.KindManifest)
		}
		g.SetManifest(ts.Desc.Digest, ts.Content, ts.Referrers)
	}
	return list
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
	if len(old.Annotations) > 0 {
		out.Annotations = cloneAnnotations(old.Annotations)
		for k, v := range add.Annotations {
			out.Annotations[k] = v
		}
	}
	out.Manifests = make([]ocispec.Descriptor, 0, len(byKey))
	for _, d := range byKey {
		out.Manifests = append(out.Manifests, d)
	}
	Sort(out.Manifests)
	return out
}

// Moved is a tag that a backup into an existing directory moved: the
// directory named From under Name, the new backup names To.
type Moved struct {
	Name     string
	From, To digest.Digest
}

// MovedTags lists the tags of old that add names with another digest,
// sorted by name.
func MovedTags(old, add ocispec.Index) []Moved {
	was := map[string]digest.Digest{}
	for _, d := range old.Manifests {
		if name, ok := d.Annotations[ocispec.AnnotationRefName]; ok {
			was[name] = d.Digest
		}
	}
	var out []Moved
	for _, d := range add.Manifests {
		name, ok := d.Annotations[ocispec.AnnotationRefName]
		if !ok {
			continue
		}
		if _, tag := SplitRef(name); IsTagSchema(tag, d.MediaType) {
			continue // a referrers list, not a tag: it grows with new referrers
		}
		if from, ok := was[name]; ok && from != d.Digest {
			out = append(out, Moved{Name: name, From: from, To: d.Digest})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// MixError refuses a backup into a directory whose layout names its tags
// in a way the new backup cannot add to without losing or mixing tags.
type MixError struct{ Msg string }

func (e *MixError) Error() string { return e.Msg }

// CheckAdd says whether a backup may add its tags to a layout whose index
// is old (see Merge): named registry/repository:tag with fullRef, else by
// the tag alone as tags of repo (registry/path). Tags named by the tag
// alone belong to one repository: the one old records in
// AnnotationRepository. Adding the same repository is fine (its tags are
// updated); adding another one, adding full references to tag-only names
// or tag-only names to full references, or adding to tag-only names whose
// repository is not recorded (a layout written by another tool, or by
// regvault before it recorded it) would mix or replace the tags of
// different repositories, and is refused with a *MixError that says how
// to proceed. The message starts with what the layout holds; the caller
// prefixes its name.
func CheckAdd(old ocispec.Index, fullRef bool, repo string) error {
	oldRepo := old.Annotations[AnnotationRepository]
	var oldShort, oldFull []string
	for _, d := range old.Manifests {
		name, ok := d.Annotations[ocispec.AnnotationRefName]
		if !ok {
			continue
		}
		r, tag := SplitRef(name)
		if IsTagSchema(tag, d.MediaType) {
			// Named as the tags are, but no tag: kept out of messages.
			name = ""
		}
		if r == "" {
			oldShort = append(oldShort, name)
		} else {
			oldFull = append(oldFull, name)
		}
	}
	const fresh = "back up into a new directory (with --full-reference to keep several repositories in one)"
	switch {
	case fullRef && (oldRepo != "" || len(oldShort) > 0):
		what := "tags named by the tag alone (" + sample(oldShort) + ")"
		if oldRepo != "" {
			what = "the tags of " + oldRepo + " named by the tag alone"
		}
		return &MixError{Msg: "holds " + what + "; adding tags named registry/repository:tag would mix the two kinds of names: " +
			"add to it without --full-reference (the same repository only), or " + fresh}
	case fullRef:
		return nil
	case len(oldFull) > 0:
		return &MixError{Msg: "names its tags registry/repository:tag (" + sample(oldFull) + "); adding those of " + repo +
			" named by the tag alone would mix the two kinds of names: add to it with --full-reference, or " + fresh}
	case oldRepo != "" && oldRepo != repo:
		return &MixError{Msg: "holds the tags of " + oldRepo + ", named by the tag alone; adding those of " + repo +
			" would mix the tags of two repositories (a tag of the same name would replace the other's): " + fresh}
	case oldRepo == "" && len(oldShort) > 0:
		return &MixError{Msg: "holds tags named by the tag alone (" + sample(oldShort) + ") and does not record their repository " +
			"(written by another tool, or by an older regvault); adding those of " + repo + " could replace or mix the tags of another repository: " + fresh}
	}
	return nil
}

// sample names a few of names (leaving out ""), for a message.
func sample(names []string) string {
	names = slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == "" })
	if len(names) == 0 {
		return "referrers lists only"
	}
	sort.Strings(names)
	const show = 3
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:show], ", ") + ", …"
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

// AnnotationImageName is the full image name (registry/repository:tag)
// that containerd, and `docker save` of Docker 25 and later, record on an
// index.json entry next to a ref.name that holds the tag alone.
const AnnotationImageName = "io.containerd.image.name"

// RefName is the name an index.json entry is read under: its
// org.opencontainers.image.ref.name, or, where that holds only a tag and
// io.containerd.image.name is a full name with the same tag (docker save,
// regctl image export), that full name: such an archive names each image's
// repository, as a --full-reference backup does. named is false for an
// entry without a ref.name.
func RefName(annotations map[string]string) (name string, named bool) {
	name, named = annotations[ocispec.AnnotationRefName]
	if !named || name == "" {
		return name, named
	}
	full := annotations[AnnotationImageName]
	if repo, _ := SplitRef(name); repo != "" || strings.Contains(name, "@") || full == "" || strings.Contains(full, "@") {
		return name, named
	}
	if repo, tag := SplitRef(full); repo != "" && tag == name {
		return full, true
	}
	return name, named
}
