package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/source"
)

// hostile answers, in front of a real registry, the requests for the
// repositories under "evil/" the way a broken or malicious registry
// would, each a listing or chain that never ends:
//
//   - evil/selflink: every tags/list page has a Link header pointing at
//     the page itself;
//   - evil/endless: every tags/list page brings new tags and a Link to
//     the next page, for ever;
//   - evil/empty: every tags/list page is empty, with a Link to a next
//     one, for ever;
//   - evil/referrers: one tag, v1, whose manifest has a referrer, which
//     has a referrer, and so on: each asked-for referrers list makes up a
//     new manifest whose subject is the one asked about;
//   - evil/refloop: one tag, v1, whose referrers list (one referrer) has
//     a Link header pointing at itself;
//   - evil/indexes: one tag, v1, an index whose child is an index whose
//     child is an index, and so on, deeper than source.MaxIndexDepth.
//
// Everything else goes to the registry behind it. requests counts the
// requests it answered.
type hostile struct {
	requests atomic.Int64
	mu       sync.Mutex
	content  map[digest.Digest][]byte // made-up manifests and the config
	depth    map[digest.Digest]int    // a manifest's place in the chain
}

const hostileTagsPerPage = 5000

func newHostile() *hostile {
	return &hostile{content: map[digest.Digest][]byte{}, depth: map[digest.Digest]int{}}
}

func (h *hostile) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/evil/")
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		h.requests.Add(1)
		repo, what, _ := strings.Cut(rest, "/")
		switch {
		case what == "tags/list":
			h.tags(w, r, repo)
		case strings.HasPrefix(what, "manifests/"), strings.HasPrefix(what, "blobs/"):
			ref := what[strings.Index(what, "/")+1:]
			var b []byte
			switch {
			case ref == "v1" && repo == "indexes":
				b = h.deepIndex(source.MaxIndexDepth + 10)
			case ref == "v1":
				b = h.chain(0, nil)
			default:
				h.mu.Lock()
				b = h.content[digest.Digest(ref)]
				h.mu.Unlock()
			}
			if b == nil {
				http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}`, http.StatusNotFound)
				return
			}
			if strings.HasPrefix(what, "manifests/") {
				var m struct {
					MediaType string `json:"mediaType"`
				}
				_ = json.Unmarshal(b, &m)
				w.Header().Set("Content-Type", m.MediaType)
			}
			w.Header().Set("Docker-Content-Digest", digest.FromBytes(b).String())
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			if r.Method != http.MethodHead {
				_, _ = w.Write(b)
			}
		case strings.HasPrefix(what, "referrers/"):
			subject := digest.Digest(strings.TrimPrefix(what, "referrers/"))
			h.mu.Lock()
			body, known := h.content[subject]
			n := h.depth[subject]
			h.mu.Unlock()
			idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
			idx.SchemaVersion = 2
			if known {
				sd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: int64(len(body))}
				b := h.chain(n+1, &sd)
				idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
					MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.example.chain",
					Digest: digest.FromBytes(b), Size: int64(len(b)),
				})
			}
			if repo == "refloop" {
				w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", r.URL.RequestURI()))
			}
			w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
			_ = json.NewEncoder(w).Encode(idx)
		default:
			http.Error(w, "not here", http.StatusNotFound)
		}
	})
}

func (h *hostile) tags(w http.ResponseWriter, r *http.Request, repo string) {
	page := struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{Name: "evil/" + repo, Tags: []string{}}
	switch repo {
	case "selflink":
		page.Tags = []string{"v1", "v2"}
		w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", r.URL.RequestURI()))
	case "endless":
		from := 0
		if last := r.URL.Query().Get("last"); last != "" {
			from, _ = strconv.Atoi(strings.TrimPrefix(last, "t"))
		}
		for i := from + 1; i <= from+hostileTagsPerPage; i++ {
			page.Tags = append(page.Tags, fmt.Sprintf("t%09d", i))
		}
		w.Header().Set("Link", fmt.Sprintf("</v2/evil/endless/tags/list?last=%s>; rel=\"next\"", page.Tags[len(page.Tags)-1]))
	case "empty":
		n, _ := strconv.Atoi(r.URL.Query().Get("page"))
		w.Header().Set("Link", fmt.Sprintf("</v2/evil/empty/tags/list?page=%d>; rel=\"next\"", n+1))
	case "referrers", "refloop", "indexes":
		page.Tags = []string{"v1"}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

// chain returns manifest n of the referrers chain (0 is v1's, without a
// subject), recording it and the config it names.
func (h *hostile) chain(n int, subject *ocispec.Descriptor) []byte {
	config := []byte("{}")
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.example.chain",
		Config:       ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers:       []ocispec.Descriptor{{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromBytes(config), Size: int64(len(config))}},
		Subject:      subject,
		Annotations:  map[string]string{"n": strconv.Itoa(n)},
	}
	m.SchemaVersion = 2
	b, _ := json.Marshal(m)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.content[digest.FromBytes(b)] = b
	h.content[digest.FromBytes(config)] = config
	h.depth[digest.FromBytes(b)] = n
	return b
}

// deepIndex returns the top of a chain of n indexes, each the only child
// of the one above, above an image manifest, recording them all. (Index
// children are named by digest, so such a chain cannot be endless, only
// deep: each index names the digest of the whole chain below it.)
func (h *hostile) deepIndex(n int) []byte {
	b := h.chain(0, nil)
	for i := 1; i <= n; i++ {
		child := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if i > 1 {
			child.MediaType = ocispec.MediaTypeImageIndex
		}
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{child}}
		idx.SchemaVersion = 2
		b, _ = json.Marshal(idx)
		h.mu.Lock()
		h.content[digest.FromBytes(b)] = b
		h.mu.Unlock()
	}
	return b
}

// A registry whose listings never end (a tags/list Link pointing at its
// own page, new tag pages for ever, empty pages for ever, a chain of new
// referrers of referrers) fails that repository with an error naming it
// and the limit, in bounded time, while the healthy repository of the
// same backup is written (exit code 3).
func TestHostileListingsReliability(t *testing.T) {
	r := regvault(t, "", "backup", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "backup --help", r.stdout, "Limits against a registry whose listings never end",
		"more than 10000 pages or 1000000 tags", "more than 1000 pages or 10000 referrers", "a Link header that points back", "more than 16 deep", "indexes of indexes more than 1000")

	h := newHostile()
	s, _ := sampleRegistry(t, registrytest.WithHandler(h.wrap))
	host := s.Host()
	for _, tc := range []struct {
		repo string
		args []string
		want []string
	}{
		{"evil/selflink", nil, []string{
			"listing tags of " + host + "/evil/selflink: page 2 of the tags lists only tags already listed (v1): the registry's pagination (its Link header) goes round in a loop"}},
		{"evil/endless", nil, []string{
			"listing tags of " + host + "/evil/endless: more than " + strconv.Itoa(registry.MaxTags) + " tags, regvault's limit"}},
		{"evil/empty", nil, []string{
			"listing tags of " + host + "/evil/empty: more than " + strconv.Itoa(registry.MaxTagPages) + " pages of tags, regvault's limit: the registry's pagination (its Link header) does not end"}},
		{"evil/referrers", []string{"--include-referrers"}, []string{
			"evil/referrers@sha256:", "referrers nested more than " + strconv.Itoa(source.MaxReferrerDepth) + " deep", "regvault's limit"}},
		{"evil/indexes", nil, []string{
			"evil/indexes@sha256:", "indexes nested more than " + strconv.Itoa(source.MaxIndexDepth) + " deep", "regvault's limit"}},
		{"evil/refloop", []string{"--include-referrers"}, []string{
			"listing referrers of " + host + "/evil/refloop@sha256:", "page 2 of the referrers lists only referrers already listed", "goes round in a loop"}},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			before := h.requests.Load()
			out := filepath.Join(t.TempDir(), "b.tar")
			args := append([]string{"backup", "--plain-http", "--no-tty", "-o", out}, tc.args...)
			args = append(args, ref(s, "demo/frontend"), ref(s, tc.repo))
			start := time.Now()
			done := make(chan result, 1)
			go func() { done <- regvault(t, "", args...) }()
			var r result
			select {
			case r = <-done:
			case <-time.After(3 * time.Minute): // a hang, not a timing
				t.Fatalf("backup of %s still running after 3 minutes (%d requests)", tc.repo, h.requests.Load()-before)
			}
			t.Logf("%d requests to %s in %s", h.requests.Load()-before, tc.repo, time.Since(start).Round(time.Millisecond))
			r.wantCode(t, exitPartial)
			wantContains(t, "stderr", r.stderr, append([]string{"Error: Failed to backup " + host + "/" + tc.repo}, tc.want...)...)
			wantContains(t, "stderr", r.stderr, "  ✓ "+host+"/demo/frontend (2 tags)")
			var got []string
			for _, tag := range layoutTags(t, out) {
				if !strings.Contains(tag, ":sha256-") { // a referrers tag-schema index, not a tag
					got = append(got, tag)
				}
			}
			if strings.Join(got, " ") != host+"/demo/frontend:v1 "+host+"/demo/frontend:v2" {
				t.Errorf("tags in the backup: %v", got)
			}
		})
	}
}
