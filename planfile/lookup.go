package planfile

import (
	"github.com/opencontainers/go-digest"
)

// digestTable finds a digest's index in a plan's Content, which is sorted
// by digest. Nearly every digest of a plan is sha256, and its hex is
// uniformly spread: the digest decoded to its 32 bytes, the bytes' top bits
// name a bucket of a table over the sorted sums, and the bucket holds one
// entry on average. A plan of 100,000 tags looks up about 500,000 digests
// while it is validated and indexed; a map from 71-character strings spent
// most of that time hashing, probing and comparing keys in memory spread
// over the whole file. Other digests (another algorithm, or content not in
// order, which Validate refuses) are in a map.
type digestTable struct {
	sums   [][32]byte // of the sha256 entries, in Content's order
	at     []int32    // their indexes in Content
	bucket []int32    // bucket k: sums[bucket[k]:bucket[k+1]]
	shift  uint
	other  map[string]int32
}

const sha256Prefix = "sha256:"

func newDigestTable(cs []Content) *digestTable {
	t := &digestTable{sums: make([][32]byte, 0, len(cs)), at: make([]int32, 0, len(cs))}
	// About one entry a bucket: 2^bits ≥ len(cs).
	bits := uint(1)
	for 1<<bits < len(cs) {
		bits++
	}
	t.shift = 64 - bits
	t.bucket = make([]int32, 1<<bits+1)
	for i, c := range cs {
		sum, ok := decodeSHA256(string(c.Digest))
		if !ok {
			t.add(c.Digest, i)
			continue
		}
		if n := len(t.sums); n > 0 && !lessSum(&t.sums[n-1], &sum) {
			// Not in order (Validate refuses such a plan): the buckets
			// would be wrong, so all of it goes to the map.
			t.sums, t.at = t.sums[:0], t.at[:0]
			for i, c := range cs {
				t.add(c.Digest, i)
			}
			break
		}
		t.sums = append(t.sums, sum)
		t.at = append(t.at, int32(i))
	}
	// bucket[k] is the first entry whose bucket is k or later.
	k := 0
	for j := range t.sums {
		for b := int(top(&t.sums[j]) >> t.shift); k <= b; k++ {
			t.bucket[k] = int32(j)
		}
	}
	for ; k < len(t.bucket); k++ {
		t.bucket[k] = int32(len(t.sums))
	}
	return t
}

func (t *digestTable) add(d digest.Digest, i int) {
	if t.other == nil {
		t.other = map[string]int32{}
	}
	t.other[string(d)] = int32(i)
}

func (t *digestTable) lookup(d digest.Digest) (int32, bool) {
	if sum, ok := decodeSHA256(string(d)); ok {
		b := top(&sum) >> t.shift
		for j := t.bucket[b]; j < t.bucket[b+1]; j++ {
			if t.sums[j] == sum {
				return t.at[j], true
			}
		}
	}
	if t.other != nil {
		i, ok := t.other[string(d)]
		return i, ok
	}
	return 0, false
}

func top(s *[32]byte) uint64 {
	return uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
		uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
}

func lessSum(a, b *[32]byte) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// decodeSHA256 decodes a sha256 digest in its canonical form (lowercase
// hex, what checkDigest accepts for sha256); ok is false for anything else.
func decodeSHA256(s string) (sum [32]byte, ok bool) {
	if len(s) != len(sha256Prefix)+64 || s[:len(sha256Prefix)] != sha256Prefix {
		return sum, false
	}
	h := s[len(sha256Prefix):]
	var bad byte
	for i := range sum {
		hi, lo := hexValue[h[2*i]], hexValue[h[2*i+1]]
		bad |= hi | lo
		sum[i] = hi<<4 | lo&0x0f
	}
	return sum, bad&0x80 == 0
}

// hexValue is the value of a lowercase hex digit, 0x80 for any other byte.
var hexValue = func() (t [256]byte) {
	for c := range t {
		switch {
		case c >= '0' && c <= '9':
			t[c] = byte(c - '0')
		case c >= 'a' && c <= 'f':
			t[c] = byte(c - 'a' + 10)
		default:
			t[c] = 0x80
		}
	}
	return t
}()
