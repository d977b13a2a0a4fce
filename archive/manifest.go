package archive

import (
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest media types besides those of the image spec.
const (
	MediaTypeDockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaTypeArtifactManifest    = "application/vnd.oci.artifact.manifest.v1+json"
)

// IsManifest reports whether a media type is one of a manifest or index.
func IsManifest(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		MediaTypeDockerManifest, MediaTypeDockerManifestList, MediaTypeArtifactManifest,
		MediaTypeDockerSchema1, MediaTypeDockerSchema1Signed:
		return true
	}
	return false
}

// MayHaveSubject says whether content of media type mt, an entry of
// index.json, may be a manifest that has a subject (an empty media type
// may be anything; a Docker schema 1 manifest has none).
func MayHaveSubject(mt string) bool {
	switch mt {
	case "", ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		MediaTypeDockerManifest, MediaTypeDockerManifestList, MediaTypeArtifactManifest:
		return true
	}
	return false
}

// Manifest is what readers of a backup read of a manifest or index: the
// fields that name other content. A reader that decodes into a type of its
// own (its JSON errors name that type) converts it to Manifest.
type Manifest struct {
	MediaType string               `json:"mediaType"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Blobs     []ocispec.Descriptor `json:"blobs"`
	Manifests []ocispec.Descriptor `json:"manifests"`
	Subject   *ocispec.Descriptor  `json:"subject"`
}

// Role is the place of a child in its manifest.
type Role int

const (
	RoleConfig   Role = iota // an image manifest's config
	RoleLayer                // an image manifest's layer
	RoleBlob                 // an artifact manifest's blob, or an index entry that is not a manifest
	RoleManifest             // an index entry that is a manifest or index
)

// Child is one piece of content a manifest references.
type Child struct {
	Desc ocispec.Descriptor
	Role Role
}

// Why Children refuses a manifest; readers word these their own way.
var (
	ErrNoConfig = errors.New("an image manifest without a config")
	ErrSchema1  = errors.New("a Docker schema 1 manifest (deprecated)")
)

// UnsupportedTypeError is a manifest of a media type no reader walks
// (MediaType "": none given).
type UnsupportedTypeError struct{ MediaType string }

func (e *UnsupportedTypeError) Error() string {
	return fmt.Sprintf("unsupported manifest media type %q", e.MediaType)
}

// Children are the content a manifest of media type mt ("": the type it
// declares) references, in manifest order, and that a restore pushes
// before it: config and layers of an image manifest, blobs of an artifact
// manifest, entries of an index. The subject is not one: it is what the
// manifest refers to.
func (m Manifest) Children(mt string) ([]Child, error) {
	if mt == "" {
		mt = m.MediaType
	}
	var out []Child
	switch mt {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		if m.Config == nil {
			return nil, ErrNoConfig
		}
		out = append(out, Child{*m.Config, RoleConfig})
		for _, l := range m.Layers {
			out = append(out, Child{l, RoleLayer})
		}
	case MediaTypeArtifactManifest:
		for _, b := range m.Blobs {
			out = append(out, Child{b, RoleBlob})
		}
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		for _, c := range m.Manifests {
			if IsManifest(c.MediaType) {
				out = append(out, Child{c, RoleManifest})
			} else {
				// An index may list plain blobs; they are content too.
				out = append(out, Child{c, RoleBlob})
			}
		}
	case MediaTypeDockerSchema1, MediaTypeDockerSchema1Signed:
		return nil, ErrSchema1
	default:
		return nil, &UnsupportedTypeError{mt}
	}
	return out, nil
}
