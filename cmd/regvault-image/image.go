package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/x509"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The user the image runs as: distroless's "nonroot", so volumes prepared
// for those images (fsGroup 65532) fit.
const (
	nonrootUID = 65532
	certsPath  = "etc/ssl/certs/ca-certificates.crt"
	binaryPath = "regvault"
)

// result is what build made.
type result struct {
	Index     v1.Hash            // the image index the tag names
	Manifests map[string]v1.Hash // platform → image manifest
	Platforms []string           // in index order
	Layers    map[string]v1.Hash // platform → its one layer
	Configs   map[string]*v1.ConfigFile
}

// build writes the image for every binary of o as one OCI layout (and tar).
func build(o options) (result, error) {
	if err := checkOut(o.Out); err != nil {
		return result{}, err
	}
	created := time.Unix(o.Epoch, 0).UTC()
	certs, err := caBundle()
	if err != nil {
		return result{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(o.Out)), ".regvault-image-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(tmp)

	res := result{Manifests: map[string]v1.Hash{}, Layers: map[string]v1.Hash{}, Configs: map[string]*v1.ConfigFile{}}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, b := range o.Binaries {
		if err := checkBinary(b); err != nil {
			return result{}, err
		}
		rootfs := filepath.Join(tmp, fmt.Sprintf("rootfs-%d.tar", i))
		if err := writeRootFS(rootfs, b.Path, certs, created); err != nil {
			return result{}, fmt.Errorf("%s: %w", b.platform(), err)
		}
		img, err := platformImage(o, b, rootfs, created)
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", b.platform(), err)
		}
		d, err := img.Digest()
		if err != nil {
			return result{}, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return result{}, err
		}
		ls, err := img.Layers()
		if err != nil {
			return result{}, err
		}
		ld, err := ls[0].Digest()
		if err != nil {
			return result{}, err
		}
		res.Manifests[b.platform()], res.Layers[b.platform()], res.Configs[b.platform()] = d, ld, cf
		res.Platforms = append(res.Platforms, b.platform())
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: b.OS, Architecture: b.Arch, Variant: b.Variant},
		}})
	}
	idx = mutate.Annotations(idx, annotations(o, created)).(v1.ImageIndex)
	if res.Index, err = idx.Digest(); err != nil {
		return result{}, err
	}

	// index.json names the index by its tag alone, as an OCI layout does:
	// `regvault restore` puts it into the repository a target names,
	// `crane push <dir> <ref>` pushes it as it is.
	top := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: idx, Descriptor: v1.Descriptor{
		Annotations: map[string]string{ocispec.AnnotationRefName: o.Tag},
	}})
	dir := filepath.Join(tmp, "layout")
	if _, err := layout.Write(dir, top); err != nil {
		return result{}, fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := normalizeModes(dir); err != nil {
		return result{}, err
	}
	if o.Tar != "" {
		if err := writeLayoutTar(o.Tar, dir, idx); err != nil {
			return result{}, fmt.Errorf("writing %s: %w", o.Tar, err)
		}
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return result{}, err
	}
	if err := os.Rename(dir, o.Out); err != nil {
		return result{}, err
	}
	return res, nil
}

// checkOut refuses to replace a directory that is not an OCI layout, so a
// mistyped -o does not delete someone's files.
func checkOut(out string) error {
	fi, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("-o %s: exists and is not a directory", out)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(out, "oci-layout")); err != nil {
		return fmt.Errorf("-o %s: not empty and not an OCI layout; refusing to replace it (remove it or name another directory)", out)
	}
	return nil
}

// elfMachine is the ELF machine of each architecture the image is built for.
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
	"386": elf.EM_386, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// checkBinary refuses a binary that cannot run from scratch on its
// platform: not a Linux ELF of that architecture, or dynamically linked
// (built with cgo).
func checkBinary(b platformBinary) error {
	if b.OS != "linux" {
		return fmt.Errorf("%s: only linux images are built", b.platform())
	}
	f, err := elf.Open(b.Path)
	if err != nil {
		return fmt.Errorf("%s=%s: not an ELF binary: %w", b.platform(), b.Path, err)
	}
	defer f.Close()
	if m, ok := elfMachine[b.Arch]; !ok || f.Machine != m {
		return fmt.Errorf("%s=%s: the binary is for %v, not %s (build it with GOOS=linux GOARCH=%s)", b.platform(), b.Path, f.Machine, b.Arch, b.Arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s=%s: dynamically linked; a scratch image needs a static binary (build it with CGO_ENABLED=0)", b.platform(), b.Path)
		}
	}
	return nil
}

// platformImage is one platform's image: scratch plus the one layer.
func platformImage(o options, b platformBinary, rootfs string, created time.Time) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(rootfs) },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression))
	if err != nil {
		return nil, err
	}
	user := fmt.Sprintf("%d:%d", nonrootUID, nonrootUID)
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: b.Arch,
		OS:           b.OS,
		Variant:      b.Variant,
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			User:       user,
			Entrypoint: []string{"/" + binaryPath},
			Env: []string{
				"HOME=/home/nonroot",
				"SSL_CERT_FILE=/" + certsPath,
			},
			WorkingDir: "/",
			Labels:     annotations(o, created),
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "regvault-image",
			Comment:   "/regvault, CA certificates, user nonroot (65532)",
		},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, annotations(o, created)).(v1.Image), nil
}

// annotations are the image's OCI labels (config) and annotations
// (manifests and index).
func annotations(o options, created time.Time) map[string]string {
	a := map[string]string{
		ocispec.AnnotationTitle:       "regvault",
		ocispec.AnnotationDescription: "Backs up and restores many repositories of an OCI registry as one OCI image layout",
		ocispec.AnnotationVersion:     o.Version,
		ocispec.AnnotationSource:      o.Source,
		ocispec.AnnotationCreated:     created.Format(time.RFC3339),
	}
	if o.Revision != "" {
		a[ocispec.AnnotationRevision] = o.Revision
	}
	return a
}

// caBundle is the PEM bundle of the pinned x509roots/fallback roots, in
// the bundle's order. Roots that NSS trusts only with a constraint (a
// distrust-after date) are left out: a PEM file cannot say it, and
// trusting them without it would trust more than NSS does.
func caBundle() ([]byte, error) {
	var sb strings.Builder
	n := 0
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		fmt.Fprintf(&sb, "# %s\n", c.Subject)
		if err := pem.Encode(&sb, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, errors.New("CA bundle: no roots")
	}
	return []byte(sb.String()), nil
}

// rootfsEntry is one member of the image's layer.
type rootfsEntry struct {
	name  string
	mode  int64
	uid   int
	data  []byte // a file's content, unless path
	path  string // a file copied from disk
	isDir bool
	gid   int
}

// writeRootFS writes the layer's tar: fixed members, order, owners, modes
// and time stamps, so the same binary gives the same bytes.
func writeRootFS(name, binary string, certs []byte, created time.Time) error {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonrootUID, nonrootUID)
	group := "root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%d:\n", nonrootUID)
	entries := []rootfsEntry{
		{name: "etc/", mode: 0o755, isDir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		// Without it Go's resolver would ask DNS before /etc/hosts.
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, isDir: true},
		{name: "etc/ssl/certs/", mode: 0o755, isDir: true},
		{name: certsPath, mode: 0o644, data: certs},
		{name: "home/", mode: 0o755, isDir: true},
		{name: "home/nonroot/", mode: 0o700, isDir: true, uid: nonrootUID, gid: nonrootUID},
		{name: binaryPath, mode: 0o755, path: binary},
		{name: "tmp/", mode: 0o1777, isDir: true},
	}
	if !slices.IsSortedFunc(entries, func(a, b rootfsEntry) int { return strings.Compare(a.name, b.name) }) {
		panic("rootfs entries not sorted")
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: created}
		var src io.Reader
		switch {
		case e.isDir:
			h.Typeflag = tar.TypeDir
		case e.path != "":
			bf, err := os.Open(e.path)
			if err != nil {
				return err
			}
			defer bf.Close()
			fi, err := bf.Stat()
			if err != nil {
				return err
			}
			h.Typeflag, h.Size, src = tar.TypeReg, fi.Size(), bf
		default:
			h.Typeflag, h.Size, src = tar.TypeReg, int64(len(e.data)), strings.NewReader(string(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if src != nil {
			if n, err := io.Copy(tw, src); err != nil {
				return err
			} else if n != h.Size {
				return fmt.Errorf("%s: changed while read", e.name)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// writeLayoutTar writes the layout directory dir as a tar the way
// regvault writes its backups (docs/format.md): oci-layout, index.json,
// the manifests and index, the configs, the layers, each group sorted by
// digest; every member a regular file, mode 0644, time 0, owner 0.
func writeLayoutTar(name, dir string, idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	manifests, configs, layers := []v1.Hash{d}, []v1.Hash{}, []v1.Hash{}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			return err
		}
		mf, err := img.Manifest()
		if err != nil {
			return err
		}
		manifests = append(manifests, m.Digest)
		configs = append(configs, mf.Config.Digest)
		for _, l := range mf.Layers {
			layers = append(layers, l.Digest)
		}
	}
	members := []string{"oci-layout", "index.json"}
	for _, group := range [][]v1.Hash{manifests, configs, layers} {
		slices.SortFunc(group, func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })
		for _, h := range slices.Compact(group) {
			members = append(members, "blobs/"+h.Algorithm+"/"+h.Hex)
		}
	}

	tmp, err := os.CreateTemp(filepath.Dir(filepath.Clean(name)), ".regvault-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	tw := tar.NewWriter(tmp)
	for _, m := range members {
		if err := addFile(tw, filepath.Join(dir, filepath.FromSlash(m)), m); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

func addFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: fi.Size(), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// normalizeModes gives the layout's files mode 0644 and its directories
// 0755, as regvault's backups (the layout writer leaves some blobs 0600,
// some 0755).
func normalizeModes(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(path, mode)
	})
}
