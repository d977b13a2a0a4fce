package inspect

import (
	"encoding/json"
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/source"
)

// maxManifest is the largest manifest the layout reader (and so restore)
// reads: the one limit of backup, verify and restore.
const maxManifest = archive.MaxManifestSize

// Manifest media types besides those of the image spec.
const (
	mediaTypeArtifactManifest    = "application/vnd.oci.artifact.manifest.v1+json"
	mediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// manifestSummary is what verify keeps of a manifest: its references.
type manifestSummary struct {
	MediaType    string               `json:"mediaType"`
	ArtifactType string               `json:"artifactType"`
	Config       *ocispec.Descriptor  `json:"config"`
	Layers       []ocispec.Descriptor `json:"layers"`
	Blobs        []ocispec.Descriptor `json:"blobs"`
	Manifests    []ocispec.Descriptor `json:"manifests"`
	Subject      *ocispec.Descriptor  `json:"subject"`
}

func parseSummary(data []byte) (*manifestSummary, error) {
	var m manifestSummary
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not valid manifest JSON: %v", err)
	}
	return &m, nil
}

// Roles of content in a manifest's graph.
const (
	roleManifest = "manifest" // a tagged manifest or index, or a referrer
	roleChild    = "platform manifest"
	roleConfig   = "config"
	roleLayer    = "layer"
	roleBlob     = "blob"
	roleSubject  = "subject"
)

type child struct {
	desc ocispec.Descriptor
	role string
}

// children are the content a manifest of media type mt ("": the type it
// declares) references and that restore pushes before it, as the graph
// walk finds them; the subject is not one (see subject).
func (m *manifestSummary) children(mt string) ([]child, error) {
	if mt == "" {
		mt = m.MediaType
	}
	var out []child
	switch mt {
	case ocispec.MediaTypeImageManifest, source.MediaTypeDockerManifest:
		if m.Config == nil {
			return nil, errors.New("an image manifest without a config")
		}
		out = append(out, child{*m.Config, roleConfig})
		for _, l := range m.Layers {
			out = append(out, child{l, roleLayer})
		}
	case mediaTypeArtifactManifest:
		for _, b := range m.Blobs {
			out = append(out, child{b, roleBlob})
		}
	case ocispec.MediaTypeImageIndex, source.MediaTypeDockerManifestList:
		for _, c := range m.Manifests {
			if source.IsManifest(c.MediaType) {
				out = append(out, child{c, roleChild})
			} else {
				out = append(out, child{c, roleBlob})
			}
		}
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1Signed:
		return nil, errors.New("a Docker schema 1 manifest (deprecated): restore does not push these")
	case "":
		return nil, errors.New("no media type: neither its descriptor nor the manifest says what it is")
	default:
		return nil, fmt.Errorf("unsupported manifest media type %q", mt)
	}
	return out, nil
}

// isManifestRole says whether content in this role is read as a manifest.
func isManifestRole(desc ocispec.Descriptor, role string) bool {
	switch role {
	case roleManifest, roleChild:
		return true
	case roleSubject:
		return desc.MediaType == "" || source.IsManifest(desc.MediaType)
	}
	return source.IsManifest(desc.MediaType)
}
