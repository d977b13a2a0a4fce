package source

// The walk's once-per-key work: however many repositories or tags reach a
// manifest, the first caller fetches it and every other caller waits for
// and shares its result. (Content itself is deduplicated elsewhere: the
// graph keeps one node per digest, and a sink's Prepare drops what it
// already holds.)

import (
	"context"
	"sync"
)

// once runs fn at most once per key (a digest, or repo@digest) and
// remembers the result. A failed call is forgotten so a later caller
// (another repository that has the same content) may try again.
type once[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*onceCall[V]
}

type onceCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// Do returns the result of fn for key, running fn only if no earlier call
// for key succeeded or is under way. A caller waiting for another's call
// stops waiting when ctx ends.
func (o *once[K, V]) Do(ctx context.Context, key K, fn func() (V, error)) (V, error) {
	o.mu.Lock()
	if o.calls == nil {
		o.calls = map[K]*onceCall[V]{}
	}
	if c, ok := o.calls[key]; ok {
		o.mu.Unlock()
		select {
		case <-c.done:
			if c.err == nil {
				return c.val, nil
			}
			// The other call failed; try ourselves.
			return o.Do(ctx, key, fn)
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
	}
	c := &onceCall[V]{done: make(chan struct{})}
	o.calls[key] = c
	o.mu.Unlock()

	c.val, c.err = fn()
	if c.err != nil {
		o.mu.Lock()
		if o.calls[key] == c {
			delete(o.calls, key)
		}
		o.mu.Unlock()
	}
	close(c.done)
	return c.val, c.err
}

// set records keys that are done, e.g. blobs a target already holds.
type set[K comparable] struct {
	mu sync.Mutex
	m  map[K]struct{}
}

// Add records k and reports whether it was new.
func (s *set[K]) Add(k K) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[K]struct{}{}
	}
	if _, ok := s.m[k]; ok {
		return false
	}
	s.m[k] = struct{}{}
	return true
}

// Has reports whether k was added.
func (s *set[K]) Has(k K) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[k]
	return ok
}
