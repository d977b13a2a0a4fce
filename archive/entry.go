package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Entry is one entry of a backup's index.json, read as every reader of
// backups reads it (ParseEntry; docs/format.md, "What readers must
// accept"): restore, verify and the inspection commands agree on what is
// a tag, a referrer and a tag-schema index.
type Entry struct {
	// Repo is the repository of a full ref.name ("registry/path", e.g.
	// docker.io/library/alpine); "" for a tag-only ref.name (the backup
	// holds one repository, whose name it does not record) and for
	// unnamed entries.
	Repo string
	// Tag is the tag of a ref.name; "" for unnamed entries, tag-schema
	// indexes and a ref.name that is repo@digest. Of repo:tag@digest it
	// is the tag (see Digested).
	Tag  string
	Desc ocispec.Descriptor
	// Referrer is true for an entry without a ref.name: a referrer, or
	// an untagged manifest (the children of an index, which regvault and
	// oras list so that peers find them by digest). Which of the two it
	// is, its manifest says (a referrer has a subject).
	Referrer bool
	// Repos are the repositories (registry/path) an unnamed entry was
	// backed up from, from AnnotationRepositories; nil when unknown
	// (backups of oras v1.3 do not record them).
	Repos []string
	// TagSchema is, for an entry named by the referrers tag schema
	// (sha256-<hex>, or registry/repo:sha256-<hex>, pointing at an index
	// of referrers: see IsTagSchema), the subject whose referrers it
	// lists (sha256:<hex>). Such an entry is not a tag: Tag is "".
	TagSchema digest.Digest
	// Digested is true when the ref.name holds a digest (repo@digest,
	// repo:tag@digest): restore reads repo:tag@digest as the tag, verify
	// reports such an entry by its digest.
	Digested bool
}

// IsTag says whether the entry names a tag that a restore restores (and
// verify counts as one): a named entry with a tag.
func (e Entry) IsTag() bool { return !e.Referrer && e.Tag != "" }

// RepoPath is the entry's repository without its registry host
// (library/alpine for docker.io/library/alpine); "" for a tag-only entry.
func (e Entry) RepoPath() string { return RepoPath(e.Repo) }

// ParseEntry reads one index.json entry, detecting its reference format
// as docs/format.md says: a ref.name (RefName) with a repository is a full
// reference, one without is a tag; one whose tag part has the tag schema's
// form and that points at an index is a tag-schema index (IsTagSchema);
// an entry without a ref.name is a referrer or an index child, with the
// repositories AnnotationRepositories records.
func ParseEntry(d ocispec.Descriptor) Entry {
	e := Entry{Desc: d}
	name, named := RefName(d.Annotations)
	if !named || name == "" {
		e.Referrer = true
		e.Repos = splitRepos(d.Annotations[AnnotationRepositories])
		return e
	}
	if at := strings.IndexByte(name, '@'); at >= 0 {
		// A digest reference: repo@digest or repo:tag@digest.
		e.Digested = true
		e.Repo, e.Tag = SplitRef(name[:at])
		if e.Repo == "" {
			e.Repo, e.Tag = e.Tag, ""
		}
		return e
	}
	e.Repo, e.Tag = SplitRef(name)
	if IsTagSchema(e.Tag, d.MediaType) {
		alg, hex, _ := strings.Cut(e.Tag, "-")
		e.TagSchema = digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		e.Tag = ""
	}
	return e
}

// splitRepos reads AnnotationRepositories: nil when it lists none.
func splitRepos(list string) []string {
	var out []string
	for _, r := range strings.Split(list, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// CheckEntry checks entry i of index.json as every reader does: a valid
// digest and a size that is not negative. The error names the entry; the
// caller says it is of index.json.
func CheckEntry(i int, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("entry %d: invalid digest %q: %w", i, d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("entry %d (%s): negative size", i, d.Digest)
	}
	return nil
}

// ParseIndex reads index.json whole: the index and its entries
// (ParseEntry), each checked (CheckEntry). An error but ctx's starts with
// "index.json: "; ctx ends the reading of a long index.
func ParseIndex(ctx context.Context, data []byte) (ocispec.Index, []Entry, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return ocispec.Index{}, nil, fmt.Errorf("index.json: %w", err)
	}
	var entries []Entry // nil for an index without entries, as Layout.Entries gives it
	if n := len(idx.Manifests); n > 0 {
		entries = make([]Entry, 0, n)
	}
	for i, d := range idx.Manifests {
		if i%1024 == 0 && ctx.Err() != nil {
			return ocispec.Index{}, nil, ctx.Err() // an index of 100,000 entries: SIGINT ends it here
		}
		if err := CheckEntry(i, d); err != nil {
			return ocispec.Index{}, nil, fmt.Errorf("index.json: %w", err)
		}
		entries = append(entries, ParseEntry(d))
	}
	return idx, entries, nil
}

// RepoPath strips the registry host from a full repository name, as
// readers of backups compare names (docker.io/library/alpine →
// library/alpine). The first element is a host if it looks like one (has
// a dot or a port, or is localhost), as Docker decides it.
// Not graph.ParseRepository: names in archives may lack a registry.
func RepoPath(full string) string {
	host, rest, ok := strings.Cut(full, "/")
	if !ok {
		return full
	}
	if strings.ContainsAny(host, ".:") || host == "localhost" {
		return rest
	}
	return full
}

// RepoMatch says whether repo (a full name, or a path without the
// registry) names the backup's repository full.
func RepoMatch(full, repo string) bool {
	return full == repo || RepoPath(full) == repo
}

// Contents is what a backup's index.json names, summed up from its
// entries (Summarize) for the readers that list it: restore's header and
// plan, and the inspection commands.
type Contents struct {
	// Repos are the full names (registry/path) of the repositories the
	// backup names, sorted: those of named entries and those recorded
	// for referrers.
	Repos []string
	// Unnamed are the tags of entries without a repository (a tag-only
	// backup, as oras v1.3 writes a single repository), sorted.
	Unnamed []string
	// Recorded is, for a backup whose tags are all unnamed, the
	// repositories its referrers record (regvault writes them even for a
	// single repository); nil otherwise.
	Recorded []string

	// TagEntries are the entries that name a tag (Entry.IsTag), in the
	// order of index.json: what a restore restores. Referrers go with
	// their subjects; an entry named by digest alone has no tag.
	TagEntries []Entry
	// Tags are the tags of each repository of TagEntries (its full name,
	// "" for tag-only names), sorted, each once.
	Tags map[string][]string
	// TagRepos are the keys of Tags, sorted.
	TagRepos []string
}

// Summarize sums up index.json's entries.
func Summarize(entries []Entry) Contents {
	repos := map[string]bool{}
	unnamed := map[string]bool{}
	recorded := map[string]bool{}
	c := Contents{Tags: map[string][]string{}}
	for _, e := range entries {
		switch {
		case e.Referrer:
			for _, r := range e.Repos {
				recorded[r] = true
			}
		case e.Repo != "":
			repos[e.Repo] = true
		case e.Tag != "":
			unnamed[e.Tag] = true
		}
		if !e.IsTag() {
			continue
		}
		c.TagEntries = append(c.TagEntries, e)
		if _, ok := c.Tags[e.Repo]; !ok {
			c.TagRepos = append(c.TagRepos, e.Repo)
		}
		c.Tags[e.Repo] = append(c.Tags[e.Repo], e.Tag)
	}
	sort.Strings(c.TagRepos)
	for repo, tags := range c.Tags {
		// sorted, each once: a tag listed twice is compacted here, not
		// looked for in the list at each entry
		sort.Strings(tags)
		c.Tags[repo] = slices.Compact(tags)
	}
	c.Unnamed = sortedKeys(unnamed)
	if len(repos) == 0 && len(unnamed) > 0 {
		// A tag-only backup: the referrers' repositories are the only
		// names it records; they are not listed as repositories.
		c.Recorded = sortedKeys(recorded)
		return c
	}
	for r := range recorded {
		repos[r] = true
	}
	c.Repos = sortedKeys(repos)
	return c
}

// TagOnly says whether the backup names no repository: every tag is
// unnamed.
func (c Contents) TagOnly() bool { return len(c.Repos) == 0 && len(c.Unnamed) > 0 }

// TagCount is the number of tags a restore restores (each repository's
// tags counted once).
func (c Contents) TagCount() int {
	n := 0
	for _, tags := range c.Tags {
		n += len(tags)
	}
	return n
}

// FindRepo returns the backup's repositories that repo names: one, or
// several when repo is a path found under more than one registry.
func (c Contents) FindRepo(repo string) []string {
	var out []string
	for _, r := range c.Repos {
		if r == repo {
			return []string{r}
		}
		if RepoMatch(r, repo) {
			out = append(out, r)
		}
	}
	return out
}

// Below lists the repositories under prefix (a full name or a path without
// the registry, with or without a trailing slash), relative to it, sorted;
// "" lists every repository by its full name.
func (c Contents) Below(prefix string) []string {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return slices.Clone(c.Repos)
	}
	set := map[string]bool{}
	for _, r := range c.Repos {
		for _, name := range []string{r, RepoPath(r)} {
			if rest, ok := strings.CutPrefix(name, prefix+"/"); ok && rest != "" {
				set[rest] = true
			}
		}
	}
	return sortedKeys(set)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
