package inspect

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
)

func TestVerifyStructure(t *testing.T) {
	s, smp := sample(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	backup(t, good, refs(s, smp.Repositories...)...)
	ms := archivetest.ReadTar(t, good)
	host := s.Host()

	rep := verify(t, good)
	schemaBlobs, _ := archivetest.TagSchemaBlobs(t, ms)
	if !rep.Restorable || len(rep.Warnings) != 0 || rep.Unreferenced != 0 || rep.Blobs != len(smp.Unique())+schemaBlobs {
		t.Fatalf("the good backup: restorable %v, warnings %v, %d unreferenced, %d blobs", rep.Restorable, rep.Warnings, rep.Unreferenced, rep.Blobs)
	}

	frontendV1 := smp.Tags[registrytest.SampleFrontend]["v1"]
	var layerMember archivetest.Member
	for _, m := range ms {
		if m.Hdr.Name == archive.BlobPath(smp.BaseLayer.Digest) {
			layerMember = m
		}
	}
	link := &tar.Header{Name: "blobs/sha256/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}
	extra := blobMember([]byte("an extra blob that nothing needs"))
	corruptExtra := archivetest.Member{Hdr: &tar.Header{Name: archive.BlobPath(digest.FromString("other")), Typeflag: tar.TypeReg, Mode: 0o644}, Data: []byte("not other")}

	tests := []struct {
		name       string
		path       string
		restorable bool
		errors     []string
		warnings   []string
		problems   []string // "kind digest"
		check      func(t *testing.T, rep *Report)
	}{
		{name: "index.json and oci-layout last, as oras writes them", path: archivetest.WriteTar(t, filepath.Join(dir, "oras-order.tar.gz"), append(append([]archivetest.Member(nil), ms[2:]...), ms[1], ms[0])),
			restorable: true},
		{name: "a member twice", path: archivetest.WriteTar(t, filepath.Join(dir, "dup.tar"), append(ms[:len(ms):len(ms)], layerMember)),
			errors: []string{`archive member "` + archive.BlobPath(smp.BaseLayer.Digest) + `" appears twice`}},
		{name: "an unexpected file", path: archivetest.WriteTar(t, filepath.Join(dir, "readme.tar"), append(ms[:len(ms):len(ms)], archivetest.Member{Hdr: &tar.Header{Name: "README", Typeflag: tar.TypeReg}, Data: []byte("hi")})),
			errors: []string{`archive member "README": unexpected file`}},
		{name: "a symbolic link", path: archivetest.WriteTar(t, filepath.Join(dir, "link.tar"), append(ms[:len(ms):len(ms)], archivetest.Member{Hdr: link, Data: nil})),
			errors: []string{`archive member "blobs/sha256/link" is a symbolic link (to "/etc/passwd")`}},
		{name: "a name that is not a digest", path: archivetest.WriteTar(t, filepath.Join(dir, "name.tar"), append(ms[:len(ms):len(ms)], archivetest.Member{Hdr: &tar.Header{Name: "blobs/sha256/abc", Typeflag: tar.TypeReg}, Data: []byte("x")})),
			restorable: true, warnings: []string{"blobs/sha256/abc is not named by a valid digest"}},
		{name: "an extra blob", path: archivetest.WriteTar(t, filepath.Join(dir, "extra.tar"), append(ms[:len(ms):len(ms)], extra)),
			restorable: true, check: func(t *testing.T, rep *Report) {
				if rep.Unreferenced != 1 || rep.UnreferencedBytes != int64(len(extra.Data)) {
					t.Errorf("unreferenced: %d (%d bytes)", rep.Unreferenced, rep.UnreferencedBytes)
				}
			}},
		{name: "a corrupt blob that nothing needs", path: archivetest.WriteTar(t, filepath.Join(dir, "corrupt-extra.tar"), append(ms[:len(ms):len(ms)], corruptExtra)),
			restorable: true, warnings: []string{"blob " + digest.FromString("other").String() + " is corrupt (its bytes have another digest), but nothing in the backup needs it"}},
		{name: "a wrong size in index.json", path: archivetest.WriteTar(t, filepath.Join(dir, "size.tar"), editIndex(t, ms, func(idx map[string]any) {
			for _, e := range idx["manifests"].([]any) {
				e := e.(map[string]any)
				if e["digest"] == frontendV1.Digest.String() {
					e["size"] = float64(frontendV1.Size + 1)
				}
			}
		})), problems: []string{ProblemSize + " " + frontendV1.Digest.String()}, check: func(t *testing.T, rep *Report) {
			wantIn(t, rep.Problems[0].Affects, host+"/demo/frontend:v1")
		}},
		{name: "index.json is not JSON", path: archivetest.WriteTar(t, filepath.Join(dir, "badindex.tar"), func() []archivetest.Member {
			out := append([]archivetest.Member(nil), ms...)
			for i, m := range out {
				if m.Hdr.Name == "index.json" {
					h := *m.Hdr
					out[i] = archivetest.Member{Hdr: &h, Data: []byte("{nope")}
				}
			}
			return out
		}()), errors: []string{"index.json: "}},
		{name: "no oci-layout", path: archivetest.WriteTar(t, filepath.Join(dir, "nolayout.tar"), ms[1:]),
			errors: []string{"not an OCI image layout: it has no oci-layout file"}},
		{name: "a tag pointing at a layer", path: archivetest.WriteTar(t, filepath.Join(dir, "layer-tag.tar"), editIndex(t, ms, func(idx map[string]any) {
			idx["manifests"] = append(idx["manifests"].([]any), map[string]any{
				"mediaType": ocispec.MediaTypeImageManifest, "digest": smp.BaseLayer.Digest.String(), "size": float64(smp.BaseLayer.Size),
				"annotations": map[string]any{ocispec.AnnotationRefName: host + "/demo/frontend:layer"},
			})
		})), problems: []string{ProblemInvalid + " " + smp.BaseLayer.Digest.String()}, check: func(t *testing.T, rep *Report) {
			wantIn(t, []string{rep.Problems[0].Detail}, "not a manifest: not a JSON object")
		}},
		{name: "referrers without recorded repositories (as oras writes them)", path: archivetest.WriteTar(t, filepath.Join(dir, "oras.tar"), editIndex(t, ms, func(idx map[string]any) {
			for _, e := range idx["manifests"].([]any) {
				e := e.(map[string]any)
				if a, ok := e["annotations"].(map[string]any); ok {
					delete(a, archive.AnnotationRepositories)
				}
			}
		})), restorable: true, check: func(t *testing.T, rep *Report) {
			// Attributed through their subjects, nested ones too.
			if ok, all := rep.Referrers(); ok != 8 || all != 8 || len(rep.Orphans) != 0 {
				t.Errorf("referrers %d/%d, %d orphans", ok, all, len(rep.Orphans))
			}
		}},
		{name: "a referrer recorded for a repository that does not reach its subject", path: archivetest.WriteTar(t, filepath.Join(dir, "elsewhere.tar"), editIndex(t, ms, func(idx map[string]any) {
			for _, e := range idx["manifests"].([]any) {
				e := e.(map[string]any)
				if a, ok := e["annotations"].(map[string]any); ok && a[archive.AnnotationRepositories] == host+"/demo/frontend" {
					a[archive.AnnotationRepositories] = host + "/demo/frontend," + host + "/library/base"
				}
			}
		})), restorable: true, warnings: []string{"is recorded for " + host + "/library/base, but its subject " + frontendV1.Digest.String()[:20]}},
		{name: "gzip checksum damaged", path: func() string {
			p := filepath.Join(dir, "crc.tar.gz")
			data := archivetest.TarBytes(t, p, ms)
			data[len(data)-8] ^= 0xff // the CRC-32 of the gzip trailer
			os.WriteFile(p, data, 0o644)
			return p
		}(), errors: []string{"the compressed data is damaged after the tar's end"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := verify(t, tc.path)
			if rep.Restorable != tc.restorable {
				t.Errorf("restorable %v, want %v", rep.Restorable, tc.restorable)
			}
			wantIn(t, rep.Errors, tc.errors...)
			if len(tc.errors) == 0 && len(rep.Errors) > 0 {
				t.Errorf("errors: %v", rep.Errors)
			}
			wantIn(t, rep.Warnings, tc.warnings...)
			var probs []string
			for _, p := range rep.Problems {
				probs = append(probs, p.Kind+" "+p.Digest.String())
			}
			if strings.Join(probs, ",") != strings.Join(tc.problems, ",") {
				t.Errorf("problems %v, want %v", probs, tc.problems)
			}
			if tc.check != nil {
				tc.check(t, rep)
			}
		})
	}
}

func TestVerifyDirectory(t *testing.T) {
	s, smp := sample(t)
	dir := filepath.Join(t.TempDir(), "layout")
	backup(t, dir, refs(s, smp.Repositories...)...)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, dir)
	if !rep.Restorable || rep.Kind != "directory" {
		t.Errorf("restorable %v, kind %s", rep.Restorable, rep.Kind)
	}
	wantIn(t, rep.Warnings, "holds README, which is not part of an OCI image layout")

	// A blob replaced by a shorter file: the size differs.
	manifest := smp.Tags[registrytest.SampleBase]["1.0"]
	if err := os.WriteFile(filepath.Join(dir, archive.BlobPath(manifest.Digest)), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep = verify(t, dir)
	if rep.Restorable || len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemSize || rep.Problems[0].Digest != manifest.Digest {
		t.Fatalf("problems: %+v", rep.Problems)
	}
	wantIn(t, rep.Problems[0].Affects, s.Host()+"/library/base:1.0")
}

func TestVerifyNotABackup(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"empty": "", "text": "hello, this is not a tar file at all, nothing to see here"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		if _, err := Verify(context.Background(), p, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "a backup is an OCI image layout") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Verify(context.Background(), filepath.Join(dir, "nope"), VerifyOptions{}); err == nil {
		t.Errorf("no error for a missing file")
	}
	// A directory that is not a layout is a report, not an error.
	rep, err := Verify(context.Background(), dir, VerifyOptions{})
	if err != nil || rep.Restorable {
		t.Fatalf("a plain directory: %v, %+v", err, rep)
	}
	wantIn(t, rep.Errors, "no oci-layout file")
}

func TestNames(t *testing.T) {
	c := ContentsOf(nil)
	if c.TagOnly() || len(c.Repos) != 0 {
		t.Errorf("empty: %+v", c)
	}
	c = Contents{Repos: []string{"docker.io/library/alpine", "docker.io/library/busybox", "docker.io/tools/x", "ghcr.io/a/b"}}
	for prefix, want := range map[string]string{
		"":                   "docker.io/library/alpine docker.io/library/busybox docker.io/tools/x ghcr.io/a/b",
		"docker.io/library":  "alpine busybox",
		"docker.io/library/": "alpine busybox",
		"library":            "alpine busybox",
		"docker.io":          "library/alpine library/busybox tools/x",
		"docker.io/lib":      "",
		"a":                  "b",
	} {
		if got := strings.Join(c.Below(prefix), " "); got != want {
			t.Errorf("Below(%q) = %q, want %q", prefix, got, want)
		}
	}
	if got := c.FindRepo("library/alpine"); len(got) != 1 || got[0] != "docker.io/library/alpine" {
		t.Errorf("FindRepo: %v", got)
	}
	names := []string{"r/a/one", "r/b/two", "r/c/three", "r/d/alpine", "r/e/five"}
	if got := Nearby(names, "x/alpine", 2); got[0] != "r/d/alpine" {
		t.Errorf("Nearby: %v", got)
	}

	for in, want := range map[string]string{
		"docker.io/library/alpine:3.19":                    "docker.io/library/alpine:3.19",
		"localhost:5000/a:v1":                              "localhost:5000/a:v1",
		"a@sha256:" + strings.Repeat("a", 64):              "a@sha256:" + strings.Repeat("a", 64),
		"host:5000/a:v1@sha256:" + strings.Repeat("b", 64): "host:5000/a@sha256:" + strings.Repeat("b", 64),
		"localhost:5000/a":                                 "error: has no tag",
		"alpine":                                           "error: has no tag",
		":v1":                                              "error: has no repository",
		"a:-bad":                                           "error: invalid tag",
		"a@sha256:abc":                                     "error: invalid digest",
		"@sha256:" + strings.Repeat("a", 64):               "error: has no repository",
		"docker.io/library/alpine:3.19.0-" + "x":           "docker.io/library/alpine:3.19.0-x",
		"docker.io/library/alpine:" + strings.Repeat("t", 5): "docker.io/library/alpine:ttttt",
	} {
		ref, err := ParseReference(in)
		got := ref.String()
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, want) && !(strings.HasPrefix(want, "error: ") && strings.Contains(got, strings.TrimPrefix(want, "error: "))) {
			t.Errorf("ParseReference(%q) = %q, want %q", in, got, want)
		}
	}
}

// Blobs larger than a read chunk go through the hashing pool of a stream
// (and the parallel readers of a tar file and a directory).
func TestVerifyLargeBlobs(t *testing.T) {
	s := registrytest.NewInProcess(t)
	smp := registrytest.Seed(t, s, registrytest.SampleOptions{BaseLayerSize: 3<<20 + 17, LayerSize: 300 << 10})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	backup(t, good, refs(s, smp.Repositories...)...)
	ms := archivetest.ReadTar(t, good)
	flipped := make([]archivetest.Member, len(ms))
	for i, m := range ms {
		flipped[i] = m
		if m.Hdr.Name == archive.BlobPath(smp.BaseLayer.Digest) {
			data := append([]byte(nil), m.Data...)
			data[2<<20+5] ^= 0x10 // in the third chunk
			flipped[i] = archivetest.Member{Hdr: m.Hdr, Data: data}
		}
	}
	zst := archivetest.WriteTar(t, filepath.Join(dir, "good.tar.zst"), ms)
	for _, p := range []string{good, zst, archivetest.WriteTar(t, filepath.Join(dir, "good.tar.gz"), ms)} {
		rep := verify(t, p)
		schemaBlobs, schemaBytes := archivetest.TagSchemaBlobs(t, ms)
		if !rep.Restorable || rep.ContentBytes != smp.UniqueBytes()+schemaBytes || rep.Blobs != len(smp.Unique())+schemaBlobs {
			t.Errorf("%s: restorable %v, %d bytes of %d, %d blobs", p, rep.Restorable, rep.ContentBytes, smp.UniqueBytes()+schemaBytes, rep.Blobs)
		}
	}
	for _, p := range []string{archivetest.WriteTar(t, filepath.Join(dir, "flip.tar"), flipped), archivetest.WriteTar(t, filepath.Join(dir, "flip.tar.zst"), flipped)} {
		rep := verify(t, p)
		if rep.Restorable || len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemCorrupt || rep.Problems[0].Digest != smp.BaseLayer.Digest {
			t.Errorf("%s: %+v", p, rep.Problems)
		} else if ok, all := rep.Tags(); ok != 0 || all != 6 {
			t.Errorf("%s: %d of %d tags restorable, want none: every image has the base layer", p, ok, all)
		}
	}
	// Cut inside the large blob, on a stream.
	data := archivetest.TarBytes(t, "cut.tar", ms)
	var cutAt int
	for _, m := range ms {
		if m.Hdr.Name == archive.BlobPath(smp.BaseLayer.Digest) {
			cutAt = bytes.Index(data, m.Data[:4096]) + 2<<20
		}
	}
	zw, _ := zstd.NewWriter(nil)
	cut := filepath.Join(dir, "cut.tar.zst")
	os.WriteFile(cut, zw.EncodeAll(data[:cutAt], nil), 0o644)
	f, err := os.Open(cut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Verify(context.Background(), "-", VerifyOptions{Stdin: f})
	if err != nil {
		t.Fatal(err)
	}
	wantIn(t, rep.Errors, "the archive is truncated: it ends inside "+archive.BlobPath(smp.BaseLayer.Digest))
	truncated := false
	for _, p := range rep.Problems {
		truncated = truncated || p.Kind == ProblemTruncated && p.Digest == smp.BaseLayer.Digest
	}
	if rep.Restorable || !truncated {
		t.Errorf("problems: %+v", rep.Problems)
	}
	if rep.Kind != "stdin, tar.zst" {
		t.Errorf("kind %q", rep.Kind)
	}
}
