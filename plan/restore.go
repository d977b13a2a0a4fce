package plan

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
)

// BackupEntry is one tag in a backup.
type BackupEntry struct {
	// Repo is the full source repository "registry/path" as in the
	// ref.name; "" for a tag-only (single-repo, oras v1.3 style) backup.
	Repo   string
	Tag    string
	Digest digest.Digest
	Size   int64
}

// RestoreOptions are the flags of `regvault restore`.
type RestoreOptions struct {
	// FailFast is --fail-fast; nil when not given: the rules file's
	// settings.fail-fast, else true.
	FailFast *bool
	// ExcludeReferrers is --exclude-referrers; it adds to (ORs with) the
	// rules file's settings and mappings.
	ExcludeReferrers bool
	DryRun           bool
	Concurrency      int
}

// TargetRef is one positional restore target,
// `<registry>[/<repository>][:<tag>[,<tag>...]]`.
type TargetRef struct {
	Registry   string
	Repository string   // "": the registry alone
	Tags       []string // nil: every tag
}

// String formats the target as it was given (tags comma-separated).
func (t TargetRef) String() string {
	s := t.Registry
	if t.Repository != "" {
		s += "/" + t.Repository
	}
	if len(t.Tags) > 0 {
		s += ":" + strings.Join(t.Tags, ",")
	}
	return s
}

// Target is a repository restored to.
type Target struct {
	Registry   string // host, maybe with a port
	Repository string // path
}

func (t Target) String() string { return t.Registry + "/" + t.Repository }

// TagMapping is one tag pushed: the tag From of the backup is pushed as To.
type TagMapping struct {
	From   string
	To     string
	Digest digest.Digest
	Size   int64
}

// Mapping is one source repository of the backup restored to one target.
type Mapping struct {
	// Source is the repository as the backup names it; "" for a tag-only
	// backup.
	Source string
	Target Target
	// Tags, sorted by To (then From); each To once.
	Tags             []TagMapping
	ExcludeReferrers bool
	// Rule is the index of the rules file's mapping this came from, or -1.
	Rule int
}

// Restore is a validated restore plan.
type Restore struct {
	// Mappings, sorted by source repository, then target.
	Mappings []Mapping
	// Skipped are the backup's repositories that are not restored, sorted
	// ("" for a tag-only backup's repository; see SourceName).
	Skipped []string
	// Rules is the number of mappings in the rules file; 0 without one.
	Rules            int
	FailFast         bool
	ExcludeReferrers bool // global: --exclude-referrers or settings.exclude-referrers
	DryRun           bool
	Concurrency      int
}

const (
	targetForm = "expected <registry>[/<repository>][:<tag>[,<tag>...]], e.g. registry.example.com/library/alpine:3.19"
	tagRule    = "a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with . or -"

	// rulesWithTargets refuses --rules with positional targets, showing
	// the three forms of the command.
	rulesWithTargets = `--rules cannot be used with positional repository arguments.

Use either:
  - Positional args for direct/selective restore:
      regvault restore --input backup.tar registry.io/repo1 registry.io/repo2
  
  - Rules file for repository mapping:
      regvault restore --input backup.tar --rules rules.json`

	rulesHint = "or map repositories with a rules file: regvault restore --input <backup> --rules <file>"
)

// words are the nouns and verbs of the planner's messages, which serve
// restore (from a backup) and copy (from a source registry).
type words struct {
	the   string // where the tags come from: "the backup"
	The   string // the same at the start of a sentence
	verb  string // "restore"
	done  string // "restored"
	hint  string // how to map with a rules file instead
	names string // what a rules file's "source" must be, after "did you mean %q? "
}

var restoreWords = words{
	the: "the backup", The: "The backup", verb: "restore", done: "restored", hint: rulesHint,
	names: "the source is the repository as the backup names it, registry included",
}

func validTag(t string) bool {
	return registry.Reference{Reference: t}.ValidateReferenceAsTag() == nil
}

// ParseTarget parses a positional restore target
// `<registry>[/<repository>][:<tag>[,<tag>...]]`. A colon before the first
// slash is the registry's port, not a tag.
func ParseTarget(s string) (TargetRef, error) { return parseTarget(s, restoreWords) }

func parseTarget(s string, w words) (TargetRef, error) {
	// Every message says what is wrong, then the expected form.
	bad := func(format string, a ...any) (TargetRef, error) {
		return TargetRef{}, usagef(format+"; "+targetForm, a...)
	}
	if s == "" {
		return bad("empty target")
	}
	host, rest, hasPath := strings.Cut(s, "/")
	if err := (registry.Reference{Registry: host}).ValidateRegistry(); err != nil || strings.HasSuffix(host, ":") {
		hint := ""
		if !hasPath && strings.Contains(host, ":") {
			hint = " (a colon after the registry is its port; tags need a repository: <registry>/<repository>:<tag>)"
		}
		return bad("%q: invalid registry %q%s", s, host, hint)
	}
	if !hasPath {
		return TargetRef{Registry: host}, nil
	}
	if strings.Contains(rest, "@") {
		return bad("%q: digest references are not supported: name tags, or none for every tag", s)
	}
	var tags []string
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		list := rest[i+1:]
		rest = rest[:i]
		if list == "" {
			return bad("%q ends with ':' but names no tag: drop the ':' to %s every tag", s, w.verb)
		}
		for _, t := range strings.Split(list, ",") {
			if !validTag(t) {
				return bad("%q: invalid tag %q: %s", s, t, tagRule)
			}
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	if rest == "" {
		return bad("%q: empty repository after '/' (give the registry alone to keep %s's repository paths)", s, w.the)
	}
	if err := (registry.Reference{Registry: host, Repository: rest}).ValidateRepository(); err != nil {
		return bad("%q: invalid repository name %q: use lowercase letters, digits and separators (. _ - /)", s, rest)
	}
	return TargetRef{Registry: host, Repository: rest, Tags: tags}, nil
}

// NewRestore validates the arguments of `regvault restore` against what
// the backup holds into a plan. targets are the positional targets;
// rulesFile is the --rules path or "". Every error is a *UsageError, found
// before anything is pushed.
//
// Where README's target table (Restore) is silent: a target's :tags over several
// repositories (a prefix, a registry's whole backup) restore those tags of
// each repository that has them, and it is an error only when none has
// one; the same repository to the same place from several targets gets
// the union of their tags; repositories of one path from several source
// registries (a directory backup written twice) all match that path, and
// any tag they would push twice with different manifests is an error; one
// mapping that pushes the same manifest under a tag twice pushes it once.
// "Exactly one repository" (rows 4 and 5) counts a tag-only backup's
// repository, whose name is unknown, only in row 5.
func NewRestore(entries []BackupEntry, targets []string, rulesFile string, o RestoreOptions) (*Restore, error) {
	if rulesFile != "" && len(targets) > 0 {
		return nil, &UsageError{Msg: rulesWithTargets}
	}
	if rulesFile == "" && len(targets) == 0 {
		return nil, usagef("no target given: regvault restore --input <backup> <registry>[/<repository>][:<tags>] ..., " +
			"or regvault restore --input <backup> --rules <file>")
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if rulesFile != "" {
		rules, err := LoadRules(rulesFile)
		if err != nil {
			return nil, err
		}
		return NewRestoreWithRules(entries, rules, o)
	}
	b, err := readBackup(entries, restoreWords)
	if err != nil {
		return nil, err
	}
	return b.restoreTargets(targets, o)
}

// NewRestoreWithRules plans a restore with a parsed rules file (Mode 3):
// for a caller that checks the rules before it reads the backup.
func NewRestoreWithRules(entries []BackupEntry, rules *Rules, o RestoreOptions) (*Restore, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	b, err := readBackup(entries, restoreWords)
	if err != nil {
		return nil, err
	}
	return b.restoreRules(rules, o)
}

func (o RestoreOptions) check() error {
	if o.Concurrency < 1 {
		return usagef("--concurrency must be at least 1, got %d", o.Concurrency)
	}
	return nil
}

// backup is what a backup holds, by repository.
type backup struct {
	repos  []*backupRepo // sorted by name
	byName map[string]*backupRepo
	w      words
}

type backupRepo struct {
	name  string // as in the backup: registry/path, or "" (tag-only)
	path  string // without the registry
	tags  []string
	byTag map[string]BackupEntry
}

// repoPath is a repository's path without its registry: everything after
// the first slash (a name without a slash is all path).
func repoPath(name string) string {
	if _, path, ok := strings.Cut(name, "/"); ok {
		return path
	}
	return name
}

func lastElem(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }

func readBackup(entries []BackupEntry, w words) (*backup, error) {
	if len(entries) == 0 {
		return nil, usagef("%s holds no tags: nothing to %s", w.the, w.verb)
	}
	b := &backup{byName: map[string]*backupRepo{}, w: w}
	for _, e := range entries {
		if e.Tag == "" {
			return nil, usagef("%s names %s without a tag", w.the, e.Digest)
		}
		r := b.byName[e.Repo]
		if r == nil {
			r = &backupRepo{name: e.Repo, path: repoPath(e.Repo), byTag: map[string]BackupEntry{}}
			b.byName[e.Repo] = r
			b.repos = append(b.repos, r)
		}
		if prev, ok := r.byTag[e.Tag]; ok {
			if prev.Digest != e.Digest {
				return nil, usagef("%s names two manifests %s:%s (%s and %s)", w.the, SourceName(e.Repo), e.Tag, prev.Digest, e.Digest)
			}
			continue
		}
		r.byTag[e.Tag] = e
		r.tags = append(r.tags, e.Tag)
	}
	slices.SortFunc(b.repos, func(x, y *backupRepo) int { return strings.Compare(x.name, y.name) })
	for _, r := range b.repos {
		slices.Sort(r.tags)
	}
	return b, nil
}

// SourceName is how messages name a source repository: "" is a tag-only
// backup's, whose name the backup does not record.
func SourceName(repo string) string {
	if repo == "" {
		return "(the tag-only backup's repository)"
	}
	return repo
}

// list names up to ten items, then how many more.
func list(items []string) string {
	const most = 10
	if len(items) <= most {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:most], ", "), len(items)-most)
}

func (b *backup) names() string {
	out := make([]string, len(b.repos))
	for i, r := range b.repos {
		out[i] = SourceName(r.name)
	}
	return list(out)
}

func (r *backupRepo) has(tag string) bool { _, ok := r.byTag[tag]; return ok }

// selection is part of a positional target: a repository of the backup,
// where it goes, and which tags (nil: every tag).
type selection struct {
	repo   *backupRepo
	target Target
	tags   []string
}

// restoreTargets plans Modes 1 and 2: each target is matched against the
// backup by README's target table (Restore), first matching row wins.
func (b *backup) restoreTargets(args []string, o RestoreOptions) (*Restore, error) {
	var refs []TargetRef
	for _, a := range args {
		t, err := parseTarget(a, b.w)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(refs, func(r TargetRef) bool { return r.String() == t.String() }) {
			refs = append(refs, t)
		}
	}
	var errs []string
	var sels []selection
	for _, t := range refs {
		s, err := b.match(t, len(refs) == 1)
		if err == nil {
			s, err = b.restrict(t, s)
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		// The same repository to the same place twice: the union of the
		// tags; every tag wins.
		for _, n := range s {
			i := slices.IndexFunc(sels, func(x selection) bool { return x.repo == n.repo && x.target == n.target })
			switch {
			case i < 0:
				sels = append(sels, n)
			case sels[i].tags == nil || n.tags == nil:
				sels[i].tags = nil
			default:
				for _, tag := range n.tags {
					if !slices.Contains(sels[i].tags, tag) {
						sels[i].tags = append(sels[i].tags, tag)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, &UsageError{Msg: strings.Join(errs, "\n")}
	}
	var ms []Mapping
	for _, s := range sels {
		m := Mapping{Source: s.repo.name, Target: s.target, ExcludeReferrers: o.ExcludeReferrers, Rule: -1}
		for _, tag := range orAll(s.tags, s.repo.tags) {
			e := s.repo.byTag[tag]
			m.Tags = append(m.Tags, TagMapping{From: tag, To: tag, Digest: e.Digest, Size: e.Size})
		}
		ms = append(ms, m)
	}
	r := &Restore{
		FailFast: o.FailFast == nil || *o.FailFast, ExcludeReferrers: o.ExcludeReferrers,
		DryRun: o.DryRun, Concurrency: o.Concurrency,
	}
	err := r.finish(b, ms, func(a, c *Mapping, at, ct TagMapping) string {
		return fmt.Sprintf("%s:%s would get two different manifests: %s:%s (%s) and %s:%s (%s); "+
			"%s them to different repositories, %s",
			a.Target, at.To, SourceName(a.Source), at.From, at.Digest, SourceName(c.Source), ct.From, ct.Digest, b.w.verb, b.w.hint)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// match finds the repositories target t stands for, by README's target
// table (Restore).
// single: t is the only positional target.
func (b *backup) match(t TargetRef, single bool) ([]selection, error) {
	var out []selection
	keep := func(r *backupRepo, path string) error {
		if r.name == "" {
			return usagef("target %q keeps each repository's path, but the backup does not record its repository's name "+
				"(a tag-only backup, as oras v1.3 writes them): name the repository to restore to, e.g. %s/<repository>",
				t.String(), t.Registry)
		}
		out = append(out, selection{repo: r, target: Target{Registry: t.Registry, Repository: path}})
		return nil
	}
	// 1. The registry alone: every repository, path kept.
	if t.Repository == "" {
		for _, r := range b.repos {
			if err := keep(r, r.path); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	// 2. A repository's path: that repository, path kept.
	// 3. A prefix of paths: those repositories, paths kept.
	for _, prefix := range []bool{false, true} {
		for _, r := range b.repos {
			if r.name != "" && (r.path == t.Repository || prefix && strings.HasPrefix(r.path, t.Repository+"/")) {
				_ = keep(r, r.path)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	// 4. Exactly one repository of the same last name element: renamed.
	base := lastElem(t.Repository)
	var named []*backupRepo
	for _, r := range b.repos {
		if r.name != "" && lastElem(r.path) == base {
			named = append(named, r)
		}
	}
	renamed := func(r *backupRepo) []selection {
		return []selection{{repo: r, target: Target{Registry: t.Registry, Repository: t.Repository}}}
	}
	if len(named) == 1 {
		return renamed(named[0]), nil
	}
	// 5. The only target, and the backup holds one repository: renamed.
	if single && len(b.repos) == 1 {
		return renamed(b.repos[0]), nil
	}
	// 6. The only target, several repositories, none matched: every
	// repository under the target as a prefix.
	if single && len(named) == 0 {
		for _, r := range b.repos {
			if err := keep(r, t.Repository+"/"+r.path); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	// 7. Anything else.
	if len(named) > 1 {
		cands := make([]string, len(named))
		for i, r := range named {
			cands[i] = r.name
		}
		return nil, usagef("target %q is ambiguous: %d repositories in %s are named %q: %s.\n"+
			"Give the path of one to keep it (%s/%s), %s",
			t.String(), len(named), b.w.the, base, list(cands), t.Registry, named[0].path, b.w.hint)
	}
	example := b.repos[0].path
	if b.repos[0].name == "" && len(b.repos) > 1 {
		example = b.repos[1].path
	}
	how := fmt.Sprintf("Give a repository's path (%s/%s), a prefix of paths, or a path ending in a repository's last name element; ",
		t.Registry, example)
	if b.repos[0].name == "" && len(b.repos) == 1 {
		how = "With several targets, each must match a repository by name, and the backup does not record its repository's name (a tag-only backup); give one target, "
	}
	return nil, usagef("target %q matches no repository in %s, which holds: %s.\n%s%s",
		t.String(), b.w.the, b.names(), how, b.w.hint)
}

// restrict applies the target's :tags. A repository that has none of them
// is left out; a tag that none of the matched repositories has is an
// error.
func (b *backup) restrict(t TargetRef, sels []selection) ([]selection, error) {
	if t.Tags == nil {
		return sels, nil
	}
	for _, tag := range t.Tags {
		// A repository without tags (a copy's source whose listing failed
		// or came back empty, which the caller reports) might have had it.
		if !slices.ContainsFunc(sels, func(s selection) bool { return s.repo.has(tag) || len(s.repo.tags) == 0 }) {
			if len(sels) == 1 {
				return nil, usagef("target %q: tag %q is not in %s: %s has %s",
					t.String(), tag, b.w.the, SourceName(sels[0].repo.name), list(sels[0].repo.tags))
			}
			names := make([]string, len(sels))
			for i, s := range sels {
				names[i] = SourceName(s.repo.name)
			}
			return nil, usagef("target %q: tag %q is not in %s: none of %s has it", t.String(), tag, b.w.the, list(names))
		}
	}
	var out []selection
	for _, s := range sels {
		for _, tag := range t.Tags {
			if s.repo.has(tag) {
				s.tags = append(s.tags, tag)
			}
		}
		if s.tags != nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// restoreRules plans Mode 3.
func (b *backup) restoreRules(rules *Rules, o RestoreOptions) (*Restore, error) {
	r := &Restore{
		Rules:            len(rules.Mappings),
		FailFast:         true,
		ExcludeReferrers: o.ExcludeReferrers || rules.ExcludeReferrers != nil && *rules.ExcludeReferrers,
		DryRun:           o.DryRun,
		Concurrency:      o.Concurrency,
	}
	if o.FailFast != nil {
		r.FailFast = *o.FailFast
	} else if rules.FailFast != nil {
		r.FailFast = *rules.FailFast
	}
	var errs []string
	var ms []Mapping
	for i, rm := range rules.Mappings {
		name := mappingName(i, rm.Source)
		fail := func(off int, format string, a ...any) {
			errs = append(errs, rules.errAt(off, name, format, a...).Error())
		}
		src := b.byName[rm.Source]
		if src == nil {
			fail(rm.pos.source, "%s", b.unknownSource(rm.Source))
			continue
		}
		// A repository without tags is a copy's source whose listing
		// failed or came back empty: the caller reports it, so its tags are
		// not checked here (a backup's repository always has tags).
		for k, tag := range rm.Tags {
			if !src.has(tag) && len(src.tags) > 0 {
				fail(rm.pos.tag(k), "tag %q is not in %s: %s has %s", tag, b.w.the, SourceName(src.name), list(src.tags))
			}
		}
		for _, from := range sortedKeys(rm.TagMappings) {
			if !src.has(from) && len(src.tags) > 0 {
				fail(rm.pos.tagKey(from), "\"tag-mappings\" renames %q, which is not in %s: %s has %s",
					from, b.w.the, SourceName(src.name), list(src.tags))
			}
		}
		excl := r.ExcludeReferrers
		if rm.ExcludeReferrers != nil {
			excl = o.ExcludeReferrers || *rm.ExcludeReferrers
		}
		m := Mapping{Source: src.name, Target: rm.Target, ExcludeReferrers: excl, Rule: i}
		for _, from := range orAll(rm.Tags, src.tags) {
			if e, ok := src.byTag[from]; ok {
				to := cmp.Or(rm.TagMappings[from], from)
				m.Tags = append(m.Tags, TagMapping{From: from, To: to, Digest: e.Digest, Size: e.Size})
			}
		}
		ms = append(ms, m)
	}
	if len(errs) > 0 {
		return nil, &UsageError{Msg: strings.Join(errs, "\n")}
	}
	err := r.finish(b, ms, func(a, c *Mapping, at, ct TagMapping) string {
		what := fmt.Sprintf("tag %q", ct.From)
		if ct.From != ct.To {
			what = fmt.Sprintf("tag %q (renamed %q)", ct.From, ct.To)
		}
		rm := rules.Mappings[c.Rule]
		off := rm.pos.start
		if k := slices.Index(rm.Tags, ct.From); k >= 0 {
			off = rm.pos.tag(k)
		}
		if _, ok := rm.TagMappings[ct.From]; ok {
			off = rm.pos.tagKey(ct.From)
		}
		other := "this mapping"
		if a.Rule != c.Rule {
			other = mappingName(a.Rule, a.Source)
		}
		return rules.errAt(off, mappingName(c.Rule, c.Source),
			"%s would put %s under %s:%s, where %s puts %s (tag %q): restrict \"tags\" or rename with \"tag-mappings\"",
			what, ct.Digest, c.Target, ct.To, other, at.Digest, at.From).Error()
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// unknownSource explains a rules source that the backup does not hold.
func (b *backup) unknownSource(src string) string {
	holds := b.w.The + " holds: " + b.names()
	if src == "" {
		return "\"source\" is missing: name one of " + b.w.the + "'s repositories. " + holds
	}
	t, err := parseTarget(src, b.w)
	switch {
	case err != nil:
		return fmt.Sprintf("invalid source: %v. %s", err, holds)
	case t.Tags != nil:
		return fmt.Sprintf("source %q names tags: give the repository alone and list the tags in \"tags\". %s", src, holds)
	}
	if r := b.byName[""]; r != nil && len(b.repos) == 1 {
		return fmt.Sprintf("%q is not in the backup: it is a tag-only backup (as oras v1.3 writes them), "+
			"which does not record its repository's name; leave \"source\" out to restore it", src)
	}
	msg := fmt.Sprintf("%q is not in %s. %s", src, b.w.the, holds)
	for _, r := range b.repos {
		if r.name != "" && (r.path == src || r.path == repoPath(src)) {
			return fmt.Sprintf("%s (did you mean %q? %s)", msg, r.name, b.w.names)
		}
	}
	return msg
}

// finish sorts the mappings, checks that no target tag gets two different
// manifests (collide describes the conflict: a came first), drops a tag
// pushed twice with the same manifest by one mapping, validates target
// names and fills in the plan.
func (r *Restore) finish(b *backup, ms []Mapping, collide func(a, c *Mapping, at, ct TagMapping) string) error {
	slices.SortStableFunc(ms, func(x, y Mapping) int {
		return cmp.Or(strings.Compare(x.Source, y.Source), strings.Compare(x.Target.Registry, y.Target.Registry),
			strings.Compare(x.Target.Repository, y.Target.Repository), cmp.Compare(x.Rule, y.Rule))
	})
	type pushed struct {
		m  int
		tm TagMapping
	}
	seen := map[string]pushed{}
	var errs []string
	for i := range ms {
		m := &ms[i]
		if err := (registry.Reference{Registry: m.Target.Registry, Repository: m.Target.Repository}).ValidateRepository(); err != nil {
			errs = append(errs, fmt.Sprintf("%s → %s: invalid target repository name %q: rename it %s",
				SourceName(m.Source), m.Target, m.Target.Repository, b.w.hint))
			continue
		}
		slices.SortFunc(m.Tags, func(x, y TagMapping) int { return cmp.Or(strings.Compare(x.To, y.To), strings.Compare(x.From, y.From)) })
		m.Tags = slices.CompactFunc(m.Tags, func(x, y TagMapping) bool { return x.To == y.To && x.Digest == y.Digest })
		for _, tm := range m.Tags {
			if !validTag(tm.To) {
				errs = append(errs, fmt.Sprintf("%s:%s cannot be %s as %s:%s: %s", SourceName(m.Source), tm.From, b.w.done, m.Target, tm.To, tagRule))
				continue
			}
			key := m.Target.String() + ":" + tm.To
			if p, ok := seen[key]; ok && p.tm.Digest != tm.Digest {
				errs = append(errs, collide(&ms[p.m], m, p.tm, tm))
				continue
			}
			seen[key] = pushed{i, tm}
		}
	}
	if len(errs) > 0 {
		return &UsageError{Msg: strings.Join(errs, "\n")}
	}
	r.Mappings = ms
	restored := map[string]bool{}
	for _, m := range ms {
		restored[m.Source] = true
	}
	r.Skipped = nil
	for _, br := range b.repos {
		if !restored[br.name] {
			r.Skipped = append(r.Skipped, br.name)
		}
	}
	return nil
}

// TagCount is the number of tags pushed.
func (r *Restore) TagCount() int {
	n := 0
	for _, m := range r.Mappings {
		n += len(m.Tags)
	}
	return n
}

// Sources are the backup's repositories that are restored, sorted.
func (r *Restore) Sources() []string {
	var out []string
	for _, m := range r.Mappings {
		if len(out) == 0 || out[len(out)-1] != m.Source {
			out = append(out, m.Source)
		}
	}
	return out
}

// Registries are the registries restored to, sorted.
func (r *Restore) Registries() []string {
	set := map[string]bool{}
	for _, m := range r.Mappings {
		set[m.Target.Registry] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Lines are the "source → target (n tags)" lines of the plan, one per
// mapping, with renamed tags and a mapping's referrer policy where it is
// not the global one:
//
//	docker.io/library/alpine → reg.example/library/alpine (2 tags)
//	staging.example/apps/web → prod.example/apps/web (1 tag; v2.0 as latest; without referrers)
func (r *Restore) Lines() []string {
	out := make([]string, 0, len(r.Mappings))
	for _, m := range r.Mappings {
		parts := []string{plural(len(m.Tags), "tag")}
		var renames []string
		for _, tm := range m.Tags {
			if tm.From != tm.To {
				renames = append(renames, tm.From+" as "+tm.To)
			}
		}
		if len(renames) > 0 {
			parts = append(parts, strings.Join(renames, ", "))
		}
		if m.ExcludeReferrers != r.ExcludeReferrers {
			parts = append(parts, map[bool]string{true: "without referrers", false: "with referrers"}[m.ExcludeReferrers])
		}
		out = append(out, fmt.Sprintf("%s → %s (%s)", SourceName(m.Source), m.Target, strings.Join(parts, "; ")))
	}
	return out
}

// String is Lines, one a line.
func (r *Restore) String() string { return strings.Join(r.Lines(), "\n") }

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// orAll is tags, or all when tags is nil (every tag).
func orAll(tags, all []string) []string {
	if tags == nil {
		return all
	}
	return tags
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
