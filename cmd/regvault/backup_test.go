package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"oras.land/oras-go/v2/content/oci"

	"github.com/regvault/regvault/internal/registrytest"
)

// sampleRegistry is an in-process registry with the sample of
// registrytest: library/base (1.0, 1.1), demo/backend (v1, v2),
// demo/frontend (v1, v2), every tag with an SBOM referrer.
func sampleRegistry(t *testing.T, opts ...registrytest.Option) (*registrytest.Server, registrytest.Sample) {
	t.Helper()
	s := registrytest.NewInProcess(t, opts...)
	return s, registrytest.Seed(t, s, registrytest.SampleOptions{})
}

func ref(s *registrytest.Server, repo string) string { return s.Host() + "/" + repo }

// layoutTags reads an OCI layout (directory or tar) with oras-go and
// returns its tags, sorted.
func layoutTags(t *testing.T, path string) []string {
	t.Helper()
	ctx := context.Background()
	var tags []string
	collect := func(page []string) error { tags = append(tags, page...); return nil }
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.IsDir() {
		st, err := oci.NewWithContext(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		err = st.Tags(ctx, "", collect)
		if err != nil {
			t.Fatal(err)
		}
	} else {
		st, err := oci.NewFromTar(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Tags(ctx, "", collect); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(tags)
	return tags
}

func TestBackupText(t *testing.T) {
	s, sample := sampleRegistry(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "apps.tar")
	r := regvault(t, "", "backup", "--plain-http", "--include-referrers", "--output", out,
		ref(s, "demo/frontend"), ref(s, "demo/backend")+":v1,v2", ref(s, "library/base")+":1.1")
	r.wantCode(t, exitOK)
	host := s.Host()
	wantContains(t, "stdout", r.stdout,
		"Found 3 repository(ies) with 3 tag(s) and all tags of 1:\n",
		"  - "+host+"/demo/frontend: all tags\n",
		"  - "+host+"/demo/backend: v1, v2\n",
		"  - "+host+"/library/base: 1.1\n",
		"Backing up 3 repositories...\n",
		"/3] "+host+"/demo/frontend\n",
		"/3] "+host+"/demo/backend\n",
		"Repository complete: ",
		"Exported to "+out+" (",
		"Successfully backed up 5 tag(s) from 3 repository(ies) in ")
	for i := 1; i <= 3; i++ {
		wantContains(t, "stdout", r.stdout, "\n["+string(rune('0'+i))+"/3] ")
	}
	// "  ✓ v1 (5/5 artifacts, 40.2 KB, 1 referrer(s))"
	tagLine := regexp.MustCompile(`(?m)^  ✓ (v1|v2|1\.1) \((\d+)/(\d+) artifacts, [0-9.]+ (B|KB|MB), \d+ referrer\(s\)\)$`)
	if n := len(tagLine.FindAllString(r.stdout, -1)); n != 5 {
		t.Errorf("want 5 tag lines like '  ✓ v1 (5/5 artifacts, 40.2 KB, 1 referrer(s))', got %d", n)
	}
	if !regexp.MustCompile(`(?m)^  Repository complete: \d+ artifacts, [0-9.]+ (B|KB|MB)$`).MatchString(r.stdout) {
		t.Errorf("no 'Repository complete: N artifacts, SIZE' line")
	}
	if r.stderr != "" {
		t.Errorf("stderr should be empty, got:\n%s", r.stderr)
	}
	// Several repositories: full references in index.json.
	want := []string{
		host + "/demo/backend:v1", host + "/demo/backend:v2",
		host + "/demo/frontend:v1", host + "/demo/frontend:v2",
		host + "/library/base:1.1",
	}
	// And the referrers' tag-schema indexes, which oras lists as tags.
	// (library/base: only 1.1 and its SBOM are backed up.)
	want = append(want, sampleTagSchemaNames(sample, host, "demo/backend", "demo/frontend")...)
	want = append(want, host+"/library/base:"+tagSchemaName(sample.Tags["library/base"]["1.1"]))
	slices.Sort(want)
	if got := layoutTags(t, out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tags in the archive:\n got %v\nwant %v", got, want)
	}
}

func TestBackupSingleRepositoryDirectory(t *testing.T) {
	s, _ := sampleRegistry(t)
	out := filepath.Join(t.TempDir(), "layout")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "-o", out, ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout,
		"Found 1 repository(ies), all tags:\n",
		"[1/1] "+s.Host()+"/demo/frontend\n",
		"  ✓ v1 (", "  ✓ v2 (",
		"Exported to "+out+" (",
		"Successfully backed up 2 tag(s) from 1 repository(ies) in ")
	// A single repository: the tag alone, as oras writes it.
	if got := layoutTags(t, out); strings.Join(got, " ") != "v1 v2" {
		t.Errorf("tags in the layout: %v, want [v1 v2]", got)
	}

	// --full-reference names the tag registry/repo:tag.
	out2 := filepath.Join(t.TempDir(), "full.tar.gz")
	r = regvault(t, "", "backup", "--plain-http", "--full-reference", "-o", out2, ref(s, "demo/frontend")+":v2")
	r.wantCode(t, exitOK)
	if _, err := os.Stat(out2); err != nil {
		t.Fatalf("no archive: %v", err)
	}
}

// jsonOutput is what --format json prints.
type jsonOutput struct {
	Registry     string `json:"registry"`
	Output       string `json:"output"`
	DryRun       bool   `json:"dryRun"`
	Repositories []struct {
		Name      string `json:"name"`
		Reference string `json:"reference"`
		Status    string `json:"status"`
		Error     string `json:"error"`
		Tags      []struct {
			Tag       string `json:"tag"`
			Digest    string `json:"digest"`
			MediaType string `json:"mediaType"`
			Size      int64  `json:"size"`
			Referrers int    `json:"referrers"`
		} `json:"tags"`
	} `json:"repositories"`
	UniqueBlobs     int      `json:"uniqueBlobs"`
	UniqueBytes     int64    `json:"uniqueBytes"`
	BytesMoved      int64    `json:"bytesMoved"`
	DurationSeconds *float64 `json:"durationSeconds"`
	ExitCode        *int     `json:"exitCode"`
}

func parseJSON(t *testing.T, s string) jsonOutput {
	t.Helper()
	var out jsonOutput
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, s)
	}
	// exactly one value
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", s)
	}
	return out
}

func TestBackupJSON(t *testing.T) {
	s, sample := sampleRegistry(t)
	out := filepath.Join(t.TempDir(), "all.tar.zst")
	r := regvault(t, "", "backup", "--plain-http", "--include-referrers", "--format", "json", "-o", out,
		ref(s, "library/base"), ref(s, "demo/backend"), ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	if r.stderr != "" {
		t.Errorf("stderr should be empty, got:\n%s", r.stderr)
	}
	js := parseJSON(t, r.stdout)
	if js.Registry != s.Host() || js.Output != out || js.DryRun {
		t.Errorf("registry %q output %q dryRun %v", js.Registry, js.Output, js.DryRun)
	}
	if js.ExitCode == nil || *js.ExitCode != 0 || js.DurationSeconds == nil || *js.DurationSeconds <= 0 {
		t.Errorf("exitCode %v durationSeconds %v", js.ExitCode, js.DurationSeconds)
	}
	if len(js.Repositories) != 3 {
		t.Fatalf("%d repositories, want 3", len(js.Repositories))
	}
	tags := 0
	for _, repo := range js.Repositories {
		if repo.Status != "ok" || repo.Error != "" {
			t.Errorf("%s: status %q error %q", repo.Name, repo.Status, repo.Error)
		}
		if repo.Reference != s.Host()+"/"+repo.Name {
			t.Errorf("reference %q for %q", repo.Reference, repo.Name)
		}
		want := sample.Tags[repo.Name]
		if len(repo.Tags) != len(want) {
			t.Errorf("%s: %d tags, want %d", repo.Name, len(repo.Tags), len(want))
		}
		for _, tag := range repo.Tags {
			tags++
			d, ok := want[tag.Tag]
			if !ok {
				t.Errorf("%s: unexpected tag %q", repo.Name, tag.Tag)
				continue
			}
			if tag.Digest != d.Digest.String() || tag.MediaType != d.MediaType || tag.Size != d.Size {
				t.Errorf("%s:%s: digest %s %s %d, want %s %s %d", repo.Name, tag.Tag,
					tag.Digest, tag.MediaType, tag.Size, d.Digest, d.MediaType, d.Size)
			}
			if tag.Referrers < 1 {
				t.Errorf("%s:%s: %d referrers, want at least the SBOM", repo.Name, tag.Tag, tag.Referrers)
			}
		}
	}
	if tags != 6 {
		t.Errorf("%d tags, want 6", tags)
	}
	if js.UniqueBlobs != len(sample.Unique()) || js.UniqueBytes != sample.UniqueBytes() {
		t.Errorf("uniqueBlobs %d uniqueBytes %d, want %d and %d (each blob once)",
			js.UniqueBlobs, js.UniqueBytes, len(sample.Unique()), sample.UniqueBytes())
	}
	// The sink writes the referrers' tag-schema indexes besides them.
	_, schemaBytes := tagSchemaBlobs(t, out)
	if js.BytesMoved != js.UniqueBytes+schemaBytes {
		t.Errorf("bytesMoved %d, want %d", js.BytesMoved, js.UniqueBytes+schemaBytes)
	}
	wantNotContains(t, "stdout", r.stdout, "Found ", "[1/3]", "Successfully")
}

func TestBackupPartial(t *testing.T) {
	s, _ := sampleRegistry(t)
	out := filepath.Join(t.TempDir(), "partial.tar")
	r := regvault(t, "", "backup", "--plain-http", "-o", out,
		ref(s, "demo/frontend")+":v1", ref(s, "missing/repo"), ref(s, "library/base")+":1.0")
	r.wantCode(t, exitPartial)
	host := s.Host()
	wantContains(t, "stdout", r.stdout,
		"/3] "+host+"/missing/repo\n  ✗ failed: ",
		"Exported to "+out,
		"Backed up 2 tag(s) from 2 repository(ies) in ")
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to backup "+host+"/missing/repo\n  Reason: ",
		"Partial backup created: 2 of 3 repositories backed up successfully\n",
		"  ✓ "+host+"/demo/frontend (1 tag)\n",
		"  ✓ "+host+"/library/base (1 tag)\n",
		"  ✗ "+host+"/missing/repo (",
		"  ✗ "+host+"/missing/repo (repository not found)",
		"Recommendations:\n  1. Check that the repository exists in "+host)
	want := []string{host + "/demo/frontend:v1", host + "/library/base:1.0"}
	if got := layoutTags(t, out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tags in the partial backup: %v, want %v", got, want)
	}

	// JSON: the failed repository with its error, exit code 3.
	out2 := filepath.Join(t.TempDir(), "partial2.tar")
	r = regvault(t, "", "backup", "--plain-http", "--format", "json", "-o", out2,
		ref(s, "demo/frontend")+":v1", ref(s, "missing/repo"))
	r.wantCode(t, exitPartial)
	js := parseJSON(t, r.stdout)
	if js.ExitCode == nil || *js.ExitCode != exitPartial {
		t.Errorf("exitCode %v, want 3", js.ExitCode)
	}
	statuses := map[string]string{}
	for _, repo := range js.Repositories {
		statuses[repo.Name] = repo.Status
		if repo.Name == "missing/repo" && repo.Error == "" {
			t.Errorf("missing/repo has no error")
		}
	}
	if statuses["demo/frontend"] != "ok" || statuses["missing/repo"] != "failed" {
		t.Errorf("statuses %v", statuses)
	}
}

func TestBackupFailFast(t *testing.T) {
	s, _ := sampleRegistry(t)
	dir := t.TempDir()
	r := regvault(t, "", "backup", "--plain-http", "--fail-fast", "-o", filepath.Join(dir, "ff.tar"),
		ref(s, "demo/frontend"), ref(s, "missing/repo"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to backup "+s.Host()+"/missing/repo",
		"No backup was written: --fail-fast stops at the first failure")
	wantEmptyDir(t, dir)
}

func TestBackupAllFail(t *testing.T) {
	s, _ := sampleRegistry(t)
	dir := t.TempDir()
	r := regvault(t, "", "backup", "--plain-http", "-o", filepath.Join(dir, "none.tar"),
		ref(s, "missing/one"), ref(s, "demo/frontend")+":nope")
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to backup "+s.Host()+"/missing/one",
		"Error: Failed to backup "+s.Host()+"/demo/frontend",
		"No backup was written",
		"  ✗ "+s.Host()+"/missing/one (repository not found)",
		"  ✗ "+s.Host()+"/demo/frontend (tag not found)",
		"Check that the repository exists in", "Check the tag names")
	wantEmptyDir(t, dir)
}

func TestBackupDryRun(t *testing.T) {
	s, sample := sampleRegistry(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "never.tar")
	r := regvault(t, "", "backup", "--plain-http", "--dry-run", "--include-referrers", "-o", out,
		ref(s, "demo/backend")+":v2", ref(s, "library/base"))
	r.wantCode(t, exitOK)
	v2 := sample.Tags["demo/backend"]["v2"]
	wantContains(t, "stdout", r.stdout,
		"Found 2 repository(ies) with 1 tag(s) and all tags of 1:",
		"[DRY RUN] The following would be backed up to "+out+":",
		"Registry: "+s.Host()+"\n",
		"  Repository: demo/backend\n",
		"    ✓ v2 ("+shortDigest(v2.Digest)+") + 3 referrer(s)",
		"  Repository: library/base\n",
		"    ✓ 1.0 (", "    ✓ 1.1 (",
		"[DRY RUN] Would back up 3 tag(s) from 2 repository(ies)",
		"[DRY RUN] Total artifacts: ",
		"[DRY RUN] Estimated size: ",
		"No changes were made. Remove --dry-run to perform the backup.")
	wantNotContains(t, "stdout", r.stdout, "Backing up", "Exported to")
	wantEmptyDir(t, dir)

	// Without --output, too.
	r = regvault(t, "", "backup", "--plain-http", "--dry-run", ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "[DRY RUN] The following would be backed up:", "    ✓ v1 (sha256:")

	// JSON
	r = regvault(t, "", "backup", "--plain-http", "--dry-run", "--format", "json", ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	js := parseJSON(t, r.stdout)
	if !js.DryRun || len(js.Repositories) != 1 || len(js.Repositories[0].Tags) != 2 || js.BytesMoved != 0 {
		t.Errorf("dry-run JSON: %+v", js)
	}
}

func TestBackupToStdout(t *testing.T) {
	s, _ := sampleRegistry(t)
	r := regvault(t, "", "backup", "--plain-http", "-o", "-", ref(s, "demo/frontend")+":v1")
	r.wantCode(t, exitOK)
	// stdout is the tar, and only the tar.
	tr := tar.NewReader(strings.NewReader(r.stdout))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stdout is not a tar: %v", err)
		}
		names = append(names, h.Name)
	}
	if len(names) < 3 || names[0] != "oci-layout" || names[1] != "index.json" {
		t.Errorf("tar members %v, want oci-layout, index.json, blobs...", names)
	}
	// The report went to stderr.
	wantContains(t, "stderr", r.stderr, "Found 1 repository(ies) with 1 tag(s):", "Exported to standard output (",
		"Successfully backed up 1 tag(s) from 1 repository(ies)")

	// JSON goes to stderr too.
	r = regvault(t, "", "backup", "--plain-http", "--format", "json", "-o", "-", ref(s, "demo/frontend")+":v1")
	r.wantCode(t, exitOK)
	js := parseJSON(t, r.stderr)
	if js.Output != "-" || len(js.Repositories) != 1 {
		t.Errorf("JSON on stderr: %+v", js)
	}
	if !bytes.HasPrefix([]byte(r.stdout), []byte("oci-layout")) {
		t.Errorf("stdout does not start with the tar's oci-layout member")
	}
}

func TestWrongPassword(t *testing.T) {
	const password = "correct-horse-battery"
	const wrong = "wrong-password-d2f9c1"
	s, _ := sampleRegistry(t, registrytest.WithBasicAuth(map[string]string{"alice": password}))
	dir := t.TempDir()

	// --password-stdin with the wrong password
	r := regvault(t, wrong+"\n", "backup", "--plain-http", "-u", "alice", "--password-stdin",
		"-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to backup "+s.Host()+"/demo/frontend",
		"authentication required",
		"Check credentials for "+s.Host(),
		"--password-stdin")
	wantNotContains(t, "output", r.stdout+r.stderr, wrong, password)
	wantEmptyDir(t, dir)

	// -p: a warning, and the password still appears nowhere
	r = regvault(t, "", "backup", "--plain-http", "-u", "alice", "-p", wrong, "--format", "json",
		"-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "WARNING! Using --password via the command line is insecure", "Use --password-stdin")
	wantNotContains(t, "output", r.stdout+r.stderr, wrong, password)
	js := parseJSON(t, r.stdout)
	if len(js.Repositories) != 1 || js.Repositories[0].Status != "failed" || js.Repositories[0].Error == "" {
		t.Errorf("JSON: %+v", js)
	}
	wantEmptyDir(t, dir)

	// the right password
	r = regvault(t, password, "backup", "--plain-http", "-u", "alice", "--password-stdin",
		"-o", filepath.Join(dir, "ok.tar"), ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	wantNotContains(t, "output", r.stdout+r.stderr, password)
}

func TestRecommendations(t *testing.T) {
	s, _ := sampleRegistry(t)
	dir := t.TempDir()

	// A plain-HTTP registry spoken to over HTTPS.
	r := regvault(t, "", "backup", "-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "add --plain-http")

	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r = regvault(t, "", "backup", "--plain-http", "-o", filepath.Join(dir, "x.tar"), addr+"/demo/frontend")
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "registry unreachable", "Check the registry address "+addr)

	// A TLS registry whose CA is not trusted, then trusted.
	tlsReg := registrytest.NewInProcess(t, registrytest.WithTLS())
	registrytest.Seed(t, tlsReg, registrytest.SampleOptions{})
	r = regvault(t, "", "backup", "-o", filepath.Join(dir, "x.tar"), ref(tlsReg, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "--ca-file", "--insecure")
	wantEmptyDir(t, dir)
	r = regvault(t, "", "backup", "--ca-file", tlsReg.CAFile(), "-o", filepath.Join(dir, "ca.tar"), ref(tlsReg, "demo/frontend"))
	r.wantCode(t, exitOK)
	r = regvault(t, "", "backup", "--insecure", "-o", filepath.Join(dir, "insecure.tar"), ref(tlsReg, "demo/frontend"))
	r.wantCode(t, exitOK)
}

func TestDebug(t *testing.T) {
	s, _ := sampleRegistry(t, registrytest.WithBasicAuth(map[string]string{"bob": "debug-secret-77"}))
	r := regvault(t, "debug-secret-77", "-d", "backup", "--plain-http", "-u", "bob", "--password-stdin",
		"--dry-run", ref(s, "demo/frontend")+":v1")
	r.wantCode(t, exitOK)
	wantContains(t, "stderr", r.stderr, "debug: GET http://"+s.Host()+"/v2/demo/frontend/manifests/v1")
	wantNotContains(t, "output", r.stdout+r.stderr, "debug-secret-77", "Authorization")
}

func TestBackupBadOutput(t *testing.T) {
	s, _ := sampleRegistry(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := regvault(t, "", "backup", "--plain-http", "-o", file, ref(s, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "Error: ", file)
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("%s was changed", file)
	}
	r = regvault(t, "", "backup", "--plain-http", "-o", filepath.Join(dir, "no", "such", "dir", "x.tar"), ref(s, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "Error: ")
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d entries in %s, want only notes.txt", len(entries), dir)
	}
}

// A backup to stdout ignores SIGPIPE while it writes (a reader that goes
// away is a reported failure), and only then: the process's handling of
// the signal is restored when the command ends.
func TestBackupToStdoutRestoresSIGPIPE(t *testing.T) {
	s, _ := sampleRegistry(t)
	regvault(t, "", "backup", "--plain-http", "-o", "-", ref(s, "demo/frontend")+":v1").wantCode(t, exitOK)
	if signal.Ignored(syscall.SIGPIPE) {
		t.Fatal("SIGPIPE is still ignored after the backup to stdout ended")
	}
}
