//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/registrytest"
)

// copyLayout copies the files of a layout directory to a new one.
func copyLayout(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A layout directory whose index.json, oci-layout or a blob is a named
// pipe (or any file that is not a regular file) is refused with a message
// that names it, by every command that reads or adds to a directory:
// none waits for a writer that never comes.
func TestLayoutFileIsNamedPipe(t *testing.T) {
	s, sample := sampleRegistry(t)
	front := ref(s, registrytest.SampleFrontend)
	good := filepath.Join(t.TempDir(), "layout")
	regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", good, front).wantCode(t, exitOK)
	layer := sample.Content[registrytest.SampleFrontend][0].Digest
	dst := registrytest.NewInProcess(t)

	commands := map[string]func(dir string) []string{
		"backup into": func(dir string) []string {
			return []string{"backup", "--plain-http", "--no-tty", "--full-reference", "-o", dir, front}
		},
		"restore": func(dir string) []string {
			return []string{"restore", "--plain-http", "--no-tty", "-i", dir, dst.Host()}
		},
		"verify": func(dir string) []string { return []string{"verify", "--input", dir} },
		"repo tags": func(dir string) []string {
			return []string{"repo", "tags", "--oci-layout-path", dir, front}
		},
	}
	for _, file := range []string{"index.json", "oci-layout", archive.BlobPath(layer)} {
		for name, args := range commands {
			if name == "repo tags" && strings.HasPrefix(file, "blobs/") {
				continue // it reads no blob
			}
			label := file
			if strings.HasPrefix(file, "blobs/") {
				label = "blob"
			}
			t.Run(label+"/"+name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "layout")
				copyLayout(t, good, dir)
				fifo := filepath.Join(dir, filepath.FromSlash(file))
				if err := os.Remove(fifo); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mkfifo(fifo, 0o644); err != nil {
					t.Fatal(err)
				}
				done := make(chan result, 1)
				go func() { done <- regvault(t, "", args(dir)...) }()
				var r result
				select {
				case r = <-done:
				case <-time.After(30 * time.Second):
					// Let the blocked open go on, so that the test ends.
					if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
						w.Close()
					}
					<-done
					t.Fatalf("regvault %s blocked on the named pipe %s", strings.Join(args(dir), " "), file)
				}
				if r.code == exitOK {
					t.Fatalf("exit code 0 with %s a named pipe", file)
				}
				wantContains(t, "output", r.stdout+r.stderr, file+" is a named pipe, not a regular file")
			})
		}
	}
}
