package registrytest

import (
	"context"
	"fmt"
	"sort"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// Sample repository names (under SampleOptions.Prefix).
const (
	SampleFrontend = "demo/frontend"
	SampleBackend  = "demo/backend"
	SampleBase     = "library/base"
)

// SampleOptions tunes SeedSample. The zero value is fine.
type SampleOptions struct {
	// Prefix is put in front of every repository name ("mirror/" gives
	// "mirror/demo/frontend").
	Prefix string
	// Seed varies all content (default "regvault"): two samples with
	// different seeds share no blob.
	Seed string
	// BaseLayerSize is the size of the layer every image shares
	// (default 32 KiB); LayerSize that of each image's own layer
	// (default 4 KiB).
	BaseLayerSize int
	LayerSize     int
}

// Referrer is a referrer pushed by SeedSample.
type Referrer struct {
	Subject    ocispec.Descriptor // what it refers to
	Descriptor ocispec.Descriptor // the referrer manifest, with ArtifactType
}

// Sample is what SeedSample pushed.
type Sample struct {
	Host string
	// Repositories, sorted: Prefix + demo/backend, demo/frontend,
	// library/base.
	Repositories []string
	// Tags maps repository → tag → the tagged manifest.
	Tags map[string]map[string]ocispec.Descriptor
	// Referrers maps repository → the referrers pushed there, in push
	// order (a subject before its referrer).
	Referrers map[string][]Referrer
	// Content maps repository → every descriptor pushed there (configs,
	// layers, manifests, indexes, referrers), once per digest, in push
	// order (children before parents). Referrers tag-schema indexes that
	// the client writes on a registry without the Referrers API are not
	// included.
	Content map[string][]ocispec.Descriptor
	// BaseLayer is the layer every image of every repository shares.
	BaseLayer ocispec.Descriptor
}

// SeedSample pushes a small, deterministic sample to the registry at
// target, for the demo and tests:
//
//   - Prefix+library/base: 1.0 an OCI image; 1.1 a Docker manifest list of
//     two Docker images (linux/amd64, linux/arm64).
//   - Prefix+demo/backend: v1 an OCI image; v2 an OCI index of two images
//     (linux/amd64, linux/arm64). The amd64 image has a signature
//     referrer, and the signature has a timestamp referrer (nested).
//   - Prefix+demo/frontend: v1 and v2, two OCI images.
//
// Every image (every platform image too) has the same base layer and a
// layer of its own; every tagged manifest has an SBOM referrer. Same
// options, same digests, on every run and registry.
func SeedSample(ctx context.Context, target Target, opts SampleOptions) (Sample, error) {
	if opts.Seed == "" {
		opts.Seed = "regvault"
	}
	if opts.BaseLayerSize <= 0 {
		opts.BaseLayerSize = 32 << 10
	}
	if opts.LayerSize <= 0 {
		opts.LayerSize = 4 << 10
	}
	sd := &seeder{
		target: target,
		opts:   opts,
		base:   Bytes(opts.Seed+"/base-layer", opts.BaseLayerSize),
		sample: Sample{
			Host:      target.Host,
			Tags:      map[string]map[string]ocispec.Descriptor{},
			Referrers: map[string][]Referrer{},
			Content:   map[string][]ocispec.Descriptor{},
		},
		seen: map[string]map[digest.Digest]bool{},
	}
	sd.sample.BaseLayer = Descriptor(ocispec.MediaTypeImageLayerGzip, sd.base)
	if err := sd.seed(ctx); err != nil {
		return Sample{}, err
	}
	sort.Strings(sd.sample.Repositories)
	return sd.sample, nil
}

type seeder struct {
	target Target
	opts   SampleOptions
	base   []byte
	sample Sample
	seen   map[string]map[digest.Digest]bool
}

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

func (sd *seeder) seed(ctx context.Context) error {
	// library/base
	base, err := sd.repo(SampleBase)
	if err != nil {
		return err
	}
	if _, err := sd.image(ctx, base, "1.0", Image{}); err != nil {
		return err
	}
	var children []ocispec.Descriptor
	for _, p := range []ocispec.Platform{amd64, arm64} {
		d, err := sd.image(ctx, base, "", Image{Docker: true, Platform: &p})
		if err != nil {
			return err
		}
		children = append(children, d)
	}
	if _, err := sd.index(ctx, base, "1.1", MediaTypeDockerManifestList, children); err != nil {
		return err
	}

	// demo/backend
	backend, err := sd.repo(SampleBackend)
	if err != nil {
		return err
	}
	if _, err := sd.image(ctx, backend, "v1", Image{}); err != nil {
		return err
	}
	children = nil
	for _, p := range []ocispec.Platform{amd64, arm64} {
		d, err := sd.image(ctx, backend, "", Image{Platform: &p})
		if err != nil {
			return err
		}
		children = append(children, d)
	}
	if _, err := sd.index(ctx, backend, "v2", ocispec.MediaTypeImageIndex, children); err != nil {
		return err
	}
	sig, err := sd.referrer(ctx, backend, children[0], ArtifactTypeSignature, "signature")
	if err != nil {
		return err
	}
	if _, err := sd.referrer(ctx, backend, sig, ArtifactTypeTimestamp, "timestamp"); err != nil {
		return err
	}

	// demo/frontend
	frontend, err := sd.repo(SampleFrontend)
	if err != nil {
		return err
	}
	for _, tag := range []string{"v1", "v2"} {
		if _, err := sd.image(ctx, frontend, tag, Image{}); err != nil {
			return err
		}
	}
	return nil
}

func (sd *seeder) repo(name string) (*remote.Repository, error) {
	full := sd.opts.Prefix + name
	r, err := sd.target.Repository(full)
	if err != nil {
		return nil, err
	}
	sd.sample.Repositories = append(sd.sample.Repositories, full)
	sd.sample.Tags[full] = map[string]ocispec.Descriptor{}
	sd.seen[full] = map[digest.Digest]bool{}
	return r, nil
}

func (sd *seeder) record(repo string, descs ...ocispec.Descriptor) {
	for _, d := range descs {
		if sd.seen[repo][d.Digest] {
			continue
		}
		sd.seen[repo][d.Digest] = true
		sd.sample.Content[repo] = append(sd.sample.Content[repo], d)
	}
}

// image pushes an image with the base layer and one of its own; tagged
// images get an SBOM.
func (sd *seeder) image(ctx context.Context, r *remote.Repository, tag string, img Image) (ocispec.Descriptor, error) {
	name := r.Reference.Repository
	id := name + ":" + tag
	if img.Platform != nil {
		id += "/" + img.Platform.OS + "/" + img.Platform.Architecture
	}
	img.Layers = [][]byte{sd.base, Bytes(sd.opts.Seed+"/layer/"+id, sd.opts.LayerSize)}
	d, parts, err := pushImage(ctx, r, tag, img)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", id, err)
	}
	sd.record(name, parts...)
	if tag != "" {
		sd.sample.Tags[name][tag] = d
		if _, err := sd.referrer(ctx, r, d, ArtifactTypeSBOM, "sbom"); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return d, nil
}

func (sd *seeder) index(ctx context.Context, r *remote.Repository, tag, mediaType string, children []ocispec.Descriptor) (ocispec.Descriptor, error) {
	name := r.Reference.Repository
	d, err := pushIndex(ctx, r, tag, mediaType, children)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s:%s: %w", name, tag, err)
	}
	sd.record(name, d)
	sd.sample.Tags[name][tag] = d
	if _, err := sd.referrer(ctx, r, d, ArtifactTypeSBOM, "sbom"); err != nil {
		return ocispec.Descriptor{}, err
	}
	return d, nil
}

func (sd *seeder) referrer(ctx context.Context, r *remote.Repository, subject ocispec.Descriptor, artifactType, what string) (ocispec.Descriptor, error) {
	name := r.Reference.Repository
	payload := fmt.Appendf(nil, `{"%s":{"subject":%q,"seed":%q}}`+"\n", what, subject.Digest, sd.opts.Seed)
	d, parts, err := pushReferrer(ctx, r, subject, artifactType, payload)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %s for %s: %w", name, what, subject.Digest, err)
	}
	sd.record(name, parts...)
	sd.sample.Referrers[name] = append(sd.sample.Referrers[name], Referrer{Subject: subject, Descriptor: d})
	return d, nil
}

// Digests is every digest in repository repo, sorted.
func (s Sample) Digests(repo string) []digest.Digest {
	out := make([]digest.Digest, 0, len(s.Content[repo]))
	for _, d := range s.Content[repo] {
		out = append(out, d.Digest)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Unique is every distinct piece of content over all repositories, sorted
// by digest: what a deduplicating backup stores. Content pushed under
// two media types (the base layer is an OCI layer in OCI images and a
// Docker layer in Docker images) appears once, as first pushed in the
// first repository.
func (s Sample) Unique() []ocispec.Descriptor {
	m := map[digest.Digest]ocispec.Descriptor{}
	for _, repo := range s.Repositories {
		for _, d := range s.Content[repo] {
			if _, ok := m[d.Digest]; !ok {
				m[d.Digest] = d
			}
		}
	}
	out := make([]ocispec.Descriptor, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

// UniqueBytes is the total size of Unique.
func (s Sample) UniqueBytes() int64 {
	var n int64
	for _, d := range s.Unique() {
		n += d.Size
	}
	return n
}

// References is every tagged reference, "host/repo:tag", sorted.
func (s Sample) References() []string {
	var out []string
	for repo, tags := range s.Tags {
		for tag := range tags {
			out = append(out, s.Host+"/"+repo+":"+tag)
		}
	}
	sort.Strings(out)
	return out
}
