package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
)

// hangBound is far beyond what these runs take: reaching it means the
// run hangs.
const hangBound = 3 * time.Minute

// startGroup starts cmd in a process group of its own, so that
// waitBounded can end it with every process it started.
func startGroup(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 10 * time.Second
	require.NoError(t, cmd.Start())
}

// waitBounded waits for cmd (started by startGroup), killing its process
// group (and failing the test) if it has not ended within hangBound.
func waitBounded(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(hangBound):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("%s did not end within %s: it hangs", strings.Join(cmd.Args, " "), hangBound)
		return nil
	}
}

// exitCode is the exit code of a run that ended, or -1 with the signal
// that ended it.
func exitCode(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		return 0, ""
	}
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, ws.Signal().String()
	}
	return ee.ExitCode(), ""
}

// A backup to standard output whose reader goes away ends at once, with
// exit code 1 and a message, rather than dying silently of SIGPIPE.
func TestBackupToBrokenPipe(t *testing.T) {
	bin := build(t)
	srv := registrytest.NewInProcess(t)
	// More than the pipe and the stream's buffer hold.
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{LayerSize: 512 << 10})
	args := []string{"backup", "--plain-http", "--no-tty", "--output", "-"}
	for _, r := range sample.Repositories {
		args = append(args, srv.Host()+"/"+r)
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	startGroup(t, cmd)
	_, err = io.ReadFull(stdout, make([]byte, 4096)) // the archive began
	require.NoError(t, err)
	require.NoError(t, stdout.Close()) // and its reader goes away
	err = waitBounded(t, cmd)
	code, sig := exitCode(t, err)
	t.Logf("exit %d %s\n%s", code, sig, stderr.String())
	require.Equal(t, 1, code, "exit code (signal %q)", sig)
	require.Contains(t, stderr.String(), "Error: ")
	require.Contains(t, stderr.String(), "broken pipe")
	require.NotContains(t, stderr.String(), "Exported to")
}

// A backup onto a full disk ends at once in every output form, with exit
// code 1, the error, and nothing left behind. The disk is a small tmpfs
// mounted in a mount namespace of its own, so the test needs to be
// allowed to make one (root, or user namespaces).
func TestBackupOntoFullDisk(t *testing.T) {
	if out, err := exec.Command("unshare", "-m", "--map-root-user", "true").CombinedOutput(); err != nil {
		if out2, err2 := exec.Command("unshare", "-m", "true").CombinedOutput(); err2 != nil {
			t.Skipf("cannot make a mount namespace for a small tmpfs: %v %s; %v %s", err, out, err2, out2)
		}
	}
	bin := build(t)
	srv := registrytest.NewInProcess(t)
	sample := registrytest.Seed(t, srv, registrytest.SampleOptions{LayerSize: 512 << 10})
	var refs []string
	for _, r := range sample.Repositories {
		refs = append(refs, srv.Host()+"/"+r)
	}
	for _, name := range []string{"b.tar.zst", "b.tar.gz", "b.tar", "layout"} {
		t.Run(name, func(t *testing.T) {
			disk := t.TempDir()
			// Mount a 1 MiB tmpfs on disk, back up onto it, list what is
			// left there, and exit with the backup's exit code.
			script := `mount -t tmpfs -o size=1m tmpfs "$1" || exit 99
bin=$2; out=$3; shift 3
"$bin" "$@" --output "$out"; rc=$?
echo "left:"; ls -A "$(dirname "$out")"
exit $rc`
			shArgs := append([]string{"-m", "sh", "-c", script, "sh", disk, bin, filepath.Join(disk, name),
				// Few blobs fetched ahead: many still to come when the
				// disk fills.
				"backup", "--plain-http", "--no-tty", "--concurrency", "2"}, refs...)
			cmd := exec.Command("unshare", shArgs...)
			if os.Geteuid() != 0 {
				cmd.Args = append([]string{"unshare", "--map-root-user"}, shArgs...)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			startGroup(t, cmd)
			err := waitBounded(t, cmd)
			code, sig := exitCode(t, err)
			t.Logf("exit %d %s\n[stdout]\n%s[stderr]\n%s", code, sig, stdout.String(), stderr.String())
			if code == 99 {
				t.Skipf("cannot mount a tmpfs: %s", stderr.String())
			}
			require.Equal(t, 1, code, "exit code (signal %q)", sig)
			require.Contains(t, stderr.String(), "no space left on device")
			left := stdout.String()[strings.LastIndex(stdout.String(), "left:\n")+len("left:\n"):]
			require.Empty(t, strings.TrimSpace(left), "files left on the full disk")
			require.NotContains(t, stdout.String(), "Exported to")
		})
	}
}
