package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"
)

func TestBytesDeterministic(t *testing.T) {
	a := Bytes("seed", 1000)
	assert.Len(t, a, 1000)
	assert.Equal(t, a, Bytes("seed", 1000))
	assert.Equal(t, a[:10], Bytes("seed", 10))
	assert.NotEqual(t, a, Bytes("other", 1000))
	streamed, err := io.ReadAll(NewReader("seed", 1000))
	require.NoError(t, err)
	assert.Equal(t, a, streamed)
	// Pinned: the same bytes on every machine and Go version.
	assert.Equal(t, "sha256:1a2a3fc3ed0138b50b4747a5e5c6ed94d7081ef6d9feecb0dba2c0b85343c4fe", Descriptor("", Bytes("pinned", 64)).Digest.String())
}

func TestDockerManifestList(t *testing.T) {
	servers(t, func(t *testing.T, s *Server) {
		ctx := context.Background()
		repo := Repo(t, s, "test/docker")
		var children []ocispec.Descriptor
		for _, arch := range []string{"amd64", "arm64"} {
			d, err := PushDockerImage(ctx, repo, "", ocispec.Platform{OS: "linux", Architecture: arch}, Bytes("docker/"+arch, 100))
			require.NoError(t, err)
			assert.Equal(t, MediaTypeDockerManifest, d.MediaType)
			children = append(children, d)
		}
		list, err := PushDockerManifestList(ctx, repo, "latest", children...)
		require.NoError(t, err)
		got, err := repo.Resolve(ctx, "latest")
		require.NoError(t, err)
		assert.Equal(t, MediaTypeDockerManifestList, got.MediaType)
		assert.Equal(t, list.Digest, got.Digest)

		raw, err := content.FetchAll(ctx, repo, children[0])
		require.NoError(t, err)
		var m ocispec.Manifest
		require.NoError(t, json.Unmarshal(raw, &m))
		assert.Equal(t, MediaTypeDockerConfig, m.Config.MediaType)
		assert.Equal(t, MediaTypeDockerLayer, m.Layers[0].MediaType)
	})
}

func TestSeedSample(t *testing.T) {
	digests := make(chan []string, 2)
	servers(t, func(t *testing.T, s *Server) {
		ctx := context.Background()
		sample := Seed(t, s, SampleOptions{})
		assert.Equal(t, []string{SampleBackend, SampleFrontend, SampleBase}, sample.Repositories)
		assert.Len(t, sample.References(), 6)
		assert.Equal(t, s.Host()+"/demo/backend:v1", sample.References()[0])

		var all []string
		for _, name := range sample.Repositories {
			repo := Repo(t, s, name)
			assert.Len(t, sample.Tags[name], 2, name)
			for tag, want := range sample.Tags[name] {
				got, err := repo.Resolve(ctx, tag)
				require.NoError(t, err)
				assert.Equal(t, want.Digest, got.Digest, name+":"+tag)
				refs, err := repo.Predecessors(ctx, want)
				require.NoError(t, err)
				require.Len(t, refs, 1, "one SBOM for %s:%s", name, tag)
				assert.Equal(t, ArtifactTypeSBOM, refs[0].ArtifactType)
			}
			// Everything recorded is there, the base layer in every repository.
			for _, d := range sample.Content[name] {
				ok, err := repo.Exists(ctx, d)
				require.NoError(t, err)
				assert.True(t, ok, "%s %s %s", name, d.MediaType, d.Digest)
			}
			assert.Contains(t, sample.Digests(name), sample.BaseLayer.Digest)
			for _, d := range sample.Digests(name) {
				all = append(all, name+"@"+d.String())
			}
		}

		// Nested referrers: backend v2 amd64 → signature → timestamp.
		backend := Repo(t, s, SampleBackend)
		v2 := sample.Tags[SampleBackend]["v2"]
		assert.Equal(t, ocispec.MediaTypeImageIndex, v2.MediaType)
		raw, err := content.FetchAll(ctx, backend, v2)
		require.NoError(t, err)
		var idx ocispec.Index
		require.NoError(t, json.Unmarshal(raw, &idx))
		require.Len(t, idx.Manifests, 2)
		assert.Equal(t, "amd64", idx.Manifests[0].Platform.Architecture)
		sigs, err := backend.Predecessors(ctx, idx.Manifests[0])
		require.NoError(t, err)
		require.Len(t, sigs, 1)
		assert.Equal(t, ArtifactTypeSignature, sigs[0].ArtifactType)
		ts, err := backend.Predecessors(ctx, sigs[0])
		require.NoError(t, err)
		require.Len(t, ts, 1)
		assert.Equal(t, ArtifactTypeTimestamp, ts[0].ArtifactType)
		none, err := backend.Predecessors(ctx, idx.Manifests[1])
		require.NoError(t, err)
		assert.Empty(t, none)
		assert.Len(t, sample.Referrers[SampleBackend], 4, "2 SBOMs, a signature, a timestamp")

		assert.Equal(t, MediaTypeDockerManifestList, sample.Tags[SampleBase]["1.1"].MediaType)
		// 3 roots' worth of own layers + shared base: the unique set is
		// smaller than the sum over repositories.
		var sum int
		for _, name := range sample.Repositories {
			sum += len(sample.Content[name])
		}
		assert.Less(t, len(sample.Unique()), sum)
		assert.Greater(t, sample.UniqueBytes(), int64(32<<10))

		sort.Strings(all)
		digests <- all
	})
	t.Cleanup(func() {
		close(digests)
		var runs [][]string
		for d := range digests {
			runs = append(runs, d)
		}
		if len(runs) == 2 {
			assert.Equal(t, runs[0], runs[1], "the same sample on both registries")
		}
	})
}

func TestSeedSamplePrefixAndSeed(t *testing.T) {
	t.Parallel()
	s := NewInProcess(t)
	a := Seed(t, s, SampleOptions{})
	b := Seed(t, s, SampleOptions{Prefix: "mirror/", Seed: "other"})
	assert.Equal(t, "mirror/demo/backend", b.Repositories[0])
	ad := map[string]bool{}
	for _, d := range a.Unique() {
		ad[d.Digest.String()] = true
	}
	for _, d := range b.Unique() {
		// Only the empty config is shared.
		if ad[d.Digest.String()] {
			assert.Equal(t, ocispec.MediaTypeEmptyJSON, d.MediaType)
		}
	}
	again := Seed(t, s, SampleOptions{})
	assert.Equal(t, a.Tags, again.Tags, "seeding is idempotent")
}

func TestDistributionHasNoReferrersAPI(t *testing.T) {
	t.Parallel()
	s := NewDistribution(t, DistConfig{})
	assert.False(t, s.ReferrersAPI())
	img, err := PushImage(context.Background(), Repo(t, s, "test/api"), "v1", []byte("x"))
	require.NoError(t, err)
	resp := rawGet(t, s, "/v2/test/api/referrers/"+img.Digest.String(), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	// And pushing a referrer gets no OCI-Subject header back.
	repo := Repo(t, s, "test/api")
	_, err = PushReferrer(context.Background(), repo, img, ArtifactTypeSBOM, []byte("s"))
	require.NoError(t, err)
	tags := allTags(t, repo)
	assert.Contains(t, tags, "sha256-"+img.Digest.Encoded())
}

func TestGGCRReferrersQuirks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewInProcess(t, WithoutFixes())
	repo := Repo(t, s, "test/quirks")
	img, err := PushImage(ctx, repo, "v1", []byte("x"))
	require.NoError(t, err)
	_, err = PushReferrer(ctx, repo, img, ArtifactTypeSBOM, []byte("s"))
	require.NoError(t, err)
	// No OCI-Subject header: oras-go wrote a tag-schema index as well.
	assert.Contains(t, allTags(t, repo), "sha256-"+img.Digest.Encoded())
	// The listing reports the config media type as the artifact type.
	resp := rawGet(t, s, "/v2/test/quirks/referrers/"+img.Digest.String(), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(body, &idx))
	require.Len(t, idx.Manifests, 1)
	assert.Equal(t, ocispec.MediaTypeEmptyJSON, idx.Manifests[0].ArtifactType)

	// With the fixes: the manifest's artifactType, and the filter.
	fixed := NewInProcess(t)
	repo = Repo(t, fixed, "test/quirks")
	img, err = PushImage(ctx, repo, "v1", []byte("x"))
	require.NoError(t, err)
	_, err = PushReferrer(ctx, repo, img, ArtifactTypeSBOM, []byte("s"))
	require.NoError(t, err)
	resp = rawGet(t, fixed, "/v2/test/quirks/referrers/"+img.Digest.String()+"?artifactType="+strings.ReplaceAll(ArtifactTypeSignature, "+", "%2B"), nil)
	assert.Equal(t, "artifactType", resp.Header.Get("OCI-Filters-Applied"))
	body, _ = io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `"manifests":[]`)
	assert.True(t, bytes.Contains(body, []byte(ocispec.MediaTypeImageIndex)))
}

func TestDistributionBehaviour(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewDistribution(t, DistConfig{MaxTags: 2})
	repo := Repo(t, s, "test/dist")
	pushTags(t, repo, "a", "b", "c")

	// n above maxtags is clamped, with a Link; no n lists everything.
	resp := rawGet(t, s, "/v2/test/dist/tags/list?n=10", nil)
	body, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `"tags":["a","b"]`)
	assert.NotEmpty(t, resp.Header.Get("Link"))
	resp = rawGet(t, s, "/v2/test/dist/tags/list", nil)
	body, _ = io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `"tags":["a","b","c"]`)

	// Manifests cannot be read through the blobs endpoint.
	desc, err := repo.Resolve(ctx, "a")
	require.NoError(t, err)
	resp = rawGet(t, s, "/v2/test/dist/blobs/"+desc.Digest.String(), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	// The sample's tag-schema tags: one per subject with referrers.
	s.ResetStats()
	start := time.Now()
	sample := Seed(t, s, SampleOptions{Prefix: "x/"})
	t.Logf("seeding: %d requests in %s", s.Stats().Total(), time.Since(start))
	schema := 0
	for _, name := range sample.Repositories {
		for _, tag := range allTags(t, Repo(t, s, name)) {
			if strings.HasPrefix(tag, "sha256-") {
				schema++
			}
		}
	}
	assert.Equal(t, 8, schema, "6 tagged roots, the amd64 child and its signature")
}
