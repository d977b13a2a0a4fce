package regvault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/inspect"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// RestoreOptions say what Restore pushes where.
type RestoreOptions struct {
	// Input is the backup: a directory, a tar, a gzip- or zstd-compressed
	// tar, or "-" for such a tar read from Stdin.
	Input string
	// Inputs, instead of Input, are several backups restored as one (the
	// parts of a sharded backup, say: source.Layouts): the union of their
	// tags, each blob read from one of them and uploaded once. A tag two
	// of them give different manifests is a *plan.UsageError. One of them
	// at most may be "-".
	Inputs []string
	Stdin  io.Reader
	// Targets are the targets as the arguments of regvault restore
	// (<registry>[/<repository>][:<tag>[,<tag>...]]), or, instead of them,
	// a rules file: RulesFile names it, Rules holds it parsed (read from
	// RulesFile when nil).
	Targets   []string
	RulesFile string
	Rules     *plan.Rules
	// FailFast stops at the first repository that fails; nil: the rules
	// file's settings.fail-fast, else true.
	FailFast         *bool
	ExcludeReferrers bool
	// DryRun walks the backup and asks the targets, read-only, what they
	// already have; nothing is pushed.
	DryRun bool
	// Concurrency is how many blob transfers may be under way at once
	// (Validate refuses 0 and less; Restore takes 0 as: adapt, from 8 up
	// to pipeline.AdaptMax, as the backup's Concurrency says).
	Concurrency int
	// Registry holds the credentials and transport settings of every
	// target registry.
	Registry registry.Options

	Observe  pipeline.Observer
	Progress *pipeline.Progress
	// OnStart, if not nil, is called once the backup is read and the plan
	// made, before anything is pushed.
	OnStart func(*Report)
	// Note, if not nil, receives what the backup's reader notes on the way
	// (parts of a docker save archive it ignores, ...).
	Note func(string)
}

// inputFormsHint says what Input accepts.
const inputFormsHint = archive.FormsIntro + " " +
	"(as regvault backup or oras backup write them), or such a tar on standard input with --input -"

// Validate checks the options that need no backup and no registry, and
// reads the rules file. Restore calls it; a command calls it first to
// report a mistake before it asks for a password.
func (o *RestoreOptions) Validate() error {
	popts := o.planOptions()
	rules := o.RulesFile
	if rules == "" && o.Rules != nil {
		rules = o.Rules.Name
	}
	if (rules != "") == (len(o.Targets) > 0) {
		// both or neither: the plan's error says which
		_, err := plan.NewRestore(nil, o.Targets, rules, popts)
		return err
	}
	if o.Input == "" && len(o.Inputs) == 0 {
		return &plan.UsageError{Msg: "--input is required: " + inputFormsHint}
	}
	if o.Input != "" && len(o.Inputs) > 0 {
		return &plan.UsageError{Msg: "give the backup as Input or Inputs, not both"}
	}
	if n := slices.Index(o.Inputs, "-"); n >= 0 && slices.Contains(o.Inputs[n+1:], "-") {
		return &plan.UsageError{Msg: "--input - given twice: standard input can be read once"}
	}
	if o.Concurrency < 1 {
		return &plan.UsageError{Msg: fmt.Sprintf("--concurrency must be at least 1, got %d", o.Concurrency)}
	}
	for _, a := range o.Targets {
		if _, err := plan.ParseTarget(a); err != nil {
			return err
		}
	}
	if o.Rules == nil && o.RulesFile != "" {
		r, err := plan.LoadRules(o.RulesFile)
		if err != nil {
			return err
		}
		o.Rules = r
	}
	return nil
}

func (o *RestoreOptions) planOptions() plan.RestoreOptions {
	return plan.RestoreOptions{
		FailFast:         o.FailFast,
		ExcludeReferrers: o.ExcludeReferrers,
		DryRun:           o.DryRun,
		Concurrency:      o.Concurrency,
	}
}

// Restore pushes a backup into registries as its targets or rules say.
// The error is that of the run as a whole, or the failed repositories'
// errors joined; the report says what was done either way. Bad options
// and an input that is no backup are a *plan.UsageError with a nil
// report: nothing was pushed.
func Restore(ctx context.Context, o RestoreOptions) (*Report, error) {
	adapt := o.Concurrency == 0
	if adapt {
		o.Concurrency = 8
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	note := o.Note
	if note == nil {
		note = func(string) {}
	}
	spool, err := os.MkdirTemp("", "regvault-restore-")
	if err != nil {
		return nil, fmt.Errorf("creating a spool directory: %w", err)
	}
	defer os.RemoveAll(spool)
	layout, in, err := openInputs(ctx, o, spool)
	if err != nil {
		return nil, err
	}
	defer layout.Close()
	noted := notes(layout, 0, note)

	entries := inputEntries(layout)
	if len(entries) == 0 {
		// What verify says of it too.
		return nil, &plan.UsageError{Msg: fmt.Sprintf("--input %s: %s", in.Name(), inspect.NoTags(len(layout.Entries())))}
	}
	var p *plan.Restore
	if o.Rules != nil {
		p, err = plan.NewRestoreWithRules(entries, o.Rules, o.planOptions())
	} else {
		p, err = plan.NewRestore(entries, o.Targets, "", o.planOptions())
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // interrupted while planning: nothing was pushed
	}
	progress := o.Progress
	if progress == nil {
		progress = &pipeline.Progress{}
	}
	rep := &Report{RestorePlan: p, Input: in, DryRun: p.DryRun, Progress: progress}
	clients := registry.NewClients(o.Registry)
	job := pipeline.Job{
		Selections:  pipeline.RestoreSelections(p),
		Concurrency: p.Concurrency,
		Adapt:       adapt,
		RoundTrip:   clients.LeastRoundTrip,
		FailFast:    p.FailFast,
		WholeSource: true, // a damaged backup fails the run
		Source:      layout,
		Observe:     o.Observe,
		Progress:    progress,
	}
	if !p.DryRun {
		rep.Sink = sink.NewRegistry(clients, p.FailFast, p.Concurrency)
		job.Sink = rep.Sink
	}
	if o.OnStart != nil {
		o.OnStart(rep)
	}
	res, g, runErr := pipeline.Run(ctx, job)
	notes(layout, noted, note) // a stream notes what it meets
	finishRestore(ctx, rep, clients, res, g, runErr, OpRestore)
	return rep, rep.outcome()
}

// finishRestore fills the report of a restore or a copy once its
// pipeline is done: for a dry run, what the targets already have.
func finishRestore(ctx context.Context, rep *Report, clients *registry.Clients, res *pipeline.Result, g *graph.Graph, runErr error, op string) {
	if res == nil {
		res = &pipeline.Result{}
	}
	p := rep.RestorePlan
	rep.Result, rep.Graph, rep.Err = res, g, runErr
	rep.Duration = res.Duration
	rep.Interrupted = ctx.Err() != nil
	if p.DryRun && runErr == nil && !rep.Interrupted && g != nil {
		// How much of it the targets have, asked read-only.
		rep.Check = sink.NewRegistry(clients, true, p.Concurrency)
		rep.CheckErr = rep.Check.Check(ctx, g)
	}
	rep.Repositories = targetRepositories(res, runErr, rep.Interrupted, op)
}

// targetRepositories types the result of each target repository. When
// the run was stopped (fail-fast), the repository that failed by itself
// is the one whose error stopped it: the others were cancelled, their
// errors carry the cancellation's cause.
func targetRepositories(res *pipeline.Result, runErr error, interrupted bool, op string) []RepositoryReport {
	out := make([]RepositoryReport, len(res.Repos))
	var failed []int
	for i, rr := range res.Repos {
		repo, _ := graph.ParseRepository(rr.Repo)
		out[i] = RepositoryReport{Repository: repo, Bytes: rr.Bytes}
		if rr.Err != nil {
			failed = append(failed, i)
			continue
		}
		if runErr == nil && !interrupted {
			out[i].Tags = rr.Tags
		} else {
			out[i].Stopped = true
		}
	}
	var culprits []int
	if runErr != nil {
		for _, i := range failed {
			if errors.Is(runErr, res.Repos[i].Err) {
				culprits = append(culprits, i)
			}
		}
	}
	if len(culprits) == 0 {
		for _, i := range failed {
			if !errors.Is(res.Repos[i].Err, context.Canceled) {
				culprits = append(culprits, i)
			}
		}
		if len(culprits) == 0 && !interrupted {
			culprits = failed
		}
	}
	for _, i := range failed {
		if slices.Contains(culprits, i) {
			out[i].Err = newRepositoryError(op, out[i].Repository, res.Repos[i].Err)
		} else {
			out[i].Stopped = true
		}
	}
	return out
}

// notes passes on the backup's notes after the first skip, and returns
// how many there are.
func notes(l interface{ Notes() []string }, skip int, note func(string)) int {
	all := l.Notes()
	for _, n := range all[min(skip, len(all)):] {
		note(n)
	}
	return len(all)
}

// notABackup is the usage error for an Input that cannot be read as a
// backup: nothing was pushed.
func notABackup(input string, err error) error {
	msg := err.Error()
	if !strings.Contains(msg, archive.FormsIntro) {
		msg += "; " + inputFormsHint
	}
	name := input
	if input == "-" {
		name = "- (standard input)"
	}
	return &plan.UsageError{Msg: fmt.Sprintf("--input %s: not a backup: %s", name, msg)}
}

// backupSource is one backup (*source.Layout) or several read as one
// (*source.Layouts).
type backupSource interface {
	source.Source
	Entries() []archive.Entry
	Notes() []string
	Close() error
}

// openInputs opens the backup of o (Input) or the backups (Inputs) as one
// source, and what they list. A path that is no backup is a
// *plan.UsageError naming it.
func openInputs(ctx context.Context, o RestoreOptions, spool string) (backupSource, *Input, error) {
	paths := o.Inputs
	if len(paths) == 0 {
		paths = []string{o.Input}
	}
	var list []*source.Layout
	closeAll := func() {
		for _, l := range list {
			_ = l.Close()
		}
	}
	for _, path := range paths {
		l, err := source.OpenLayout(ctx, path, o.Stdin, spool)
		if err != nil {
			closeAll()
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, notABackup(path, err)
		}
		list = append(list, l)
	}
	if len(list) == 1 {
		return list[0], readInput(ctx, list[0], list[0].Entries()), nil
	}
	ls, err := source.NewLayouts(list...)
	if err != nil {
		closeAll()
		return nil, nil, &plan.UsageError{Msg: "--input: " + err.Error()}
	}
	in := readInput(ctx, list[0], ls.Entries())
	in.Paths = paths
	in.Path = strings.Join(paths, ", ")
	for _, l := range list[1:] {
		size := l.Size()
		if size < 0 && l.Kind() == source.LayoutDirectory {
			size = dirSize(ctx, l.Path())
		}
		if size < 0 || in.Size < 0 {
			in.Size = -1
		} else {
			in.Size += size
		}
	}
	return ls, in, nil
}

// readInput is the report's view of what a backup's index.json lists
// (entries: of l, or of the several backups l is the first of).
func readInput(ctx context.Context, l *source.Layout, entries []archive.Entry) *Input {
	cont := archive.Summarize(entries)
	in := &Input{Path: l.Path(), Kind: l.Kind(), Size: l.Size(), Repos: cont.TagRepos, Tags: cont.Tags}
	if in.Size < 0 && in.Kind == source.LayoutDirectory {
		in.Size = dirSize(ctx, in.Path)
	}
	return in
}

// inputEntries are the plan's entries: the tags the backups list.
func inputEntries(l backupSource) []plan.BackupEntry {
	var entries []plan.BackupEntry
	for _, e := range archive.Summarize(l.Entries()).TagEntries {
		entries = append(entries, plan.BackupEntry{Repo: e.Repo, Tag: e.Tag, Digest: e.Desc.Digest, Size: e.Desc.Size})
	}
	return entries
}

// Input is what a backup read by Restore lists in its index.json.
type Input struct {
	// Path is the backup, or the backups joined with ", " (Paths).
	Path  string
	Paths []string // several backups read as one; nil for one
	Kind  source.LayoutKind
	Size  int64               // -1: not known
	Repos []string            // sorted
	Tags  map[string][]string // repository → its tags, sorted
}

// TagCount is the number of tags the backup lists.
func (in *Input) TagCount() int {
	n := 0
	for _, tags := range in.Tags {
		n += len(tags)
	}
	return n
}

// Name is how a report names the input.
func (in *Input) Name() string {
	if in.Path == "-" {
		return "standard input"
	}
	return in.Path
}

// dirSize is the size of the regular files under dir, or -1 (also when
// ctx ends: a directory of 100,000 blobs takes a while).
func dirSize(ctx context.Context, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		return -1
	}
	return n
}
