package planfile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/planfile"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/source"
)

// walkSample walks every tag of the sample as backup --dry-run does.
func walkSample(t *testing.T, srv *registrytest.Server, sample registrytest.Sample, refs bool) *graph.Graph {
	t.Helper()
	ctx := context.Background()
	c, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	src := source.NewRegistry(c)
	g := graph.New(srv.Host())
	w := &source.Walker{Src: src, Graph: g, IncludeReferrers: refs}
	for _, repo := range sample.Repositories {
		for tag := range sample.Tags[repo] {
			desc, body, err := src.Resolve(ctx, repo, tag)
			if err != nil {
				t.Fatal(err)
			}
			g.AddTag(graph.Tag{Repo: repo, Name: tag, Desc: desc})
			if err := w.Walk(ctx, repo, desc, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	return g
}

func encode(t testing.TB, p *planfile.Plan) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func digestsOf(p *planfile.Plan, idx []int32) []digest.Digest {
	out := make([]digest.Digest, 0, len(idx))
	for _, i := range idx {
		out = append(out, p.Content[i].Digest)
	}
	slices.Sort(out)
	return out
}

func TestFromGraphSample(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	p, err := planfile.FromGraph(walkSample(t, srv, sample, true), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.UniqueBytes(), sample.UniqueBytes(); got != want {
		t.Errorf("unique bytes %d, want %d", got, want)
	}
	var names []string
	for _, r := range p.Repositories {
		names = append(names, r.Name)
		for _, tg := range r.Tags {
			if want := sample.Tags[r.Name][tg.Name]; tg.Digest != want.Digest || tg.Size != want.Size || tg.MediaType != want.MediaType {
				t.Errorf("%s:%s is %s %s %d, pushed %s %s %d", r.Name, tg.Name, tg.Digest, tg.MediaType, tg.Size, want.Digest, want.MediaType, want.Size)
			}
		}
		if len(r.Tags) != len(sample.Tags[r.Name]) {
			t.Errorf("%s: %d tags, pushed %d", r.Name, len(r.Tags), len(sample.Tags[r.Name]))
		}
	}
	if !slices.Equal(names, sample.Repositories) {
		t.Errorf("repositories %v, want %v", names, sample.Repositories)
	}
	// What each repository needs is exactly what was pushed there,
	// referrers (nested ones too) included.
	x := planfile.NewIndex(p)
	for i, r := range p.Repositories {
		if got, want := digestsOf(p, x.RepositoryNeeds(i, nil)), sample.Digests(r.Name); !slices.Equal(got, want) {
			t.Errorf("%s needs %v,\npushed %v", r.Name, got, want)
		}
	}
	// A tag needs its own graph: backend:v1 needs neither the index of v2
	// nor its platform images.
	bi, _ := slices.BinarySearch(names, registrytest.SampleBackend)
	v2 := sample.Tags[registrytest.SampleBackend]["v2"].Digest
	ti := slices.IndexFunc(p.Repositories[bi].Tags, func(t planfile.Tag) bool { return t.Name == "v1" })
	v1Needs := digestsOf(p, x.Needs(bi, ti, nil))
	if slices.Contains(v1Needs, v2) || !slices.Contains(v1Needs, sample.BaseLayer.Digest) {
		t.Errorf("backend:v1 needs %v", v1Needs)
	}

	// The same registry state gives the same bytes, however the walk ran.
	again, err := planfile.FromGraph(walkSample(t, srv, sample, true), true)
	if err != nil {
		t.Fatal(err)
	}
	b1, b2 := encode(t, p), encode(t, again)
	if !bytes.Equal(b1, b2) {
		t.Errorf("two plans of the same registry differ:\n%s\n%s", b1, b2)
	}
	// And Read gives the plan back.
	back, err := planfile.Read(bytes.NewReader(b1))
	if err != nil {
		t.Fatal(err)
	}
	if b3 := encode(t, back); !bytes.Equal(b1, b3) {
		t.Errorf("read and encoded again, the plan differs")
	}
}

func TestFromGraphWithoutReferrers(t *testing.T) {
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
	p, err := planfile.FromGraph(walkSample(t, srv, sample, false), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Referrers) != 0 || p.IncludeReferrers {
		t.Errorf("referrers %v, includeReferrers %v", p.Referrers, p.IncludeReferrers)
	}
	refs := map[digest.Digest]bool{}
	for _, rs := range sample.Referrers {
		for _, r := range rs {
			refs[r.Descriptor.Digest] = true
		}
	}
	for _, c := range p.Content {
		if refs[c.Digest] {
			t.Errorf("referrer %s in a plan without referrers", c.Digest)
		}
	}
	if p.UniqueBytes() >= sample.UniqueBytes() {
		t.Errorf("unique bytes %d without referrers, %d with", p.UniqueBytes(), sample.UniqueBytes())
	}
}

// small is a valid plan to damage: one repository, an index of one
// image, a referrer.
func small() *planfile.Plan {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	p := &planfile.Plan{
		Version: planfile.Version, Registry: "registry.example:5000", IncludeReferrers: true,
		Content: []planfile.Content{
			{Digest: d("index"), MediaType: ocispec.MediaTypeImageIndex, Size: 300, Kind: planfile.KindManifest, Children: []digest.Digest{d("image")}},
			{Digest: d("image"), MediaType: ocispec.MediaTypeImageManifest, Size: 200, Kind: planfile.KindManifest, Children: []digest.Digest{d("config"), d("layer")}},
			{Digest: d("config"), MediaType: ocispec.MediaTypeImageConfig, Size: 10, Kind: planfile.KindConfig},
			{Digest: d("layer"), MediaType: ocispec.MediaTypeImageLayerGzip, Size: 1000, Kind: planfile.KindLayer},
			{Digest: d("sbom"), MediaType: ocispec.MediaTypeImageManifest, Size: 100, Kind: planfile.KindManifest, Children: []digest.Digest{d("config"), d("sbom-blob")}},
			{Digest: d("sbom-blob"), MediaType: "application/spdx+json", Size: 50, Kind: planfile.KindLayer},
		},
		Referrers: []planfile.Referrer{{Digest: d("sbom"), Subject: d("index"), Repositories: []string{"a/b"}}},
		Repositories: []planfile.Repository{
			{Name: "a/b", Tags: []planfile.Tag{{Name: "1.0", Digest: d("index"), MediaType: ocispec.MediaTypeImageIndex, Size: 300}}},
			{Name: "c", Tags: []planfile.Tag{{Name: "latest", Digest: d("image"), MediaType: ocispec.MediaTypeImageManifest, Size: 200}}},
		},
	}
	p.Sort()
	return p
}

func TestSmallPlan(t *testing.T) {
	p := small()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := p.UniqueBytes(); got != 1660 {
		t.Errorf("unique bytes %d, want 1660", got)
	}
	x := planfile.NewIndex(p)
	// c:latest is the image alone: the SBOM refers to the index, in a/b.
	if got := x.Size(x.Needs(1, 0, nil)); got != 1210 {
		t.Errorf("c:latest needs %d bytes, want 1210", got)
	}
	if got := x.Size(x.Needs(0, 0, nil)); got != 1660 {
		t.Errorf("a/b:1.0 needs %d bytes, want 1660", got)
	}
}

func TestReadRefuses(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	cases := []struct {
		name   string
		damage func(p *planfile.Plan)
		raw    func(b []byte) []byte
		want   string
	}{
		{name: "later version", damage: func(p *planfile.Plan) { p.Version = 2 }, want: "plan format version 2 is not supported"},
		{name: "no version", raw: func(b []byte) []byte { return bytes.Replace(b, []byte(`"version": 1,`), nil, 1) }, want: `no "version" field`},
		{name: "not JSON", raw: func([]byte) []byte { return []byte("repositories:\n") }, want: "not a plan file"},
		{name: "not an object", raw: func([]byte) []byte { return []byte("[1]") }, want: "not a plan file: it is not a JSON object"},
		{name: "version not a number", raw: func(b []byte) []byte { return bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": "1"`), 1) }, want: "its version is not a number"},
		{name: "version last", raw: func(b []byte) []byte {
			b = bytes.Replace(b, []byte(`"version": 1,`), nil, 1)
			return bytes.Replace(b, []byte(`"registry":`), []byte(`"shards": 4, "version": 7, "registry":`), 1)
		}, want: "plan format version 7 is not supported"},
		{name: "unknown field", raw: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"registry":`), []byte(`"shards": 4, "registry":`), 1)
		}, want: `unknown field "shards"`},
		{name: "trailing data", raw: func(b []byte) []byte { return append(b, []byte("{}")...) }, want: "data after the plan's JSON object"},
		{name: "bad registry", damage: func(p *planfile.Plan) { p.Registry = "" }, want: "not a registry host"},
		{name: "bad tag digest", damage: func(p *planfile.Plan) { p.Repositories[0].Tags[0].Digest = "sha256:1234" }, want: `"sha256:1234" is not a digest`},
		{name: "bad content digest", damage: func(p *planfile.Plan) { p.Content[0].Digest = "md5:x" }, want: "is not a digest"},
		{name: "unsorted repositories", damage: func(p *planfile.Plan) {
			p.Repositories[0], p.Repositories[1] = p.Repositories[1], p.Repositories[0]
		}, want: "repositories are not sorted by name"},
		{name: "duplicate repository", damage: func(p *planfile.Plan) { p.Repositories[1].Name = p.Repositories[0].Name }, want: `name "a/b" is listed twice`},
		{name: "duplicate tag", damage: func(p *planfile.Plan) {
			p.Repositories[0].Tags = append(p.Repositories[0].Tags, p.Repositories[0].Tags[0])
		}, want: `name "1.0" is listed twice`},
		{name: "unsorted content", damage: func(p *planfile.Plan) { p.Content[0], p.Content[1] = p.Content[1], p.Content[0] }, want: "content are not sorted by digest"},
		{name: "tag digest not in content", damage: func(p *planfile.Plan) { p.Repositories[1].Tags[0].Digest = d("other") }, want: "is not in the plan's content"},
		{name: "tag size differs", damage: func(p *planfile.Plan) { p.Repositories[1].Tags[0].Size = 5 }, want: "the plan's content gives"},
		{name: "tag on a blob", damage: func(p *planfile.Plan) {
			p.Repositories[1].Tags[0] = planfile.Tag{Name: "latest", Digest: d("layer"), MediaType: ocispec.MediaTypeImageLayerGzip, Size: 1000}
		}, want: "is a layer in the plan's content, not a manifest"},
		{name: "bad tag name", damage: func(p *planfile.Plan) { p.Repositories[1].Tags[0].Name = "no/slash" }, want: "is not a tag name"},
		{name: "bad repository name", damage: func(p *planfile.Plan) { p.Repositories[1].Name = "Upper" }, want: "is not a repository name"},
		{name: "negative size", damage: func(p *planfile.Plan) {
			for i := range p.Content {
				if p.Content[i].Kind == planfile.KindLayer {
					p.Content[i].Size = -1
				}
			}
		}, want: "is negative"},
		{name: "bad kind", damage: func(p *planfile.Plan) { p.Content[0].Kind = "blob" }, want: `kind "blob"`},
		{name: "child not in content", damage: func(p *planfile.Plan) {
			for i := range p.Content {
				if p.Content[i].Digest == d("image") {
					p.Content[i].Children = append(p.Content[i].Children, d("missing"))
				}
			}
		}, want: "is not in the plan's content"},
		{name: "content needed by no tag", damage: func(p *planfile.Plan) {
			p.Content = append(p.Content, planfile.Content{Digest: d("orphan"), MediaType: "x/y", Size: 1, Kind: planfile.KindLayer})
			p.Sort()
		}, want: "is needed by no tag"},
		{name: "referrers without the policy", damage: func(p *planfile.Plan) { p.IncludeReferrers = false }, want: "includeReferrers is false"},
		{name: "referrer in an unknown repository", damage: func(p *planfile.Plan) { p.Referrers[0].Repositories = []string{"zzz"} }, want: `repository "zzz" is not one of the plan's repositories`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := small()
			var b []byte
			if c.damage != nil {
				c.damage(p)
				var err error
				if b, err = json.MarshalIndent(p, "", "  "); err != nil {
					t.Fatal(err)
				}
			} else {
				b = encode(t, p)
			}
			if c.raw != nil {
				b = c.raw(b)
			}
			_, err := planfile.Read(bytes.NewReader(b))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Read: %v, want an error with %q", err, c.want)
			}
			if c.damage != nil {
				if err := p.Encode(new(bytes.Buffer)); err == nil {
					t.Errorf("Encode wrote an invalid plan")
				}
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	var b bytes.Buffer
	if err := small().Encode(&b); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte(`{"version":1,"registry":"r","repositories":[],"content":[]}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := planfile.Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What Read accepts encodes, reads back the same, and indexes.
		var one bytes.Buffer
		if err := p.Encode(&one); err != nil {
			t.Fatalf("Read accepted a plan Encode refuses: %v", err)
		}
		q, err := planfile.Read(bytes.NewReader(one.Bytes()))
		if err != nil {
			t.Fatalf("an encoded plan does not read back: %v", err)
		}
		var two bytes.Buffer
		if err := q.Encode(&two); err != nil || !bytes.Equal(one.Bytes(), two.Bytes()) {
			t.Fatalf("encoding is not stable: %v", err)
		}
		x := planfile.NewIndex(q)
		for i := range q.Repositories {
			for j := range q.Repositories[i].Tags {
				x.Needs(i, j, nil)
			}
		}
	})
}

func TestFilter(t *testing.T) {
	p := small()
	q := p.Filter(func(repo, tag string) bool { return repo == "c" })
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(q.Repositories) != 1 || q.Repositories[0].Name != "c" || len(q.Referrers) != 0 || q.UniqueBytes() != 1210 {
		t.Errorf("filtered to c: %+v", q)
	}
	if all := p.Filter(func(string, string) bool { return true }); !bytes.Equal(encode(t, all), encode(t, p)) {
		t.Errorf("filtered to every tag, the plan differs")
	}
}

// The encoding is pinned: a change of it is a change of the format
// (docs/plan-format.md), which needs a new version.
func TestEncodeGolden(t *testing.T) {
	want, err := os.ReadFile("testdata/small.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := encode(t, small()); !bytes.Equal(got, want) {
		t.Errorf("the plan encodes as\n%s\ntestdata/small.json holds\n%s", got, want)
	}
}

// The same content in another registry (distribution: referrers by the
// tag schema, not the Referrers API) gives the same plan, but for the
// registry's name.
func TestFromGraphDistributionSameAsInProcess(t *testing.T) {
	dist := registrytest.NewDistribution(t, registrytest.DistConfig{})
	mem := registrytest.NewInProcess(t)
	plans := map[string][]byte{}
	for name, srv := range map[string]*registrytest.Server{"distribution": dist, "in-process": mem} {
		sample := registrytest.Seed(t, srv, registrytest.SampleOptions{})
		p, err := planfile.FromGraph(walkSample(t, srv, sample, true), true)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Referrers) == 0 {
			t.Fatalf("%s: no referrers", name)
		}
		p.Registry = "registry.example"
		plans[name] = encode(t, p)
	}
	if !bytes.Equal(plans["distribution"], plans["in-process"]) {
		t.Errorf("the plans of one content in two registries differ:\n%s\n%s", plans["distribution"], plans["in-process"])
	}
}
