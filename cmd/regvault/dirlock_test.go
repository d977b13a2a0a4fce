//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A backup into a layout directory that another run is adding to stops
// before writing anything, with a message that says so; once the other
// run is gone, the backup goes ahead.
func TestBackupIntoLockedDirectory(t *testing.T) {
	s, _ := sampleRegistry(t)
	out := filepath.Join(t.TempDir(), "layout")
	r := regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", out, ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	index, err := os.ReadFile(filepath.Join(out, "index.json"))
	if err != nil {
		t.Fatal(err)
	}

	// Another run holds the directory (as regvault does: flock on it).
	other, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(other.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	r = regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", out, ref(s, "demo/backend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "another regvault run is adding to this directory")
	after, err := os.ReadFile(filepath.Join(out, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(index) {
		t.Error("index.json changed under the other run's lock")
	}

	other.Close()
	r = regvault(t, "", "backup", "--plain-http", "--no-tty", "--full-reference", "-o", out, ref(s, "demo/backend"))
	r.wantCode(t, exitOK)
	if got := layoutTags(t, out); len(got) != 4 {
		t.Errorf("tags after adding demo/backend: %v", got)
	}
}
