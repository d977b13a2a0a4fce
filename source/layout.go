package source

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
)

// LayoutKind is the form a backup was found in.
type LayoutKind int

const (
	LayoutDirectory LayoutKind = iota // an OCI layout directory
	LayoutTar                         // a plain tar file: read with random access (a stream when the file is a pipe)
	LayoutTarGzip                     // a gzip-compressed tar file, read as a stream
	LayoutTarZstd                     // a zstd-compressed tar file, read as a stream
	LayoutStdin                       // a tar on standard input (plain, gzip or zstd), read as a stream
)

func (k LayoutKind) String() string {
	switch k {
	case LayoutDirectory:
		return "directory"
	case LayoutTar:
		return "tar"
	case LayoutTarGzip:
		return "tar.gz"
	case LayoutTarZstd:
		return "tar.zst"
	case LayoutStdin:
		return "stdin"
	}
	return fmt.Sprintf("LayoutKind(%d)", int(k))
}

// Layout reads a backup: an OCI image layout as a directory, a tar file, a
// compressed tar file or a tar on standard input. It is a Source for
// restore and verify. A directory or a plain tar file is read with random
// access, concurrently; a compressed tar and standard input are streams,
// read once from start to end (see Fetch).
type Layout struct {
	path    string
	kind    LayoutKind
	size    int64
	index   ocispec.Index
	entries []archive.Entry
	backend layoutBackend
	stream  *layoutStream // nil unless streaming

	mu            sync.Mutex
	manifests     map[digest.Digest][]byte               // manifest bytes read so far
	manifestBytes int64                                  // their total size
	referrers     map[digest.Digest][]ocispec.Descriptor // by subject, once built
	refRepos      map[digest.Digest][]string             // a referrer's repositories; nil entry: unknown
	closed        bool

	notes layoutNotes

	lookupOnce sync.Once
	lookup     layoutLookup
	refBuild   sync.Mutex // held while the referrers are found
	refBuilds  int        // how often they were (under refBuild), for a test
}

// layoutNotes are what a reader says about an archive without refusing
// it (members it ignores); safe for concurrent use.
type layoutNotes struct {
	mu   sync.Mutex
	list []string
}

func (n *layoutNotes) add(s string) {
	n.mu.Lock()
	n.list = append(n.list, s)
	n.mu.Unlock()
}

// Notes are what reading the backup has found worth saying so far without
// refusing it: members of a docker save archive it ignores. A stream adds
// to them as it reads on.
func (l *Layout) Notes() []string {
	l.notes.mu.Lock()
	defer l.notes.mu.Unlock()
	return slices.Clone(l.notes.list)
}

// layoutLookup indexes the entries, built once, so that resolving each of
// n tags costs the entries of that tag, not all n: planning a restore of
// one repository with 100,000 tags stays linear in its tags.
type layoutLookup struct {
	// byName: "<repo>:<tag>" → indexes into entries, in order, under the
	// entry's full repository name, its path, and "" for a tag-only entry
	// (the names archive.RepoMatch accepts).
	byName  map[string][]int
	tagOnly bool // no tag entry names its repository
	// scanned counts the entries Resolve looked at, for the test that
	// planning is linear.
	scanned atomic.Int64
}

// entryLookup returns the lookup of the entries, building it on first use.
func (l *Layout) entryLookup() *layoutLookup {
	l.lookupOnce.Do(func() {
		lk := &l.lookup
		lk.byName = map[string][]int{}
		lk.tagOnly = true
		for i, e := range l.entries {
			if !e.Referrer && e.Repo != "" {
				lk.tagOnly = false
			}
			if e.Tag == "" {
				continue
			}
			lk.byName[e.Repo+":"+e.Tag] = append(lk.byName[e.Repo+":"+e.Tag], i)
			if path := archive.RepoPath(e.Repo); path != e.Repo {
				lk.byName[path+":"+e.Tag] = append(lk.byName[path+":"+e.Tag], i)
			}
		}
	})
	return &l.lookup
}

// candidates are the indexes of the entries that may name repo:tag, in
// the order of index.json.
func (lk *layoutLookup) candidates(repo, tag string) []int {
	out := slices.Concat(lk.byName[":"+tag], lk.byName[repo+":"+tag])
	slices.Sort(out)
	return slices.Compact(out)
}

// layoutBackend serves the bytes of layout members.
type layoutBackend interface {
	// open returns the member name's bytes, unverified. A member whose
	// size is not size is an error.
	open(ctx context.Context, name string, size int64) (io.ReadCloser, error)
	// close releases the backend; a stream's reader ends.
	close() error
	// stat checks, without reading it, that member name is there with
	// size bytes (size -1: any). A stream checks only what it has read.
	stat(name string, size int64) error
}

// OpenLayout opens the backup at path; "-" reads it from stdin. The form
// is found from the content, not the name: a directory, a plain tar, or a
// gzip- or zstd-compressed tar. spoolDir is where a streamed archive keeps
// the members it has read ahead of the consumers that want them ("" for
// the system's temporary directory); nothing is written anywhere else.
// ctx bounds the opening and the life of the stream reader; Close releases
// everything.
func OpenLayout(ctx context.Context, path string, stdin io.Reader, spoolDir string) (*Layout, error) {
	if spoolDir == "" {
		spoolDir = os.TempDir()
	}
	l := &Layout{path: path, size: -1, manifests: map[digest.Digest][]byte{}}
	var err error
	if path == "-" {
		if stdin == nil {
			return nil, errors.New("reading the backup from standard input: no input")
		}
		l.kind = LayoutStdin
		if f, ok := stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				l.size = fi.Size()
			}
		}
		err = l.openStream(ctx, stdin, nil, spoolDir)
	} else {
		err = l.openPath(ctx, spoolDir)
	}
	if err != nil {
		return nil, err
	}
	if err := l.readIndex(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Layout) name() string {
	if l.path == "-" {
		return "standard input"
	}
	return l.path
}

func (l *Layout) openPath(ctx context.Context, spoolDir string) error {
	fi, err := os.Stat(l.path)
	if err != nil {
		return fmt.Errorf("opening backup: %w", err)
	}
	if fi.IsDir() {
		l.kind = LayoutDirectory
		l.backend, err = openLayoutDir(l.path)
		return err
	}
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("opening backup: %w", err)
	}
	if !fi.Mode().IsRegular() {
		// A named pipe or a device (<(cat backup.tar.gz), /dev/stdin):
		// a stream.
		return l.openStream(ctx, f, f, spoolDir)
	}
	l.size = fi.Size()
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		f.Close()
		return fmt.Errorf("reading backup %s: %w", l.path, err)
	}
	if archive.IsTar(head[:n]) {
		l.kind = LayoutTar
		l.backend, err = openLayoutTar(ctx, f, l.size, l.path, &l.notes)
		if err != nil {
			f.Close()
		}
		return err
	}
	return l.openStream(ctx, f, f, spoolDir)
}

// openStream reads a stream (a compressed file or stdin): finds the
// compression, then reads members until index.json and oci-layout are in.
// file is closed with the layout (nil for stdin, which is not ours).
func (l *Layout) openStream(ctx context.Context, in io.Reader, file *os.File, spoolDir string) (err error) {
	closeFile := func() {
		if file != nil {
			file.Close()
		}
	}
	br := bufio.NewReaderSize(in, 1<<16)
	head, _ := br.Peek(512)
	var (
		tarIn      io.Reader
		closers    []func()
		compressed = true
		kind       LayoutKind
	)
	switch {
	case archive.IsTar(head):
		tarIn, compressed = br, false
		kind = LayoutTar
	case archive.IsGzip(head):
		zr, err := gzip.NewReader(br)
		if err != nil {
			closeFile()
			return fmt.Errorf("%s: reading gzip: %w", l.name(), err)
		}
		tarIn = zr
		closers = append(closers, func() { zr.Close() })
		kind = LayoutTarGzip
	case archive.IsZstd(head):
		zr, err := zstd.NewReader(br)
		if err != nil {
			closeFile()
			return fmt.Errorf("%s: reading zstd: %w", l.name(), err)
		}
		tarIn = zr
		closers = append(closers, zr.Close)
		kind = LayoutTarZstd
	default:
		closeFile()
		if len(head) == 0 {
			return fmt.Errorf("%s: empty input; %s", l.name(), archive.FormsHint)
		}
		return fmt.Errorf("%s: not a backup archive (neither a tar nor a gzip- or zstd-compressed tar); %s", l.name(), archive.FormsHint)
	}
	if compressed {
		tb := bufio.NewReaderSize(tarIn, 1<<16)
		head, err := tb.Peek(512)
		if !archive.IsTar(head) {
			for _, c := range closers {
				c()
			}
			closeFile()
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%s: the archive is truncated: decompressing: %w", l.name(), err)
			}
			if err != nil && err != io.EOF {
				return fmt.Errorf("%s: decompressing: %w", l.name(), err)
			}
			return fmt.Errorf("%s: the compressed data is not a tar; %s", l.name(), archive.FormsHint)
		}
		tarIn = tb
	}
	if file != nil {
		closers = append(closers, closeFile)
	}
	if l.kind != LayoutStdin {
		l.kind = kind
	}
	s, err := openLayoutStream(ctx, layoutStreamInput{
		tar:        tarIn,
		raw:        in,
		compressed: compressed,
		closers:    closers,
		name:       l.name(),
		notes:      &l.notes,
	}, spoolDir)
	if err != nil {
		return err
	}
	l.stream = s
	l.backend = s
	return nil
}

// readIndex reads and checks oci-layout and index.json.
func (l *Layout) readIndex(ctx context.Context) error {
	lf, err := l.readAll(ctx, layoutFileName, archive.MaxLayoutFile)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return fmt.Errorf("%s: not an OCI image layout: it has no oci-layout file", l.name())
		}
		return fmt.Errorf("%s: %w", l.name(), err)
	}
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(lf, &layout); err != nil || layout.Version == "" {
		return fmt.Errorf("%s: not an OCI image layout: oci-layout is not {\"imageLayoutVersion\": ...}", l.name())
	}
	if !strings.HasPrefix(layout.Version, "1.") {
		return fmt.Errorf("%s: unsupported OCI image layout version %q", l.name(), layout.Version)
	}
	data, err := l.readAll(ctx, layoutIndexName, archive.MaxIndexFile)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return fmt.Errorf("%s: not an OCI image layout: it has no index.json", l.name())
		}
		return fmt.Errorf("%s: %w", l.name(), err)
	}
	idx, entries, err := archive.ParseIndex(ctx, data)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err // an index of 100,000 entries: SIGINT ends it
		}
		return fmt.Errorf("%s: %w", l.name(), err)
	}
	l.index, l.entries = idx, entries
	return nil
}

// readAll reads oci-layout or index.json whole.
func (l *Layout) readAll(ctx context.Context, name string, limit int64) ([]byte, error) {
	if l.stream != nil {
		return l.stream.small(name)
	}
	rc, err := l.backend.open(ctx, name, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, nil
}

// Path is the path the layout was opened from ("-" for stdin).
func (l *Layout) Path() string { return l.path }

// Kind is the form the backup was found in.
func (l *Layout) Kind() LayoutKind { return l.kind }

// Size is the size in bytes of the backup file, or -1 when it is not known
// (a directory, a pipe).
func (l *Layout) Size() int64 { return l.size }

// Streaming says whether the backup is read as a stream, once, in archive
// order (a compressed tar, stdin): content is then best fetched in that
// order, and content read ahead of its consumer is spooled.
func (l *Layout) Streaming() bool { return l.stream != nil }

// SpooledBytes is the number of bytes a stream wrote to spool files in
// spoolDir (members read before anyone consumed them); 0 for random-access
// forms.
func (l *Layout) SpooledBytes() int64 {
	if l.stream == nil {
		return 0
	}
	return l.stream.spooledBytes()
}

// BufferedBytes is the number of bytes a stream keeps in memory (small
// members, read ahead or kept for a second read); 0 for random-access
// forms.
func (l *Layout) BufferedBytes() int64 {
	if l.stream == nil {
		return 0
	}
	return l.stream.bufferedBytes()
}

// Index is the backup's parsed index.json.
func (l *Layout) Index() ocispec.Index { return l.index }

// Entries lists index.json's entries in order.
func (l *Layout) Entries() []archive.Entry { return slices.Clone(l.entries) }

// Tags lists the tags of repo (a path without host, or a full
// registry/path) in the backup, sorted. Tags of a tag-only backup belong to
// every repo: such a backup holds one repository and does not name it. A
// repo with no tags in the backup is an error wrapping errdef.ErrNotFound.
func (l *Layout) Tags(ctx context.Context, repo string) ([]string, error) {
	set := map[string]bool{}
	for _, e := range l.entries {
		if e.Tag != "" && (e.Repo == "" || archive.RepoMatch(e.Repo, repo)) {
			set[e.Tag] = true
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("repository %q: %w in backup %s", repo, errdef.ErrNotFound, l.name())
	}
	tags := make([]string, 0, len(set))
	for t := range set {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	return tags, nil
}

// Resolve returns the manifest that tag of repo points at in the backup,
// with its bytes (verified).
func (l *Layout) Resolve(ctx context.Context, repo, tag string) (ocispec.Descriptor, []byte, error) {
	var found []archive.Entry
	lk := l.entryLookup()
	for _, i := range lk.candidates(repo, tag) {
		lk.scanned.Add(1)
		e := l.entries[i]
		if e.Repo == "" || archive.RepoMatch(e.Repo, repo) {
			if e.Repo == repo { // an exact full name wins
				found = []archive.Entry{e}
				break
			}
			found = append(found, e)
		}
	}
	if len(found) == 0 {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s:%s: %w in backup %s", repo, tag, errdef.ErrNotFound, l.name())
	}
	for _, e := range found[1:] {
		if e.Desc.Digest != found[0].Desc.Digest {
			return ocispec.Descriptor{}, nil, fmt.Errorf("%s:%s is ambiguous in backup %s: %s:%s and %s:%s",
				repo, tag, l.name(), found[0].Repo, tag, e.Repo, tag)
		}
	}
	desc := found[0].Desc
	desc.Annotations = nil
	data, err := l.manifest(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, data, nil
}

// Verifies reports that Fetch's readers check digest and size: a caller
// need not hash the bytes again.
func (l *Layout) Verifies() bool { return true }

// Fetch opens content by descriptor (repo does not matter: a backup holds
// each blob once). The reader yields exactly desc.Size bytes and returns an
// error instead of io.EOF when they do not match desc (see VerifyReader).
// Content that is not in the backup is an error wrapping
// errdef.ErrNotFound.
//
// For a streamed backup, Fetch waits until the stream reaches the member,
// unless it was read already (then it comes from memory or a spool file).
// A large member that the stream reaches while this Fetch is the only one
// waiting goes straight to the returned reader: read it (or close it)
// without waiting for another Fetch of this layout, or the stream stops.
// Such a member is read once: fetching it again is an error (a Fetch made
// while it is being piped waits for the pipe to end). Content that
// is not in a streamed backup is known only at the end of the stream.
// Manifests (by desc.MediaType) of a streamed backup are read whole and
// kept in memory, so that walking the graph and copying it can both read
// them.
func (l *Layout) Fetch(ctx context.Context, repo string, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("fetching %q: %w", desc.Digest, err)
	}
	l.mu.Lock()
	closed := l.closed
	data, cached := l.manifests[desc.Digest]
	l.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("fetching %s: %w", desc.Digest, errLayoutClosed)
	}
	if cached {
		if int64(len(data)) != desc.Size {
			return nil, layoutSizeError(archive.BlobPath(desc.Digest), int64(len(data)), desc.Size)
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	if l.stream != nil && desc.MediaType != "" && archive.MayHaveSubject(desc.MediaType) && desc.Size <= layoutMaxManifest {
		// A manifest is read whole and kept: walking the graph and
		// copying it fetch it twice, and a stream cannot be read again.
		data, err := l.manifest(ctx, desc)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return l.fetch(ctx, desc)
}

// Check says, without reading it, whether the backup holds the content of
// desc at desc's size: an error wrapping errdef.ErrNotFound when it is
// missing, a size error when its size differs. A restore checks every blob
// so before it pushes anything. A streamed backup knows what it holds only
// as it reads it: Check is nil for content the stream has not reached.
func (l *Layout) Check(ctx context.Context, desc ocispec.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("checking %q: %w", desc.Digest, err)
	}
	if desc.Size < 0 {
		return fmt.Errorf("checking %s: negative size %d", desc.Digest, desc.Size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.backend.stat(archive.BlobPath(desc.Digest), desc.Size)
}

// fetch opens content from the backend, verified as it is read.
func (l *Layout) fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := l.backend.open(ctx, archive.BlobPath(desc.Digest), desc.Size)
	if err != nil {
		return nil, err
	}
	return layoutReadCloser{Reader: VerifyReader(rc, desc), Closer: rc}, nil
}

// manifest returns the verified bytes of a manifest, read once.
func (l *Layout) manifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	l.mu.Lock()
	data, ok := l.manifests[desc.Digest]
	l.mu.Unlock()
	if ok {
		return data, nil
	}
	if desc.Size > layoutMaxManifest {
		return nil, archive.ManifestTooLarge(desc.Digest.String(), desc.Size)
	}
	rc, err := l.fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err = io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	l.mu.Lock()
	if _, ok := l.manifests[desc.Digest]; !ok && l.manifestBytes+int64(len(data)) <= layoutMaxManifestCache {
		l.manifests[desc.Digest] = data
		l.manifestBytes += int64(len(data))
	}
	l.mu.Unlock()
	return data, nil
}

// Referrers lists the manifests in the backup whose subject is desc,
// limited to those recorded as backed up from repo when the backup records
// it. The manifests looked at are those listed in index.json (where
// regvault and oras list every referrer) and those its tag-schema indexes
// list (archive.Entry.TagSchema); each is read once.
func (l *Layout) Referrers(ctx context.Context, repo string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	if err := l.buildReferrers(ctx); err != nil {
		return nil, err
	}
	tagOnly := l.entryLookup().tagOnly
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ocispec.Descriptor
	for _, r := range l.referrers[desc.Digest] {
		repos, known := l.refRepos[r.Digest]
		// A tag-only backup holds one repository under any name, whatever
		// its referrers recorded.
		if known && !tagOnly && !slices.ContainsFunc(repos, func(full string) bool { return archive.RepoMatch(full, repo) }) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (l *Layout) buildReferrers(ctx context.Context) error {
	// One build: the walks that ask while it is under way wait for it
	// rather than each reading every manifest of the backup again.
	l.refBuild.Lock()
	defer l.refBuild.Unlock()
	l.mu.Lock()
	built := l.referrers != nil
	l.mu.Unlock()
	if built {
		return nil
	}
	// The repositories of each listed manifest: united over its entries;
	// nil (unknown) when any entry does not say.
	repos := map[digest.Digest][]string{}
	unknown := map[digest.Digest]bool{}
	var order []ocispec.Descriptor
	for _, e := range l.entries {
		d := e.Desc.Digest
		if _, seen := repos[d]; !seen && !unknown[d] {
			order = append(order, e.Desc)
		}
		switch {
		case e.Referrer && e.Repos != nil:
			repos[d] = append(repos[d], e.Repos...)
		case !e.Referrer && e.Repo != "":
			repos[d] = append(repos[d], e.Repo)
		default:
			unknown[d] = true
			repos[d] = nil
		}
	}
	// The referrers a tag-schema index lists (a layout may list them only
	// there), with the index entry's repository.
	listed := map[digest.Digest]bool{}
	for _, d := range order {
		listed[d.Digest] = true
	}
	for _, e := range l.entries {
		if e.TagSchema == "" {
			continue
		}
		data, err := l.manifest(ctx, e.Desc)
		if err != nil {
			return fmt.Errorf("finding referrers in backup %s: tag-schema index %s: %w", l.name(), e.Desc.Digest, err)
		}
		var list ocispec.Index
		if err := json.Unmarshal(data, &list); err != nil {
			return fmt.Errorf("backup %s: tag-schema index %s: %w", l.name(), e.Desc.Digest, err)
		}
		for _, d := range list.Manifests {
			if d.Digest.Validate() != nil {
				continue
			}
			if e.Repo != "" && !unknown[d.Digest] {
				repos[d.Digest] = append(repos[d.Digest], e.Repo)
			} else if e.Repo == "" {
				unknown[d.Digest] = true
				repos[d.Digest] = nil
			}
			if !listed[d.Digest] {
				listed[d.Digest] = true
				order = append(order, graph.Plain(d))
			}
		}
	}
	l.refBuilds++
	referrers := map[digest.Digest][]ocispec.Descriptor{}
	refRepos := map[digest.Digest][]string{}
	for _, d := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !archive.MayHaveSubject(d.MediaType) {
			continue
		}
		data, err := l.manifest(ctx, d)
		if err != nil {
			return fmt.Errorf("finding referrers in backup %s: %w", l.name(), err)
		}
		var m struct {
			MediaType    string              `json:"mediaType"`
			ArtifactType string              `json:"artifactType"`
			Config       *ocispec.Descriptor `json:"config"`
			Subject      *ocispec.Descriptor `json:"subject"`
			Annotations  map[string]string   `json:"annotations"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("backup %s: manifest %s: %w", l.name(), d.Digest, err)
		}
		if m.Subject == nil {
			continue
		}
		r := ocispec.Descriptor{
			MediaType:    d.MediaType,
			Digest:       d.Digest,
			Size:         d.Size,
			ArtifactType: m.ArtifactType,
			Annotations:  m.Annotations,
		}
		if m.MediaType != "" {
			r.MediaType = m.MediaType
		}
		if r.ArtifactType == "" && m.Config != nil && r.MediaType == ocispec.MediaTypeImageManifest {
			r.ArtifactType = m.Config.MediaType
		}
		referrers[m.Subject.Digest] = append(referrers[m.Subject.Digest], r)
		if !unknown[d.Digest] {
			list := slices.Clone(repos[d.Digest])
			sort.Strings(list)
			refRepos[d.Digest] = slices.Compact(list)
		}
	}
	for _, list := range referrers {
		sort.Slice(list, func(i, j int) bool { return list[i].Digest < list[j].Digest })
	}
	l.mu.Lock()
	l.referrers, l.refRepos = referrers, refRepos
	l.mu.Unlock()
	return nil
}

// Finish reads a streamed backup to its end, without keeping what nobody
// has asked for, and says whether the archive is whole: a restore calls it
// once everything is pushed and before it sets tags, so that an archive
// that goes wrong after the content it needed (a second index.json, a cut,
// a bad checksum) is refused by a restore as by verify. A backup read with
// random access was checked whole when it was opened: nil.
func (l *Layout) Finish(ctx context.Context) error {
	if l.stream == nil {
		return nil
	}
	return l.stream.drain(ctx)
}

// Close stops the stream reader, if any, closes the input and removes
// spool files. Readers returned by Fetch fail afterwards (those being
// streamed) or go on (those from memory or an already opened spool file).
func (l *Layout) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	if l.backend == nil {
		return nil
	}
	return l.backend.close()
}

var errLayoutClosed = errors.New("backup is closed")

func layoutSizeError(name string, have, want int64) error {
	return fmt.Errorf("%s: the backup holds %d bytes, the descriptor says %d", layoutMemberDigest(name), have, want)
}

func layoutNotFound(name string) error {
	return &MissingError{Name: layoutMemberDigest(name)}
}

// MissingError is content that a backup lists (or a manifest of it
// references) and does not hold. It wraps errdef.ErrNotFound.
type MissingError struct {
	Name string // the digest, or oci-layout or index.json
}

func (e *MissingError) Error() string {
	return e.Name + ": " + errdef.ErrNotFound.Error() + " in the backup"
}
func (e *MissingError) Unwrap() error { return errdef.ErrNotFound }

// layoutMemberDigest names a member by its digest when it is a blob.
func layoutMemberDigest(name string) string {
	if rest, ok := strings.CutPrefix(name, "blobs/"); ok {
		return strings.Replace(rest, "/", ":", 1)
	}
	return name
}

type layoutReadCloser struct {
	io.Reader
	io.Closer
}
