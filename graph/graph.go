// Package graph holds the content graph that one run moves: every manifest,
// index and blob reached from the selected tags (and their referrers), with
// the repositories each piece of content was reached from. Sources build it,
// sinks consume it; it is the one data structure shared across the pipeline.
package graph

import (
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Kind says what role a node plays; it fixes the node's place in an archive
// (manifests first, then configs, then layers) so that a stream reader knows
// the whole plan before the first large blob arrives.
type Kind int

const (
	KindManifest Kind = iota // image manifest or index (any media type)
	KindConfig               // referenced as a manifest's config
	KindLayer                // everything else: layers, blobs of artifacts
)

func (k Kind) String() string {
	switch k {
	case KindManifest:
		return "manifest"
	case KindConfig:
		return "config"
	default:
		return "layer"
	}
}

// Node is one piece of content, stored once however often it is reached.
type Node struct {
	Desc ocispec.Descriptor
	Kind Kind
	// Content holds a manifest's bytes (manifests are small and needed to
	// walk the graph); it is nil for blobs, which are always streamed.
	Content []byte
	// Children are the digests this manifest references (config, layers,
	// index children, subject excluded): what must exist before it.
	Children []digest.Digest
	// Repos are the repositories the node was reached from, sorted: the
	// source repositories of a backup, the target repositories of a
	// restore or copy.
	Repos []string
	// From are the source repositories the node can be read from, sorted,
	// when they are not its Repos (read them with Sources): for a restore
	// or copy, the source repositories whose tags reached it, so that a
	// target that several sources are consolidated into reads each node
	// where it is. nil for a backup, which reads each node where it is
	// reached: one list of repositories per node, not two.
	From []string
}

// Sources are the source repositories n can be read from, sorted.
func (n *Node) Sources() []string {
	if n.From != nil {
		return n.From
	}
	return n.Repos
}

// Tag is one backed-up tag: a repository, a tag name and its root.
type Tag struct {
	Repo string // source repository path without the registry, e.g. library/alpine
	Name string
	Desc ocispec.Descriptor
}

// Referrer is a referrer manifest that was backed up, and the repositories
// it was found in, so that a restore puts it back there and nowhere else.
type Referrer struct {
	Desc    ocispec.Descriptor
	Subject digest.Digest
	Repos   []string
}

// Absent is a non-distributable layer that was left out: the source does
// not hold it (clients fetch it from its urls). The manifests that list it
// are moved without it.
type Absent struct {
	Desc  ocispec.Descriptor // as the manifest gives it, urls included
	Repos []string           // the repositories it was reached from, sorted
}

// Graph is everything one run moves. It is safe for concurrent use while it
// is being built; once built it is read-only.
type Graph struct {
	// Registry is the source registry host (e.g. docker.io, 127.0.0.1:5000).
	Registry string

	mu        sync.Mutex
	nodes     map[digest.Digest]*Node
	tags      []Tag
	referrers map[digest.Digest]*Referrer
	absent    map[digest.Digest]*Absent
	absentOf  map[digest.Digest][]digest.Digest // manifest → its absent layers
	optional  map[digest.Digest][]listing       // layer → the manifests that list it
}

// listing is a manifest, reached from a repository, that lists a layer.
type listing struct {
	repo     string
	manifest digest.Digest
	desc     ocispec.Descriptor
}

// New returns an empty graph for content from registry.
func New(registry string) *Graph {
	return &Graph{
		Registry:  registry,
		nodes:     map[digest.Digest]*Node{},
		referrers: map[digest.Digest]*Referrer{},
		absent:    map[digest.Digest]*Absent{},
		absentOf:  map[digest.Digest][]digest.Digest{},
		optional:  map[digest.Digest][]listing{},
	}
}

// AddOptional records that the layer desc of manifest, reached from repo,
// is a node the source may or may not hold (a non-distributable layer
// further on in a stream): it is moved if the source has it, else left
// out (LeaveOut) when the source finds it does not.
func (g *Graph) AddOptional(repo string, manifest digest.Digest, desc ocispec.Descriptor) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.ContainsFunc(g.optional[desc.Digest], func(l listing) bool { return l.repo == repo && l.manifest == manifest }) {
		g.optional[desc.Digest] = append(g.optional[desc.Digest], listing{repo: repo, manifest: manifest, desc: desc})
	}
}

// Optional says whether the node d may be left out (AddOptional).
func (g *Graph) Optional(d digest.Digest) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.optional[d]) > 0
}

// HasOptional says whether any node is optional.
func (g *Graph) HasOptional() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.optional) > 0
}

// OptionalDescs returns the optional nodes' descriptors with a repository
// each was reached from.
func (g *Graph) OptionalDescs() map[string][]ocispec.Descriptor {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string][]ocispec.Descriptor{}
	for _, ls := range g.optional {
		out[ls[0].repo] = append(out[ls[0].repo], ls[0].desc)
	}
	return out
}

// Keep settles an optional node as held: it is moved like any other.
func (g *Graph) Keep(d digest.Digest) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.optional, d)
}

// LeaveOut settles an optional node as not held: it leaves the graph and
// is recorded absent for every manifest that lists it, as AddAbsent.
func (g *Graph) LeaveOut(d digest.Digest) {
	g.mu.Lock()
	ls := g.optional[d]
	delete(g.optional, d)
	delete(g.nodes, d)
	g.mu.Unlock()
	for _, l := range ls {
		g.AddAbsent(l.repo, l.manifest, l.desc)
	}
}

// AddAbsent records that the layer desc of manifest, reached from repo,
// is left out: the source does not hold it.
func (g *Graph) AddAbsent(repo string, manifest digest.Digest, desc ocispec.Descriptor) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.absent[desc.Digest]
	if a == nil {
		a = &Absent{Desc: desc}
		g.absent[desc.Digest] = a
	}
	a.Repos = addSorted(a.Repos, repo)
	if !slices.Contains(g.absentOf[manifest], desc.Digest) {
		g.absentOf[manifest] = append(g.absentOf[manifest], desc.Digest)
	}
}

// Absent returns the layers left out, sorted by digest.
func (g *Graph) Absent() []Absent {
	g.mu.Lock()
	out := make([]Absent, 0, len(g.absent))
	for _, a := range g.absent {
		out = append(out, *a)
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Desc.Digest < out[j].Desc.Digest })
	return out
}

// AbsentOf returns the layers of manifest that were left out.
func (g *Graph) AbsentOf(manifest digest.Digest) []digest.Digest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.absentOf[manifest])
}

// AddNode records content reached from repo. It returns the stored node and
// whether this call created it (the caller that creates a manifest node is
// the one that walks its children).
func (g *Graph) AddNode(repo string, desc ocispec.Descriptor, kind Kind) (*Node, bool) {
	return g.AddNodeFrom(repo, repo, desc, kind)
}

// AddNodeFrom is AddNode for content reached in repo through the source
// repository from (a restore or copy: repo is the target).
func (g *Graph) AddNodeFrom(repo, from string, desc ocispec.Descriptor, kind Kind) (*Node, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, ok := g.nodes[desc.Digest]
	if !ok {
		n = &Node{Desc: Plain(desc), Kind: kind}
		g.nodes[desc.Digest] = n
	}
	// A blob used both as a config and as a layer is stored as a config:
	// the lower kind sorts first and keeps small things at the head.
	if kind < n.Kind {
		n.Kind = kind
	}
	if from != repo && n.From == nil {
		// Until now read where reached (every add had from == repo).
		n.From = append(make([]string, 0, len(n.Repos)+1), n.Repos...) // not nil, even empty
	}
	n.Repos = addSorted(n.Repos, repo)
	if n.From != nil {
		n.From = addSorted(n.From, from)
	}
	return n, !ok
}

// SourcesOf is the node of d's Sources as they are now, a copy (nil
// for no such node): safe while a walk still adds to them.
func (g *Graph) SourcesOf(d digest.Digest) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.nodes[d]
	if n == nil {
		return nil
	}
	return slices.Clone(n.Sources())
}

// SetManifest records a manifest's bytes and children.
func (g *Graph) SetManifest(d digest.Digest, content []byte, children []digest.Digest) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.nodes[d]; n != nil {
		n.Content = content
		n.Children = children
	}
}

// AddTag records a backed-up tag.
func (g *Graph) AddTag(t Tag) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Desc = Plain(t.Desc)
	g.tags = append(g.tags, t)
}

// AddReferrer records a referrer manifest found in repo.
func (g *Graph) AddReferrer(repo string, desc ocispec.Descriptor, subject digest.Digest) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.referrers[desc.Digest]
	if r == nil {
		d := Plain(desc)
		d.ArtifactType = desc.ArtifactType
		r = &Referrer{Desc: d, Subject: subject}
		g.referrers[desc.Digest] = r
	}
	r.Repos = addSorted(r.Repos, repo)
}

// Node returns the node for d, or nil.
func (g *Graph) Node(d digest.Digest) *Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodes[d]
}

// Nodes returns every node in archive order: manifests, then configs, then
// layers, each group sorted by digest. The order depends on content alone,
// so the same content always gives the same archive.
func (g *Graph) Nodes() []*Node {
	g.mu.Lock()
	out := make([]*Node, 0, len(g.nodes))
	for _, n := range g.nodes {
		out = append(out, n)
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Desc.Digest < out[j].Desc.Digest
	})
	return out
}

// Tags returns the tags sorted by repository, then tag.
func (g *Graph) Tags() []Tag {
	g.mu.Lock()
	out := slices.Clone(g.tags)
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repo != out[j].Repo {
			return out[i].Repo < out[j].Repo
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Referrers returns the referrers sorted by digest.
func (g *Graph) Referrers() []Referrer {
	g.mu.Lock()
	out := make([]Referrer, 0, len(g.referrers))
	for _, r := range g.referrers {
		out = append(out, *r)
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Desc.Digest < out[j].Desc.Digest })
	return out
}

// Size is the total size of all unique content.
func (g *Graph) Size() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s int64
	for _, n := range g.nodes {
		s += n.Desc.Size
	}
	return s
}

// Len is the number of unique nodes.
func (g *Graph) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.nodes)
}

// RemoveRepo forgets everything that only repo reached, for a repository
// that failed after part of its graph was recorded: the backup of the
// others must not carry half of it.
func (g *Graph) RemoveRepo(repo string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for d, n := range g.nodes {
		n.Repos = slices.DeleteFunc(n.Repos, func(r string) bool { return r == repo })
		if len(n.Repos) == 0 {
			delete(g.nodes, d)
		}
		if len(n.From) > 1 {
			// A failed repository is no place to read from (a restore's
			// targets are not among its sources anyway). The last
			// source stays: it is where the node was found.
			n.From = slices.DeleteFunc(n.From, func(r string) bool { return r == repo })
		}
	}
	for d, a := range g.absent {
		a.Repos = slices.DeleteFunc(a.Repos, func(r string) bool { return r == repo })
		if len(a.Repos) == 0 {
			delete(g.absent, d)
		}
	}
	for d, ls := range g.optional {
		ls = slices.DeleteFunc(ls, func(l listing) bool { return l.repo == repo })
		if len(ls) == 0 {
			delete(g.optional, d)
		} else {
			g.optional[d] = ls
		}
	}
	g.tags = slices.DeleteFunc(g.tags, func(t Tag) bool { return t.Repo == repo })
	for d, r := range g.referrers {
		r.Repos = slices.DeleteFunc(r.Repos, func(x string) bool { return x == repo })
		if len(r.Repos) == 0 {
			delete(g.referrers, d)
		}
	}
}

// Plain keeps the fields of a descriptor that identify content: what an
// archive's index and a registry need, and nothing a registry added.
func Plain(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

// FullRepo joins a registry host and a repository path.
func FullRepo(registry, repo string) string {
	return strings.TrimSuffix(registry, "/") + "/" + repo
}

func addSorted(list []string, s string) []string {
	i, found := slices.BinarySearch(list, s)
	if found {
		return list
	}
	return slices.Insert(list, i, s)
}
