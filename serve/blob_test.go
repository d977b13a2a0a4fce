package serve

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/internal/archivetest"
	"github.com/regvault/regvault/source"
)

// oneImageTar writes a tag-only backup of one image (tag v1) in dir: a
// plain tar if name ends in .tar, else a directory; corrupt flips a byte of the layer (same size). It returns
// the tar's path and the layer.
func oneImageTar(t *testing.T, dir, name string, corrupt bool) (string, []byte) {
	t.Helper()
	layer := bytes.Repeat([]byte("regvault serve layer bytes "), 40000) // ~1 MiB: several copy buffers
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	desc := func(mt string, b []byte) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
	}
	manifest, _ := json.Marshal(ocispec.Manifest{
		Versioned: specsV2, MediaType: ocispec.MediaTypeImageManifest,
		Config: desc(ocispec.MediaTypeImageConfig, config),
		Layers: []ocispec.Descriptor{desc(ocispec.MediaTypeImageLayer, layer)},
	})
	md := desc(ocispec.MediaTypeImageManifest, manifest)
	md.Annotations = map[string]string{ocispec.AnnotationRefName: "v1"}
	index, _ := json.Marshal(ocispec.Index{Versioned: specsV2, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}})
	stored := bytes.Clone(layer)
	if corrupt {
		stored[len(stored)/2] ^= 0xff
	}
	member := func(name string, data []byte) archivetest.Member {
		return archivetest.Member{Hdr: &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, Data: data}
	}
	blob := func(b []byte) string { return "blobs/sha256/" + digest.FromBytes(b).Encoded() }
	path := filepath.Join(dir, name)
	ms := []archivetest.Member{
		member("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		member("index.json", index),
		member(blob(config), config),
		member(blob(layer), stored),
		member(blob(manifest), manifest),
	}
	if !strings.HasSuffix(name, ".tar") { // a directory
		for _, m := range ms {
			p := filepath.Join(path, m.Hdr.Name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, m.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return path, layer
	}
	archivetest.WriteTar(t, path, ms)
	return path, layer
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func newTestHandler(t *testing.T, path string) *Handler {
	t.Helper()
	l, err := source.OpenLayout(context.Background(), path, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h, err := New(context.Background(), l, Options{Repository: "app"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fileReaderFrom is a ResponseWriter with a ReadFrom, as net/http's own
// (sendfile on a TCP connection): it records whether the body came
// through it from a file.
type fileReaderFrom struct {
	*httptest.ResponseRecorder
	fromFile bool
}

func (w *fileReaderFrom) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		_, w.fromFile = lr.R.(*os.File)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseRecorder}, r)
}

func getBlob(h http.Handler, d digest.Digest, rangeHeader string) *fileReaderFrom {
	req := httptest.NewRequest("GET", "/v2/app/blobs/"+d.String(), nil)
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	w := &fileReaderFrom{ResponseRecorder: httptest.NewRecorder()}
	h.ServeHTTP(w, req)
	return w
}

// TestBlobSentFromFileOnceChecked: the first GET of a blob hashes it as
// it streams; once it has been read whole and found intact, a GET (or a
// Range) hands the ResponseWriter's ReadFrom a file section, which
// net/http sends with sendfile, and the bytes are the same.
func TestBlobSentFromFileOnceChecked(t *testing.T) {
	for _, name := range []string{"one.tar", "one"} {
		t.Run(name, func(t *testing.T) { testBlobSentFromFile(t, name) })
	}
}

func testBlobSentFromFile(t *testing.T, name string) {
	path, layer := oneImageTar(t, t.TempDir(), name, false)
	h := newTestHandler(t, path)
	d := digest.FromBytes(layer)

	whole := getBlob(h, d, "")
	if whole.Code != 200 || !bytes.Equal(whole.Body.Bytes(), layer) || whole.fromFile {
		t.Fatalf("the first GET: %d, %d bytes, from a file %v (want hashed as it streams)", whole.Code, whole.Body.Len(), whole.fromFile)
	}
	for _, rg := range []struct {
		header     string
		start, end int
	}{{"", 0, len(layer) - 1}, {"bytes=1000-", 1000, len(layer) - 1}, {"bytes=-10", len(layer) - 10, len(layer) - 1}, {"bytes=5-5", 5, 5}} {
		w := getBlob(h, d, rg.header)
		if !w.fromFile {
			t.Errorf("GET (Range %q) of a blob checked whole: not sent from a file", rg.header)
		}
		if !bytes.Equal(w.Body.Bytes(), layer[rg.start:rg.end+1]) {
			t.Errorf("GET (Range %q) of a blob checked whole: %d bytes, not the blob's %d-%d", rg.header, w.Body.Len(), rg.start, rg.end)
		}
	}

	// A Range first: the whole blob is read to check it, the range sent;
	// then the blob is known intact.
	h = newTestHandler(t, path)
	first := getBlob(h, d, "bytes=100-199")
	if first.Code != 206 || !bytes.Equal(first.Body.Bytes(), layer[100:200]) || first.fromFile {
		t.Fatalf("a Range of a blob not yet checked: %d, %d bytes, from a file %v", first.Code, first.Body.Len(), first.fromFile)
	}
	if w := getBlob(h, d, ""); !w.fromFile || !bytes.Equal(w.Body.Bytes(), layer) {
		t.Errorf("GET after a Range that checked the blob: from a file %v, the blob %v", w.fromFile, bytes.Equal(w.Body.Bytes(), layer))
	}
}

// TestBlobServedOverTCP: the same over a real connection (where net/http
// uses sendfile), from a tar whose blob sits at an offset.
func TestBlobServedOverTCP(t *testing.T) {
	path, layer := oneImageTar(t, t.TempDir(), "one.tar", false)
	srv := httptest.NewServer(newTestHandler(t, path))
	defer srv.Close()
	url := srv.URL + "/v2/app/blobs/" + digest.FromBytes(layer).String()
	for i, rg := range []string{"", "", "bytes=300-", ""} {
		req, _ := http.NewRequest("GET", url, nil)
		if rg != "" {
			req.Header.Set("Range", rg)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := layer
		if rg != "" {
			want = layer[300:]
		}
		if err != nil || !bytes.Equal(body, want) {
			t.Errorf("GET %d (Range %q): %d bytes, %v; want the blob's %d", i+1, rg, len(body), err, len(want))
		}
	}
}

// TestCorruptBlobNeverSentFromFile: a blob whose bytes do not match its
// digest is cut on every GET, whole or Range: never remembered as
// checked, never sent as a plain copy.
func TestCorruptBlobNeverSentFromFile(t *testing.T) {
	path, layer := oneImageTar(t, t.TempDir(), "bad.tar", true)
	h := newTestHandler(t, path)
	srv := httptest.NewServer(h)
	defer srv.Close()
	d := digest.FromBytes(layer)
	for i, rg := range []string{"", "bytes=0-99", ""} {
		req, _ := http.NewRequest("GET", srv.URL+"/v2/app/blobs/"+d.String(), nil)
		if rg != "" {
			req.Header.Set("Range", rg)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			continue // cut before the headers: fine
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("GET %d (Range %q) of a corrupt blob completed: %d, %d bytes", i+1, rg, resp.StatusCode, len(body))
		}
	}
	if _, ok := h.verified.Load(d); ok {
		t.Error("a corrupt blob is remembered as checked")
	}
}

// TestBlobTarReplacedAfterStart: once the tar's path names another file
// (a new backup written over it), a blob checked in the old one is no
// longer sent from the path: it is copied from the file opened at start,
// and checked again.
func TestBlobTarReplacedAfterStart(t *testing.T) {
	dir := t.TempDir()
	path, layer := oneImageTar(t, dir, "served.tar", false)
	var log bytes.Buffer
	l, err := source.OpenLayout(context.Background(), path, nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h, err := New(context.Background(), l, Options{Repository: "app", Log: newTextLogger(&log)})
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(layer)
	if w := getBlob(h, d, ""); !bytes.Equal(w.Body.Bytes(), layer) {
		t.Fatal("the first GET is not the blob")
	}
	bad, _ := oneImageTar(t, dir, "bad.tar", true)
	if err := os.Rename(bad, path); err != nil {
		t.Fatal(err)
	}
	w := getBlob(h, d, "")
	if w.fromFile || !bytes.Equal(w.Body.Bytes(), layer) {
		t.Errorf("after the tar was replaced: %d bytes (the blob: %v), from a file %v; want the blob opened at start, copied", w.Body.Len(), bytes.Equal(w.Body.Bytes(), layer), w.fromFile)
	}
	if !strings.Contains(log.String(), "names another file") {
		t.Errorf("the log does not say why the blob was copied:\n%s", log.String())
	}
}
