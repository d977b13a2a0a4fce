package regvault

import (
	"context"
	"errors"
	"fmt"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/registry"
)

// PlanOptions say which source selection Plan resolves.
type PlanOptions struct {
	// Sources are the repositories, as backup's arguments:
	// <registry>/<repository>[:<tag>[,<tag>...]], all of one registry; no
	// tags means every tag (tag-schema sha256-<hex> tags left out). A
	// source <registry>/<prefix>/* is every repository the registry's
	// catalog lists under prefix (ExpandSources).
	Sources          []string
	IncludeReferrers bool
	// Concurrency bounds the requests under way (0: 8).
	Concurrency int
	Registry    registry.Options
	Observe     pipeline.Observer
}

// Selection is a source selection resolved: per repository, each tag's
// manifest, and the content graph it reaches (each manifest and blob
// once). Nothing was moved.
type Selection struct {
	Registry string
	// IncludeReferrers is the referrer policy the selection was resolved
	// with.
	IncludeReferrers bool
	Repositories     []RepositoryReport
	// Empty are the repositories a <registry>/<prefix>/* source listed
	// that have no tag (their tags were deleted): left out of the
	// selection, not failures. A repository named as such with no tag is
	// a failure.
	Empty []graph.Repository
	// UniqueNodes and UniqueBytes are the unique manifests and blobs a
	// copy or backup of the selection moves.
	UniqueNodes int
	UniqueBytes int64
	Graph       *graph.Graph
}

// Plan resolves a source selection as a backup would (listing tags,
// resolving each, walking manifests and, with IncludeReferrers, their
// referrers) and moves nothing. A repository that cannot be read has a
// *RepositoryError (Op "plan"); the error is those errors joined, or a
// failure of the whole run. Bad options are a *plan.UsageError.
func Plan(ctx context.Context, o PlanOptions) (*Selection, error) {
	sources, listed, err := expandSources(ctx, o.Sources, o.Registry)
	if err != nil {
		return nil, err
	}
	rep, err := Backup(ctx, BackupOptions{
		Sources:          sources,
		IncludeReferrers: o.IncludeReferrers,
		DryRun:           true,
		Concurrency:      o.Concurrency,
		Registry:         o.Registry,
		Observe:          o.Observe,
	})
	if rep == nil {
		return nil, err
	}
	sel := &Selection{Registry: rep.BackupPlan.Registry, Graph: rep.Graph, IncludeReferrers: o.IncludeReferrers,
		UniqueNodes: rep.Result.UniqueNodes, UniqueBytes: rep.Result.UniqueBytes}
	for _, rr := range rep.Repositories {
		var empty *pipeline.NoTagsError
		if rr.Err != nil && listed[rr.Repository.String()] && errors.As(rr.Err, &empty) {
			// The catalog lists it, its tags were deleted: nothing to
			// plan, not a failure.
			sel.Empty = append(sel.Empty, rr.Repository)
			continue
		}
		if rr.Err != nil {
			e := *rr.Err
			e.Op = OpPlan
			rr.Err = &e
		}
		sel.Repositories = append(sel.Repositories, rr)
	}
	runErr := rep.Err
	if len(sel.Empty) > 0 && errors.Is(runErr, pipeline.ErrNothingDone) {
		runErr = nil // the failures it says are those left out, or named below
		if len(sel.Repositories) == 0 {
			runErr = fmt.Errorf("no repository with tags: the %d the catalog lists have none", len(sel.Empty))
		}
	}
	out := &Report{Repositories: sel.Repositories, Err: runErr}
	return sel, out.outcome()
}
