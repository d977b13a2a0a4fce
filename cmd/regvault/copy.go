package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	api "github.com/regvault/regvault"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/source"
)

const copyExamples = `  # Copy two repositories, every tag, with their signatures and SBOMs,
  # into another registry, paths kept
  regvault copy --include-referrers \
    registry-a.mycompany.com/app/frontend registry-a.mycompany.com/app/backend \
    registry-b.mycompany.com

  # Selected tags, under a prefix (mirror/app/frontend, ...)
  regvault copy registry-a.mycompany.com/app/frontend:v1,v2 registry-b.mycompany.com/mirror

  # One repository to a new name
  regvault copy registry-a.mycompany.com/app/frontend registry-b.mycompany.com/web/frontend

  # Several targets: put them after --
  regvault copy registry-a.mycompany.com/app/frontend -- registry-b.mycompany.com registry-c.mycompany.com

  # Rename, retag and consolidate with a rules file (restore's format; its
  # sources are named as in the source registry)
  regvault copy --rules copy-rules.json registry-a.mycompany.com/team-a/app-1 registry-a.mycompany.com/team-b/app-2

  # What the target lacks and the upload size, pushing nothing
  regvault copy --dry-run registry-a.mycompany.com/app/frontend registry-b.mycompany.com

  # Separate credentials per end: the source's password from standard
  # input, the target's from the Docker config
  echo "$SOURCE_PASSWORD" | regvault copy --from-username ci --from-password-stdin \
    registry-a.mycompany.com/app/frontend registry-b.mycompany.com

  # Machine-readable summary
  regvault copy --format json registry-a.mycompany.com/app/frontend registry-b.mycompany.com

  # Shard 2 of 4 of a plan (regvault plan); in a Kubernetes Indexed Job: --shard auto/4
  regvault copy --plan plan.json --shard 2/4 registry-b.mycompany.com/mirror`

type copyCmd struct {
	c   *cli
	reg *copyRegistryFlags

	rules            string
	includeReferrers bool
	excludeReferrers bool
	dryRun           bool
	failFast         bool
	format           string
	planFile         string
	shard            string
}

func (c *cli) copyCommand() *cobra.Command {
	cp := &copyCmd{c: c, reg: newCopyRegistryFlags(c)}
	cmd := &cobra.Command{
		Use: "copy [flags] <registry>/<repo>[:<tag>[,<tag>...]] ... <target>\n" +
			"  regvault copy [flags] --plan <plan.json> [--shard I/N] <target> | -- <target> ...\n" +
			"  regvault copy [flags] <registry>/<repo>[:<tag>[,<tag>...]] ... -- <target> <target> ...\n" +
			"  regvault copy [flags] --rules <file> <registry>/<repo>[:<tag>[,<tag>...]] ...",
		Short: "Copy repositories from one registry into others, directly, with remapping",
		Long: `Copy repositories of one registry into one or more registries without an
archive: what a backup and a restore of the same selection would do, in
one run. Bytes stream from the source's GET to the target's PUT; nothing
is written to disk, and every digest is verified on the way.

The sources are named as backup's arguments: <registry>/<repository>[:<tag>[,<tag>...]],
all of one registry; no tags takes every tag (the referrers tag schema's
sha256-<hex> tags are not tags and are left out). --include-referrers
copies the referrers (signatures, SBOMs) of what is copied, recursively.
<registry>/<prefix>/* (quoted) is every repository the registry's catalog
lists under prefix.

--plan plan.json (written by regvault plan) copies the plan's tags from its
registry instead of sources, with no listing, and its referrer policy; the
arguments are then the targets only. --shard I/N copies only shard I of N of
it (auto/N: I from $JOB_COMPLETION_INDEX, as a Kubernetes Indexed Job sets
it); the target table is that of the whole plan, so each repository lands
where one unsharded copy puts it. A tag that moved since the plan was made
is copied as it is now, with a warning naming both digests, before anything
is pushed (movedSincePlan in --format json). A plan that cannot be read or a bad --shard is a usage error
(exit code 2); a shard with no tag copies nothing and exits 0.

The last argument is the target, as restore's targets
(<registry>[/<repository>][:<tag>[,<tag>...]]) with the same table: a
registry alone keeps the paths, a repository's path keeps it, a prefix
puts every source under it, a last path element renames the one source
named so. Several targets go after --. A rules file (--rules, restore's
format; its sources are named as in the source registry, with the
registry) renames, retags, consolidates several sources into one target,
and sets per-target referrer policy. Anything ambiguous, and tags that
would collide, is an error before anything is pushed.

Every source → target mapping is printed before anything is pushed.
Blobs go before the manifests that use them, referrers after their
subjects, tags last. What a target already has is not sent again (a
re-run sends only what it still lacks), a blob shared by several target
repositories of one registry is uploaded once and mounted into the
others. The largest blob's upload starts first, once the sources are
walked, before the targets have answered about the rest: its session
opens at once, its bytes go once its own checks have answered (a target
repository of that registry that holds it already gets it mounted
instead). --dry-run says what the targets lack and the upload size.

The first repository that fails stops the copy (rules: settings.fail-fast);
--fail-fast=false goes on with the others: a source blob that cannot be
read fails the target repositories that need it (their tags are not set)
and the others are completed (exit code 3). When no source repository can
be read, the copy says why for each and pushes nothing (exit code 1).
Exit codes: 0 done, 1 failure,
2 usage or validation error (nothing pushed), 3 partial.

Each end has its own registry flags, as oras cp names them: --from-* for
the source registry, --to-* for the targets (credentials, TLS, plain HTTP,
headers, --resolve, the referrers' distribution spec); both read the
Docker config and its credential helpers by default. Only one of the
-stdin flags may be given: standard input is read once.`,
		Example: copyExamples,
		RunE: func(cmd *cobra.Command, args []string) error {
			var failFast *bool
			if cmd.Flags().Changed("fail-fast") {
				failFast = &cp.failFast
			}
			return cp.run(cmd.Context(), args, cmd.ArgsLenAtDash(), failFast)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&cp.rules, "rules", "", "rules file (JSON with comments) mapping the source repositories and tags to targets (restore's format)")
	fs.BoolVar(&cp.includeReferrers, "include-referrers", false, fmt.Sprintf("also copy referrers (signatures, SBOMs, ...), recursively (up to %d deep)", source.MaxReferrerDepth))
	fs.BoolVar(&cp.excludeReferrers, "exclude-referrers", false, "do not copy referrers, even with --include-referrers or a rules file that asks for them")
	fs.BoolVar(&cp.dryRun, "dry-run", false, "print what would be copied (tags, digests, referrers, what the targets lack, upload size) and push nothing")
	fs.BoolVar(&cp.failFast, "fail-fast", true, "stop at the first repository that fails (unless the rules file's settings.fail-fast is false); --fail-fast=false goes on with the others")
	fs.StringVar(&cp.format, "format", "text", "output format: text or json")
	fs.StringVar(&cp.planFile, "plan", "", "copy the tags of this plan file (regvault plan) from its registry: no listing; the arguments are then the targets only; with --shard, only the shard's tags")
	fs.StringVar(&cp.shard, "shard", "", "with --plan: copy shard I of N of the plan (I/N, I from 0), or auto/N for I from $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)")
	cp.reg.addFlags(fs)
	return cmd
}

func (cp *copyCmd) run(ctx context.Context, args []string, dash int, failFast *bool) error {
	c := cp.c
	if cp.format != "text" && cp.format != "json" {
		return usageError("--format %q: use text or json", cp.format)
	}
	sharded, err := cp.fromPlan(args, dash)
	if err != nil {
		if isEmptyShard(err) {
			fmt.Fprintln(c.stdout, err.Error()+"; nothing copied")
			return nil
		}
		return err
	}
	var sources, targets []string
	if sharded != nil {
		sources, targets = sharded.args, sharded.targets
	} else if sources, targets, err = plan.SplitCopyArgs(args, dash, cp.rules != ""); err != nil {
		return err
	}
	var from, to *registry.Options
	if slices.ContainsFunc(sources, api.IsPattern) {
		// The catalog is read before anything else can be checked.
		f, t, err := cp.reg.options(c.stdin)
		if err != nil {
			return err
		}
		from, to = &f, &t
		if sources, err = api.ExpandSources(ctx, sources, f); err != nil {
			return err
		}
	}
	opts := api.CopyOptions{
		Sources:          sources,
		Targets:          targets,
		RulesFile:        cp.rules,
		IncludeReferrers: cp.includeReferrers,
		ExcludeReferrers: cp.excludeReferrers,
		FailFast:         failFast,
		DryRun:           cp.dryRun,
		Concurrency:      cp.reg.concurrency,
		Progress:         &pipeline.Progress{},
	}
	if sharded != nil {
		opts.Shard = sharded.shard
	}
	// What can be checked without a registry is checked first.
	if err := opts.Validate(); err != nil {
		return err
	}
	opts.Concurrency = cp.reg.transfers() // validated; 0 when not given: adapt
	if from != nil {
		opts.From, opts.To = *from, *to
	} else if opts.From, opts.To, err = cp.reg.options(c.stdin); err != nil {
		return err
	}
	rep := &restoreReporter{
		c: c, out: c.stdout, rulesFile: cp.rules, targets: targets, copy: true,
		json: cp.format == "json",
		tty:  cp.reg.tty(c.stdout) && isTerminal(c.stderr),
	}
	opts.Observe = rep.observe
	opts.OnStart = func(report *api.Report) {
		st := report.Sources
		rep.plan, rep.snk = report.RestorePlan, report.Sink
		rep.in = &backupIndex{path: st.Registry, size: -1, repos: st.Repos, tags: st.Tags}
		cp.reg.warnInsecure([]string{st.Registry}, rep.plan.Registries())
		if sharded != nil {
			c.stderrLine(sharded.line)
			// Before anything is pushed: the tags that moved since the
			// plan was made are copied as they are now.
			rep.planMoved = report.PlanMoved(sharded.plan)
			for _, m := range rep.planMoved {
				c.stderrLine("Warning: " + m.String())
			}
		}
		if !rep.json {
			rep.header()
		}
		if !rep.plan.DryRun {
			rep.actionLine()
		}
		rep.start(opts.Progress)
	}
	report, err := api.Copy(ctx, opts)
	rep.stop()
	if report == nil {
		var re *api.RepositoryError
		if all, ok := err.(interface{ Unwrap() []error }); ok && errors.As(err, &re) {
			// no source repository could be read
			msg := ""
			for _, e := range all.Unwrap() {
				if errors.As(e, &re) {
					msg += fmt.Sprintf("reading %s: %v\n", re.Repository, re.Err)
				}
			}
			return fmt.Errorf("%sNothing was copied: no source repository could be read", msg)
		}
		if errors.As(err, &re) {
			// fail-fast: a source repository could not be read
			return fmt.Errorf("reading %s: %w\nNothing was copied: --fail-fast stops at the first failure; --fail-fast=false copies the other repositories", re.Repository, re.Err)
		}
		return err // nothing was pushed: the options, the sources or the plan were refused
	}
	return rep.finish(report)
}

// fromPlan reads --plan and --shard; nil when there is no --plan. The
// plan's (or shard's) tags are the sources; the arguments are the targets
// only: one, several after --, or none with --rules. The plan's referrer
// policy holds (--exclude-referrers and the rules may still leave them
// out).
func (cp *copyCmd) fromPlan(args []string, dash int) (*planRun, error) {
	if cp.planFile == "" {
		if cp.shard != "" {
			return nil, usageError("--shard %s needs --plan: a shard is a part of a plan file (regvault plan)", cp.shard)
		}
		return nil, nil
	}
	var targets []string
	switch {
	case dash > 0:
		return nil, usageError("--plan %s is the selection: give no sources as arguments (got %s), only the targets (after -- for several)", cp.planFile, strings.Join(args[:dash], " "))
	case cp.rules != "" && len(args) > 0:
		return nil, usageError("--plan with --rules: the rules file names the targets; give no arguments (got %s)", strings.Join(args, " "))
	case cp.rules != "":
	case dash == 0:
		targets = args
	case len(args) == 1:
		targets = args
	case len(args) == 0:
		return nil, usageError("no target given: regvault copy --plan %s [--shard I/N] <target>, or several targets after --", cp.planFile)
	default:
		return nil, usageError("--plan %s is the selection: the arguments are the targets only, got %d (put several targets after --)", cp.planFile, len(args))
	}
	whole, s, sp, line, err := selectShard(cp.planFile, cp.shard)
	if err != nil {
		return nil, err
	}
	if cp.includeReferrers && !sp.IncludeReferrers {
		return nil, usageError("--include-referrers: plan %s was made without referrers; make it again with regvault plan --include-referrers", cp.planFile)
	}
	cp.includeReferrers = sp.IncludeReferrers
	// The sources are the whole plan's, the shard picks its tags: the
	// target table maps every repository as a copy of the whole plan
	// does.
	run := &planRun{plan: sp, args: api.PlanSources(whole), targets: targets, line: line}
	if s != nil {
		run.shard = s.Has
	}
	return run, nil
}
