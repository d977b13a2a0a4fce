package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	// Blobs may be named by any algorithm go-digest knows.
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/source"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Stdin is read for the path "-".
	Stdin io.Reader
	// Workers is how many blobs are hashed at once (default: the number
	// of CPUs).
	Workers int
	// Progress, when set, is updated as the backup is read.
	Progress *Progress
}

// Problem kinds.
const (
	ProblemMissing   = "missing"   // not in the backup
	ProblemCorrupt   = "corrupt"   // its bytes do not hash to its digest
	ProblemSize      = "size"      // a descriptor gives another size than the backup holds
	ProblemTruncated = "truncated" // only part of it is in the backup
	ProblemUnread    = "unreadable"
	ProblemInvalid   = "invalid" // not a manifest restore can read, or an invalid reference
)

// Problem is one piece of content that keeps a restore from completing.
type Problem struct {
	Digest digest.Digest `json:"digest"`
	Kind   string        `json:"kind"`
	// Role is what it is to what references it: manifest, platform
	// manifest, config, layer, blob, subject.
	Role      string `json:"role"`
	MediaType string `json:"mediaType,omitempty"`
	// Size is the size the descriptor gives.
	Size   int64  `json:"size"`
	Detail string `json:"detail"`
	// Parent is the manifest that references it ("" for an index.json
	// entry).
	Parent digest.Digest `json:"parent,omitempty"`
	// Affects are the tags (repo:tag) and referrers (repo@digest) it keeps
	// from being restored, sorted.
	Affects []string `json:"affects"`
	// Tags and Referrers split Affects.
	Tags      []string `json:"tags"`
	Referrers []string `json:"referrers"`

	affects map[string]bool // label → is a referrer
}

// Status of a tag or referrer.
type TagReport struct {
	Tag    string        `json:"tag,omitempty"` // "" for an entry named by digest
	Digest digest.Digest `json:"digest"`
	// Blobs and Bytes count the distinct content it needs (manifests
	// included), as far as it could be followed.
	Blobs    int      `json:"blobs"`
	Bytes    int64    `json:"bytes"`
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"` // one line each
	// NonDistributable counts the non-distributable layers it lists
	// that the backup does not hold: expected, not missing.
	NonDistributable int `json:"nonDistributableAbsent,omitempty"`
}

// ReferrerReport is one referrer of a repository.
type ReferrerReport struct {
	Digest       digest.Digest `json:"digest"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Subject      digest.Digest `json:"subject,omitempty"`
	OK           bool          `json:"ok"`
	Problems     []string      `json:"problems,omitempty"`
}

// RepoReport is what verify found for one repository.
type RepoReport struct {
	// Name is the full registry/path; "" for the repository of a
	// tag-only backup, which index.json does not name.
	Name string `json:"name"`
	// Recorded is, for that unnamed repository, the name its referrers
	// record, if any.
	Recorded  string           `json:"recorded,omitempty"`
	Tags      []TagReport      `json:"tags"`
	Referrers []ReferrerReport `json:"referrers"`
	Complete  bool             `json:"complete"`
}

// Report is what Verify found.
type Report struct {
	Path string `json:"path"`
	Kind string `json:"kind"` // directory, tar, tar.gz, tar.zst, stdin, ...
	// ArchiveBytes is what was read of the input (compressed bytes for a
	// compressed tar; the blobs of a directory); ContentBytes the blob
	// bytes hashed.
	ArchiveBytes int64         `json:"archiveBytes"`
	ContentBytes int64         `json:"contentBytes"`
	Blobs        int           `json:"blobs"`
	Duration     time.Duration `json:"-"`
	Seconds      float64       `json:"seconds"`
	// Errors keep restore from reading the backup at all (a truncated
	// archive, a member restore refuses, a bad index.json).
	Errors []string `json:"errors"`
	// Problems are content that is missing or damaged, with what it
	// affects, sorted by digest.
	Problems []*Problem `json:"problems"`
	// Warnings do not keep the backup from being restored.
	Warnings []string `json:"warnings"`
	// Notes are what restore ignores by design: the manifest.json and
	// repositories of a docker save archive.
	Notes []string     `json:"notes"`
	Repos []RepoReport `json:"repositories"`
	// Orphans are referrers attributed to no repository: restore does
	// not push them.
	Orphans []ReferrerReport `json:"orphanReferrers,omitempty"`
	// NonDistributable are the non-distributable (foreign) layers that
	// manifests list and the backup does not hold, as expected: a backup
	// leaves out those its registry did not have, and restore pushes the
	// manifests without them. Sorted by digest.
	NonDistributable []AbsentLayer `json:"nonDistributableAbsent"`
	// Unreferenced blobs are in the backup but needed by nothing.
	Unreferenced      int   `json:"unreferencedBlobs"`
	UnreferencedBytes int64 `json:"unreferencedBytes"`
	// Restorable is true when the whole backup can be restored.
	Restorable bool `json:"restorable"`
}

// AbsentLayer is a non-distributable layer the backup does not hold.
type AbsentLayer struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	URLs      []string      `json:"urls,omitempty"`
}

// MBps is the rate the input was read at, in MiB per second.
func (r *Report) MBps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.ArchiveBytes) / (1 << 20) / r.Duration.Seconds()
}

// Tags counts the tags over all repositories.
func (r *Report) Tags() (ok, all int) {
	for _, repo := range r.Repos {
		for _, t := range repo.Tags {
			all++
			if t.OK {
				ok++
			}
		}
	}
	return ok, all
}

// Referrers counts the referrers over all repositories.
func (r *Report) Referrers() (ok, all int) {
	for _, repo := range r.Repos {
		for _, t := range repo.Referrers {
			all++
			if t.OK {
				ok++
			}
		}
	}
	return ok, all
}

// Verify reads every blob of the backup at path ("-": opts.Stdin) once,
// checks each one's digest and size, and checks that every manifest's
// config, layers, index children and subject are in the backup and
// intact. The error is for a backup that cannot be read at all (not a
// backup, no such file); everything else is in the report.
func Verify(ctx context.Context, path string, opts VerifyOptions) (*Report, error) {
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	prog := opts.Progress
	if prog == nil {
		prog = &Progress{}
	}
	r := &reading{path: path, size: -1, progress: prog, blobs: map[digest.Digest]*blobInfo{}, seen: archive.Members{}}
	start := time.Now()
	var err error
	if path == "-" {
		if opts.Stdin == nil {
			return nil, fmt.Errorf("reading the backup from standard input: no input")
		}
		r.path, r.kind = "standard input", "stdin"
		if f, ok := opts.Stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				prog.Total.Store(fi.Size())
			}
		}
		err = r.readStream(ctx, opts.Stdin, workers)
	} else {
		err = r.readPath(ctx, workers)
	}
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Path:         r.path,
		Kind:         r.kind,
		ArchiveBytes: prog.Read.Load(),
		ContentBytes: r.content.Load(),
		Blobs:        len(r.blobs),
		Duration:     time.Since(start),
		Errors:       r.errors,
		Warnings:     r.warnings,
		Notes:        r.notes,
		Problems:     []*Problem{},
		Repos:        []RepoReport{},
	}
	rep.Seconds = rep.Duration.Seconds()
	check(r, rep)
	if rep.Errors == nil {
		rep.Errors = []string{}
	}
	if rep.Warnings == nil {
		rep.Warnings = []string{}
	}
	if rep.Notes == nil {
		rep.Notes = []string{}
	}
	if rep.NonDistributable == nil {
		rep.NonDistributable = []AbsentLayer{}
	}
	rep.Restorable = len(rep.Errors) == 0 && len(rep.Problems) == 0
	return rep, nil
}

func (r *reading) readPath(ctx context.Context, workers int) error {
	fi, err := os.Stat(r.path)
	if err != nil {
		return fmt.Errorf("opening backup: %w", err)
	}
	if fi.IsDir() {
		r.kind = "directory"
		return r.readDir(ctx, workers)
	}
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("opening backup: %w", err)
	}
	defer f.Close()
	if !fi.Mode().IsRegular() {
		return r.readStream(ctx, f, workers) // a pipe, a device
	}
	r.size = fi.Size()
	r.progress.Total.Store(fi.Size())
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("reading backup %s: %w", r.path, err)
	}
	if archive.IsTar(head[:n]) {
		r.kind = "tar"
		return r.readTarFile(ctx, f, workers)
	}
	return r.readStream(ctx, f, workers)
}

// ---- the check ----

// checker walks the graph from index.json's entries over what was read.
type checker struct {
	r        *reading
	rep      *Report
	problems map[string]*Problem
	needed   map[digest.Digest]bool
	absent   map[digest.Digest]ocispec.Descriptor // non-distributable layers not in the backup
}

// walkResult is what a walk from one root found.
type walkResult struct {
	blobs     int
	bytes     int64
	problems  []string // keys into checker.problems, in walk order
	lines     []string // the problems as met here: with the role there
	manifests map[digest.Digest]bool
	absent    int // non-distributable layers not in the backup
}

func check(r *reading, rep *Report) {
	c := &checker{r: r, rep: rep, problems: map[string]*Problem{}, needed: map[digest.Digest]bool{}, absent: map[digest.Digest]ocispec.Descriptor{}}
	entries, ok := c.readLayout()
	if !ok {
		c.finish()
		return
	}

	// Repositories: those named by tags, then those recorded for
	// referrers. A tag-only backup has one, unnamed.
	byName := map[string]*RepoReport{}
	repoOf := func(name string) *RepoReport {
		if rr, ok := byName[name]; ok {
			return rr
		}
		rr := &RepoReport{Name: name, Tags: []TagReport{}, Referrers: []ReferrerReport{}}
		byName[name] = rr
		return rr
	}
	named := false
	for _, e := range entries {
		if !e.Referrer && e.Repo != "" {
			named = true
		}
	}
	reach := map[string]map[digest.Digest]bool{} // manifests each repository's restore reaches
	addReach := func(repo string, ms map[digest.Digest]bool) {
		if reach[repo] == nil {
			reach[repo] = map[digest.Digest]bool{}
		}
		for d := range ms {
			reach[repo][d] = true
		}
	}
	for _, e := range entries {
		if e.TagSchema != "" {
			// Restore finds the referrers it lists through their own
			// entries (or the subjects'); the index is no tag.
			c.needed[e.Desc.Digest] = true
			continue
		}
		if e.Referrer {
			continue
		}
		tag := e.Tag
		if e.Digested {
			tag = "" // reported by its digest
		}
		label := e.Repo + ":" + tag
		switch {
		case e.Repo == "":
			label = tag
		case tag == "":
			label = e.Repo + "@" + e.Desc.Digest.String()
		}
		w := c.walk(e.Desc, roleManifest, "", false, label)
		rr := repoOf(e.Repo)
		rr.Tags = append(rr.Tags, c.tagReport(tag, e.Desc.Digest, w))
		addReach(e.Repo, w.manifests)
	}

	// Referrers: to the repositories they record; those of backups that
	// record none (oras) to every repository that reaches their subject.
	var refs []archive.Entry
	for _, e := range entries {
		if !e.Referrer {
			continue
		}
		if b := r.blobs[e.Desc.Digest]; b != nil && b.summary != nil && b.summary.Subject == nil {
			// An untagged manifest without a subject (an index's
			// child): no referrer; checked where a tag reaches it.
			c.needed[e.Desc.Digest] = true
			continue
		}
		refs = append(refs, e)
	}
	recorded := map[string]bool{}
	subjects := map[digest.Digest]digest.Digest{} // referrer → subject
	for _, e := range refs {
		for _, repo := range e.Repos {
			recorded[repo] = true
		}
		if b := r.blobs[e.Desc.Digest]; b != nil && b.summary != nil && b.summary.Subject != nil {
			subjects[e.Desc.Digest] = b.summary.Subject.Digest
		}
	}
	// Restore pushes a referrer to a repository when it reaches its
	// subject there (from a tag, or from a referrer it pushes), among
	// the repositories the referrer is recorded for (all of them when
	// the backup does not record any).
	candidates := func(e archive.Entry) []string {
		switch {
		case e.Repos != nil && named:
			return e.Repos
		case e.Repos != nil:
			return []string{""}
		}
		return slices.Sorted(maps.Keys(reach))
	}
	restored := make([][]string, len(refs))
	walked := make([]*walkResult, len(refs))
	for changed := true; changed; {
		changed = false
		for i, e := range refs {
			for _, repo := range candidates(e) {
				if slices.Contains(restored[i], repo) || !reach[repo][subjects[e.Desc.Digest]] {
					continue
				}
				restored[i] = append(restored[i], repo)
				if walked[i] == nil {
					walked[i] = c.walk(e.Desc, roleManifest, "", true)
				}
				addReach(repo, walked[i].manifests)
				changed = true
			}
		}
	}
	for i, e := range refs {
		// Reported under the repositories it is recorded for, or, when
		// none are recorded, those restore pushes it to.
		repos := restored[i]
		if e.Repos != nil {
			repos = candidates(e)
		}
		repos = slices.Sorted(slices.Values(repos))
		labels := []string{"referrer " + e.Desc.Digest.String()}
		if len(repos) > 0 {
			labels = labels[:0]
			for _, repo := range repos {
				if repo == "" {
					labels = append(labels, "referrer "+e.Desc.Digest.String())
				} else {
					labels = append(labels, repo+"@"+e.Desc.Digest.String())
				}
			}
		}
		w := c.walk(e.Desc, roleManifest, "", true, labels...)
		rep := c.referrerReport(e.Desc, w)
		subjectOK := rep.Subject != "" && !slices.ContainsFunc(w.problems, func(k string) bool { return c.problems[k].Digest == rep.Subject })
		if len(repos) == 0 {
			c.rep.Orphans = append(c.rep.Orphans, rep)
			if subjectOK {
				c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("referrer %s refers to %s, which no tag of the backup reaches: restore does not push it", e.Desc.Digest, rep.Subject))
			}
			continue
		}
		for _, repo := range repos {
			rr := repoOf(repo)
			rr.Referrers = append(rr.Referrers, rep)
			if subjectOK && !slices.Contains(restored[i], repo) {
				c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("referrer %s is recorded for %s, but its subject %s is not reached from that repository's tags: restore does not push it there", e.Desc.Digest, repoLabel(repo), rep.Subject))
			}
		}
	}

	for _, rr := range byName {
		rr.Complete = true
		for _, t := range rr.Tags {
			rr.Complete = rr.Complete && t.OK
		}
		for _, t := range rr.Referrers {
			rr.Complete = rr.Complete && t.OK
		}
		sort.Slice(rr.Tags, func(i, j int) bool { return rr.Tags[i].Tag < rr.Tags[j].Tag })
		sort.Slice(rr.Referrers, func(i, j int) bool { return rr.Referrers[i].Digest < rr.Referrers[j].Digest })
		if rr.Name == "" && len(recorded) == 1 {
			for name := range recorded {
				rr.Recorded = name
			}
		}
		rep.Repos = append(rep.Repos, *rr)
	}
	sort.Slice(rep.Repos, func(i, j int) bool { return rep.Repos[i].Name < rep.Repos[j].Name })
	c.finish()
}

func repoLabel(repo string) string {
	if repo == "" {
		return "the backup's repository"
	}
	return repo
}

// readLayout checks oci-layout and index.json and reads the entries.
func (c *checker) readLayout() ([]archive.Entry, bool) {
	r, rep := c.r, c.rep
	switch {
	case !r.hasLayout && r.truncated:
		rep.Errors = append(rep.Errors, "the archive has no oci-layout file (it is truncated before it)")
		return nil, false
	case !r.hasLayout:
		rep.Errors = append(rep.Errors, "not an OCI image layout: it has no oci-layout file")
		return nil, false
	}
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(r.layoutFile, &layout); err != nil || layout.Version == "" {
		rep.Errors = append(rep.Errors, `oci-layout is not {"imageLayoutVersion": ...}`)
	} else if !strings.HasPrefix(layout.Version, "1.") {
		rep.Errors = append(rep.Errors, fmt.Sprintf("unsupported OCI image layout version %q", layout.Version))
	}
	if !r.hasIndex {
		if r.truncated {
			rep.Errors = append(rep.Errors, "the archive has no index.json (it is truncated before it)")
		} else {
			rep.Errors = append(rep.Errors, "not an OCI image layout: it has no index.json")
		}
		return nil, false
	}
	var idx ocispec.Index
	if err := json.Unmarshal(r.index, &idx); err != nil {
		rep.Errors = append(rep.Errors, fmt.Sprintf("index.json: %v", err))
		return nil, false
	}
	var entries []archive.Entry
	bad := false
	for i, d := range idx.Manifests {
		if err := archive.CheckEntry(i, d); err != nil {
			rep.Errors = append(rep.Errors, "index.json: "+err.Error())
			bad = true
			continue
		}
		entries = append(entries, archive.ParseEntry(d))
	}
	tags := 0
	for _, e := range entries {
		if e.IsTag() {
			tags++ // as restore counts them
		}
	}
	if tags == 0 && !bad {
		rep.Errors = append(rep.Errors, NoTags(len(idx.Manifests)))
	}
	return entries, !bad || len(entries) > 0
}

// NoTags says why a backup whose index.json names no tag cannot be
// restored, and what to do; restore refuses such a backup with the same
// words. untagged is the number of index.json entries.
func NoTags(untagged int) string {
	if untagged == 0 {
		return "index.json lists nothing: the backup is empty, there is nothing to restore"
	}
	return fmt.Sprintf("index.json names no tag: none of its %d manifest(s) has an %s annotation "+
		"(crane pull --format=oci writes layouts so), and restore pushes tags: there is nothing to restore. "+
		"Name the images in the layout first (oras tag --oci-layout <dir>@<digest> <tag>), or copy one by digest "+
		"(oras cp --from-oci-layout <dir>@<digest> <registry>/<repository>:<tag>)",
		untagged, ocispec.AnnotationRefName)
}

// walk checks desc (in role, referenced by parent) and everything it
// needs, recording problems as affecting each of labels (tags, or
// referrers).
func (c *checker) walk(desc ocispec.Descriptor, role string, parent digest.Digest, referrer bool, labels ...string) *walkResult {
	w := &walkResult{manifests: map[digest.Digest]bool{}}
	seen := map[digest.Digest]bool{}
	var visit func(desc ocispec.Descriptor, role string, parent digest.Digest)
	visit = func(desc ocispec.Descriptor, role string, parent digest.Digest) {
		if seen[desc.Digest] {
			return
		}
		seen[desc.Digest] = true
		if (role == roleLayer || role == roleBlob) && source.IsNonDistributable(desc) && c.r.blobs[desc.Digest] == nil {
			// Expected: registries usually do not hold such layers, and
			// a backup leaves out those its registry did not have.
			c.absent[desc.Digest] = desc
			w.absent++
			return
		}
		key, b := c.node(desc, role, parent)
		if key != "" {
			p := c.problems[key]
			for _, l := range labels {
				if l != "" {
					p.affects[l] = referrer
				}
			}
			w.problems = append(w.problems, key)
			w.lines = append(w.lines, p.line(role))
			return
		}
		c.needed[desc.Digest] = true
		w.blobs++
		w.bytes += b.size
		if !isManifestRole(desc, role) {
			return
		}
		if b.summary == nil {
			return // a subject that is a plain blob
		}
		w.manifests[desc.Digest] = true
		mt := desc.MediaType
		if mt == "" {
			mt = b.summary.MediaType
		}
		kids, _ := b.summary.children(mt) // checked in node
		for _, k := range kids {
			visit(k.desc, k.role, desc.Digest)
		}
		if s := b.summary.Subject; s != nil {
			visit(*s, roleSubject, desc.Digest)
		}
	}
	visit(desc, role, parent)
	return w
}

// node checks one piece of content; key is "" when it is present and
// intact (and, for a manifest, readable), else the problem's key.
func (c *checker) node(desc ocispec.Descriptor, role string, parent digest.Digest) (key string, b *blobInfo) {
	add := func(kind, detail string) string {
		key := desc.Digest.String() + " " + kind
		if kind == ProblemSize {
			key += fmt.Sprint(" ", desc.Size)
		}
		if _, ok := c.problems[key]; !ok {
			c.problems[key] = &Problem{Digest: desc.Digest, Kind: kind, Role: role, MediaType: desc.MediaType,
				Size: desc.Size, Detail: detail, Parent: parent, affects: map[string]bool{}}
		}
		return key
	}
	where := ""
	if parent != "" {
		where = " (referenced by " + parent.String() + ")"
	}
	if err := desc.Digest.Validate(); err != nil {
		return add(ProblemInvalid, fmt.Sprintf("invalid digest %q%s: %v", desc.Digest, where, err)), nil
	}
	b = c.r.blobs[desc.Digest]
	if b != nil {
		c.needed[desc.Digest] = true
	}
	switch {
	case b == nil && c.r.truncated:
		return add(ProblemMissing, "not in the backup (the archive is truncated: it may have been after the end)"+where), nil
	case b == nil:
		return add(ProblemMissing, "not in the backup"+where), nil
	case b.err != nil && c.r.truncated && b.name == c.r.truncatedAt:
		return add(ProblemTruncated, fmt.Sprintf("only %d of its %d bytes are in the archive, which ends there", b.read, b.size)), nil
	case b.err != nil:
		return add(ProblemUnread, fmt.Sprintf("cannot be read: %v", b.err)), nil
	case b.size != desc.Size:
		return add(ProblemSize, fmt.Sprintf("the backup holds %d bytes, the descriptor%s says %d", b.size, where, desc.Size)), nil
	case b.actual != desc.Digest:
		return add(ProblemCorrupt, fmt.Sprintf("its %d bytes have digest %s", b.size, b.actual)), nil
	}
	if !isManifestRole(desc, role) {
		return "", b
	}
	if role == roleSubject && desc.MediaType == "" && (b.summary == nil || b.summary.MediaType == "") {
		return "", b // a subject that is a plain blob
	}
	switch {
	case b.size > maxManifest:
		return add(ProblemInvalid, fmt.Sprintf("a manifest of %d bytes, larger than the %s (%d bytes) limit for a manifest that backup, verify and restore share", b.size, archive.MaxManifestSizeText, maxManifest)), b
	case !b.isJSON:
		return add(ProblemInvalid, "not a manifest: not a JSON object"), b
	case b.summaryErr != nil:
		return add(ProblemInvalid, b.summaryErr.Error()), b
	}
	mt := desc.MediaType
	if mt == "" {
		mt = b.summary.MediaType
	}
	kids, err := b.summary.children(mt)
	if err != nil {
		return add(ProblemInvalid, err.Error()), b
	}
	for _, k := range kids {
		if err := k.desc.Digest.Validate(); err != nil {
			return add(ProblemInvalid, fmt.Sprintf("its %s has an invalid digest %q: %v", k.role, k.desc.Digest, err)), b
		}
		// what restore's walk refuses before pushing anything
		if err := source.CheckDescriptor(k.desc); err != nil {
			return add(ProblemInvalid, fmt.Sprintf("its %s %v", k.role, err)), b
		}
	}
	return "", b
}

func (c *checker) problemLines(w *walkResult) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range w.lines {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// Line says what is wrong in one line.
func (p *Problem) Line() string { return p.line(p.Role) }

// line says what is wrong, naming the content by its role where it was
// met.
func (p *Problem) line(role string) string {
	what := role
	if role == roleManifest && (strings.Contains(p.MediaType, "index") || strings.Contains(p.MediaType, "manifest.list")) {
		what = "index"
	}
	switch p.Kind {
	case ProblemMissing:
		return fmt.Sprintf("%s %s is missing", what, p.Digest)
	case ProblemCorrupt:
		return fmt.Sprintf("%s %s is corrupt", what, p.Digest)
	case ProblemSize:
		return fmt.Sprintf("%s %s has the wrong size", what, p.Digest)
	case ProblemTruncated:
		return fmt.Sprintf("%s %s is truncated", what, p.Digest)
	case ProblemUnread:
		return fmt.Sprintf("%s %s cannot be read", what, p.Digest)
	}
	return fmt.Sprintf("%s %s is invalid", what, p.Digest)
}

func (c *checker) tagReport(tag string, d digest.Digest, w *walkResult) TagReport {
	return TagReport{Tag: tag, Digest: d, Blobs: w.blobs, Bytes: w.bytes, OK: len(w.problems) == 0, Problems: c.problemLines(w), NonDistributable: w.absent}
}

func (c *checker) referrerReport(desc ocispec.Descriptor, w *walkResult) ReferrerReport {
	rr := ReferrerReport{Digest: desc.Digest, ArtifactType: desc.ArtifactType, OK: len(w.problems) == 0, Problems: c.problemLines(w)}
	if b := c.r.blobs[desc.Digest]; b != nil && b.summary != nil {
		if b.summary.Subject != nil {
			rr.Subject = b.summary.Subject.Digest
		}
		if rr.ArtifactType == "" {
			rr.ArtifactType = b.summary.ArtifactType
		}
		if rr.ArtifactType == "" && b.summary.Config != nil {
			rr.ArtifactType = b.summary.Config.MediaType
		}
	}
	return rr
}

// finish sorts the problems and counts what nothing needs.
func (c *checker) finish() {
	for _, d := range c.absent {
		c.rep.NonDistributable = append(c.rep.NonDistributable, AbsentLayer{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, URLs: d.URLs})
	}
	sort.Slice(c.rep.NonDistributable, func(i, j int) bool { return c.rep.NonDistributable[i].Digest < c.rep.NonDistributable[j].Digest })
	for _, p := range c.problems {
		p.Affects = make([]string, 0, len(p.affects))
		p.Tags, p.Referrers = []string{}, []string{}
		for a, isRef := range p.affects {
			p.Affects = append(p.Affects, a)
			if isRef {
				p.Referrers = append(p.Referrers, a)
			} else {
				p.Tags = append(p.Tags, a)
			}
		}
		sort.Strings(p.Affects)
		sort.Strings(p.Tags)
		sort.Strings(p.Referrers)
		c.rep.Problems = append(c.rep.Problems, p)
	}
	sort.Slice(c.rep.Problems, func(i, j int) bool {
		a, b := c.rep.Problems[i], c.rep.Problems[j]
		if a.Digest != b.Digest {
			return a.Digest < b.Digest
		}
		return a.Kind < b.Kind
	})
	var corrupt []string
	for d, b := range c.r.blobs {
		if c.needed[d] {
			continue
		}
		c.rep.Unreferenced++
		c.rep.UnreferencedBytes += b.size
		if b.err == nil && b.actual != d {
			corrupt = append(corrupt, d.String())
		}
	}
	sort.Strings(corrupt)
	for _, d := range corrupt {
		c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("blob %s is corrupt (its bytes have another digest), but nothing in the backup needs it", d))
	}
}
