package source

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// FuzzOpenLayout feeds arbitrary bytes to the archive reader, as a tar (or,
// with gz, a gzip-compressed tar) file read with random access or as a
// stream, and does with what opens what restore and verify do: list the
// entries, resolve every tag, walk the graph with referrers, check and
// fetch every blob. It must never panic, hang, or write anything outside its spool
// directory, and Close must leave the spool directory empty.
//
// The seed corpus in testdata/fuzz/FuzzOpenLayout holds small backups
// written by regvault (tar, single- and multi-repository, with referrers)
// and damaged variants; more seeds are added below. Run it with
//
//	go test -run '^$' -fuzz '^FuzzOpenLayout$' -fuzztime 60s ./source/
func FuzzOpenLayout(f *testing.F) {
	for _, seed := range fuzzLayoutSeeds(f) {
		f.Add(seed, false)
	}
	f.Add(fuzzLayoutSeeds(f)[0], true)

	// Everything the reader may write goes under root: TMPDIR points at
	// an empty directory that must stay empty.
	root := f.TempDir()
	tmp := filepath.Join(root, "tmp")
	require.NoError(f, os.Mkdir(tmp, 0o755))
	f.Setenv("TMPDIR", tmp)

	f.Fuzz(func(t *testing.T, data []byte, gz bool) {
		if gz {
			data = testGzip(t, data)
		}
		work, err := os.MkdirTemp(root, "run-")
		require.NoError(t, err)
		defer os.RemoveAll(work)
		in := filepath.Join(work, "in")
		require.NoError(t, os.Mkdir(in, 0o755))
		path := filepath.Join(in, "backup")
		require.NoError(t, os.WriteFile(path, data, 0o644))

		for _, stream := range []bool{false, true} {
			spool := filepath.Join(work, fmt.Sprintf("spool-%v", stream))
			require.NoError(t, os.Mkdir(spool, 0o755))
			fuzzOpenAndRead(t, path, data, stream, spool)
			if left := testSpoolFiles(t, spool); len(left) > 0 {
				t.Fatalf("stream=%v: spool files left after Close: %v", stream, left)
			}
		}
		if left := testSpoolFiles(t, in); len(left) != 1 {
			t.Fatalf("the input directory holds %v: the reader wrote next to its input", left)
		}
		if left := testSpoolFiles(t, tmp); len(left) > 0 {
			t.Fatalf("the reader wrote into $TMPDIR: %v", left)
		}
	})
}

// fuzzOpenAndRead opens the backup (the file at path, or data as standard
// input) and reads all of it as a restore would, within a time bound.
func fuzzOpenAndRead(t *testing.T, path string, data []byte, stream bool, spool string) {
	done := make(chan struct{})
	watchdog := time.AfterFunc(30*time.Second, func() {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		panic(fmt.Sprintf("reading the archive (stream=%v) hangs:\n%s", stream, buf[:n]))
	})
	defer watchdog.Stop()
	defer close(done)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var l *Layout
	var err error
	if stream {
		l, err = OpenLayout(ctx, "-", bytes.NewReader(data), spool)
	} else {
		l, err = OpenLayout(ctx, path, nil, spool)
	}
	if err != nil {
		if l != nil {
			t.Fatalf("OpenLayout returned a layout and an error: %v", err)
		}
		if err.Error() == "" {
			t.Fatal("empty error")
		}
		return
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	fuzzReadLayout(ctx, t, l)
}

// fuzzReadLayout reads everything a restore or verify reads; errors are
// fine, panics and hangs are not.
func fuzzReadLayout(ctx context.Context, t *testing.T, l *Layout) {
	entries := l.Entries()
	repos := map[string]bool{}
	for _, e := range entries {
		if e.Repo != "" {
			repos[e.Repo] = true
		}
		repos[e.RepoPath()] = true
		for _, r := range e.Repos {
			repos[r] = true
		}
	}
	if len(repos) == 0 || repos[""] {
		delete(repos, "")
		repos["any/repo"] = true // a tag-only backup: any name
	}
	names := make([]string, 0, len(repos))
	for r := range repos {
		names = append(names, r)
	}
	sort.Strings(names)
	if len(names) > 8 {
		names = names[:8]
	}

	g := graph.New("")
	w := &Walker{Src: l, Graph: g, IncludeReferrers: true}
	for _, repo := range names {
		tags, err := l.Tags(ctx, repo)
		if err != nil {
			continue
		}
		for i, tag := range tags {
			if i == 16 {
				break
			}
			desc, body, err := l.Resolve(ctx, repo, tag)
			if err != nil {
				continue
			}
			if desc.Digest == "" || int64(len(body)) != desc.Size {
				t.Fatalf("Resolve %s:%s: descriptor %v with %d bytes", repo, tag, desc, len(body))
			}
			_ = w.Walk(ctx, repo, desc, body)
		}
		for i, e := range entries {
			if i == 16 {
				break
			}
			_, _ = l.Referrers(ctx, repo, e.Desc)
		}
	}
	// Every blob the walk found, then every entry: fetched and read
	// (verified) to the end.
	var descs []ocispec.Descriptor
	for _, n := range g.Nodes() {
		descs = append(descs, n.Desc)
	}
	for i, e := range entries {
		if i == 16 {
			break
		}
		descs = append(descs, e.Desc)
	}
	for i, d := range descs {
		if i == 64 {
			break
		}
		_ = l.Check(ctx, d)
		rc, err := l.Fetch(ctx, "any/repo", d)
		if err != nil {
			continue
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil && n != d.Size {
			t.Fatalf("Fetch %s: read %d bytes without error, the descriptor says %d", d.Digest, n, d.Size)
		}
	}
}

// fuzzLayoutSeeds are small archives built in the test: a complete backup
// (tar, with an index, images, referrers) and damaged variants of it.
func fuzzLayoutSeeds(tb testing.TB) [][]byte {
	a := buildTestArchive(tb, true, 300)
	// keep the seeds small: drop the 100 KiB layer's bytes by using a
	// tiny archive of its own
	small := &testArchive{index: a.index}
	for _, b := range a.blobs {
		if b.desc.Size <= 4<<10 {
			small.blobs = append(small.blobs, b)
		}
	}
	good := testTar(tb, small.members(tb))
	tagOnly := buildTestArchive(tb, false, 200)
	var tagOnlyBlobs []testBlob
	for _, b := range tagOnly.blobs {
		if b.desc.Size <= 4<<10 {
			tagOnlyBlobs = append(tagOnlyBlobs, b)
		}
	}
	tagOnly.blobs = tagOnlyBlobs
	// oras writes blobs first, index.json and oci-layout last
	ms := small.members(tb)
	reversed := append(append([]testMember{}, ms[2:]...), ms[1], ms[0])
	seeds := [][]byte{
		good,
		testTar(tb, reversed),
		testTar(tb, tagOnly.members(tb)),
		good[:len(good)-1024], // no end marker
		good[:len(good)/2],    // cut in a member
		testTar(tb, []testMember{{name: "oci-layout", data: archive.LayoutFile}, {name: "index.json", data: []byte(`{"schemaVersion":2,"manifests":[]}`)}}),
		testTar(tb, []testMember{{name: "index.json", data: []byte(`{"manifests":[{"digest":"sha256:` + zeros64 + `","size":-1}]}`)}, {name: "oci-layout", data: archive.LayoutFile}}),
	}
	return seeds
}
