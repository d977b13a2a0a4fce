package pipeline

import (
	"context"
	"sync"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/sink"
)

// earlyWrite is the largest blob's transfer into a sink.Early, started
// before Prepare: the run's longest upload starts while the sink still
// asks its targets about everything else, instead of after the last
// answer (on a WAN, one or two round trips of HEADs for the blobs of 1 MiB
// or more, asked 4× concurrency at a time).
type earlyWrite struct {
	n       *graph.Node
	cancel  context.CancelFunc
	flowing chan struct{} // closed at its first byte read, or when it ends
	done    chan struct{}
	err     error
}

// startEarly starts the transfer of the graph's largest blob through
// sink.Early, if the sink is one and the source can be read in any order
// (a stream hands out its members in its own order: waiting for one far
// into it would spool the members before it). Optional layers (a stream
// only) and manifests are not taken.
func (r *run) startEarly(ctx context.Context) *earlyWrite {
	w, ok := r.job.Sink.(sink.Early)
	if !ok || r.streaming {
		return nil
	}
	var largest *graph.Node
	for _, n := range r.graph.Nodes() {
		if n.Content != nil || n.Kind == graph.KindManifest || n.Desc.Size < smallNode || r.graph.Optional(n.Desc.Digest) {
			continue
		}
		if largest == nil || n.Desc.Size > largest.Desc.Size {
			largest = n
		}
	}
	if largest == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &earlyWrite{n: largest, cancel: cancel, flowing: make(chan struct{}), done: make(chan struct{})}
	var once sync.Once
	flowing := func() { once.Do(func() { close(e.flowing) }) }
	go func() {
		defer close(e.done)
		// Not timed for the adaptive concurrency (firstBytes): its
		// first byte waits for the sink's HEADs, not for the link.
		e.err = r.copyNodeWith(ctx, largest, flowing, w.WriteEarly, nil)
	}()
	return e
}

// wait waits for the early transfer, telling started (if not nil) once
// its bytes flow or it ended; a ctx that ends cancels it.
func (e *earlyWrite) wait(ctx context.Context, started func()) error {
	if started != nil {
		defer started()
		select {
		case <-e.flowing:
			started()
		case <-ctx.Done():
		}
	}
	select {
	case <-e.done:
		return e.err
	case <-ctx.Done():
		e.cancel()
		<-e.done
		return ctx.Err()
	}
}

// stop cancels the early transfer if it is still under way (the run
// failed before waiting for it) and waits for its end.
func (e *earlyWrite) stop() {
	if e == nil {
		return
	}
	e.cancel()
	<-e.done
}
