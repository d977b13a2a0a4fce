package archive

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/graph"
)

// FuzzParseEntry checks what ParseEntry makes of any annotations: the
// classes exclude each other, and a named entry's repository and tag put
// back together give its name.
//
//	go test ./archive/ -run '^$' -fuzz FuzzParseEntry -fuzztime 30s
func FuzzParseEntry(f *testing.F) {
	hex := strings.Repeat("ab", 32)
	for _, s := range []struct {
		ref       string
		named     bool
		image     string
		repos     string
		mediaType string
	}{
		{"v1", true, "", "", ocispec.MediaTypeImageManifest},
		{"docker.io/library/alpine:3.19", true, "", "", ocispec.MediaTypeImageManifest},
		{"localhost:5000/app:latest", true, "", "", ocispec.MediaTypeImageIndex},
		{"localhost:5000/app@sha256:" + hex, true, "", "", ocispec.MediaTypeImageManifest},
		{"docker.io/library/alpine:3@sha256:" + hex, true, "", "", ocispec.MediaTypeImageManifest},
		{"sha256-" + hex, true, "", "", ocispec.MediaTypeImageIndex},
		{"reg.example:5000/team/app:sha256-" + hex, true, "", "", ocispec.MediaTypeImageIndex},
		{"3.19", true, "docker.io/library/alpine:3.19", "", ocispec.MediaTypeImageIndex},
		{"", false, "", "reg/a,reg/b", ocispec.MediaTypeImageManifest},
		{"", false, "", " , reg/a ,", ""},
		{"", true, "", "", ""},
		{"a:", true, "", "", ""},
		{"host:5000/", true, "", "", ""},
	} {
		f.Add(s.ref, s.named, s.image, s.repos, s.mediaType)
	}
	f.Fuzz(func(t *testing.T, ref string, named bool, image, repos, mediaType string) {
		ann := map[string]string{}
		if named {
			ann[ocispec.AnnotationRefName] = ref
		}
		if image != "" {
			ann[AnnotationImageName] = image
		}
		if repos != "" {
			ann[AnnotationRepositories] = repos
		}
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromString(ref), Size: 1, Annotations: ann}
		e := ParseEntry(d)
		if e.Desc.Digest != d.Digest || e.Desc.MediaType != d.MediaType {
			t.Fatalf("Desc %+v, want %+v", e.Desc, d)
		}
		if e.IsTag() != (!e.Referrer && e.Tag != "") {
			t.Fatalf("IsTag %v for %+v", e.IsTag(), e)
		}
		name, _ := RefName(ann)
		if e.Referrer {
			if name != "" || e.Repo != "" || e.Tag != "" || e.TagSchema != "" || e.Digested {
				t.Fatalf("unnamed %+v, name %q", e, name)
			}
			var want []string
			for _, r := range strings.Split(repos, ",") {
				if r = strings.TrimSpace(r); r != "" {
					want = append(want, r)
				}
			}
			if !slices.Equal(e.Repos, want) || (want == nil) != (e.Repos == nil) {
				t.Fatalf("Repos %q of %q, want %q", e.Repos, repos, want)
			}
			return
		}
		if name == "" || e.Repos != nil {
			t.Fatalf("named %+v, name %q", e, name)
		}
		if strings.ContainsAny(e.Tag, "/:@") || strings.Contains(e.Repo, "@") {
			t.Fatalf("%q read as repository %q, tag %q", name, e.Repo, e.Tag)
		}
		if e.TagSchema != "" && (e.Tag != "" || e.Digested || !IsTagSchema(TagSchemaTag(e.TagSchema), mediaType)) {
			t.Fatalf("%q (%s) read as tag-schema index %+v", name, mediaType, e)
		}
		if e.Digested != strings.Contains(name, "@") {
			t.Fatalf("%q: Digested %v", name, e.Digested)
		}
		base := name
		if e.Digested {
			base, _, _ = strings.Cut(name, "@")
		}
		tag := e.Tag
		if e.TagSchema != "" {
			tag = TagSchemaTag(e.TagSchema)
		}
		switch {
		case e.Repo == "":
			// ":v1" (an empty repository) reads as v1.
			if base != tag && base != ":"+tag || strings.Contains(base, "/") {
				t.Fatalf("%q read as tag-only %q", name, tag)
			}
		case tag == "":
			if base != e.Repo && base != e.Repo+":" && base != ":"+e.Repo {
				t.Fatalf("%q read as repository %q alone", name, e.Repo)
			}
		default:
			if base != e.Repo+":"+tag {
				t.Fatalf("%q read as %q + %q", name, e.Repo, tag)
			}
		}
	})
}

// FuzzParseIndex reads any bytes as index.json: an error (that says it is
// of index.json), or entries that match the index one to one, each with a
// valid digest and size, whose summary is consistent.
//
//	go test ./archive/ -run '^$' -fuzz FuzzParseIndex -fuzztime 30s
func FuzzParseIndex(f *testing.F) {
	g := graph.New("reg.example:5000")
	image := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("image"), Size: 10}
	ref := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("ref"), Size: 40}
	g.AddNode("team/app", image, graph.KindManifest)
	g.AddNode("team/app", ref, graph.KindManifest)
	g.AddTag(graph.Tag{Repo: "team/app", Name: "v1", Desc: image})
	g.AddReferrer("team/app", ref, image.Digest)
	AddTagSchema(g, false)
	for _, full := range []bool{false, true} {
		data, err := Marshal(Index(g, full))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha256:x","size":-1}]}`))
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + image.Digest.String() +
		`","size":10,"annotations":{"org.opencontainers.image.ref.name":"3.19","io.containerd.image.name":"docker.io/library/alpine:3.19"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, entries, err := ParseIndex(context.Background(), data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "index.json: ") {
				t.Fatalf("error %q does not name index.json", err)
			}
			return
		}
		if len(entries) != len(idx.Manifests) {
			t.Fatalf("%d entries of %d", len(entries), len(idx.Manifests))
		}
		for i, e := range entries {
			if e.Desc.Digest != idx.Manifests[i].Digest || e.Desc.Digest.Validate() != nil || e.Desc.Size < 0 {
				t.Fatalf("entry %d: %+v", i, e.Desc)
			}
		}
		c := Summarize(entries)
		if !slices.IsSorted(c.Repos) || !slices.IsSorted(c.TagRepos) || !slices.IsSorted(c.Unnamed) {
			t.Fatalf("unsorted: %+v", c)
		}
		if c.TagOnly() && len(c.Repos) > 0 || len(c.Tags) != len(c.TagRepos) || c.TagCount() > len(c.TagEntries) {
			t.Fatalf("inconsistent: %+v", c)
		}
		for repo, tags := range c.Tags {
			if !slices.IsSorted(tags) || len(slices.Compact(slices.Clone(tags))) != len(tags) {
				t.Fatalf("tags of %q: %q", repo, tags)
			}
		}
		for _, e := range c.TagEntries {
			if !e.IsTag() || !slices.Contains(c.Tags[e.Repo], e.Tag) {
				t.Fatalf("tag entry %+v not in %v", e, c.Tags)
			}
		}
	})
}
