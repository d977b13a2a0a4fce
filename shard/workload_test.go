package shard_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/planfile"
)

const mib = 1 << 20

// workload describes a generated plan.
type workload struct {
	seed    uint64
	repos   int // ordinary repositories
	maxTags int // each has 1 … maxTags tags
	// Repository sizes are spread log-uniformly over minSize … 100×minSize.
	minSize int64
	// hugeTags > 0 adds one repository of that many tags, hugeSize bytes,
	// whose base layer changes every 1,000 tags (as a CI repository): the
	// base layers make 3% of it, a layer of each tag's own the rest.
	hugeTags int
	hugeSize int64
}

// builder gathers content once per digest.
type builder struct {
	p    *planfile.Plan
	seen map[digest.Digest]bool
}

func (b *builder) add(c planfile.Content) planfile.Content {
	if !b.seen[c.Digest] {
		b.seen[c.Digest] = true
		b.p.Content = append(b.p.Content, c)
	}
	return c
}

func (b *builder) blob(name, kind string, size int64) digest.Digest {
	mt := ocispec.MediaTypeImageLayerGzip
	if kind == planfile.KindConfig {
		mt = ocispec.MediaTypeImageConfig
	}
	return b.add(planfile.Content{Digest: digest.FromString(name), MediaType: mt, Size: size, Kind: kind}).Digest
}

func (b *builder) manifest(name, mt string, size int64, children ...digest.Digest) planfile.Content {
	return b.add(planfile.Content{Digest: digest.FromString(name), MediaType: mt, Size: size, Kind: planfile.KindManifest, Children: children})
}

// image is a manifest over a config of its own and layers.
func (b *builder) image(name string, layers ...digest.Digest) planfile.Content {
	cfg := b.blob(name+"/config", planfile.KindConfig, 1500)
	return b.manifest(name, ocispec.MediaTypeImageManifest, 500+int64(len(layers))*100, append([]digest.Digest{cfg}, layers...)...)
}

func tagOf(c planfile.Content, name string) planfile.Tag {
	return planfile.Tag{Name: name, Digest: c.Digest, MediaType: c.MediaType, Size: c.Size}
}

// generate makes a deterministic plan: repositories whose sizes vary
// 100×, each with a base layer its tags share (30% of it), one of four base layers
// shared across repositories, a layer of each tag's own, an index every
// seventh tag (over the previous tag's image and one of its own), and an
// SBOM referrer on every fifth tag.
func (w workload) generate() *planfile.Plan {
	rng := rand.New(rand.NewPCG(w.seed, 1))
	b := &builder{p: &planfile.Plan{Version: planfile.Version, Registry: "registry.example", IncludeReferrers: true}, seen: map[digest.Digest]bool{}}
	var shared []digest.Digest
	for i := range 4 {
		shared = append(shared, b.blob(fmt.Sprintf("shared-%d", i), planfile.KindLayer, 2*mib))
	}
	addRepo := func(name string, tags int, size int64, baseEvery int, baseShare float64) {
		repo := planfile.Repository{Name: name}
		common := shared[rng.IntN(len(shared))]
		perTag := int64(float64(size) * (1 - baseShare) / float64(tags))
		baseSize := int64(float64(size) * baseShare / float64((tags+baseEvery-1)/baseEvery))
		var prev planfile.Content
		for t := range tags {
			tag := fmt.Sprintf("%s/%d", name, t)
			base := b.blob(fmt.Sprintf("%s/base-%d", name, t/baseEvery), planfile.KindLayer, baseSize)
			own := b.blob(tag+"/layer", planfile.KindLayer, perTag/2+rng.Int64N(perTag+1))
			img := b.image(tag, common, base, own)
			root := img
			if t%7 == 6 {
				root = b.manifest(tag+"/index", ocispec.MediaTypeImageIndex, 700, prev.Digest, img.Digest)
			}
			if t%5 == 4 {
				blob := b.blob(tag+"/sbom-blob", planfile.KindLayer, 20_000)
				sbom := b.manifest(tag+"/sbom", ocispec.MediaTypeImageManifest, 600, blob)
				b.p.Referrers = append(b.p.Referrers, planfile.Referrer{Digest: sbom.Digest, Subject: root.Digest, Repositories: []string{name}})
			}
			repo.Tags = append(repo.Tags, tagOf(root, fmt.Sprintf("v%05d", t)))
			prev = img
		}
		b.p.Repositories = append(b.p.Repositories, repo)
	}
	for r := range w.repos {
		size := int64(float64(w.minSize) * math.Pow(100, rng.Float64()))
		tags := 1 + rng.IntN(w.maxTags)
		addRepo(fmt.Sprintf("team-%03d/app-%04d", r%17, r), tags, size, 1<<30, 0.3)
	}
	if w.hugeTags > 0 {
		addRepo("ci/builds", w.hugeTags, w.hugeSize, 1000, 0.03)
	}
	b.p.Sort()
	if err := b.p.Validate(); err != nil {
		panic(err)
	}
	return b.p
}
