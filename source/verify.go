package source

import (
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// VerifyReader returns a reader that yields exactly desc.Size bytes of r and
// checks them against desc.Digest as they pass. Where r's bytes do not
// match, it returns an error instead of io.EOF: the read that completes
// desc.Size bytes carries an error wrapping content.ErrMismatchedDigest when
// the digest differs, a short r ends in io.ErrUnexpectedEOF, and a longer r
// ends in an error wrapping content.ErrTrailingData. A descriptor whose
// digest cannot be checked (invalid, unknown algorithm, negative size)
// fails on the first read. VerifyReader never reads more than desc.Size+1
// bytes from r.
func VerifyReader(r io.Reader, desc ocispec.Descriptor) io.Reader {
	v := &verifyReader{r: r, desc: desc}
	switch {
	case desc.Size < 0:
		v.err = fmt.Errorf("%s: %w: %d", desc.Digest, content.ErrInvalidDescriptorSize, desc.Size)
	case desc.Digest.Validate() != nil:
		v.err = fmt.Errorf("cannot verify content %q: %w", desc.Digest, desc.Digest.Validate())
	default:
		v.h = desc.Digest.Algorithm().Hash()
	}
	return v
}

type verifyReader struct {
	r    io.Reader
	desc ocispec.Descriptor
	h    hash.Hash
	n    int64 // bytes passed so far
	err  error // sticky: io.EOF once verified, or the failure

	checked bool // the digest has been compared
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.n == v.desc.Size {
		if !v.checked {
			if err := v.check(); err != nil {
				return 0, err
			}
		}
		// Every byte is here and verified: r must end now.
		var one [1]byte
		for {
			k, err := v.r.Read(one[:])
			if k > 0 {
				v.err = fmt.Errorf("%s: %w: more than the expected %d bytes", v.desc.Digest, content.ErrTrailingData, v.desc.Size)
				return 0, v.err
			}
			if err == io.EOF {
				v.err = io.EOF
				return 0, io.EOF
			}
			if err != nil {
				v.err = err
				return 0, err
			}
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if rest := v.desc.Size - v.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	k, err := v.r.Read(p)
	if k > 0 {
		v.h.Write(p[:k])
		v.n += int64(k)
	}
	if v.n == v.desc.Size {
		if err := v.check(); err != nil {
			return k, err
		}
		if err == io.EOF {
			// r ended exactly at the expected size.
			v.err = io.EOF
			return k, nil
		}
		if err != nil {
			v.err = err
			return k, err
		}
		return k, nil
	}
	if err == io.EOF {
		v.err = fmt.Errorf("%s: %w: got %d of %d bytes", v.desc.Digest, io.ErrUnexpectedEOF, v.n, v.desc.Size)
		return k, v.err
	}
	if err != nil {
		v.err = err
	}
	return k, err
}

// check compares the digest of the desc.Size bytes read with desc.Digest.
func (v *verifyReader) check() error {
	v.checked = true
	got := digest.NewDigestFromBytes(v.desc.Digest.Algorithm(), v.h.Sum(nil))
	if got != v.desc.Digest {
		v.err = fmt.Errorf("%s: %w: the %d bytes read have digest %s",
			v.desc.Digest, content.ErrMismatchedDigest, v.n, got)
		return v.err
	}
	return nil
}
