package source

import (
	"fmt"
	"regexp"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// mediaTypeSyntax is RFC 6838's type/subtype, as the OCI image spec's
// descriptor schema gives it: no registry accepts a descriptor without one.
var mediaTypeSyntax = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`)

// CheckDescriptor says what is wrong with a descriptor that no registry
// could take: a digest that is not one or of an algorithm regvault cannot
// verify, a negative size, a media type that is not type/subtype. The
// walk checks every descriptor of every manifest with it, so that damage
// in the manifests is found before anything is pushed.
func CheckDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d", d.Digest, d.Size)
	}
	switch {
	case d.MediaType == "":
		return fmt.Errorf("%s: no media type", d.Digest)
	case !mediaTypeSyntax.MatchString(d.MediaType):
		return fmt.Errorf("%s: invalid media type %q: a media type is type/subtype, e.g. %s", d.Digest, d.MediaType, ocispec.MediaTypeImageLayerGzip)
	}
	return nil
}
