package pipeline

import (
	"hash"
	"sync"
)

// aheadHash hashes what is written to it on a goroutine of its own, a few
// buffers behind the writer: a large blob's stream is read, hashed and
// written by one goroutine otherwise, and SHA-256 alone takes two thirds
// of that goroutine's time on loopback. The writer copies into a free
// buffer and goes on; the hash catches up on another core.
type aheadHash struct {
	h    hash.Hash
	full chan []byte
	free chan []byte
	cur  []byte
	made int // buffers allocated: only as many as the hash falls behind by
	// inline: hash on the writer's goroutine, no buffers (see inlineHash)
	inline bool
	done   chan struct{}
	once   sync.Once
}

const (
	aheadBuffers    = 8
	aheadBufferSize = 256 << 10
)

func newAheadHash(h hash.Hash) *aheadHash {
	a := &aheadHash{h: h, full: make(chan []byte, aheadBuffers), free: make(chan []byte, aheadBuffers), done: make(chan struct{})}
	// Owned by the aheadHash: it ends when wait closes full, which the
	// copy does on every path out (a deferred wait).
	go func() {
		defer close(a.done)
		for b := range a.full {
			a.h.Write(b)
			a.free <- b[:0]
		}
	}()
	return a
}

// inlineHash is an aheadHash that hashes as it is written, on the
// writer's goroutine: for streams that the hash keeps up with anyway, or
// many at once (the early copies of a walk), where buffers per stream
// would add up.
func inlineHash(h hash.Hash) *aheadHash { return &aheadHash{h: h, inline: true} }

// Write never fails: it copies p and hands full buffers to the hashing
// goroutine.
func (a *aheadHash) Write(p []byte) (int, error) {
	if a.inline {
		return a.h.Write(p)
	}
	n := len(p)
	for len(p) > 0 {
		if a.cur == nil {
			a.cur = a.buffer()
		}
		k := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+k]
		p = p[k:]
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// buffer is a free buffer: one the hash is done with, else a new one
// while fewer than aheadBuffers exist, else the next the hash frees. A
// hash that keeps up (a stream capped far below hashing speed) has two.
func (a *aheadHash) buffer() []byte {
	select {
	case b := <-a.free:
		return b
	default:
	}
	if a.made < aheadBuffers {
		a.made++
		return make([]byte, 0, aheadBufferSize)
	}
	return <-a.free
}

// wait hashes what is left and ends the goroutine; h then holds every
// byte written. Only the writer's goroutine calls it, once it writes no
// more; later calls do nothing.
func (a *aheadHash) wait() {
	if a.inline {
		return
	}
	a.once.Do(func() {
		if len(a.cur) > 0 {
			a.full <- a.cur
			a.cur = nil
		}
		close(a.full)
		<-a.done
	})
}
