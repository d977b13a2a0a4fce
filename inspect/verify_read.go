package inspect

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/archive"
)

// Names of the two files of an OCI image layout besides its blobs.
const (
	layoutFileName  = archive.LayoutFileName
	indexFileName   = archive.IndexFileName
	chunkSize       = 1 << 20  // a read of a large member
	inlineMax       = 64 << 10 // members up to this size are hashed by the reader itself
	inputBufferSize = 1 << 20
)

// Progress counts what verify has read, for a progress bar; safe to read
// while Verify runs.
type Progress struct {
	// Total is the number of bytes to read when known (the file's size,
	// or the blobs' total in a directory); 0 while unknown.
	Total atomic.Int64
	// Read is the number of bytes read so far: of the file (compressed
	// bytes for a compressed tar), or of the blobs in a directory.
	Read atomic.Int64
}

// blobInfo is one blob found in the backup, and what reading it showed.
type blobInfo struct {
	name   string
	digest digest.Digest // its name as a digest
	size   int64         // its size in the backup (the tar header's, the file's)
	read   int64         // bytes read
	actual digest.Digest // the digest of its bytes, when all were read
	err    error         // reading failed (a truncated archive, an I/O error)

	// summary is the parsed manifest, for a blob of at most maxManifest
	// bytes that is a JSON object (manifests, configs).
	summary    *manifestSummary
	summaryErr error
	isJSON     bool
}

// reading is what one pass over the backup found.
type reading struct {
	path string
	kind string
	size int64 // of the file; -1 unknown

	progress *Progress
	content  atomic.Int64 // blob bytes read (decompressed)

	mu           sync.Mutex
	layoutFile   []byte
	hasLayout    bool
	index        []byte
	hasIndex     bool
	blobs        map[digest.Digest]*blobInfo
	errors       []string // what stops restore from reading the backup at all
	warnings     []string
	truncated    bool
	truncatedAt  string // the member being read when the archive ended
	invalidNames int
	seen         archive.Members // the members of a tar, each name once
	notes        []string        // what readers ignore without refusing the backup
}

func (r *reading) notef(format string, a ...any) {
	r.mu.Lock()
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

func (r *reading) errorf(format string, a ...any) {
	r.mu.Lock()
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

func (r *reading) warnf(format string, a ...any) {
	r.mu.Lock()
	r.warnings = append(r.warnings, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

// blobName parses blobs/<alg>/<encoded>. ok is false for a name that is
// not of that form; err is set for one of that form that is not a valid
// digest (an unknown algorithm, a wrong length).
func blobName(name string) (d digest.Digest, ok bool, err error) {
	if !archive.IsBlobName(name) {
		return "", false, nil
	}
	parts := strings.Split(name, "/")
	d = digest.Digest(parts[1] + ":" + parts[2])
	if err := d.Validate(); err != nil {
		return d, true, err
	}
	return d, true, nil
}

// addBlob records a blob member; false when the name is taken already.
func (r *reading) addBlob(b *blobInfo) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.blobs[b.digest]; dup {
		return false
	}
	r.blobs[b.digest] = b
	return true
}

// hasher hashes one blob as its bytes arrive.
type hasher struct {
	b    *blobInfo
	h    hash.Hash
	keep []byte // the bytes of a small blob, to parse
}

func newHasher(b *blobInfo) *hasher {
	hs := &hasher{b: b, h: b.digest.Algorithm().Hash()}
	if b.size <= maxManifest {
		hs.keep = make([]byte, 0, min(b.size, inlineMax))
	}
	return hs
}

func (hs *hasher) write(p []byte) {
	hs.h.Write(p)
	if hs.keep != nil {
		if hs.b.read == 0 && !looksLikeJSON(p) {
			hs.keep = nil // not a manifest: nothing to parse
		} else {
			hs.keep = append(hs.keep, p...)
		}
	}
	hs.b.read += int64(len(p))
}

// looksLikeJSON says whether the first bytes of a blob start a JSON
// object.
func looksLikeJSON(p []byte) bool {
	t := bytes.TrimLeft(p, " \t\r\n")
	return len(t) == 0 || t[0] == '{'
}

// done records the result; err is how reading ended (nil: all bytes).
func (hs *hasher) done(err error) {
	b := hs.b
	if err == nil && b.read != b.size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
		return
	}
	b.actual = digest.NewDigestFromBytes(b.digest.Algorithm(), hs.h.Sum(nil))
	if hs.keep != nil {
		if t := bytes.TrimLeft(hs.keep, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			b.isJSON = true
			b.summary, b.summaryErr = parseSummary(hs.keep)
		}
	}
}

// ---- archives: read once, in order ----

// readStream reads a tar, plain or compressed (found from its first
// bytes), from in to its end: every member once, in archive order. The
// reader decompresses and walks the tar; blobs larger than inlineMax are
// hashed by up to workers goroutines meanwhile.
func (r *reading) readStream(ctx context.Context, in io.Reader, workers int) error {
	raw := &archive.CountingReader{Ctx: ctx, R: in, Also: &r.progress.Read}
	br := bufio.NewReaderSize(raw, inputBufferSize)
	head, _ := br.Peek(512)
	var (
		tarIn      io.Reader = br
		compressed bool
	)
	switch {
	case archive.IsTar(head):
		if r.kind == "" {
			r.kind = "tar"
		}
	case archive.IsGzip(head):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: reading gzip: %w", r.path, err)
		}
		defer zr.Close()
		tarIn, compressed = zr, true
		if r.kind == "" {
			r.kind = "tar.gz"
		}
	case archive.IsZstd(head):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(0))
		if err != nil {
			return fmt.Errorf("%s: reading zstd: %w", r.path, err)
		}
		defer zr.Close()
		tarIn, compressed = zr, true
		if r.kind == "" {
			r.kind = "tar.zst"
		}
	case len(head) == 0:
		return fmt.Errorf("%s: empty input; %s", r.path, archive.FormsHint)
	default:
		return fmt.Errorf("%s: not a backup archive (neither a tar nor a gzip- or zstd-compressed tar); %s", r.path, archive.FormsHint)
	}
	if r.kind == "stdin" && compressed {
		if _, ok := tarIn.(*gzip.Reader); ok {
			r.kind = "stdin, tar.gz"
		} else {
			r.kind = "stdin, tar.zst"
		}
	} else if r.kind == "stdin" {
		r.kind = "stdin, tar"
	}
	if compressed {
		tb := bufio.NewReaderSize(tarIn, inputBufferSize)
		head, err := tb.Peek(512)
		if !archive.IsTar(head) {
			if err != nil && err != io.EOF {
				return fmt.Errorf("%s: decompressing: %w", r.path, err)
			}
			return fmt.Errorf("%s: the compressed data is not a tar; %s", r.path, archive.FormsHint)
		}
		tarIn = tb
	}
	cr := &archive.CountingReader{Ctx: ctx, R: tarIn}
	tr := tar.NewReader(cr)

	p := newHashPool(workers)
	defer p.wait()
	var lastEnd int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if !archive.HasTrailer(cr.N, lastEnd) {
				r.truncate("", "the tar ends without its end-of-archive marker")
				return nil
			}
			if compressed {
				// gzip and zstd check their checksums at the end.
				if _, err := io.Copy(io.Discard, cr); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					r.errorf("the compressed data is damaged after the tar's end: %v", err)
				}
			}
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.readFailed("", err)
			return nil
		}
		offset := cr.N
		lastEnd = archive.TarEnd(offset, h.Size)
		name, isBlob, ok := r.member(h)
		if !ok {
			continue // skipped, or reported
		}
		if !isBlob {
			if !r.metaMember(name, h.Size, tr) {
				return ctx.Err()
			}
			continue
		}
		b := r.blobMember(name, h.Name, h.Size)
		if b == nil {
			continue
		}
		if err := r.readMember(ctx, tr, b, p); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.readFailed(name, err)
			return nil
		}
	}
}

// member checks a tar member's type and name by the rules every reader
// of archives follows (archive.Member): what restore refuses is an error
// here. ok is false for members to skip (directories, the docker save
// files restore ignores) and for those reported.
func (r *reading) member(h *tar.Header) (name string, isBlob, ok bool) {
	name, kind, err := archive.Member(h)
	if err != nil {
		r.errorf("%v: restore refuses it", err)
		return "", false, false
	}
	if kind != archive.MemberSkip {
		r.mu.Lock()
		err = r.seen.Add(h.Name, name)
		r.mu.Unlock()
		if err != nil {
			r.errorf("%v: restore refuses it", err)
			return "", false, false
		}
	}
	switch kind {
	case archive.MemberSkip:
		return "", false, false
	case archive.MemberIgnored:
		r.notef("%s", archive.IgnoredNote(name))
		return "", false, false
	}
	return name, kind == archive.MemberBlob, true
}

func (r *reading) invalidName(name string, err error) {
	r.mu.Lock()
	r.invalidNames++
	r.mu.Unlock()
	r.warnf("%s is not named by a valid digest (%v): it cannot be checked, and nothing can refer to it", name, err)
}

// truncate records that the archive ends early, while reading member
// (""; between members).
func (r *reading) truncate(member, why string) {
	r.mu.Lock()
	r.truncated = true
	r.truncatedAt = member
	r.mu.Unlock()
	if member != "" {
		r.errorf("the archive is truncated: it ends inside %s (%s); everything after it is missing", member, why)
	} else {
		r.errorf("the archive is truncated: %s", why)
	}
}

// readFailed records how reading the archive ended early.
func (r *reading) readFailed(member string, err error) {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		r.truncate(member, "the data ends early")
		return
	}
	where := ""
	if member != "" {
		where = " at " + member
	}
	r.mu.Lock()
	r.truncated = true
	r.truncatedAt = member
	r.mu.Unlock()
	r.errorf("reading the archive failed%s: %v; everything after it is unread", where, err)
}

// hashPool hashes large blobs on a few goroutines while the reader goes on.
type hashPool struct {
	free chan []byte   // buffers to read into
	slot chan struct{} // one per running hasher
	made int           // buffers allocated so far, up to cap(free)
	wg   sync.WaitGroup
}

func newHashPool(workers int) *hashPool {
	workers = max(workers, 1)
	return &hashPool{free: make(chan []byte, 4*workers+4), slot: make(chan struct{}, workers)}
}

// buffer returns a free buffer, allocating one while fewer than the
// pool's size exist. Only the reader calls it.
func (p *hashPool) buffer() []byte {
	select {
	case b := <-p.free:
		return b
	default:
	}
	if p.made < cap(p.free) {
		p.made++
		return make([]byte, chunkSize)
	}
	return <-p.free
}

func (p *hashPool) wait() { p.wg.Wait() }

// readMember reads the current tar member's bytes into b's hash: small
// ones here, large ones by a pool goroutine fed chunk by chunk. An error
// is a failed read (the member's result records it too).
func (r *reading) readMember(ctx context.Context, tr io.Reader, b *blobInfo, p *hashPool) error {
	hs := newHasher(b)
	if b.size <= inlineMax {
		buf := make([]byte, b.size)
		n, err := io.ReadFull(tr, buf)
		hs.write(buf[:n])
		r.content.Add(int64(n))
		hs.done(err)
		return err
	}
	select {
	case p.slot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	chunks := make(chan []byte, cap(p.free))
	errc := make(chan error, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.slot }()
		for c := range chunks {
			hs.write(c)
			p.free <- c[:cap(c)]
		}
		hs.done(<-errc)
	}()
	var err error
	for left := b.size; left > 0 && err == nil; {
		buf := p.buffer()
		n, rerr := io.ReadFull(tr, buf[:min(int64(len(buf)), left)])
		left -= int64(n)
		r.content.Add(int64(n))
		if n > 0 {
			chunks <- buf[:n]
		} else {
			p.free <- buf
		}
		err = rerr
	}
	close(chunks)
	errc <- err
	return err
}

// ---- directories: every blob file, on several goroutines ----

func (r *reading) readDir(ctx context.Context, workers int) error {
	root, err := os.OpenRoot(r.path)
	if err != nil {
		return fmt.Errorf("opening backup: %w", err)
	}
	defer root.Close()
	for _, f := range []struct {
		name  string
		limit int64
		data  *[]byte
		has   *bool
	}{{layoutFileName, archive.MaxLayoutFile, &r.layoutFile, &r.hasLayout}, {indexFileName, archive.MaxIndexFile, &r.index, &r.hasIndex}} {
		data, err := readRootFile(root, f.name, f.limit)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			r.errorf("%s: %v", f.name, err)
		default:
			*f.data, *f.has = data, true
		}
	}
	top, err := readRootDir(root, ".")
	if err != nil {
		return fmt.Errorf("reading backup %s: %w", r.path, err)
	}
	for _, e := range top {
		if !e.IsDir() && (e.Name() == archive.DockerManifestName || e.Name() == archive.DockerRepositoriesName) {
			r.notef("%s", archive.IgnoredNote(e.Name()))
			continue
		}
		if e.Name() != layoutFileName && e.Name() != indexFileName && e.Name() != "blobs" {
			r.warnf("%s holds %s, which is not part of an OCI image layout (restore ignores it)", r.path, e.Name())
		}
	}
	var list []*blobInfo
	algs, err := readRootDir(root, "blobs")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading backup %s: %w", r.path, err)
	}
	for _, a := range algs {
		dir := "blobs/" + a.Name()
		if !a.IsDir() || !archive.IsAlgDir(dir) {
			r.warnf("%s/%s is not a blob directory (restore ignores it)", r.path, dir)
			continue
		}
		files, err := readRootDir(root, dir)
		if err != nil {
			r.errorf("reading %s: %v", dir, err)
			continue
		}
		for _, f := range files {
			name := dir + "/" + f.Name()
			d, ok, derr := blobName(name)
			switch {
			case !ok || f.IsDir():
				r.warnf("%s/%s is not a blob (restore ignores it)", r.path, name)
				continue
			case derr != nil:
				r.invalidName(name, derr)
				continue
			}
			list = append(list, &blobInfo{name: name, digest: d, size: -1})
		}
	}
	// Sizes first, for the progress total.
	var total int64
	for _, b := range list {
		if fi, err := root.Stat(b.name); err == nil {
			b.size = fi.Size()
			total += fi.Size()
		}
	}
	r.progress.Total.Store(total)
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })

	for _, b := range list {
		r.addBlob(b)
	}
	return r.hashAll(ctx, list, workers, func(b *blobInfo) (io.ReadCloser, error) { return openBlobFile(root, b) })
}

// hashAll reads the blobs of list on workers goroutines, in list's order,
// each from the reader open returns.
func (r *reading) hashAll(ctx context.Context, list []*blobInfo, workers int, open func(*blobInfo) (io.ReadCloser, error)) error {
	jobs := make(chan *blobInfo)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			buf := make([]byte, chunkSize)
			for b := range jobs {
				rc, err := open(b)
				if err != nil {
					b.err = err
					continue
				}
				r.hashFrom(ctx, rc, b, buf)
				rc.Close()
			}
		})
	}
	for _, b := range list {
		select {
		case jobs <- b:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	return ctx.Err()
}

// openBlobFile opens a blob file of a directory, setting its size.
func openBlobFile(root *os.Root, b *blobInfo) (io.ReadCloser, error) {
	f, fi, err := archive.OpenFile(root, b.name)
	if err != nil {
		return nil, err
	}
	b.size = fi.Size()
	return f, nil
}

// hashFrom reads b's bytes from rc, to its end, into its hash.
func (r *reading) hashFrom(ctx context.Context, rc io.Reader, b *blobInfo, buf []byte) {
	hs := newHasher(b)
	cr := &archive.CountingReader{Ctx: ctx, R: rc, Also: &r.progress.Read}
	for {
		n, err := cr.Read(buf)
		hs.write(buf[:n])
		r.content.Add(int64(n))
		if err == io.EOF {
			hs.done(nil)
			return
		}
		if err != nil {
			hs.done(err)
			return
		}
	}
}

// ---- plain tar files: the headers first, then the blobs in parallel ----

// readTarFile reads a plain tar file: its headers in one pass that skips
// the data, then every blob once, on several goroutines in file order (a
// single large member is hashed on one).
func (r *reading) readTarFile(ctx context.Context, f *os.File, workers int) error {
	sc := &archive.SeekingReader{CountingReader: archive.CountingReader{Ctx: ctx, R: f, Also: &r.progress.Read}, S: f}
	tr := tar.NewReader(sc)
	var (
		list    []*blobInfo
		offsets = map[*blobInfo]int64{}
		lastEnd int64
	)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if !archive.HasTrailer(sc.N, lastEnd) {
				r.truncate("", "the tar ends without its end-of-archive marker")
			}
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !r.truncated {
				r.readFailed("", err)
			}
			break
		}
		offset := sc.N
		lastEnd = archive.TarEnd(offset, h.Size)
		name, isBlob, ok := r.member(h)
		if !ok {
			continue
		}
		short := offset+h.Size > r.size
		if !isBlob {
			if short {
				r.truncate(name, "the data ends early")
				break
			}
			if !r.metaMember(name, h.Size, tr) {
				break
			}
			continue
		}
		b := r.blobMember(name, h.Name, h.Size)
		if b == nil {
			continue
		}
		if short {
			// Cut off inside this member: it is incomplete, and what
			// would have come after it is missing.
			b.read = max(r.size-offset, 0)
			b.err = io.ErrUnexpectedEOF
			r.truncate(name, "the data ends early")
			break
		}
		offsets[b] = offset
		list = append(list, b)
	}
	return r.hashAll(ctx, list, workers, func(b *blobInfo) (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(f, offsets[b], b.size)), nil
	})
}

func readRootFile(root *os.Root, name string, limit int64) ([]byte, error) {
	f, _, err := archive.OpenFile(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return archive.ReadAllLimit(f, limit)
}

func readRootDir(root *os.Root, name string) ([]fs.DirEntry, error) {
	// Anything but a directory (a named pipe would block the open) is
	// refused before it is opened.
	if fi, err := root.Stat(name); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", name)
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// setMeta records the bytes of oci-layout or index.json.
// metaMember reads oci-layout or index.json, size bytes from a tar
// member, within the size allowed for it, and records it. It returns false
// when the read failed: the archive can be read no further.
func (r *reading) metaMember(name string, size int64, tr io.Reader) bool {
	limit := int64(archive.MaxIndexFile)
	if name == layoutFileName {
		limit = archive.MaxLayoutFile
	}
	if size > limit {
		r.errorf("%s is %d bytes, larger than the %d bytes allowed", name, size, limit)
		return true
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(tr, data); err != nil {
		r.readFailed(name, err)
		return false
	}
	r.setMeta(name, data)
	return true
}

func (r *reading) setMeta(name string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == layoutFileName {
		r.layoutFile, r.hasLayout = data, true
	} else {
		r.index, r.hasIndex = data, true
	}
}

// blobMember registers a blobs/<alg>/<hex> member; nil (with the error
// recorded) for an invalid name or a member seen before.
func (r *reading) blobMember(name, raw string, size int64) *blobInfo {
	d, _, derr := blobName(name)
	if derr != nil {
		r.invalidName(name, derr)
		return nil
	}
	b := &blobInfo{name: name, digest: d, size: size}
	r.addBlob(b) // a second member of the name was refused in member
	return b
}
