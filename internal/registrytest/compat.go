package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxManifestBytes bounds the manifests the compatibility layer reads.
const maxManifestBytes = 4 << 20

// compat is the layer that makes ggcr's registry behave like a conforming
// one; see the package documentation of StartInProcess.
type compat struct {
	next      http.Handler
	referrers bool
	pageSize  int

	mu    sync.Mutex
	links map[string]map[string]bool // repository → blob digest → present
}

func newCompat(next http.Handler, referrers bool, pageSize int) *compat {
	return &compat{next: next, referrers: referrers, pageSize: pageSize, links: map[string]map[string]bool{}}
}

// route splits a /v2/ path into repository, kind and last element.
func route(path string) (repo string, kind Kind, last string) {
	kind = classify(path)
	p := strings.TrimSuffix(strings.TrimPrefix(path, "/v2/"), "/")
	elems := strings.Split(p, "/")
	n := len(elems)
	switch kind {
	case KindUpload:
		if elems[n-1] == "uploads" {
			return strings.Join(elems[:n-2], "/"), kind, ""
		}
		return strings.Join(elems[:n-3], "/"), kind, elems[n-1]
	case KindBlob, KindManifest, KindTags, KindReferrers:
		return strings.Join(elems[:n-2], "/"), kind, elems[n-1]
	}
	return "", kind, ""
}

func (c *compat) linked(repo, dgst string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.links[repo][dgst]
}

func (c *compat) link(repo, dgst string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.links[repo] == nil {
		c.links[repo] = map[string]bool{}
	}
	c.links[repo][dgst] = true
}

// unlink removes the blob from repo and tells whether another repository
// still has it.
func (c *compat) unlink(repo, dgst string) (elsewhere bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.links[repo], dgst)
	for _, m := range c.links {
		if m[dgst] {
			return true
		}
	}
	return false
}

func (c *compat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	repo, kind, last := route(r.URL.Path)
	switch {
	case kind == KindBlob && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		c.getBlob(w, r, repo, last)
	case kind == KindBlob && r.Method == http.MethodDelete:
		if !c.linked(repo, last) {
			writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
			return
		}
		if c.unlink(repo, last) {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		c.next.ServeHTTP(w, r)
	case kind == KindUpload && r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
		c.mount(w, r, repo)
	case kind == KindUpload && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		dgst := r.URL.Query().Get("digest")
		sw := &StatusWriter{ResponseWriter: w}
		c.next.ServeHTTP(sw, r)
		if dgst != "" && sw.Status == http.StatusCreated {
			c.link(repo, dgst)
		}
	case kind == KindTags && r.Method == http.MethodGet:
		c.tags(w, r, repo)
	case kind == KindReferrers && r.Method == http.MethodGet && c.referrers:
		c.listReferrers(w, r, repo, last)
	case kind == KindManifest && r.Method == http.MethodPut && c.referrers:
		c.putManifest(w, r)
	default:
		c.next.ServeHTTP(w, r)
	}
}

var openRange = regexp.MustCompile(`^bytes=(\d+)-$`)

func (c *compat) getBlob(w http.ResponseWriter, r *http.Request, repo, dgst string) {
	if !c.linked(repo, dgst) {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	w.Header().Set("Accept-Ranges", "bytes")
	if m := openRange.FindStringSubmatch(r.Header.Get("Range")); m != nil && r.Method == http.MethodGet {
		start, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UNKNOWN", "invalid range")
			return
		}
		head := c.internal(r, http.MethodHead, r.URL.Path)
		size, err := strconv.ParseInt(head.Header().Get("Content-Length"), 10, 64)
		if head.Code != http.StatusOK || err != nil {
			c.next.ServeHTTP(w, r)
			return
		}
		if start >= size {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UNKNOWN", "range not satisfiable")
			return
		}
		r = r.Clone(r.Context())
		r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, size-1))
	}
	c.next.ServeHTTP(w, r)
}

func (c *compat) mount(w http.ResponseWriter, r *http.Request, repo string) {
	q := r.URL.Query()
	dgst, from := q.Get("mount"), q.Get("from")
	if from != "" && c.linked(from, dgst) {
		c.link(repo, dgst)
		w.Header().Set("Location", "/v2/"+repo+"/blobs/"+dgst)
		w.Header().Set("Docker-Content-Digest", dgst)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusCreated)
		return
	}
	// Decline: start an upload session instead, as the spec says.
	q.Del("mount")
	q.Del("from")
	r = r.Clone(r.Context())
	r.URL.RawQuery = q.Encode()
	c.next.ServeHTTP(w, r)
}

// tags pages the full, sorted tag list by n and last, with a Link header
// to the next page.
func (c *compat) tags(w http.ResponseWriter, r *http.Request, repo string) {
	q := r.URL.Query()
	rec := c.internal(r, http.MethodGet, r.URL.Path)
	if rec.Code != http.StatusOK {
		copyRecorded(w, rec)
		return
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	tags := list.Tags
	sort.Strings(tags)
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(tags, last)
		for i < len(tags) && tags[i] <= last {
			i++
		}
		tags = tags[i:]
	}
	n := -1
	if ns := q.Get("n"); ns != "" {
		v, err := strconv.Atoi(ns)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
			return
		}
		n = v
	}
	if c.pageSize > 0 && (n < 0 || n > c.pageSize) {
		n = c.pageSize
	}
	if n >= 0 && n < len(tags) {
		tags = tags[:n]
		if n > 0 {
			next := url.Values{"last": {tags[n-1]}, "n": {strconv.Itoa(n)}}
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, repo, next.Encode()))
		}
	}
	if tags == nil {
		tags = []string{}
	}
	writeJSON(w, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repo, tags})
}

// listReferrers rebuilds ggcr's referrers answer with each manifest's
// artifactType, the artifactType filter, and a fixed order.
func (c *compat) listReferrers(w http.ResponseWriter, r *http.Request, repo, subject string) {
	rec := c.internal(r, http.MethodGet, r.URL.Path)
	if rec.Code != http.StatusOK {
		copyRecorded(w, rec)
		return
	}
	var idx ocispec.Index
	if err := json.Unmarshal(rec.Body.Bytes(), &idx); err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	filter := r.URL.Query().Get("artifactType")
	out := []ocispec.Descriptor{}
	for _, d := range idx.Manifests {
		m := c.internal(r, http.MethodGet, "/v2/"+repo+"/manifests/"+d.Digest.String())
		if m.Code != http.StatusOK {
			continue
		}
		var body struct {
			ArtifactType string              `json:"artifactType"`
			Config       *ocispec.Descriptor `json:"config"`
			Annotations  map[string]string   `json:"annotations"`
		}
		if err := json.Unmarshal(m.Body.Bytes(), &body); err != nil {
			continue
		}
		d.ArtifactType = body.ArtifactType
		if d.ArtifactType == "" && body.Config != nil {
			d.ArtifactType = body.Config.MediaType
		}
		d.Annotations = body.Annotations
		if filter != "" && d.ArtifactType != filter {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	idx = ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: out}
	idx.SchemaVersion = 2
	writeJSON(w, ocispec.MediaTypeImageIndex, idx)
}

// putManifest passes a manifest push through and, if the manifest has a
// subject, answers with the OCI-Subject header.
func (c *compat) putManifest(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
		return
	}
	if len(body) > maxManifestBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest too large")
		return
	}
	var m struct {
		Subject *ocispec.Descriptor `json:"subject"`
	}
	_ = json.Unmarshal(body, &m)
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if m.Subject == nil {
		c.next.ServeHTTP(w, r)
		return
	}
	c.next.ServeHTTP(&StatusWriter{ResponseWriter: w, before: func(code int) {
		if code == http.StatusCreated {
			w.Header().Set("OCI-Subject", m.Subject.Digest.String())
		}
	}}, r)
}

// internal runs a request against ggcr's handler without going over HTTP.
func (c *compat) internal(r *http.Request, method, path string) *httptest.ResponseRecorder {
	req, err := http.NewRequestWithContext(r.Context(), method, path, nil)
	rec := httptest.NewRecorder()
	if err != nil {
		rec.Code = http.StatusInternalServerError
		return rec
	}
	c.next.ServeHTTP(rec, req)
	return rec
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func writeJSON(w http.ResponseWriter, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// StatusWriter remembers the status a handler answered with (Status) and
// can run a function just before the header is written; tests wrap a
// registry's handler with it to see what a request got.
type StatusWriter struct {
	http.ResponseWriter
	Status int
	before func(code int)
}

func (w *StatusWriter) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
		if w.before != nil {
			w.before(code)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(p []byte) (int, error) {
	if w.Status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
