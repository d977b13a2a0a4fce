package sink

import (
	"archive/tar"
	"bytes"
	"context"
	_ "crypto/sha256" // digest algorithms the layout may name
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// LayoutOptions configure a layout sink.
type LayoutOptions struct {
	// FullReference names each tag in index.json by registry/repo:tag
	// rather than by the tag alone (single-repository --full-reference,
	// and every multi-repository backup).
	FullReference bool
	// Stdout receives the tar stream when the output is "-". It is never
	// closed by the sink.
	Stdout io.Writer
}

// Layout is the backup end of the pipeline: it writes the graph as an OCI
// image layout (docs/format.md) in the form the output
// name asks for:
//
//   - a plain .tar file: written in one pass, concurrently, straight into
//     place (every tar header is computed in Prepare; each blob is copied
//     into its own slot of a pre-sized temporary file), AnyOrder;
//   - .tar.gz/.tgz, .tar.zst/.tzst and "-" (plain tar on Stdout): a
//     stream, InOrder;
//   - anything else: a directory, AnyOrder; a new one is built under a
//     temporary name, an existing layout is added to in place.
//
// Files and new directories are written under a temporary name next to the
// output and renamed at Commit, so an interrupted run never leaves
// something that looks like a finished backup.
type Layout struct {
	output string // as given, for messages
	kind   archive.Kind
	opts   LayoutOptions
	form   layoutForm

	mu    sync.Mutex
	state layoutState
}

type layoutState int

const (
	stateNew layoutState = iota
	statePrepared
	stateCommitted
	stateAborted
)

// layoutForm is one on-disk form of a layout. The Layout wrapper enforces
// the call sequence (Prepare once, Write after Prepare, Commit or Abort);
// a form guards its own data against concurrent Writes and an Abort that
// races with them.
type layoutForm interface {
	prepare(ctx context.Context, g *graph.Graph, idx ocispec.Index, idxJSON []byte) ([]*graph.Node, Ordering, error)
	write(ctx context.Context, n *graph.Node, open Opener) error
	commit(ctx context.Context) error
	abort() error
}

// NewLayout returns a sink that writes a backup to output; the form comes
// from the name (archive.KindOf). Nothing is touched on disk before
// Prepare.
func NewLayout(output string, opts LayoutOptions) (*Layout, error) {
	if output == "" {
		return nil, errors.New("layout output: no path given")
	}
	kind := archive.KindOf(output)
	l := &Layout{output: output, kind: kind, opts: opts}
	if kind == archive.Stdout {
		if opts.Stdout == nil {
			return nil, errors.New("layout output -: no standard output writer given")
		}
		l.form = &streamLayout{output: output, kind: kind, stdout: opts.Stdout}
		return l, nil
	}
	abs, err := filepath.Abs(output)
	if err != nil {
		return nil, fmt.Errorf("layout output %s: %w", output, err)
	}
	if filepath.Base(abs) == string(filepath.Separator) || filepath.Dir(abs) == abs {
		return nil, fmt.Errorf("layout output %s: cannot write a backup to the root directory", output)
	}
	switch kind {
	case archive.Tar:
		l.form = &tarLayout{output: output, path: abs}
	case archive.TarGzip, archive.TarZstd:
		l.form = &streamLayout{output: output, path: abs, kind: kind}
	default:
		l.form = &dirLayout{output: output, path: abs, fullRef: opts.FullReference}
	}
	return l, nil
}

// Kind is the form the output takes.
func (l *Layout) Kind() archive.Kind { return l.kind }

// Output is the output name as given.
func (l *Layout) Output() string { return l.output }

// Prepare adds the referrers' tag-schema indexes to the graph
// (archive.AddTagSchema), checks it, builds index.json and sets up the
// output. It returns every node in archive order (for an existing directory, only
// those it does not already hold, verified by digest). If it fails,
// everything it created is removed.
func (l *Layout) Prepare(ctx context.Context, g *graph.Graph) ([]*graph.Node, Ordering, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.state {
	case stateNew:
	case stateAborted:
		return nil, 0, fmt.Errorf("layout %s: Prepare after Abort", l.output)
	default:
		return nil, 0, fmt.Errorf("layout %s: Prepare called twice", l.output)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	// The referrers' tag-schema indexes are written like any manifest
	// (from the node's Content, as the pipeline opens manifests): peers
	// (regctl) find referrers in a layout only through them.
	archive.AddTagSchema(g, l.opts.FullReference)
	if err := checkGraph(g, l.opts.FullReference); err != nil {
		return nil, 0, fmt.Errorf("layout %s: %w", l.output, err)
	}
	idx, idxJSON, err := l.index(g)
	if err != nil {
		return nil, 0, err
	}
	need, ord, err := l.form.prepare(ctx, g, idx, idxJSON)
	if err != nil {
		_ = l.form.abort()
		l.state = stateAborted
		return nil, 0, err
	}
	l.state = statePrepared
	return need, ord, nil
}

// index is the index.json of g, and its bytes.
func (l *Layout) index(g *graph.Graph) (ocispec.Index, []byte, error) {
	idx := archive.Index(g, l.opts.FullReference)
	idxJSON, err := archive.Marshal(idx)
	if err != nil {
		return ocispec.Index{}, nil, fmt.Errorf("layout %s: encoding index.json: %w", l.output, err)
	}
	return idx, idxJSON, nil
}

// dropper is a form that can leave repositories out after prepare.
type dropper interface {
	drop(ctx context.Context, nodes []*graph.Node, idx ocispec.Index, idxJSON []byte) error
}

// CanDrop reports whether repositories can still be left out: a directory
// or a plain tar file can, a stream cannot (its index.json is out).
func (l *Layout) CanDrop() bool {
	_, ok := l.form.(dropper)
	return ok
}

// Drop leaves out of the backup everything g, the graph without the
// repositories that failed, no longer holds: index.json is that of g, and
// blobs only they needed are removed (from a directory), or the tar file
// is compacted to hold g's members alone. Either way the result is what a
// backup of g alone writes.
func (l *Layout) Drop(ctx context.Context, g *graph.Graph) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != statePrepared {
		return fmt.Errorf("layout %s: Drop without a successful Prepare (or after Commit or Abort)", l.output)
	}
	d, ok := l.form.(dropper)
	if !ok {
		return fmt.Errorf("layout %s: a stream cannot leave repositories out once index.json is written", l.output)
	}
	if err := checkGraph(g, l.opts.FullReference); err != nil {
		return fmt.Errorf("layout %s: %w", l.output, err)
	}
	idx, idxJSON, err := l.index(g)
	if err != nil {
		return err
	}
	return d.drop(ctx, g.Nodes(), idx, idxJSON)
}

// Write stores one node; see the Ordering that Prepare returned. It opens
// the node's bytes once and does not retry: a failed Write of a file or
// directory output may be repeated by the caller, while a stream is broken
// by a Write that failed once its member had begun.
func (l *Layout) Write(ctx context.Context, n *graph.Node, open Opener) error {
	l.mu.Lock()
	st := l.state
	l.mu.Unlock()
	if st != statePrepared {
		return fmt.Errorf("layout %s: write %s: sink is not prepared (or already committed or aborted)", l.output, n.Desc.Digest)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("layout %s: write %s: %w", l.output, n.Desc.Digest, err)
	}
	return l.form.write(ctx, n, open)
}

// MovedTags are the tags of an existing directory layout that this backup
// moved to another digest (the tag moved in the registry since the last
// backup into the directory), sorted by name; known after Prepare.
func (l *Layout) MovedTags() []archive.Moved {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d, ok := l.form.(*dirLayout); ok {
		return slices.Clone(d.moved)
	}
	return nil
}

// Resumed says whether a new directory was built on in the temporary
// directory a killed run left; known after Prepare.
func (l *Layout) Resumed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.form.(*dirLayout)
	return ok && d.resumed
}

// AcceptsParts reports whether blobs may be written in parts: a plain tar
// file, whose slots are fixed, takes them.
func (l *Layout) AcceptsParts() bool {
	_, ok := l.form.(*tarLayout)
	return ok
}

// WritePart writes one part of a blob into its slot of a plain tar file.
func (l *Layout) WritePart(ctx context.Context, n *graph.Node, off, length int64, r io.Reader) error {
	t, ok := l.form.(*tarLayout)
	if !ok {
		return fmt.Errorf("layout %s: write %s: this form takes whole blobs only", l.output, n.Desc.Digest)
	}
	return t.writePart(ctx, n, off, length, r)
}

// FinishParts counts a blob written in parts as written, given the
// digest its bytes were hashed to as they arrived.
func (l *Layout) FinishParts(ctx context.Context, n *graph.Node, got digest.Digest) error {
	t, ok := l.form.(*tarLayout)
	if !ok {
		return fmt.Errorf("layout %s: write %s: this form takes whole blobs only", l.output, n.Desc.Digest)
	}
	return t.finishParts(ctx, n, got)
}

// Commit checks that every node was written and makes the backup visible
// under its name. After a failed Commit, Abort cleans up.
func (l *Layout) Commit(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != statePrepared {
		return fmt.Errorf("layout %s: Commit without a successful Prepare (or after Commit or Abort)", l.output)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("layout %s: %w", l.output, err)
	}
	if err := l.form.commit(ctx); err != nil {
		return err
	}
	l.state = stateCommitted
	return nil
}

// Abort removes everything not committed: the temporary file or directory,
// or (for an existing directory) the blobs being written. For standard
// output it just stops writing, leaving a stream without the tar trailer.
func (l *Layout) Abort() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.state {
	case statePrepared:
		l.state = stateAborted
		return l.form.abort()
	case stateNew:
		l.state = stateAborted
	}
	return nil
}

// checkGraph refuses what would make a broken or unsafe layout: a digest
// that is not a valid digest (its parts become file names), a negative
// size, an index entry whose content is not in the graph, tags of several
// repositories named by the tag alone (they would replace each other).
func checkGraph(g *graph.Graph, fullRef bool) error {
	for _, n := range g.Nodes() {
		if err := n.Desc.Digest.Validate(); err != nil {
			return fmt.Errorf("node %q: invalid digest: %w", n.Desc.Digest, err)
		}
		if n.Desc.Size < 0 {
			return fmt.Errorf("node %s: negative size %d", n.Desc.Digest, n.Desc.Size)
		}
	}
	tags := g.Tags()
	for _, t := range tags {
		if n := g.Node(t.Desc.Digest); n == nil {
			return fmt.Errorf("tag %s:%s: its manifest %s is not in the graph", t.Repo, t.Name, t.Desc.Digest)
		}
		if !fullRef && t.Repo != tags[0].Repo {
			return fmt.Errorf("tags of %s and %s cannot both be named by the tag alone: name them registry/repository:tag", tags[0].Repo, t.Repo)
		}
	}
	for _, r := range g.Referrers() {
		if n := g.Node(r.Desc.Digest); n == nil {
			return fmt.Errorf("referrer %s is not in the graph", r.Desc.Digest)
		}
	}
	return nil
}

// tarHeader is the header of every member: fixed metadata, so that the same
// content always gives the same bytes. The format is left to archive/tar:
// USTAR, or PAX when a field does not fit (a size of 8 GiB or more, a name
// longer than USTAR allows).
func tarHeader(name string, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  time.Unix(0, 0).UTC(),
	}
}

// encodeHeader returns the bytes archive/tar writes for h (one block, or
// a PAX extended header and then the block): the same bytes a tar.Writer
// writes for h in a stream, since the encoding depends on h alone.
func encodeHeader(h *tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	// The header is written through at once; the writer is dropped
	// without Close, which would complain about the missing content.
	return buf.Bytes(), nil
}

const tarBlock = 512

// padded rounds a member's content size up to whole tar blocks.
func padded(size int64) int64 {
	return (size + tarBlock - 1) / tarBlock * tarBlock
}

// copyBufSize is the buffer of each copy: big enough for few syscalls,
// small enough that many concurrent copies stay cheap.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// CopyExact copies a node's content from r to w: exactly size bytes, and
// then r must end (io.EOF). Reading on to the end matters: the pipeline's
// reader reports a digest mismatch at the end, instead of io.EOF. Never
// more than size bytes reach w. The pipeline spools with it too
// (pipeline/early.go): a spooled part is a sink's part written early.
func CopyExact(w io.Writer, r io.Reader, size int64) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	// Hide any ReaderFrom of w so that the pooled buffer is the one used.
	got, err := io.CopyBuffer(struct{ io.Writer }{w}, io.LimitReader(r, size), *bp)
	if err != nil {
		return err
	}
	if got < size {
		return fmt.Errorf("content ended after %d of %d bytes", got, size)
	}
	var one [1]byte
	k, err := io.ReadAtLeast(r, one[:], 1)
	if k > 0 {
		return fmt.Errorf("content is longer than its size, %d bytes", size)
	}
	if err != io.EOF {
		return err
	}
	return nil
}

// openNode opens a node's bytes for one copy; reads stop once ctx is done.
func openNode(ctx context.Context, open Opener) (io.ReadCloser, error) {
	rc, err := open()
	if err != nil {
		return nil, fmt.Errorf("opening its content: %w", err)
	}
	return struct {
		io.Reader
		io.Closer
	}{ctxReader{ctx: ctx, r: rc}, rc}, nil
}

// ctxReader stops a copy once the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems cannot sync a directory; nothing more can be done.
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		err = nil
	}
	return err
}

// missingError names the nodes that were asked for but not written.
func missingError(output string, missing []digest.Digest) error {
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	const show = 3
	names := make([]string, 0, show)
	for i, d := range missing {
		if i == show {
			break
		}
		names = append(names, d.String())
	}
	more := ""
	if len(missing) > show {
		more = fmt.Sprintf(" and %d more", len(missing)-show)
	}
	return fmt.Errorf("layout %s: %d node(s) were not written: %s%s", output, len(missing), strings.Join(names, ", "), more)
}

// checkNotDir refuses a file output whose name is taken by a directory.
func checkNotDir(output, path string) error {
	st, err := os.Stat(path)
	if err == nil && st.IsDir() {
		return fmt.Errorf("layout %s: is a directory; a %s output is written as a file", output, archive.KindOf(output))
	}
	return nil
}
