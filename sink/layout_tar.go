package sink

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// tarLayout writes a plain tar file in one pass, concurrently, with no
// staging. Every member's size is known from the graph, so Prepare lays out
// the whole file: each member's header bytes (as archive/tar encodes them)
// and the offset of its content. It then creates the temporary file at its
// full size and writes oci-layout, index.json, every header and the
// trailer. Each Write copies its content into its own slot; slots do not
// overlap, so Writes run concurrently in any order. The padding after each
// member and the trailer are zeros, as the file was extended with zeros.
type tarLayout struct {
	output string // as given
	path   string // absolute final path

	mu      sync.Mutex
	f       *os.File
	sync    *syncer // flushes f as it fills
	tmp     string
	slots   map[digest.Digest]*tarSlot
	closed  bool // f is closed
	renamed bool // the file is in place: nothing to remove any more
}

type slotState int

const (
	slotPending slotState = iota
	slotWriting
	slotDone
)

type tarSlot struct {
	off   int64 // offset of the content in the file
	size  int64
	state slotState
}

// tarMember is one member of the planned tar: its header bytes, where the
// header starts, and (for oci-layout and index.json) its content.
type tarMember struct {
	header []byte
	off    int64
	data   []byte
	node   *graph.Node // nil for oci-layout and index.json
}

// planTar lays out the tar: oci-layout, index.json, then the nodes in
// archive order. Each member's header is encoded with archive/tar (USTAR,
// or PAX where USTAR does not fit), so its length, and with it every
// following offset, is exactly what a tar.Writer would produce; the content
// starts right after the header and is padded to whole blocks. planTar
// hands each member to emit as it goes (so no more than one header is held
// at a time), and returns the content slot of each node and the total size,
// trailer included.
func planTar(nodes []*graph.Node, idxJSON []byte, emit func(tarMember) error) (map[digest.Digest]*tarSlot, int64, error) {
	slots := make(map[digest.Digest]*tarSlot, len(nodes))
	var off int64
	add := func(name string, size int64, data []byte, n *graph.Node) (int64, error) {
		h, err := encodeHeader(tarHeader(name, size))
		if err != nil {
			return 0, fmt.Errorf("tar header for %s: %w", name, err)
		}
		if err := emit(tarMember{header: h, off: off, data: data, node: n}); err != nil {
			return 0, err
		}
		content := off + int64(len(h))
		off = content + padded(size)
		return content, nil
	}
	if _, err := add("oci-layout", int64(len(archive.LayoutFile)), archive.LayoutFile, nil); err != nil {
		return nil, 0, err
	}
	if _, err := add("index.json", int64(len(idxJSON)), idxJSON, nil); err != nil {
		return nil, 0, err
	}
	for _, n := range nodes {
		content, err := add(archive.BlobPath(n.Desc.Digest), n.Desc.Size, nil, n)
		if err != nil {
			return nil, 0, err
		}
		slots[n.Desc.Digest] = &tarSlot{off: content, size: n.Desc.Size}
	}
	return slots, off + 2*tarBlock, nil
}

func (t *tarLayout) prepare(ctx context.Context, g *graph.Graph, _ ocispec.Index, idxJSON []byte) ([]*graph.Node, Ordering, error) {
	if err := checkNotDir(t.output, t.path); err != nil {
		return nil, 0, err
	}
	cleanLeftovers(t.path, nil)
	f, err := createTempFile(t.path)
	if err != nil {
		return nil, 0, fmt.Errorf("layout %s: creating temporary file: %w", t.output, err)
	}
	t.mu.Lock()
	t.f, t.tmp = f, f.Name()
	t.mu.Unlock()
	fail := func(what string, err error) ([]*graph.Node, Ordering, error) {
		return nil, 0, fmt.Errorf("layout %s: %s %s: %w", t.output, what, t.tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail("setting the mode of", err)
	}
	// Headers go in as they are planned; the gaps left for content and
	// padding read as zeros until Write fills them.
	nodes := g.Nodes()
	slots, total, err := planTar(nodes, idxJSON, func(m tarMember) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := f.WriteAt(append(m.header, m.data...), m.off)
		return err
	})
	if err != nil {
		return fail("writing headers to", err)
	}
	if err := f.Truncate(total); err != nil {
		return fail("sizing", err)
	}
	if _, err := f.WriteAt(make([]byte, 2*tarBlock), total-2*tarBlock); err != nil {
		return fail("writing the trailer to", err)
	}
	t.mu.Lock()
	t.slots = slots
	t.sync = newSyncer(f)
	t.mu.Unlock()
	return nodes, AnyOrder, nil
}

func (t *tarLayout) write(ctx context.Context, n *graph.Node, open Opener) error {
	d := n.Desc.Digest
	t.mu.Lock()
	s := t.slots[d]
	switch {
	case t.closed:
		t.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: sink is closed", t.output, d)
	case s == nil:
		t.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: not a node of the prepared graph", t.output, d)
	case s.state == slotWriting:
		t.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: already being written", t.output, d)
	case s.state == slotDone:
		t.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: already written", t.output, d)
	}
	s.state = slotWriting
	f, syn := t.f, t.sync
	t.mu.Unlock()

	err := func() error {
		rc, err := openNode(ctx, open)
		if err != nil {
			return err
		}
		defer rc.Close()
		return CopyExact(io.NewOffsetWriter(f, s.off), rc, s.size)
	}()

	if err == nil {
		startWriteback(f, s.off, s.size)
		syn.wrote(s.size)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		s.state = slotPending
		return fmt.Errorf("layout %s: write %s: %w", t.output, d, err)
	}
	s.state = slotDone
	return nil
}

// slotForPart returns the slot of n while it may still take parts.
func (t *tarLayout) slotForPart(n *graph.Node) (*tarSlot, *os.File, error) {
	d := n.Desc.Digest
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.slots[d]
	switch {
	case t.closed:
		return nil, nil, fmt.Errorf("layout %s: write %s: sink is closed", t.output, d)
	case s == nil:
		return nil, nil, fmt.Errorf("layout %s: write %s: not a node of the prepared graph", t.output, d)
	case s.state != slotPending:
		return nil, nil, fmt.Errorf("layout %s: write %s: already written or being written whole", t.output, d)
	}
	return s, t.f, nil
}

func (t *tarLayout) writePart(ctx context.Context, n *graph.Node, off, length int64, r io.Reader) error {
	s, f, err := t.slotForPart(n)
	if err != nil {
		return err
	}
	if off < 0 || length < 0 || off+length > s.size {
		return fmt.Errorf("layout %s: write %s: part %d+%d outside its %d bytes", t.output, n.Desc.Digest, off, length, s.size)
	}
	if !copyFromFile(f, s.off+off, r, length) {
		if err := CopyExact(io.NewOffsetWriter(f, s.off+off), ctxReader{ctx: ctx, r: r}, length); err != nil {
			return fmt.Errorf("layout %s: write %s (bytes %d-%d): %w", t.output, n.Desc.Digest, off, off+length-1, err)
		}
	}
	startWriteback(f, s.off+off, length)
	t.mu.Lock()
	syn := t.sync
	t.mu.Unlock()
	syn.wrote(length)
	return nil
}

// finishParts counts the slot as written. The parts arrived over
// separate connections; the caller hashed them in order as they came
// (see PartWriter), so the slot is not read back: got is checked against
// the digest, and a mismatch leaves the slot to be written again or
// dropped.
func (t *tarLayout) finishParts(ctx context.Context, n *graph.Node, got digest.Digest) error {
	s, _, err := t.slotForPart(n)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("layout %s: write %s: %w", t.output, n.Desc.Digest, err)
	}
	d := n.Desc.Digest
	if got != d {
		return fmt.Errorf("layout %s: %s: the bytes received do not match the digest (they hash to %s): %w", t.output, d, got, content.ErrMismatchedDigest)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.state = slotDone
	return nil
}

// drop compacts the file, in place, into the tar of nodes alone with
// idxJSON as its index.json: the tar a backup of nodes alone writes, byte
// for byte. Members keep their order and only move towards the start
// (members are only taken away, and the index.json of fewer repositories
// is shorter), so each is copied forward over what is already done;
// padding is zeroed, and the file ends after the new trailer.
func (t *tarLayout) drop(ctx context.Context, nodes []*graph.Node, _ ocispec.Index, idxJSON []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("layout %s: sink is closed", t.output)
	}
	var missing []digest.Digest
	for _, n := range nodes {
		s := t.slots[n.Desc.Digest]
		if s == nil {
			return fmt.Errorf("layout %s: %s is not a node of the prepared graph", t.output, n.Desc.Digest)
		}
		if s.state != slotDone {
			missing = append(missing, n.Desc.Digest)
		}
	}
	if len(missing) > 0 {
		return missingError(t.output, missing)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	var zeros [tarBlock]byte
	f := t.f
	slots, total, err := planTar(nodes, idxJSON, func(m tarMember) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		content := m.off + int64(len(m.header))
		size := int64(len(m.data))
		if m.node != nil {
			old := t.slots[m.node.Desc.Digest]
			size = old.size
			if content > old.off {
				return fmt.Errorf("%s would move from %d to %d, away from the start", m.node.Desc.Digest, old.off, content)
			}
			if _, err := f.WriteAt(m.header, m.off); err != nil {
				return err
			}
			if err := moveForward(f, content, old.off, size, *bp); err != nil {
				return err
			}
		} else if _, err := f.WriteAt(append(m.header, m.data...), m.off); err != nil {
			return err
		}
		_, err := f.WriteAt(zeros[:padded(size)-size], content+size)
		return err
	})
	if err == nil {
		_, err = f.WriteAt(make([]byte, 2*tarBlock), total-2*tarBlock)
	}
	if err == nil {
		err = f.Truncate(total)
	}
	if err != nil {
		return fmt.Errorf("layout %s: leaving failed repositories out of %s: %w", t.output, t.tmp, err)
	}
	for _, s := range slots {
		s.state = slotDone
	}
	t.slots = slots
	return nil
}

// moveForward copies the size bytes at src to dst <= src in the same
// file. Front to back, each piece is read before anything is written over
// it.
func moveForward(f *os.File, dst, src, size int64, buf []byte) error {
	if dst == src {
		return nil
	}
	for size > 0 {
		k := int(min(int64(len(buf)), size))
		if _, err := f.ReadAt(buf[:k], src); err != nil {
			return err
		}
		if _, err := f.WriteAt(buf[:k], dst); err != nil {
			return err
		}
		src, dst, size = src+int64(k), dst+int64(k), size-int64(k)
	}
	return nil
}

func (t *tarLayout) commit(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var missing []digest.Digest
	for d, s := range t.slots {
		if s.state != slotDone {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		return missingError(t.output, missing)
	}
	if err := t.sync.stop(); err != nil {
		return fmt.Errorf("layout %s: writing %s to disk: %w", t.output, t.tmp, err)
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("layout %s: syncing %s: %w", t.output, t.tmp, err)
	}
	t.closed = true
	if err := t.f.Close(); err != nil {
		return fmt.Errorf("layout %s: closing %s: %w", t.output, t.tmp, err)
	}
	if err := os.Rename(t.tmp, t.path); err != nil {
		return fmt.Errorf("layout %s: renaming %s into place: %w", t.output, t.tmp, err)
	}
	t.renamed = true
	if err := syncDir(filepath.Dir(t.path)); err != nil {
		return fmt.Errorf("layout %s: syncing its directory: %w", t.output, err)
	}
	return nil
}

func (t *tarLayout) abort() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.renamed || t.tmp == "" {
		return nil
	}
	if !t.closed {
		t.closed = true
		if t.sync != nil {
			_ = t.sync.stop()
		}
		_ = t.f.Close()
	}
	if err := os.Remove(t.tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("layout %s: removing %s: %w", t.output, t.tmp, err)
	}
	return nil
}

// copyFromFile copies a part that is a section of a file (a blob's bytes
// spooled before the tar was laid out) in the kernel, and reports whether
// it did; when it did not, r is as it was.
func copyFromFile(f *os.File, off int64, r io.Reader, length int64) bool {
	sr, ok := r.(*io.SectionReader)
	if !ok {
		return false
	}
	at, base, n := sr.Outer()
	src, ok := at.(*os.File)
	if !ok || n != length {
		return false
	}
	if pos, err := sr.Seek(0, io.SeekCurrent); err != nil || pos != 0 {
		return false
	}
	k, err := copyRange(f, off, src, base, length)
	return err == nil && k == length
}
