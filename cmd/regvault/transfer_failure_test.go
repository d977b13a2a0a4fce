package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/internal/registrytest"
)

// ownBlob is a blob of repo of the media type that no other repository
// of the sample holds.
func ownBlob(t *testing.T, sample registrytest.Sample, repo, mediaType string) ocispec.Descriptor {
	t.Helper()
	elsewhere := map[string]bool{}
	for _, other := range sample.Repositories {
		if other == repo {
			continue
		}
		for _, d := range sample.Content[other] {
			elsewhere[d.Digest.String()] = true
		}
	}
	for _, d := range sample.Content[repo] {
		if d.MediaType == mediaType && !elsewhere[d.Digest.String()] {
			return d
		}
	}
	t.Fatalf("%s has no %s of its own", repo, mediaType)
	return ocispec.Descriptor{}
}

// deleteBlob deletes desc from repo as `DELETE /v2/<repo>/blobs/<digest>`
// does: a GET of it there answers 404 from now on.
func deleteBlob(t *testing.T, s *registrytest.Server, repo string, desc ocispec.Descriptor) {
	t.Helper()
	if err := registrytest.Repo(t, s, repo).Blobs().Delete(context.Background(), desc); err != nil {
		t.Fatalf("deleting %s from %s: %v", desc.Digest, repo, err)
	}
}

// tree maps every file under root (slash-separated relative path) to its
// content.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantSameBackup fails unless got (a file or a directory) holds exactly
// the bytes of want.
func wantSameBackup(t *testing.T, got, want string) {
	t.Helper()
	fi, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() {
		a, errA := os.ReadFile(got)
		b, errB := os.ReadFile(want)
		if errA != nil || errB != nil {
			t.Fatalf("reading the backups: %v, %v", errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s (%d bytes) differs from %s (%d bytes), the backup of the healthy repositories alone", got, len(a), want, len(b))
		}
		return
	}
	a, b := tree(t, got), tree(t, want)
	for name, content := range b {
		if c, ok := a[name]; !ok {
			t.Errorf("%s lacks %s", got, name)
		} else if c != content {
			t.Errorf("%s: %s differs from that of %s", got, name, want)
		}
	}
	for name := range a {
		if _, ok := b[name]; !ok {
			t.Errorf("%s holds %s, which the backup of the healthy repositories alone does not", got, name)
		}
	}
}

// A layer deleted from one repository (GET answers 404) fails only that
// repository: a directory or a .tar holds the others, exactly as a backup
// of them alone would, passes verify, and the run exits 3; a stream, whose
// index.json is out before the first blob, fails as a whole, says why,
// and leaves nothing.
func TestBackupUnavailableBlobFailsItsRepository(t *testing.T) {
	s, sample := sampleRegistry(t)
	lost := ownBlob(t, sample, registrytest.SampleFrontend, ocispec.MediaTypeImageLayerGzip)
	deleteBlob(t, s, registrytest.SampleFrontend, lost)
	host := s.Host()
	healthy := []string{ref(s, registrytest.SampleBackend), ref(s, registrytest.SampleBase)}
	all := []string{ref(s, registrytest.SampleBackend), ref(s, registrytest.SampleFrontend), ref(s, registrytest.SampleBase)}
	backupArgs := func(out string, extra ...string) []string {
		return append([]string{"backup", "--plain-http", "--no-tty", "--include-referrers", "-o", out}, extra...)
	}
	wantTags := []string{
		host + "/demo/backend:v1", host + "/demo/backend:v2",
		host + "/library/base:1.0", host + "/library/base:1.1",
	}
	reasonLine := "Error: Failed to backup " + host + "/demo/frontend\n  Reason: layer " + lost.Digest.String() + " (in [demo/frontend])"

	for _, name := range []string{"b.tar", "dir"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			clean := filepath.Join(dir, "clean-"+name)
			regvault(t, "", append(backupArgs(clean), healthy...)...).wantCode(t, exitOK)

			out := filepath.Join(dir, name)
			r := regvault(t, "", append(backupArgs(out), all...)...)
			r.wantCode(t, exitPartial)
			wantContains(t, "stdout", r.stdout,
				"] "+host+"/demo/frontend\n  ✗ failed: blob not found in the registry\n",
				"Exported to "+out,
				"Backed up 4 tag(s) from 2 repository(ies) in ")
			wantContains(t, "stderr", r.stderr,
				reasonLine, "fetching "+host+"/demo/frontend@"+lost.Digest.String()+": "+lost.Digest.String()+": not found",
				"Partial backup created: 2 of 3 repositories backed up successfully\n",
				"  ✓ "+host+"/demo/backend (2 tags)\n",
				"  ✓ "+host+"/library/base (2 tags)\n",
				"  ✗ "+host+"/demo/frontend (blob not found in the registry)\n",
				"is missing from "+host)
			wantLayoutTags(t, out, wantTags)
			wantSameBackup(t, out, clean)
			v := regvault(t, "", "verify", "--input", out)
			v.wantCode(t, exitOK)
			wantContains(t, "verify", v.stdout, "The backup can be restored: 2 repositories, 4 tags")
			wantNotContains(t, "verify", v.stdout, "demo/frontend", "needed by no tag")

			// JSON names the repository and why.
			out2 := filepath.Join(dir, "json-"+name)
			r = regvault(t, "", append(backupArgs(out2, "--format", "json"), all...)...)
			r.wantCode(t, exitPartial)
			js := parseJSON(t, r.stdout)
			if js.ExitCode == nil || *js.ExitCode != exitPartial {
				t.Errorf("exitCode %v, want 3", js.ExitCode)
			}
			for _, repo := range js.Repositories {
				switch repo.Name {
				case "demo/frontend":
					if repo.Status != "failed" || !strings.Contains(repo.Error, lost.Digest.String()) || !strings.Contains(repo.Error, "not found") {
						t.Errorf("demo/frontend: status %q error %q", repo.Status, repo.Error)
					}
				default:
					if repo.Status != "ok" || repo.Error != "" {
						t.Errorf("%s: status %q error %q", repo.Name, repo.Status, repo.Error)
					}
				}
			}
			wantSameBackup(t, out2, clean)
		})
	}

	t.Run("help", func(t *testing.T) {
		r := regvault(t, "", "backup", "--help")
		r.wantCode(t, exitOK)
		wantContains(t, "backup --help", strings.Join(strings.Fields(r.stdout), " "),
			"That holds for failures found while blobs are transferred, too",
			"a directory or a .tar leaves out the repositories that need that blob, whole, and is exactly the backup of the others alone",
			"A stream (.tar.gz, .tgz, .tar.zst, .tzst, -) cannot",
			"such a failure stops the whole backup (exit code 1)",
			"Any other error (the disk full, standard output closed) ends the backup at once with exit code 1")
	})

	t.Run("existing directory", func(t *testing.T) {
		dir := t.TempDir()
		// The same two runs without the failure give the reference.
		clean := filepath.Join(dir, "clean")
		regvault(t, "", append(backupArgs(clean, "--full-reference"), ref(s, registrytest.SampleBase))...).wantCode(t, exitOK)
		regvault(t, "", append(backupArgs(clean), healthy...)...).wantCode(t, exitOK)
		out := filepath.Join(dir, "out")
		regvault(t, "", append(backupArgs(out, "--full-reference"), ref(s, registrytest.SampleBase))...).wantCode(t, exitOK)
		r := regvault(t, "", append(backupArgs(out), all...)...)
		r.wantCode(t, exitPartial)
		wantContains(t, "stderr", r.stderr, reasonLine, "Partial backup created: 2 of 3 repositories")
		wantSameBackup(t, out, clean)
		regvault(t, "", "verify", "--input", out).wantCode(t, exitOK)
	})

	for _, name := range []string{"b.tar.gz", "b.tar.zst", "-"} {
		t.Run("stream "+name, func(t *testing.T) {
			dir := t.TempDir()
			out := name
			if name != "-" {
				out = filepath.Join(dir, name)
			}
			r := regvault(t, "", append(backupArgs(out), all...)...)
			r.wantCode(t, exitFailure)
			wantContains(t, "stderr", r.stderr,
				reasonLine,
				"No backup was written: a stream (.tar.gz, .tar.zst or -) writes index.json, which names every repository, before the first blob",
				"back up to a directory or a .tar",
				"  - "+host+"/demo/backend (not written)\n",
				"  ✗ "+host+"/demo/frontend (blob not found in the registry)\n")
			wantEmptyDir(t, dir)
			if name == "-" {
				wantIncompleteTar(t, r.stdout)
			}

			r = regvault(t, "", append(backupArgs(out, "--format", "json"), all...)...)
			r.wantCode(t, exitFailure)
			report := r.stdout
			if name == "-" {
				report = r.stderr[:strings.LastIndex(r.stderr, "}")+1]
			}
			js := parseJSON(t, report)
			for _, repo := range js.Repositories {
				want := "not written: the stream cannot leave out demo/frontend, which failed"
				if repo.Name == "demo/frontend" {
					want = lost.Digest.String()
				}
				if repo.Status != "failed" || !strings.Contains(repo.Error, want) {
					t.Errorf("%s: status %q error %q, want failed and %q", repo.Name, repo.Status, repo.Error, want)
				}
			}
			wantEmptyDir(t, dir)
		})
	}
}

// wantLayoutTags fails unless the tags of the layout at path, the
// referrers' tag-schema entries (sha256-<hex>) left aside, are want, and
// no entry at all names demo/frontend.
func wantLayoutTags(t *testing.T, path string, want []string) {
	t.Helper()
	var got []string
	for _, tag := range layoutTags(t, path) {
		if strings.Contains(tag, "/demo/frontend:") {
			t.Errorf("%s names %s", path, tag)
		}
		if !strings.Contains(tag, ":sha256-") {
			got = append(got, tag)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tags %v, want %v", got, want)
	}
}

// wantIncompleteTar fails if s reads as a whole tar: a stream that was
// stopped must not look like a finished backup.
func wantIncompleteTar(t *testing.T, s string) {
	t.Helper()
	if s == "" {
		return
	}
	tr := tar.NewReader(strings.NewReader(s))
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Errorf("standard output (%d bytes) reads as a complete tar", len(s))
			return
		}
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return
		}
	}
}

// failingWriter is an output that breaks after limit bytes, as a pipe
// whose reader went away does.
type failingWriter struct {
	limit, n int
}

var errOutputGone = errors.New("injected write failure: the reader went away")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		return 0, errOutputGone
	}
	w.n += len(p)
	return len(p), nil
}

// startRun runs the CLI with stdout as standard output in the
// background; waitRun takes its result.
func startRun(stdout io.Writer, args ...string) <-chan result {
	done := make(chan result, 1)
	go func() {
		var errOut bytes.Buffer
		code := run(args, strings.NewReader(""), stdout, &errOut)
		done <- result{code: code, stderr: errOut.String()}
	}()
	return done
}

// waitRun waits for a run of startRun and fails the test if it has not
// ended within bound: a hang, not a timing.
func waitRun(t *testing.T, bound time.Duration, done <-chan result, args ...string) result {
	t.Helper()
	select {
	case r := <-done:
		t.Logf("regvault %s\nexit %d\n[stderr]\n%s", strings.Join(args, " "), r.code, r.stderr)
		return r
	case <-time.After(bound):
		t.Fatalf("regvault %s did not end within %s: it hangs", strings.Join(args, " "), bound)
		return result{}
	}
}

// hangBound is far beyond what any of these runs takes (a few seconds of
// retries): reaching it means the run hangs.
const hangBound = 3 * time.Minute

// After a transfer error (a blob answering 503 for ever, an output that
// fails) the run ends promptly in every output form, with the error and
// the right exit code, and leaves no output file.
func TestBackupEndsAfterTransferError(t *testing.T) {
	var hits atomic.Int64
	var broken atomic.Value
	broken.Store("none")
	s := registrytest.NewInProcess(t, registrytest.WithHandler(alwaysFail(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+broken.Load().(string))
	}, &hits)))
	// Layers large enough to fill the stream's buffers, so that an output
	// that fails does so with blobs still to come.
	sample := registrytest.Seed(t, s, registrytest.SampleOptions{LayerSize: 512 << 10})
	var refs []string
	for _, repo := range sample.Repositories {
		refs = append(refs, ref(s, repo))
	}
	host := s.Host()

	t.Run("a blob answers 503 for ever", func(t *testing.T) {
		// A config: configs come first in an archive, so that many blobs
		// are still to come when it fails.
		lost := ownBlob(t, sample, registrytest.SampleFrontend, ocispec.MediaTypeImageConfig)
		broken.Store(lost.Digest.String())
		t.Cleanup(func() { broken.Store("none") })
		// All at once: each mostly waits out its retries.
		type run struct {
			name, dir string
			args      []string
			done      <-chan result
		}
		var runs []run
		for _, name := range []string{"b.tar.zst", "b.tar.gz", "-", "b.tar", "dir"} {
			for _, conc := range []string{"1", "2", "8"} {
				dir := t.TempDir()
				out := name
				if name != "-" {
					out = filepath.Join(dir, name)
				}
				args := append([]string{"backup", "--plain-http", "--no-tty", "--concurrency", conc, "-o", out}, refs...)
				runs = append(runs, run{name: name + " concurrency " + conc, dir: dir, args: args, done: startRun(io.Discard, args...)})
			}
		}
		for _, rn := range runs {
			t.Run(rn.name, func(t *testing.T) {
				r := waitRun(t, hangBound, rn.done, rn.args...)
				want := "Error: Failed to backup " + host + "/demo/frontend\n  Reason: config " + lost.Digest.String()
				wantContains(t, "stderr", r.stderr, want, "503")
				if strings.HasPrefix(rn.name, "b.tar ") || strings.HasPrefix(rn.name, "dir ") {
					r.wantCode(t, exitPartial)
					return
				}
				r.wantCode(t, exitFailure)
				wantEmptyDir(t, rn.dir)
			})
		}
	})

	t.Run("the output fails", func(t *testing.T) {
		for _, conc := range []string{"1", "2", "8"} {
			t.Run("stdout breaks, concurrency "+conc, func(t *testing.T) {
				args := append([]string{"backup", "--plain-http", "--no-tty", "--concurrency", conc, "-o", "-"}, refs...)
				r := waitRun(t, hangBound, startRun(&failingWriter{limit: 256 << 10}, args...), args...)
				r.wantCode(t, exitFailure)
				wantContains(t, "stderr", r.stderr, "Error: ", errOutputGone.Error())
				wantNotContains(t, "stderr", r.stderr, "Successfully", "Exported to")
			})
			t.Run("stdout is a full disk, concurrency "+conc, func(t *testing.T) {
				full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
				if err != nil {
					t.Skipf("no /dev/full: %v", err)
				}
				defer full.Close()
				args := append([]string{"backup", "--plain-http", "--no-tty", "--concurrency", conc, "-o", "-"}, refs...)
				r := waitRun(t, hangBound, startRun(full, args...), args...)
				r.wantCode(t, exitFailure)
				wantContains(t, "stderr", r.stderr, "Error: ", "no space left on device")
				wantNotContains(t, "stderr", r.stderr, "Successfully", "Exported to")
			})
		}
	})
}

// The same against the distribution registry, where DELETE unlinks the
// layer from the repository: the .tar holds the other repositories and
// passes verify, exit 3.
func TestDistributionDeletedBlobFailsItsRepository(t *testing.T) {
	s := registrytest.NewDistribution(t, registrytest.DistConfig{})
	sample := registrytest.Seed(t, s, registrytest.SampleOptions{})
	lost := ownBlob(t, sample, registrytest.SampleFrontend, ocispec.MediaTypeImageLayerGzip)
	deleteBlob(t, s, registrytest.SampleFrontend, lost)
	host := s.Host()
	out := filepath.Join(t.TempDir(), "b.tar")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--include-referrers", "-o", out,
		ref(s, registrytest.SampleBackend), ref(s, registrytest.SampleFrontend), ref(s, registrytest.SampleBase))
	r.wantCode(t, exitPartial)
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to backup "+host+"/demo/frontend\n  Reason: layer "+lost.Digest.String()+" (in [demo/frontend])",
		"  ✗ "+host+"/demo/frontend (blob not found in the registry)\n",
		"Partial backup created: 2 of 3 repositories backed up successfully\n")
	want := []string{host + "/demo/backend:v1", host + "/demo/backend:v2", host + "/library/base:1.0", host + "/library/base:1.1"}
	wantLayoutTags(t, out, want)
	v := regvault(t, "", "verify", "--input", out)
	v.wantCode(t, exitOK)
	wantNotContains(t, "verify", v.stdout, "demo/frontend", "needed by no tag")
}
