// Package sink is where a run's content ends up: an OCI image layout
// (directory, tar, compressed tar, stdout) for a backup, a registry for a
// restore. Every sink sees the whole graph before any byte moves (but
// the one blob an Early sink takes ahead of Prepare).
package sink

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/graph"
)

// Ordering says in what order a sink accepts Write calls.
type Ordering int

const (
	// AnyOrder: Write may be called concurrently, in any order.
	AnyOrder Ordering = iota
	// InOrder: Write is called one at a time, in the order Prepare returned
	// (a stream: tar to stdout, compressed tar).
	InOrder
	// ChildrenFirst: Write may be called concurrently, but a manifest only
	// after every node it references has been written (a registry).
	ChildrenFirst
)

// Opener opens a node's bytes, verified as they are read.
type Opener func() (io.ReadCloser, error)

// Sink receives the content of one run.
type Sink interface {
	// Prepare sees the whole graph before any byte moves (see Early for
	// the exception). It returns the nodes it still needs (a node it
	// already holds, verified, is left out) in the order it wants them,
	// and how Write may be called.
	Prepare(ctx context.Context, g *graph.Graph) (need []*graph.Node, ord Ordering, err error)
	// Write stores one node. open returns the node's bytes; the reader
	// returns an error instead of io.EOF when they do not match the node's
	// digest or size, and a sink must then not keep what it read as that
	// node. A sink calls open only when it needs the bytes (a registry
	// that can mount a blob from another repository never does) and may
	// call it again to retry; it closes each reader it opens.
	Write(ctx context.Context, n *graph.Node, open Opener) error
	// Commit makes the result visible: index.json and the final rename for
	// a layout, tags for a registry.
	Commit(ctx context.Context) error
	// Abort discards everything not committed. It is safe after Commit
	// (then it does nothing) and may be called more than once.
	Abort() error
}

// PartWriter is a Sink that can take one large blob in parts written at
// the same time (a plain tar file: the blob's slot is known), so that a
// source that serves byte ranges can be read over several connections.
type PartWriter interface {
	// AcceptsParts reports whether this sink takes parts.
	AcceptsParts() bool
	// WritePart stores the length bytes of n that start at off, read
	// from r. Parts may be written concurrently, in any order.
	WritePart(ctx context.Context, n *graph.Node, off, length int64, r io.Reader) error
	// FinishParts counts n as written once every part is. got is the
	// digest of n's bytes as the caller hashed them, in order, while
	// they arrived: the sink does not read the parts back. A got that
	// is not n's digest leaves n unwritten and returns an error
	// wrapping content.ErrMismatchedDigest.
	FinishParts(ctx context.Context, n *graph.Node, got digest.Digest) error
}

// Dropper is a Sink that can still leave repositories out after Prepare:
// when the source cannot deliver a node (not found, wrong bytes, retries
// exhausted), the repositories that need it fail and the others are
// committed without them.
type Dropper interface {
	// CanDrop reports whether this sink can leave repositories out; a
	// stream cannot, once index.json, which names every repository, is
	// written.
	CanDrop() bool
	// Drop is called after the last Write and before Commit with g, the
	// graph without the repositories that failed. The nodes Prepare asked
	// for that g no longer holds need not have been written; what Commit
	// makes visible holds g and nothing of the repositories left out.
	Drop(ctx context.Context, g *graph.Graph) error
}

// Early is a Sink that can take one large blob before Prepare, so that
// the run's longest upload starts while the sink is still asking its
// targets what they hold (a registry). WriteEarly asks for itself whether
// the targets hold n, beside the upload it opens, and writes n where they
// do not. Prepare then lists n as needed, and the caller waits for
// WriteEarly rather than calling Write for n.
type Early interface {
	WriteEarly(ctx context.Context, n *graph.Node, open Opener) error
}

// Asker is a Sink that can start asking its targets, read-only, while the
// source is still being walked, so that Prepare finds the answers there
// rather than asking then (a registry: which target repositories exist,
// which large blobs they hold). It changes nothing on the targets, and
// Prepare (or Abort) waits for what it started.
type Asker interface {
	// AskRepos starts asking whether the target repositories exist.
	AskRepos(ctx context.Context, repos []string)
	// AskBlob starts asking whether the target repository repo holds a
	// blob the walk just found; a sink asks about the blobs it would ask
	// about in Prepare anyway, and ignores the others.
	AskBlob(ctx context.Context, repo string, desc ocispec.Descriptor)
}
