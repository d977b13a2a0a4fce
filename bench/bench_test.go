package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
)

// Timings are never asserted here: these tests check the harness's
// bookkeeping (workload shapes, counting, seeding), not its speed.

func TestSpecShapes(t *testing.T) {
	d1, err := NewSpec(WorkloadD1, "s", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d1.Repos) != 8 {
		t.Fatalf("D1: %d repositories, want 8", len(d1.Repos))
	}
	unique := map[string]int64{}
	for _, r := range d1.Repos {
		if len(r.Images) != 3 {
			t.Fatalf("D1 %s: %d tags, want 3", r.Name, len(r.Images))
		}
		for _, img := range r.Images {
			if !img.Referrer {
				t.Errorf("D1 %s:%s has no referrer", r.Name, img.Tag)
			}
			for _, l := range img.Layers {
				unique[l.Seed] = l.Size
			}
		}
	}
	var sum int64
	for _, n := range unique {
		sum += n
	}
	if want := int64(144 * MiB); sum != want {
		t.Errorf("D1 unique layer bytes %d, want %d (32 + 8×8 + 24×2 MiB)", sum, want)
	}

	l, _ := NewSpec(WorkloadL, "s", Options{})
	var lsum int64
	seeds := map[string]bool{}
	for _, r := range l.Repos {
		for _, img := range r.Images {
			for _, ly := range img.Layers {
				if seeds[ly.Seed] {
					t.Errorf("L: layer %s twice", ly.Seed)
				}
				seeds[ly.Seed] = true
				lsum += ly.Size
			}
		}
	}
	if len(l.Repos) < 20 || lsum < 2*GiB {
		t.Errorf("L: %d repositories, %d bytes; want ≥ 20 and ≥ 2 GiB", len(l.Repos), lsum)
	}

	s, _ := NewSpec(WorkloadS, "s", Options{})
	if len(s.Repos) != 200 || len(s.Repos[0].Images) != 5 {
		t.Errorf("S: %d repositories × %d tags, want 200 × 5", len(s.Repos), len(s.Repos[0].Images))
	}
	b, _ := NewSpec(WorkloadB, "s", Options{})
	if len(b.Repos) != 1 || len(b.Repos[0].Images[0].Layers) != 1 || b.Repos[0].Images[0].Layers[0].Size != 2*GiB {
		t.Errorf("B: %+v, want one image with one 2 GiB layer", b.Repos)
	}
	if _, err := NewSpec("X", "s", Options{}); err == nil {
		t.Error("NewSpec(X): no error")
	}
}

func TestSpecKey(t *testing.T) {
	a, _ := NewSpec(WorkloadD1, "one", Options{})
	b, _ := NewSpec(WorkloadD1, "one", Options{})
	c, _ := NewSpec(WorkloadD1, "two", Options{})
	q, _ := NewSpec(WorkloadD1, "one", Options{Quick: true})
	if a.Key() != b.Key() {
		t.Errorf("same spec, keys %s and %s", a.Key(), b.Key())
	}
	if a.Key() == c.Key() || a.Key() == q.Key() {
		t.Errorf("different specs share a key: %s %s %s", a.Key(), c.Key(), q.Key())
	}
	if !strings.HasPrefix(q.Key(), "D1-quick-") {
		t.Errorf("quick key %s", q.Key())
	}
}

func TestLayerReader(t *testing.T) {
	l := Layer{Seed: "x", Size: 200 * KiB}
	read := func() []byte {
		b, err := io.ReadAll(layerReader(l))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	one, two := read(), read()
	if sha256.Sum256(one) != sha256.Sum256(two) {
		t.Fatal("the same layer gave different bytes")
	}
	zr, err := gzip.NewReader(bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, registrytest.Bytes("x", int(l.Size))) {
		t.Error("the gzip stream does not hold registrytest.Bytes(seed, size)")
	}
}

func TestClassify(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for path, want := range map[string]string{
		"/v2/":                              "other",
		"/v2/a/b/blobs/sha256:" + hex:       "blob",
		"/v2/a/blobs/uploads/":              "upload",
		"/v2/a/blobs/uploads/123":           "upload",
		"/v2/a/manifests/v1":                "manifest",
		"/v2/a/manifests/sha256:" + hex:     "manifest",
		"/v2/a/manifests/sha256-" + hex:     "referrers-tag",
		"/v2/a/manifests/sha256-abc":        "manifest",
		"/v2/a/tags/list":                   "tags",
		"/v2/a/referrers/sha256:" + hex:     "referrers",
		"/v2/_catalog":                      "other",
		"/v2/x/y/z/manifests/sha256-" + hex: "referrers-tag",
	} {
		if got := classify(path); got != want {
			t.Errorf("classify(%s) = %s, want %s", path, got, want)
		}
	}
}

func TestProxyCounts(t *testing.T) {
	payload := bytes.Repeat([]byte("z"), 300*KiB)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			w.Write(payload)
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "/v2/a/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPut:
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer backend.Close()
	for _, prof := range []Profile{ProfileLoopback, {Name: "shaped", Latency: 1, Rate: 100 * MB}} {
		t.Run(prof.Name, func(t *testing.T) {
			px, err := StartProxy(strings.TrimPrefix(backend.URL, "http://"), prof)
			if err != nil {
				t.Fatal(err)
			}
			defer px.Close()
			c := newClient(px.Addr, 2)
			defer c.close()
			ctx := context.Background()
			var buf bytes.Buffer
			if _, err := c.getBlob(ctx, "a", "sha256:"+strings.Repeat("0", 64), &buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), payload) {
				t.Fatalf("got %d bytes through the proxy, want %d", buf.Len(), len(payload))
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+px.Addr+"/v2/a/blobs/sha256:"+strings.Repeat("0", 64), nil)
			req.Header.Set("Range", "bytes=0-9")
			if resp, err := c.hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err := c.uploadMonolithic(ctx, "a", "sha256:"+strings.Repeat("1", 64), 1000, bytes.NewReader(make([]byte, 1000))); err != nil {
				t.Fatal(err)
			}
			if d, err := c.headManifest(ctx, "a", "v1"); err != nil || d != "" {
				t.Fatalf("headManifest: %q, %v", d, err)
			}
			st := px.Stats()
			for key, want := range map[string]int64{"GET blob": 2, "POST upload": 1, "PUT upload": 1, "HEAD manifest": 1} {
				if st.Requests[key] != want {
					t.Errorf("%s: %d, want %d (%s)", key, st.Requests[key], want, st)
				}
			}
			if st.BytesOut != 2*int64(len(payload)) || st.BytesIn != 1000 || st.Ranged != 1 || st.Status[404] != 1 {
				t.Errorf("out %d, in %d, ranged %d, 404s %d; want %d, 1000, 1, 1", st.BytesOut, st.BytesIn, st.Ranged, st.Status[404], 2*len(payload))
			}
			px.Reset()
			if st := px.Stats(); st.Total() != 0 || st.BytesOut != 0 {
				t.Errorf("after Reset: %s, %d bytes", st, st.BytesOut)
			}
		})
	}
}

// TestSeedAndCheck seeds the quick D1 into the in-process registry and
// checks what Seed reports against it, and the backup check against a
// directory of blob files.
func TestSeedAndCheck(t *testing.T) {
	srv := registrytest.NewInProcess(t, registrytest.WithReferrersAPI(false))
	spec, err := NewSpec(WorkloadD1, "test", Options{Quick: true})
	if err != nil {
		t.Fatal(err)
	}
	// Smaller still: two repositories.
	spec.Repos = spec.Repos[:2]
	w, err := Seed(context.Background(), srv.Host(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.TagCount() != 6 || w.Referrers() != 6 || len(w.Manifests) != 12 {
		t.Errorf("%d tags, %d referrers, %d manifests; want 6, 6, 12", w.TagCount(), w.Referrers(), len(w.Manifests))
	}
	// Layers: 1 shared + 2 per-repo + 6 own; 6 configs; 6 SBOMs; the empty config.
	if want := 1 + 2 + 6 + 6 + 6 + 1; len(w.Blobs) != want {
		t.Errorf("%d unique blobs, want %d", len(w.Blobs), want)
	}
	if err := checkSeeded(context.Background(), srv.Host(), w); err != nil {
		t.Error(err)
	}
	if got := checkRestore(context.Background(), &Tool{Name: ToolOras, Referrers: true}, w, srv.Host()); got != "ok" {
		t.Errorf("checkRestore of the seeded registry: %s", got)
	}

	// The baseline fetches every blob; the check finds them all, and
	// misses one when it is gone.
	dir := t.TempDir()
	list := dir + "/blobs.json"
	data := []byte("[")
	for i, b := range w.Blobs {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, fmt.Sprintf(`{"digest":%q,"size":%d,"repo":%q}`, b.Digest, b.Size, b.Repo)...)
	}
	data = append(data, ']')
	if err := writeFileAtomic(list, data); err != nil {
		t.Fatal(err)
	}
	if err := RunBaseline([]string{"get", "-host", srv.Host(), "-list", list, "-dir", dir + "/blobs", "-conns", "3"}); err != nil {
		t.Fatal(err)
	}
	bl := &Tool{Name: ToolBaseline}
	if got := checkBackup(bl, w, []string{dir + "/blobs"}); got != "ok" {
		t.Errorf("checkBackup: %s", got)
	}
	if err := removeFile(dir + "/blobs/" + strings.TrimPrefix(w.Blobs[0].Digest, "sha256:")); err != nil {
		t.Fatal(err)
	}
	if got := checkBackup(bl, w, []string{dir + "/blobs"}); !strings.HasPrefix(got, "missing 1 of") {
		t.Errorf("checkBackup with a blob gone: %s", got)
	}
}

func removeFile(p string) error { return os.Remove(p) }

func TestMedianAndTargets(t *testing.T) {
	ok := func(wall float64) RunResult { return RunResult{WallSec: wall, Check: "ok"} }
	row := &Row{Tool: ToolRegvault, Runs: []RunResult{ok(3), {WallSec: 0.1, Err: "boom"}, ok(1), ok(2)}}
	if m, _ := row.Median(); m.WallSec != 2 {
		t.Errorf("median of 3, 1, 2 (and a failure): %v, want 2", m.WallSec)
	}
	if _, found := (&Row{Runs: []RunResult{{Err: "x"}}}).Median(); found {
		t.Error("a row of failures has a median")
	}
	sec := &Section{Workload: "D1", Base: WorkloadD1, Profile: "wan", Op: OpBackup, Blobs: 82, Manifests: 48, Rows: []*Row{
		{Tool: ToolRegvault, Runs: []RunResult{{WallSec: 2, Check: "ok", Stats: ProxyStats{Requests: map[string]int64{"GET blob": 82, "GET manifest": 48}}}}},
		{Tool: ToolOras, Runs: []RunResult{ok(25)}},
		{Tool: ToolCrane, Runs: []RunResult{ok(5)}},
	}}
	rep := &Report{Sections: []*Section{sec}}
	status := map[string]string{}
	for _, tg := range rep.Targets() {
		status[tg.Name] = tg.Status
	}
	for name, want := range map[string]string{
		"D1 WAN backup ≥ 8× faster than oras (looped per repository)":                                                                      "met",
		"D1 WAN backup ≥ 3× faster than crane (pull of every tag into one layout)":                                                         "missed",
		"D1 WAN restore ≥ 5× faster than skopeo copy (per tag)":                                                                            "not measured",
		"each blob and manifest fetched once per backup (GET manifest = unique manifests; whole-blob GETs ≤ unique blobs ≤ all blob GETs)": "met",
	} {
		if status[name] != want {
			t.Errorf("%s: %q, want %q", name, status[name], want)
		}
	}
	if md := sec.Markdown(); !strings.Contains(md, "| oras | 25.00 s |") || !strings.Contains(md, "12.50×") {
		t.Errorf("section table:\n%s", md)
	}
}

func TestRotate(t *testing.T) {
	tools := []*Tool{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	var got []string
	for _, tl := range rotate(tools, 1) {
		got = append(got, tl.Name)
	}
	if strings.Join(got, "") != "bca" {
		t.Errorf("rotate by 1: %v", got)
	}
}

// The interop tests run the oras that the Makefile installs; the
// benchmarks install their own: both are the same version.
func TestOrasVersionMatchesMakefile(t *testing.T) {
	checkMakefileVersion(t, "ORAS_VERSION", OrasVersion)
}

// regsync and the interop tests' regctl are the same regclient release.
func TestRegsyncVersionMatchesMakefile(t *testing.T) {
	checkMakefileVersion(t, "REGCTL_VERSION", RegsyncVersion)
}

func checkMakefileVersion(t *testing.T, variable, version string) {
	t.Helper()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mk), "\n") {
		if name, value, ok := strings.Cut(line, ":="); ok && strings.TrimSpace(name) == variable {
			if v := strings.TrimSpace(value); v != version {
				t.Errorf("Makefile %s %s, bench %s: pin one version in both", variable, v, version)
			}
			return
		}
	}
	t.Errorf("Makefile has no %s", variable)
}

// TestBaselineVerifies: the baseline checks the SHA-256 of what it fetches
// and of what it sends (so it does the work a verifying tool does): a
// server that answers a blob GET with other bytes, and accepts any upload,
// fails it, naming the digest.
func TestBaselineVerifies(t *testing.T) {
	good := []byte("the blob's content")
	sum := sha256.Sum256(good)
	dgst := fmt.Sprintf("sha256:%x", sum)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.Method {
		case http.MethodGet:
			w.Write([]byte("other bytes, same size"[:len(good)]))
		case http.MethodPost:
			w.Header().Set("Location", "/v2/repo/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
		case http.MethodPut:
			w.WriteHeader(http.StatusCreated)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	list := dir + "/blobs.json"
	if err := os.WriteFile(list, []byte(fmt.Sprintf(`[{"digest":%q,"size":%d,"repo":"repo"}]`, dgst, len(good))), 0o644); err != nil {
		t.Fatal(err)
	}
	err := RunBaseline([]string{"get", "-host", host, "-list", list, "-dir", dir + "/blobs"})
	if err == nil || !strings.Contains(err.Error(), dgst) || !strings.Contains(err.Error(), "content is sha256:") {
		t.Errorf("get of other bytes: %v, want an error naming %s", err, dgst)
	}
	// The file of the blob holds other bytes: the put finds it out.
	if err := os.WriteFile(dir+"/blobs/"+strings.TrimPrefix(dgst, "sha256:"), []byte("other bytes, same size"[:len(good)]), 0o644); err != nil {
		t.Fatal(err)
	}
	err = RunBaseline([]string{"put", "-host", host, "-list", list, "-dir", dir + "/blobs"})
	if err == nil || !strings.Contains(err.Error(), dgst) || !strings.Contains(err.Error(), "content is sha256:") {
		t.Errorf("put of other bytes: %v, want an error naming %s", err, dgst)
	}
	// The right bytes pass both ways.
	if err := os.WriteFile(dir+"/blobs/"+strings.TrimPrefix(dgst, "sha256:"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RunBaseline([]string{"put", "-host", host, "-list", list, "-dir", dir + "/blobs"}); err != nil {
		t.Errorf("put of the right bytes: %v", err)
	}
}

// seededD1 starts a distribution registry in work, closed when t ends,
// and seeds the quick D1 into it, cut to its first repos repositories.
func seededD1(ctx context.Context, t *testing.T, work string, repos int) (*Registry, *Workload) {
	t.Helper()
	reg, err := StartRegistry("", work)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	spec, _ := NewSpec(WorkloadD1, "test", Options{Quick: true})
	spec.Repos = spec.Repos[:repos]
	w, err := Seed(ctx, reg.BackendHost(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg, w
}
