package archive

import (
	"archive/tar"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Names of the two files of an OCI image layout besides its blobs.
const (
	LayoutFileName = "oci-layout"
	IndexFileName  = "index.json"
)

// The files `docker save` (Docker 25 and later) and `regctl image export`
// add to an OCI image layout so that `docker load` of older Dockers reads
// it. The layout's index.json says everything they say; readers ignore
// them.
const (
	DockerManifestName     = "manifest.json"
	DockerRepositoriesName = "repositories"
)

// MemberKind is what a tar member of a backup archive is.
type MemberKind int

const (
	MemberSkip    MemberKind = iota // carries no content: a directory, a pax global header
	MemberLayout                    // oci-layout
	MemberIndex                     // index.json
	MemberBlob                      // blobs/<algorithm>/<encoded>
	MemberIgnored                   // manifest.json or repositories of a docker save archive
)

// The digest grammar of the image spec: a blob's path is
// blobs/<algorithm>/<encoded>.
var (
	algRE     = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$`)
	encodedRE = regexp.MustCompile(`^[a-zA-Z0-9=_-]+$`)
)

// memberHint says what a backup archive may hold.
const memberHint = "a backup archive holds only oci-layout, index.json and blobs/<algorithm>/<digest>, and the manifest.json and repositories of docker save"

// Member checks one tar member of a backup archive, for every reader of
// archives (restore, the inspect commands, verify): they accept and refuse
// the same members. A backup holds oci-layout, index.json and
// blobs/<alg>/<encoded> (and the directories above blobs), and may hold a
// docker save's manifest.json and repositories (MemberIgnored); anything
// else — a path that leaves the archive, a link, a device, an unknown file
// — is refused, naming the member. name is the member's canonical name
// ("./" removed). A blob's name is checked against the path grammar only:
// whether it is a valid digest is the caller's to check.
func Member(h *tar.Header) (name string, kind MemberKind, err error) {
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
	case tar.TypeDir:
	case tar.TypeXGlobalHeader:
		return "", MemberSkip, nil // pax global header (git archive writes one)
	case tar.TypeSymlink:
		return "", 0, fmt.Errorf("archive member %q is a symbolic link (to %q): a backup archive holds only regular files", h.Name, h.Linkname)
	case tar.TypeLink:
		return "", 0, fmt.Errorf("archive member %q is a hard link (to %q): a backup archive holds only regular files", h.Name, h.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return "", 0, fmt.Errorf("archive member %q is a device or pipe: a backup archive holds only regular files", h.Name)
	default:
		return "", 0, fmt.Errorf("archive member %q has unsupported tar type %q: a backup archive holds only regular files", h.Name, h.Typeflag)
	}
	raw := h.Name
	if strings.HasPrefix(raw, "/") {
		return "", 0, fmt.Errorf("archive member %q has an absolute path", raw)
	}
	for _, elem := range strings.Split(raw, "/") {
		if elem == ".." {
			return "", 0, fmt.Errorf("archive member %q leaves the archive (\"..\")", raw)
		}
	}
	if strings.ContainsAny(raw, "\\\x00") {
		return "", 0, fmt.Errorf("archive member %q has an invalid name", raw)
	}
	name = strings.TrimPrefix(raw, "./")
	if h.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
		if name == "" || name == "." || name == "blobs" || IsAlgDir(name) {
			return name, MemberSkip, nil
		}
		return "", 0, fmt.Errorf("archive member %q: unexpected directory (%s)", raw, memberHint)
	}
	switch {
	case name == LayoutFileName:
		return name, MemberLayout, nil
	case name == IndexFileName:
		return name, MemberIndex, nil
	case name == DockerManifestName || name == DockerRepositoriesName:
		return name, MemberIgnored, nil
	case IsBlobName(name):
		return name, MemberBlob, nil
	}
	return "", 0, fmt.Errorf("archive member %q: unexpected file (%s)", raw, memberHint)
}

// Members tracks the members of one archive as they are read: each name
// may appear once. Two index.json (or two copies of a blob) would let two
// readers see two different backups in one archive.
type Members map[string]bool

// Add records name; an error names the member seen before.
func (m Members) Add(raw, name string) error {
	if m[name] {
		return fmt.Errorf("archive member %q appears twice: the archive is ambiguous (re-create it, or extract it and keep the copy you mean)", raw)
	}
	m[name] = true
	return nil
}

// IgnoredNote is the note readers give for a MemberIgnored member.
func IgnoredNote(name string) string {
	return fmt.Sprintf("ignoring %s (written by docker save for older docker load; the OCI index.json names the same images)", name)
}

// IsAlgDir says whether name is blobs/<algorithm>.
func IsAlgDir(name string) bool {
	alg, ok := strings.CutPrefix(name, "blobs/")
	return ok && algRE.MatchString(alg)
}

// IsBlobName says whether name has the form blobs/<algorithm>/<encoded>.
func IsBlobName(name string) bool {
	if path.Clean(name) != name {
		return false
	}
	parts := strings.Split(name, "/")
	return len(parts) == 3 && parts[0] == "blobs" &&
		algRE.MatchString(parts[1]) && encodedRE.MatchString(parts[2])
}
