package pipeline

import (
	"bytes"
	"crypto/sha256"
	"math/rand"
	"testing"
	"time"
)

// TestAheadHash: bytes written in pieces of every size, smaller and
// larger than its buffers, hash to what one direct hash of them gives.
func TestAheadHash(t *testing.T) {
	data := make([]byte, 5*aheadBufferSize*aheadBuffers/3+12345)
	rand.New(rand.NewSource(1)).Read(data)
	want := sha256.Sum256(data)
	for _, sizes := range [][]int{{1}, {4096}, {aheadBufferSize}, {aheadBufferSize + 1}, {3 * aheadBufferSize}, {7, 100000, 1 << 20, 3}} {
		a := newAheadHash(sha256.New())
		p := data
		for i := 0; len(p) > 0; i++ {
			k := min(sizes[i%len(sizes)], len(p))
			buf := bytes.Clone(p[:k])
			if n, err := a.Write(buf); n != k || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			clear(buf) // the caller may reuse what it wrote
			p = p[k:]
		}
		a.wait()
		a.wait() // a second wait does nothing
		if got := a.h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Errorf("writes of %v: digest %x, want %x", sizes, got, want)
		}
	}
}

// A hash that keeps up with the writer (a stream capped far below hashing
// speed) gets by with the buffers it reuses: the others are never made.
func TestAheadHashMakesBuffersOnlyWhenBehind(t *testing.T) {
	a := newAheadHash(sha256.New())
	data := make([]byte, aheadBufferSize)
	for range 4 * aheadBuffers {
		a.Write(data)
		for deadline := time.Now().Add(10 * time.Second); len(a.free) < a.made && time.Now().Before(deadline); { // a hang guard, not a timing
			time.Sleep(time.Millisecond)
		}
	}
	a.wait()
	if a.made > 1 {
		t.Errorf("%d buffers made for a hash that kept up, want 1", a.made)
	}
}

// An inline hash hashes as it is written and needs no wait.
func TestInlineHash(t *testing.T) {
	data := make([]byte, 3*aheadBufferSize+17)
	rand.New(rand.NewSource(2)).Read(data)
	want := sha256.Sum256(data)
	a := inlineHash(sha256.New())
	a.Write(data[:100])
	a.Write(data[100:])
	if got := a.h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Errorf("digest %x, want %x", got, want)
	}
	a.wait()
	if a.made != 0 {
		t.Errorf("%d buffers made", a.made)
	}
}
