package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// ---- test archives ----

// testBlob is one blob of a test archive.
type testBlob struct {
	desc ocispec.Descriptor
	data []byte
}

// testArchive is a backup built in the test: blobs in archive order
// (manifests, configs, layers) and index.json.
type testArchive struct {
	blobs []testBlob
	index ocispec.Index

	// named pieces, for assertions
	image, image2, imageIndex, ref1, ref2 ocispec.Descriptor
	large                                 []ocispec.Descriptor // layers > 1 MiB
}

func testRandom(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func testDesc(mt string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

func testJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// newTestArchive builds: two images sharing a config, an index of both,
// and two referrers of the first image. fullRef picks the index.json
// format: multi-repository with full references, or tag-only as oras v1.3
// writes it.
func newTestArchive(t testing.TB, fullRef bool) *testArchive {
	return buildTestArchive(t, fullRef, 2<<20)
}

// buildTestArchive builds the test archive with its two large layers of
// about largeSize and 1.5 largeSize bytes.
func buildTestArchive(t testing.TB, fullRef bool, largeSize int) *testArchive {
	t.Helper()
	a := &testArchive{}
	var manifests, configs, layers []testBlob
	add := func(list *[]testBlob, mt string, data []byte) ocispec.Descriptor {
		d := testDesc(mt, data)
		*list = append(*list, testBlob{desc: d, data: data})
		return d
	}
	l1 := add(&layers, ocispec.MediaTypeImageLayerGzip, testRandom(1, largeSize+17))
	l2 := add(&layers, ocispec.MediaTypeImageLayerGzip, testRandom(2, largeSize*3/2+5))
	l3 := add(&layers, ocispec.MediaTypeImageLayerGzip, testRandom(3, 100<<10))
	sbom := add(&layers, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`))
	sig := add(&layers, "application/vnd.example.signature", testRandom(4, 1500))
	cfg := add(&configs, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	empty := add(&configs, ocispec.MediaTypeEmptyJSON, []byte(`{}`))

	image := func(layers ...ocispec.Descriptor) []byte {
		return testJSON(t, ocispec.Manifest{
			Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageManifest,
			Config: cfg, Layers: layers,
		})
	}
	a.image = add(&manifests, ocispec.MediaTypeImageManifest, image(l1, l3))
	a.image2 = add(&manifests, ocispec.MediaTypeImageManifest, image(l2))
	a.imageIndex = add(&manifests, ocispec.MediaTypeImageIndex, testJSON(t, ocispec.Index{
		Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{a.image, a.image2},
	}))
	subject := a.image
	a.ref1 = add(&manifests, ocispec.MediaTypeImageManifest, testJSON(t, ocispec.Manifest{
		Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: "application/spdx+json", Config: empty, Layers: []ocispec.Descriptor{sbom},
		Subject: &subject, Annotations: map[string]string{"created": "now"},
	}))
	a.ref2 = add(&manifests, ocispec.MediaTypeImageManifest, testJSON(t, ocispec.Manifest{
		Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.example.signature", Config: empty, Layers: []ocispec.Descriptor{sig},
		Subject: &subject,
	}))
	if largeSize > layoutStreamMemberMax {
		a.large = []ocispec.Descriptor{l1, l2}
	}
	a.blobs = append(append(manifests, configs...), layers...)

	entry := func(d ocispec.Descriptor, key, value string) ocispec.Descriptor {
		d.Annotations = map[string]string{key: value}
		return d
	}
	a.index = ocispec.Index{Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageIndex}
	if fullRef {
		a.index.Manifests = []ocispec.Descriptor{
			entry(a.imageIndex, ocispec.AnnotationRefName, "reg.example/library/alpine:v1"),
			entry(a.image2, ocispec.AnnotationRefName, "reg.example/library/alpine:v2"),
			entry(a.image, ocispec.AnnotationRefName, "reg.example:5000/team/app:latest"),
			entry(a.ref1, archive.AnnotationRepositories, "reg.example/library/alpine,reg.example:5000/team/app"),
			entry(a.ref2, archive.AnnotationRepositories, "reg.example:5000/team/app"),
		}
	} else {
		a.index.Manifests = []ocispec.Descriptor{
			entry(a.imageIndex, ocispec.AnnotationRefName, "v1"),
			entry(a.image2, ocispec.AnnotationRefName, "v2"),
			a.ref1, // oras v1.3: listed without a name
		}
	}
	return a
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

// testFiles is a test archive in every form, built once per test binary.
type testFiles struct {
	a            *testArchive
	tar, gz, zst []byte
}

var (
	testFilesMu    sync.Mutex
	testFilesCache = map[bool]*testFiles{}
)

func cachedTestFiles(t testing.TB, fullRef bool) *testFiles {
	testFilesMu.Lock()
	defer testFilesMu.Unlock()
	if f := testFilesCache[fullRef]; f != nil {
		return f
	}
	a := newTestArchive(t, fullRef)
	f := &testFiles{a: a, tar: testTar(t, a.members(t))}
	f.gz, f.zst = testGzip(t, f.tar), testZstd(t, f.tar)
	testFilesCache[fullRef] = f
	return f
}

// testMember is one tar member to write.
type testMember struct {
	name     string
	data     []byte
	typeflag byte
	linkname string
}

// members lists the archive in the order docs/format.md gives:
// oci-layout, index.json, manifests, configs, layers.
func (a *testArchive) members(t testing.TB) []testMember {
	ms := []testMember{
		{name: "oci-layout", data: archive.LayoutFile},
		{name: "index.json", data: testJSON(t, a.index)},
	}
	for _, b := range a.blobs {
		ms = append(ms, testMember{name: archive.BlobPath(b.desc.Digest), data: b.data})
	}
	return ms
}

func testTar(t testing.TB, ms []testMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: m.typeflag,
			Linkname: m.linkname, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write(m.data)
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func testGzip(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	require.NoError(t, err)
	_, err = zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func testZstd(t testing.TB, data []byte) []byte {
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	require.NoError(t, err)
	defer zw.Close()
	return zw.EncodeAll(data, nil)
}

func testWriteFile(t testing.TB, name string, data []byte) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o644))
	return p
}

func (a *testArchive) writeDir(t testing.TB) string {
	dir := t.TempDir()
	for _, m := range a.members(t) {
		p := filepath.Join(dir, filepath.FromSlash(m.name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, m.data, 0o644))
	}
	return dir
}

func testOpen(t testing.TB, path string, stdin io.Reader) (*Layout, string) {
	t.Helper()
	spool := t.TempDir()
	l, err := OpenLayout(context.Background(), path, stdin, spool)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l, spool
}

func testFetchAll(t testing.TB, l *Layout, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := l.Fetch(context.Background(), "any", desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func testSpoolFiles(t testing.TB, dir string) []string {
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// ---- tests ----

func TestLayoutForms(t *testing.T) {
	files := cachedTestFiles(t, true)
	a, tarData, gz, zst := files.a, files.tar, files.gz, files.zst
	forms := []struct {
		name      string
		path      func() string
		stdin     []byte
		kind      LayoutKind
		streaming bool
		size      int64
	}{
		{name: "directory", path: func() string { return a.writeDir(t) }, kind: LayoutDirectory, size: -1},
		{name: "tar", path: func() string { return testWriteFile(t, "backup.bin", tarData) }, kind: LayoutTar, size: int64(len(tarData))},
		{name: "gzip", path: func() string { return testWriteFile(t, "backup.tar", gz) }, kind: LayoutTarGzip, streaming: true, size: int64(len(gz))},
		{name: "zstd", path: func() string { return testWriteFile(t, "backup", zst) }, kind: LayoutTarZstd, streaming: true, size: int64(len(zst))},
		{name: "stdin tar", stdin: tarData, kind: LayoutStdin, streaming: true, size: -1},
		{name: "stdin gzip", stdin: gz, kind: LayoutStdin, streaming: true, size: -1},
		{name: "stdin zstd", stdin: zst, kind: LayoutStdin, streaming: true, size: -1},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			path := "-"
			if f.path != nil {
				path = f.path()
			}
			l, spool := testOpen(t, path, bytes.NewReader(f.stdin))
			assert.Equal(t, f.kind, l.Kind())
			assert.Equal(t, f.streaming, l.Streaming())
			assert.Equal(t, f.size, l.Size())
			assert.Len(t, l.Index().Manifests, len(a.index.Manifests))

			desc, data, err := l.Resolve(context.Background(), "library/alpine", "v1")
			require.NoError(t, err)
			assert.Equal(t, a.imageIndex.Digest, desc.Digest)
			assert.Equal(t, a.blobs[2].data, data)

			// every blob, in a shuffled order, with the right bytes
			order := rand.New(rand.NewPCG(1, 2)).Perm(len(a.blobs))
			for _, i := range order {
				got, err := testFetchAll(t, l, a.blobs[i].desc)
				require.NoError(t, err, "blob %d", i)
				require.True(t, bytes.Equal(a.blobs[i].data, got), "blob %d: wrong bytes", i)
			}
			// not in the archive
			_, err = testFetchAll(t, l, testDesc("x", []byte("absent")))
			require.ErrorIs(t, err, errdef.ErrNotFound)

			require.NoError(t, l.Close())
			assert.Empty(t, testSpoolFiles(t, spool))
		})
	}
}

// A layout written by oras-go's OCI store and tarred as oras backup v1.3
// does it (tar.Writer.AddFS: directory members, blobs before index.json).
func TestLayoutOrasV13(t *testing.T) {
	a := newTestArchive(t, false)
	dir := t.TempDir()
	store, err := oci.New(dir)
	require.NoError(t, err)
	ctx := context.Background()
	// children first, as oras copies
	for i := len(a.blobs) - 1; i >= 0; i-- {
		require.NoError(t, store.Push(ctx, a.blobs[i].desc, bytes.NewReader(a.blobs[i].data)))
	}
	require.NoError(t, store.Tag(ctx, a.imageIndex, "v1"))
	require.NoError(t, store.Tag(ctx, a.image2, "v2"))
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "ingest")))

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	require.NoError(t, tw.AddFS(os.DirFS(dir)))
	require.NoError(t, tw.Close())
	tarData := buf.Bytes()

	paths := map[string]string{
		"directory": dir,
		"tar":       testWriteFile(t, "hello.tar", tarData),
		"tar.gz":    testWriteFile(t, "hello.tar.gz", testGzip(t, tarData)),
	}
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			l, _ := testOpen(t, p, nil)
			tags, err := l.Tags(ctx, "whatever/repo")
			require.NoError(t, err)
			assert.Equal(t, []string{"v1", "v2"}, tags)
			var named int
			for _, e := range l.Entries() {
				if !e.Referrer {
					named++
					assert.Empty(t, e.Repo)
				} else {
					assert.Nil(t, e.Repos)
				}
			}
			assert.Equal(t, 2, named)
			desc, data, err := l.Resolve(ctx, "hello", "v2")
			require.NoError(t, err)
			assert.Equal(t, a.image2.Digest, desc.Digest)
			assert.Equal(t, digest.FromBytes(data), a.image2.Digest)
			refs, err := l.Referrers(ctx, "hello", a.image)
			require.NoError(t, err)
			var got []digest.Digest
			for _, r := range refs {
				got = append(got, r.Digest)
			}
			want := []digest.Digest{a.ref1.Digest, a.ref2.Digest}
			sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
			assert.Equal(t, want, got, "oras lists every manifest in index.json")
			for _, b := range a.blobs {
				got, err := testFetchAll(t, l, b.desc)
				require.NoError(t, err)
				require.True(t, bytes.Equal(b.data, got))
			}
		})
	}
}

func TestLayoutEntries(t *testing.T) {
	ctx := context.Background()
	t.Run("full references", func(t *testing.T) {
		a := newTestArchive(t, true)
		l, _ := testOpen(t, a.writeDir(t), nil)
		e := l.Entries()
		require.Len(t, e, 5)
		assert.Equal(t, archive.Entry{Repo: "reg.example/library/alpine", Tag: "v1", Desc: a.index.Manifests[0]}, e[0])
		assert.Equal(t, "library/alpine", e[0].RepoPath())
		assert.Equal(t, "reg.example:5000/team/app", e[2].Repo)
		assert.Equal(t, "latest", e[2].Tag)
		assert.Equal(t, "team/app", e[2].RepoPath())
		assert.True(t, e[3].Referrer)
		assert.Equal(t, []string{"reg.example/library/alpine", "reg.example:5000/team/app"}, e[3].Repos)
		assert.Empty(t, e[3].Tag)
		assert.Equal(t, []string{"reg.example:5000/team/app"}, e[4].Repos)

		tags, err := l.Tags(ctx, "library/alpine")
		require.NoError(t, err)
		assert.Equal(t, []string{"v1", "v2"}, tags)
		tags, err = l.Tags(ctx, "reg.example:5000/team/app")
		require.NoError(t, err)
		assert.Equal(t, []string{"latest"}, tags)
		_, err = l.Tags(ctx, "library/busybox")
		require.ErrorIs(t, err, errdef.ErrNotFound)
		_, _, err = l.Resolve(ctx, "team/app", "v1")
		require.ErrorIs(t, err, errdef.ErrNotFound)
		desc, data, err := l.Resolve(ctx, "team/app", "latest")
		require.NoError(t, err)
		assert.Equal(t, ocispec.Descriptor{MediaType: a.image.MediaType, Digest: a.image.Digest, Size: a.image.Size}, desc)
		assert.Equal(t, a.image.Digest, digest.FromBytes(data))
	})
	t.Run("tags only", func(t *testing.T) {
		a := newTestArchive(t, false)
		l, _ := testOpen(t, a.writeDir(t), nil)
		e := l.Entries()
		require.Len(t, e, 3)
		assert.Equal(t, archive.Entry{Tag: "v1", Desc: a.index.Manifests[0]}, e[0])
		assert.Equal(t, archive.Entry{Tag: "v2", Desc: a.index.Manifests[1]}, e[1])
		assert.Equal(t, archive.Entry{Referrer: true, Desc: a.index.Manifests[2]}, e[2])
		tags, err := l.Tags(ctx, "any/repo")
		require.NoError(t, err)
		assert.Equal(t, []string{"v1", "v2"}, tags)
	})
	t.Run("reference formats", func(t *testing.T) {
		for name, want := range map[string][2]string{
			"v1":                                           {"", "v1"},
			"docker.io/library/alpine:3.19":                {"docker.io/library/alpine", "3.19"},
			"localhost:5000/app:latest":                    {"localhost:5000/app", "latest"},
			"localhost:5000/app@sha256:" + zeros64:         {"localhost:5000/app", ""},
			"docker.io/library/alpine:3@sha256:" + zeros64: {"docker.io/library/alpine", "3"},
		} {
			d := ocispec.Descriptor{Annotations: map[string]string{ocispec.AnnotationRefName: name}}
			e := archive.ParseEntry(d)
			assert.Equal(t, want, [2]string{e.Repo, e.Tag}, name)
			assert.False(t, e.Referrer, name)
		}
	})
}

const zeros64 = "0000000000000000000000000000000000000000000000000000000000000000"

// sha256-<hex> entries pointing at an index are the referrers tag schema's
// indexes (as oras backups and regvault's hold them): not tags.
func TestLayoutEntryTagSchema(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	subject := digest.Digest("sha256:" + hex)
	for _, c := range []struct {
		name, mediaType string
		repo, tag       string
		schema          digest.Digest
	}{
		{"sha256-" + hex, ocispec.MediaTypeImageIndex, "", "", subject},
		{"reg.example:5000/team/app:sha256-" + hex, ocispec.MediaTypeImageIndex, "reg.example:5000/team/app", "", subject},
		// Not an index: a tag that only looks like one.
		{"sha256-" + hex, ocispec.MediaTypeImageManifest, "", "sha256-" + hex, ""},
		// Not the schema's form.
		{"sha256-" + hex[:10], ocispec.MediaTypeImageIndex, "", "sha256-" + hex[:10], ""},
		{"v1", ocispec.MediaTypeImageIndex, "", "v1", ""},
	} {
		d := ocispec.Descriptor{MediaType: c.mediaType, Annotations: map[string]string{ocispec.AnnotationRefName: c.name}}
		e := archive.ParseEntry(d)
		assert.Equal(t, [2]string{c.repo, c.tag}, [2]string{e.Repo, e.Tag}, c.name)
		assert.Equal(t, c.schema, e.TagSchema, c.name)
		assert.False(t, e.Referrer, c.name)
	}
}

func TestLayoutReferrers(t *testing.T) {
	ctx := context.Background()
	digests := func(ds []ocispec.Descriptor) []digest.Digest {
		var out []digest.Digest
		for _, d := range ds {
			out = append(out, d.Digest)
		}
		return out
	}
	both := []digest.Digest{} // ref1, ref2 sorted
	files := cachedTestFiles(t, true)
	a := files.a
	both = append(both, a.ref1.Digest, a.ref2.Digest)
	sort.Slice(both, func(i, j int) bool { return both[i] < both[j] })

	for name, path := range map[string]string{
		"directory": a.writeDir(t),
		"tar.gz":    testWriteFile(t, "b.tgz", files.gz),
	} {
		t.Run(name, func(t *testing.T) {
			l, _ := testOpen(t, path, nil)
			refs, err := l.Referrers(ctx, "library/alpine", a.image)
			require.NoError(t, err)
			assert.Equal(t, []digest.Digest{a.ref1.Digest}, digests(refs), "ref2 was backed up from team/app only")
			assert.Equal(t, "application/spdx+json", refs[0].ArtifactType)
			assert.Equal(t, map[string]string{"created": "now"}, refs[0].Annotations)
			assert.Equal(t, ocispec.MediaTypeImageManifest, refs[0].MediaType)
			assert.Equal(t, a.ref1.Size, refs[0].Size)

			refs, err = l.Referrers(ctx, "team/app", a.image)
			require.NoError(t, err)
			assert.Equal(t, both, digests(refs))

			refs, err = l.Referrers(ctx, "library/alpine", a.image2)
			require.NoError(t, err)
			assert.Empty(t, refs)
		})
	}
	t.Run("tags only: repositories unknown", func(t *testing.T) {
		a := newTestArchive(t, false)
		l, _ := testOpen(t, a.writeDir(t), nil)
		refs, err := l.Referrers(ctx, "whatever", a.image)
		require.NoError(t, err)
		assert.Equal(t, []digest.Digest{a.ref1.Digest}, digests(refs), "only what index.json lists")
	})
}

func TestLayoutStreamInOrder(t *testing.T) {
	files := cachedTestFiles(t, true)
	a := files.a
	path := testWriteFile(t, "b.tar.zst", files.zst)
	l, spool := testOpen(t, path, nil)
	for _, b := range a.blobs {
		got, err := testFetchAll(t, l, b.desc)
		require.NoError(t, err)
		require.True(t, bytes.Equal(b.data, got))
	}
	assert.Zero(t, l.SpooledBytes(), "fetched in archive order: large members are piped, nothing goes to disk")
	assert.Empty(t, testSpoolFiles(t, spool))
	var small int64
	for _, b := range a.blobs {
		if b.desc.Size <= layoutStreamMemberMax {
			small += b.desc.Size
		}
	}
	assert.Equal(t, small, l.BufferedBytes(), "only small members are kept, in memory")

	// A piped member is gone; a small one is kept.
	_, err := testFetchAll(t, l, a.large[0])
	require.ErrorContains(t, err, "read once")
	got, err := testFetchAll(t, l, a.image)
	require.NoError(t, err)
	assert.Equal(t, a.image.Digest, digest.FromBytes(got))
}

// A consumer that closes a piped member early loses it; the stream goes
// on.
func TestLayoutStreamEarlyClose(t *testing.T) {
	files := cachedTestFiles(t, true)
	a := files.a
	l, spool := testOpen(t, "-", bytes.NewReader(files.gz))
	rc, err := l.Fetch(context.Background(), "", a.large[0])
	require.NoError(t, err)
	_, err = io.ReadFull(rc, make([]byte, 10))
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	got, err := testFetchAll(t, l, a.large[1])
	require.NoError(t, err)
	assert.Equal(t, a.large[1].Digest, digest.FromBytes(got))
	_, err = testFetchAll(t, l, a.large[0])
	require.ErrorContains(t, err, "read once")
	assert.Zero(t, l.SpooledBytes())
	assert.Empty(t, testSpoolFiles(t, spool))
}

func TestLayoutStreamReverseOrder(t *testing.T) {
	files := cachedTestFiles(t, true)
	a := files.a
	path := testWriteFile(t, "b.tar.gz", files.gz)
	l, spool := testOpen(t, path, nil)
	for i := len(a.blobs) - 1; i >= 0; i-- {
		got, err := testFetchAll(t, l, a.blobs[i].desc)
		require.NoError(t, err)
		require.True(t, bytes.Equal(a.blobs[i].data, got))
		if i == len(a.blobs)-1 {
			// the last member was waited for: everything before it is kept
			assert.Equal(t, a.large[0].Size+a.large[1].Size, l.SpooledBytes())
			assert.Len(t, testSpoolFiles(t, spool), 2)
		}
	}
	assert.Equal(t, a.large[0].Size+a.large[1].Size, l.SpooledBytes())
	require.NoError(t, l.Close())
	assert.Empty(t, testSpoolFiles(t, spool), "Close removes spool files")
}

func TestLayoutStreamConcurrent(t *testing.T) {
	files := cachedTestFiles(t, true)
	a := files.a
	for name, path := range map[string]string{
		"tar":    testWriteFile(t, "b.tar", files.tar),
		"tar.gz": testWriteFile(t, "b.tar.gz", files.gz),
	} {
		t.Run(name, func(t *testing.T) {
			l, _ := testOpen(t, path, nil)
			order := rand.New(rand.NewPCG(3, 4)).Perm(len(a.blobs))
			var wg sync.WaitGroup
			errs := make([]error, len(a.blobs))
			for _, i := range order {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := testFetchAll(t, l, a.blobs[i].desc)
					if err == nil && !bytes.Equal(got, a.blobs[i].data) {
						err = fmt.Errorf("blob %d: wrong bytes", i)
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err)
			}
		})
	}
}

func TestLayoutCorruptBlob(t *testing.T) {
	a := newTestArchive(t, true)
	ms := a.members(t)
	target := a.large[1]
	for i := range ms {
		if ms[i].name == archive.BlobPath(target.Digest) {
			data := bytes.Clone(ms[i].data)
			data[len(data)/2] ^= 0x01
			ms[i].data = data
		}
	}
	tarData := testTar(t, ms)
	for name, path := range map[string]string{
		"tar":     testWriteFile(t, "b.tar", tarData),
		"tar.zst": testWriteFile(t, "b.tar.zst", testZstd(t, tarData)),
	} {
		t.Run(name, func(t *testing.T) {
			l, _ := testOpen(t, path, nil)
			rc, err := l.Fetch(context.Background(), "", target)
			require.NoError(t, err)
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			require.ErrorIs(t, err, content.ErrMismatchedDigest)
			assert.Equal(t, target.Size, n, "every byte is read, the error comes instead of EOF")
		})
	}
}

func TestLayoutBadArchives(t *testing.T) {
	a := buildTestArchive(t, true, 64<<10)
	good := a.members(t)
	with := func(pos int, extra ...testMember) []testMember {
		out := append([]testMember{}, good[:pos]...)
		out = append(out, extra...)
		return append(out, good[pos:]...)
	}
	blob := archive.BlobPath(a.image.Digest)
	cases := []struct {
		name    string
		members []testMember
		want    string
	}{
		{"dot-dot", with(0, testMember{name: "../evil", data: []byte("x")}), `"../evil" leaves the archive`},
		{"dot-dot inside", with(1, testMember{name: "blobs/../../evil", data: []byte("x")}), `"blobs/../../evil" leaves the archive`},
		{"absolute", with(0, testMember{name: "/etc/passwd", data: []byte("x")}), `"/etc/passwd" has an absolute path`},
		{"symlink", with(0, testMember{name: "blobs/sha256/" + zeros64, typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}), "is a symbolic link"},
		{"hard link", with(0, testMember{name: "blobs/sha256/" + zeros64, typeflag: tar.TypeLink, linkname: "oci-layout"}), "is a hard link"},
		{"device", with(0, testMember{name: "blobs/sha256/" + zeros64, typeflag: tar.TypeChar}), "is a device"},
		{"unknown file", with(0, testMember{name: "README", data: []byte("x")}), `"README": unexpected file`},
		{"duplicate", with(2, testMember{name: blob, data: []byte("x")}), fmt.Sprintf("%q appears twice", blob)},
		{"duplicate index", with(2, testMember{name: "./index.json", data: []byte("{}")}), `"./index.json" appears twice`},
	}
	for _, c := range cases {
		tarData := testTar(t, c.members)
		t.Run(c.name+"/tar", func(t *testing.T) {
			path := testWriteFile(t, "b.tar", tarData)
			_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Contains(t, err.Error(), path)
		})
		t.Run(c.name+"/gzip", func(t *testing.T) {
			// found at open when before index.json, by the stream later
			spool := t.TempDir()
			l, err := OpenLayout(context.Background(), "-", bytes.NewReader(testGzip(t, tarData)), spool)
			if err == nil {
				defer l.Close()
				_, err = testFetchAll(t, l, testDesc("x", []byte("absent")))
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "not found")
		})
	}
	t.Run("directory members are fine", func(t *testing.T) {
		ms := with(0, testMember{name: "./", typeflag: tar.TypeDir}, testMember{name: "blobs/", typeflag: tar.TypeDir},
			testMember{name: "./blobs/sha256/", typeflag: tar.TypeDir})
		ms[3].name = "./" + ms[3].name // ./oci-layout
		l, _ := testOpen(t, testWriteFile(t, "b.tar", testTar(t, ms)), nil)
		_, err := testFetchAll(t, l, a.image)
		require.NoError(t, err)
	})
	t.Run("unexpected directory", func(t *testing.T) {
		path := testWriteFile(t, "b.tar", testTar(t, with(0, testMember{name: "etc/", typeflag: tar.TypeDir})))
		_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
		require.ErrorContains(t, err, `"etc/": unexpected directory`)
	})
}

func TestLayoutTruncated(t *testing.T) {
	files := cachedTestFiles(t, true)
	a, tarData := files.a, files.tar
	t.Run("tar cut inside a member", func(t *testing.T) {
		path := testWriteFile(t, "b.tar", tarData[:len(tarData)-200<<10])
		_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
		require.ErrorContains(t, err, "truncated")
	})
	t.Run("tar cut at a member boundary", func(t *testing.T) {
		path := testWriteFile(t, "b.tar", tarData[:len(tarData)-1024]) // without the end marker
		_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
		require.ErrorContains(t, err, "truncated")
	})
	t.Run("tar cut in the headers", func(t *testing.T) {
		path := testWriteFile(t, "b.tar", tarData[:700])
		_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
		require.ErrorContains(t, err, "truncated")
	})
	t.Run("gzip cut", func(t *testing.T) {
		gz := files.gz
		l, _ := testOpen(t, "-", bytes.NewReader(gz[:len(gz)*3/4]))
		last := a.blobs[len(a.blobs)-1].desc
		_, err := testFetchAll(t, l, last)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "unexpected EOF")
	})
	t.Run("tar stream cut at a member boundary", func(t *testing.T) {
		l, _ := testOpen(t, "-", bytes.NewReader(tarData[:len(tarData)-1024]))
		_, err := testFetchAll(t, l, testDesc("x", []byte("absent")))
		require.ErrorContains(t, err, "truncated")
	})
}

func TestLayoutNotABackup(t *testing.T) {
	for name, data := range map[string][]byte{
		"text":  []byte("hello, world\n"),
		"empty": nil,
		"zip":   []byte("PK\x03\x04 not a tar at all"),
	} {
		t.Run(name, func(t *testing.T) {
			path := testWriteFile(t, "backup.tar", data)
			_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
			require.Error(t, err)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), "a directory, a tar file, or a gzip- or zstd-compressed tar")
		})
	}
	t.Run("gzip of something else", func(t *testing.T) {
		path := testWriteFile(t, "x.gz", testGzip(t, bytes.Repeat([]byte("text "), 200)))
		_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
		require.ErrorContains(t, err, "the compressed data is not a tar")
	})
	t.Run("stdin", func(t *testing.T) {
		_, err := OpenLayout(context.Background(), "-", strings.NewReader("nope"), t.TempDir())
		require.ErrorContains(t, err, "standard input")
	})
	t.Run("directory without a layout", func(t *testing.T) {
		dir := t.TempDir()
		_, err := OpenLayout(context.Background(), dir, nil, t.TempDir())
		require.ErrorContains(t, err, "no oci-layout")
	})
	t.Run("tar without index.json", func(t *testing.T) {
		path := testWriteFile(t, "b.tar", testTar(t, []testMember{{name: "oci-layout", data: archive.LayoutFile}}))
		_, err := OpenLayout(context.Background(), path, nil, t.TempDir())
		require.ErrorContains(t, err, "no index.json")
	})
	t.Run("missing", func(t *testing.T) {
		_, err := OpenLayout(context.Background(), filepath.Join(t.TempDir(), "nope.tar"), nil, t.TempDir())
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

// Close ends the stream reader and removes the spool files, also while a
// member is being piped and while spool files exist.
func TestLayoutClose(t *testing.T) {
	files := cachedTestFiles(t, true)
	a, zst := files.a, files.zst
	before := runtime.NumGoroutine()
	spool := t.TempDir()
	l, err := OpenLayout(context.Background(), "-", bytes.NewReader(zst), spool)
	require.NoError(t, err)

	// the second large layer: the first one is spooled on the way
	rc, err := l.Fetch(context.Background(), "", a.large[1])
	require.NoError(t, err)
	_, err = io.ReadFull(rc, make([]byte, 1000)) // piped: read a little
	require.NoError(t, err)
	assert.Len(t, testSpoolFiles(t, spool), 1)

	require.NoError(t, l.Close())
	select {
	case <-l.stream.done:
	default:
		t.Fatal("the stream reader is still running after Close")
	}
	_, err = io.Copy(io.Discard, rc)
	require.ErrorIs(t, err, errLayoutClosed)
	rc.Close()
	assert.Empty(t, testSpoolFiles(t, spool))
	_, err = l.Fetch(context.Background(), "", a.image)
	require.ErrorIs(t, err, errLayoutClosed)
	require.NoError(t, l.Close(), "Close twice is fine")

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left after Close")
}

// A Fetch waiting for a stream that does not move gives up with its
// context; Close does not hang on an input that blocks.
func TestLayoutStalledStdin(t *testing.T) {
	files := cachedTestFiles(t, true)
	a, tarData := files.a, files.tar
	pr, pw := io.Pipe()
	go func() {
		pw.Write(tarData[:len(tarData)/2]) // then stall
	}()
	l, err := OpenLayout(context.Background(), "-", pr, t.TempDir())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = l.Fetch(ctx, "", a.blobs[len(a.blobs)-1].desc)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	start := time.Now()
	require.NoError(t, l.Close())
	assert.Less(t, time.Since(start), 5*time.Second)
	pw.CloseWithError(errors.New("producer gone")) // the reader goroutine ends now
	select {
	case <-l.stream.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream reader did not end")
	}
}

// A Fetch whose context ends while it waits, or just as the member is
// handed to it: the member is not lost for a later Fetch.
func TestLayoutFetchCancelled(t *testing.T) {
	files := cachedTestFiles(t, true)
	a := files.a
	for i := 0; i < 20; i++ {
		l, _ := testOpen(t, "-", bytes.NewReader(files.gz))
		ctx, cancel := context.WithCancel(context.Background())
		if i > 0 {
			time.AfterFunc(time.Duration(i)*100*time.Microsecond, cancel)
		} else {
			cancel()
		}
		rc, err := l.Fetch(ctx, "", a.large[0])
		if err == nil {
			rc.Close() // handed over, not read: kept
		} else {
			require.ErrorIs(t, err, context.Canceled)
		}
		got, err := testFetchAll(t, l, a.large[0])
		require.NoError(t, err)
		assert.Equal(t, a.large[0].Digest, digest.FromBytes(got))
		cancel()
		require.NoError(t, l.Close())
	}
}

func TestVerifyReader(t *testing.T) {
	data := []byte("hello, world")
	desc := testDesc("x", data)
	read := func(r io.Reader, d ocispec.Descriptor) ([]byte, error) {
		return io.ReadAll(VerifyReader(r, d))
	}
	got, err := read(bytes.NewReader(data), desc)
	require.NoError(t, err)
	assert.Equal(t, data, got)

	_, err = read(bytes.NewReader([]byte("hello, World")), desc)
	require.ErrorIs(t, err, content.ErrMismatchedDigest)

	_, err = read(bytes.NewReader(data[:5]), desc)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)

	_, err = read(bytes.NewReader(append(bytes.Clone(data), '!')), desc)
	require.ErrorIs(t, err, content.ErrTrailingData)

	_, err = read(bytes.NewReader(nil), testDesc("x", nil))
	require.NoError(t, err)
	_, err = read(bytes.NewReader(nil), ocispec.Descriptor{Digest: desc.Digest, Size: 0})
	require.ErrorIs(t, err, content.ErrMismatchedDigest)

	_, err = read(bytes.NewReader(data), ocispec.Descriptor{Digest: "sha256:nope", Size: 12})
	require.Error(t, err)
	_, err = read(bytes.NewReader(data), ocispec.Descriptor{Digest: desc.Digest, Size: -1})
	require.ErrorIs(t, err, content.ErrInvalidDescriptorSize)

	// one byte at a time
	got, err = io.ReadAll(VerifyReader(iotestOneByte{bytes.NewReader(data)}, desc))
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// The restore pipeline's pattern on a stream: resolve and walk (with
// referrers), then fetch every blob with several workers in graph order.
func TestLayoutWalkStream(t *testing.T) {
	files := cachedTestFiles(t, true)
	a := files.a
	ctx := context.Background()
	l, _ := testOpen(t, "-", bytes.NewReader(files.zst))
	g := graph.New("reg.example")
	w := &Walker{Src: l, Graph: g, IncludeReferrers: true}
	for _, ref := range [][2]string{{"library/alpine", "v1"}, {"team/app", "latest"}} {
		desc, body, err := l.Resolve(ctx, ref[0], ref[1])
		require.NoError(t, err)
		require.NoError(t, w.Walk(ctx, ref[0], desc, body))
	}
	assert.Equal(t, len(a.blobs), g.Len())
	work := make(chan *graph.Node)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				got, err := testFetchAll(t, l, n.Desc)
				if err == nil && digest.FromBytes(got) != n.Desc.Digest {
					err = fmt.Errorf("%s: wrong bytes", n.Desc.Digest)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, n := range g.Nodes() {
		work <- n
	}
	close(work)
	wg.Wait()
	require.Empty(t, errs)
}

// Has on a stream does not read ahead for a blob the stream has not met
// (it read on to the blob or the end, spooling everything on the way):
// it says ErrNotKnownYet; once the stream has ended it knows.
func TestLayoutStreamHasDoesNotReadAhead(t *testing.T) {
	ctx := context.Background()
	files := cachedTestFiles(t, true)
	a := files.a
	l, spool := testOpen(t, testWriteFile(t, "b.tar.zst", files.zst), nil)
	absent := ocispec.Descriptor{MediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		Digest: digest.FromString("not in the backup"), Size: 17}
	_, err := l.Has(ctx, "team/app", absent)
	require.ErrorIs(t, err, ErrNotKnownYet)
	_, err = l.Has(ctx, "team/app", a.large[1])
	require.ErrorIs(t, err, ErrNotKnownYet)
	assert.Zero(t, l.SpooledBytes(), "nothing read ahead")
	assert.Empty(t, testSpoolFiles(t, spool))

	require.NoError(t, l.Finish(ctx))
	has, err := l.Has(ctx, "team/app", absent)
	require.NoError(t, err)
	assert.False(t, has)
	has, err = l.Has(ctx, "team/app", a.large[1])
	require.NoError(t, err)
	assert.True(t, has)
	assert.Zero(t, l.SpooledBytes())
}
