package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault/internal/registrytest"
)

const testVersion = "v9.9.9-imagetest"

// buildRegvault builds the static regvault binary for this machine's
// architecture once for the test, as `make image` does (CGO_ENABLED=0,
// -trimpath, the version by -ldflags).
func buildRegvault(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: building the static regvault binary for the image takes a while")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary runs only on linux; this is " + runtime.GOOS)
	}
	if _, ok := elfMachine[runtime.GOARCH]; !ok {
		t.Skipf("no image platform for %s", runtime.GOARCH)
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command to build regvault with")
		}
	}
	bin := filepath.Join(t.TempDir(), "regvault")
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion, "-o", bin, "../regvault")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestImage builds the image twice from one binary and checks what a user
// of it sees: the same bytes, a layer whose /regvault runs and prints the
// version, a non-root user, CA certificates, and a layout that
// `regvault restore` puts into a registry, whose tag then pulls.
func TestImage(t *testing.T) {
	bin := buildRegvault(t)
	plat := "linux/" + runtime.GOARCH
	dir := t.TempDir()
	args := func(n string) []string {
		return []string{"-o", filepath.Join(dir, n), "-tar", filepath.Join(dir, n+".tar"),
			"-version", testVersion, "-revision", "0123abc", "-epoch", "1700000000", plat + "=" + bin}
	}

	var stdout, stderr bytes.Buffer
	if code := run(args("a"), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	t.Log(stdout.String())
	res, err := build(mustParse(t, args("b")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), res.Index.String()) {
		t.Errorf("first build printed %q, second built %s: not reproducible", stdout.String(), res.Index)
	}
	for _, f := range []string{".tar", "/index.json", "/oci-layout"} {
		a, b := readFile(t, filepath.Join(dir, "a"+f)), readFile(t, filepath.Join(dir, "b"+f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same binary", f)
		}
	}

	// index.json: one entry, the index, named by the tag.
	var top ocispec.Index
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "b", "index.json")), &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].Digest.String() != res.Index.String() ||
		top.Manifests[0].MediaType != ocispec.MediaTypeImageIndex || top.Manifests[0].Annotations[ocispec.AnnotationRefName] != testVersion {
		t.Fatalf("index.json = %+v, want one image index %s named %s", top.Manifests, res.Index, testVersion)
	}

	// The config: non-root, the entrypoint, the labels.
	cf := res.Configs[plat]
	if cf.Config.User != "65532:65532" || strings.HasPrefix(cf.Config.User, "0") || cf.Config.User == "root" {
		t.Errorf("config user %q, want 65532:65532 (nonroot)", cf.Config.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/regvault"}) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	if cf.Config.Labels[ocispec.AnnotationVersion] != testVersion || cf.Config.Labels[ocispec.AnnotationRevision] != "0123abc" ||
		cf.Config.Labels[ocispec.AnnotationSource] == "" {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	if got := cf.Created.UTC().Unix(); got != 1700000000 || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("config created %d, platform %s/%s", got, cf.OS, cf.Architecture)
	}

	// The layer: unpack it and run its binary.
	root := t.TempDir()
	members := unpackLayer(t, filepath.Join(dir, "b", "blobs", "sha256", res.Layers[plat].Hex), root)
	wantMembers := []string{"etc/", "etc/group", "etc/nsswitch.conf", "etc/passwd", "etc/ssl/", "etc/ssl/certs/",
		"etc/ssl/certs/ca-certificates.crt", "home/", "home/nonroot/", "regvault", "tmp/"}
	if !slices.Equal(members, wantMembers) {
		t.Errorf("layer members %q, want %q", members, wantMembers)
	}
	out, err := exec.Command(filepath.Join(root, "regvault"), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), testVersion) {
		t.Errorf("/regvault version: %v\n%s\nwant the version %s", err, out, testVersion)
	}
	if !bytes.Equal(readFile(t, filepath.Join(root, "regvault")), readFile(t, bin)) {
		t.Error("/regvault is not the binary given")
	}
	if passwd := string(readFile(t, filepath.Join(root, "etc", "passwd"))); !strings.Contains(passwd, "\nnonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", passwd)
	}
	certs := readFile(t, filepath.Join(root, "etc", "ssl", "certs", "ca-certificates.crt"))
	n := 0
	for rest := certs; ; n++ {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			t.Errorf("ca-certificates.crt: certificate %d: %v", n, err)
		}
	}
	if n < 100 {
		t.Errorf("ca-certificates.crt holds %d certificates, want the fallback bundle's (over 100)", n)
	}

	// regvault checks the layout and restores the tar into a registry,
	// from which the tag pulls as the index built here.
	regvault := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("regvault %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	regvault("verify", "--input", filepath.Join(dir, "b"))
	reg := registrytest.NewInProcess(t)
	regvault("restore", "--plain-http", "--no-tty", "--input", filepath.Join(dir, "b.tar"), reg.Host()+"/tools/regvault")
	repo := registrytest.Repo(t, reg, "tools/regvault")
	ctx := context.Background()
	desc, err := repo.Resolve(ctx, testVersion)
	if err != nil {
		t.Fatalf("resolving the restored tag: %v", err)
	}
	if desc.Digest.String() != res.Index.String() {
		t.Fatalf("restored tag is %s, built index %s", desc.Digest, res.Index)
	}
	raw, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Platform == nil || idx.Manifests[0].Platform.Architecture != runtime.GOARCH ||
		idx.Manifests[0].Digest.String() != res.Manifests[plat].String() {
		t.Fatalf("pulled index %+v", idx.Manifests)
	}
	mraw, err := content.FetchAll(ctx, repo, idx.Manifests[0])
	if err != nil {
		t.Fatalf("pulling the %s manifest: %v", plat, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mraw, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest.String() != res.Layers[plat].String() {
		t.Fatalf("pulled manifest layers %+v", m.Layers)
	}
	if ok, err := repo.Blobs().Exists(ctx, m.Layers[0]); err != nil || !ok {
		t.Fatalf("layer not in the registry: %v", err)
	}
}

// unpackLayer extracts the gzip layer blob into root, checking each
// member's fixed metadata, and returns the member names in order.
func unpackLayer(t *testing.T, blob, root string) []string {
	t.Helper()
	f, err := os.Open(blob)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.ModTime.Unix() != 1700000000 {
			t.Errorf("%s: time %v, want the epoch given", h.Name, h.ModTime)
		}
		wantUID := 0
		if h.Name == "home/nonroot/" {
			wantUID = 65532
		}
		if h.Uid != wantUID || h.Gid != wantUID {
			t.Errorf("%s: owner %d:%d, want %d", h.Name, h.Uid, h.Gid, wantUID)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("%s: type %c, want files and directories only", h.Name, h.Typeflag)
		}
	}
	return names
}

func mustParse(t *testing.T, args []string) options {
	t.Helper()
	o, err := parseArgs(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUsage: what the builder refuses, before it writes anything.
func TestUsage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the cases use this test binary as a Linux ELF")
	}
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	someone := filepath.Join(dir, "someones-files")
	if err := os.MkdirAll(someone, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(someone, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The test binary is an ELF of this machine: refused for another
	// architecture.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	out := filepath.Join(dir, "out")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-version", "v1", "linux/amd64=x"}, 2, "-o <dir> is required"},
		{[]string{"-o", out, "linux/amd64=x"}, 2, "-version is required"},
		{[]string{"-o", out, "-version", "v1+meta", "linux/amd64=x"}, 2, `"v1+meta" is not a valid tag`},
		{[]string{"-o", out, "-version", "v1", "-epoch", "yesterday", "linux/amd64=x"}, 2, "want seconds since 1970"},
		{[]string{"-o", out, "-version", "v1"}, 2, "no binaries"},
		{[]string{"-o", out, "-version", "v1", "amd64=x"}, 2, "want <os>/<arch>"},
		{[]string{"-o", out, "-version", "v1", "linux/amd64=x", "linux/amd64=y"}, 2, "given twice"},
		{[]string{"-o", out, "-version", "v1", "linux/amd64=" + notELF}, 1, "not an ELF binary"},
		{[]string{"-o", out, "-version", "v1", "linux/" + other + "=" + self}, 1, "not " + other + " (build it with GOOS=linux GOARCH=" + other},
		{[]string{"-o", out, "-version", "v1", "darwin/" + other + "=" + self}, 1, "only linux images"},
		{[]string{"-o", someone, "-version", "v1", "linux/amd64=" + notELF}, 1, "not empty and not an OCI layout"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused build left %s: %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(someone, "keep")); err != nil {
		t.Errorf("a refused build touched %s: %v", someone, err)
	}
}
