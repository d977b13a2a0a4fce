// Package planfile is the plan file (plan.json): a source selection
// resolved once — every repository, tag, digest, manifest and blob with its
// size — written so that the same registry state always gives the same
// bytes, and read back with strict validation. Shards (package shard) are
// computed from it alone. The format is documented in docs/plan-format.md.
package planfile

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Version is the format version this package writes and reads.
const Version = 1

// MaxSize bounds the plan file Read takes: far beyond a plan of millions
// of tags, it stops a wrong file (a disk image given as a plan) early.
const MaxSize = 4 << 30

// Plan is a resolved selection of one source registry.
type Plan struct {
	Version int `json:"version"`
	// Registry is the source registry host, e.g. 127.0.0.1:5000.
	Registry string `json:"registry"`
	// IncludeReferrers is the referrer policy the plan was made with:
	// whether the referrers of each tag's manifests (recursively) are part
	// of what the tag needs.
	IncludeReferrers bool `json:"includeReferrers"`
	// Repositories, sorted by name.
	Repositories []Repository `json:"repositories"`
	// Content is every manifest and blob some tag needs, once, sorted by
	// digest: its sizes add up to the plan's unique bytes.
	Content []Content `json:"content"`
	// Referrers are the referrer manifests, sorted by digest, with the
	// subject and the repositories they were found in (a referrer is part
	// of a tag's needs only in those repositories).
	Referrers []Referrer `json:"referrers,omitempty"`
}

// Repository is one source repository and its tags, sorted by name.
type Repository struct {
	Name string `json:"name"` // path without the registry host
	Tags []Tag  `json:"tags"`
}

// Tag is a tag and the manifest it points at.
type Tag struct {
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
}

// Kinds of content, as graph.Kind names them.
const (
	KindManifest = "manifest" // an image manifest or index (any media type)
	KindConfig   = "config"
	KindLayer    = "layer" // layers and any other blob
)

// Content is one manifest or blob.
type Content struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Kind      string        `json:"kind"`
	// Children are what a manifest references (config, layers, blobs,
	// index children; the subject excluded), in the manifest's order;
	// empty for blobs.
	Children []digest.Digest `json:"children,omitempty"`
}

// Referrer is a referrer manifest (its content is in Content).
type Referrer struct {
	Digest       digest.Digest `json:"digest"`
	Subject      digest.Digest `json:"subject"`
	Repositories []string      `json:"repositories"`
}

// Encode writes p in its one canonical form, after validating it: the
// same plan always gives the same bytes. The form is JSON with fields in a
// fixed order and every list sorted, one tag, piece of content or referrer
// a line (compact: a plan of 100,000 tags stays a file that is read in
// seconds, and a diff of two plans shows the tags and blobs that changed).
func (p *Plan) Encode(w io.Writer) error {
	if err := p.Validate(); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	put := func(prefix string, v any, suffix string) {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err) // strings, numbers and lists of them: cannot fail
		}
		bw.WriteString(prefix)
		bw.Write(b)
		bw.WriteString(suffix)
	}
	comma := func(i, n int) string {
		if i < n-1 {
			return ",\n"
		}
		return "\n"
	}
	put("{\n  \"version\": ", p.Version, ",\n")
	put("  \"registry\": ", p.Registry, ",\n")
	put("  \"includeReferrers\": ", p.IncludeReferrers, ",\n")
	bw.WriteString("  \"repositories\": [")
	if len(p.Repositories) > 0 {
		bw.WriteString("\n")
	}
	for i, r := range p.Repositories {
		put("    {\"name\":", r.Name, ",\"tags\":[")
		if len(r.Tags) > 0 {
			bw.WriteString("\n")
		}
		for j, t := range r.Tags {
			put("      ", t, comma(j, len(r.Tags)))
		}
		if len(r.Tags) > 0 {
			bw.WriteString("    ")
		}
		bw.WriteString("]}" + comma(i, len(p.Repositories)))
	}
	if len(p.Repositories) > 0 {
		bw.WriteString("  ")
	}
	bw.WriteString("],\n  \"content\": [")
	if len(p.Content) > 0 {
		bw.WriteString("\n")
	}
	for i, c := range p.Content {
		put("    ", c, comma(i, len(p.Content)))
	}
	if len(p.Content) > 0 {
		bw.WriteString("  ")
	}
	bw.WriteString("]")
	if len(p.Referrers) > 0 {
		bw.WriteString(",\n  \"referrers\": [\n")
		for i, r := range p.Referrers {
			put("    ", r, comma(i, len(p.Referrers)))
		}
		bw.WriteString("  ]")
	}
	bw.WriteString("\n}\n")
	return bw.Flush()
}

// Read reads and validates a plan file: an unknown version, an unknown
// field, a bad digest, an unsorted or duplicate entry, or a reference to
// content the plan does not list is an error that says what is wrong.
func Read(r io.Reader) (*Plan, error) {
	x, err := ReadIndex(r)
	if err != nil {
		return nil, err
	}
	return x.Plan(), nil
}

// ReadIndex is Read, and gives the plan's index, which validation builds:
// what the assignment of shards starts from (shard.SelectIndex), so that
// a pod of a sharded run indexes the plan once. On Linux a regular file
// (an *os.File at its start) is mapped into memory rather than read, and
// stays mapped for the life of the process (mmap_linux.go).
func ReadIndex(r io.Reader) (*Index, error) {
	if data, ok := mapFile(r); ok {
		return parse(data)
	}
	// One copy of the file, read to its size where that is known (a file,
	// a bytes.Reader): the plan's names and digests are substrings of it.
	var b strings.Builder
	if hint := sizeHint(r); hint > 0 && hint <= MaxSize {
		b.Grow(int(hint) + 1)
	}
	if _, err := io.Copy(&b, io.LimitReader(r, MaxSize+1)); err != nil {
		return nil, fmt.Errorf("reading the plan: %w", err)
	}
	if b.Len() > MaxSize {
		return nil, fmt.Errorf("the plan is larger than %d bytes, regvault's limit: is it a plan file?", int64(MaxSize))
	}
	return parse(b.String())
}

func sizeHint(r io.Reader) int64 {
	switch v := r.(type) {
	case interface{ Stat() (fs.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size()
		}
	case interface{ Len() int }:
		return int64(v.Len())
	}
	return 0
}

// Parse is Read of a plan file's bytes.
func Parse(data []byte) (*Plan, error) {
	x, err := parse(string(data))
	if err != nil {
		return nil, err
	}
	return x.Plan(), nil
}

func parse(data string) (*Index, error) {
	// The version first, so that a plan of a later format is named as
	// such rather than by its first unknown field.
	version, err := readVersion(data)
	if err != nil {
		return nil, err
	}
	if version != Version {
		return nil, fmt.Errorf("plan format version %d is not supported: this regvault reads version %d; make the plan with the regvault that runs it", version, Version)
	}
	if p, ok := parseCanonical(data); ok {
		return p.validate()
	}
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("invalid plan file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("invalid plan file: data after the plan's JSON object")
	}
	return p.validate()
}

// readVersion finds the top-level "version" of a plan file without
// decoding the rest (Encode writes it first).
func readVersion(data string) (int, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	notPlan := func(err error) (int, error) {
		return 0, fmt.Errorf("not a plan file (invalid JSON): %w", err)
	}
	if t, err := dec.Token(); err != nil {
		return notPlan(err)
	} else if t != json.Delim('{') {
		return 0, fmt.Errorf("not a plan file: it is not a JSON object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return notPlan(err)
		}
		if key, _ := t.(string); key == "version" {
			var v int
			if err := dec.Decode(&v); err != nil {
				return 0, fmt.Errorf("not a plan file: its version is not a number: %w", err)
			}
			return v, nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return notPlan(err)
		}
	}
	return 0, fmt.Errorf("not a plan file: no \"version\" field (make one with regvault plan)")
}

// UniqueBytes is the size of all content, each manifest and blob counted
// once: what one unsharded run moves.
func (p *Plan) UniqueBytes() int64 {
	var n int64
	for _, c := range p.Content {
		n += c.Size
	}
	return n
}

// TagCount is the number of tags of all repositories.
func (p *Plan) TagCount() int {
	n := 0
	for _, r := range p.Repositories {
		n += len(r.Tags)
	}
	return n
}

// Repository returns the repository named name, or nil.
func (p *Plan) Repository(name string) *Repository {
	i, ok := searchRepo(p.Repositories, name)
	if !ok {
		return nil
	}
	return &p.Repositories[i]
}

// Tag returns the tag name of the repository, or nil.
func (r *Repository) Tag(name string) *Tag {
	i, ok := searchTag(r.Tags, name)
	if !ok {
		return nil
	}
	return &r.Tags[i]
}
