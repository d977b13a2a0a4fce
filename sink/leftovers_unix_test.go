//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sink

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// A backup removes the temporaries killed runs left for its output, and
// only those: not one another running process holds (locked), not a name
// regvault does not make, not another output's.
func TestLeftoversOnlyUnheldOwnAreRemoved(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.tar")
	mk := func(name string, isDir bool) string {
		p := filepath.Join(dir, name)
		if isDir {
			require.NoError(t, os.MkdirAll(filepath.Join(p, "blobs"), 0o755))
		} else {
			require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
		}
		return p
	}
	killedFile := mk(".out.tar.regvault-tmp-111", false)
	killedDir := mk(".out.tar.regvault-tmp-555", true)
	held := mk(".out.tar.regvault-tmp-222", false)
	keep := []string{
		held,
		mk(".out.tar.regvault-tmp-abc", false),   // not a name regvault makes
		mk(".other.tar.regvault-tmp-333", false), // another output's
		mk("out.tar.regvault-tmp-444", false),    // not hidden: not ours
		mk(".out.tar.regvault-tmp-", false),
	}
	// Another run is writing held: it holds the lock.
	f, err := os.Open(held)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, flockNB(f))

	run(t, newLayout(t, out, true), multiRepo(t))
	for _, p := range []string{killedFile, killedDir} {
		_, err := os.Lstat(p)
		require.ErrorIs(t, err, os.ErrNotExist, "%s was left", p)
	}
	for _, p := range keep {
		_, err := os.Lstat(p)
		require.NoError(t, err, "%s was removed", p)
	}
	_, err = os.Stat(out)
	require.NoError(t, err)
}

// A run adding to an existing layout, which holds its lock, removes the
// temporary blob and index files a killed run left inside.
func TestLeftoversInsideExistingLayoutAreRemoved(t *testing.T) {
	out := filepath.Join(t.TempDir(), "layout")
	f := multiRepo(t)
	run(t, newLayout(t, out, true), f)
	stale := []string{
		filepath.Join(out, "blobs", "sha256", ".0123abcd.regvault-tmp-98765"),
		filepath.Join(out, ".index.json.regvault-tmp-4242"),
	}
	for _, p := range stale {
		require.NoError(t, os.WriteFile(p, []byte("half"), 0o644))
	}
	other := filepath.Join(out, "blobs", "sha256", ".not-ours")
	require.NoError(t, os.WriteFile(other, nil, 0o644))
	l := newLayout(t, out, true)
	_, _, err := l.Prepare(context.Background(), f.g)
	require.NoError(t, err)
	require.NoError(t, l.Commit(context.Background()))
	for _, p := range stale {
		_, err := os.Lstat(p)
		require.ErrorIs(t, err, os.ErrNotExist, "%s was left", p)
	}
	_, err = os.Lstat(other)
	require.NoError(t, err)
}

// lateCancel is a context cancelled from its second Err on: a SIGINT that
// comes once Prepare has begun, while blobs are verified.
type lateCancel struct {
	context.Context
	calls atomic.Int32
}

func (c *lateCancel) Err() error {
	if c.calls.Add(1) > 1 {
		return context.Canceled
	}
	return nil
}

// killedDirRun leaves what a backup into a new directory out, killed after
// writing its blobs, leaves: its temporary directory, unlocked.
func killedDirRun(t *testing.T, out string, f *fixture) string {
	t.Helper()
	l := newLayout(t, out, true)
	prepareAndWrite(t, l, f)
	d := l.form.(*dirLayout)
	d.mu.Lock()
	d.unlockTemp()
	tmp := d.tmpDir
	d.mu.Unlock()
	return tmp
}

// A run that takes over a killed run's temporary directory and is
// interrupted (or fails) keeps it, unlocked: the next run resumes it.
func TestResumedTemporaryKeptOnAbort(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "backup")
	f := multiRepo(t)
	tmp := killedDirRun(t, out, f)
	blobs := dirNames(t, filepath.Join(tmp, "blobs", "sha256"))
	require.NotEmpty(t, blobs)

	l := newLayout(t, out, true)
	_, _, err := l.Prepare(&lateCancel{Context: context.Background()}, f.g)
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, l.Abort())
	require.Equal(t, []string{filepath.Base(tmp)}, dirNames(t, dir), "the killed run's temporary is kept")
	require.Equal(t, blobs, dirNames(t, filepath.Join(tmp, "blobs", "sha256")), "with its blobs")

	l = newLayout(t, out, true)
	need, _, err := l.Prepare(context.Background(), f.g)
	require.NoError(t, err)
	require.True(t, l.Resumed(), "resumed again: it was not locked")
	require.Empty(t, need, "every blob was already there")
	require.NoError(t, l.Commit(context.Background()))
	require.Equal(t, []string{"backup"}, dirNames(t, dir))
	checkStore(t, openStore(t, out), f, true)
}

// A run adding to an existing layout removes the temporaries killed runs
// left next to it too, and only those no running process holds.
func TestLeftoversNextToExistingLayoutAreRemoved(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "layout")
	f := multiRepo(t)
	run(t, newLayout(t, out, true), f)
	killed := filepath.Join(dir, ".layout.regvault-tmp-555")
	require.NoError(t, os.MkdirAll(filepath.Join(killed, "blobs"), 0o755))
	held := filepath.Join(dir, ".layout.regvault-tmp-222")
	require.NoError(t, os.MkdirAll(held, 0o755))
	lock, err := os.Open(held)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, flockNB(lock))

	run(t, newLayout(t, out, true), f)
	_, err = os.Lstat(killed)
	require.ErrorIs(t, err, os.ErrNotExist, "the killed run's temporary was left")
	require.Equal(t, []string{".layout.regvault-tmp-222", "layout"}, dirNames(t, dir))
	checkStore(t, openStore(t, out), f, true)
}
