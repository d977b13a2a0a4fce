package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
)

// The distribution API's name and tag grammar.
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

var specsV2 = specs.Versioned{SchemaVersion: 2}

func validName(name string) bool { return len(name) <= 255 && nameRE.MatchString(name) }

// apiError is one error of the distribution spec's error body.
type apiError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body, _ := json.Marshal(struct {
		Errors []apiError `json:"errors"`
	}{[]apiError{{Code: code, Message: msg}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// ServeHTTP answers the read side of the distribution API; every write
// is 405 UNSUPPORTED.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		// A request whose blob turned out corrupt panics with
		// http.ErrAbortHandler (the connection is cut): logged as such.
		if v := recover(); v != nil {
			h.log.LogAttrs(r.Context(), slog.LevelError, "request aborted", slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int64("bytes", sw.n), slog.Duration("duration", time.Since(start)))
			panic(v)
		}
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.code()), slog.Int64("bytes", sw.n), slog.Duration("duration", time.Since(start)), slog.String("remote", r.RemoteAddr))
	}()
	w = sw
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if h.users != nil {
		user, pass, ok := r.BasicAuth()
		if !ok || !h.users.check(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="regvault"`)
			writeError(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
	}
	path := r.URL.Path
	if path == "/v2" || path == "/v2/" {
		if !h.readOnly(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
		return
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if rest == "_catalog" {
		if h.readOnly(w, r) {
			h.catalog(w, r)
		}
		return
	}
	name, kind, ref := route(rest)
	if kind == "" {
		http.NotFound(w, r)
		return
	}
	if !h.readOnly(w, r) || kind == "uploads" {
		return
	}
	repo, ok := h.repos[name]
	if !ok {
		writeError(w, r, http.StatusNotFound, "NAME_UNKNOWN", fmt.Sprintf("repository name not known to registry: %q is not in this backup", name))
		return
	}
	switch kind {
	case "manifests":
		h.manifest(w, r, repo, ref)
	case "blobs":
		h.blob(w, r, repo, ref)
	case "tags":
		h.tagList(w, r, repo)
	case "referrers":
		h.referrerList(w, r, repo, ref)
	}
}

// route splits a path below /v2/ into the repository name, the kind of
// endpoint and its reference; kind "" for none.
func route(rest string) (name, kind, ref string) {
	if n, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return n, "tags", ""
	}
	if i := strings.LastIndex(rest, "/blobs/uploads"); i > 0 {
		return rest[:i], "uploads", ""
	}
	for _, k := range []string{"manifests", "blobs", "referrers"} {
		if i := strings.LastIndex(rest, "/"+k+"/"); i > 0 {
			ref := rest[i+len(k)+2:]
			if ref == "" || strings.Contains(ref, "/") {
				return "", "", ""
			}
			return rest[:i], k, ref
		}
	}
	return "", "", ""
}

// readOnly answers any method but GET and HEAD with 405 UNSUPPORTED.
func (h *Handler) readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, r, http.StatusMethodNotAllowed, "UNSUPPORTED", fmt.Sprintf("the operation is unsupported: %s: this registry serves a backup, read-only", r.Method))
	return false
}

// manifest serves a manifest by tag or digest.
func (h *Handler) manifest(w http.ResponseWriter, r *http.Request, repo *Repository, ref string) {
	var desc ocispec.Descriptor
	byTag := false
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("provided digest did not match uploaded content: %q is not a digest", ref))
			return
		}
		var ok bool
		if desc, ok = repo.manifests[d]; !ok {
			writeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("manifest unknown: %s is not a manifest of %s in this backup", d, repo.Name))
			return
		}
	} else {
		d, ok := repo.tags[ref]
		if !ok || !tagRE.MatchString(ref) {
			writeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("manifest unknown: tag %q of %s is not in this backup", ref, repo.Name))
			return
		}
		desc, byTag = repo.manifests[d.Digest], true
	}
	if etagMatch(r, desc.Digest.String()) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	// Accept as the distribution registry reads it: an OCI manifest or
	// index is not served to a client that does not list its type (it
	// would not understand it), a Docker image always is, and a Docker
	// manifest list asked for by tag by a client that does not take one
	// is answered with its linux/amd64 image.
	accept := acceptTypes(r)
	switch desc.MediaType {
	case ocispec.MediaTypeImageManifest:
		if !accept[desc.MediaType] {
			writeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN", "OCI manifest found, but accept header does not support OCI manifests")
			return
		}
	case ocispec.MediaTypeImageIndex:
		if !accept[desc.MediaType] {
			writeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN", "OCI index found, but accept header does not support OCI indexes")
			return
		}
	case archive.MediaTypeDockerManifestList:
		if byTag && !accept[desc.MediaType] {
			data, ok := h.manifestBytes(w, r, desc)
			if !ok {
				return
			}
			var list ocispec.Index
			_ = json.Unmarshal(data, &list) // read once already, when the backup was opened
			i := slices.IndexFunc(list.Manifests, func(d ocispec.Descriptor) bool {
				return d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64"
			})
			if i < 0 {
				writeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest list found, but accept header does not support manifest lists, and it has no linux/amd64 image")
				return
			}
			child, ok := repo.manifests[list.Manifests[i].Digest]
			if !ok || (child.MediaType == archive.MediaTypeDockerManifest && !accept[child.MediaType]) {
				writeError(w, r, http.StatusBadRequest, "MANIFEST_INVALID", "Schema 2 manifest not supported by client")
				return
			}
			desc = child
		}
	}
	data, ok := h.manifestBytes(w, r, desc)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", desc.MediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	w.Header().Set("Etag", `"`+desc.Digest.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(data)
	}
}

// manifestBytes reads a manifest, its digest checked; a corrupt one is
// answered with 500 and logged.
func (h *Handler) manifestBytes(w http.ResponseWriter, r *http.Request, desc ocispec.Descriptor) ([]byte, bool) {
	data, err := h.readManifest(r.Context(), desc)
	if err != nil {
		if r.Context().Err() == nil {
			h.log.LogAttrs(r.Context(), slog.LevelError, "cannot read manifest", slog.String("digest", desc.Digest.String()), slog.String("error", err.Error()))
		}
		writeError(w, r, http.StatusInternalServerError, "UNKNOWN", fmt.Sprintf("manifest %s cannot be read from the backup (regvault verify says why)", desc.Digest))
		return nil, false
	}
	return data, true
}

func acceptTypes(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(part); err == nil {
				out[mt] = true
			}
		}
	}
	return out
}

func etagMatch(r *http.Request, etag string) bool {
	for _, v := range r.Header.Values("If-None-Match") {
		if v == etag || v == `"`+etag+`"` {
			return true
		}
	}
	return false
}

// tagList answers tags/list with the spec's n/last pagination.
func (h *Handler) tagList(w http.ResponseWriter, r *http.Request, repo *Repository) {
	page, next, ok := paginate(w, r, repo.Tags)
	if !ok {
		return
	}
	if next != "" {
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%s&last=%s>; rel="next"`, repo.Name, r.URL.Query().Get("n"), url.QueryEscape(next)))
	}
	writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repo.Name, page})
}

// catalog answers _catalog with the same pagination.
func (h *Handler) catalog(w http.ResponseWriter, r *http.Request) {
	page, next, ok := paginate(w, r, h.names)
	if !ok {
		return
	}
	if next != "" {
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?n=%s&last=%s>; rel="next"`, r.URL.Query().Get("n"), url.QueryEscape(next)))
	}
	writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{page})
}

// paginate picks the page of the sorted list that n and last ask for;
// next is the last name of the page when more follow.
func paginate(w http.ResponseWriter, r *http.Request, all []string) (page []string, next string, ok bool) {
	q := r.URL.Query()
	list := all
	if last := q.Get("last"); last != "" {
		list = list[sort.SearchStrings(list, last):]
		if len(list) > 0 && list[0] == last {
			list = list[1:]
		}
	}
	if s := q.Get("n"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(w, r, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", fmt.Sprintf("invalid number of results requested: n=%q", s))
			return nil, "", false
		}
		if n < len(list) {
			list = list[:n]
			if n > 0 {
				next = list[n-1]
			}
		}
	}
	return append([]string{}, list...), next, true
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// referrerList answers the Referrers API from the referrers recorded for
// the repository, filtered by artifactType when asked.
func (h *Handler) referrerList(w http.ResponseWriter, r *http.Request, repo *Repository, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("invalid digest %q", ref))
		return
	}
	list := repo.referrers[d]
	if at := r.URL.Query().Get("artifactType"); at != "" {
		var kept []ocispec.Descriptor
		for _, x := range list {
			if x.ArtifactType == at {
				kept = append(kept, x)
			}
		}
		list = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if list == nil {
		list = []ocispec.Descriptor{}
	}
	writeJSON(w, r, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specsV2, MediaType: ocispec.MediaTypeImageIndex, Manifests: list,
	})
}

// blob serves a blob that the repository's manifests reach, honouring a
// single byte range; its digest is checked as it streams.
func (h *Handler) blob(w http.ResponseWriter, r *http.Request, repo *Repository, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("invalid digest %q", ref))
		return
	}
	desc, ok := repo.blobs[d]
	if !ok {
		writeError(w, r, http.StatusNotFound, "BLOB_UNKNOWN", fmt.Sprintf("blob unknown to registry: %s is not a blob of %s in this backup", d, repo.Name))
		return
	}
	sec, closer, err := h.layout.Section(r.Context(), desc)
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "cannot open blob", slog.String("digest", d.String()), slog.String("error", err.Error()))
		writeError(w, r, http.StatusInternalServerError, "UNKNOWN", fmt.Sprintf("blob %s cannot be read from the backup", d))
		return
	}
	defer closer.Close()
	size := sec.Size()
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("Etag", `"`+d.String()+`"`)
	if etagMatch(r, d.String()) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	start, end, partial, ok := parseRange(r.Header.Get("Range"), size)
	if !ok {
		hd.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		writeError(w, r, http.StatusRequestedRangeNotSatisfiable, "BLOB_UNKNOWN", fmt.Sprintf("range %q is not satisfiable: the blob has %d bytes", r.Header.Get("Range"), size))
		return
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
	}
	hd.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	if size == 0 {
		hd.Set("Content-Length", "0")
	}
	if r.Method == http.MethodHead || size == 0 {
		w.WriteHeader(status)
		return
	}
	if _, known := h.verified.Load(d); known {
		// Checked whole once already: sent straight from a file of its own
		// (sendfile on a plain HTTP connection, no copy through this
		// process). If it cannot be opened (the tar's path now names
		// another file), the section is copied and checked again.
		f, err := h.layout.OpenFile(r.Context(), desc, start)
		if err == nil {
			defer f.Close()
			w.WriteHeader(status)
			if err := sendFile(w, f, end-start+1); err != nil && r.Context().Err() == nil {
				h.log.LogAttrs(r.Context(), slog.LevelError, "cannot send blob", slog.String("digest", d.String()), slog.String("error", err.Error()))
			}
			return // on an error the response is short: the client sees it cut
		}
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "cannot open blob on its own: copied and checked", slog.String("digest", d.String()), slog.String("error", err.Error()))
	}
	w.WriteHeader(status)
	if err := copyBlob(w, sec, d, start, end); err != nil {
		if errors.Is(err, errCorrupt) {
			h.log.LogAttrs(r.Context(), slog.LevelError, "corrupt blob: connection cut", slog.String("repository", repo.Name), slog.String("digest", d.String()), slog.String("error", err.Error()))
			panic(http.ErrAbortHandler)
		}
		return // the client went away, or the disk failed: the response is short
	}
	h.verified.Store(d, true)
}

// sendFile writes n bytes of f, from its position, through the
// ResponseWriter's ReadFrom, which net/http turns into sendfile on a plain
// TCP connection.
func sendFile(w io.Writer, f *os.File, n int64) error {
	copied, err := io.Copy(w, &io.LimitedReader{R: f, N: n})
	if err == nil && copied < n {
		err = fmt.Errorf("%s: %w after %d of %d bytes", f.Name(), io.ErrUnexpectedEOF, copied, n)
	}
	return err
}

var errCorrupt = errors.New("the backup's bytes do not match the digest")

// copyBufs are copyBlob's buffers: 256 KiB, few syscalls per blob while
// 100 blobs read at once stay within 25 MiB.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyBlob writes bytes start..end (inclusive) of the blob sec to w. The
// whole blob is hashed on the way (the bytes before and after the range
// are read, not sent) and the last bytes of the range are held back until
// the digest matches: a corrupt blob never completes a response.
func copyBlob(w io.Writer, sec *io.SectionReader, d digest.Digest, start, end int64) error {
	size := sec.Size()
	hash := d.Algorithm().Hash()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var pending []byte
	for off := int64(0); off < size; {
		k := min(int64(len(buf)), size-off)
		n, err := sec.ReadAt(buf[:k], off)
		if int64(n) < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading %s at %d: %w", d, off+int64(n), err)
		}
		hash.Write(buf[:n])
		if a, b := max(off, start), min(off+int64(n)-1, end); a <= b {
			chunk := buf[a-off : b-off+1]
			if b == end && off+int64(n) < size {
				pending = bytes.Clone(chunk) // buf is read into again: the rest is hashed
			} else if b == end {
				pending = chunk
			} else if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		off += int64(n)
	}
	if got := digest.NewDigestFromBytes(d.Algorithm(), hash.Sum(nil)); got != d {
		return fmt.Errorf("%w: %s has %s", errCorrupt, d, got)
	}
	_, err := w.Write(pending)
	return err
}

// parseRange reads a Range header of one byte range: ok false when it
// cannot be satisfied. Several ranges, or another unit, are ignored (the
// whole blob is served, as RFC 9110 allows).
func parseRange(v string, size int64) (start, end int64, partial, ok bool) {
	whole := func() (int64, int64, bool, bool) { return 0, size - 1, false, true }
	spec, found := strings.CutPrefix(v, "bytes=")
	if v == "" || !found || strings.Contains(spec, ",") {
		return whole()
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return whole()
	}
	switch {
	case a == "": // the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return whole()
		}
		if n == 0 || size == 0 {
			return 0, 0, false, false
		}
		return max(0, size-n), size - 1, true, true
	default:
		s, err := strconv.ParseInt(a, 10, 64)
		if err != nil || s < 0 {
			return whole()
		}
		e := size - 1
		if b != "" {
			if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
				return whole()
			}
			e = min(e, size-1)
		}
		if s >= size {
			return 0, 0, false, false
		}
		return s, e, true, true
	}
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps the ResponseWriter's ReadFrom (sendfile) usable
// through the wrapper.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
