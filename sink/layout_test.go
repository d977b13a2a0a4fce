package sink

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

var _ Sink = (*Layout)(nil)

// outputs is one output name per form (and per suffix).
var outputs = []struct {
	name string
	kind archive.Kind
	ord  Ordering
}{
	{"backup", archive.Directory, AnyOrder},
	{"backup.tar", archive.Tar, AnyOrder},
	{"backup.tar.gz", archive.TarGzip, InOrder},
	{"backup.tgz", archive.TarGzip, InOrder},
	{"backup.tar.zst", archive.TarZstd, InOrder},
	{"backup.tzst", archive.TarZstd, InOrder},
}

func TestLayoutFormsReadBack(t *testing.T) {
	for _, full := range []bool{true, false} {
		for _, o := range outputs {
			name := o.name
			if !full {
				name = "tagonly-" + name
			}
			t.Run(name, func(t *testing.T) {
				f := multiRepo(t)
				if !full {
					f = singleRepo(t)
				}
				dir := t.TempDir()
				out := filepath.Join(dir, o.name)
				l := newLayout(t, out, full)
				require.Equal(t, o.kind, l.Kind())
				ctx := context.Background()
				need, ord, err := l.Prepare(ctx, f.g)
				require.NoError(t, err)
				require.Equal(t, o.ord, ord)
				require.Equal(t, f.g.Nodes(), need, "every node, in archive order")
				require.NoError(t, l.Abort())

				l = newLayout(t, out, full)
				run(t, l, f)
				require.Equal(t, []string{o.name}, dirNames(t, dir), "the output and nothing else")

				checkStore(t, openStore(t, out), f, full)
				var idx []byte
				if o.kind == archive.Directory {
					idx, err = os.ReadFile(filepath.Join(out, "index.json"))
					require.NoError(t, err)
					layout, err := os.ReadFile(filepath.Join(out, "oci-layout"))
					require.NoError(t, err)
					require.Equal(t, archive.LayoutFile, layout)
					require.ElementsMatch(t, []string{"blobs", "index.json", "oci-layout"}, dirNames(t, out))
					require.Equal(t, []string{"sha256"}, dirNames(t, filepath.Join(out, "blobs")))
					require.Len(t, dirNames(t, filepath.Join(out, "blobs", "sha256")), f.g.Len())
				} else {
					names, data := tarMembers(t, asTar(t, out))
					require.Equal(t, wantMembers(f), names, "member order")
					require.Equal(t, archive.LayoutFile, data["oci-layout"])
					idx = data["index.json"]
				}
				want, err := archive.Marshal(archive.Index(f.g, full))
				require.NoError(t, err)
				require.Equal(t, want, idx)
				checkIndex(t, idx, f, full)
			})
		}
	}
}

func TestLayoutStdout(t *testing.T) {
	f := multiRepo(t)
	var buf bytes.Buffer
	l, err := NewLayout("-", LayoutOptions{FullReference: true, Stdout: &buf})
	require.NoError(t, err)
	require.Equal(t, archive.Stdout, l.Kind())
	run(t, l, f)

	plain := filepath.Join(t.TempDir(), "plain.tar")
	run(t, newLayout(t, plain, true), f)
	want, err := os.ReadFile(plain)
	require.NoError(t, err)
	require.Equal(t, want, buf.Bytes(), "stdout is the plain tar")

	_, err = NewLayout("-", LayoutOptions{})
	require.Error(t, err, "stdout needs a writer")
}

func TestLayoutDeterministic(t *testing.T) {
	f := multiRepo(t)
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return b
	}
	var plain []byte
	for _, name := range []string{"a.tar", "a.tar.gz", "a.tgz", "a.tar.zst", "a.tzst"} {
		t.Run(name, func(t *testing.T) {
			p1 := filepath.Join(t.TempDir(), name)
			p2 := filepath.Join(t.TempDir(), name)
			run(t, newLayout(t, p1, true), f)
			run(t, newLayout(t, p2, true), f)
			require.Equal(t, read(p1), read(p2), "same content, same bytes")
			if plain == nil {
				plain = read(p1)
				return
			}
			require.Equal(t, plain, read(asTar(t, p1)), "decompressed equals the plain tar")
		})
	}
	// A directory written twice holds the same files.
	d1, d2 := filepath.Join(t.TempDir(), "d"), filepath.Join(t.TempDir(), "d")
	run(t, newLayout(t, d1, true), f)
	run(t, newLayout(t, d2, true), f)
	for _, name := range wantMembers(f) {
		require.Equal(t, read(filepath.Join(d1, name)), read(filepath.Join(d2, name)), name)
	}
}

func TestLayoutTarHeaders(t *testing.T) {
	f := multiRepo(t)
	p := filepath.Join(t.TempDir(), "h.tar")
	run(t, newLayout(t, p, true), f)
	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Zero(t, len(raw)%512)
	require.Equal(t, make([]byte, 1024), raw[len(raw)-1024:], "trailer")
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.Equal(t, tar.FormatUSTAR, h.Format, h.Name)
	}

	// Sizes of 8 GiB and more do not fit USTAR: PAX, as archive/tar picks,
	// and the planned offsets follow the longer header.
	big := &graph.Node{Desc: ocispec.Descriptor{Digest: digest.FromString("big"), Size: 8 << 30}}
	small := &graph.Node{Desc: ocispec.Descriptor{Digest: digest.FromString("small"), Size: 3}}
	var members []tarMember
	slots, total, err := planTar([]*graph.Node{big, small}, []byte("{}\n"), func(m tarMember) error {
		members = append(members, m)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, members, 4)
	require.Greater(t, len(members[2].header), 512, "PAX header before the big member")
	require.Equal(t, 512, len(members[3].header))
	require.Equal(t, members[2].off+int64(len(members[2].header)), slots[big.Desc.Digest].off)
	require.Equal(t, slots[big.Desc.Digest].off+8<<30, members[3].off)
	require.Equal(t, members[3].off+512, slots[small.Desc.Digest].off)
	require.Equal(t, slots[small.Desc.Digest].off+512+1024, total)
	h, err := tar.NewReader(bytes.NewReader(members[2].header)).Next()
	require.NoError(t, err)
	require.Equal(t, int64(8<<30), h.Size)
	require.Equal(t, tar.FormatPAX, h.Format)
}

func TestLayoutReaderErrorAbort(t *testing.T) {
	for _, o := range outputs {
		t.Run(o.name, func(t *testing.T) {
			f := multiRepo(t)
			dir := t.TempDir()
			l := newLayout(t, filepath.Join(dir, o.name), true)
			ctx := context.Background()
			need, _, err := l.Prepare(ctx, f.g)
			require.NoError(t, err)
			// The first half is written; then one node's reader fails.
			for _, n := range need[:len(need)/2] {
				require.NoError(t, l.Write(ctx, n, f.open(n)))
			}
			bad := need[len(need)/2]
			boom := errors.New("digest mismatch")
			err = l.Write(ctx, bad, once(&failingReader{data: f.content[bad.Desc.Digest][:3], err: boom}))
			require.ErrorIs(t, err, boom)
			require.Contains(t, err.Error(), bad.Desc.Digest.String())
			require.Contains(t, err.Error(), o.name)
			require.Error(t, l.Commit(ctx), "the node is not written")
			require.NoError(t, l.Abort())
			require.NoError(t, l.Abort(), "Abort twice")
			require.Empty(t, dirNames(t, dir), "no output, no temporary")
			require.Error(t, l.Write(ctx, bad, f.open(bad)), "Write after Abort")
		})
	}
}

func TestLayoutStdoutAbort(t *testing.T) {
	// Content big enough to pass the stream's buffer, so that some of it
	// reaches standard output before the failure.
	f := newFixture()
	c := f.blob("r", graph.KindConfig, ocispec.MediaTypeImageConfig, []byte("{}"))
	big := bytes.Repeat([]byte("x"), 3*streamBuffer)
	l1 := f.blob("r", graph.KindLayer, ocispec.MediaTypeImageLayer, big)
	l2 := f.blob("r", graph.KindLayer, ocispec.MediaTypeImageLayer, append([]byte("y"), big...))
	m := f.manifest(t, "r", "", c, []ocispec.Descriptor{l1, l2}, nil)
	f.tag("r", "v1", m)

	var full bytes.Buffer
	lf, err := NewLayout("-", LayoutOptions{Stdout: &full})
	require.NoError(t, err)
	run(t, lf, f)

	var out bytes.Buffer
	l, err := NewLayout("-", LayoutOptions{Stdout: &out})
	require.NoError(t, err)
	ctx := context.Background()
	need, ord, err := l.Prepare(ctx, f.g)
	require.NoError(t, err)
	require.Equal(t, InOrder, ord)
	last := need[len(need)-1]
	for _, n := range need[:len(need)-1] {
		require.NoError(t, l.Write(ctx, n, f.open(n)))
	}
	require.Error(t, l.Write(ctx, last, once(&failingReader{data: big[:100], err: errors.New("broken")})))
	require.Error(t, l.Write(ctx, last, f.open(last)), "a broken stream takes no more")
	written := out.Len()
	require.NoError(t, l.Abort())
	require.Equal(t, written, out.Len(), "nothing more after Abort")
	require.Greater(t, out.Len(), 0)
	require.Less(t, out.Len(), full.Len())
	require.Equal(t, full.Bytes()[:out.Len()], out.Bytes(), "a prefix of the archive, without its trailer")
}

func TestLayoutCommitMissingNode(t *testing.T) {
	for _, o := range outputs {
		t.Run(o.name, func(t *testing.T) {
			f := multiRepo(t)
			dir := t.TempDir()
			l := newLayout(t, filepath.Join(dir, o.name), true)
			ctx := context.Background()
			need, _, err := l.Prepare(ctx, f.g)
			require.NoError(t, err)
			for _, n := range need[:len(need)-1] {
				require.NoError(t, l.Write(ctx, n, f.open(n)))
			}
			err = l.Commit(ctx)
			require.Error(t, err)
			require.Contains(t, err.Error(), need[len(need)-1].Desc.Digest.String())
			require.Contains(t, err.Error(), o.name)
			require.NoError(t, l.Abort())
			require.Empty(t, dirNames(t, dir))
		})
	}
}

func TestLayoutWrongSize(t *testing.T) {
	for _, o := range outputs {
		t.Run(o.name, func(t *testing.T) {
			f := multiRepo(t)
			dir := t.TempDir()
			l := newLayout(t, filepath.Join(dir, o.name), true)
			ctx := context.Background()
			need, ord, err := l.Prepare(ctx, f.g)
			require.NoError(t, err)
			n := need[0]
			data := f.content[n.Desc.Digest]
			err = l.Write(ctx, n, once(bytes.NewReader(append(append([]byte{}, data...), "extra"...))))
			require.ErrorContains(t, err, "longer")
			require.ErrorContains(t, err, n.Desc.Digest.String())
			if ord == AnyOrder {
				// Not kept; a retry with the right content succeeds.
				err = l.Write(ctx, n, once(bytes.NewReader(data[:len(data)-1])))
				require.ErrorContains(t, err, "ended after")
				unreachable := errors.New("registry unreachable")
				require.ErrorIs(t, l.Write(ctx, n, func() (io.ReadCloser, error) { return nil, unreachable }), unreachable)
				require.NoError(t, l.Write(ctx, n, once(bytes.NewReader(data))))
				require.ErrorContains(t, l.Write(ctx, n, once(bytes.NewReader(data))), "already written")
				require.Error(t, l.Write(ctx, &graph.Node{Desc: ocispec.Descriptor{Digest: digest.FromString("stranger")}}, once(strings.NewReader("stranger"))))
			}
			require.NoError(t, l.Abort())
			require.Empty(t, dirNames(t, dir))
		})
	}
}

func TestLayoutStreamOrder(t *testing.T) {
	f := multiRepo(t)
	l := newLayout(t, filepath.Join(t.TempDir(), "o.tar.gz"), true)
	ctx := context.Background()
	need, _, err := l.Prepare(ctx, f.g)
	require.NoError(t, err)
	err = l.Write(ctx, need[1], f.open(need[1]))
	require.ErrorContains(t, err, "out of order")
	unreachable := errors.New("registry unreachable")
	err = l.Write(ctx, need[0], func() (io.ReadCloser, error) { return nil, unreachable })
	require.ErrorIs(t, err, unreachable)
	require.ErrorContains(t, err, need[0].Desc.Digest.String())
	// Both refused before writing anything: the stream goes on.
	for _, n := range need {
		require.NoError(t, l.Write(ctx, n, f.open(n)))
	}
	require.NoError(t, l.Commit(ctx))
}

func TestLayoutReplacesExistingFile(t *testing.T) {
	f := multiRepo(t)
	for _, name := range []string{"old.tar", "old.tar.zst"} {
		p := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(p, []byte("old content"), 0o644))
		run(t, newLayout(t, p, true), f)
		checkStore(t, openStore(t, p), f, true)
		st, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	}
	// A file output whose name is a directory is refused.
	d := filepath.Join(t.TempDir(), "dir.tar")
	require.NoError(t, os.Mkdir(d, 0o755))
	_, _, err := newLayout(t, d, true).Prepare(context.Background(), f.g)
	require.ErrorContains(t, err, "is a directory")
}

func TestLayoutDirectoryEmptyAndNested(t *testing.T) {
	f := multiRepo(t)
	// An empty directory is filled.
	empty := t.TempDir()
	run(t, newLayout(t, empty, true), f)
	checkStore(t, openStore(t, empty), f, true)
	// A path whose parents do not exist is created.
	nested := filepath.Join(t.TempDir(), "a", "b", "backup")
	run(t, newLayout(t, nested, true), f)
	checkStore(t, openStore(t, nested), f, true)
}

func TestLayoutDirectoryNotALayout(t *testing.T) {
	f := multiRepo(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644))
	_, _, err := newLayout(t, dir, true).Prepare(context.Background(), f.g)
	require.Error(t, err)
	require.Contains(t, err.Error(), dir)
	require.Contains(t, err.Error(), "choose an empty or new directory")
	require.Equal(t, []string{"notes.txt"}, dirNames(t, dir), "left alone")

	file := filepath.Join(t.TempDir(), "plainfile")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, _, err = newLayout(t, file, true).Prepare(context.Background(), f.g)
	require.ErrorContains(t, err, "not a directory")
}

func TestLayoutDirectoryAddsToExisting(t *testing.T) {
	ctx := context.Background()
	f := multiRepo(t)
	dir := filepath.Join(t.TempDir(), "backup")
	run(t, newLayout(t, dir, true), f)

	// A second backup: everything as before, and a new repository whose
	// image reuses a config and a layer. Only its manifest is new.
	f2 := multiRepo(t)
	m3 := f2.image(t, "other/repo", `{"architecture":"amd64","os":"linux"}`, "layer one")
	f2.tag("other/repo", "x", m3)
	l := newLayout(t, dir, true)
	need, ord, err := l.Prepare(ctx, f2.g)
	require.NoError(t, err)
	require.Equal(t, AnyOrder, ord)
	require.Len(t, need, 1)
	require.Equal(t, m3.Digest, need[0].Desc.Digest)
	require.NoError(t, l.Write(ctx, need[0], f2.open(need[0])))
	require.NoError(t, l.Commit(ctx))

	checkStore(t, openStore(t, dir), f2, true)
	idx, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	checkIndex(t, idx, f2, true)
	require.ElementsMatch(t, []string{"blobs", "index.json", "oci-layout"}, dirNames(t, dir), "no temporaries left")
	for _, name := range dirNames(t, filepath.Join(dir, "blobs", "sha256")) {
		require.False(t, strings.HasPrefix(name, "."), name)
	}

	// A third backup of another repository only: the index keeps every
	// earlier tag and adds the new one; a referrer found again in a new
	// repository gets that repository added.
	f3 := newFixture()
	m4 := f3.image(t, "third/one", `{"n":4}`, "layer four")
	f3.tag("third/one", "t", m4)
	run(t, newLayout(t, dir, true), f3)
	idx, err = os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	for ref, d := range f3.tags {
		f2.tags[ref] = d
	}
	for dg, b := range f3.content {
		f2.content[dg] = b
	}
	checkIndex(t, idx, f2, true)
	s := openStore(t, dir)
	d, err := s.Resolve(ctx, testRegistry+"/third/one:t")
	require.NoError(t, err)
	require.Equal(t, m4.Digest, d.Digest)
	d, err = s.Resolve(ctx, testRegistry+"/library/alpine:v1")
	require.NoError(t, err)
	require.Equal(t, f.tags[testRegistry+"/library/alpine:v1"], d.Digest)
}

func TestLayoutDirectoryReplacesCorruptBlob(t *testing.T) {
	ctx := context.Background()
	f := multiRepo(t)
	dir := filepath.Join(t.TempDir(), "backup")
	run(t, newLayout(t, dir, true), f)

	// One blob damaged (same size), one missing, one truncated.
	nodes := f.g.Nodes()
	path := func(n *graph.Node) string { return filepath.Join(dir, "blobs", "sha256", n.Desc.Digest.Encoded()) }
	damaged, gone, short := nodes[0], nodes[len(nodes)-1], nodes[len(nodes)-2]
	require.NoError(t, os.WriteFile(path(damaged), bytes.Repeat([]byte("z"), int(damaged.Desc.Size)), 0o644))
	require.NoError(t, os.Remove(path(gone)))
	require.NoError(t, os.Truncate(path(short), 1))

	l := newLayout(t, dir, true)
	need, _, err := l.Prepare(ctx, f.g)
	require.NoError(t, err)
	var got []digest.Digest
	for _, n := range need {
		got = append(got, n.Desc.Digest)
	}
	require.Equal(t, []digest.Digest{damaged.Desc.Digest, short.Desc.Digest, gone.Desc.Digest}, got, "in archive order")
	for _, n := range need {
		require.NoError(t, l.Write(ctx, n, f.open(n)))
	}
	require.NoError(t, l.Commit(ctx))
	checkStore(t, openStore(t, dir), f, true)
}

func TestLayoutDirectoryExistingAbort(t *testing.T) {
	ctx := context.Background()
	f := singleRepo(t)
	dir := filepath.Join(t.TempDir(), "backup")
	run(t, newLayout(t, dir, false), f)
	before, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)

	f2 := singleRepo(t)
	m3 := f2.image(t, "library/alpine", `{"architecture":"s390x"}`, "delta", "epsilon")
	f2.tag("library/alpine", "v3", m3)
	l := newLayout(t, dir, false)
	need, _, err := l.Prepare(ctx, f2.g)
	require.NoError(t, err)
	require.Len(t, need, 4) // manifest, config, two layers
	// One blob written, one failing, one in flight when Abort comes.
	require.NoError(t, l.Write(ctx, need[0], f2.open(need[0])))
	require.Error(t, l.Write(ctx, need[1], once(&failingReader{data: []byte("{"), err: errors.New("reset")})))
	pr, pw := io.Pipe()
	done := make(chan error)
	go func() { done <- l.Write(ctx, need[2], once(pr)) }()
	_, err = pw.Write([]byte("de"))
	require.NoError(t, err)
	require.NoError(t, l.Abort())
	pw.Close()
	require.Error(t, <-done)

	after, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	require.Equal(t, before, after, "index.json untouched")
	for _, name := range dirNames(t, filepath.Join(dir, "blobs", "sha256")) {
		require.False(t, strings.HasPrefix(name, "."), "temporary left: %s", name)
	}
	require.NoFileExists(t, filepath.Join(dir, "blobs", "sha256", need[2].Desc.Digest.Encoded()))
	checkStore(t, openStore(t, dir), f, false)
}

func TestLayoutRejectsBadGraph(t *testing.T) {
	g := graph.New(testRegistry)
	g.AddNode("r", ocispec.Descriptor{Digest: "sha256:../../etc/passwd", Size: 1}, graph.KindLayer)
	_, _, err := newLayout(t, filepath.Join(t.TempDir(), "x.tar"), true).Prepare(context.Background(), g)
	require.ErrorContains(t, err, "invalid digest")

	g = graph.New(testRegistry)
	g.AddTag(graph.Tag{Repo: "r", Name: "v", Desc: ocispec.Descriptor{Digest: digest.FromString("absent"), Size: 6}})
	dir := t.TempDir()
	_, _, err = newLayout(t, filepath.Join(dir, "x"), true).Prepare(context.Background(), g)
	require.ErrorContains(t, err, "not in the graph")
	require.Empty(t, dirNames(t, dir))
}

func TestLayoutLifecycle(t *testing.T) {
	ctx := context.Background()
	f := singleRepo(t)
	dir := t.TempDir()
	l := newLayout(t, filepath.Join(dir, "x.tar"), false)
	n := f.g.Nodes()[0]
	require.Error(t, l.Write(ctx, n, f.open(n)), "Write before Prepare")
	require.Error(t, l.Commit(ctx), "Commit before Prepare")
	run(t, l, f)
	_, _, err := l.Prepare(ctx, f.g)
	require.Error(t, err, "Prepare twice")
	require.Error(t, l.Write(ctx, n, f.open(n)), "Write after Commit")
	require.Error(t, l.Commit(ctx), "Commit twice")
	require.NoError(t, l.Abort())
	require.Equal(t, []string{"x.tar"}, dirNames(t, dir), "Abort after Commit keeps the output")

	// A cancelled context stops a Write.
	l = newLayout(t, filepath.Join(dir, "y.tar"), false)
	need, _, err := l.Prepare(ctx, f.g)
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, l.Write(cctx, need[0], f.open(need[0])), context.Canceled)
	require.NoError(t, l.Abort())
	require.Equal(t, []string{"x.tar"}, dirNames(t, dir))
}

// TestLayoutTarStreamsLargeBlob writes a 64 MiB blob, generated on the fly,
// into a tar concurrently with the other nodes, and checks it by hashing
// the member: the content goes straight to the file, never whole in memory.
func TestLayoutTarStreamsLargeBlob(t *testing.T) {
	const size = 64 << 20
	h := sha256.New()
	_, err := io.Copy(h, newGenReader(7, size))
	require.NoError(t, err)
	bigDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.NewDigest(digest.SHA256, h), Size: size}

	f := multiRepo(t)
	f.g.AddNode("library/alpine", bigDesc, graph.KindLayer)
	opener := func(n *graph.Node) Opener {
		if n.Desc.Digest == bigDesc.Digest {
			return once(newGenReader(7, size))
		}
		return f.open(n)
	}

	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "big.tar")
	l := newLayout(t, out, true)
	need, ord, err := l.Prepare(ctx, f.g)
	require.NoError(t, err)
	require.Equal(t, AnyOrder, ord)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	errs := make([]error, len(need))
	for i := len(need) - 1; i >= 0; i-- { // the big layer starts first
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.Write(ctx, need[i], opener(need[i]))
		}()
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	require.NoError(t, errors.Join(errs...))
	require.NoError(t, l.Commit(ctx))
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(size/4), "the blob is not buffered")

	file, err := os.Open(out)
	require.NoError(t, err)
	defer file.Close()
	tr := tar.NewReader(file)
	found := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if hdr.Name != "blobs/sha256/"+bigDesc.Digest.Encoded() {
			continue
		}
		found = true
		require.Equal(t, int64(size), hdr.Size)
		v := bigDesc.Digest.Verifier()
		n, err := io.Copy(v, tr)
		require.NoError(t, err)
		require.Equal(t, int64(size), n)
		require.True(t, v.Verified())
	}
	require.True(t, found)
	f.content[bigDesc.Digest] = nil // not kept in memory: checked above
	s := openStore(t, out)
	for _, n := range f.g.Nodes() {
		if n.Desc.Digest == bigDesc.Digest {
			continue
		}
		rc, err := s.Fetch(ctx, n.Desc)
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		rc.Close()
		require.NoError(t, err)
		want, ok := f.content[n.Desc.Digest]
		if !ok { // a tag-schema index the sink added
			want = n.Content
		}
		require.Equal(t, want, b)
	}
}

// The directory's repository is checked again when the backup is about to
// write, under the directory's lock (another run may have written it since
// the command checked): a tag-only backup of another repository is refused
// with an *archive.MixError, and nothing is written.
func TestLayoutDirRefusesAnotherRepository(t *testing.T) {
	out := filepath.Join(t.TempDir(), "layout")
	f := singleRepo(t)
	run(t, newLayout(t, out, false), f)
	idxPath := filepath.Join(out, "index.json")
	raw, err := os.ReadFile(idxPath)
	require.NoError(t, err)
	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(raw, &idx))
	require.Equal(t, graph.FullRepo(f.g.Registry, "library/alpine"), idx.Annotations[archive.AnnotationRepository])

	idx.Annotations[archive.AnnotationRepository] = "registry.example.com/someone/else"
	raw, err = archive.Marshal(idx)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(idxPath, raw, 0o644))
	before := dirNames(t, out)
	l := newLayout(t, out, false)
	_, _, err = l.Prepare(context.Background(), f.g)
	var mix *archive.MixError
	require.ErrorAs(t, err, &mix)
	require.Contains(t, err.Error(), "holds the tags of registry.example.com/someone/else")
	require.Equal(t, before, dirNames(t, out))
	after, err := os.ReadFile(idxPath)
	require.NoError(t, err)
	require.Equal(t, string(raw), string(after))

	// Full references are refused too.
	l = newLayout(t, out, true)
	_, _, err = l.Prepare(context.Background(), f.g)
	require.ErrorAs(t, err, &mix)
}

// A plain tar takes a blob in parts, in any order, and counts it written
// on the digest its bytes were hashed to as they arrived: the right one
// gives the tar written whole, byte for byte; a wrong one leaves the blob
// unwritten (Commit names it) instead of being taken on trust.
func TestLayoutTarParts(t *testing.T) {
	f := singleRepo(t)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.tar")
	run(t, newLayout(t, whole, true), f)

	for _, wrong := range []bool{false, true} {
		out := filepath.Join(dir, fmt.Sprintf("parts-%v.tar", wrong))
		l := newLayout(t, out, true)
		ctx := context.Background()
		need, _, err := l.Prepare(ctx, f.g)
		require.NoError(t, err)
		require.True(t, l.AcceptsParts())
		var parted *graph.Node
		for _, n := range need {
			data := f.content[n.Desc.Digest]
			if n.Content != nil || len(data) < 2 || parted != nil {
				require.NoError(t, l.Write(ctx, n, f.open(n)))
				continue
			}
			parted = n
			half := int64(len(data) / 2)
			require.NoError(t, l.WritePart(ctx, n, half, int64(len(data))-half, bytes.NewReader(data[half:])))
			require.NoError(t, l.WritePart(ctx, n, 0, half, bytes.NewReader(data[:half])))
			got := n.Desc.Digest
			if wrong {
				got = digest.FromString("not these bytes")
			}
			err := l.FinishParts(ctx, n, got)
			if !wrong {
				require.NoError(t, err)
				continue
			}
			require.ErrorIs(t, err, content.ErrMismatchedDigest)
			require.Contains(t, err.Error(), n.Desc.Digest.String())
		}
		require.NotNil(t, parted)
		err = l.Commit(ctx)
		if wrong {
			require.Error(t, err)
			require.Contains(t, err.Error(), parted.Desc.Digest.String())
			require.NoError(t, l.Abort())
			continue
		}
		require.NoError(t, err)
		a, _ := os.ReadFile(whole)
		b, _ := os.ReadFile(out)
		require.Equal(t, digest.FromBytes(a), digest.FromBytes(b), "the tar written in parts is the tar written whole")
	}
}

// A part that is a section of a file (a blob's first bytes spooled
// before the tar was laid out) is copied from it as it is, not from the
// start of the file: the tar is the one written whole.
func TestLayoutTarPartFromFile(t *testing.T) {
	f := singleRepo(t)
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.tar")
	run(t, newLayout(t, whole, true), f)

	out := filepath.Join(dir, "parts.tar")
	l := newLayout(t, out, true)
	ctx := context.Background()
	need, _, err := l.Prepare(ctx, f.g)
	require.NoError(t, err)
	var parted *graph.Node
	for _, n := range need {
		data := f.content[n.Desc.Digest]
		if n.Content != nil || len(data) < 2 || parted != nil {
			require.NoError(t, l.Write(ctx, n, f.open(n)))
			continue
		}
		parted = n
		// The spool holds the blob at an offset, after other bytes.
		spool, err := os.Create(filepath.Join(dir, "spool"))
		require.NoError(t, err)
		defer spool.Close()
		const at = 4096
		_, err = spool.WriteAt(append(bytes.Repeat([]byte{'x'}, at), data...), 0)
		require.NoError(t, err)
		half := int64(len(data) / 2)
		require.NoError(t, l.WritePart(ctx, n, 0, half, io.NewSectionReader(spool, at, half)))
		require.NoError(t, l.WritePart(ctx, n, half, int64(len(data))-half, io.NewSectionReader(spool, at+half, int64(len(data))-half)))
		require.NoError(t, l.FinishParts(ctx, n, n.Desc.Digest))
	}
	require.NotNil(t, parted)
	require.NoError(t, l.Commit(ctx))
	a, _ := os.ReadFile(whole)
	b, _ := os.ReadFile(out)
	require.Equal(t, digest.FromBytes(a), digest.FromBytes(b), "the tar written from the spool file is the tar written whole")
}
