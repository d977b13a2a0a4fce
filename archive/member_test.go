package archive

import (
	"archive/tar"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestRefName(t *testing.T) {
	for _, tc := range []struct {
		ann   map[string]string
		want  string
		named bool
	}{
		{nil, "", false},
		{map[string]string{ocispec.AnnotationRefName: "v1"}, "v1", true},
		{map[string]string{ocispec.AnnotationRefName: "reg.example/a:v1"}, "reg.example/a:v1", true},
		// docker save: the tag alone, the full name beside it.
		{map[string]string{ocispec.AnnotationRefName: "3.19", AnnotationImageName: "docker.io/library/alpine:3.19"}, "docker.io/library/alpine:3.19", true},
		{map[string]string{ocispec.AnnotationRefName: "1", AnnotationImageName: "localhost:5000/team/app:1"}, "localhost:5000/team/app:1", true},
		// A full ref.name wins; a containerd name with another tag or a
		// digest is not the same image name.
		{map[string]string{ocispec.AnnotationRefName: "reg.example/a:v1", AnnotationImageName: "docker.io/library/a:v1"}, "reg.example/a:v1", true},
		{map[string]string{ocispec.AnnotationRefName: "v1", AnnotationImageName: "docker.io/library/a:v2"}, "v1", true},
		{map[string]string{ocispec.AnnotationRefName: "v1", AnnotationImageName: "docker.io/library/a@sha256:" + strings.Repeat("0", 64)}, "v1", true},
		{map[string]string{AnnotationImageName: "docker.io/library/a:v1"}, "", false},
	} {
		got, named := RefName(tc.ann)
		if got != tc.want || named != tc.named {
			t.Errorf("RefName(%v) = %q, %v; want %q, %v", tc.ann, got, named, tc.want, tc.named)
		}
	}
}

func TestMember(t *testing.T) {
	for _, tc := range []struct {
		h    tar.Header
		name string
		kind MemberKind
		err  string
	}{
		{tar.Header{Name: "./index.json", Typeflag: tar.TypeReg}, "index.json", MemberIndex, ""},
		{tar.Header{Name: "oci-layout", Typeflag: tar.TypeReg}, "oci-layout", MemberLayout, ""},
		{tar.Header{Name: "blobs/sha256/" + strings.Repeat("a", 64), Typeflag: tar.TypeReg}, "blobs/sha256/" + strings.Repeat("a", 64), MemberBlob, ""},
		{tar.Header{Name: "blobs/sha256/", Typeflag: tar.TypeDir}, "blobs/sha256", MemberSkip, ""},
		{tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg}, "manifest.json", MemberIgnored, ""},
		{tar.Header{Name: "repositories", Typeflag: tar.TypeReg}, "repositories", MemberIgnored, ""},
		{tar.Header{Name: "README", Typeflag: tar.TypeReg}, "", 0, `"README": unexpected file`},
		{tar.Header{Name: "etc/", Typeflag: tar.TypeDir}, "", 0, `"etc/": unexpected directory`},
		{tar.Header{Name: "../x", Typeflag: tar.TypeReg}, "", 0, "leaves the archive"},
		{tar.Header{Name: "blobs/sha256/x", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, "", 0, "is a symbolic link"},
	} {
		name, kind, err := Member(&tc.h)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Member(%q): error %v, want %q", tc.h.Name, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || kind != tc.kind {
			t.Errorf("Member(%q) = %q, %v, %v; want %q, %v", tc.h.Name, name, kind, err, tc.name, tc.kind)
		}
	}
	m := Members{}
	if err := m.Add("index.json", "index.json"); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("./index.json", "index.json"); err == nil || !strings.Contains(err.Error(), `"./index.json" appears twice`) {
		t.Errorf("a second index.json: %v", err)
	}
}
