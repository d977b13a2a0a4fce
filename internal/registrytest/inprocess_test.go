package registrytest

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

// servers runs f against an in-process registry and, when the binary is
// available, the distribution registry.
func servers(t *testing.T, f func(t *testing.T, s *Server)) {
	t.Run("inprocess", func(t *testing.T) {
		t.Parallel()
		f(t, NewInProcess(t))
	})
	t.Run("distribution", func(t *testing.T) {
		t.Parallel()
		f(t, NewDistribution(t, DistConfig{}))
	})
}

func allTags(t *testing.T, repo *remote.Repository) []string {
	t.Helper()
	var tags []string
	require.NoError(t, repo.Tags(context.Background(), "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	}))
	return tags
}

func TestPushAndPull(t *testing.T) {
	servers(t, func(t *testing.T, s *Server) {
		ctx := context.Background()
		repo := Repo(t, s, "test/pushpull")
		layer := Bytes("layer", 10000)
		img, err := PushImage(ctx, repo, "v1", layer)
		require.NoError(t, err)

		desc, err := repo.Resolve(ctx, "v1")
		require.NoError(t, err)
		assert.Equal(t, img.Digest, desc.Digest)
		manifest, err := content.FetchAll(ctx, repo, desc)
		require.NoError(t, err)
		assert.Contains(t, string(manifest), Descriptor("", layer).Digest.String())

		got, err := content.FetchAll(ctx, repo, Descriptor("", layer))
		require.NoError(t, err)
		assert.Equal(t, layer, got)
		assert.Equal(t, []string{"v1"}, allTags(t, repo))
	})
}

func TestStatsCount(t *testing.T) {
	servers(t, func(t *testing.T, s *Server) {
		ctx := context.Background()
		layer := Bytes("stats", 5000)
		_, err := PushImage(ctx, Repo(t, s, "test/stats"), "v1", layer)
		require.NoError(t, err)
		st := s.Stats()
		assert.Equal(t, int64(1), st.Count(http.MethodPut, KindManifest))
		assert.Equal(t, int64(2), st.ByKind(KindBlob), "a HEAD for the layer and the config")
		assert.GreaterOrEqual(t, st.ByKind(KindUpload), int64(2))
		assert.Greater(t, st.BytesIn, int64(len(layer)))
		assert.Equal(t, st.Total(), st.ByMethod(http.MethodHead)+st.ByMethod(http.MethodPost)+st.ByMethod(http.MethodPut)+st.ByMethod(http.MethodPatch)+st.ByMethod(http.MethodGet))

		s.ResetStats()
		assert.Zero(t, s.Stats().Total())
		got, err := content.FetchAll(ctx, Repo(t, s, "test/stats"), Descriptor("", layer))
		require.NoError(t, err)
		st = s.Stats()
		assert.Equal(t, int64(1), st.Count(http.MethodGet, KindBlob))
		assert.Equal(t, int64(len(got)), st.BytesOut)
		assert.Equal(t, int64(1), st.Status[http.StatusOK])
	})
}

func TestReferrers(t *testing.T) {
	servers(t, func(t *testing.T, s *Server) {
		ctx := context.Background()
		repo := Repo(t, s, "test/referrers")
		img, err := PushImage(ctx, repo, "v1", Bytes("img", 100))
		require.NoError(t, err)
		sbom, err := PushReferrer(ctx, repo, img, ArtifactTypeSBOM, []byte(`{"sbom":1}`))
		require.NoError(t, err)
		sig, err := PushReferrer(ctx, repo, img, ArtifactTypeSignature, []byte("sig"))
		require.NoError(t, err)
		ts, err := PushReferrer(ctx, repo, sig, ArtifactTypeTimestamp, []byte("ts"))
		require.NoError(t, err)

		// A fresh client, which has to find out how to list referrers.
		fresh := Repo(t, s, "test/referrers")
		refs, err := fresh.Predecessors(ctx, img)
		require.NoError(t, err)
		require.Len(t, refs, 2)
		byType := map[string]string{}
		for _, r := range refs {
			byType[r.ArtifactType] = r.Digest.String()
		}
		assert.Equal(t, map[string]string{ArtifactTypeSBOM: sbom.Digest.String(), ArtifactTypeSignature: sig.Digest.String()}, byType)

		var filtered []string
		require.NoError(t, fresh.Referrers(ctx, img, ArtifactTypeSBOM, func(rs []ocispec.Descriptor) error {
			for _, r := range rs {
				filtered = append(filtered, r.Digest.String())
			}
			return nil
		}))
		assert.Equal(t, []string{sbom.Digest.String()}, filtered)

		nested, err := fresh.Predecessors(ctx, sig)
		require.NoError(t, err)
		require.Len(t, nested, 1)
		assert.Equal(t, ts.Digest, nested[0].Digest)

		tags := allTags(t, fresh)
		schemaTags := 0
		for _, tag := range tags {
			if strings.HasPrefix(tag, "sha256-") {
				schemaTags++
			}
		}
		if s.ReferrersAPI() {
			assert.Equal(t, []string{"v1"}, tags, "a registry with the Referrers API gets no tag-schema tags")
		} else {
			assert.Equal(t, 2, schemaTags, "tag-schema indexes for the image and the signature: %v", tags)
		}
	})
}

func TestReferrersWithoutAPI(t *testing.T) {
	t.Parallel()
	s := NewInProcess(t, WithReferrersAPI(false))
	assert.False(t, s.ReferrersAPI())
	ctx := context.Background()
	repo := Repo(t, s, "test/noapi")
	img, err := PushImage(ctx, repo, "v1", Bytes("img", 100))
	require.NoError(t, err)
	sbom, err := PushReferrer(ctx, repo, img, ArtifactTypeSBOM, []byte("sbom"))
	require.NoError(t, err)

	resp := rawGet(t, s, "/v2/test/noapi/referrers/"+img.Digest.String(), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	fresh := Repo(t, s, "test/noapi")
	refs, err := fresh.Predecessors(ctx, img)
	require.NoError(t, err)
	require.Len(t, refs, 1)
	assert.Equal(t, sbom.Digest, refs[0].Digest)
	assert.Equal(t, ArtifactTypeSBOM, refs[0].ArtifactType)
	tag := "sha256-" + img.Digest.Encoded()
	assert.Equal(t, []string{tag, "v1"}, allTags(t, fresh))
}

func rawGet(t *testing.T, s *Server, path string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	tg := s.Target()
	if tg.Username != "" {
		req.SetBasicAuth(tg.Username, tg.Password)
	}
	c := tg.HTTPClient()
	resp, err := c.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	c.CloseIdleConnections()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

func pushTags(t *testing.T, repo *remote.Repository, tags ...string) {
	t.Helper()
	ctx := context.Background()
	img, err := PushImage(ctx, repo, "", Bytes("tags", 10))
	require.NoError(t, err)
	for _, tag := range tags {
		require.NoError(t, repo.Tag(ctx, img, tag))
	}
}

func TestTagPagination(t *testing.T) {
	tags := []string{"a", "b", "c", "d", "e"}
	servers(t, func(t *testing.T, s *Server) {
		repo := Repo(t, s, "test/pages")
		pushTags(t, repo, tags...)
		repo.TagListPageSize = 2
		s.ResetStats()
		assert.Equal(t, tags, allTags(t, repo))
		assert.Equal(t, int64(3), s.Stats().Count(http.MethodGet, KindTags), "three pages of 2")

		resp := rawGet(t, s, "/v2/test/pages/tags/list?n=2&last=b", nil)
		assert.Equal(t, `</v2/test/pages/tags/list?last=d&n=2>; rel="next"`, resp.Header.Get("Link"))
		resp = rawGet(t, s, "/v2/test/pages/tags/list?n=2&last=e", nil)
		body, _ := io.ReadAll(resp.Body)
		assert.Contains(t, []string{`{"name":"test/pages","tags":[]}`, `{"name":"test/pages"}`}, strings.TrimSpace(string(body)))
		assert.Empty(t, resp.Header.Get("Link"))
	})
}

func TestServerTagPageSize(t *testing.T) {
	t.Parallel()
	s := NewInProcess(t, WithTagPageSize(2))
	repo := Repo(t, s, "test/pages")
	pushTags(t, repo, "a", "b", "c")
	s.ResetStats()
	assert.Equal(t, []string{"a", "b", "c"}, allTags(t, repo))
	assert.Equal(t, int64(2), s.Stats().Count(http.MethodGet, KindTags))
}

func TestWithoutFixesShowsGGCRBehaviour(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewInProcess(t, WithoutFixes())
	repo := Repo(t, s, "test/raw")
	pushTags(t, repo, "a", "b", "c")
	repo.TagListPageSize = 2
	assert.Equal(t, []string{"a", "b"}, allTags(t, repo), "no Link header: the client stops after one page")
	resp := rawGet(t, s, "/v2/test/raw/tags/list?last=c", nil)
	body, _ := io.ReadAll(resp.Body)
	assert.Contains(t, string(body), `"tags":["a","b","c"]`, "last past the end lists everything again")

	blob, err := PushBlob(ctx, repo, "application/octet-stream", []byte("global"))
	require.NoError(t, err)
	ok, err := Repo(t, s, "elsewhere/entirely").Exists(ctx, blob)
	require.NoError(t, err)
	assert.True(t, ok, "ggcr's blobs are visible in every repository")

	s.ResetStats()
	require.NoError(t, Repo(t, s, "test/other").Mount(ctx, blob, "test/raw", func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("global"))), nil
	}))
	assert.Zero(t, s.Stats().Mounts, "ggcr never mounts; the client uploads instead")

	resp = rawGet(t, s, "/v2/test/raw/blobs/"+blob.Digest.String(), http.Header{"Range": {"bytes=2-"}})
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
}

func TestMount(t *testing.T) {
	servers(t, func(t *testing.T, s *Server) {
		ctx := context.Background()
		data := Bytes("mount", 3000)
		blob, err := PushBlob(ctx, Repo(t, s, "test/from"), "application/octet-stream", data)
		require.NoError(t, err)

		other := Repo(t, s, "test/to")
		ok, err := other.Exists(ctx, blob)
		require.NoError(t, err)
		assert.False(t, ok, "a blob is not in a repository it was not pushed to")

		s.ResetStats()
		require.NoError(t, other.Mount(ctx, blob, "test/from", nil))
		st := s.Stats()
		assert.Equal(t, int64(1), st.Mounts)
		assert.Zero(t, st.ByMethod(http.MethodPut), "no upload")
		ok, err = other.Exists(ctx, blob)
		require.NoError(t, err)
		assert.True(t, ok)
		got, err := content.FetchAll(ctx, other, blob)
		require.NoError(t, err)
		assert.Equal(t, data, got)

		// From a repository without the blob: the registry declines and
		// the client uploads.
		s.ResetStats()
		require.NoError(t, Repo(t, s, "test/third").Mount(ctx, blob, "test/nothing", func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}))
		st = s.Stats()
		assert.Zero(t, st.Mounts)
		assert.Equal(t, int64(1), st.Count(http.MethodPut, KindUpload))
	})
}

func TestRange(t *testing.T) {
	servers(t, func(t *testing.T, s *Server) {
		data := Bytes("range", 1000)
		blob, err := PushBlob(context.Background(), Repo(t, s, "test/range"), "application/octet-stream", data)
		require.NoError(t, err)
		path := "/v2/test/range/blobs/" + blob.Digest.String()
		for rng, want := range map[string][]byte{
			"bytes=10-19": data[10:20],
			"bytes=990-":  data[990:],
		} {
			resp := rawGet(t, s, path, http.Header{"Range": {rng}})
			assert.Equal(t, http.StatusPartialContent, resp.StatusCode, rng)
			got, _ := io.ReadAll(resp.Body)
			assert.Equal(t, want, got, rng)
		}
		resp := rawGet(t, s, path, http.Header{"Range": {"bytes=1000-"}})
		assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	})
}

func TestWithHandlerCorruptsBlob(t *testing.T) {
	t.Parallel()
	corrupt := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && classify(r.URL.Path) == KindBlob {
				next.ServeHTTP(&FlipWriter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	s := NewInProcess(t, WithHandler(corrupt))
	ctx := context.Background()
	repo := Repo(t, s, "test/corrupt")
	blob, err := PushBlob(ctx, repo, "application/octet-stream", Bytes("corrupt", 100))
	require.NoError(t, err)
	_, err = content.FetchAll(ctx, repo, blob)
	require.Error(t, err)
	assert.ErrorIs(t, err, content.ErrMismatchedDigest)
}

func TestBasicAuth(t *testing.T) {
	users := map[string]string{"alice": "s3cret", "bob": "hunter2"}
	check := func(t *testing.T, s *Server) {
		ctx := context.Background()
		tg := s.Target()
		assert.Equal(t, "alice", tg.Username)
		_, err := PushImage(ctx, Repo(t, s, "test/auth"), "v1", []byte("x"))
		require.NoError(t, err)

		tg.Username, tg.Password = "bob", "hunter2"
		r, err := tg.Repository("test/auth")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, "v1")
		require.NoError(t, err)

		tg.Password = "wrong"
		r, err = tg.Repository("test/auth")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, "v1")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "401")

		tg.Username, tg.Password = "", ""
		r, err = tg.Repository("test/auth")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, "v1")
		require.Error(t, err)
	}
	t.Run("inprocess", func(t *testing.T) {
		t.Parallel()
		check(t, NewInProcess(t, WithBasicAuth(users)))
	})
	t.Run("distribution", func(t *testing.T) {
		t.Parallel()
		check(t, NewDistribution(t, DistConfig{Htpasswd: users}))
	})
}

func TestTLS(t *testing.T) {
	check := func(t *testing.T, s *Server) {
		ctx := context.Background()
		require.False(t, s.PlainHTTP())
		require.FileExists(t, s.CAFile())
		assert.True(t, strings.HasPrefix(s.URL(), "https://"))
		_, err := PushImage(ctx, Repo(t, s, "test/tls"), "v1", []byte("x"))
		require.NoError(t, err)

		// The CA from the file, as --ca-file does.
		pool := loadPool(t, s.CAFile())
		tg := s.Target()
		tg.RootCAs = pool
		r, err := tg.Repository("test/tls")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, "v1")
		require.NoError(t, err)

		// The system's CAs only: the certificate is not trusted.
		tg.RootCAs = nil
		r, err = tg.Repository("test/tls")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, "v1")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "certificate")

		// Plain HTTP to a TLS port fails too.
		tg = s.Target()
		tg.PlainHTTP = true
		r, err = tg.Repository("test/tls")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, "v1")
		require.Error(t, err)
	}
	t.Run("inprocess", func(t *testing.T) {
		t.Parallel()
		check(t, NewInProcess(t, WithTLS()))
	})
	t.Run("distribution", func(t *testing.T) {
		t.Parallel()
		check(t, NewDistribution(t, DistConfig{TLS: true}))
	})
	t.Run("distribution-backend", func(t *testing.T) {
		// Straight to distribution's own TLS port, bypassing the proxy.
		t.Parallel()
		s := NewDistribution(t, DistConfig{TLS: true})
		tg := s.Target()
		tg.Host = s.BackendHost()
		r, err := tg.Repository("test/tls")
		require.NoError(t, err)
		_, err = PushImage(context.Background(), r, "v1", []byte("x"))
		require.NoError(t, err)
		tg.RootCAs = nil
		r, err = tg.Repository("test/tls")
		require.NoError(t, err)
		_, err = r.Resolve(context.Background(), "v1")
		require.ErrorContains(t, err, "certificate")
	})
}

func TestClientAuth(t *testing.T) {
	check := func(t *testing.T, s *Server) {
		ctx := context.Background()
		require.FileExists(t, s.ClientCertFile())
		require.FileExists(t, s.ClientKeyFile())
		_, err := PushImage(ctx, Repo(t, s, "test/mtls"), "v1", []byte("x"))
		require.NoError(t, err)
		tg := s.Target()
		tg.ClientCert = nil
		r, err := tg.Repository("test/mtls")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, "v1")
		require.Error(t, err)
	}
	t.Run("inprocess", func(t *testing.T) {
		t.Parallel()
		check(t, NewInProcess(t, WithClientAuth()))
	})
	t.Run("distribution", func(t *testing.T) {
		t.Parallel()
		check(t, NewDistribution(t, DistConfig{TLS: true, ClientAuth: true}))
	})
}

func TestCloseIsIdempotent(t *testing.T) {
	s, err := StartInProcess()
	require.NoError(t, err)
	host := s.Host()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	r, err := (Target{Host: host, PlainHTTP: true}).Repository("x/y")
	require.NoError(t, err)
	_, err = r.Resolve(context.Background(), "v1")
	require.Error(t, err)
	assert.NotErrorIs(t, err, errdef.ErrNotFound)
}

func loadPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	return pool
}
