package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/sink"
)

// ErrCannotDrop is why a run fails as a whole when a repository fails
// during the transfer into a sink that can no longer leave it out (a
// stream: its index.json, which names every repository, is out).
var ErrCannotDrop = errors.New("the output cannot leave out a repository that fails during the transfer")

// StoppedError is the error of a repository that did not fail by itself:
// the run stopped (fail-fast) because of Cause, another repository's
// failure. It reads as Cause.
type StoppedError struct{ Cause error }

func (e *StoppedError) Error() string { return e.Cause.Error() }

func (e *StoppedError) Unwrap() error { return e.Cause }

// TransferError is a node that could not be moved, and why.
type TransferError struct {
	Kind  graph.Kind
	Desc  ocispec.Descriptor
	Repos []string // the repositories that need it
	// Source is set when the source did not deliver the node (not found,
	// bytes that do not match the digest, retries exhausted), as opposed
	// to the sink failing to store it. Such a failure fails the
	// repositories that need the node, not the run.
	Source bool
	Err    error
}

func (e *TransferError) Error() string {
	return fmt.Sprintf("%s %s (in %v): %v", e.Kind, e.Desc.Digest, e.Repos, e.Err)
}

func (e *TransferError) Unwrap() error { return e.Err }

// nodeError wraps a node's error with its digest and repositories.
func nodeError(n *graph.Node, err error) error {
	// A copy: the graph's list changes when failed repositories are
	// removed.
	return &TransferError{Kind: n.Kind, Desc: n.Desc, Repos: slices.Clone(n.Repos), Err: err}
}

// sourceFaults records whether reading a node from the source failed, so
// that the error the sink returns can be told apart from its own.
type sourceFaults struct {
	mu     sync.Mutex
	failed bool
}

// track passes on what opening the source gave, noting a failure, and
// returns a reader that notes a failed read.
func (s *sourceFaults) track(rc io.ReadCloser, err error) (io.ReadCloser, error) {
	if err != nil {
		s.note()
		return nil, err
	}
	return faultReader{rc: rc, s: s}, nil
}

// trackReader notes a failed read of r.
func (s *sourceFaults) trackReader(r io.Reader) io.Reader {
	return faultReader{rc: io.NopCloser(r), s: s}
}

func (s *sourceFaults) note() {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
}

// wrap is nodeError(n, err), marked as the source's failure when reading
// failed. A cancelled run is no fault of the source.
func (s *sourceFaults) wrap(ctx context.Context, n *graph.Node, err error) error {
	var te *TransferError
	if !errors.As(err, &te) {
		te = nodeError(n, err).(*TransferError)
		err = te
	}
	s.mu.Lock()
	te.Source = s.failed && ctx.Err() == nil
	s.mu.Unlock()
	return err
}

type faultReader struct {
	rc io.ReadCloser
	s  *sourceFaults
}

func (f faultReader) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if err != nil && err != io.EOF {
		f.s.note()
	}
	return n, err
}

func (f faultReader) Close() error { return f.rc.Close() }

// lostRepos are the repositories that failed during the transfer because
// the source could not deliver a node they need.
type lostRepos struct {
	// canDrop: the sink can leave them out and the others are committed;
	// otherwise the first such failure ends the run. failFast (--fail-fast)
	// is kept apart, not derived from canDrop, because it also decides how
	// that failure reads: as itself, or as one the output cannot drop.
	canDrop  bool
	failFast bool
	observe  Observer

	mu   sync.Mutex
	errs map[string]error
}

func newLostRepos(s sink.Sink, failFast bool, observe Observer) *lostRepos {
	d, ok := s.(sink.Dropper)
	return &lostRepos{canDrop: ok && d.CanDrop() && !failFast, failFast: failFast, observe: observe, errs: map[string]error{}}
}

// fail takes a node's transfer error. A failure of the source fails the
// repositories that need the node; fail returns nil if the sink leaves
// them out and the run goes on. Any other error is returned: it ends the
// run.
func (l *lostRepos) fail(err error) error {
	var te *TransferError
	if !errors.As(err, &te) || !te.Source {
		return err
	}
	l.mu.Lock()
	var newly []string
	for _, repo := range te.Repos {
		if _, ok := l.errs[repo]; !ok {
			l.errs[repo] = err
			newly = append(newly, repo)
		}
	}
	l.mu.Unlock()
	for _, repo := range newly {
		l.observe(Event{Kind: RepoFailed, Repo: repo, Err: err})
	}
	switch {
	case l.canDrop:
		return nil
	case l.failFast:
		return err
	}
	return fmt.Errorf("%w: %w", ErrCannotDrop, err)
}

// skip says whether every repository that needs n has failed already:
// then n is not moved at all.
func (l *lostRepos) skip(n *graph.Node) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return false
	}
	return !slices.ContainsFunc(n.Repos, func(repo string) bool {
		_, lost := l.errs[repo]
		return !lost
	})
}

// record sets the error of each lost repository in res, but of those the
// sink failed by itself (its own error tells), and returns how many there
// are.
func (l *lostRepos) record(res *Result, bySink map[string]error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range res.Repos {
		if bySink[res.Repos[i].Repo] != nil {
			continue
		}
		if err, ok := l.errs[res.Repos[i].Repo]; ok && res.Repos[i].Err == nil {
			res.Repos[i].Err = err
		}
	}
	return len(l.errs)
}
