package plan

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A copy is planned in two steps. ParseCopyArgs (or NewCopy) checks
// everything that needs no registry: the sources (as backup's arguments),
// the targets (as restore's) or the rules file, and the target table as
// far as repository names decide it. Once the caller has resolved the
// source tags, Copy.Restore plans where each tag goes, exactly as restore
// does for a backup holding those tags.

// CopyOptions are the flags of `regvault copy` that the plan needs.
type CopyOptions struct {
	// Rules is the --rules path; "" without one.
	Rules            string
	IncludeReferrers bool
	// ExcludeReferrers, FailFast, DryRun and Concurrency mean what they
	// mean for restore (RestoreOptions).
	ExcludeReferrers bool
	FailFast         *bool
	DryRun           bool
	Concurrency      int
}

// Copy is a checked `regvault copy` before its source tags are known.
type Copy struct {
	// Registry is the source registry (one for all sources).
	Registry string
	// Repos are the source repositories, in the order given, and the tags
	// to take from each (nil: every tag but the referrers tag schema's).
	Repos []Repo
	// Targets are the positional targets, each once, in the order given;
	// none with Rules.
	Targets []TargetRef
	// Rules is the parsed rules file; nil without one.
	Rules            *Rules
	IncludeReferrers bool

	targets []string // as given, for the planner
	opts    RestoreOptions
}

const (
	copyForms = "regvault copy [flags] <registry>/<repo>[:<tags>] ... <target>\n" +
		"  regvault copy [flags] <registry>/<repo>[:<tags>] ... -- <target> <target> ...\n" +
		"  regvault copy [flags] --rules <file> <registry>/<repo>[:<tags>] ..."

	copyRulesHint = "or map repositories with a rules file: regvault copy --rules <file> <sources> ..."

	copyRulesWithTargets = `--rules cannot be used with positional targets: the rules file names the targets.

Use either:
  - Positional targets (the last argument, or several after --):
      regvault copy registry-a.io/repo1 registry-a.io/repo2 registry-b.io
      regvault copy registry-a.io/repo1 -- registry-b.io registry-c.io/mirror

  - Rules file for repository mapping:
      regvault copy --rules rules.json registry-a.io/repo1 registry-a.io/repo2`
)

var copyWords = words{
	the: "the source selection", The: "The source selection", verb: "copy", done: "copied", hint: copyRulesHint,
	names: "a source is named with its registry, as on the command line",
}

// referrerTag matches the tags of the referrers tag schema
// (sha256-<hex>): an index of referrers, not a tag a user made.
var referrerTag = regexp.MustCompile(`^(sha256|sha512)-[a-f0-9]{64,128}$`)

// IsReferrerTag says whether tag is one of the referrers tag schema
// (sha256-<hex>), which a listing of every tag leaves out, as backup does.
func IsReferrerTag(tag string) bool { return referrerTag.MatchString(tag) }

// SplitCopyArgs splits the positional arguments of `regvault copy` into
// sources and targets. dash is the number of arguments before "--" (cobra's
// ArgsLenAtDash), or -1 without one. Without "--" the last argument is the
// target; after "--" every argument is a target; with a rules file
// (rules) there is no positional target.
func SplitCopyArgs(args []string, dash int, rules bool) (sources, targets []string, err error) {
	if dash < 0 || dash > len(args) {
		dash = -1
	}
	switch {
	case rules && dash >= 0 && dash < len(args):
		return nil, nil, &UsageError{Msg: copyRulesWithTargets}
	case rules && dash >= 0:
		sources = args[:dash]
	case rules:
		sources = args
	case dash >= 0:
		sources, targets = args[:dash], args[dash:]
		if len(targets) == 0 {
			return nil, nil, usagef("no target after --: name one or more targets, <registry>[/<repository>][:<tags>]; usage:\n  %s", copyForms)
		}
	case len(args) == 1:
		return nil, nil, usagef("no target given: the last argument is the target, after the sources; usage:\n  %s", copyForms)
	case len(args) > 1:
		sources, targets = args[:len(args)-1], args[len(args)-1:]
	}
	if len(sources) == 0 {
		return nil, nil, usagef("no source given: name the repositories to copy, <registry>/<repo>[:<tags>]; usage:\n  %s", copyForms)
	}
	return sources, targets, nil
}

// ParseCopyArgs checks the positional arguments of `regvault copy`
// (SplitCopyArgs) and its flags into a Copy. Every error is a *UsageError.
func ParseCopyArgs(args []string, dash int, o CopyOptions) (*Copy, error) {
	sources, targets, err := SplitCopyArgs(args, dash, o.Rules != "")
	if err != nil {
		return nil, err
	}
	return NewCopy(sources, targets, o)
}

// NewCopy checks the sources and targets of a copy into a Copy: sources as
// backup's arguments (one registry), targets as restore's positional
// targets, or the rules file. Every error is a *UsageError, found without a
// registry: malformed names, a target that matches no source repository or
// is ambiguous, a rules file's source that is not one of the sources.
func NewCopy(sources, targets []string, o CopyOptions) (*Copy, error) {
	switch {
	case o.Rules != "" && len(targets) > 0:
		return nil, &UsageError{Msg: copyRulesWithTargets}
	case len(sources) == 0:
		return nil, usagef("no source given: name the repositories to copy, <registry>/<repo>[:<tags>]; usage:\n  %s", copyForms)
	case o.Rules == "" && len(targets) == 0:
		return nil, usagef("no target given: usage:\n  %s", copyForms)
	}
	ro := RestoreOptions{FailFast: o.FailFast, ExcludeReferrers: o.ExcludeReferrers, DryRun: o.DryRun, Concurrency: o.Concurrency}
	if err := ro.check(); err != nil {
		return nil, err
	}
	// With one positional target, a second target given without "--" is
	// read as a source: say how to give several.
	hint := ""
	if len(targets) == 1 && o.Rules == "" {
		hint = "\nWithout --, only the last argument is a target; to copy to several targets, put them after --:\n" +
			"  regvault copy <sources> -- <target> <target> ..."
	}
	reg, repos, err := parseSources(sources, func(registries []string) error {
		return usagef("all source repositories of one copy must be from the same registry, got %s.\n"+
			"Run a separate copy for each source registry.%s", strings.Join(registries, ", "), hint)
	})
	if ue := (*UsageError)(nil); errors.As(err, &ue) && hint != "" && !strings.Contains(ue.Msg, hint) &&
		slices.ContainsFunc(sources, func(s string) bool {
			_, serr := ParseRepoRef(s)
			_, terr := ParseTarget(s)
			return serr != nil && terr == nil
		}) {
		return nil, &UsageError{Msg: ue.Msg + hint}
	}
	if err != nil {
		return nil, err
	}
	c := &Copy{Registry: reg, Repos: repos, IncludeReferrers: o.IncludeReferrers, opts: ro}
	for _, a := range targets {
		t, err := parseTarget(a, copyWords)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(c.Targets, func(r TargetRef) bool { return r.String() == t.String() }) {
			c.Targets = append(c.Targets, t)
			c.targets = append(c.targets, a)
		}
	}
	if o.Rules != "" {
		if c.Rules, err = LoadRules(o.Rules); err != nil {
			return nil, err
		}
	}
	// The table's rows and a rules file's sources depend on repository
	// names only: check them now, before any request.
	b := c.sourceRepos()
	if c.Rules != nil {
		var errs []string
		for i, rm := range c.Rules.Mappings {
			if b.byName[rm.Source] == nil {
				errs = append(errs, c.Rules.errAt(rm.pos.source, mappingName(i, rm.Source), "%s", b.unknownSource(rm.Source)).Error())
			}
		}
		if len(errs) > 0 {
			return nil, &UsageError{Msg: strings.Join(errs, "\n")}
		}
		return c, nil
	}
	var errs []string
	for _, t := range c.Targets {
		if _, err := b.match(t, len(c.Targets) == 1); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return nil, &UsageError{Msg: strings.Join(errs, "\n")}
	}
	return c, nil
}

// Names are the full names ("registry/path") of the source repositories,
// in the order given.
func (c *Copy) Names() []string {
	out := make([]string, len(c.Repos))
	for i, r := range c.Repos {
		out[i] = c.Registry + "/" + r.Name
	}
	return out
}

// sourceRepos is the sources as a backup without tags yet.
func (c *Copy) sourceRepos() *backup {
	b := &backup{byName: map[string]*backupRepo{}, w: copyWords}
	for _, name := range c.Names() {
		r := &backupRepo{name: name, path: repoPath(name), byTag: map[string]BackupEntry{}}
		b.byName[name] = r
		b.repos = append(b.repos, r)
	}
	slices.SortFunc(b.repos, func(x, y *backupRepo) int { return strings.Compare(x.name, y.name) })
	return b
}

// Restore plans the copy once the source tags are resolved: entries are
// the source's tags (Repo the full name "registry/path", Tag, Digest,
// Size). The plan is restore's for a backup holding them, with the same
// target table, rules, tag mappings and collision checks.
//
// For a source taken with every tag, entries named by the referrers tag
// schema (IsReferrerTag) are left out; for one with named tags, entries of
// other tags are. A source repository without entries (its listing failed
// or came back empty, which the caller reports) still counts in the target
// table, so the other sources go where they would have gone; it gets no
// mapping and is listed in Skipped. Every error for the user is a
// *UsageError; an entry of a repository that is not a source is the
// caller's mistake.
func (c *Copy) Restore(entries []BackupEntry) (*Restore, error) {
	byName := map[string]Repo{}
	named := map[string]map[string]bool{} // full name → its named tags (a set: a plan names thousands)
	for i, n := range c.Names() {
		byName[n] = c.Repos[i]
		if c.Repos[i].Tags != nil {
			named[n] = map[string]bool{}
			for _, t := range c.Repos[i].Tags {
				named[n][t] = true
			}
		}
	}
	var kept []BackupEntry
	for _, e := range entries {
		r, ok := byName[e.Repo]
		switch {
		case !ok:
			return nil, fmt.Errorf("copy plan: %s:%s is not from one of the sources (%s)", e.Repo, e.Tag, strings.Join(c.Names(), ", "))
		case r.Tags == nil && IsReferrerTag(e.Tag):
		case r.Tags != nil && !named[e.Repo][e.Tag]:
		default:
			kept = append(kept, e)
		}
	}
	b, err := readBackup(kept, copyWords)
	if err != nil {
		return nil, err
	}
	for _, r := range c.sourceRepos().repos {
		if b.byName[r.name] == nil {
			b.byName[r.name] = r
			b.repos = append(b.repos, r)
		}
	}
	slices.SortFunc(b.repos, func(x, y *backupRepo) int { return strings.Compare(x.name, y.name) })
	var p *Restore
	if c.Rules != nil {
		p, err = b.restoreRules(c.Rules, c.opts)
	} else {
		p, err = b.restoreTargets(c.targets, c.opts)
	}
	if err != nil {
		return nil, err
	}
	// Sources without tags got mappings without tags: nothing to push.
	p.Mappings = slices.DeleteFunc(p.Mappings, func(m Mapping) bool { return len(m.Tags) == 0 })
	p.Skipped = nil
	done := map[string]bool{}
	for _, m := range p.Mappings {
		done[m.Source] = true
	}
	for _, r := range b.repos {
		if !done[r.name] {
			p.Skipped = append(p.Skipped, r.name)
		}
	}
	return p, nil
}
