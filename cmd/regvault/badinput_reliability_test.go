package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
)

// badArchive edits the members of a good backup tar.
type badArchive struct {
	t  *testing.T
	ms []archivetest.Member
}

func (b *badArchive) clone() *badArchive {
	out := &badArchive{t: b.t}
	for _, m := range b.ms {
		h := *m.Hdr
		out.ms = append(out.ms, archivetest.Member{Hdr: &h, Data: bytes.Clone(m.Data)})
	}
	return out
}

// edit applies fn to each member; fn returning nil drops it.
func (b *badArchive) edit(fn func(m archivetest.Member) *archivetest.Member) *badArchive {
	var out []archivetest.Member
	for _, m := range b.ms {
		if e := fn(m); e != nil {
			out = append(out, *e)
		}
	}
	b.ms = out
	return b
}

// drop removes the member name.
func (b *badArchive) drop(name string) *badArchive {
	return b.edit(func(m archivetest.Member) *archivetest.Member {
		if m.Hdr.Name == name {
			return nil
		}
		return &m
	})
}

// replace sets the bytes of member name.
func (b *badArchive) replace(name string, data []byte) *badArchive {
	found := false
	b.edit(func(m archivetest.Member) *archivetest.Member {
		if m.Hdr.Name == name {
			m.Data, found = data, true
		}
		return &m
	})
	if !found {
		b.t.Fatalf("no member %s", name)
	}
	return b
}

// add appends a member (a blob, or anything) after index.json, where
// regvault writes manifests.
func (b *badArchive) add(name string, data []byte, typeflag byte, linkname string) *badArchive {
	m := archivetest.Member{Hdr: &tar.Header{Name: name, Mode: 0o644, Typeflag: typeflag, Linkname: linkname, ModTime: time.Unix(0, 0)}, Data: data}
	out := append([]archivetest.Member{}, b.ms[:2]...)
	out = append(out, m)
	b.ms = append(out, b.ms[2:]...)
	return b
}

// blob adds content as a blob and returns its descriptor.
func (b *badArchive) blob(mediaType string, data []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	for _, m := range b.ms {
		if m.Hdr.Name == archive.BlobPath(d.Digest) {
			return d // there already
		}
	}
	b.add(archive.BlobPath(d.Digest), data, tar.TypeReg, "")
	return d
}

// index edits index.json.
func (b *badArchive) index(fn func(idx *ocispec.Index)) *badArchive {
	for i, m := range b.ms {
		if m.Hdr.Name == "index.json" {
			var idx ocispec.Index
			if err := json.Unmarshal(m.Data, &idx); err != nil {
				b.t.Fatal(err)
			}
			fn(&idx)
			data, err := json.Marshal(idx)
			if err != nil {
				b.t.Fatal(err)
			}
			b.ms[i].Data = data
			return b
		}
	}
	b.t.Fatal("no index.json")
	return b
}

// tag adds an index.json entry naming desc as repo:tag.
func (b *badArchive) tag(name string, desc ocispec.Descriptor) *badArchive {
	return b.index(func(idx *ocispec.Index) {
		d := desc
		d.Annotations = map[string]string{ocispec.AnnotationRefName: name}
		idx.Manifests = append(idx.Manifests, d)
	})
}

// write writes the archive as path (compressed by its name).
func (b *badArchive) write(path string) string {
	archivetest.WriteTar(b.t, path, b.ms)
	return path
}

// writeDir writes the archive as an OCI layout directory.
func (b *badArchive) writeDir(dir string) string {
	for _, m := range b.ms {
		p := filepath.Join(dir, filepath.FromSlash(m.Hdr.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(p, m.Data, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	return dir
}

func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func imageManifest(t *testing.T, config ocispec.Descriptor, layers ...ocispec.Descriptor) []byte {
	return jsonOf(t, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: config, Layers: layers})
}

// pushedCount is what a restore pushed: requests that change a registry.
func pushedCount(s *registrytest.Server) int64 { return writes(s) }

// wantNothingTagged fails if any repository of the sample has a tag in s.
func wantNothingTagged(t *testing.T, s *registrytest.Server, sample registrytest.Sample) {
	t.Helper()
	for repo, tags := range sample.Tags {
		for tag := range tags {
			_, err := registrytest.Repo(t, s, repo).Resolve(context.Background(), tag)
			if err == nil {
				t.Errorf("%s:%s was tagged by a restore that failed", repo, tag)
			} else if !errors.Is(err, errdef.ErrNotFound) {
				t.Errorf("%s:%s: %v", repo, tag, err)
			}
		}
	}
}

// wantChildrenFirst checks what a failed restore left in s: every manifest
// there has all its children (config, layers, index children) and its
// subject there too, and no tag is set.
func wantChildrenFirst(t *testing.T, s *registrytest.Server, sample registrytest.Sample) (manifests int) {
	t.Helper()
	ctx := context.Background()
	wantNothingTagged(t, s, sample)
	for repo, descs := range sample.Content {
		r := registrytest.Repo(t, s, repo)
		has := func(d ocispec.Descriptor) bool {
			var ok bool
			var err error
			switch d.MediaType {
			case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
				"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json":
				ok, err = r.Manifests().Exists(ctx, d)
			default:
				ok, err = r.Blobs().Exists(ctx, d)
			}
			if err != nil && !errors.Is(err, errdef.ErrNotFound) {
				t.Fatalf("%s@%s: %v", repo, d.Digest, err)
			}
			return ok
		}
		for _, d := range descs {
			var m struct {
				Config    *ocispec.Descriptor  `json:"config"`
				Layers    []ocispec.Descriptor `json:"layers"`
				Manifests []ocispec.Descriptor `json:"manifests"`
				Subject   *ocispec.Descriptor  `json:"subject"`
			}
			switch d.MediaType {
			case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
				"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json":
			default:
				continue
			}
			if !has(d) {
				continue
			}
			manifests++
			rc, err := r.Fetch(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.NewDecoder(rc).Decode(&m); err != nil {
				t.Fatal(err)
			}
			rc.Close()
			var need []ocispec.Descriptor
			if m.Config != nil {
				need = append(need, *m.Config)
			}
			need = append(append(need, m.Layers...), m.Manifests...)
			if m.Subject != nil {
				need = append(need, *m.Subject)
			}
			for _, c := range need {
				if !has(c) {
					t.Errorf("%s: manifest %s was pushed without %s %s", repo, d.Digest, c.MediaType, c.Digest)
				}
			}
		}
	}
	return manifests
}

// Bad input to restore, at the command line: every damaged archive is
// refused with a message that says what and where, with exit code 2 when
// the input cannot be read as a backup (nothing done) and 1 when the
// backup reads but its content is damaged. Damage that the index and the
// manifests show (a missing blob or manifest, a size that lies, a manifest
// that is not one) is found before anything is pushed: the target sees no
// PUT, POST or PATCH at all. Damage that only a blob's bytes show (a
// flipped byte, a stream cut off) is found when the blob is read: then no
// manifest that needs it is pushed, and no tag is set.
func TestRestoreBadInputReliability(t *testing.T) {
	src, sample, in := sampleBackup(t)
	host := src.Host()
	good := &badArchive{t: t, ms: archivetest.ReadTar(t, in)}
	frontendV1 := sample.Tags[registrytest.SampleFrontend]["v1"]
	base := sample.BaseLayer
	var config ocispec.Descriptor // frontend:v1's config
	{
		var m ocispec.Manifest
		for _, mem := range good.ms {
			if mem.Hdr.Name == archive.BlobPath(frontendV1.Digest) {
				if err := json.Unmarshal(mem.Data, &m); err != nil {
					t.Fatal(err)
				}
			}
		}
		config = m.Config
	}
	flip := func(data []byte) []byte {
		data = bytes.Clone(data)
		data[len(data)/2] ^= 0x01
		return data
	}
	memberData := func(name string) []byte {
		for _, m := range good.ms {
			if m.Hdr.Name == name {
				return m.Data
			}
		}
		t.Fatalf("no member %s", name)
		return nil
	}
	rawTar, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}

	const (
		nothing  = iota // zero PUT/POST/PATCH on the target
		noTags          // blobs may be pushed; no manifest without its children, no tag
		restored        // the restore succeeds
	)
	tests := []struct {
		name   string
		make   func(dir string) string // the input
		code   int
		want   []string // in stderr
		pushed int
		absent digest.Digest // a blob the target must not hold after all
	}{
		{"not a tar", func(dir string) string {
			p := filepath.Join(dir, "b.tar")
			writeFile(t, p, "this is not a backup\n")
			return p
		}, exitUsage, []string{"not a backup", "neither a tar nor a gzip- or zstd-compressed tar"}, nothing, ""},
		{"empty file", func(dir string) string {
			p := filepath.Join(dir, "b.tar")
			writeFile(t, p, "")
			return p
		}, exitUsage, []string{"not a backup", "empty input"}, nothing, ""},
		{"gzip of something else", func(dir string) string {
			p := filepath.Join(dir, "b.tar.gz")
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(bytes.Repeat([]byte("text "), 300))
			zw.Close()
			if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, exitUsage, []string{"not a backup", "the compressed data is not a tar"}, nothing, ""},
		{"truncated tar, cut inside a member", func(dir string) string {
			p := filepath.Join(dir, "b.tar")
			if err := os.WriteFile(p, rawTar[:len(rawTar)/2+100], 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, exitUsage, []string{"not a backup", "truncated"}, nothing, ""},
		{"truncated tar, end marker missing", func(dir string) string {
			p := filepath.Join(dir, "b.tar")
			if err := os.WriteFile(p, rawTar[:len(rawTar)-1024], 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, exitUsage, []string{"not a backup", "truncated"}, nothing, ""},
		{"truncated tar.zst, cut in its first block", func(dir string) string {
			p := good.clone().write(filepath.Join(dir, "whole.tar.zst"))
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			cut := filepath.Join(dir, "b.tar.zst")
			if err := os.WriteFile(cut, data[:len(data)*3/4], 0o644); err != nil {
				t.Fatal(err)
			}
			return cut
		}, exitUsage, []string{"not a backup", "the archive is truncated"}, nothing, ""},
		{"truncated tar.gz stream, cut in the layers", func(dir string) string {
			p := good.clone().write(filepath.Join(dir, "whole.tar.gz"))
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			cut := filepath.Join(dir, "b.tar.gz")
			if err := os.WriteFile(cut, data[:len(data)*3/4], 0o644); err != nil {
				t.Fatal(err)
			}
			return cut
		}, exitFailure, []string{"the archive is truncated"}, noTags, ""},
		{"member with ../", func(dir string) string {
			return good.clone().add("../evil", []byte("x"), tar.TypeReg, "").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", `"../evil" leaves the archive`}, nothing, ""},
		{"absolute member path", func(dir string) string {
			return good.clone().add("/etc/evil", []byte("x"), tar.TypeReg, "").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", `"/etc/evil" has an absolute path`}, nothing, ""},
		{"symlink member", func(dir string) string {
			return good.clone().drop(archive.BlobPath(base.Digest)).add(archive.BlobPath(base.Digest), nil, tar.TypeSymlink, "/etc/passwd").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "is a symbolic link"}, nothing, ""},
		{"hard link member", func(dir string) string {
			return good.clone().drop(archive.BlobPath(base.Digest)).add(archive.BlobPath(base.Digest), nil, tar.TypeLink, "oci-layout").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "is a hard link"}, nothing, ""},
		{"device member", func(dir string) string {
			return good.clone().add("blobs/sha256/"+strings.Repeat("0", 64), nil, tar.TypeChar, "").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "is a device"}, nothing, ""},
		{"duplicate member", func(dir string) string {
			return good.clone().add(archive.BlobPath(base.Digest), []byte("other bytes"), tar.TypeReg, "").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "appears twice"}, nothing, ""},
		{"unexpected file", func(dir string) string {
			return good.clone().add("README", []byte("x"), tar.TypeReg, "").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", `"README": unexpected file`}, nothing, ""},
		{"index.json missing", func(dir string) string {
			return good.clone().drop("index.json").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "it has no index.json"}, nothing, ""},
		{"index.json malformed", func(dir string) string {
			return good.clone().replace("index.json", []byte(`{"manifests": [`)).write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "index.json"}, nothing, ""},
		{"index.json of the wrong schema", func(dir string) string {
			return good.clone().replace("index.json", []byte(`{"schemaVersion": 2, "manifests": {"v1": "sha256:00"}}`)).write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "index.json"}, nothing, ""},
		{"index.json entry with an invalid digest", func(dir string) string {
			return good.clone().index(func(idx *ocispec.Index) { idx.Manifests[0].Digest = "sha256:xyz" }).write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "index.json: entry 0: invalid digest"}, nothing, ""},
		{"oci-layout missing", func(dir string) string {
			return good.clone().drop("oci-layout").write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "it has no oci-layout file"}, nothing, ""},
		{"oci-layout malformed", func(dir string) string {
			return good.clone().replace("oci-layout", []byte(`imageLayoutVersion=1.0.0`)).write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", "oci-layout is not"}, nothing, ""},
		{"oci-layout of another version", func(dir string) string {
			return good.clone().replace("oci-layout", []byte(`{"imageLayoutVersion": "2.0.0"}`)).write(filepath.Join(dir, "b.tar"))
		}, exitUsage, []string{"not a backup", `unsupported OCI image layout version "2.0.0"`}, nothing, ""},
		{"missing layer in a tar", func(dir string) string {
			return good.clone().drop(archive.BlobPath(base.Digest)).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed: layer " + base.Digest.String(), base.Digest.String() + ": not found in the backup"}, nothing, ""},
		{"missing layer in a directory", func(dir string) string {
			return good.clone().drop(archive.BlobPath(base.Digest)).writeDir(filepath.Join(dir, "layout"))
		}, exitFailure, []string{"restore failed: layer " + base.Digest.String(), base.Digest.String() + ": not found in the backup"}, nothing, ""},
		{"missing layer in a tar.gz stream", func(dir string) string {
			return good.clone().drop(archive.BlobPath(base.Digest)).write(filepath.Join(dir, "b.tar.gz"))
		}, exitFailure, []string{"Failed to restore", base.Digest.String() + ": not found in the backup", "(content missing from the backup)",
			"The backup lacks content it needs: it is incomplete; check it with regvault verify"}, noTags, ""},
		{"missing manifest of a tag", func(dir string) string {
			return good.clone().drop(archive.BlobPath(frontendV1.Digest)).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", frontendV1.Digest.String(), "not found"}, nothing, ""},
		{"index.json entry pointing at nothing", func(dir string) string {
			ghost := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("ghost"), Size: 300}
			return good.clone().tag(host+"/demo/frontend:ghost", ghost).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", digest.FromString("ghost").String(), "not found"}, nothing, ""},
		{"manifest referencing an absent blob", func(dir string) string {
			b := good.clone()
			absent := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("absent layer"), Size: 12}
			m := b.blob(ocispec.MediaTypeImageManifest, imageManifest(t, config, base, absent))
			return b.tag(host+"/demo/frontend:absent", m).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", digest.FromString("absent layer").String(), "not found"}, nothing, ""},
		{"layer size that lies", func(dir string) string {
			b := good.clone()
			lying := b.blob(ocispec.MediaTypeImageLayerGzip, []byte("a layer of 21 bytes.."))
			lying.Size += 5
			m := b.blob(ocispec.MediaTypeImageManifest, imageManifest(t, config, lying))
			return b.tag(host+"/demo/frontend:lying", m).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed: layer " + digest.FromString("a layer of 21 bytes..").String(), "the backup holds 21 bytes, the descriptor says 26"}, nothing, ""},
		{"one blob given two sizes", func(dir string) string {
			b := good.clone()
			lying := base
			lying.Size++
			m := b.blob(ocispec.MediaTypeImageManifest, imageManifest(t, config, lying))
			return b.tag(host+"/demo/frontend:lying", m).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", base.Digest.String()}, nothing, ""},
		{"index.json size that lies", func(dir string) string {
			return good.clone().index(func(idx *ocispec.Index) {
				for i := range idx.Manifests {
					if idx.Manifests[i].Digest == frontendV1.Digest {
						idx.Manifests[i].Size += 10
					}
				}
			}).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", frontendV1.Digest.String(), fmt.Sprintf("the descriptor says %d", frontendV1.Size+10)}, nothing, ""},
		{"manifest whose bytes do not match its name", func(dir string) string {
			name := archive.BlobPath(frontendV1.Digest)
			return good.clone().replace(name, flip(memberData(name))).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", frontendV1.Digest.String(), "digest"}, nothing, ""},
		{"manifest that is not JSON", func(dir string) string {
			b := good.clone()
			m := b.blob(ocispec.MediaTypeImageManifest, []byte("this is not a manifest"))
			return b.tag(host+"/demo/frontend:garbage", m).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", digest.FromString("this is not a manifest").String(), "invalid character"}, nothing, ""},
		{"tag pointing at a layer", func(dir string) string {
			return good.clone().tag(host+"/demo/frontend:layer", base).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed", "demo/frontend@" + base.Digest.String(), "invalid manifest JSON"}, nothing, ""},
		{"referrer cycle (a referrer stored under its subject's name)", func(dir string) string {
			// Content addressing makes a real cycle impossible: A refers
			// to B and B to A only when one is stored under a name its
			// bytes do not have.
			b := good.clone()
			empty := b.blob(ocispec.MediaTypeEmptyJSON, []byte("{}"))
			artifact := func(subject ocispec.Descriptor, what string) []byte {
				return jsonOf(t, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
					ArtifactType: "application/vnd.example." + what, Config: empty, Layers: []ocispec.Descriptor{empty}, Subject: &subject})
			}
			a0 := artifact(frontendV1, "a") // A as its name says: subject frontend:v1
			aDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(a0), Size: int64(len(a0))}
			bBytes := artifact(aDesc, "b") // B: subject A
			bDesc := b.blob(ocispec.MediaTypeImageManifest, bBytes)
			a1 := artifact(bDesc, "a") // what is stored as A: subject B
			b.add(archive.BlobPath(aDesc.Digest), a1, tar.TypeReg, "")
			return b.index(func(idx *ocispec.Index) {
				for _, d := range []ocispec.Descriptor{aDesc, bDesc} {
					d.Annotations = map[string]string{archive.AnnotationRepositories: host + "/demo/frontend"}
					idx.Manifests = append(idx.Manifests, d)
				}
			}).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"restore failed: finding referrers in backup", "the backup holds"}, nothing, ""},
		{"shared layer whose bytes do not match its name (tar)", func(dir string) string {
			name := archive.BlobPath(base.Digest)
			return good.clone().replace(name, flip(memberData(name))).write(filepath.Join(dir, "b.tar"))
		}, exitFailure, []string{"Failed to restore", base.Digest.String() + ": mismatched digest", "(content does not match its digest)",
			"the backup is damaged; check it with regvault verify"}, noTags, base.Digest},
		{"shared layer whose bytes do not match its name (tar.zst stream)", func(dir string) string {
			name := archive.BlobPath(base.Digest)
			return good.clone().replace(name, flip(memberData(name))).write(filepath.Join(dir, "b.tar.zst"))
		}, exitFailure, []string{"Failed to restore", base.Digest.String() + ": mismatched digest", "(content does not match its digest)",
			"the backup is damaged; check it with regvault verify"}, noTags, base.Digest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.make(t.TempDir())
			dst := registrytest.NewInProcess(t)
			r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", path, dst.Host())
			r.wantCode(t, tc.code)
			wantContains(t, "stderr", r.stderr, tc.want...)
			wantNotContains(t, "output", r.stdout+r.stderr, "panic", "goroutine ")
			switch tc.pushed {
			case nothing:
				if n := pushedCount(dst); n != 0 {
					t.Errorf("%d PUT/POST/PATCH/DELETE requests reached the target: %v", n, dst.Stats().Requests)
				}
			case noTags:
				n := wantChildrenFirst(t, dst, sample)
				t.Logf("%d writes, %d manifests (each with its children) on the target", pushedCount(dst), n)
			}
			if tc.absent != "" {
				// wrong bytes are never stored as the blob they claim to be
				for _, repo := range sample.Repositories {
					ok, err := registrytest.Repo(t, dst, repo).Blobs().Exists(context.Background(), ocispec.Descriptor{Digest: tc.absent, Size: base.Size})
					if err != nil || ok {
						t.Errorf("%s holds %s (%v)", repo, tc.absent, err)
					}
				}
			}
		})
	}
}

// A deeply nested index (100 levels of indexes) restores, and is walked
// and pushed children first without running out of anything.
func TestRestoreDeepIndexReliability(t *testing.T) {
	src, sample, in := sampleBackup(t)
	b := &badArchive{t: t, ms: archivetest.ReadTar(t, in)}
	d := sample.Tags[registrytest.SampleFrontend]["v1"]
	for range 100 {
		d = b.blob(ocispec.MediaTypeImageIndex, jsonOf(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}}}))
	}
	path := b.tag(src.Host()+"/demo/deep:v1", d).write(filepath.Join(t.TempDir(), "deep.tar"))
	dst := registrytest.NewInProcess(t)
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", path, dst.Host()+"/demo/deep")
	r.wantCode(t, exitOK)
	wantTag(t, dst, "demo/deep", "v1", d)
}

// A very large index.json (50 000 tags of 50 000 repositories) is read,
// planned and restored from in bounded time and memory when one
// repository of it is restored.
func TestRestoreLargeIndexReliability(t *testing.T) {
	src, sample, in := sampleBackup(t)
	b := &badArchive{t: t, ms: archivetest.ReadTar(t, in)}
	v1 := sample.Tags[registrytest.SampleFrontend]["v1"]
	const n = 50000
	b.index(func(idx *ocispec.Index) {
		for i := range n {
			d := v1
			d.Annotations = map[string]string{ocispec.AnnotationRefName: fmt.Sprintf("%s/bulk/r%05d:v1", src.Host(), i)}
			idx.Manifests = append(idx.Manifests, d)
		}
	})
	path := b.write(filepath.Join(t.TempDir(), "large.tar"))
	if fi, err := os.Stat(path); err == nil {
		t.Logf("index.json with %d entries; backup of %d bytes", n+len(sample.Tags)*2, fi.Size())
	}
	dst := registrytest.NewInProcess(t)

	var (
		mu   sync.Mutex
		peak uint64
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapAlloc)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	r := regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", path, dst.Host()+"/bulk/r04242")
	elapsed := time.Since(start)
	close(stop)
	<-done
	r.wantCode(t, exitOK)
	wantTag(t, dst, "bulk/r04242", "v1", v1)
	t.Logf("restored one repository of %d in %s; peak heap %d MB", n, elapsed.Round(time.Millisecond), peak>>20)
	if peak > 1<<30 {
		t.Errorf("peak heap %d MB", peak>>20)
	}
}
