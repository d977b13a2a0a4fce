package main

import (
	"archive/tar"
	"encoding/json"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archivetest"
	"github.com/regvault/regvault/registrytest"
)

// withIndex returns the members of a backup tar with index.json replaced
// by what edit makes of it.
func withIndex(t *testing.T, ms []archivetest.Member, edit func(idx *ocispec.Index)) []archivetest.Member {
	t.Helper()
	out := make([]archivetest.Member, 0, len(ms))
	for _, m := range ms {
		if m.Hdr.Name == "index.json" {
			var idx ocispec.Index
			if err := json.Unmarshal(m.Data, &idx); err != nil {
				t.Fatal(err)
			}
			edit(&idx)
			data, err := json.Marshal(idx)
			if err != nil {
				t.Fatal(err)
			}
			h := *m.Hdr
			m = archivetest.Member{Hdr: &h, Data: data}
		}
		out = append(out, m)
	}
	return out
}

// Two index.json members in one tar: every reader refuses the archive
// (verify read the second one and said it could be restored, while
// restore and manifest fetch refused it).
func TestArchiveTwoIndexes(t *testing.T) {
	src, sample := sampleRegistry(t)
	good := filepath.Join(t.TempDir(), "good.tar")
	backupSample(t, src, good, allRepos...)
	ms := archivetest.ReadTar(t, good)
	// The second index.json lists one tag fewer: a reader that takes it
	// sees another backup.
	second := withIndex(t, ms, func(idx *ocispec.Index) { idx.Manifests = idx.Manifests[1:] })
	var extra archivetest.Member
	for _, m := range second {
		if m.Hdr.Name == "index.json" {
			extra = m
		}
	}
	dir := t.TempDir()
	for _, name := range []string{"two.tar", "two.tar.gz", "two.tar.zst"} {
		t.Run(name, func(t *testing.T) {
			in := archivetest.WriteTar(t, filepath.Join(dir, name), append(ms[:len(ms):len(ms)], extra))

			r := regvault(t, "", "verify", "--input", in)
			r.wantCode(t, exitFailure)
			wantContains(t, "stdout", r.stdout, `archive member "index.json" appears twice`)
			wantNotContains(t, "stdout", r.stdout, "The backup can be restored")

			dst := registrytest.NewInProcess(t)
			r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", in, dst.Host())
			if r.code == exitOK {
				t.Fatalf("restore of an archive with two index.json exited 0")
			}
			wantContains(t, "stderr", r.stderr, `archive member "index.json" appears twice`)
			if name != "two.tar" {
				// A stream is refused when it reaches the second
				// index.json: after the content, before any tag.
				r.wantCode(t, exitFailure)
				for repo, tags := range sample.Tags {
					for tag := range tags {
						wantNoTag(t, dst, repo, tag)
					}
				}
				return
			}
			// A tar's members are all listed first: nothing is pushed.
			r.wantCode(t, exitUsage)
			if n := writes(dst); n != 0 {
				t.Errorf("restore made %d writes", n)
			}

			r = regvault(t, "", "manifest", "fetch", "--oci-layout-path", in, ref(src, registrytest.SampleFrontend)+":v1")
			if r.code == exitOK {
				t.Fatalf("manifest fetch of an archive with two index.json exited 0")
			}
			wantContains(t, "stderr", r.stderr, `archive member "index.json" appears twice`)
		})
	}
}

// A layout whose index.json names no tag (crane pull --format=oci writes
// one so): verify and restore give one verdict, and say what it lacks.
func TestArchiveNoTagNames(t *testing.T) {
	src, _ := sampleRegistry(t)
	good := filepath.Join(t.TempDir(), "good.tar")
	backupSample(t, src, good, registrytest.SampleFrontend)
	ms := withIndex(t, archivetest.ReadTar(t, good), func(idx *ocispec.Index) {
		for i := range idx.Manifests {
			idx.Manifests[i].Annotations = nil
		}
	})
	dir := t.TempDir()
	in := archivetest.WriteTar(t, filepath.Join(dir, "crane.tar"), ms)
	empty := archivetest.WriteTar(t, filepath.Join(dir, "empty.tar"), withIndex(t, ms, func(idx *ocispec.Index) { idx.Manifests = nil }))

	for _, tc := range []struct{ in, want string }{
		{in, "index.json names no tag: none of its 4 manifest(s) has an org.opencontainers.image.ref.name annotation"},
		{empty, "index.json lists nothing: the backup is empty, there is nothing to restore"},
	} {
		r := regvault(t, "", "verify", "--input", tc.in)
		r.wantCode(t, exitFailure)
		wantContains(t, "stdout", r.stdout, tc.want)
		wantNotContains(t, "stdout", r.stdout, "The backup can be restored")
		wantContains(t, "stderr", r.stderr, "cannot be restored")

		dst := registrytest.NewInProcess(t)
		r = regvault(t, "", "restore", "--plain-http", "--no-tty", "-i", tc.in, dst.Host())
		r.wantCode(t, exitUsage)
		wantContains(t, "stderr", r.stderr, tc.want)
		if tc.in == in {
			wantContains(t, "stderr", r.stderr, "oras tag --oci-layout")
		}
	}
}

var _ = tar.TypeReg
