package regvault

import (
	"errors"
	"time"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/sink"
)

// Report is what a Backup, Restore or Copy did (or, for a dry run, would
// do).
type Report struct {
	// Repositories are the repositories of the run in the plan's order:
	// for a backup the source repositories, for a restore or a copy the
	// target ones.
	Repositories []RepositoryReport
	// DryRun: nothing was written; Repositories are what would be.
	DryRun bool
	// Err is a failure of the run as a whole (the output, reading the
	// backup, a fail-fast stop), nil when at most single repositories
	// failed.
	Err error
	// Interrupted: the context ended before the run did.
	Interrupted bool
	Duration    time.Duration

	// Result and Graph are the pipeline's result and content graph (the
	// unique manifests and blobs): what the command's summary and JSON
	// output are made of.
	Result *pipeline.Result
	Graph  *graph.Graph

	// Backup only.
	BackupPlan *plan.Backup
	OutputSize int64           // bytes written: the file, or the unique content
	MovedTags  []archive.Moved // tags of an output directory that moved
	Resumed    bool            // a killed run's temporary directory was resumed

	// Restore and Copy.
	RestorePlan *plan.Restore
	Input       *Input      // Restore only: what the backup lists
	Sources     *SourceTags // Copy only: the source tags resolved
	// Sink is what pushed into the targets (its Stats); nil for a dry run.
	Sink *sink.Registry
	// Check is the read-only look of a dry run at what the targets
	// already have (Present); CheckErr why it could not be had.
	Check    *sink.Registry
	CheckErr error
	// Progress counts the bytes to move and moved.
	Progress *pipeline.Progress
}

// RepositoryReport is one repository of a Report.
type RepositoryReport struct {
	Repository graph.Repository
	// Tags are the tags done (for a dry run, planned), each with its
	// digest, artifacts, bytes and referrers.
	Tags  []pipeline.TagResult
	Bytes int64
	// Err is why the repository failed by itself; nil when it was done
	// or only stopped.
	Err *RepositoryError
	// Stopped: the repository was not completed because the run was
	// stopped by another repository's failure or the context.
	Stopped bool
}

// OK reports whether the repository was done (or, for a dry run, could be).
func (r *RepositoryReport) OK() bool { return r.Err == nil && !r.Stopped }

// Failed returns the repositories that failed by themselves.
func (r *Report) Failed() []RepositoryReport {
	var out []RepositoryReport
	for _, rr := range r.Repositories {
		if rr.Err != nil {
			out = append(out, rr)
		}
	}
	return out
}

// Failure returns the error of repo, or nil when it did not fail by
// itself.
func (r *Report) Failure(repo graph.Repository) *RepositoryError {
	for _, rr := range r.Repositories {
		if rr.Err != nil && rr.Repository == repo {
			return rr.Err
		}
	}
	return nil
}

// outcome is the error a call returns with its report: the run's own
// failure, or else the repositories that failed, joined.
func (r *Report) outcome() error {
	var errs []error
	if r.Err != nil {
		errs = append(errs, r.Err)
	}
	for _, rr := range r.Repositories {
		if rr.Err != nil {
			errs = append(errs, rr.Err)
		}
	}
	return errors.Join(errs...)
}
