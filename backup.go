package regvault

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// BackupOptions say what Backup copies where.
type BackupOptions struct {
	// Sources are the repositories, as the arguments of regvault backup:
	// <registry>/<repository>[:<tag>[,<tag>...]], all of one registry; no
	// tags means every tag.
	Sources []string
	// Output is a directory, a .tar, .tar.gz/.tgz or .tar.zst/.tzst file,
	// or "-" for a tar written to Stdout. It may be "" for a dry run.
	Output string
	Stdout io.Writer
	// FullReference names tags registry/repository:tag in index.json for
	// a single repository too (always so for several).
	FullReference    bool
	IncludeReferrers bool
	// DryRun resolves and walks, and writes nothing.
	DryRun bool
	// FailFast stops at the first repository that fails, writing nothing.
	FailFast bool
	// Concurrency is how many blob transfers may be under way at once;
	// 0 adapts: it starts at 8 and is raised, up to pipeline.AdaptMax,
	// while the link gives more with more (pipeline/adapt.go).
	Concurrency int
	// Registry holds the credentials and transport settings.
	Registry registry.Options

	// Observe receives the pipeline's events; may be nil.
	Observe pipeline.Observer
	// Progress, if not nil, counts the bytes as they move.
	Progress *pipeline.Progress
	// OnStart, if not nil, is called once the plan is made and the output
	// opened, before anything is fetched (a command prints its header
	// there).
	OnStart func(*Report)
}

// Backup copies the repositories of one registry into one OCI image
// layout. The error is that of the run as a whole, or the failed
// repositories' errors joined; the report says what was done either
// way. A bad option is a *plan.UsageError with a nil report; so is an
// output directory that holds another repository's tags
// (*archive.MixError).
func Backup(ctx context.Context, o BackupOptions) (*Report, error) {
	adapt := o.Concurrency == 0
	if adapt {
		o.Concurrency = 8
	}
	p, err := plan.NewBackup(o.Sources, plan.BackupOptions{
		Output:           o.Output,
		FullReference:    o.FullReference,
		IncludeReferrers: o.IncludeReferrers,
		DryRun:           o.DryRun,
		FailFast:         o.FailFast,
		Concurrency:      o.Concurrency,
	})
	if err != nil {
		return nil, err
	}
	client, err := registry.New(p.Registry, o.Registry)
	if err != nil {
		return nil, err
	}
	// The output is checked before anything is fetched: a directory this
	// backup may not add to is the whole answer.
	if p.Output != "" {
		repo := ""
		if !p.FullReference {
			repo = graph.FullRepo(p.Registry, p.Repos[0].Name)
		}
		if err := sink.CheckAddTo(p.Output, p.FullReference, repo); err != nil {
			// Only a refusal to mix names is a usage error; a layout that
			// cannot be read (I/O, permissions, a broken index.json) is a
			// failure.
			var mix *archive.MixError
			if errors.As(err, &mix) {
				return nil, &plan.UsageError{Msg: err.Error()}
			}
			return nil, err
		}
	}
	var layout *sink.Layout
	if !p.DryRun {
		if layout, err = sink.NewLayout(p.Output, sink.LayoutOptions{FullReference: p.FullReference, Stdout: o.Stdout}); err != nil {
			return nil, err
		}
	}
	progress := o.Progress
	if progress == nil {
		progress = &pipeline.Progress{}
	}
	rep := &Report{BackupPlan: p, DryRun: p.DryRun, Progress: progress}
	if o.OnStart != nil {
		o.OnStart(rep)
	}
	job := pipeline.Job{
		Registry:    p.Registry,
		Selections:  pipeline.BackupSelections(p.Repos, p.IncludeReferrers),
		Concurrency: p.Concurrency,
		Adapt:       adapt,
		RoundTrip:   client.LeastRoundTrip,
		FailFast:    p.FailFast,
		Source:      source.NewRegistry(client),
		Observe:     o.Observe,
		Progress:    progress,
	}
	if layout != nil { // not a typed nil in the interface
		job.Sink = layout
	}
	res, g, runErr := pipeline.Run(ctx, job)
	if res == nil {
		res = &pipeline.Result{Registry: p.Registry}
	}
	rep.Result, rep.Graph, rep.Err = res, g, runErr
	rep.Duration = res.Duration
	rep.Interrupted = ctx.Err() != nil
	if layout != nil && runErr == nil {
		rep.MovedTags, rep.Resumed = layout.MovedTags(), layout.Resumed()
	}
	rep.OutputSize = outputSize(p, res)
	rep.Repositories = backupRepositories(p, res)
	return rep, rep.outcome()
}

// backupRepositories types the result of each repository. Under
// fail-fast the repository that stopped the run is the one failure;
// the others were stopped with its error (pipeline.StoppedError).
func backupRepositories(p *plan.Backup, res *pipeline.Result) []RepositoryReport {
	out := make([]RepositoryReport, len(res.Repos))
	var failed []int
	for i, rr := range res.Repos {
		out[i] = RepositoryReport{Repository: graph.Repository{Registry: p.Registry, Path: rr.Repo}, Bytes: rr.Bytes}
		if rr.Err != nil {
			failed = append(failed, i)
			continue
		}
		out[i].Tags = rr.Tags
	}
	culprit := func(i int) {
		out[i].Err = newRepositoryError(OpBackup, out[i].Repository, res.Repos[i].Err)
	}
	if !p.FailFast || len(failed) <= 1 {
		for _, i := range failed {
			culprit(i)
		}
		return out
	}
	first := failed[0]
	for _, i := range failed {
		var stopped *pipeline.StoppedError
		if !errors.As(res.Repos[i].Err, &stopped) {
			first = i
			break
		}
	}
	for _, i := range failed {
		if i == first {
			culprit(i)
		} else {
			out[i].Stopped = true
		}
	}
	return out
}

// outputSize is the size of what was written: the file for an archive,
// the unique content for a directory or a stream.
func outputSize(p *plan.Backup, res *pipeline.Result) int64 {
	switch p.Kind {
	case archive.Tar, archive.TarGzip, archive.TarZstd:
		if fi, err := os.Stat(p.Output); err == nil && fi.Mode().IsRegular() {
			return fi.Size()
		}
	}
	return res.UniqueBytes
}
