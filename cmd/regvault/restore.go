package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	api "github.com/regvault/regvault"
	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

const restoreExamples = `  # Mode 1: restore every repository of the backup into a registry, paths kept
  # (docker.io/library/alpine → registry.mycompany.com/library/alpine)
  regvault restore --input base-images.tar registry.mycompany.com

  # Mode 2: restore selected repositories only, paths kept
  regvault restore --input base-images.tar \
    registry.mycompany.com/library/alpine \
    registry.mycompany.com/library/busybox

  # Selected tags of selected repositories (comma-separated)
  regvault restore --input base-images.tar \
    registry.mycompany.com/library/alpine:3.19.0 \
    registry.mycompany.com/library/busybox:1.36.1,1.35.0

  # Rename the one repository named alpine in the backup to base/alpine
  regvault restore --input base-images.tar registry.mycompany.com/base/alpine

  # Put every repository under a prefix (mirror/library/alpine, ...)
  regvault restore --input base-images.tar registry.mycompany.com/mirror

  # A single-repository backup (also one written by oras backup v1.3) to any name
  regvault restore --input alpine.tar registry.mycompany.com/base/alpine:3.19.0

  # Mode 3: map repositories and tags with a rules file
  regvault restore --input base-images.tar --rules restore-rules.json

  # Show what would be pushed (tags, digests, referrers, upload size), push nothing
  regvault restore --input base-images.tar registry.mycompany.com --dry-run

  # Read the backup (tar, tar.gz or tar.zst) from standard input
  ssh backup-host 'cat apps.tar.zst' | regvault restore --input - registry.mycompany.com

  # Leave out referrers (signatures, SBOMs), which are restored by default
  regvault restore --input apps.tar --exclude-referrers registry.mycompany.com

  # Go on with the other repositories when one fails (the default stops)
  regvault restore --input apps.tar --fail-fast=false registry.mycompany.com

  # A rules file (JSON with // and /* */ comments):
  {
    "settings": {
      "exclude-referrers": false,  // leave out referrers everywhere
      "fail-fast": true            // stop at the first failing repository
    },
    "mappings": [
      // rename and relocate
      { "source": "docker.io/library/busybox",
        "target": "registry.mycompany.com/base/busybox-custom" },
      // only some tags, and push 1.25-alpine as stable (only)
      { "source": "docker.io/library/nginx",
        "target": "registry.mycompany.com/webservers/nginx",
        "tags": ["1.25-alpine", "1.26-alpine"],
        "tag-mappings": { "1.25-alpine": "stable" } },
      // no referrers for this one
      { "source": "docker.io/library/alpine",
        "target": "registry.mycompany.com/images/alpine",
        "exclude-referrers": true },
      // several sources into one repository (their tags must not collide)
      { "source": "legacy.mycompany.com/team-a/app-1",
        "target": "registry.mycompany.com/unified/services",
        "tag-mappings": { "v1": "app-1-v1" } },
      { "source": "legacy.mycompany.com/team-b/app-2",
        "target": "registry.mycompany.com/unified/services",
        "tag-mappings": { "v1": "app-2-v1" } }
    ]
  }`

type restoreCmd struct {
	c   *cli
	reg registryFlags

	inputs           []string
	rules            string
	dryRun           bool
	excludeReferrers bool
	failFast         bool
	format           string
}

func (c *cli) restoreCommand() *cobra.Command {
	r := &restoreCmd{c: c, reg: registryFlags{c: c}}
	cmd := &cobra.Command{
		Use: "restore [flags] --input <path|-> [--input <path> ...] <registry>[/<repository>][:<tag>[,<tag>...]] ...\n" +
			"  regvault restore [flags] --input <path|-> [--input <path> ...] --rules <file>",
		Short: "Restore a backup into one or more registries, with remapping",
		Long: `Restore a backup (an OCI image layout: a directory, a tar, a gzip- or
zstd-compressed tar, or such a tar on standard input with --input -) into one
or more registries. The input's form is found from its content, not its name.
Backups written by regvault and single-repository backups written by
oras backup (tag-only names) are both read. Entries named sha256-<hex> that
point at an index (the referrers tag schema, as oras backup --include-referrers
writes it) are not tags: the referrers they list are restored as referrers of
their subjects, and --exclude-referrers leaves them out.
The archives of
docker save (Docker 25 and later) and regctl image export are read too: their
manifest.json and repositories are ignored (with a note on stderr), and an
image is named by its io.containerd.image.name where
org.opencontainers.image.ref.name holds the tag alone. A layout whose
index.json names no tag (crane pull --format=oci) has nothing to restore:
it is refused, as verify says. In a directory, oci-layout, index.json and
every blob must be regular files: anything else (a named pipe, a device) is
refused before it is opened.

Several backups restore as one: --input repeated, or a glob pattern
(--input '/out/part-*-of-4.tar.zst', quoted so that regvault expands it,
in name order; a pattern that matches nothing is an error). The parts of a
sharded backup (backup --plan --shard) are restored so: the union of their
tags is planned once against the targets and rules, and a blob that
several hold is read from one and uploaded once. A tag that two backups
give different manifests is refused (exit code 2), naming both.

Each target is <registry>[/<repository>][:<tag>[,<tag>...]]; with several,
they may name different registries. The first rule that applies wins:

  registry alone                 every repository, path kept
                                 (docker.io/library/alpine → reg/library/alpine)
  registry/<path of a repo>      that repository only, path kept
  registry/<prefix of paths>     the repositories under it, paths kept
  registry/x/alpine              the one repository whose last path element
                                 is alpine, renamed to x/alpine
  registry/x (the only target)   a backup of one repository: renamed to x;
                                 of several: every repository under x/
                                 (reg/x/library/alpine)

:tags restores only those tags. Anything ambiguous is an error before
anything is pushed. For renames, tag renames, consolidation and per-repository
referrer policy, use a rules file (--rules; not together with targets).

Every source → target mapping is printed before anything is pushed. Blobs go
before the manifests that use them and tags last; what a target already has
is not pushed again, and a blob shared by several repositories of one
registry is uploaded once and mounted into the others. The largest blob's
upload starts first, before the target has answered about the rest (not
from a compressed tar or standard input): its session opens at once, its
bytes go once its own checks have answered (a repository of that registry
that holds it already gets it mounted instead). Referrers (signatures,
SBOMs) are restored into the repositories they were backed up from, unless
--exclude-referrers; a referrer counts as in place only where its subject
lists it (the Referrers API, or the sha256-<hex> tag-schema index on a
registry without it), so a re-run after a failure completes those indexes.
A non-distributable (foreign) layer that the backup does not hold is left
out and its manifest pushed without it (the target must accept that:
distribution needs validation.manifests.urls.allow); the report counts it.
From a compressed tar or standard input, such a layer is asked for once
every other blob is read (its manifests wait for it) rather than read ahead
for at planning; --dry-run reads the stream to its end to count them. The
archive is read to its end before tags are set: an archive that goes wrong
after the content (a second index.json, a cut, a bad checksum) sets no tag.

Every request is retried (up to 5 times) on a 5xx, 429 or 408 answer, a
reset, or a connection closed without an answer (a mount POST and a manifest
PUT too: a registry takes them twice without harm); a blob upload is
started over instead (up to 4 tries). A registry's Retry-After is honoured
up to --max-retry-wait (default 60s), and each wait is said on standard
error.

A damaged backup is refused before anything is pushed (--dry-run too) when the
damage shows in index.json or the manifests: a missing or corrupt manifest, a
blob missing or of another size (in a tar or directory), a descriptor with a
negative size, an invalid or unknown digest, or a media type that is not
type/subtype (exit code 1).

Planning grows linearly with the tags (the time per tag stays the same from
10,000 to 100,000 tags). Ctrl-C (SIGINT) or SIGTERM ends a restore in any phase,
planning included, within about a second (exit code 1); run it again to
complete it.

The first repository that fails stops the restore (rules: settings.fail-fast);
--fail-fast=false goes on with the others. Exit codes: 0 done, 1 failure,
2 usage or validation error (nothing pushed), 3 partial.

A registry that sends nothing for --read-timeout (an answer, a byte of a
body) or takes no byte of an upload (a blob, a manifest) for it counts as a
transient fault: the request is retried, a blob upload starts over (4
attempts in all). Once all of an upload is sent, its answer may take up to 5
minutes (or --read-timeout, if longer). Manifests of more than 4 MiB (which
backup refuses) are not read.`,
		Example: restoreExamples,
		RunE: func(cmd *cobra.Command, args []string) error {
			var failFast *bool
			if cmd.Flags().Changed("fail-fast") {
				failFast = &r.failFast
			}
			return r.run(cmd.Context(), args, failFast)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringArrayVarP(&r.inputs, "input", "i", nil, "the backup: a directory, a tar, a gzip- or zstd-compressed tar, or - for standard input; repeat it, or give a glob pattern, to restore several backups as one")
	fs.StringVar(&r.rules, "rules", "", "rules file (JSON with comments) mapping the backup's repositories and tags to targets")
	fs.BoolVar(&r.dryRun, "dry-run", false, "print what would be restored (tags, digests, referrers, upload size) and push nothing")
	fs.BoolVar(&r.excludeReferrers, "exclude-referrers", false, "do not restore referrers (signatures, SBOMs, ...)")
	fs.BoolVar(&r.failFast, "fail-fast", true, "stop at the first repository that fails (unless the rules file's settings.fail-fast is false); --fail-fast=false goes on with the others")
	fs.StringVar(&r.format, "format", "text", "output format: text or json")
	r.reg.addFlags(fs, true)
	return cmd
}

func (r *restoreCmd) run(ctx context.Context, args []string, failFast *bool) error {
	c := r.c
	if r.format != "text" && r.format != "json" {
		return usageError("--format %q: use text or json", r.format)
	}
	inputs, err := expandInputs(r.inputs)
	if err != nil {
		return err
	}
	input := ""
	if len(inputs) == 1 {
		input = inputs[0]
	}
	stdinInput := slices.Contains(inputs, "-")
	opts := api.RestoreOptions{
		Input:            input,
		Stdin:            c.stdin,
		Targets:          args,
		RulesFile:        r.rules,
		FailFast:         failFast,
		ExcludeReferrers: r.excludeReferrers,
		DryRun:           r.dryRun,
		Concurrency:      r.reg.concurrency,
		Progress:         &pipeline.Progress{},
	}
	// What can be checked without the backup is checked first: a mistake
	// costs no reading.
	if len(inputs) > 1 {
		opts.Inputs = inputs
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	opts.Concurrency = r.reg.transfers() // validated; 0 when not given: adapt
	if stdinInput && (r.reg.passwordStdin || r.reg.identityTokenStdin) {
		return usageError("--input - reads the backup from standard input, which --password-stdin and --identity-token-stdin read too: use one of them")
	}
	if stdinInput && isTerminal(c.stdin) {
		return usageError("--input -: standard input is a terminal; pipe the backup in, or give a file or directory")
	}
	if opts.Registry, err = r.reg.options(c.stdin); err != nil {
		return err
	}
	noteName := input
	if noteName == "-" {
		noteName = "standard input"
	}
	opts.Note = func(n string) {
		if noteName == "" { // several: the note names its backup
			fmt.Fprintf(c.stderr, "Note: %s\n", n)
			return
		}
		fmt.Fprintf(c.stderr, "Note: %s: %s\n", noteName, n)
	}
	rep := &restoreReporter{
		c: c, out: c.stdout, rulesFile: r.rules, targets: args,
		json: r.format == "json",
		tty:  r.reg.tty(c.stdout) && isTerminal(c.stderr),
	}
	opts.Observe = rep.observe
	opts.OnStart = func(report *api.Report) {
		rep.plan, rep.in, rep.snk = report.RestorePlan, newBackupIndex(report.Input), report.Sink
		r.reg.warnInsecure(rep.plan.Registries()...)
		if !rep.json {
			rep.header()
		}
		if !rep.plan.DryRun {
			rep.actionLine()
		}
		rep.start(opts.Progress)
	}
	report, err := api.Restore(ctx, opts)
	rep.stop()
	if report == nil {
		return err // nothing was pushed: the options, the backup or the plan were refused
	}
	return rep.finish(report)
}

// finish prints the report of a restore or copy that ran and gives the
// command's outcome (its exit code, an interruption, or a failure no
// repository is to blame for: reading the backup or the source).
func (r *restoreReporter) finish(report *api.Report) error {
	sum := newRestoreSummary(report)
	code := sum.exitCode()
	if r.json {
		if err := r.printJSON(sum, code); err != nil {
			return err
		}
	} else {
		r.printSummary(sum)
	}
	var whole error
	if sum.runErr != nil && len(sum.culprits()) == 0 {
		whole = fmt.Errorf("%s failed: %w", r.say("restore", "copy"), sum.runErr)
	}
	return runOutcome(code, sum.interrupted, sum.plan.DryRun,
		fmt.Sprintf("interrupted: the %s was not completed; run it again to complete it", r.say("restore", "copy")), whole)
}

// backupIndex is what the backup's index.json lists, as the report
// shows it.
type backupIndex struct {
	path  string
	paths []string // several backups restored as one
	kind  source.LayoutKind
	size  int64               // -1: not known
	repos []string            // sorted
	tags  map[string][]string // repo → sorted tags
}

func newBackupIndex(in *api.Input) *backupIndex {
	return &backupIndex{path: in.Path, paths: in.Paths, kind: in.Kind, size: in.Size, repos: in.Repos, tags: in.Tags}
}

func (in *backupIndex) tagCount() int {
	n := 0
	for _, tags := range in.tags {
		n += len(tags)
	}
	return n
}

// name is how the report names the input.
func (in *backupIndex) name() string {
	if in.path == "-" {
		return "standard input"
	}
	return in.path
}

// restoreReporter turns restore events into lines and, on a terminal, a
// progress bar. It observes; it never drives the pipeline.
type restoreReporter struct {
	c         *cli
	out       io.Writer
	plan      *plan.Restore
	in        *backupIndex
	rulesFile string
	targets   []string
	json      bool
	tty       bool
	snk       *sink.Registry // nil for a dry run

	mu       sync.Mutex
	restored bool // a "✓ Restored" line was printed
	// copy: the report of regvault copy (source registry, "copied")
	// rather than restore's.
	copy bool
	bar  progressBar
	// planMoved: copy --plan's tags that moved since the plan was made.
	planMoved []api.MovedTag
}

// say is restore's word, or copy's for regvault copy.
func (r *restoreReporter) say(restore, copy string) string {
	if r.copy {
		return copy
	}
	return restore
}

// header prints what the backup holds and the plan's mappings.
func (r *restoreReporter) header() {
	w := r.out
	in := r.in
	size := ""
	if in.size >= 0 {
		size = " (" + humanBytes(in.size) + ")"
	}
	if r.copy {
		fmt.Fprintf(w, "Source registry: %s\n", in.path)
	} else {
		fmt.Fprintf(w, "Loaded backup archive: %s%s\n", in.name(), size)
	}
	if r.rulesFile != "" {
		fmt.Fprintf(w, "Loaded rules configuration: %s\n", r.rulesFile)
	}
	fmt.Fprintf(w, "Found %d repository(ies) with %d tag(s):\n", len(in.repos), in.tagCount())
	for _, repo := range in.repos {
		tags := strings.Join(in.tags[repo], ", ")
		if r.copy && tags == "" {
			tags = "(could not be read)"
		}
		fmt.Fprintf(w, "  - %s: %s\n", plan.SourceName(repo), tags)
	}
	if r.plan.Rules > 0 {
		fmt.Fprintf(w, "Applying %d mapping rule(s)\n", r.plan.Rules)
	}
	fmt.Fprintln(w)
	sources := len(r.plan.Sources())
	if len(r.plan.Skipped) > 0 {
		fmt.Fprintf(w, "Mapping %d of %d repository(ies):\n", sources, len(in.repos))
	} else {
		fmt.Fprintf(w, "Mapping %d repository(ies):\n", sources)
	}
	for _, l := range r.plan.Lines() {
		fmt.Fprintf(w, "  ✓ %s\n", l)
	}
	for _, s := range r.plan.Skipped {
		fmt.Fprintf(w, "  - %s (skipped)\n", plan.SourceName(s))
	}
	fmt.Fprintln(w)
}

// actionLine says what is being done, in words for each mode.
func (r *restoreReporter) actionLine() {
	if r.json {
		return
	}
	p := r.plan
	switch {
	case p.Rules > 0:
		fmt.Fprintln(r.out, r.say("Restoring", "Copying")+" with mappings...")
	case len(r.targets) == 1 && !strings.Contains(r.targets[0], "/"):
		fmt.Fprintf(r.out, "%s to %s...\n", r.say("Restoring", "Copying"), r.targets[0])
	case slices.ContainsFunc(r.targets, func(t string) bool {
		ref, err := plan.ParseTarget(t)
		return err == nil && ref.Tags != nil
	}):
		fmt.Fprintf(r.out, "%s selected tags from %d repository(ies)...\n", r.say("Restoring", "Copying"), len(p.Sources()))
	default:
		fmt.Fprintf(r.out, "%s to %s...\n", r.say("Restoring", "Copying"), strings.Join(p.Registries(), ", "))
	}
}

// observe is the pipeline's Observer: a line per tag as its repository's
// content is in place.
func (r *restoreReporter) observe(ev pipeline.Event) {
	if r.json || r.plan.DryRun || ev.Kind != pipeline.RepoDone {
		return
	}
	if r.snk != nil && r.snk.Failures()[ev.Repo] != nil {
		return // the summary says what went wrong
	}
	var b strings.Builder
	for _, t := range ev.Tags {
		fmt.Fprintf(&b, "✓ %s %s:%s with %d referrer(s)\n", r.say("Restored", "Copied"), ev.Repo, t.Name, t.Referrers)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bar.clear()
	r.restored = true
	fmt.Fprint(r.out, b.String())
}

// start shows the progress bar on a terminal, polling pr.
func (r *restoreReporter) start(pr *pipeline.Progress) {
	if !r.tty || r.json || r.plan.DryRun {
		return
	}
	r.bar = progressBar{w: r.c.stderr, desc: r.say("Restoring", "Copying"), mu: &r.mu}
	r.bar.start(pr)
	r.c.bar.Store(&r.bar)
}

// stop removes the progress bar.
func (r *restoreReporter) stop() {
	r.c.bar.Store(nil)
	r.bar.stop()
}

// restoreSummary is what a restore did, for both output formats.
type restoreSummary struct {
	plan        *plan.Restore
	res         *pipeline.Result
	graph       *graph.Graph
	runErr      error
	interrupted bool
	snk         *sink.Registry     // nil for a dry run
	moved       *pipeline.Progress // bytes to move and moved

	// dry run: what the targets already have
	check    *sink.Registry
	checkErr error

	ok, failed []pipeline.RepoResult
	// errs are the typed errors of the repositories that failed by
	// themselves (the report's), by full name.
	errs map[string]*api.RepositoryError
	// sourceFailed: a copy's source repositories that could not be read
	// (no target repository stands for them).
	sourceFailed map[string]bool
}

func newRestoreSummary(rep *api.Report) *restoreSummary {
	s := &restoreSummary{plan: rep.RestorePlan, res: rep.Result, graph: rep.Graph, runErr: rep.Err,
		interrupted: rep.Interrupted, snk: rep.Sink, moved: rep.Progress, check: rep.Check, checkErr: rep.CheckErr,
		errs: map[string]*api.RepositoryError{}, sourceFailed: map[string]bool{}}
	if s.res == nil {
		s.res = &pipeline.Result{}
	}
	inResult := map[string]bool{}
	for _, rr := range s.res.Repos {
		inResult[rr.Repo] = true
	}
	for _, rr := range rep.Repositories {
		if rr.Err != nil {
			s.errs[rr.Repository.String()] = rr.Err
			if !inResult[rr.Repository.String()] {
				// a copy's source that could not be read: no target
				// repository of the run stands for it
				res := *s.res
				res.Repos = append(slices.Clone(res.Repos), pipeline.RepoResult{Repo: rr.Repository.String(), Err: rr.Err.Err})
				s.res = &res
				s.sourceFailed[rr.Repository.String()] = true
			}
		}
	}
	s.classify()
	return s
}

func (s *restoreSummary) classify() {
	if s.res == nil {
		s.res = &pipeline.Result{}
	}
	for _, rr := range s.res.Repos {
		if rr.Err != nil {
			s.failed = append(s.failed, rr)
		} else {
			s.ok = append(s.ok, rr)
		}
	}
}

// done reports whether the restore went through to its end (tags set)
// for the repositories that did not fail.
func (s *restoreSummary) done() bool { return s.runErr == nil && !s.interrupted }

func (s *restoreSummary) exitCode() int {
	switch {
	case s.interrupted, s.runErr != nil:
		return exitFailure
	case len(s.failed) > 0 && len(s.ok) > 0:
		return exitPartial
	case len(s.failed) > 0:
		return exitFailure
	}
	return exitOK
}

// culprits are the repositories that failed by themselves, as the report
// types them; the others were stopped.
func (s *restoreSummary) culprits() []*api.RepositoryError {
	var out []*api.RepositoryError
	for _, rr := range s.failed {
		if e := s.errs[rr.Repo]; e != nil {
			out = append(out, e)
		}
	}
	return out
}

// recommendations are what to do about err, the failure of repo on host:
// a copy's source that could not be read gets backup's (reading), the
// others restore's (pushing).
func (s *restoreSummary) recommendations(repo, host string, err error) []string {
	if s.sourceFailed[repo] {
		return recommendations(host, []error{err})
	}
	return restoreRecommendations(host, []error{err})
}

// origins says where each target repository and tag come from in the
// backup: built once, looked up per repository and per tag (a plan may
// hold 100,000 tags).
type origins struct {
	sources map[string][]string  // target → the backup's repositories restored into it
	tags    map[string][2]string // target:tag → the backup's repository and tag
}

func newOrigins(p *plan.Restore) *origins {
	o := &origins{sources: map[string][]string{}, tags: map[string][2]string{}}
	for _, m := range p.Mappings {
		t := m.Target.String()
		if !slices.Contains(o.sources[t], m.Source) {
			o.sources[t] = append(o.sources[t], m.Source)
		}
		for _, tm := range m.Tags {
			if _, ok := o.tags[t+":"+tm.To]; !ok {
				o.tags[t+":"+tm.To] = [2]string{m.Source, tm.From}
			}
		}
	}
	return o
}

// sourcesOf lists the backup's repositories restored into target.
func (o *origins) sourcesOf(target string) []string { return o.sources[target] }

// pathOf is a repository's path without its registry ("" stays "").
func pathOf(repo string) string {
	if r, err := graph.ParseRepository(repo); err == nil {
		return r.Path
	}
	return repo
}

// targetOf is a target repository's registry and path (a target name
// always has both).
func targetOf(name string) graph.Repository {
	r, _ := graph.ParseRepository(name)
	return r
}

// tagSource finds the backup's repository and tag pushed as target:tag.
func (o *origins) tagSource(target, tag string) (string, string) {
	if st, ok := o.tags[target+":"+tag]; ok {
		return st[0], st[1]
	}
	return "", tag
}

// restoredCounts are the tags and source repositories of the targets that
// did not fail.
func (s *restoreSummary) restoredCounts() (tags, sources int) {
	failed := map[string]bool{}
	for _, rr := range s.failed {
		failed[rr.Repo] = true
	}
	src := map[string]bool{}
	for _, m := range s.plan.Mappings {
		if failed[m.Target.String()] {
			continue
		}
		tags += len(m.Tags)
		src[m.Source] = true
	}
	return tags, len(src)
}

// uploadEstimate is what a restore into empty targets sends: each blob
// once per registry (mounted into the other repositories there), each
// manifest to each repository; and what the target repositories must hold
// in all.
func uploadEstimate(g *graph.Graph) (upload, needed int64, pairs int) {
	if g == nil {
		return 0, 0, 0
	}
	for _, n := range g.Nodes() {
		needed += int64(len(n.Repos)) * n.Desc.Size
		pairs += len(n.Repos)
		if n.Kind == graph.KindManifest {
			upload += int64(len(n.Repos)) * n.Desc.Size
			continue
		}
		hosts := map[string]bool{}
		for _, repo := range n.Repos {
			hosts[targetOf(repo).Registry] = true
		}
		upload += int64(len(hosts)) * n.Desc.Size
	}
	return upload, needed, pairs
}

func (r *restoreReporter) printSummary(s *restoreSummary) {
	if s.interrupted {
		return // run() says so
	}
	if s.plan.DryRun {
		if s.runErr == nil {
			r.printDryRun(s)
		}
		return
	}
	w := r.out
	if s.done() {
		if r.restored {
			fmt.Fprintln(w)
		}
		st := s.snk.Stats()
		if len(s.failed) == 0 && st.Uploaded.Load() == 0 && st.Mounted.Load() == 0 && st.Manifests.Load() == 0 && st.Tagged.Load() == 0 {
			fmt.Fprintf(w, "Nothing to push: every blob and tag is already in place (%s up to date).\n",
				plural(int(st.TagsCurrent.Load()), "tag", "tags"))
		} else if line := statsLine(st); line != "" {
			fmt.Fprintln(w, line)
		}
		tags, sources := s.restoredCounts()
		remap := ""
		if s.plan.Rules > 0 {
			remap = " with remapping"
		}
		what := fmt.Sprintf("%d tag(s) from %d repository(ies) to %s%s in %s.",
			tags, sources, strings.Join(s.plan.Registries(), ", "), remap, humanDuration(s.res.Duration))
		if len(s.failed) == 0 {
			fmt.Fprintf(w, "Successfully %s %s\n", r.say("restored", "copied"), what)
		} else if len(s.ok) > 0 {
			fmt.Fprintf(w, "%s %s\n", r.say("Restored", "Copied"), what)
		}
		if n := len(s.plan.Skipped); n > 0 && len(s.ok) > 0 {
			fmt.Fprintf(w, "Note: %d repository(ies) in %s were not %s.\n", n, r.say("backup", "the source registry"), r.say("restored", "copied"))
		}
		if line := leftOutLine(s.graph, r.say("the backup", "the source registry")); line != "" {
			fmt.Fprintln(w, line)
		}
	}
	if len(s.failed) > 0 {
		r.printFailures(s)
	}
}

// statsLine says what was pushed: "Uploaded 12 blob(s) (80 KB), mounted 8
// blob(s) from other repositories, pushed 20 manifest(s), set 6 tag(s); 3
// tag(s) and 4 blob(s) or manifest(s) were already in place."
func statsLine(st *sink.RegistryStats) string {
	var did, had []string
	if n := st.Uploaded.Load(); n > 0 {
		did = append(did, fmt.Sprintf("uploaded %d blob(s) (%s)", n, humanBytes(st.UploadedBytes.Load())))
	}
	if n := st.Mounted.Load(); n > 0 {
		did = append(did, fmt.Sprintf("mounted %d blob(s) from other repositories", n))
	}
	if n := st.Manifests.Load(); n > 0 {
		did = append(did, fmt.Sprintf("pushed %d manifest(s)", n))
	}
	if n := st.Tagged.Load(); n > 0 {
		did = append(did, fmt.Sprintf("set %d tag(s)", n))
	}
	if n := st.TagsCurrent.Load(); n > 0 {
		had = append(had, fmt.Sprintf("%d tag(s)", n))
	}
	if n := st.Present.Load(); n > 0 {
		had = append(had, fmt.Sprintf("%d manifest(s) and blob(s)", n))
	}
	if len(did) == 0 {
		return ""
	}
	line := strings.Join(did, ", ")
	line = strings.ToUpper(line[:1]) + line[1:]
	if len(had) > 0 {
		line += "; " + strings.Join(had, " and ") + " already in place"
	}
	return line + "."
}

// printFailures prints to stderr each failed repository with its reason,
// then the outcome and a line per repository.
func (r *restoreReporter) printFailures(s *restoreSummary) {
	w := r.c.stderr
	p := s.plan
	culprits := s.culprits()
	isCulprit := map[string]bool{}
	var errs []error
	var hosts []string
	fmt.Fprintln(w)
	for _, e := range culprits {
		isCulprit[e.Repository.String()] = true
		fmt.Fprintf(w, "Error: Failed to %s %s\n", r.say("restore", "copy"), e.Repository)
		fmt.Fprintf(w, "  Reason: %s\n", strings.ReplaceAll(r.c.redact(e.Err.Error()), "\n", "\n    "))
		errs = append(errs, e.Err)
		hosts = append(hosts, e.Repository.Registry)
	}
	fmt.Fprintln(w)
	total := len(s.res.Repos)
	switch {
	case !s.done() && p.FailFast:
		fmt.Fprintf(w, "%s stopped at the first failure (fail-fast): %d of %d repositories %s\n", r.say("Restore", "Copy"), 0, total, r.say("restored", "copied"))
	case len(s.ok) == 0:
		fmt.Fprintf(w, "Nothing %s: %d of %d repositories failed\n", r.say("restored", "copied"), len(s.failed), total)
	default:
		fmt.Fprintf(w, "Partial %s: %d of %d repositories %s successfully\n", r.say("restore", "copy"), len(s.ok), total, r.say("restored", "copied"))
	}
	for _, rr := range s.res.Repos {
		switch {
		case rr.Err == nil && s.done():
			fmt.Fprintf(w, "  ✓ %s (%s)\n", rr.Repo, plural(len(rr.Tags), "tag", "tags"))
		case isCulprit[rr.Repo]:
			fmt.Fprintf(w, "  ✗ %s (%s)\n", rr.Repo, r.c.redact(reason(rr.Err)))
		default:
			fmt.Fprintf(w, "  - %s (stopped)\n", rr.Repo)
		}
	}
	var recs recommendationList
	for i, err := range errs {
		recs.add(s.recommendations(culprits[i].Repository.String(), hosts[i], err)...)
	}
	if !s.done() && p.FailFast && total > 1 {
		recs = append(recs, "Use --fail-fast=false (or \"settings\": {\"fail-fast\": false}) to "+r.say("restore", "copy")+" the other repositories anyway")
	}
	recs = append(recs, "Run the same "+r.say("restore", "copy")+" again once fixed: what is already in place is not pushed again")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Recommendations:")
	for i, rec := range recs {
		fmt.Fprintf(w, "  %d. %s\n", i+1, rec)
	}
}

// printDryRun prints the dry-run report: what would be pushed where.
func (r *restoreReporter) printDryRun(s *restoreSummary) {
	w := r.out
	p := s.plan
	orig := newOrigins(p)
	fmt.Fprintln(w, "[DRY RUN] The following operations would be performed:")
	byHost := map[string][]pipeline.RepoResult{}
	var hosts []string
	for _, rr := range s.res.Repos {
		host := targetOf(rr.Repo).Registry
		if byHost[host] == nil {
			hosts = append(hosts, host)
		}
		byHost[host] = append(byHost[host], rr)
	}
	sort.Strings(hosts)
	artifacts := 0
	for _, host := range hosts {
		fmt.Fprintf(w, "\nRegistry: %s\n", host)
		for i, rr := range byHost[host] {
			if i > 0 {
				fmt.Fprintln(w)
			}
			path := targetOf(rr.Repo).Path
			fmt.Fprintf(w, "  Repository: %s", path)
			if src := orig.sourcesOf(rr.Repo); len(src) > 1 || len(src) == 1 && pathOf(src[0]) != path {
				names := make([]string, len(src))
				for k, n := range src {
					names[k] = plan.SourceName(n)
				}
				fmt.Fprintf(w, " (from %s)", strings.Join(names, ", "))
			}
			fmt.Fprintln(w)
			for _, t := range rr.Tags {
				from := ""
				if _, ft := orig.tagSource(rr.Repo, t.Name); ft != t.Name {
					from = ", from tag " + ft
				}
				fmt.Fprintf(w, "    ✓ %s (%s%s) + %d referrer(s)\n", t.Name, shortDigest(t.Desc.Digest), from, t.Referrers)
				artifacts += 1 + t.Referrers
			}
		}
	}
	fmt.Fprintln(w)
	upload, needed, pairs := uploadEstimate(s.graph)
	fmt.Fprintf(w, "[DRY RUN] Would %s %d tag(s) from %d repository(ies)\n", r.say("restore", "copy"), p.TagCount(), len(p.Sources()))
	fmt.Fprintf(w, "[DRY RUN] Total artifacts: %d (including referrers)\n", artifacts)
	fmt.Fprintf(w, "[DRY RUN] Estimated upload size: %s\n", humanBytes(upload))
	fmt.Fprintf(w, "[DRY RUN] %s\n", presentLine(s, r.c.redact, upload, needed, pairs))
	if line := leftOutLine(s.graph, r.say("the backup", "the source registry")); line != "" {
		fmt.Fprintln(w, "[DRY RUN] "+line)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "No changes were made. Remove --dry-run to perform actual "+r.say("restore", "copy")+".")
}

// presentLine says how much of the content the targets already have, as
// asked read-only; redact hides secrets in the error of a failed asking.
func presentLine(s *restoreSummary, redact func(string) string, upload, needed int64, pairs int) string {
	targets := "the target registry"
	if len(s.plan.Registries()) > 1 {
		targets = "the target registries"
	}
	if s.check == nil || s.checkErr != nil {
		why := "not asked"
		if s.checkErr != nil {
			why = redact(reason(s.checkErr))
		}
		return fmt.Sprintf("Could not ask %s what it already has (%s): the upload size is an upper bound", targets, why)
	}
	nodes, bytes := s.check.Present()
	switch {
	case nodes == 0:
		return fmt.Sprintf("Already in %s: nothing; all of it would be uploaded", targets)
	case nodes >= pairs:
		return fmt.Sprintf("Already in %s: every manifest and blob (%s); nothing would be uploaded", targets, humanBytes(bytes))
	}
	left := min(upload, needed-bytes)
	return fmt.Sprintf("Already in %s: %d of %d manifests and blobs (%s); at most %s left to upload",
		targets, nodes, pairs, humanBytes(bytes), humanBytes(left))
}

// JSON output: one object.

type restoreJSONTag struct {
	Tag       string `json:"tag"`
	Source    string `json:"source"`
	SourceTag string `json:"sourceTag"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Referrers int    `json:"referrers"`
	Artifacts int    `json:"artifacts"`
	Bytes     int64  `json:"bytes"`
	// NonDistributable counts the non-distributable layers left out.
	NonDistributable int `json:"nonDistributableLeftOut"`
}

type restoreJSONTarget struct {
	Target           string           `json:"target"`
	Registry         string           `json:"registry"`
	Repository       string           `json:"repository"`
	Sources          []string         `json:"sources"`
	ExcludeReferrers bool             `json:"excludeReferrers"`
	Status           string           `json:"status"` // ok, failed, stopped, planned (dry run)
	Error            string           `json:"error,omitempty"`
	Reason           string           `json:"reason,omitempty"`
	Tags             []restoreJSONTag `json:"tags"`
	Artifacts        int              `json:"artifacts"`
	Bytes            int64            `json:"bytes"`
}

type restoreJSONFailure struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

type restoreJSONSummary struct {
	Input string `json:"input"`
	// Inputs are the backups restored as one, when several.
	Inputs     []string            `json:"inputs,omitempty"`
	InputKind  string              `json:"inputKind"`
	InputSize  int64               `json:"inputSize"` // -1: not known
	Rules      string              `json:"rules,omitempty"`
	DryRun     bool                `json:"dryRun"`
	FailFast   bool                `json:"failFast"`
	Registries []string            `json:"registries"`
	Targets    []restoreJSONTarget `json:"targets"`
	Skipped    []string            `json:"skipped"`
	Tags       int                 `json:"tags"`      // tags restored (planned, for a dry run)
	Referrers  int                 `json:"referrers"` // referrers restored with them

	UniqueBlobs   int   `json:"uniqueBlobs"` // unique manifests and blobs
	UniqueBytes   int64 `json:"uniqueBytes"`
	Uploaded      int64 `json:"uploaded"` // blobs uploaded
	UploadedBytes int64 `json:"uploadedBytes"`
	Mounted       int64 `json:"mounted"`   // blobs mounted from another repository
	Manifests     int64 `json:"manifests"` // manifests pushed
	Tagged        int64 `json:"tagged"`    // tags set
	TagsCurrent   int64 `json:"tagsCurrent"`
	Present       int64 `json:"present"`      // manifest and blob × repository pairs already in place
	BlobsSkipped  int   `json:"blobsSkipped"` // unique manifests and blobs every target already had
	BytesSkipped  int64 `json:"bytesSkipped"`
	BytesRead     int64 `json:"bytesRead"` // bytes read from the backup and sent
	// NonDistributable lists the non-distributable layers left out: the
	// backup does not hold them, the manifests go without them.
	NonDistributable []jsonLeftOut `json:"nonDistributableLeftOut"`

	// dry run
	EstimatedUploadBytes int64  `json:"estimatedUploadBytes,omitempty"`
	PresentBlobs         *int   `json:"presentBlobs,omitempty"` // manifest and blob × repository pairs the targets have
	PresentBytes         *int64 `json:"presentBytes,omitempty"`

	DurationSeconds float64              `json:"durationSeconds"`
	Failures        []restoreJSONFailure `json:"failures"`
	// MovedSincePlan: copy --plan's tags that moved since the plan was
	// made (each also a warning on standard error).
	MovedSincePlan  []jsonPlanMove `json:"movedSincePlan,omitempty"`
	Recommendations []string       `json:"recommendations,omitempty"`
	ExitCode        int            `json:"exitCode"`
	Error           string         `json:"error,omitempty"`
}

func (r *restoreReporter) printJSON(s *restoreSummary, code int) error {
	p := s.plan
	orig := newOrigins(p)
	js := restoreJSONSummary{
		Input:            r.in.path,
		Inputs:           r.in.paths,
		InputKind:        r.in.kind.String(),
		InputSize:        r.in.size,
		Rules:            r.rulesFile,
		DryRun:           p.DryRun,
		FailFast:         p.FailFast,
		Registries:       p.Registries(),
		Targets:          []restoreJSONTarget{},
		Skipped:          []string{},
		UniqueBlobs:      s.res.UniqueNodes,
		UniqueBytes:      s.res.UniqueBytes,
		DurationSeconds:  s.res.Duration.Seconds(),
		Failures:         []restoreJSONFailure{},
		ExitCode:         code,
		NonDistributable: leftOut(s.graph),
	}
	if r.copy {
		js.InputKind = "registry"
	}
	js.MovedSincePlan = jsonPlanMoves(r.planMoved)
	js.Skipped = append(js.Skipped, p.Skipped...)
	if st := s.snk; st != nil {
		stats := st.Stats()
		js.Uploaded, js.UploadedBytes = stats.Uploaded.Load(), stats.UploadedBytes.Load()
		js.Mounted, js.Manifests = stats.Mounted.Load(), stats.Manifests.Load()
		js.Tagged, js.TagsCurrent = stats.Tagged.Load(), stats.TagsCurrent.Load()
		js.Present = stats.Present.Load()
		js.BlobsSkipped = s.res.Skipped
		js.BytesSkipped = s.res.UniqueBytes - s.moved.Total.Load()
		js.BytesRead = s.moved.Done.Load()
	}
	if p.DryRun {
		js.EstimatedUploadBytes, _, _ = uploadEstimate(s.graph)
		if s.check != nil && s.checkErr == nil {
			n, b := s.check.Present()
			js.PresentBlobs, js.PresentBytes = &n, &b
		}
	}
	switch {
	case s.interrupted:
		js.Error = "interrupted"
	case s.runErr != nil:
		js.Error = r.c.redact(s.runErr.Error())
	case s.checkErr != nil:
		js.Error = "could not ask the targets what they have: " + r.c.redact(s.checkErr.Error())
	}
	isCulprit := map[string]bool{}
	var hosts []string
	var errs []error
	culprits := s.culprits()
	for _, e := range culprits {
		isCulprit[e.Repository.String()] = true
		js.Failures = append(js.Failures, restoreJSONFailure{Target: e.Repository.String(), Reason: r.c.redact(reason(e.Err)), Error: r.c.redact(e.Err.Error())})
		hosts = append(hosts, e.Repository.Registry)
		errs = append(errs, e.Err)
	}
	var recs recommendationList
	for i, err := range errs {
		recs.add(s.recommendations(culprits[i].Repository.String(), hosts[i], err)...)
	}
	js.Recommendations = recs
	excluded := map[string]bool{}
	for _, m := range p.Mappings {
		if m.ExcludeReferrers || p.ExcludeReferrers {
			excluded[m.Target.String()] = true
		}
	}
	for _, rr := range s.res.Repos {
		target := targetOf(rr.Repo)
		sources := orig.sourcesOf(rr.Repo)
		if sources == nil {
			sources = []string{} // a copy's source that could not be read: no mapping
		}
		jt := restoreJSONTarget{Target: rr.Repo, Registry: target.Registry, Repository: target.Path, Sources: sources,
			ExcludeReferrers: excluded[rr.Repo], Status: "ok", Tags: []restoreJSONTag{}, Artifacts: rr.Artifacts, Bytes: rr.Bytes}
		switch {
		case rr.Err != nil && isCulprit[rr.Repo]:
			jt.Status, jt.Reason, jt.Error = "failed", r.c.redact(reason(rr.Err)), r.c.redact(rr.Err.Error())
		case rr.Err != nil || !s.done():
			jt.Status = "stopped"
		case p.DryRun:
			jt.Status = "planned"
		}
		for _, t := range rr.Tags {
			if t.Desc.Digest == "" {
				continue
			}
			src, from := orig.tagSource(rr.Repo, t.Name)
			jt.Tags = append(jt.Tags, restoreJSONTag{Tag: t.Name, Source: src, SourceTag: from,
				Digest: t.Desc.Digest.String(), MediaType: t.Desc.MediaType, Size: t.Desc.Size,
				Referrers: t.Referrers, Artifacts: t.Artifacts, Bytes: t.Bytes, NonDistributable: t.NonDistributable})
			if jt.Status == "ok" || jt.Status == "planned" {
				js.Tags++
				js.Referrers += t.Referrers
			}
		}
		js.Targets = append(js.Targets, jt)
	}
	b, err := json.MarshalIndent(js, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(r.out, "%s\n", b)
	if err == nil {
		// The reasons are in the JSON; stderr gets the short version.
		for _, f := range js.Failures {
			fmt.Fprintf(r.c.stderr, "Error: Failed to %s %s: %s\n", r.say("restore", "copy"), f.Target, f.Reason)
		}
	}
	return err
}

// expandInputs expands the glob patterns among --input values (in name
// order; a value that names an existing file is taken as it is), keeping
// the order given otherwise. A pattern that matches nothing is a usage
// error, as is a backup named twice.
func expandInputs(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		if v == "-" || !strings.ContainsAny(v, "*?[") {
			out = append(out, v)
			continue
		}
		if _, err := os.Lstat(v); err == nil {
			out = append(out, v)
			continue
		}
		matches, err := filepath.Glob(v)
		if err != nil {
			return nil, usageError("--input %s: %v", v, err)
		}
		if len(matches) == 0 {
			return nil, usageError("--input %s: the pattern matches no file or directory", v)
		}
		out = append(out, matches...) // sorted by filepath.Glob
	}
	seen := map[string]bool{}
	for _, v := range out {
		if v != "-" && seen[filepath.Clean(v)] {
			return nil, usageError("--input %s is given twice", v)
		}
		seen[filepath.Clean(v)] = true
	}
	return out, nil
}
