package inspect

import (
	"encoding/json"
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/archive"
)

// maxManifest is the largest manifest the layout reader (and so restore)
// reads: the one limit of backup, verify and restore.
const maxManifest = archive.MaxManifestSize

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

// childRoles name the places of archive.Manifest.Children in messages.
var childRoles = map[archive.Role]string{
	archive.RoleConfig:   roleConfig,
	archive.RoleLayer:    roleLayer,
	archive.RoleBlob:     roleBlob,
	archive.RoleManifest: roleChild,
}

// children are the content a manifest of media type mt ("": the type it
// declares) references and that restore pushes before it, as the graph
// walk finds them; the subject is not one (see subject).
func (m *manifestSummary) children(mt string) ([]child, error) {
	if mt == "" {
		mt = m.MediaType
	}
	kids, err := archive.Manifest{
		MediaType: m.MediaType, Config: m.Config, Layers: m.Layers,
		Blobs: m.Blobs, Manifests: m.Manifests, Subject: m.Subject,
	}.Children(mt)
	var unsupported *archive.UnsupportedTypeError
	switch {
	case errors.Is(err, archive.ErrSchema1):
		return nil, errors.New("a Docker schema 1 manifest (deprecated): restore does not push these")
	case errors.As(err, &unsupported) && unsupported.MediaType == "":
		return nil, errors.New("no media type: neither its descriptor nor the manifest says what it is")
	case err != nil:
		return nil, err
	}
	out := make([]child, len(kids))
	for i, k := range kids {
		out[i] = child{k.Desc, childRoles[k.Role]}
	}
	return out, nil
}

// isManifestRole says whether content in this role is read as a manifest.
func isManifestRole(desc ocispec.Descriptor, role string) bool {
	switch role {
	case roleManifest, roleChild:
		return true
	case roleSubject:
		return desc.MediaType == "" || archive.IsManifest(desc.MediaType)
	}
	return archive.IsManifest(desc.MediaType)
}
