package bench

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/regvault/regvault/internal/registrytest"
)

// seedWorkers is how many repositories are seeded at once.
const seedWorkers = 4

// Seed pushes spec into the registry at host (plain HTTP, no auth) and
// returns what it holds. Layer bytes are generated while they are
// uploaded (registrytest.NewReader), in one streamed PATCH each, so no
// layer is ever held in memory; a layer already pushed to another
// repository is mounted from there.
func Seed(ctx context.Context, host string, spec Spec, logf func(string, ...any)) (*Workload, error) {
	c := newClient(host, 2*seedWorkers)
	defer c.close()
	s := &seeder{c: c, target: registrytest.Target{Host: host, PlainHTTP: true}, layers: map[string]*layerState{}, blobs: map[string]Blob{}, manifests: map[string]Blob{}, refBlobs: map[string]bool{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	w := &Workload{Spec: spec, Repos: make([]Repo, len(spec.Repos))}
	jobs := make(chan int)
	errs := make(chan error, len(spec.Repos))
	var wg sync.WaitGroup
	var done int
	var doneMu sync.Mutex
	start := time.Now()
	lastLog := start
	for i := 0; i < seedWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				repo, err := s.seedRepo(ctx, spec.Repos[i])
				if err != nil {
					errs <- fmt.Errorf("seeding %s: %w", spec.Repos[i].Name, err)
					cancel()
					continue
				}
				w.Repos[i] = repo
				doneMu.Lock()
				done++
				if logf != nil && time.Since(lastLog) > 5*time.Second {
					lastLog = time.Now()
					logf("  seeded %d/%d repositories (%s)", done, len(spec.Repos), time.Since(start).Round(time.Second))
				}
				doneMu.Unlock()
			}
		}()
	}
feed:
	for i := range spec.Repos {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, b := range s.blobs {
		w.Blobs = append(w.Blobs, b)
	}
	for _, m := range s.manifests {
		w.Manifests = append(w.Manifests, m)
	}
	for d := range s.refBlobs {
		w.ReferrerBlobs = append(w.ReferrerBlobs, d)
	}
	sort.Slice(w.Blobs, func(i, j int) bool { return w.Blobs[i].Digest < w.Blobs[j].Digest })
	sort.Slice(w.Manifests, func(i, j int) bool { return w.Manifests[i].Digest < w.Manifests[j].Digest })
	sort.Strings(w.ReferrerBlobs)
	return w, nil
}

// layerReader streams the blob of l: registrytest.NewReader(l.Seed,
// l.Size) in a gzip stream without compression (stored deflate blocks,
// no header time or name: the same bytes every time). The random bytes
// would not compress anyway, and a layer that says it is gzip must be
// gzip: tools that see an uncompressed layer (skopeo) compress it on the
// fly, which changes its digest and measures gzip rather than transfer.
func layerReader(l Layer) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		zw, err := gzip.NewWriterLevel(pw, gzip.NoCompression)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		n, err := io.Copy(zw, registrytest.NewReader(l.Seed, l.Size))
		if err == nil && n != l.Size {
			err = fmt.Errorf("layer %s: generated %d bytes, want %d", l.Seed, n, l.Size)
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

type layerState struct {
	done chan struct{}
	blob Blob
	err  error
}

type seeder struct {
	c      *client
	target registrytest.Target

	mu        sync.Mutex
	layers    map[string]*layerState // by Layer.Seed
	blobs     map[string]Blob        // by digest
	manifests map[string]Blob
	refBlobs  map[string]bool // blobs that only referrers use
}

func (s *seeder) addBlob(m map[string]Blob, b Blob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := m[b.Digest]; !ok {
		m[b.Digest] = b
	}
}

// layer makes sure repo has the layer l, uploading it if no repository
// has it yet and mounting it otherwise.
func (s *seeder) layer(ctx context.Context, repo string, l Layer, have map[string]bool) (Blob, error) {
	s.mu.Lock()
	st, ok := s.layers[l.Seed]
	if !ok {
		st = &layerState{done: make(chan struct{})}
		s.layers[l.Seed] = st
	}
	s.mu.Unlock()
	if !ok {
		dgst, n, err := s.c.uploadStream(ctx, repo, layerReader(l))
		st.blob, st.err = Blob{Digest: dgst, Size: n, MediaType: ocispec.MediaTypeImageLayerGzip, Repo: repo}, err
		close(st.done)
		if err != nil {
			return Blob{}, err
		}
		s.addBlob(s.blobs, st.blob)
		have[dgst] = true
		return st.blob, nil
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		return Blob{}, ctx.Err()
	}
	if st.err != nil {
		return Blob{}, st.err
	}
	if have[st.blob.Digest] {
		return st.blob, nil
	}
	mounted, err := s.c.mount(ctx, repo, st.blob.Repo, st.blob.Digest)
	if err != nil {
		return Blob{}, err
	}
	if !mounted {
		if _, _, err := s.c.uploadStream(ctx, repo, layerReader(l)); err != nil {
			return Blob{}, err
		}
	}
	have[st.blob.Digest] = true
	return st.blob, nil
}

func (s *seeder) seedRepo(ctx context.Context, spec RepoSpec) (Repo, error) {
	repo := Repo{Name: spec.Name}
	have := map[string]bool{}
	var oras *remote.Repository // for referrers: oras-go keeps the tag schema
	for _, img := range spec.Images {
		platform := ocispec.Platform{Architecture: "amd64", OS: "linux"}
		var layers []ocispec.Descriptor
		var diffIDs []digest.Digest
		for _, l := range img.Layers {
			b, err := s.layer(ctx, spec.Name, l, have)
			if err != nil {
				return Repo{}, err
			}
			layers = append(layers, ocispec.Descriptor{MediaType: b.MediaType, Digest: digest.Digest(b.Digest), Size: b.Size})
			diffIDs = append(diffIDs, digest.Digest(b.Digest))
		}
		config, _ := json.Marshal(ocispec.Image{
			Platform: platform,
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
			Config:   ocispec.ImageConfig{Labels: map[string]string{"regvault.bench": spec.Name + ":" + img.Tag}},
		})
		cd := registrytest.Descriptor(ocispec.MediaTypeImageConfig, config)
		if !have[cd.Digest.String()] {
			if _, err := s.c.uploadBytes(ctx, spec.Name, config); err != nil {
				return Repo{}, err
			}
			have[cd.Digest.String()] = true
		}
		s.addBlob(s.blobs, Blob{Digest: cd.Digest.String(), Size: cd.Size, MediaType: cd.MediaType, Repo: spec.Name})
		manifest, _ := json.Marshal(ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    cd,
			Layers:    layers,
		})
		md := registrytest.Descriptor(ocispec.MediaTypeImageManifest, manifest)
		if err := s.c.putManifest(ctx, spec.Name, img.Tag, md.MediaType, manifest); err != nil {
			return Repo{}, err
		}
		s.addBlob(s.manifests, Blob{Digest: md.Digest.String(), Size: md.Size, MediaType: md.MediaType, Repo: spec.Name})
		tag := Tag{Name: img.Tag, Digest: md.Digest.String()}
		if img.Referrer {
			if oras == nil {
				r, err := s.target.Repository(spec.Name)
				if err != nil {
					return Repo{}, err
				}
				oras = r
			}
			payload, _ := json.Marshal(map[string]any{
				"spdxVersion":       "SPDX-2.3",
				"dataLicense":       "CC0-1.0",
				"SPDXID":            "SPDXRef-DOCUMENT",
				"name":              spec.Name + ":" + img.Tag,
				"documentNamespace": "https://regvault.example/bench/" + md.Digest.Encoded(),
				"packages": []map[string]string{
					{"name": "generated", "SPDXID": "SPDXRef-Package", "versionInfo": img.Tag, "downloadLocation": "NOASSERTION"},
				},
			})
			rd, err := registrytest.PushReferrer(ctx, oras, md, registrytest.ArtifactTypeSBOM, payload)
			if err != nil {
				return Repo{}, err
			}
			pd := registrytest.Descriptor(registrytest.ArtifactTypeSBOM, payload)
			s.addBlob(s.blobs, Blob{Digest: pd.Digest.String(), Size: pd.Size, MediaType: pd.MediaType, Repo: spec.Name})
			ed := ocispec.DescriptorEmptyJSON
			s.addBlob(s.blobs, Blob{Digest: ed.Digest.String(), Size: ed.Size, MediaType: ed.MediaType, Repo: spec.Name})
			s.mu.Lock()
			s.refBlobs[pd.Digest.String()] = true
			s.refBlobs[ed.Digest.String()] = true
			s.mu.Unlock()
			rb := Blob{Digest: rd.Digest.String(), Size: rd.Size, MediaType: rd.MediaType, Repo: spec.Name}
			s.addBlob(s.manifests, rb)
			tag.Referrers = append(tag.Referrers, rb)
		}
		repo.Tags = append(repo.Tags, tag)
	}
	return repo, nil
}

// SeededSource is a source registry holding a workload.
type SeededSource struct {
	*Registry
	Workload *Workload
	// Seeded is how long seeding took; 0 when the storage came from the
	// cache.
	Seeded time.Duration
}

// OpenSource starts a registry holding spec: its storage is linked from
// the cache (cacheDir/seed/<key>) when a seeded copy is there, and seeded
// and then saved to the cache otherwise.
func OpenSource(ctx context.Context, bin, cacheDir, workDir string, spec Spec, logf func(string, ...any)) (*SeededSource, error) {
	reg, err := StartRegistry(bin, workDir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			reg.Close()
		}
	}()
	keyDir := filepath.Join(cacheDir, "seed", spec.Key())
	wlPath := filepath.Join(keyDir, "workload.json")
	if data, err := os.ReadFile(wlPath); err == nil {
		var w Workload
		if err := json.Unmarshal(data, &w); err == nil {
			if err := os.RemoveAll(reg.Storage); err != nil {
				return nil, err
			}
			if err := linkTree(filepath.Join(keyDir, "storage"), reg.Storage); err != nil {
				return nil, fmt.Errorf("linking the seeded storage from %s: %w", keyDir, err)
			}
			if err := checkSeeded(ctx, reg.BackendHost(), &w); err == nil {
				// Read once, so that the first tool measured does not
				// pay for a page cache the others then find warm.
				if err := warmTree(reg.Storage); err != nil {
					return nil, fmt.Errorf("reading the seeded storage %s: %w", reg.Storage, err)
				}
				ok = true
				return &SeededSource{Registry: reg, Workload: &w}, nil
			} else if logf != nil {
				logf("  the cached registry %s is not usable (%v): seeding again", keyDir, err)
			}
			os.RemoveAll(reg.Storage)
		}
	}
	if logf != nil {
		logf("  seeding %s into %s (cached in %s afterwards)", spec.Key(), reg.BackendHost(), keyDir)
	}
	start := time.Now()
	w, err := Seed(ctx, reg.BackendHost(), spec, logf)
	if err != nil {
		return nil, fmt.Errorf("seeding %s: %w\n%s", spec.Name, err, reg.Logs())
	}
	took := time.Since(start)
	if logf != nil {
		logf("  seeded in %s: %s", took.Round(time.Millisecond), w.Describe())
	}
	// Save: link the storage into the cache, then write workload.json,
	// which marks the entry complete.
	if err := os.RemoveAll(keyDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(keyDir, 0o755); err != nil {
		return nil, err
	}
	if err := linkTree(reg.Storage, filepath.Join(keyDir, "storage")); err != nil {
		return nil, fmt.Errorf("saving the seeded storage to %s: %w", keyDir, err)
	}
	data, _ := json.MarshalIndent(w, "", "  ")
	if err := writeFileAtomic(wlPath, data); err != nil {
		return nil, err
	}
	ok = true
	return &SeededSource{Registry: reg, Workload: w, Seeded: took}, nil
}

// checkSeeded tells whether the registry at host serves the first and
// last tag of w with the right digests.
func checkSeeded(ctx context.Context, host string, w *Workload) error {
	if len(w.Repos) == 0 {
		return fmt.Errorf("empty workload")
	}
	c := newClient(host, 2)
	defer c.close()
	for _, r := range []Repo{w.Repos[0], w.Repos[len(w.Repos)-1]} {
		for _, t := range r.Tags {
			d, err := c.headManifest(ctx, r.Name, t.Name)
			if err != nil {
				return err
			}
			if d != t.Digest {
				return fmt.Errorf("%s:%s is %q, want %s", r.Name, t.Name, d, t.Digest)
			}
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
