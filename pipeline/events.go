package pipeline

import (
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// EventKind says what happened.
type EventKind int

const (
	// RepoStarted: resolving Repo began.
	RepoStarted EventKind = iota
	// TagResolved: Repo's Tag points at Desc.
	TagResolved
	// RepoWalked: Repo's graph is known: Tags, Count nodes, Bytes in all
	// (before dedup).
	RepoWalked
	// RepoFailed: Repo failed with Err; its content is left out.
	RepoFailed
	// TransferStarted: Count unique nodes of Bytes are to be moved
	// (those the sink already held are not counted).
	TransferStarted
	// NodeDone: Desc was written to the sink.
	NodeDone
	// RepoDone: every node Repo needs was written; Tags done.
	RepoDone
	// Committing: the sink is making the result visible.
	Committing
)

// Event is one thing the pipeline reports. Progress, logs and summaries
// observe events; they never drive the pipeline.
type Event struct {
	Kind  EventKind
	Repo  string
	Tag   string
	Tags  []TagResult
	Desc  ocispec.Descriptor
	Count int
	Bytes int64
	Err   error
}

// Observer receives events. It is called from several goroutines at once
// and must not block for long.
type Observer func(Event)

// Progress counts bytes as they move, for a progress bar to poll.
type Progress struct {
	Total atomic.Int64 // bytes to move, known once the walk is done
	Done  atomic.Int64 // bytes moved so far
}

// TagResult is one tag of a result.
type TagResult struct {
	Name      string             `json:"tag"`
	Desc      ocispec.Descriptor `json:"descriptor"`
	Referrers int                `json:"referrers"`
	Artifacts int                `json:"artifacts"` // manifests and blobs reached from the tag
	Bytes     int64              `json:"bytes"`     // their size
	// NonDistributable counts the non-distributable layers reached from
	// the tag that the source does not hold: left out, their manifests
	// kept.
	NonDistributable int `json:"nonDistributableLeftOut"`
}

// RepoResult is one repository of a result.
type RepoResult struct {
	Repo      string      `json:"repository"`
	Tags      []TagResult `json:"tags"`
	Artifacts int         `json:"artifacts"` // manifests and blobs reached
	Bytes     int64       `json:"bytes"`     // their size, before dedup
	// NonDistributable counts the repository's non-distributable layers
	// left out (see TagResult).
	NonDistributable int   `json:"nonDistributableLeftOut"`
	Err              error `json:"-"`
}

// Result is what a run did.
type Result struct {
	Registry    string        `json:"registry"`
	Repos       []RepoResult  `json:"repositories"`
	UniqueNodes int           `json:"uniqueBlobs"`  // unique manifests and blobs in the result
	UniqueBytes int64         `json:"uniqueBytes"`  // their size
	Moved       int64         `json:"bytesMoved"`   // bytes fetched and written this run
	Skipped     int           `json:"blobsSkipped"` // nodes the sink already held
	Duration    time.Duration `json:"-"`
}

// Failed lists the repositories that failed.
func (r *Result) Failed() []RepoResult {
	var out []RepoResult
	for _, rr := range r.Repos {
		if rr.Err != nil {
			out = append(out, rr)
		}
	}
	return out
}

// TagCount counts the tags of repositories that succeeded.
func (r *Result) TagCount() int {
	n := 0
	for _, rr := range r.Repos {
		if rr.Err == nil {
			n += len(rr.Tags)
		}
	}
	return n
}
