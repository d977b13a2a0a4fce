package sink

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

const testRegistry = "registry.example:5000"

// fixture is a hand-built graph and the bytes of every node.
type fixture struct {
	g       *graph.Graph
	content map[digest.Digest][]byte
	tags    map[string]digest.Digest // ref.name as written without --full-reference → digest
}

func newFixture() *fixture {
	return &fixture{g: graph.New(testRegistry), content: map[digest.Digest][]byte{}, tags: map[string]digest.Digest{}}
}

func (f *fixture) blob(repo string, kind graph.Kind, mediaType string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	f.content[d.Digest] = data
	f.g.AddNode(repo, d, kind)
	return d
}

func (f *fixture) manifest(t *testing.T, repo string, artifactType string, config ocispec.Descriptor, layers []ocispec.Descriptor, subject *ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       config,
		Layers:       layers,
		Subject:      subject,
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	d := f.blob(repo, graph.KindManifest, ocispec.MediaTypeImageManifest, b)
	children := []digest.Digest{config.Digest}
	for _, l := range layers {
		children = append(children, l.Digest)
	}
	f.g.SetManifest(d.Digest, b, children)
	return d
}

func (f *fixture) index(t *testing.T, repo string, manifests ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: manifests,
	}
	b, err := json.Marshal(idx)
	require.NoError(t, err)
	d := f.blob(repo, graph.KindManifest, ocispec.MediaTypeImageIndex, b)
	var children []digest.Digest
	for _, m := range manifests {
		children = append(children, m.Digest)
	}
	f.g.SetManifest(d.Digest, b, children)
	return d
}

func (f *fixture) tag(repo, name string, d ocispec.Descriptor) {
	f.g.AddTag(graph.Tag{Repo: repo, Name: name, Desc: d})
	f.tags[graph.FullRepo(testRegistry, repo)+":"+name] = d.Digest
}

// image adds a small image (config and layers from the given strings) to repo.
func (f *fixture) image(t *testing.T, repo, config string, layers ...string) ocispec.Descriptor {
	t.Helper()
	c := f.blob(repo, graph.KindConfig, ocispec.MediaTypeImageConfig, []byte(config))
	var ls []ocispec.Descriptor
	for _, l := range layers {
		ls = append(ls, f.blob(repo, graph.KindLayer, ocispec.MediaTypeImageLayerGzip, []byte(l)))
	}
	return f.manifest(t, repo, "", c, ls, nil)
}

// multiRepo is two repositories sharing content, with an index, and a
// referrer found in both.
func multiRepo(t *testing.T) *fixture {
	f := newFixture()
	m1 := f.image(t, "library/alpine", `{"architecture":"amd64","os":"linux"}`, "layer one", "layer two")
	m2 := f.image(t, "library/alpine", `{"architecture":"arm64","os":"linux"}`, "layer two", "layer three")
	i1 := f.index(t, "library/alpine", m1, m2)
	f.tag("library/alpine", "v1", m1)
	f.tag("library/alpine", "v2", i1)
	f.image(t, "team/app", `{"architecture":"arm64","os":"linux"}`, "layer two", "layer three")
	f.tag("team/app", "latest", m2)
	for _, repo := range []string{"library/alpine", "team/app"} {
		empty := f.blob(repo, graph.KindConfig, ocispec.MediaTypeEmptyJSON, []byte("{}"))
		sbom := f.blob(repo, graph.KindLayer, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`))
		r := f.manifest(t, repo, "application/vnd.example.sbom", empty, []ocispec.Descriptor{sbom}, &m1)
		r.ArtifactType = "application/vnd.example.sbom"
		f.g.AddReferrer(repo, r, m1.Digest)
	}
	return f
}

// singleRepo is one repository with two tags.
func singleRepo(t *testing.T) *fixture {
	f := newFixture()
	m1 := f.image(t, "library/alpine", `{"architecture":"amd64"}`, "alpha", "beta")
	m2 := f.image(t, "library/alpine", `{"architecture":"arm64"}`, "beta", "gamma")
	f.tag("library/alpine", "v1", m1)
	f.tag("library/alpine", "v2", m2)
	return f
}

// open opens a node's bytes, as the pipeline does: a manifest's from its
// Content (the tag-schema indexes the sink adds have no other source).
func (f *fixture) open(n *graph.Node) Opener {
	if n.Content != nil {
		return once(bytes.NewReader(n.Content))
	}
	return once(bytes.NewReader(f.content[n.Desc.Digest]))
}

// once is an Opener of r.
func once(r io.Reader) Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(r), nil }
}

// openCount counts the readers opened and closed through wrapped Openers.
type openCount struct{ opened, closed atomic.Int64 }

func (c *openCount) wrap(o Opener) Opener {
	return func() (io.ReadCloser, error) {
		rc, err := o()
		if err != nil {
			return nil, err
		}
		c.opened.Add(1)
		return struct {
			io.Reader
			io.Closer
		}{rc, closerFunc(func() error { c.closed.Add(1); return rc.Close() })}, nil
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// run feeds every node Prepare asks for through Write (in order, or
// concurrently in a shuffled order for AnyOrder) and commits.
func run(t *testing.T, s Sink, f *fixture) []*graph.Node {
	t.Helper()
	need := prepareAndWrite(t, s, f)
	require.NoError(t, s.Commit(context.Background()))
	require.NoError(t, s.Abort(), "Abort after Commit does nothing")
	return need
}

func prepareAndWrite(t *testing.T, s Sink, f *fixture) []*graph.Node {
	t.Helper()
	ctx := context.Background()
	need, ord, err := s.Prepare(ctx, f.g)
	require.NoError(t, err)
	var count openCount
	defer func() {
		require.Equal(t, int64(len(need)), count.opened.Load(), "each node opened once")
		require.Equal(t, count.opened.Load(), count.closed.Load(), "every reader closed")
	}()
	if ord == InOrder {
		for _, n := range need {
			require.NoError(t, s.Write(ctx, n, count.wrap(f.open(n))))
		}
		return need
	}
	require.Equal(t, AnyOrder, ord)
	order := rand.Perm(len(need))
	var wg sync.WaitGroup
	errs := make([]error, len(need))
	for _, i := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Write(ctx, need[i], count.wrap(f.open(need[i])))
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	return need
}

func newLayout(t *testing.T, output string, full bool) *Layout {
	t.Helper()
	l, err := NewLayout(output, LayoutOptions{FullReference: full})
	require.NoError(t, err)
	return l
}

// asTar returns a plain tar of a tar, tar.gz or tar.zst file, decompressed
// into the test's temporary directory.
func asTar(t *testing.T, path string) string {
	t.Helper()
	kind := archive.KindOf(path)
	if kind == archive.Tar {
		return path
	}
	in, err := os.Open(path)
	require.NoError(t, err)
	defer in.Close()
	var r io.Reader
	switch kind {
	case archive.TarGzip:
		gz, err := gzip.NewReader(in)
		require.NoError(t, err)
		require.Empty(t, gz.Name)
		require.True(t, gz.ModTime.IsZero(), "MTIME 0: no time")
		require.Equal(t, byte(255), gz.OS)
		r = gz
	case archive.TarZstd:
		zr, err := zstd.NewReader(in)
		require.NoError(t, err)
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("not a tar: %s", path)
	}
	out := filepath.Join(t.TempDir(), "decompressed.tar")
	o, err := os.Create(out)
	require.NoError(t, err)
	_, err = io.Copy(o, r)
	require.NoError(t, err)
	require.NoError(t, o.Close())
	return out
}

// openStore opens a written backup with oras-go's OCI layout store.
func openStore(t *testing.T, path string) *oci.ReadOnlyStore {
	t.Helper()
	ctx := context.Background()
	var s *oci.ReadOnlyStore
	var err error
	if archive.KindOf(path) == archive.Directory {
		s, err = oci.NewFromFS(ctx, os.DirFS(path))
	} else {
		s, err = oci.NewFromTar(ctx, asTar(t, path))
	}
	require.NoError(t, err)
	return s
}

// checkStore checks that every tag resolves to its digest and every node
// fetches with its bytes.
func checkStore(t *testing.T, s *oci.ReadOnlyStore, f *fixture, full bool) {
	t.Helper()
	ctx := context.Background()
	for ref, want := range f.tags {
		if !full {
			_, ref = archive.SplitRef(ref)
		}
		desc, err := s.Resolve(ctx, ref)
		require.NoError(t, err, ref)
		require.Equal(t, want, desc.Digest, ref)
	}
	for _, n := range f.g.Nodes() {
		got, err := content.FetchAll(ctx, s, n.Desc)
		require.NoError(t, err, n.Desc.Digest)
		want, ok := f.content[n.Desc.Digest]
		if !ok { // a tag-schema index the sink added
			want = n.Content
		}
		require.Equal(t, want, got, n.Desc.Digest)
	}
}

// checkIndex checks index.json: sorted, one named entry per tag and per
// referrers' tag-schema index (sha256-<hex of the subject>), one unnamed
// entry per referrer and per other manifest, with its repositories.
func checkIndex(t *testing.T, raw []byte, f *fixture, full bool) ocispec.Index {
	t.Helper()
	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(raw, &idx))
	require.Equal(t, 2, idx.SchemaVersion)
	require.Equal(t, ocispec.MediaTypeImageIndex, idx.MediaType)
	sorted := append([]ocispec.Descriptor(nil), idx.Manifests...)
	archive.Sort(sorted)
	require.Equal(t, sorted, idx.Manifests, "entries are sorted")

	names := map[string]digest.Digest{}
	referrers := map[digest.Digest]string{}
	for _, d := range idx.Manifests {
		if name, ok := d.Annotations[ocispec.AnnotationRefName]; ok {
			names[name] = d.Digest
			continue
		}
		referrers[d.Digest] = d.Annotations[archive.AnnotationRepositories]
	}
	want := map[string]digest.Digest{}
	for ref, d := range f.tags {
		if !full {
			_, ref = archive.SplitRef(ref)
		}
		want[ref] = d
	}
	tagged := map[digest.Digest]bool{}
	for _, d := range want {
		tagged[d] = true
	}
	schema := map[digest.Digest]bool{}
	for _, r := range f.g.Referrers() {
		for _, repo := range r.Repos {
			name := "sha256-" + r.Subject.Encoded()
			if full {
				name = graph.FullRepo(testRegistry, repo) + ":" + name
			}
			d, ok := names[name]
			require.True(t, ok, "no tag-schema entry %s", name)
			want[name] = d
			schema[d] = true
		}
	}
	require.Equal(t, want, names)
	fullRepos := func(repos []string) string {
		var full []string
		for _, repo := range repos {
			full = append(full, graph.FullRepo(testRegistry, repo))
		}
		sort.Strings(full)
		return joinComma(full)
	}
	wantRef := map[digest.Digest]string{}
	for _, r := range f.g.Referrers() {
		wantRef[r.Desc.Digest] = fullRepos(r.Repos)
	}
	for _, n := range f.g.Nodes() {
		d := n.Desc.Digest
		if n.Kind == graph.KindManifest && !tagged[d] && !schema[d] && wantRef[d] == "" {
			wantRef[d] = fullRepos(n.Repos)
		}
	}
	require.Equal(t, wantRef, referrers)
	return idx
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// tarMembers reads a plain tar: member names in order and their contents.
func tarMembers(t *testing.T, path string) ([]string, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.Equal(t, byte(tar.TypeReg), h.Typeflag, h.Name)
		require.Equal(t, int64(0o644), h.Mode, h.Name)
		require.Equal(t, int64(0), h.ModTime.Unix(), h.Name)
		require.Zero(t, h.Uid)
		require.Zero(t, h.Gid)
		require.Empty(t, h.Uname)
		require.Empty(t, h.Gname)
		names = append(names, h.Name)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		data[h.Name] = b
	}
	return names, data
}

// wantMembers is the member order of the archive for f.
func wantMembers(f *fixture) []string {
	names := []string{"oci-layout", "index.json"}
	for _, n := range f.g.Nodes() {
		names = append(names, "blobs/sha256/"+n.Desc.Digest.Encoded())
	}
	return names
}

// dirNames lists a directory, hidden temporaries included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// failingReader yields some bytes, then an error (as the pipeline's reader
// does on a digest mismatch or a broken connection).
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// genReader generates n pseudo-random bytes from a seed, without holding them.
type genReader struct {
	rng  *rand.ChaCha8
	left int64
}

func newGenReader(seed byte, n int64) *genReader {
	var s [32]byte
	s[0] = seed
	return &genReader{rng: rand.NewChaCha8(s), left: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, _ := g.rng.Read(p)
	g.left -= int64(n)
	return n, nil
}
