package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/inspect"
	"github.com/regvault/regvault/internal/registrytest"
)

// inspectInput is one backup to inspect: a path, or "-" with stdin.
type inspectInput struct {
	name  string
	path  string
	stdin string
}

// backupTo runs regvault backup into out (a directory, a .tar, .tar.gz,
// .tar.zst, or - for stdout, whose bytes it returns) for refs, with
// referrers.
func backupTo(t *testing.T, out string, refs ...string) string {
	t.Helper()
	args := append([]string{"backup", "--plain-http", "--no-tty", "--include-referrers", "--output", out}, refs...)
	var b strings.Builder
	code := run(args, strings.NewReader(""), &b, &strings.Builder{})
	if code != exitOK {
		t.Fatalf("regvault %s: exit %d", strings.Join(args, " "), code)
	}
	return b.String()
}

// backupInputs backs up refs in every form restore reads: a directory, a
// tar, a gzip and a zstd tar, and a tar and a zstd tar on standard input.
func backupInputs(t *testing.T, refs ...string) []inspectInput {
	t.Helper()
	dir := t.TempDir()
	var ins []inspectInput
	for _, name := range []string{"dir", "apps.tar", "apps.tar.gz", "apps.tar.zst"} {
		p := filepath.Join(dir, name)
		backupTo(t, p, refs...)
		ins = append(ins, inspectInput{name: name, path: p})
	}
	ins = append(ins, inspectInput{name: "stdin tar", path: "-", stdin: backupTo(t, "-", refs...)})
	zst, err := os.ReadFile(filepath.Join(dir, "apps.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	ins = append(ins, inspectInput{name: "stdin tar.zst", path: "-", stdin: string(zst)})
	return ins
}

func (in inspectInput) run(t *testing.T, cmd string, args ...string) result {
	t.Helper()
	flag := "--oci-layout-path"
	if cmd == "verify" {
		flag = "--input"
	}
	full := append(strings.Fields(cmd), flag, in.path)
	return regvault(t, in.stdin, append(full, args...)...)
}

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func wantLines(t *testing.T, what, got string, want ...string) {
	t.Helper()
	if g := lines(got); !slices.Equal(g, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, g, want)
	}
}

// childOf returns the platform manifest of an index's content for arch.
func childOf(t *testing.T, index []byte, arch string) ocispec.Descriptor {
	t.Helper()
	var idx ocispec.Index
	if err := json.Unmarshal(index, &idx); err != nil {
		t.Fatal(err)
	}
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.Architecture == arch {
			return m
		}
	}
	t.Fatalf("no %s manifest in %s", arch, index)
	return ocispec.Descriptor{}
}

func TestInspectMultiRepository(t *testing.T) {
	s, sample := sampleRegistry(t)
	host := s.Host()
	var refs []string
	for _, repo := range sample.Repositories {
		refs = append(refs, ref(s, repo))
	}
	backendV2 := sample.Tags[registrytest.SampleBackend]["v2"]
	var amd64 ocispec.Descriptor
	for _, r := range sample.Referrers[registrytest.SampleBackend] {
		if r.Descriptor.ArtifactType == registrytest.ArtifactTypeSignature {
			amd64 = r.Subject
		}
	}

	for _, in := range backupInputs(t, refs...) {
		t.Run(in.name, func(t *testing.T) {
			r := in.run(t, "repo ls")
			r.wantCode(t, exitOK)
			wantLines(t, "repo ls", r.stdout, host+"/demo/backend", host+"/demo/frontend", host+"/library/base")

			// A namespace, with or without the registry, with or without
			// a trailing slash: the names below it, relative to it.
			for _, prefix := range []string{host + "/demo", "demo/", "demo"} {
				r = in.run(t, "repo ls", prefix)
				r.wantCode(t, exitOK)
				wantLines(t, "repo ls "+prefix, r.stdout, "backend", "frontend")
			}
			r = in.run(t, "repo ls", host)
			r.wantCode(t, exitOK)
			wantLines(t, "repo ls "+host, r.stdout, "demo/backend", "demo/frontend", "library/base")

			r = in.run(t, "repo tags", host+"/demo/backend")
			r.wantCode(t, exitOK)
			wantLines(t, "repo tags", r.stdout, "v1", "v2")
			r = in.run(t, "repo tags", "library/base")
			r.wantCode(t, exitOK)
			wantLines(t, "repo tags", r.stdout, "1.0", "1.1")

			// The manifest's bytes exactly as the registry serves them.
			r = in.run(t, "manifest fetch", host+"/demo/backend:v2")
			r.wantCode(t, exitOK)
			if got := digest.FromString(r.stdout); got != backendV2.Digest {
				t.Errorf("manifest fetch: the bytes have digest %s, want %s", got, backendV2.Digest)
			}
			index := r.stdout

			r = in.run(t, "manifest fetch", "--descriptor", host+"/demo/backend:v2")
			r.wantCode(t, exitOK)
			var desc ocispec.Descriptor
			if err := json.Unmarshal([]byte(r.stdout), &desc); err != nil {
				t.Fatal(err)
			}
			if desc.Digest != backendV2.Digest || desc.Size != backendV2.Size || desc.MediaType != ocispec.MediaTypeImageIndex || desc.Annotations != nil {
				t.Errorf("--descriptor: %+v, want %+v without annotations", desc, backendV2)
			}

			r = in.run(t, "manifest fetch", "--pretty", "demo/backend:v2")
			r.wantCode(t, exitOK)
			if !json.Valid([]byte(r.stdout)) || !strings.Contains(r.stdout, "\n  \"manifests\": [") {
				t.Errorf("--pretty is not indented JSON:\n%s", r.stdout)
			}

			// By digest: a platform manifest of the index.
			child := childOf(t, []byte(index), "amd64")
			if child.Digest != amd64.Digest {
				t.Fatalf("the signed manifest %s is not the amd64 child %s", amd64.Digest, child.Digest)
			}
			r = in.run(t, "manifest fetch", host+"/demo/backend@"+child.Digest.String())
			r.wantCode(t, exitOK)
			if got := digest.FromString(r.stdout); got != child.Digest {
				t.Errorf("manifest fetch by digest: %s, want %s", got, child.Digest)
			}

			// discover: the SBOM of the index; the signature of the amd64
			// manifest and the timestamp of the signature, nested.
			r = in.run(t, "discover", host+"/demo/backend:v2")
			r.wantCode(t, exitOK)
			sbom := referrerOf(t, sample, registrytest.SampleBackend, backendV2.Digest)
			wantLines(t, "discover", r.stdout,
				host+"/demo/backend@"+backendV2.Digest.String(),
				"└── "+registrytest.ArtifactTypeSBOM,
				"    └── "+sbom.Digest.String())

			sig := referrerOf(t, sample, registrytest.SampleBackend, child.Digest)
			ts := referrerOf(t, sample, registrytest.SampleBackend, sig.Digest)
			r = in.run(t, "discover", "demo/backend@"+child.Digest.String())
			r.wantCode(t, exitOK)
			wantLines(t, "discover of the amd64 manifest", r.stdout,
				host+"/demo/backend@"+child.Digest.String(),
				"└── "+registrytest.ArtifactTypeSignature,
				"    └── "+sig.Digest.String(),
				"        └── "+registrytest.ArtifactTypeTimestamp,
				"            └── "+ts.Digest.String())

			r = in.run(t, "discover", "--format", "json", "demo/backend@"+child.Digest.String())
			r.wantCode(t, exitOK)
			var tree inspect.Tree
			if err := json.Unmarshal([]byte(r.stdout), &tree); err != nil {
				t.Fatal(err)
			}
			if tree.Count() != 2 || tree.Referrers[0].Digest != sig.Digest || tree.Referrers[0].Referrers[0].Digest != ts.Digest ||
				tree.Referrers[0].ArtifactType != registrytest.ArtifactTypeSignature || tree.Reference != host+"/demo/backend@"+child.Digest.String() {
				t.Errorf("discover --format json: %s", r.stdout)
			}
		})
	}
}

// referrerOf is the referrer the sample pushed in repo for subject.
func referrerOf(t *testing.T, sample registrytest.Sample, repo string, subject digest.Digest) ocispec.Descriptor {
	t.Helper()
	for _, r := range sample.Referrers[repo] {
		if r.Subject.Digest == subject {
			return r.Descriptor
		}
	}
	t.Fatalf("no referrer of %s in %s", subject, repo)
	return ocispec.Descriptor{}
}

// A single repository is backed up tag-only, as oras writes it: the
// backup does not name its repository and any name lists its tags.
func TestInspectTagOnly(t *testing.T) {
	s, sample := sampleRegistry(t)
	host := s.Host()
	v2 := sample.Tags[registrytest.SampleBackend]["v2"]
	for _, in := range backupInputs(t, ref(s, registrytest.SampleBackend)) {
		t.Run(in.name, func(t *testing.T) {
			r := in.run(t, "repo ls")
			r.wantCode(t, exitOK)
			if r.stdout != "" {
				t.Errorf("repo ls of a tag-only backup printed %q", r.stdout)
			}
			wantContains(t, "stderr", r.stderr, "does not name its repository", "(v1, v2)",
				"Its referrers record it as "+host+"/demo/backend.", "regvault repo tags --oci-layout-path "+in.path+" <any-name>")

			for _, name := range []string{"anything", host + "/demo/backend", "backend"} {
				r = in.run(t, "repo tags", name)
				r.wantCode(t, exitOK)
				wantLines(t, "repo tags "+name, r.stdout, "v1", "v2")
			}
			r = in.run(t, "manifest fetch", "backend:v2")
			r.wantCode(t, exitOK)
			if digest.FromString(r.stdout) != v2.Digest {
				t.Errorf("manifest fetch backend:v2 gave other bytes")
			}
			r = in.run(t, "discover", "backend:v2")
			r.wantCode(t, exitOK)
			wantLines(t, "discover", r.stdout,
				"backend@"+v2.Digest.String(),
				"└── "+registrytest.ArtifactTypeSBOM,
				"    └── "+referrerOf(t, sample, registrytest.SampleBackend, v2.Digest).Digest.String())
		})
	}
}

func TestInspectErrors(t *testing.T) {
	s, sample := sampleRegistry(t)
	host := s.Host()
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "apps.tar")
	backupTo(t, tarPath, ref(s, registrytest.SampleBackend), ref(s, registrytest.SampleFrontend), ref(s, registrytest.SampleBase))
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(junk, []byte("this is not a backup at all, not even a little bit"), 0o644); err != nil {
		t.Fatal(err)
	}
	layer := sample.BaseLayer.Digest.String()
	missing := digest.FromString("nothing").String()
	repos := []string{"\n  " + host + "/demo/backend", "\n  " + host + "/demo/frontend", "\n  " + host + "/library/base"}

	tests := []struct {
		name string
		code int
		args []string
		want []string
	}{
		{"repository not in the backup", exitFailure, []string{"repo", "tags", "--oci-layout-path", tarPath, host + "/demo/fronted"},
			append([]string{`Error: repository "` + host + `/demo/fronted" is not in the backup ` + tarPath + ". Repositories in it:"}, repos...)},
		{"a reference for a repository", exitFailure, []string{"repo", "tags", "--oci-layout-path", tarPath, "demo/backend:v1"},
			[]string{`"demo/backend:v1" is a reference, not a repository: give the repository alone, ` + host + "/demo/backend"}},
		{"namespace is not a repository", exitFailure, []string{"repo", "tags", "--oci-layout-path", tarPath, "demo"},
			[]string{`"demo" is not a repository in the backup`, "repo ls --oci-layout-path " + tarPath + " demo", "\n  backend", "\n  frontend"}},
		{"tag not in the repository", exitFailure, []string{"manifest", "fetch", "--oci-layout-path", tarPath, "demo/frontend:v3"},
			[]string{`Error: tag "v3" of ` + host + "/demo/frontend is not in the backup " + tarPath + ". Its tags:",
				"\n  v1 (" + sample.Tags[registrytest.SampleFrontend]["v1"].Digest.String() + ")",
				"\n  v2 (" + sample.Tags[registrytest.SampleFrontend]["v2"].Digest.String() + ")"}},
		{"digest not in the repository", exitFailure, []string{"manifest", "fetch", "--oci-layout-path", tarPath, "demo/frontend@" + missing},
			[]string{missing + " is not a manifest of " + host + "/demo/frontend in the backup", "Its tags:", "\n  v1 (sha256:"}},
		{"digest of a layer", exitFailure, []string{"manifest", "fetch", "--oci-layout-path", tarPath, "library/base@" + layer},
			[]string{layer + " in " + host + "/library/base is a blob (" + ocispec.MediaTypeImageLayerGzip + "), not a manifest"}},
		{"discover a missing tag", exitFailure, []string{"discover", "--oci-layout-path", tarPath, "library/base:2.0"},
			[]string{`tag "2.0" of ` + host + "/library/base is not in the backup", "\n  1.0 (", "\n  1.1 ("}},
		{"repo ls under nothing", exitFailure, []string{"repo", "ls", "--oci-layout-path", tarPath, "docker.io/library"},
			append([]string{`no repository of the backup ` + tarPath + ` is under "docker.io/library". Repositories in it:`}, repos...)},
		{"repo ls of a repository", exitFailure, []string{"repo", "ls", "--oci-layout-path", tarPath, "demo/backend"},
			[]string{host + "/demo/backend is a repository, with nothing below it: list its tags with 'regvault repo tags --oci-layout-path " + tarPath + " demo/backend'"}},
		{"not a backup", exitFailure, []string{"repo", "ls", "--oci-layout-path", junk},
			[]string{"not a backup archive", "a directory, a tar file, or a gzip- or zstd-compressed tar"}},
		{"no such backup", exitFailure, []string{"repo", "ls", "--oci-layout-path", filepath.Join(dir, "nope.tar")},
			[]string{"no such file or directory"}},
		{"no layout path", exitUsage, []string{"repo", "tags", "demo/backend"},
			[]string{"--oci-layout-path is required"}},
		{"reference without a tag", exitUsage, []string{"manifest", "fetch", "--oci-layout-path", tarPath, host + "/demo/backend"},
			[]string{"has no tag: expected <repository>:<tag> or <repository>@<digest>"}},
		{"bad digest", exitUsage, []string{"discover", "--oci-layout-path", tarPath, "demo/backend@sha256:abc"},
			[]string{"invalid digest"}},
		{"bad format", exitUsage, []string{"discover", "--oci-layout-path", tarPath, "--format", "table", "demo/backend:v1"},
			[]string{`--format "table": use tree or json`}},
		{"two repositories for tags", exitUsage, []string{"repo", "tags", "--oci-layout-path", tarPath, "a", "b"},
			[]string{"takes one repository, got 2"}},
		{"two prefixes", exitUsage, []string{"repo", "ls", "--oci-layout-path", tarPath, "a", "b"},
			[]string{"takes at most one prefix, got 2"}},
		{"verify without input", exitUsage, []string{"verify"},
			[]string{"--input is required"}},
		{"verify not a backup", exitFailure, []string{"verify", "--input", junk},
			[]string{"not a backup archive"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := regvault(t, "", tc.args...)
			r.wantCode(t, tc.code)
			if r.stdout != "" {
				t.Errorf("stdout should be empty, got:\n%s", r.stdout)
			}
			if !strings.HasPrefix(r.stderr, "Error: ") {
				t.Errorf("stderr does not start with \"Error: \":\n%s", r.stderr)
			}
			wantContains(t, "stderr", r.stderr, tc.want...)
		})
	}
}

func TestInspectHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd  []string
		want []string
	}{
		{[]string{"repo", "ls"}, []string{"Examples:", "regvault repo ls --oci-layout-path base-images.tar docker.io/library", "--oci-layout-path string", "tag-only"}},
		{[]string{"repo", "tags"}, []string{"Examples:", "regvault repo tags --oci-layout-path base-images.tar docker.io/library/busybox", "any name lists them"}},
		{[]string{"manifest", "fetch"}, []string{"Examples:", "regvault manifest fetch --oci-layout-path base-images.tar docker.io/library/busybox:1.36.1", "--descriptor", "--pretty", "@sha256:"}},
		{[]string{"discover"}, []string{"Examples:", "regvault discover --oci-layout-path base-images.tar docker.io/library/busybox:1.36.1", "--format string", "tree or json"}},
		{[]string{"verify"}, []string{"Examples:", "regvault verify --input base-images.tar", "--input -", "-i, --input", "--format", "Exit codes: 0"}},
		{[]string{"repo"}, []string{"ls", "tags"}},
	} {
		r := regvault(t, "", append(tc.cmd, "--help")...)
		r.wantCode(t, exitOK)
		wantContains(t, strings.Join(tc.cmd, " ")+" --help", r.stdout, tc.want...)
	}
	r := regvault(t, "", "--help")
	wantContains(t, "--help", r.stdout, "repo", "manifest", "discover", "verify")
}
