package sink

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// streamLayout writes the tar as a stream, one member after the other in
// archive order: compressed to a file (.tar.gz, .tar.zst) or plain to
// standard output. The members and their headers are those of the plain
// tar file form, so a plain tar and a decompressed one are byte-identical.
//
// A stream cannot take back what it wrote: a Write that fails once the
// member has begun breaks the stream, and every later Write and Commit
// fails.
type streamLayout struct {
	output string // as given
	path   string // absolute final path; "" for standard output
	kind   archive.Kind
	stdout io.Writer

	mu      sync.Mutex
	f       *os.File // the temporary file; nil for standard output
	sync    *syncer  // flushes f as it fills; nil for standard output
	tmp     string
	gate    *gateWriter
	bw      *bufio.Writer
	comp    io.WriteCloser // nil for a plain tar
	tw      *tar.Writer
	need    []*graph.Node
	next    int   // index in need of the next Write
	busy    bool  // a Write is running
	broken  error // the failure that broke the stream
	closed  bool  // f is closed
	renamed bool  // the file is in place
	aborted bool
}

// streamBuffer is the buffer in front of the file or standard output.
const streamBuffer = 1 << 20

// errAborted is what writes get once the sink is aborted.
var errAborted = errors.New("sink aborted")

// gateWriter passes writes on until it is stopped; after that nothing more
// reaches the output.
type gateWriter struct {
	w       io.Writer
	stopped atomic.Bool
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.stopped.Load() {
		return 0, errAborted
	}
	return g.w.Write(p)
}

// newZstd is the zstd encoder with every setting that shapes the output
// fixed, so the same input always gives the same bytes. Two encoders let
// one block compress while the next fills; the stream encoder's output
// does not depend on that. No padding: it would be random.
func newZstd(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(2),
		zstd.WithConcurrentBlocks(false),
		zstd.WithWindowSize(8<<20),
		zstd.WithEncoderCRC(true),
		zstd.WithLowerEncoderMem(false),
		zstd.WithZeroFrames(true),
	)
}

func (s *streamLayout) prepare(ctx context.Context, g *graph.Graph, _ ocispec.Index, idxJSON []byte) ([]*graph.Node, Ordering, error) {
	var dest io.Writer = s.stdout
	if s.path != "" {
		if err := checkNotDir(s.output, s.path); err != nil {
			return nil, 0, err
		}
		cleanLeftovers(s.path, nil)
		f, err := createTempFile(s.path)
		if err != nil {
			return nil, 0, fmt.Errorf("layout %s: creating temporary file: %w", s.output, err)
		}
		s.mu.Lock()
		s.f, s.tmp = f, f.Name()
		s.mu.Unlock()
		if err := f.Chmod(0o644); err != nil {
			return nil, 0, fmt.Errorf("layout %s: setting the mode of %s: %w", s.output, s.tmp, err)
		}
		s.sync = newSyncer(f)
		dest = &writebackWriter{f: f, sync: s.sync}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = &gateWriter{w: dest}
	s.bw = bufio.NewWriterSize(s.gate, streamBuffer)
	var tarDest io.Writer = s.bw
	switch s.kind {
	case archive.TarGzip:
		// A fixed header: no name, no comment, modification time 0 ("none"),
		// OS 255 ("unknown"). klauspost's writer encodes a zero time.Time
		// as a nonzero timestamp, so the time is set explicitly.
		gz, err := gzip.NewWriterLevel(s.bw, gzip.DefaultCompression)
		if err != nil {
			return nil, 0, fmt.Errorf("layout %s: %w", s.output, err)
		}
		gz.ModTime = time.Unix(0, 0)
		gz.OS = 255
		s.comp, tarDest = gz, gz
	case archive.TarZstd:
		zw, err := newZstd(s.bw)
		if err != nil {
			return nil, 0, fmt.Errorf("layout %s: %w", s.output, err)
		}
		s.comp, tarDest = zw, zw
	}
	s.tw = tar.NewWriter(tarDest)
	for _, m := range []struct {
		name string
		data []byte
	}{{"oci-layout", archive.LayoutFile}, {"index.json", idxJSON}} {
		if err := s.tw.WriteHeader(tarHeader(m.name, int64(len(m.data)))); err != nil {
			return nil, 0, fmt.Errorf("layout %s: writing %s: %w", s.output, m.name, err)
		}
		if _, err := s.tw.Write(m.data); err != nil {
			return nil, 0, fmt.Errorf("layout %s: writing %s: %w", s.output, m.name, err)
		}
	}
	s.need = g.Nodes()
	return s.need, InOrder, nil
}

func (s *streamLayout) write(ctx context.Context, n *graph.Node, open Opener) error {
	d := n.Desc.Digest
	s.mu.Lock()
	switch {
	case s.aborted || s.closed:
		s.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: sink is closed", s.output, d)
	case s.broken != nil:
		s.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: the stream is broken by an earlier failure: %w", s.output, d, s.broken)
	case s.busy:
		s.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: another Write is running; a stream takes one at a time", s.output, d)
	case s.next >= len(s.need):
		s.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: every node is already written", s.output, d)
	case s.need[s.next].Desc.Digest != d:
		want := s.need[s.next].Desc.Digest
		s.mu.Unlock()
		return fmt.Errorf("layout %s: write %s out of order: the stream needs %s next", s.output, d, want)
	}
	s.busy = true
	tw := s.tw
	s.mu.Unlock()

	// Opening comes first: if it fails, nothing is written and the
	// stream goes on.
	rc, err := openNode(ctx, open)
	if err != nil {
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
		return fmt.Errorf("layout %s: write %s: %w", s.output, d, err)
	}
	err = tw.WriteHeader(tarHeader(archive.BlobPath(d), n.Desc.Size))
	if err == nil {
		err = CopyExact(tw, rc, n.Desc.Size)
	}
	rc.Close()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = false
	if err == nil && s.aborted {
		err = errAborted
	}
	if err != nil {
		s.broken = fmt.Errorf("write %s: %w", d, err)
		return fmt.Errorf("layout %s: write %s: %w", s.output, d, err)
	}
	s.next++
	return nil
}

func (s *streamLayout) commit(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.busy:
		return fmt.Errorf("layout %s: Commit while a Write is running", s.output)
	case s.broken != nil:
		return fmt.Errorf("layout %s: the stream is broken: %w", s.output, s.broken)
	case s.next < len(s.need):
		missing := make([]digest.Digest, 0, len(s.need)-s.next)
		for _, n := range s.need[s.next:] {
			missing = append(missing, n.Desc.Digest)
		}
		return missingError(s.output, missing)
	}
	fail := func(what string, err error) error {
		s.broken = fmt.Errorf("%s: %w", what, err)
		return fmt.Errorf("layout %s: %s: %w", s.output, what, err)
	}
	if err := s.tw.Close(); err != nil {
		return fail("writing the tar trailer", err)
	}
	if s.comp != nil {
		if err := s.comp.Close(); err != nil {
			return fail("finishing compression", err)
		}
	}
	if err := s.bw.Flush(); err != nil {
		return fail("writing", err)
	}
	if s.f == nil {
		return nil // standard output: not ours to close
	}
	if err := s.sync.stop(); err != nil {
		return fail("writing "+s.tmp+" to disk", err)
	}
	if err := s.f.Sync(); err != nil {
		return fail("syncing "+s.tmp, err)
	}
	s.closed = true
	if err := s.f.Close(); err != nil {
		return fail("closing "+s.tmp, err)
	}
	if err := os.Rename(s.tmp, s.path); err != nil {
		return fail("renaming "+s.tmp+" into place", err)
	}
	s.renamed = true
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("layout %s: syncing its directory: %w", s.output, err)
	}
	return nil
}

func (s *streamLayout) abort() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	if s.gate != nil {
		// Nothing more reaches the output: standard output ends here,
		// without the tar trailer, and reads as a truncated archive.
		s.gate.stopped.Store(true)
	}
	if s.f == nil || s.renamed {
		return nil
	}
	if !s.closed {
		s.closed = true
		if s.sync != nil {
			_ = s.sync.stop()
		}
		_ = s.f.Close()
	}
	if err := os.Remove(s.tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("layout %s: removing %s: %w", s.output, s.tmp, err)
	}
	return nil
}
