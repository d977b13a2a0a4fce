package archive

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/graph"
)

// Each form of ref.name that docs/format.md lists, read as every reader
// reads it.
func TestParseEntry(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	subject := digest.Digest("sha256:" + hex)
	dgst := digest.FromString("m")
	named := func(mt, name string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: dgst, Size: 1,
			Annotations: map[string]string{ocispec.AnnotationRefName: name}}
	}
	manifest, index := ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex
	for _, c := range []struct {
		what string
		d    ocispec.Descriptor
		want Entry
	}{
		{"tag-only", named(manifest, "v1"), Entry{Tag: "v1"}},
		{"full reference", named(manifest, "docker.io/library/alpine:3.19"), Entry{Repo: "docker.io/library/alpine", Tag: "3.19"}},
		{"registry with a port", named(manifest, "localhost:5000/app:latest"), Entry{Repo: "localhost:5000/app", Tag: "latest"}},
		{"repository without a registry", named(manifest, "app:v1"), Entry{Repo: "app", Tag: "v1"}},
		{"repo@digest", named(manifest, "localhost:5000/app@"+subject.String()), Entry{Repo: "localhost:5000/app", Digested: true}},
		{"bare name@digest", named(manifest, "app@"+subject.String()), Entry{Repo: "app", Digested: true}},
		// Restore reads the tag of repo:tag@digest (verify reports it by
		// its digest: Digested).
		{"repo:tag@digest", named(manifest, "docker.io/library/alpine:3@"+subject.String()), Entry{Repo: "docker.io/library/alpine", Tag: "3", Digested: true}},
		{"tag schema, tag-only", named(index, "sha256-"+hex), Entry{TagSchema: subject}},
		{"tag schema, full reference", named(index, "reg.example:5000/team/app:sha256-"+hex), Entry{Repo: "reg.example:5000/team/app", TagSchema: subject}},
		{"tag-schema form on a manifest: a tag", named(manifest, "sha256-"+hex), Entry{Tag: "sha256-" + hex}},
		{"short hex: a tag", named(index, "sha256-"+hex[:10]), Entry{Tag: "sha256-" + hex[:10]}},
		{"upper-case hex: a tag", named(index, "sha256-"+strings.ToUpper(hex)), Entry{Tag: "sha256-" + strings.ToUpper(hex)}},
		{"an index tag", named(index, "v1"), Entry{Tag: "v1"}},
		{"docker save: the full name of io.containerd.image.name", ocispec.Descriptor{MediaType: manifest, Digest: dgst, Size: 1,
			Annotations: map[string]string{ocispec.AnnotationRefName: "3.19", AnnotationImageName: "docker.io/library/alpine:3.19"}},
			Entry{Repo: "docker.io/library/alpine", Tag: "3.19"}},
		{"docker save: another tag in the image name is ignored", ocispec.Descriptor{MediaType: manifest, Digest: dgst, Size: 1,
			Annotations: map[string]string{ocispec.AnnotationRefName: "3.19", AnnotationImageName: "docker.io/library/alpine:3.20"}},
			Entry{Tag: "3.19"}},
		{"unnamed, repositories recorded", ocispec.Descriptor{MediaType: manifest, Digest: dgst, Size: 1,
			Annotations: map[string]string{AnnotationRepositories: "reg/a, reg/b,,"}},
			Entry{Referrer: true, Repos: []string{"reg/a", "reg/b"}}},
		{"unnamed, nothing recorded (oras)", ocispec.Descriptor{MediaType: manifest, Digest: dgst, Size: 1}, Entry{Referrer: true}},
		{"unnamed, empty record", ocispec.Descriptor{MediaType: manifest, Digest: dgst, Size: 1,
			Annotations: map[string]string{AnnotationRepositories: ""}}, Entry{Referrer: true}},
		{"empty ref.name", named(manifest, ""), Entry{Referrer: true}},
	} {
		t.Run(c.what, func(t *testing.T) {
			c.want.Desc = c.d
			got := ParseEntry(c.d)
			require.Equal(t, c.want, got)
			require.Equal(t, !got.Referrer && got.Tag != "", got.IsTag())
		})
	}
}

func TestRepoPath(t *testing.T) {
	for full, want := range map[string]string{
		"docker.io/library/alpine":  "library/alpine",
		"localhost/app":             "app",
		"127.0.0.1:5000/demo/app":   "demo/app",
		"library/alpine":            "library/alpine", // no host: kept
		"alpine":                    "alpine",
		"reg.example:5000/team/app": "team/app",
		"":                          "",
	} {
		require.Equal(t, want, RepoPath(full), full)
		require.True(t, RepoMatch(full, want), full)
		require.True(t, RepoMatch(full, full), full)
	}
	require.False(t, RepoMatch("docker.io/library/alpine", "alpine"))
	require.False(t, RepoMatch("docker.io/library/alpine", "docker.io/library"))
}

// What regvault writes (Index) reads back as what it is: each tag a tag,
// each tag-schema index a list of referrers, each referrer and index
// child unnamed with its repositories.
func TestParseIndexOfIndex(t *testing.T) {
	image := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("image"), Size: 10}
	list := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("list"), Size: 20}
	child := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("child"), Size: 30}
	ref := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("ref"), Size: 40, ArtifactType: "application/spdx+json"}
	newGraph := func() *graph.Graph {
		g := graph.New("reg.example:5000")
		for _, d := range []ocispec.Descriptor{image, list, child, ref} {
			g.AddNode("team/app", d, graph.KindManifest)
		}
		g.AddTag(graph.Tag{Repo: "team/app", Name: "v1", Desc: image})
		g.AddTag(graph.Tag{Repo: "team/app", Name: "v2", Desc: list})
		g.AddReferrer("team/app", ref, image.Digest)
		return g
	}

	for _, full := range []bool{false, true} {
		name := map[bool]string{false: "tag-only", true: "full reference"}[full]
		t.Run(name, func(t *testing.T) {
			g := newGraph()
			AddTagSchema(g, full)
			data, err := Marshal(Index(g, full))
			require.NoError(t, err)
			idx, entries, err := ParseIndex(context.Background(), data)
			require.NoError(t, err)
			require.Len(t, entries, len(idx.Manifests))
			repo := ""
			if full {
				repo = "reg.example:5000/team/app"
			}
			var tags, schemas, unnamed []string
			for i, e := range entries {
				require.Equal(t, idx.Manifests[i], e.Desc)
				switch {
				case e.IsTag():
					require.Equal(t, repo, e.Repo)
					tags = append(tags, e.Tag+"="+e.Desc.Digest.Encoded()[:6])
				case e.TagSchema != "":
					require.Equal(t, repo, e.Repo)
					schemas = append(schemas, e.TagSchema.String())
				case e.Referrer:
					require.Equal(t, []string{"reg.example:5000/team/app"}, e.Repos)
					unnamed = append(unnamed, e.Desc.Digest.String())
				default:
					t.Fatalf("entry %d: %+v", i, e)
				}
			}
			require.Equal(t, []string{"v1=" + image.Digest.Encoded()[:6], "v2=" + list.Digest.Encoded()[:6]}, tags)
			require.Equal(t, []string{image.Digest.String()}, schemas)
			require.ElementsMatch(t, []string{child.Digest.String(), ref.Digest.String()}, unnamed)

			c := Summarize(entries)
			require.Equal(t, []string{repo}, c.TagRepos)
			require.Equal(t, map[string][]string{repo: {"v1", "v2"}}, c.Tags)
			require.Equal(t, 2, c.TagCount())
			require.Len(t, c.TagEntries, 2)
			if full {
				require.Equal(t, []string{repo}, c.Repos)
				require.False(t, c.TagOnly())
				require.Nil(t, c.Recorded)
				require.Empty(t, c.Unnamed)
			} else {
				require.Empty(t, c.Repos)
				require.True(t, c.TagOnly())
				require.Equal(t, []string{"reg.example:5000/team/app"}, c.Recorded)
				require.Equal(t, []string{"v1", "v2"}, c.Unnamed)
			}
		})
	}
}

// ParseIndex refuses what every reader refuses, naming the entry.
func TestParseIndexRefuses(t *testing.T) {
	ctx := context.Background()
	index := func(ds ...ocispec.Descriptor) []byte {
		data, err := json.Marshal(ocispec.Index{Manifests: ds})
		require.NoError(t, err)
		return data
	}
	good := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("a"), Size: 1}
	for what, c := range map[string]struct {
		data []byte
		want string
	}{
		"not JSON":      {[]byte("{"), "index.json: unexpected end of JSON input"},
		"wrong type":    {[]byte(`{"manifests":{}}`), "index.json: json: cannot unmarshal object into Go struct field Index.manifests of type []v1.Descriptor"},
		"bad digest":    {index(good, ocispec.Descriptor{Digest: "sha256:xyz"}), `index.json: entry 1: invalid digest "sha256:xyz": invalid checksum digest length`},
		"no digest":     {index(ocispec.Descriptor{}), `index.json: entry 0: invalid digest "": invalid checksum digest format`},
		"negative size": {index(ocispec.Descriptor{Digest: good.Digest, Size: -1}), "index.json: entry 0 (" + good.Digest.String() + "): negative size"},
		"second is bad": {index(good, good, ocispec.Descriptor{Digest: good.Digest, Size: -5}), "index.json: entry 2 (" + good.Digest.String() + "): negative size"},
	} {
		t.Run(what, func(t *testing.T) {
			_, _, err := ParseIndex(ctx, c.data)
			require.EqualError(t, err, c.want)
		})
	}
	// The same words, entry by entry, for a reader that goes on.
	require.EqualError(t, CheckEntry(3, ocispec.Descriptor{Digest: good.Digest, Size: -1}), "entry 3 ("+good.Digest.String()+"): negative size")
	require.NoError(t, CheckEntry(0, good))

	// An empty index is read: it names nothing.
	idx, entries, err := ParseIndex(ctx, []byte(`{"schemaVersion":2,"manifests":[]}`))
	require.NoError(t, err)
	require.Empty(t, entries)
	require.Equal(t, 2, idx.SchemaVersion)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = ParseIndex(cctx, index(good))
	require.ErrorIs(t, err, context.Canceled)
}

// Summarize: the names of a full-reference backup, referrers' recorded
// repositories among them, and restore's tags (sorted, each once; no
// digest-only or tag-schema entry).
func TestSummarize(t *testing.T) {
	hex := strings.Repeat("cd", 32)
	a, b := digest.FromString("a"), digest.FromString("b")
	desc := func(name string, d digest.Digest, mt string, ann map[string]string) ocispec.Descriptor {
		out := ocispec.Descriptor{MediaType: mt, Digest: d, Size: 1, Annotations: ann}
		if name != "" {
			out.Annotations = map[string]string{ocispec.AnnotationRefName: name}
		}
		return out
	}
	m := ocispec.MediaTypeImageManifest
	var entries []Entry
	for _, d := range []ocispec.Descriptor{
		desc("reg/x:v2", a, m, nil),
		desc("reg/x:v1", a, m, nil),
		desc("reg/x:v1", b, m, nil), // listed twice: one tag
		desc("reg/y@"+a.String(), a, m, nil),
		desc("reg/z:sha256-"+hex, b, ocispec.MediaTypeImageIndex, nil),
		desc("", b, m, map[string]string{AnnotationRepositories: "reg/w,reg/x"}),
	} {
		entries = append(entries, ParseEntry(d))
	}
	c := Summarize(entries)
	require.Equal(t, []string{"reg/w", "reg/x", "reg/y", "reg/z"}, c.Repos)
	require.Empty(t, c.Unnamed)
	require.Nil(t, c.Recorded)
	require.Equal(t, []string{"reg/x"}, c.TagRepos)
	require.Equal(t, map[string][]string{"reg/x": {"v1", "v2"}}, c.Tags)
	require.Equal(t, 2, c.TagCount())
	require.Len(t, c.TagEntries, 3, "every tag entry, in order, for the plan")
	require.Equal(t, "v2", c.TagEntries[0].Tag)
	require.Equal(t, []string{"reg/x"}, c.FindRepo("reg/x"))
	require.Equal(t, []string{"w", "x", "y", "z"}, c.Below("reg"))

	empty := Summarize(nil)
	require.False(t, empty.TagOnly())
	require.Empty(t, empty.Repos)
	require.Empty(t, empty.TagEntries)
	require.Equal(t, 0, empty.TagCount())
	require.True(t, slices.Equal(empty.Below(""), []string{}))
}
