package source

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/regvault/regvault/archive"
)

// How a stream keeps members it reads before anyone consumes them.
const (
	// layoutStreamMemberMax: a member up to this size is kept in memory
	// (manifests, configs, small blobs) and never piped.
	layoutStreamMemberMax = 1 << 20
	// layoutStreamBufferMax bounds the memory kept; beyond it small
	// members are spooled to files too.
	layoutStreamBufferMax = 64 << 20
)

// layoutStreamInput is a tar stream and what is closed with it.
type layoutStreamInput struct {
	tar        io.Reader // the tar bytes (decompressed)
	raw        io.Reader // the input as given, for a read deadline at Close
	compressed bool
	closers    []func() // run at Close, after the reader has ended
	name       string   // for messages
	notes      *layoutNotes
}

// layoutStream reads a tar once, in order. At open it reads up to
// index.json and oci-layout; then a goroutine goes on through the members,
// moving only while some Fetch is waiting. For each member it reaches:
//   - a small one (manifests, configs) is kept in memory, up to a total
//     bound, then in a spool file: a graph walk reads manifests twice;
//   - a large one that the only waiting Fetch waits for is piped straight
//     to that Fetch's reader: nothing is kept, nothing is written (if the
//     reader is closed before taking a byte, the member is spooled);
//   - any other (nobody waits for it, or others wait for later members)
//     goes to a spool file in spoolDir, so the stream moves on to the
//     members the others wait for.
//
// A member read already is served from memory or its spool file; one that
// was piped is gone. Content not in the archive is known at the end.
type layoutStream struct {
	in       layoutStreamInput
	cr       *archive.CountingReader
	tr       *tar.Reader
	spoolDir string
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when the reader goroutine has ended
	demand   chan struct{} // a Fetch started waiting
	buf      []byte

	mu       sync.Mutex
	members  map[string]*layoutStreamMember
	seen     archive.Members // every member met, to refuse a second one of a name
	waiters  map[string][]*layoutWaiter
	nwait    int
	lastEnd  int64 // end of the last member's data, padded
	ended    bool
	endErr   error // nil: the stream ended cleanly
	pipe     *io.PipeWriter
	files    []string
	spooled  int64
	buffered int64
	closed   bool
	draining bool // read on to the end, dropping members nobody waits for
	exited   bool // the reader goroutine is ending
	orphaned bool // Close returned before the reader goroutine ended

	releaseOnce sync.Once
}

type layoutMemberState int

const (
	layoutLoading layoutMemberState = iota // being read into memory or a spool file
	layoutInMemory
	layoutInFile
	layoutPiping // being piped to one reader
	layoutGone   // was piped, not kept
)

type layoutStreamMember struct {
	size  int64
	state layoutMemberState
	data  []byte
	file  string
}

type layoutWaiter struct {
	size int64 // expected size; -1: any
	ch   chan layoutFetchResult
}

type layoutFetchResult struct {
	rc  io.ReadCloser
	err error
}

func openLayoutStream(ctx context.Context, in layoutStreamInput, spoolDir string) (*layoutStream, error) {
	closeInput := func() {
		for _, c := range in.closers {
			c()
		}
	}
	if fi, err := os.Stat(spoolDir); err != nil || !fi.IsDir() {
		closeInput()
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, fmt.Errorf("spool directory for reading %s: %w", in.name, err)
	}
	s := &layoutStream{
		in:       in,
		spoolDir: spoolDir,
		done:     make(chan struct{}),
		demand:   make(chan struct{}, 1),
		buf:      make([]byte, 64<<10),
		members:  map[string]*layoutStreamMember{},
		seen:     archive.Members{},
		waiters:  map[string][]*layoutWaiter{},
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.cr = &archive.CountingReader{Ctx: s.ctx, R: in.tar}
	s.tr = tar.NewReader(s.cr)
	// Read up to index.json and oci-layout, keeping what comes before
	// them (oras writes blobs/ first).
	for !s.has(layoutIndexName) || !s.has(layoutFileName) {
		if !s.next(false) {
			break
		}
	}
	s.mu.Lock()
	err := s.endErr
	s.mu.Unlock()
	if err != nil {
		s.cancel()
		close(s.done)
		s.release()
		return nil, err
	}
	go s.run()
	return s, nil
}

func (s *layoutStream) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[name]
	return m != nil && m.state == layoutInMemory
}

// reached says whether the stream has met the member name (its content may
// be gone since: it was there).
func (s *layoutStream) reached(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[name] != nil
}

func (s *layoutStream) run() {
	defer func() {
		s.mu.Lock()
		s.exited = true
		orphaned := s.orphaned
		s.mu.Unlock()
		if orphaned {
			s.release() // Close gave up waiting for this goroutine
		}
		close(s.done)
	}()
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	for !ended && s.next(true) {
	}
}

// next reads the next member and disposes of it; with wait it first waits
// until some Fetch is waiting. It returns false once the stream has ended.
func (s *layoutStream) next(wait bool) bool {
	if err := s.ctx.Err(); err != nil {
		s.finish(s.stopErr(err))
		return false
	}
	h, err := s.tr.Next()
	if err == io.EOF {
		err = nil
		if !archive.HasTrailer(s.cr.N, s.lastEnd) {
			err = archive.ErrNoTrailer
		} else if s.in.compressed {
			// Read to the end of the compressed data: gzip and zstd
			// check their checksums there.
			_, err = io.Copy(io.Discard, &archive.CountingReader{Ctx: s.ctx, R: s.in.tar})
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", s.in.name, err)
		}
		s.finish(err)
		return false
	}
	if err != nil {
		s.finish(s.readErr(err))
		return false
	}
	name, kind, err := archive.Member(h)
	if err != nil {
		s.finish(fmt.Errorf("%s: %w", s.in.name, err))
		return false
	}
	s.lastEnd = archive.TarEnd(s.cr.N, h.Size)
	if kind == archive.MemberSkip {
		return true
	}

	s.mu.Lock()
	if err := s.seen.Add(h.Name, name); err != nil {
		s.mu.Unlock()
		s.finish(fmt.Errorf("%s: %w", s.in.name, err))
		return false
	}
	if kind == archive.MemberIgnored {
		s.mu.Unlock()
		s.in.notes.add(archive.IgnoredNote(name))
		return true // archive/tar skips its data
	}
	if name == layoutIndexName || name == layoutFileName {
		s.members[name] = &layoutStreamMember{size: h.Size, state: layoutLoading}
		s.mu.Unlock()
		limit := int64(archive.MaxIndexFile)
		if name == layoutFileName {
			limit = archive.MaxLayoutFile
		}
		if h.Size > limit {
			s.finish(fmt.Errorf("%s: %s is larger than %d bytes", s.in.name, name, limit))
			return false
		}
		return s.toMemory(name, h.Size, nil)
	}
	if wait {
		for s.nwait == 0 && !s.draining {
			if s.closed {
				s.mu.Unlock()
				s.finish(errLayoutClosed)
				return false
			}
			s.mu.Unlock()
			select {
			case <-s.demand:
			case <-s.ctx.Done():
				s.finish(s.stopErr(s.ctx.Err()))
				return false
			}
			s.mu.Lock()
		}
	}
	ws := s.waiters[name]
	if s.draining && len(ws) == 0 {
		// Nobody will want it: archive/tar skips its data.
		s.members[name] = &layoutStreamMember{size: h.Size, state: layoutGone}
		s.mu.Unlock()
		return true
	}
	delete(s.waiters, name)
	s.nwait -= len(ws)
	s.members[name] = &layoutStreamMember{size: h.Size, state: layoutLoading}
	small := h.Size <= layoutStreamMemberMax
	switch {
	case small && s.buffered+h.Size <= layoutStreamBufferMax:
		s.buffered += h.Size
		s.mu.Unlock()
		return s.toMemory(name, h.Size, ws)
	case !small && len(ws) == 1 && s.nwait == 0 && ws[0].size == h.Size && !s.closed:
		return s.toPipe(name, h.Size, ws[0]) // unlocks
	default:
		s.mu.Unlock()
		return s.toFile(name, h.Size, ws, nil)
	}
}

// toMemory reads the current member into memory and serves its waiters.
func (s *layoutStream) toMemory(name string, size int64, ws []*layoutWaiter) bool {
	data := make([]byte, size)
	if _, err := io.ReadFull(s.tr, data); err != nil {
		s.fail(name, ws, s.readErr(err))
		return false
	}
	s.mu.Lock()
	m := s.members[name]
	m.data, m.state = data, layoutInMemory
	s.serve(name, m, ws)
	s.mu.Unlock()
	return true
}

// toFile copies the current member to a spool file and serves its
// waiters. prefix is the start of the member, read already.
func (s *layoutStream) toFile(name string, size int64, ws []*layoutWaiter, prefix []byte) bool {
	f, err := os.CreateTemp(s.spoolDir, "regvault-spool-*")
	if err != nil {
		s.fail(name, ws, fmt.Errorf("spooling %s of %s: %w", layoutMemberDigest(name), s.in.name, err))
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		f.Close()
		os.Remove(f.Name())
		s.fail(name, ws, errLayoutClosed)
		return false
	}
	s.files = append(s.files, f.Name())
	s.mu.Unlock()
	k, err := f.Write(prefix) // before s.buf is reused: prefix may be in it
	n := int64(k)
	if err == nil {
		var m int64
		m, err = io.CopyBuffer(f, io.LimitReader(s.tr, size-n), s.buf)
		n += m
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n < size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		s.fail(name, ws, s.readErr(err))
		return false
	}
	s.mu.Lock()
	m := s.members[name]
	m.file, m.state = f.Name(), layoutInFile
	s.spooled += size
	s.serve(name, m, ws)
	s.mu.Unlock()
	return true
}

// toPipe hands the current member to its only waiter through a pipe. It is
// called with s.mu held and unlocks it.
func (s *layoutStream) toPipe(name string, size int64, w *layoutWaiter) bool {
	m := s.members[name]
	m.state = layoutPiping
	pr, pw := io.Pipe()
	s.pipe = pw
	w.ch <- layoutFetchResult{rc: pr}
	s.mu.Unlock()

	sent, _, pending, err := s.copyToPipe(pw, size)
	if err == nil && pending != nil && sent == 0 {
		// The reader left before taking a byte (its Fetch was
		// cancelled): nothing is lost yet, keep the member after all.
		s.mu.Lock()
		s.pipe = nil
		m.state = layoutLoading
		s.mu.Unlock()
		return s.toFile(name, size, nil, pending) // sent == 0: pending is all that was read
	}

	s.mu.Lock()
	s.pipe = nil
	m.state = layoutGone
	s.serve(name, m, nil) // Fetches that came meanwhile: gone
	s.mu.Unlock()
	if err != nil {
		pw.CloseWithError(err)
		s.finish(err)
		return false
	}
	pw.Close()
	return true
}

// copyToPipe copies the size bytes of the current member to pw. It returns
// how many bytes the reader took (sent) and how many were read from the
// stream (read); pending, not nil when the reader closed the pipe early,
// holds the bytes read but not taken (the rest of the member is skipped).
// A stream that fails is an error.
func (s *layoutStream) copyToPipe(pw *io.PipeWriter, size int64) (sent, read int64, pending []byte, err error) {
	for read < size {
		p := s.buf
		if int64(len(p)) > size-read {
			p = p[:size-read]
		}
		n, rerr := s.tr.Read(p)
		read += int64(n)
		if n > 0 {
			k, werr := pw.Write(p[:n])
			sent += int64(k)
			if werr != nil {
				return sent, read, p[k:n], nil // the reader is gone
			}
		}
		if rerr == io.EOF && read < size {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil && rerr != io.EOF {
			return sent, read, nil, s.readErr(rerr)
		}
	}
	return sent, read, nil, nil
}

// serve answers the Fetches waiting for member name: ws (taken from the
// waiters when the member was reached) and those that came since. Called
// with s.mu held.
func (s *layoutStream) serve(name string, m *layoutStreamMember, ws []*layoutWaiter) {
	ws = append(ws, s.waiters[name]...)
	s.nwait -= len(s.waiters[name])
	delete(s.waiters, name)
	for _, w := range ws {
		rc, err := s.reader(name, m, w.size)
		w.ch <- layoutFetchResult{rc: rc, err: err}
	}
}

// reader opens a member that has been reached. Called with s.mu held.
func (s *layoutStream) reader(name string, m *layoutStreamMember, size int64) (io.ReadCloser, error) {
	if size >= 0 && size != m.size {
		return nil, layoutSizeError(name, m.size, size)
	}
	switch m.state {
	case layoutInMemory:
		return io.NopCloser(bytes.NewReader(m.data)), nil
	case layoutInFile:
		f, err := os.Open(m.file)
		if err != nil {
			return nil, fmt.Errorf("reading spooled %s: %w", layoutMemberDigest(name), err)
		}
		return f, nil
	default:
		return nil, fmt.Errorf("%s was read from the stream %s by another reader and not kept: a streamed backup is read once", layoutMemberDigest(name), s.in.name)
	}
}

// fail ends the stream with err while reading member name.
func (s *layoutStream) fail(name string, ws []*layoutWaiter, err error) {
	s.mu.Lock()
	delete(s.members, name)
	for _, w := range ws {
		w.ch <- layoutFetchResult{err: err}
	}
	s.mu.Unlock()
	s.finish(err)
}

// finish records the end of the stream (err nil: a clean end) and answers
// every waiting Fetch: with err, or "not found" after a clean end.
func (s *layoutStream) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended, s.endErr = true, err
	for name, ws := range s.waiters {
		for _, w := range ws {
			w.ch <- layoutFetchResult{err: s.endError(name)}
		}
	}
	s.waiters = map[string][]*layoutWaiter{}
	s.nwait = 0
}

// endError is the answer for a member not in the ended stream. Called with
// s.mu held.
func (s *layoutStream) endError(name string) error {
	if s.endErr == nil {
		return layoutNotFound(name)
	}
	return fmt.Errorf("fetching %s: %w", layoutMemberDigest(name), s.endErr)
}

func (s *layoutStream) readErr(err error) error {
	if s.ctx.Err() != nil {
		return s.stopErr(s.ctx.Err())
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: the archive is truncated: %w", s.in.name, err)
	}
	return fmt.Errorf("reading %s: %w", s.in.name, err)
}

func (s *layoutStream) stopErr(ctxErr error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errLayoutClosed
	}
	return ctxErr
}

// open serves Fetch: from what was read, or by waiting for the stream.
func (s *layoutStream) open(ctx context.Context, name string, size int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errLayoutClosed
	}
	m := s.members[name]
	switch {
	case m != nil && m.state != layoutLoading && m.state != layoutPiping:
		rc, err := s.reader(name, m, size)
		s.mu.Unlock()
		return rc, err
	case m == nil && s.ended:
		err := s.endError(name)
		s.mu.Unlock()
		return nil, err
	}
	w := &layoutWaiter{size: size, ch: make(chan layoutFetchResult, 1)}
	s.waiters[name] = append(s.waiters[name], w)
	s.nwait++
	s.mu.Unlock()
	select {
	case s.demand <- struct{}{}:
	default:
	}
	select {
	case r := <-w.ch:
		return r.rc, r.err
	case <-ctx.Done():
		s.mu.Lock()
		removed := false
		ws := s.waiters[name]
		for i, x := range ws {
			if x == w {
				s.waiters[name] = append(ws[:i:i], ws[i+1:]...)
				if len(s.waiters[name]) == 0 {
					delete(s.waiters, name)
				}
				s.nwait--
				removed = true
				break
			}
		}
		s.mu.Unlock()
		if !removed {
			// Answered meanwhile (under s.mu): give it back.
			if r := <-w.ch; r.rc != nil {
				r.rc.Close()
			}
		}
		return nil, ctx.Err()
	}
}

// stat checks a member the stream has reached (a member not reached yet
// may come later: nil; after the end of the stream, it is missing).
func (s *layoutStream) stat(name string, size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[name]
	switch {
	case m == nil && s.ended:
		return s.endError(name)
	case m == nil:
		return nil
	case size >= 0 && m.size != size:
		return layoutSizeError(name, m.size, size)
	}
	return nil
}

// drain reads the rest of the stream, dropping the members nobody waits
// for, and returns how the stream ended.
func (s *layoutStream) drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	select {
	case s.demand <- struct{}{}:
	default:
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endErr
}

// small returns oci-layout or index.json, read at open.
func (s *layoutStream) small(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.members[name]; m != nil && m.state == layoutInMemory {
		return m.data, nil
	}
	if s.endErr != nil {
		return nil, s.endErr
	}
	return nil, layoutNotFound(name)
}

func (s *layoutStream) spooledBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spooled
}

func (s *layoutStream) bufferedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buffered
}

// close stops the reader goroutine, closes the input and removes the spool
// files.
func (s *layoutStream) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	pipe := s.pipe
	s.mu.Unlock()
	s.cancel()
	if pipe != nil {
		pipe.CloseWithError(errLayoutClosed)
	}
	select {
	case <-s.done:
		return s.release()
	case <-time.After(100 * time.Millisecond):
	}
	// Blocked reading the input: a pipe can be told to give up.
	if d, ok := s.in.raw.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now())
	}
	select {
	case <-s.done:
		return s.release()
	case <-time.After(time.Second):
	}
	// Still blocked on an input that cannot be interrupted (a stalled
	// producer): the reader goroutine releases the input when that read
	// returns; the spool files go now.
	s.mu.Lock()
	if s.exited {
		s.mu.Unlock()
		<-s.done
		return s.release()
	}
	s.orphaned = true
	s.mu.Unlock()
	return s.removeSpool()
}

// release closes the input and removes the spool files, once the reader
// goroutine has ended.
func (s *layoutStream) release() error {
	s.releaseOnce.Do(func() {
		for _, c := range s.in.closers {
			c()
		}
	})
	return s.removeSpool()
}

// removeSpool removes the spool files and forgets what was read.
func (s *layoutStream) removeSpool() error {
	s.mu.Lock()
	files := s.files
	s.files = nil
	s.members = map[string]*layoutStreamMember{}
	s.mu.Unlock()
	var errs []error
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
