package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/inspect"
	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/internal/registrytest"
)

func TestVerifyBackups(t *testing.T) {
	s, sample := sampleRegistry(t)
	var refs []string
	for _, repo := range sample.Repositories {
		refs = append(refs, ref(s, repo))
	}
	host := s.Host()
	inputs := backupInputs(t, refs...)
	// Besides the sample's content: the referrers' tag-schema indexes.
	schemaBlobs, schemaBytes := tagSchemaBlobs(t, inputs[0].path)
	if want := len(sampleTagSchemaNames(sample, host, sample.Repositories...)); schemaBlobs != want {
		t.Fatalf("%d tag-schema indexes in the backup, want %d", schemaBlobs, want)
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			r := in.run(t, "verify")
			r.wantCode(t, exitOK)
			wantContains(t, "stdout", r.stdout,
				"✓ "+host+"/demo/backend: complete, 2 tags, 4 referrers\n",
				"✓ "+host+"/demo/frontend: complete, 2 tags, 2 referrers\n",
				"✓ "+host+"/library/base: complete, 2 tags, 2 referrers\n",
				"  ✓ v2 (sha256:",
				"  ✓ 1.1 (sha256:",
				"\nThe backup can be restored: 3 repositories, 6 tags, 8 referrers; every blob is present and intact.\n")
			if !regexp.MustCompile(`(?m)^Read .* in .*: [0-9.]+ (B|KB|MB|GB)/s`).MatchString(r.stdout) {
				t.Errorf("no 'Read ... in ...: N MB/s' line:\n%s", r.stdout)
			}
			wantNotContains(t, "stdout", r.stdout, "✗", "Warnings", "needed by no tag")
			if r.stderr != "" {
				t.Errorf("stderr: %s", r.stderr)
			}

			r = in.run(t, "verify", "--format", "json")
			r.wantCode(t, exitOK)
			var rep struct {
				inspect.Report
				ExitCode int     `json:"exitCode"`
				MBps     float64 `json:"mbPerSecond"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatal(err)
			}
			okT, allT := rep.Tags()
			okR, allR := rep.Referrers()
			if !rep.Restorable || rep.ExitCode != 0 || len(rep.Repos) != 3 || okT != 6 || allT != 6 || okR != 8 || allR != 8 ||
				rep.Blobs != len(sample.Unique())+schemaBlobs || rep.ContentBytes != sample.UniqueBytes()+schemaBytes || rep.Unreferenced != 0 {
				t.Errorf("verify --format json: restorable %v, exit %d, %d repos, tags %d/%d, referrers %d/%d, %d blobs (want %d), %d bytes (want %d), %d unreferenced",
					rep.Restorable, rep.ExitCode, len(rep.Repos), okT, allT, okR, allR, rep.Blobs, len(sample.Unique())+schemaBlobs, rep.ContentBytes, sample.UniqueBytes()+schemaBytes, rep.Unreferenced)
			}
		})
	}
}

func TestVerifyTagOnly(t *testing.T) {
	s, _ := sampleRegistry(t)
	for _, in := range backupInputs(t, ref(s, registrytest.SampleBackend)) {
		t.Run(in.name, func(t *testing.T) {
			r := in.run(t, "verify")
			r.wantCode(t, exitOK)
			wantContains(t, "stdout", r.stdout,
				"✓ (the repository of a tag-only backup: index.json does not name it; its referrers record "+s.Host()+"/demo/backend): complete, 2 tags, 4 referrers\n",
				"The backup can be restored: 1 repository, 2 tags, 4 referrers")
		})
	}
}

// ---- damaged archives ----

// damage rewrites the tar src into dst, applying edit to each member (nil
// drops it).
func damage(t *testing.T, src, dst string, edit func(m archivetest.Member) *archivetest.Member) {
	t.Helper()
	var out []archivetest.Member
	for _, m := range archivetest.ReadTar(t, src) {
		if e := edit(m); e != nil {
			out = append(out, *e)
		}
	}
	archivetest.WriteTar(t, dst, out)
}

func TestVerifyDamaged(t *testing.T) {
	s, sample := sampleRegistry(t)
	host := s.Host()
	var refs []string
	for _, repo := range sample.Repositories {
		refs = append(refs, ref(s, repo))
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	backupTo(t, good, refs...)

	frontendV1 := sample.Tags[registrytest.SampleFrontend]["v1"]
	// frontend:v1's own layer, and its SBOM.
	layer := registrytest.Descriptor(ocispec.MediaTypeImageLayerGzip, registrytest.Bytes("regvault/layer/demo/frontend:v1", 4<<10))
	sbom := referrerOf(t, sample, registrytest.SampleFrontend, frontendV1.Digest)
	base := sample.BaseLayer

	dropLayer := func(m archivetest.Member) *archivetest.Member {
		if m.Hdr.Name == archive.BlobPath(layer.Digest) {
			return nil
		}
		return &m
	}
	flipLayer := func(m archivetest.Member) *archivetest.Member {
		if m.Hdr.Name == archive.BlobPath(layer.Digest) {
			m.Data = bytes.Clone(m.Data)
			m.Data[len(m.Data)/2] ^= 0x01
		}
		return &m
	}
	ghost := digest.FromString("a manifest that is not there")
	ghostEntry := func(m archivetest.Member) *archivetest.Member {
		if m.Hdr.Name == "index.json" {
			var idx ocispec.Index
			if err := json.Unmarshal(m.Data, &idx); err != nil {
				t.Fatal(err)
			}
			idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: ghost, Size: 123,
				Annotations: map[string]string{ocispec.AnnotationRefName: host + "/demo/frontend:ghost"}})
			m.Data, _ = json.Marshal(idx)
		}
		return &m
	}
	dropManifest := func(m archivetest.Member) *archivetest.Member {
		if m.Hdr.Name == archive.BlobPath(frontendV1.Digest) {
			return nil
		}
		return &m
	}

	tests := []struct {
		name  string
		make  func(t *testing.T) string // the damaged backup
		want  []string                  // in stdout
		tags  int                       // tags that cannot be restored
		stdin bool
	}{
		{"missing layer in a tar", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar")
			damage(t, good, p, dropLayer)
			return p
		}, []string{
			"✗ " + host + "/demo/frontend: 1 of 2 tags and 1 of 2 referrers can be restored",
			"  ✗ v1 (" + shortDigest(frontendV1.Digest) + "): layer " + layer.Digest.String() + " is missing",
			"  ✓ v2 (",
			"✓ " + host + "/demo/backend: complete",
			"  ✗ layer " + layer.Digest.String() + ": missing, not in the backup (referenced by " + frontendV1.Digest.String() + ")",
			"    needed by: " + host + "/demo/frontend:v1, " + host + "/demo/frontend@" + sbom.Digest.String(),
		}, 1, false},
		{"missing layer in a directory", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "dir")
			backupTo(t, p, refs...)
			if err := os.Remove(filepath.Join(p, archive.BlobPath(layer.Digest))); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{
			"  ✗ v1 (" + shortDigest(frontendV1.Digest) + "): layer " + layer.Digest.String() + " is missing",
			"    needed by: " + host + "/demo/frontend:v1, " + host + "/demo/frontend@" + sbom.Digest.String(),
		}, 1, false},
		{"flipped byte in a layer of a tar", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar")
			damage(t, good, p, flipLayer)
			return p
		}, []string{
			"  ✗ v1 (" + shortDigest(frontendV1.Digest) + "): layer " + layer.Digest.String() + " is corrupt",
			"  ✗ layer " + layer.Digest.String() + ": corrupt, its 4096 bytes have digest sha256:",
			"    needed by: " + host + "/demo/frontend:v1, " + host + "/demo/frontend@" + sbom.Digest.String(),
		}, 1, false},
		{"flipped byte in a layer of a zstd tar on stdin", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar.zst")
			damage(t, good, p, flipLayer)
			return p
		}, []string{
			"Verified standard input (stdin, tar.zst)",
			"  ✗ v1 (" + shortDigest(frontendV1.Digest) + "): layer " + layer.Digest.String() + " is corrupt",
		}, 1, true},
		{"flipped byte in the shared layer of a directory", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "dir")
			backupTo(t, p, refs...)
			f := filepath.Join(p, archive.BlobPath(base.Digest))
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data[0] ^= 0x80
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{
			"✗ " + host + "/demo/backend: 0 of 2 tags and 0 of 4 referrers can be restored",
			"✗ " + host + "/library/base: 0 of 2 tags",
			"  ✗ layer " + base.Digest.String() + ": corrupt",
			host + "/demo/backend:v1, " + host + "/demo/backend:v2",
			host + "/library/base:1.0, " + host + "/library/base:1.1",
		}, 6, false},
		{"index.json entry pointing at nothing", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar.gz")
			damage(t, good, p, ghostEntry)
			return p
		}, []string{
			"✗ " + host + "/demo/frontend: 2 of 3 tags and 2 of 2 referrers can be restored",
			"  ✗ ghost (" + shortDigest(ghost) + "): manifest " + ghost.String() + " is missing",
			"  ✗ manifest " + ghost.String() + ": missing, not in the backup\n",
			"    needed by: " + host + "/demo/frontend:ghost\n",
		}, 1, false},
		{"missing tagged manifest: its referrer's subject", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar")
			damage(t, good, p, dropManifest)
			return p
		}, []string{
			"  ✗ v1 (" + shortDigest(frontendV1.Digest) + "): manifest " + frontendV1.Digest.String() + " is missing",
			"  ✗ referrer " + sbom.Digest.String() + " (" + registrytest.ArtifactTypeSBOM + "): subject " + frontendV1.Digest.String() + " is missing",
			"    needed by: " + host + "/demo/frontend:v1, " + host + "/demo/frontend@" + sbom.Digest.String(),
		}, 1, false},
		{"truncated tar", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar")
			data, err := os.ReadFile(good)
			if err != nil {
				t.Fatal(err)
			}
			// Cut inside the last large blob.
			if err := os.WriteFile(p, data[:len(data)-4096], 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{
			"Errors in the archive:\n  ✗ the archive is truncated: it ends inside blobs/sha256/",
			": truncated, only ",
		}, -1, false},
		{"truncated tar at a member boundary", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar")
			ms := archivetest.ReadTar(t, good)
			archivetest.WriteTar(t, p, ms[:len(ms)-1])
			data, _ := os.ReadFile(p)
			// Without the end-of-archive marker.
			if err := os.WriteFile(p, data[:len(data)-1024], 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{
			"  ✗ the archive is truncated: the tar ends without its end-of-archive marker",
			": missing, not in the backup (the archive is truncated: it may have been after the end)",
		}, -1, false},
		{"truncated gzip tar", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.tar.gz")
			backupTo(t, p, refs...)
			data, _ := os.ReadFile(p)
			if err := os.WriteFile(p, data[:len(data)*2/3], 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, []string{"  ✗ the archive is truncated: it ends inside blobs/sha256/"}, -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.make(t)
			in := inspectInput{path: p}
			if tc.stdin {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				in = inspectInput{path: "-", stdin: string(data)}
			}
			r := in.run(t, "verify")
			r.wantCode(t, exitFailure)
			wantContains(t, "stdout", r.stdout, tc.want...)
			wantNotContains(t, "stdout", r.stdout, "The backup can be restored")
			wantContains(t, "stderr", r.stderr, "Error: the backup ", " cannot be restored in full: ")

			r = in.run(t, "verify", "--format", "json")
			r.wantCode(t, exitFailure)
			var rep inspect.Report
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatal(err)
			}
			okT, allT := rep.Tags()
			if rep.Restorable || tc.tags >= 0 && allT-okT != tc.tags || len(rep.Problems)+len(rep.Errors) == 0 {
				t.Errorf("json: restorable %v, %d of %d tags bad (want %d), %d problems, %d errors", rep.Restorable, allT-okT, allT, tc.tags, len(rep.Problems), len(rep.Errors))
			}
			for _, p := range rep.Problems {
				if len(p.Affects) == 0 {
					t.Errorf("problem %s %s affects nothing", p.Digest, p.Kind)
				}
			}
		})
	}
}
