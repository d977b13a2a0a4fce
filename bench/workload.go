package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// MiB and GiB are sizes in bytes; MB is the unit of the MB/s columns.
const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
	MB  = 1e6
)

// generatorVersion is part of every cache key: change it when the
// generated content changes, so that a stale seeded registry is not used.
const generatorVersion = "2"

// Workload names.
const (
	WorkloadD1 = "D1" // 8 repositories × 3 tags, shared layers, SBOM referrers
	WorkloadL  = "L"  // ≥2 GiB unique over ≥20 repositories
	WorkloadS  = "S"  // 200 repositories × 5 tags of small images
	WorkloadB  = "B"  // one image with a single 2 GiB layer
)

// AllWorkloads is the order in which workloads run and are reported.
var AllWorkloads = []string{WorkloadD1, WorkloadL, WorkloadS, WorkloadB}

// Options size the workloads.
type Options struct {
	// Quick makes every workload small, for developing the harness.
	Quick bool
	// LSize is the unique size of L in bytes (default 2 GiB, quick 64 MiB).
	LSize int64
	// BSize is the size of B's one layer (default 2 GiB, quick 128 MiB).
	BSize int64
	// SRepos is the number of repositories of S (default 200, quick 20).
	SRepos int
}

// Layer is one generated layer: Size bytes of registrytest.NewReader(Seed,
// Size) in an uncompressed gzip stream (a little larger than Size).
// Layers with the same Seed are the same blob.
type Layer struct {
	Seed string `json:"seed"`
	Size int64  `json:"size"`
}

// ImageSpec is one tag: an OCI image manifest for linux/amd64 with a
// config and Layers, and optionally one SBOM referrer.
type ImageSpec struct {
	Tag      string  `json:"tag"`
	Layers   []Layer `json:"layers"`
	Referrer bool    `json:"referrer,omitempty"`
}

// RepoSpec is one repository and its tags.
type RepoSpec struct {
	Name   string      `json:"name"`
	Images []ImageSpec `json:"images"`
}

// Spec is a workload to generate: everything about it follows from the
// name, the seed and the options.
type Spec struct {
	Name string `json:"name"`
	// Variant is "" for the workload as docs/benchmarks.md defines it, and names the
	// size otherwise ("100" for S with 100 repositories, "512M" for B
	// with 512 MiB): results of different sizes are kept apart.
	Variant string     `json:"variant,omitempty"`
	Seed    string     `json:"seed"`
	Quick   bool       `json:"quick,omitempty"`
	About   string     `json:"about"`
	Repos   []RepoSpec `json:"repos"`
}

// NewSpec is the workload name (D1, L, S, B) generated from seed.
func NewSpec(name, seed string, o Options) (Spec, error) {
	s := Spec{Name: name, Seed: seed, Quick: o.Quick}
	ls := func(parts ...string) string { return seed + "/" + name + "/" + strings.Join(parts, "/") }
	switch name {
	case WorkloadD1:
		// 8 repos × 3 tags; per image a layer shared by all repositories,
		// one shared by the tags of its repository, one of its own, and an
		// SBOM referrer. Quick: the same shape, layers 1/16 the size.
		shared, perRepo, own := int64(32*MiB), int64(8*MiB), int64(2*MiB)
		if o.Quick {
			shared, perRepo, own = shared/16, perRepo/16, own/16
		}
		for r := 0; r < 8; r++ {
			repo := RepoSpec{Name: fmt.Sprintf("d1/app-%d", r)}
			for t := 1; t <= 3; t++ {
				repo.Images = append(repo.Images, ImageSpec{
					Tag: fmt.Sprintf("v%d", t),
					Layers: []Layer{
						{Seed: ls("shared"), Size: shared},
						{Seed: ls("repo", fmt.Sprint(r)), Size: perRepo},
						{Seed: ls("own", fmt.Sprint(r), fmt.Sprint(t)), Size: own},
					},
					Referrer: true,
				})
			}
			s.Repos = append(s.Repos, repo)
		}
		s.About = fmt.Sprintf("8 repositories × 3 tags; per image a %s layer shared by all repositories, a %s layer shared by the tags of its repository, a %s layer of its own, and one SBOM referrer",
			sizeString(shared), sizeString(perRepo), sizeString(own))
	case WorkloadL:
		// 20 repositories × 2 tags, every layer unique: three layers per
		// image of about 50%, 30% and 20% of the image's share, varied
		// by ±12% from the seed so that sizes are not all alike.
		total := o.LSize
		if total <= 0 {
			total = 2 * GiB
			if o.Quick {
				total = 64 * MiB
			}
		}
		const repos, tags = 20, 2
		perImage := total / (repos * tags)
		var sum int64
		for r := 0; r < repos; r++ {
			repo := RepoSpec{Name: fmt.Sprintf("l/svc-%02d", r)}
			for t := 1; t <= tags; t++ {
				img := ImageSpec{Tag: fmt.Sprintf("v%d", t)}
				for i, frac := range []float64{0.5, 0.3, 0.2} {
					v := 0.88 + 0.24*unitFloat(ls("size", fmt.Sprint(r), fmt.Sprint(t), fmt.Sprint(i)))
					size := int64(float64(perImage) * frac * v)
					img.Layers = append(img.Layers, Layer{Seed: ls("layer", fmt.Sprint(r), fmt.Sprint(t), fmt.Sprint(i)), Size: size})
					sum += size
				}
				repo.Images = append(repo.Images, img)
			}
			s.Repos = append(s.Repos, repo)
		}
		// Top up the last layer so that the total is at least total.
		if sum < total {
			last := &s.Repos[repos-1].Images[tags-1].Layers[2]
			last.Size += total - sum
		}
		if o.LSize > 0 && !(o.LSize == 2*GiB && !o.Quick) {
			s.Variant = fmt.Sprintf("%dM", o.LSize/MiB)
		}
		s.About = fmt.Sprintf("%d repositories × %d tags, 3 unique layers per image, %s unique", repos, tags, sizeString(total))
	case WorkloadS:
		repos := o.SRepos
		if repos <= 0 {
			repos = 200
			if o.Quick {
				repos = 20
			}
		} else if !(repos == 200 && !o.Quick) {
			s.Variant = fmt.Sprint(repos)
		}
		for r := 0; r < repos; r++ {
			repo := RepoSpec{Name: fmt.Sprintf("s/repo-%04d", r)}
			for t := 1; t <= 5; t++ {
				repo.Images = append(repo.Images, ImageSpec{
					Tag: fmt.Sprintf("v%d", t),
					Layers: []Layer{
						{Seed: ls("base", fmt.Sprint(r)), Size: 16 * KiB},
						{Seed: ls("own", fmt.Sprint(r), fmt.Sprint(t)), Size: 2 * KiB},
					},
				})
			}
			s.Repos = append(s.Repos, repo)
		}
		s.About = fmt.Sprintf("%d repositories × 5 tags; per image a 16 KiB layer shared by the tags of its repository and a 2 KiB layer of its own", repos)
	case WorkloadB:
		size := o.BSize
		if size <= 0 {
			size = 2 * GiB
			if o.Quick {
				size = 128 * MiB
			}
		} else if !(size == 2*GiB && !o.Quick) {
			s.Variant = fmt.Sprintf("%dM", size/MiB)
		}
		s.Repos = []RepoSpec{{Name: "b/big", Images: []ImageSpec{{Tag: "v1", Layers: []Layer{{Seed: ls("big"), Size: size}}}}}}
		s.About = fmt.Sprintf("one image with a single %s layer", sizeString(size))
	default:
		return Spec{}, fmt.Errorf("unknown workload %q (want one of %s)", name, strings.Join(AllWorkloads, ", "))
	}
	return s, nil
}

// Key names the seeded registry of this spec in the cache: the same key
// means the same content.
func (s Spec) Key() string {
	h := sha256.New()
	fmt.Fprintf(h, "v%s\n%s\n", generatorVersion, s.Seed)
	for _, r := range s.Repos {
		fmt.Fprintf(h, "%s\n", r.Name)
		for _, img := range r.Images {
			fmt.Fprintf(h, " %s %v\n", img.Tag, img.Referrer)
			for _, l := range img.Layers {
				fmt.Fprintf(h, "  %s %d\n", l.Seed, l.Size)
			}
		}
	}
	return s.FullName() + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// FullName is the name with the variant and "-quick" for the quick
// variant: S, S-quick, S100, B-512M-quick.
func (s Spec) FullName() string {
	name := s.Name
	if s.Variant != "" {
		name += "-" + s.Variant
	}
	if s.Quick {
		name += "-quick"
	}
	return name
}

// Blob is a blob or manifest of a seeded workload and the repository it
// was first pushed to.
type Blob struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
	Repo      string `json:"repo"`
}

// Tag is a seeded tag and its image manifest, and the referrers of that
// manifest.
type Tag struct {
	Name      string `json:"name"`
	Digest    string `json:"digest"`
	Referrers []Blob `json:"referrers,omitempty"`
}

// Repo is a seeded repository.
type Repo struct {
	Name string `json:"name"`
	Tags []Tag  `json:"tags"`
}

// Workload is what a seeded registry holds, with every digest known.
type Workload struct {
	Spec  Spec   `json:"spec"`
	Repos []Repo `json:"repos"`
	// Blobs are the unique blobs (layers, configs, referrer payloads and
	// the empty config), each once, with the repository first holding it.
	Blobs []Blob `json:"blobs"`
	// Manifests are the unique image and referrer manifests. The
	// referrers tag-schema indexes (sha256-<hex> tags) are not counted:
	// they are how distribution lists referrers, not content to move.
	Manifests []Blob `json:"manifests"`
	// ReferrerBlobs are the blobs only referrers use: tools that do not
	// copy referrers are not expected to have them.
	ReferrerBlobs []string `json:"referrerBlobs,omitempty"`
}

// Name is the workload's name (Spec.FullName).
func (w *Workload) Name() string { return w.Spec.FullName() }

// UniqueBytes is the size of every unique blob and manifest: what a backup
// has to hold and a restore has to push.
func (w *Workload) UniqueBytes() int64 {
	var n int64
	for _, b := range w.Blobs {
		n += b.Size
	}
	for _, m := range w.Manifests {
		n += m.Size
	}
	return n
}

// BlobBytes is the size of the unique blobs alone (what the baseline
// moves).
func (w *Workload) BlobBytes() int64 {
	var n int64
	for _, b := range w.Blobs {
		n += b.Size
	}
	return n
}

// TagCount is the number of tags over all repositories.
func (w *Workload) TagCount() int {
	n := 0
	for _, r := range w.Repos {
		n += len(r.Tags)
	}
	return n
}

// Referrers is the number of referrer manifests.
func (w *Workload) Referrers() int {
	n := 0
	for _, r := range w.Repos {
		for _, t := range r.Tags {
			n += len(t.Referrers)
		}
	}
	return n
}

// RepoNames are the repository names, in order.
func (w *Workload) RepoNames() []string {
	names := make([]string, len(w.Repos))
	for i, r := range w.Repos {
		names[i] = r.Name
	}
	return names
}

// Describe is a one-line summary: shape and unique size.
func (w *Workload) Describe() string {
	return fmt.Sprintf("%s: %s. %d repositories, %d tags, %d referrers; %d unique blobs + %d manifests = %s unique",
		w.Name(), w.Spec.About, len(w.Repos), w.TagCount(), w.Referrers(), len(w.Blobs), len(w.Manifests), sizeString(w.UniqueBytes()))
}

// expectedDigests are the digests a complete copy of the workload holds:
// with referrers or without, and with or without manifests.
func (w *Workload) expectedDigests(referrers, manifests bool) []string {
	skip := map[string]bool{}
	if !referrers {
		for _, d := range w.ReferrerBlobs {
			skip[d] = true
		}
	}
	var out []string
	for _, b := range w.Blobs {
		if !skip[b.Digest] {
			out = append(out, b.Digest)
		}
	}
	if manifests {
		refs := map[string]bool{}
		for _, r := range w.Repos {
			for _, t := range r.Tags {
				for _, rf := range t.Referrers {
					refs[rf.Digest] = true
				}
			}
		}
		for _, m := range w.Manifests {
			if referrers || !refs[m.Digest] {
				out = append(out, m.Digest)
			}
		}
	}
	sort.Strings(out)
	return out
}

// unitFloat is a number in [0, 1) that depends only on s.
func unitFloat(s string) float64 {
	h := sha256.Sum256([]byte(s))
	v := uint64(0)
	for _, b := range h[:8] {
		v = v<<8 | uint64(b)
	}
	return float64(v>>11) / float64(1<<53)
}

// sizeString is n bytes in the largest binary unit that keeps it readable.
func sizeString(n int64) string {
	switch {
	case n >= GiB && n%GiB == 0:
		return fmt.Sprintf("%d GiB", n/GiB)
	case n >= GiB:
		return fmt.Sprintf("%.2f GiB", float64(n)/GiB)
	case n >= MiB && n%MiB == 0:
		return fmt.Sprintf("%d MiB", n/MiB)
	case n >= MiB:
		return fmt.Sprintf("%.1f MiB", float64(n)/MiB)
	case n >= KiB:
		return fmt.Sprintf("%.1f KiB", float64(n)/KiB)
	}
	return fmt.Sprintf("%d B", n)
}
