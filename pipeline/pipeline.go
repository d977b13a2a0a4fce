// Package pipeline moves a content graph from a source to a sink:
// resolve → walk → dedup → transfer → commit, each stage with bounded
// concurrency. Backup, restore and copy are this pipeline with different
// ends.
package pipeline

import (
	"context"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/sink"
	"github.com/regvault/regvault/source"
)

// Job is one run from a source to a sink.
type Job struct {
	Registry         string // the source registry, for names in the result
	Repos            []plan.Repo
	IncludeReferrers bool
	Concurrency      int
	FailFast         bool

	Source source.Source
	// Sink receives the content; nil resolves and walks only (--dry-run).
	Sink sink.Sink

	Observe  Observer  // may be nil
	Progress *Progress // may be nil
}

// Run resolves and walks every repository of the job, then (unless Sink is
// nil) transfers each unique node once and commits. The graph is returned
// for reporting (a dry run prints it). A repository that fails is recorded
// in the result and left out, unless FailFast; the error is for failures
// of the whole run (the sink, fail-fast, cancellation).
func Run(ctx context.Context, job Job) (*Result, *graph.Graph, error) {
	panic("not yet")
}
