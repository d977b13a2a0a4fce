package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	api "github.com/regvault/regvault"
	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/planfile"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/source"
)

const backupExamples = `  # Back up several repositories of one registry into one tar archive
  regvault backup --output base-images.tar \
    --include-referrers \
    docker.io/library/busybox:1.36.1 \
    docker.io/library/alpine:3.19.0 \
    docker.io/library/nginx:1.25-alpine

  # Back up selected tags of several repositories (comma-separated)
  regvault backup --output versioned-bases.tar \
    docker.io/library/alpine:3.18.0,3.19.0 \
    docker.io/library/busybox:1.35.0,1.36.1 \
    docker.io/library/redis:7.2-alpine

  # Back up every tag of a repository, with its signatures and SBOMs (referrers)
  regvault backup --output app.tar --include-referrers registry.mycompany.com/app/frontend

  # Write a zstd-compressed tar (.tar.gz/.tgz gives gzip)
  regvault backup --output apps.tar.zst \
    registry.mycompany.com/app/frontend registry.mycompany.com/app/backend

  # Write a directory (an OCI image layout); a later backup of the same
  # repository into it adds to it (fetching only what it lacks; one run at a
  # time adds to a directory)
  regvault backup --output ./backup-dir registry.mycompany.com/app/frontend:v2.0

  # Stream the tar to standard output, e.g. to compress or copy it elsewhere
  regvault backup --output - registry.mycompany.com/app/frontend | ssh backup-host 'cat > frontend.tar'

  # Name tags registry/repo:tag in index.json for a single repository, too
  regvault backup --output backup.tar --full-reference docker.io/library/alpine:latest

  # A private registry: the password from standard input, never on the command line
  echo "$REGISTRY_PASSWORD" | regvault backup --output private-backup.tar \
    --username admin --password-stdin \
    registry.mycompany.com/app/frontend registry.mycompany.com/app/backend

  # Show what would be backed up (tags, digests, referrers, size) without writing anything
  regvault backup --dry-run --include-referrers \
    docker.io/library/busybox:1.36.1 docker.io/library/alpine:3.19.0

  # Machine-readable summary
  regvault backup --output apps.tar --format json registry.mycompany.com/app/frontend

  # Every repository under a namespace (the registry's catalog)
  regvault backup --output team.tar.zst 'registry.mycompany.com/team/*'

  # Shard 2 of 4 of a plan (regvault plan); in a Kubernetes Indexed Job: --shard auto/4
  regvault backup --plan plan.json --shard 2/4 --output part-2-of-4.tar.zst`

// listingLimitsHelp states the limits of registry.MaxTagPages & co.,
// source.MaxReferrerDepth and source.MaxIndexDepth.
var listingLimitsHelp = fmt.Sprintf(`Limits against a registry whose listings never end: a repository fails
when its tag list has more than %d pages or %d tags, when one manifest
has more than %d pages or %d referrers, when a page lists only what
earlier pages did (a Link header that points back), when referrers of
referrers go more than %d deep, or indexes of indexes more than %d.`,
	registry.MaxTagPages, registry.MaxTags, registry.MaxReferrerPages, registry.MaxReferrers, source.MaxReferrerDepth, source.MaxIndexDepth)

type backupCmd struct {
	c   *cli
	reg registryFlags

	output           string
	includeReferrers bool
	fullReference    bool
	dryRun           bool
	failFast         bool
	format           string
	planFile         string
	shard            string
}

func (c *cli) backupCommand() *cobra.Command {
	b := &backupCmd{c: c, reg: registryFlags{c: c}}
	cmd := &cobra.Command{
		Use:   "backup [flags] --output <path> <registry>/<repo>[:<tag>[,<tag>...]] | <registry>/<prefix>/* ...\n  regvault backup [flags] --output <path> --plan <plan.json> [--shard I/N]",
		Short: "Back up repositories of one registry into one OCI image layout",
		Long: `Back up one or more repositories of one registry into a single OCI image
layout: a directory, a tar (.tar), a compressed tar (.tar.gz, .tgz, .tar.zst,
.tzst), or a tar on standard output (-). Each blob is fetched and stored once,
however many repositories and tags share it.

Each argument is <registry>/<repository>[:<tag>[,<tag>...]]. With no tags, every
tag of the repository is backed up. All repositories must be from the same
registry: create a separate backup for each registry.
<registry>/<prefix>/* (quoted) is every repository the registry's catalog
lists under prefix, every tag (<registry>/* every repository).

--plan plan.json (written by regvault plan) backs up the plan's tags instead
of arguments, with no listing, and its referrer policy; --shard I/N only
shard I of N of it (I from 0; auto/N takes I from $JOB_COMPLETION_INDEX, as
a Kubernetes Indexed Job sets it): every process computes the same
assignment from the plan alone. Each shard writes its own archive, named
registry/repository:tag throughout (--full-reference), so that the parts
restore as one (restore --input part-0 --input part-1 ...). A tag that moved
since the plan was made is backed up as it is now, with a warning naming
both digests (movedSincePlan in --format json); a tag deleted since fails its repository as any missing tag
does. A plan that cannot be read, a bad --shard, or --plan with arguments
is a usage error (exit code 2). A shard with no tag (more shards than tags)
writes nothing and exits 0.

index.json names each tag by the tag alone for a single repository (as oras
does), and by registry/repository:tag with --full-reference and always for
several repositories. It also lists, unnamed, every referrer and every other
manifest (the platform manifests of an index), so that tools which find a
layout's manifests by index.json (oras discover --oci-layout) find them, and,
with --include-referrers, names sha256-<hex of a subject's digest> an index
of that subject's referrers, as oras backups and regctl's layouts hold them
(regctl image copy --referrers ocidir://... finds referrers through them).
Those entries are not tags: regvault's restore and repo tags skip them.
A layout named by the tag alone records its repository (the
dev.regvault.repository annotation of index.json).

A directory that already holds a layout is added to, one run at a time: blobs
it holds are not fetched again, a tag that moved to another digest is updated
and listed as such. A backup that would mix or replace the tags of another
repository is refused (exit code 2, nothing written): a directory whose tags
are named by the tag alone takes only the same repository, again without
--full-reference; one named registry/repository:tag takes only backups named
so (--full-reference, or several repositories). A tag-only layout that does not record its
repository (written by oras or an older regvault) is not added to. Back up
into a new directory instead, with --full-reference to keep several
repositories in one. The directory's oci-layout, index.json and blobs must be
regular files (a named pipe or a device is refused, never opened).

The output is written under a temporary name next to it
(.<name>.regvault-tmp-<digits>) and renamed when complete; an interrupted or
failed run removes it. A run killed outright (SIGKILL, a crash) cannot: the
next backup to the same output removes such leftovers (only those no running
regvault holds locked), and a new directory resumes the killed run's
temporary one, fetching only the blobs it lacks (interrupted or failing
too, the resuming run keeps it for the next one).

Into a .tar, blobs of 1 MiB and more start downloading as soon as a manifest
that lists them is read (the largest found first, as many as --concurrency
allows), while the other tags and referrers are still being found; until
every member's place in the file is known, their first bytes wait in a
spool file in the system temporary directory ($TMPDIR; 128 MiB at most
across the run), which is removed however the run ends.

A non-distributable ("foreign") layer — OCI nondistributable media types,
Docker foreign layers, any layer with urls, as Windows base images have — is
backed up when the registry holds it; one it does not hold is left out and
its manifest kept whole, as oras and skopeo do (clients fetch such layers from
their URLs). The report (text, JSON and --dry-run) counts what was left out.

A repository that fails is reported and left out; the others form a valid
backup (exit code 3). That holds for failures found while blobs are
transferred, too (a blob the registry no longer has, bytes that do not match
their digest, retries exhausted): a directory or a .tar leaves out the
repositories that need that blob, whole, and is exactly the backup of the
others alone. A stream (.tar.gz, .tgz, .tar.zst, .tzst, -) cannot: its
index.json, which names every repository, is written before the first blob,
so such a failure stops the whole backup (exit code 1), names the repository
and why, and leaves no file (on standard output the tar ends without its
trailer and reads as truncated); back up to a directory or a .tar to keep the
others. Any other error (the disk full, standard output closed) ends the
backup at once with exit code 1. With --fail-fast the first failure stops
the backup and nothing is written (exit code 1).

Transient faults are retried with backoff (5xx and 429 answers, connections
reset or cut in the middle of a body, a registry that sends nothing for
--read-timeout): manifests, indexes, tag lists and referrers lists are asked
for again, a blob resumes where it stopped; a registry's Retry-After is
honoured up to --max-retry-wait (default 60s), each wait said on standard
error. A manifest or index larger than 4 MiB (the limit registries put on
one, and what verify and restore read) fails its repository.

` + listingLimitsHelp,
		Example: backupExamples,
		RunE: func(cmd *cobra.Command, args []string) error {
			return b.run(cmd.Context(), args)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVarP(&b.output, "output", "o", "", "where to write the backup: a directory, a .tar, .tar.gz/.tgz or .tar.zst/.tzst file, or - for a tar on standard output")
	fs.BoolVar(&b.includeReferrers, "include-referrers", false, fmt.Sprintf("also back up referrers (signatures, SBOMs, ...), recursively (up to %d deep)", source.MaxReferrerDepth))
	fs.BoolVar(&b.fullReference, "full-reference", false, "name tags registry/repository:tag in index.json also for a single repository (always so for several)")
	fs.BoolVar(&b.dryRun, "dry-run", false, "resolve and print what would be backed up (tags, digests, referrers, size) and write nothing")
	fs.BoolVar(&b.failFast, "fail-fast", false, "stop at the first repository that fails and write nothing")
	fs.StringVar(&b.format, "format", "text", "output format: text or json")
	fs.StringVar(&b.planFile, "plan", "", "back up the tags of this plan file (regvault plan) instead of arguments: no listing; with --shard, only the shard's")
	fs.StringVar(&b.shard, "shard", "", "with --plan: back up shard I of N of the plan (I/N, I from 0), or auto/N for I from $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)")
	b.reg.addFlags(fs, true)
	return cmd
}

func (b *backupCmd) run(ctx context.Context, args []string) error {
	c := b.c
	if b.format != "text" && b.format != "json" {
		return usageError("--format %q: use text or json", b.format)
	}
	sharded, err := b.fromPlan(args)
	if err != nil {
		if isEmptyShard(err) {
			fmt.Fprintln(c.stdout, err.Error()+"; no archive written")
			return nil
		}
		return err
	}
	if sharded != nil {
		args = sharded.args
	}
	var regOpts *registry.Options
	if slices.ContainsFunc(args, api.IsPattern) {
		// The catalog is read before anything else can be checked.
		o, err := b.reg.options(c.stdin)
		if err != nil {
			return err
		}
		regOpts = &o
		if args, err = api.ExpandSources(ctx, args, o); err != nil {
			return err
		}
	}
	opts := api.BackupOptions{
		Sources:          args,
		Output:           b.output,
		Stdout:           c.stdout,
		FullReference:    b.fullReference,
		IncludeReferrers: b.includeReferrers,
		DryRun:           b.dryRun,
		FailFast:         b.failFast,
		Concurrency:      b.reg.transfers(),
		Progress:         &pipeline.Progress{},
	}
	// The arguments are checked before the registry flags are read (a
	// password from standard input): a mistake there is the whole message.
	p, err := plan.NewBackup(args, plan.BackupOptions{
		Output: b.output, FullReference: b.fullReference, IncludeReferrers: b.includeReferrers,
		DryRun: b.dryRun, FailFast: b.failFast, Concurrency: b.reg.concurrency,
	})
	if err != nil {
		return err
	}
	if p.Kind == archive.Stdout && !p.DryRun && isTerminal(c.stdout) {
		return usageError("--output -: standard output is a terminal; redirect it to a file or a pipe, or give a file name")
	}
	if regOpts != nil {
		opts.Registry = *regOpts
	} else if opts.Registry, err = b.reg.options(c.stdin); err != nil {
		return err
	}
	// The report goes where the archive does not.
	out := c.stdout
	if p.Kind == archive.Stdout && !p.DryRun {
		out = c.stderr
		// A reader of the archive that goes away is a failed backup to
		// report (exit 1), not a signal to die of silently: writes get
		// EPIPE instead of the process SIGPIPE. The setting is the
		// process's, so it lasts only as long as the command: Notify and
		// Stop, as signal.Reset does not undo signal.Ignore. The signals
		// are dropped (nothing reads the channel; delivery never blocks).
		sigpipe := make(chan os.Signal, 1)
		signal.Notify(sigpipe, syscall.SIGPIPE)
		defer signal.Stop(sigpipe)
	}
	rep := &reporter{
		c: c, out: out, plan: p,
		json: b.format == "json",
		tty:  b.reg.tty(out) && isTerminal(c.stderr),
	}
	opts.Observe = rep.observe
	opts.OnStart = func(*api.Report) {
		b.reg.warnInsecure(p.Registry)
		if sharded != nil {
			c.stderrLine(sharded.line)
		}
		if !rep.json {
			rep.header()
		}
		rep.start(opts.Progress)
	}
	report, err := api.Backup(ctx, opts)
	rep.stop()
	if report == nil {
		return err // nothing was started: the options or the output were refused
	}
	var mix *archive.MixError
	if errors.As(report.Err, &mix) {
		// Another run changed the directory since it was checked.
		return &exitError{code: exitUsage, err: report.Err}
	}
	if sharded != nil {
		rep.planMoved = report.PlanMoved(sharded.plan)
		for _, m := range rep.planMoved {
			c.stderrLine("Warning: " + m.String())
		}
	}
	sum := summarize(report)
	code := sum.exitCode()
	if rep.json {
		if err := rep.printJSON(sum, code); err != nil {
			return err
		}
	} else {
		rep.printSummary(sum)
	}
	var whole error
	if sum.runErr != nil && !errors.Is(sum.runErr, pipeline.ErrNothingDone) && len(sum.failed) == 0 {
		whole = sum.runErr // the sink, the disk: no repository to blame
	}
	return runOutcome(code, sum.interrupted, p.DryRun,
		fmt.Sprintf("interrupted: the backup to %s was not completed", outputName(p)), whole)
}

func outputName(p *plan.Backup) string {
	if p.Kind == archive.Stdout {
		return "standard output"
	}
	return p.Output
}

// planRun is a run of --plan: the tags of the plan or of its shard.
type planRun struct {
	plan *planfile.Plan // what runs: the shard's plan
	args []string       // the sources that select it
	// targets are a copy's targets (its arguments); shard, the shard's
	// tags of args (nil: all).
	targets []string
	shard   func(repo, tag string) bool
	line    string // what it is, said before the run
}

// fromPlan reads --plan and --shard; nil when there is no --plan. The
// plan's tags are the sources (positional sources with it are a usage
// error: the plan is the selection), every part is named
// registry/repository:tag (the parts of a plan merge on restore), and the
// plan's referrer policy holds.
func (b *backupCmd) fromPlan(args []string) (*planRun, error) {
	if b.planFile == "" {
		if b.shard != "" {
			return nil, usageError("--shard %s needs --plan: a shard is a part of a plan file (regvault plan)", b.shard)
		}
		return nil, nil
	}
	if len(args) > 0 {
		return nil, usageError("--plan %s is the selection: give no repositories as arguments (got %s); make another plan to back up others", b.planFile, strings.Join(args, " "))
	}
	_, _, sp, line, err := selectShard(b.planFile, b.shard)
	if err != nil {
		return nil, err
	}
	if b.includeReferrers && !sp.IncludeReferrers {
		return nil, usageError("--include-referrers: plan %s was made without referrers; make it again with regvault plan --include-referrers", b.planFile)
	}
	b.includeReferrers = sp.IncludeReferrers
	b.fullReference = true
	return &planRun{plan: sp, args: api.PlanSources(sp), line: line}, nil
}
