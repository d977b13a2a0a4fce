package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// dirLayout writes an OCI layout directory. A new one (the path does not
// exist, or is an empty directory) is built in a temporary sibling
// directory and renamed into place at Commit. An existing layout is added
// to in place: blobs it already holds (checked by size and digest) are not
// asked for, new blobs appear under their final name only once complete,
// and index.json is merged and replaced at Commit.
type dirLayout struct {
	output  string // as given
	path    string // absolute final path (symbolic links resolved if it exists)
	fullRef bool   // the new tags are named registry/repository:tag

	// moved are the tags of an existing layout this backup moves to
	// another digest; set by prepare.
	moved []archive.Moved

	// Set by prepare.
	existing      bool   // adding to an existing layout in place
	root          string // the layout being written: tmpDir, or path
	tmpDir        string // the new layout under its temporary name
	emptyDir      bool   // path is an empty directory the new layout replaces
	oldIndex      ocispec.Index
	hasLayoutFile bool
	newIndex      ocispec.Index
	idxJSON       []byte

	// lock is held while adding to an existing layout, so that two runs
	// adding to one directory cannot lose each other's index entries.
	lock *os.File
	// tmpLock is held on tmpDir while it is built, so that another run
	// does not take it for a killed run's leftover.
	tmpLock *os.File
	resumed bool // tmpDir is a killed run's

	mu      sync.Mutex
	slots   map[digest.Digest]slotState
	dirs    map[string]bool // blob directories made or written into
	temps   map[string]bool // temporary blob files being written
	aborted bool
	done    bool // committed: nothing to remove any more
}

// maxVerifiers bounds how many existing blobs are hashed at once.
const maxVerifiers = 8

func (d *dirLayout) prepare(ctx context.Context, g *graph.Graph, idx ocispec.Index, idxJSON []byte) ([]*graph.Node, Ordering, error) {
	d.newIndex, d.idxJSON = idx, idxJSON
	d.dirs, d.temps = map[string]bool{}, map[string]bool{}
	nodes := g.Nodes()

	mode := os.FileMode(0o755)
	st, err := os.Stat(d.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(d.path), 0o755); err != nil {
			return nil, 0, fmt.Errorf("layout %s: creating its parent directory: %w", d.output, err)
		}
	case err != nil:
		return nil, 0, fmt.Errorf("layout %s: %w", d.output, err)
	case !st.IsDir():
		return nil, 0, fmt.Errorf("layout %s: exists and is not a directory (a tar output needs a name ending in .tar, .tar.gz, .tgz, .tar.zst or .tzst)", d.output)
	default:
		if real, err := filepath.EvalSymlinks(d.path); err == nil {
			d.path = real
		}
		isLayout, empty, err := inspectDir(d.path)
		if err != nil {
			return nil, 0, fmt.Errorf("layout %s: %w", d.output, err)
		}
		switch {
		case isLayout:
			d.existing = true
		case empty:
			d.emptyDir = true
			mode = st.Mode().Perm()
		default:
			return nil, 0, fmt.Errorf("layout %s: the directory is not empty and holds no OCI layout (no oci-layout file); choose an empty or new directory", d.output)
		}
	}

	if d.existing {
		return d.prepareExisting(ctx, nodes)
	}

	// A killed run building this directory left its temporary: the first
	// one that holds a layout is resumed, the others are removed.
	cleanLeftovers(d.path, func(dir string, lock *os.File) bool {
		if b, err := archive.ReadFile(nil, filepath.Join(dir, ocispec.ImageLayoutFile), archive.MaxLayoutFile); err != nil || !bytes.Equal(b, archive.LayoutFile) {
			return false
		}
		d.mu.Lock()
		// Set now, not once resumed: an Abort while its blobs are
		// verified must keep it too.
		d.tmpDir, d.tmpLock, d.root, d.resumed = dir, lock, dir, true
		d.mu.Unlock()
		return true
	})
	if d.tmpDir != "" {
		return d.resume(ctx, nodes, mode)
	}

	tmp, lock, err := createTempDir(d.path)
	if err != nil {
		return nil, 0, fmt.Errorf("layout %s: creating temporary directory: %w", d.output, err)
	}
	d.mu.Lock()
	d.tmpDir, d.tmpLock, d.root = tmp, lock, tmp
	d.slots = make(map[digest.Digest]slotState, len(nodes))
	for _, n := range nodes {
		d.slots[n.Desc.Digest] = slotPending
	}
	d.mu.Unlock()
	if err := os.Chmod(tmp, mode); err != nil {
		return nil, 0, fmt.Errorf("layout %s: %w", d.output, err)
	}
	if err := writeFileSync(filepath.Join(tmp, ocispec.ImageLayoutFile), archive.LayoutFile); err != nil {
		return nil, 0, fmt.Errorf("layout %s: %w", d.output, err)
	}
	return nodes, AnyOrder, nil
}

// removeBlobsExcept removes from the layout at root every blob that is
// not one of nodes.
func removeBlobsExcept(root string, nodes []*graph.Node) {
	want := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		want[filepath.FromSlash(archive.BlobPath(n.Desc.Digest))] = true
	}
	if algs, err := os.ReadDir(filepath.Join(root, "blobs")); err == nil {
		for _, a := range algs {
			files, _ := os.ReadDir(filepath.Join(root, "blobs", a.Name()))
			for _, f := range files {
				if rel := filepath.Join("blobs", a.Name(), f.Name()); !want[rel] {
					_ = os.RemoveAll(filepath.Join(root, rel))
				}
			}
		}
	}
}

// resume goes on building the new directory in the temporary directory a
// killed run left (d.tmpDir, locked): the blobs it holds, verified as in
// an existing layout, are not asked for again.
func (d *dirLayout) resume(ctx context.Context, nodes []*graph.Node, mode os.FileMode) ([]*graph.Node, Ordering, error) {
	cleanInside(d.tmpDir)
	// Blobs of content this backup no longer holds (the killed run was
	// asked for other tags) would stay in the layout unnamed: removed.
	removeBlobsExcept(d.tmpDir, nodes)
	if err := os.Chmod(d.tmpDir, mode); err != nil {
		return nil, 0, fmt.Errorf("layout %s: %w", d.output, err)
	}
	need, err := d.missingBlobs(ctx, nodes)
	if err != nil {
		return nil, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.slots = make(map[digest.Digest]slotState, len(need))
	for _, n := range need {
		d.slots[n.Desc.Digest] = slotPending
	}
	// The killed run's renames of blobs are made durable with this run's.
	if algs, err := os.ReadDir(filepath.Join(d.tmpDir, "blobs")); err == nil {
		for _, a := range algs {
			if a.IsDir() {
				d.dirs[filepath.Join(d.tmpDir, "blobs", a.Name())] = true
			}
		}
	}
	return need, AnyOrder, nil
}

// inspectDir says whether dir holds an OCI layout, or nothing at all.
func inspectDir(dir string) (isLayout, empty bool, err error) {
	if _, err := os.Lstat(filepath.Join(dir, ocispec.ImageLayoutFile)); err == nil {
		return true, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, false, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); errors.Is(err, io.EOF) {
		return false, true, nil
	} else if err != nil {
		return false, false, err
	}
	return false, false, nil
}

func (d *dirLayout) prepareExisting(ctx context.Context, nodes []*graph.Node) ([]*graph.Node, Ordering, error) {
	d.root = d.path
	lock, err := lockDir(d.path)
	if errors.Is(err, errLocked) {
		return nil, 0, fmt.Errorf("layout %s: another regvault run is adding to this directory; wait for it to end, or write to another directory", d.output)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("layout %s: locking it: %w", d.output, err)
	}
	d.mu.Lock()
	d.lock = lock
	d.mu.Unlock()
	// Temporaries killed runs left next to it (a first backup into it,
	// or a tar of the same name) are removed here too; none is resumed,
	// the directory exists.
	cleanLeftovers(d.path, nil)
	if lock != nil {
		// No other run is writing here: temporary files are a killed
		// run's.
		cleanInside(d.path)
	}
	old, err := readExisting(d.path)
	if err != nil {
		return nil, 0, fmt.Errorf("layout %s: %w", d.output, err)
	}
	d.oldIndex, d.hasLayoutFile = old, true
	if repo := d.newIndex.Annotations[archive.AnnotationRepository]; d.fullRef || repo != "" {
		if err := archive.CheckAdd(d.oldIndex, d.fullRef, repo); err != nil {
			return nil, 0, fmt.Errorf("layout %s: %w", d.output, err)
		}
	}
	d.moved = archive.MovedTags(d.oldIndex, d.newIndex)

	need, err := d.missingBlobs(ctx, nodes)
	if err != nil {
		return nil, 0, err
	}
	d.mu.Lock()
	d.slots = make(map[digest.Digest]slotState, len(need))
	for _, n := range need {
		d.slots[n.Desc.Digest] = slotPending
	}
	d.mu.Unlock()
	return need, AnyOrder, nil
}

// readExisting reads the oci-layout and index.json of the layout in dir
// (an index.json not there yet is an empty index). Each must be a regular
// file.
func readExisting(dir string) (ocispec.Index, error) {
	var idx ocispec.Index
	b, err := archive.ReadFile(nil, filepath.Join(dir, ocispec.ImageLayoutFile), archive.MaxLayoutFile)
	if err != nil {
		return idx, err
	}
	var il ocispec.ImageLayout
	if err := json.Unmarshal(b, &il); err != nil {
		return idx, fmt.Errorf("reading %s: %w", ocispec.ImageLayoutFile, err)
	}
	if il.Version != ocispec.ImageLayoutVersion {
		return idx, fmt.Errorf("%s says version %q; only %q can be added to", ocispec.ImageLayoutFile, il.Version, ocispec.ImageLayoutVersion)
	}
	b, err = archive.ReadFile(nil, filepath.Join(dir, "index.json"), archive.MaxIndexFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		idx = ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
		idx.SchemaVersion = 2
		return idx, nil
	case err != nil:
		return idx, err
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("reading index.json: %w", err)
	}
	return idx, nil
}

// CheckAddTo says, before a backup begins, whether it may add its tags to
// output: a directory that holds a layout takes only tags named the way
// its own are (see archive.CheckAdd). fullRef and repo (registry/path of
// the single repository of a backup named by the tag alone) are the new
// backup's. Nothing is written. A *archive.MixError is a refusal; other
// errors say the layout there cannot be read (its oci-layout or index.json
// is not a regular file, or not JSON).
func CheckAddTo(output string, fullRef bool, repo string) error {
	if archive.KindOf(output) != archive.Directory {
		return nil
	}
	st, err := os.Stat(output)
	if err != nil || !st.IsDir() {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(output, ocispec.ImageLayoutFile)); err != nil {
		return nil
	}
	old, err := readExisting(output)
	if err == nil {
		err = archive.CheckAdd(old, fullRef, repo)
	}
	if err != nil {
		return fmt.Errorf("layout %s: %w", output, err)
	}
	return nil
}

// missingBlobs returns the nodes, in their order, whose blob the existing
// layout does not hold with the right size and digest. Files are hashed a
// few at a time.
func (d *dirLayout) missingBlobs(parent context.Context, nodes []*graph.Node) ([]*graph.Node, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	have := make([]bool, len(nodes))
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	jobs := make(chan int)
	workers := min(runtime.GOMAXPROCS(0), maxVerifiers, len(nodes))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				ok, err := d.haveBlob(ctx, nodes[i])
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					continue
				}
				have[i] = ok
			}
		}()
	}
feed:
	for i := range nodes {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := parent.Err(); err != nil {
		return nil, err
	}
	var need []*graph.Node
	for i, n := range nodes {
		if !have[i] {
			need = append(need, n)
		}
	}
	return need, nil
}

// haveBlob says whether the layout holds n's blob: a regular file of the
// right size whose content has the right digest.
func (d *dirLayout) haveBlob(ctx context.Context, n *graph.Node) (bool, error) {
	dg := n.Desc.Digest
	p := filepath.Join(d.root, filepath.FromSlash(archive.BlobPath(dg)))
	f, st, err := archive.OpenFile(nil, p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("layout %s: checking blob %s: %w", d.output, dg, err)
	}
	defer f.Close()
	if st.Size() != n.Desc.Size {
		return false, nil
	}
	v := dg.Verifier()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if _, err := io.CopyBuffer(v, ctxReader{ctx: ctx, r: f}, *bp); err != nil {
		return false, fmt.Errorf("layout %s: checking blob %s: %w", d.output, dg, err)
	}
	return v.Verified(), nil
}

func (d *dirLayout) write(ctx context.Context, n *graph.Node, open Opener) error {
	dg := n.Desc.Digest
	d.mu.Lock()
	st, ok := d.slots[dg]
	switch {
	case d.aborted || d.done:
		d.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: sink is closed", d.output, dg)
	case !ok:
		d.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: not asked for (not in the graph, or already in the layout)", d.output, dg)
	case st == slotWriting:
		d.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: already being written", d.output, dg)
	case st == slotDone:
		d.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: already written", d.output, dg)
	}
	dir := filepath.Join(d.root, "blobs", dg.Algorithm().String())
	if !d.dirs[dir] {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			d.mu.Unlock()
			return fmt.Errorf("layout %s: write %s: %w", d.output, dg, err)
		}
		d.dirs[dir] = true
	}
	f, err := os.CreateTemp(dir, "."+dg.Encoded()+".regvault-tmp-*")
	if err != nil {
		d.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: %w", d.output, dg, err)
	}
	tmp := f.Name()
	d.temps[tmp] = true
	d.slots[dg] = slotWriting
	d.mu.Unlock()

	err = func() error {
		rc, err := openNode(ctx, open)
		if err != nil {
			return err
		}
		defer rc.Close()
		return CopyExact(f, rc, n.Desc.Size)
	}()
	err = finishFile(f, err)

	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.temps, tmp)
	if err == nil && d.aborted {
		err = errAborted
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, dg.Encoded()))
	}
	if err != nil {
		_ = os.Remove(tmp)
		if !d.aborted {
			d.slots[dg] = slotPending
		}
		return fmt.Errorf("layout %s: write %s: %w", d.output, dg, err)
	}
	d.slots[dg] = slotDone
	return nil
}

// drop removes the blobs that nodes no longer hold (in an existing
// layout, only those this run wrote), and makes idx the index.json Commit
// writes (or merges into the existing one): the layout ends as a backup
// of nodes alone leaves it.
func (d *dirLayout) drop(_ context.Context, nodes []*graph.Node, idx ocispec.Index, idxJSON []byte) error {
	keep := make(map[digest.Digest]bool, len(nodes))
	for _, n := range nodes {
		keep[n.Desc.Digest] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted || d.done {
		return fmt.Errorf("layout %s: sink is closed", d.output)
	}
	for dg, st := range d.slots {
		if keep[dg] {
			continue
		}
		switch st {
		case slotWriting:
			return fmt.Errorf("layout %s: leaving out %s: it is still being written", d.output, dg)
		case slotDone:
			p := filepath.Join(d.root, filepath.FromSlash(archive.BlobPath(dg)))
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("layout %s: leaving out %s: %w", d.output, dg, err)
			}
		}
		delete(d.slots, dg)
	}
	if !d.existing {
		// A resumed directory may hold blobs of theirs this run did not
		// write.
		removeBlobsExcept(d.root, nodes)
	}
	d.newIndex, d.idxJSON = idx, idxJSON
	if d.existing {
		d.moved = archive.MovedTags(d.oldIndex, d.newIndex)
	}
	return nil
}

func (d *dirLayout) commit(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var missing []digest.Digest
	for dg, st := range d.slots {
		if st != slotDone {
			missing = append(missing, dg)
		}
	}
	if len(missing) > 0 {
		return missingError(d.output, missing)
	}
	// The renames of the blobs must be durable before an index names them.
	for dir := range d.dirs {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("layout %s: syncing %s: %w", d.output, dir, err)
		}
	}
	if len(d.dirs) > 0 {
		if err := syncDir(filepath.Join(d.root, "blobs")); err != nil {
			return fmt.Errorf("layout %s: syncing blobs: %w", d.output, err)
		}
	}
	if d.existing {
		return d.commitExisting()
	}

	if err := writeFileSync(filepath.Join(d.tmpDir, "index.json"), d.idxJSON); err != nil {
		return fmt.Errorf("layout %s: %w", d.output, err)
	}
	if err := syncDir(d.tmpDir); err != nil {
		return fmt.Errorf("layout %s: syncing %s: %w", d.output, d.tmpDir, err)
	}
	err := os.Rename(d.tmpDir, d.path)
	if err != nil && d.emptyDir {
		// Where a directory cannot be renamed over an empty one, remove
		// the empty one first (os.Remove fails if it is no longer empty).
		if rerr := os.Remove(d.path); rerr == nil {
			err = os.Rename(d.tmpDir, d.path)
		}
	}
	if err != nil {
		return fmt.Errorf("layout %s: renaming %s into place: %w", d.output, d.tmpDir, err)
	}
	d.done = true
	d.unlockTemp()
	if err := syncDir(filepath.Dir(d.path)); err != nil {
		return fmt.Errorf("layout %s: syncing its parent directory: %w", d.output, err)
	}
	return nil
}

func (d *dirLayout) commitExisting() error {
	defer d.unlock()
	merged, err := archive.Marshal(archive.Merge(d.oldIndex, d.newIndex))
	if err != nil {
		return fmt.Errorf("layout %s: encoding index.json: %w", d.output, err)
	}
	if err := replaceFile(d.path, "index.json", merged); err != nil {
		return fmt.Errorf("layout %s: %w", d.output, err)
	}
	d.done = true
	if !d.hasLayoutFile {
		if err := replaceFile(d.path, ocispec.ImageLayoutFile, archive.LayoutFile); err != nil {
			return fmt.Errorf("layout %s: %w", d.output, err)
		}
	}
	if err := syncDir(d.path); err != nil {
		return fmt.Errorf("layout %s: syncing it: %w", d.output, err)
	}
	return nil
}

func (d *dirLayout) abort() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = true
	if d.done {
		return nil
	}
	if !d.existing {
		if d.tmpDir == "" {
			return nil
		}
		defer d.unlockTemp()
		if d.resumed {
			// A killed run's directory taken over holds complete blobs
			// that were (or are being) verified, and those this run
			// added: kept, unlocked, for a later run to resume again.
			// Only the files this run was writing go.
			return d.removeTemps()
		}
		if err := os.RemoveAll(d.tmpDir); err != nil {
			return fmt.Errorf("layout %s: removing %s: %w", d.output, d.tmpDir, err)
		}
		return nil
	}
	// Blobs already in place stay: they are complete and verified, and a
	// later backup into the same directory will not fetch them again.
	defer d.unlock()
	return d.removeTemps()
}

// removeTemps removes the temporary blob files being written; d.mu is
// held.
func (d *dirLayout) removeTemps() error {
	var firstErr error
	for tmp := range d.temps {
		if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) && firstErr == nil {
			firstErr = fmt.Errorf("layout %s: removing %s: %w", d.output, tmp, err)
		}
		delete(d.temps, tmp)
	}
	return firstErr
}

// errLocked: another process holds the layout directory's lock.
var errLocked = errors.New("locked by another process")

// unlock releases the lock on an existing layout; d.mu is held.
func (d *dirLayout) unlock() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

// unlockTemp releases the lock on the temporary directory; d.mu is held.
func (d *dirLayout) unlockTemp() {
	if d.tmpLock != nil {
		d.tmpLock.Close()
		d.tmpLock = nil
	}
}

// writeFileSync creates path with data, durably.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// finishFile ends the writing of a temporary file that err says how it
// went: unless it failed, the file is made 0644 (CreateTemp makes it 0600)
// and synced to disk; it is closed in any case. It returns the first error.
func finishFile(f *os.File, err error) error {
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// replaceFile replaces dir/name with data through a temporary file and a
// rename: a reader sees the old content or the new, never a part.
func replaceFile(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".regvault-tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	err = finishFile(f, err)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
