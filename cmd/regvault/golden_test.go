package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
)

// The golden tests pin what the current code writes and pushes, so that a
// refactor which must keep behaviour (and archive bytes) the same is caught
// between commits, which run-twice tests cannot do. The sample of
// registrytest is fixed bytes (seeded content, a fixed creation time), and
// the source registry is reached under a fixed name with --resolve, so the
// names in index.json do not depend on the test server's port.

// goldenHost is the fixed name of the source registry in the archives.
const goldenHost = "registry.invalid:5000"

// archiveChanged is said by every golden failure on archive bytes.
const archiveChanged = "archive bytes changed: if intended (a format change), update the constant and say so in the commit"

// restoreChanged is said by every golden failure on a restore.
const restoreChanged = "restore requests or result changed: if intended, update the constant and say so in the commit"

// goldenSelections are the backups pinned: every repository (all tags) and
// one tag of one repository, with and without referrers.
var goldenSelections = []struct {
	name      string
	referrers bool
	refs      []string // under goldenHost
}{
	{"multi", false, []string{registrytest.SampleBackend, registrytest.SampleFrontend, registrytest.SampleBase}},
	{"multi-referrers", true, []string{registrytest.SampleBackend, registrytest.SampleFrontend, registrytest.SampleBase}},
	{"single-tag", false, []string{registrytest.SampleBackend + ":v2"}},
	{"single-tag-referrers", true, []string{registrytest.SampleBackend + ":v2"}},
}

// goldenOutputs are the output kinds pinned, by the name's suffix; "" is a
// directory.
var goldenOutputs = []string{".tar", ".tar.gz", ".tar.zst", ""}

// goldenArchives are sha256 sums, by selection and output: of the file
// for an archive, and for a directory of "index.json" and of "blobs" (the
// sorted list of every other file's path, one a line).
var goldenArchives = map[string]string{
	"multi.tar":                           "1f7e530d3515b5d768f5c0ce9d1a0e5298db8240d2b1bba88f65c0650eebd685",
	"multi.tar.gz":                        "ca587aecd5dcaf647eb3dd7ddac61a54414d478a755329738d3606e32c345557",
	"multi.tar.zst":                       "9eb40d39c0bcc222bc7d41076e251a65973a8cd196c9491d3403f664a162b174",
	"multi dir index.json":                "ccfc97b0f6e9d68c0e981c05630b789545bb88037797c90c39ec9a27b79d4e0a",
	"multi dir blobs":                     "0675223ee1bea51b6f1f31ddccc61f81198d489951d48a77359fa90bc227a069",
	"multi-referrers.tar":                 "c19084395e3f8cd9be0fb0e8eed9c345c855de9465f7904e129eb3a67d433705",
	"multi-referrers.tar.gz":              "4e13ea7715406a7b99824dc6783c1f12cf69c368302f15acf9c274132913f8ba",
	"multi-referrers.tar.zst":             "61dfc78cd6997522a9622be761caa55833f176dac1391aa2f304cd0da69182e9",
	"multi-referrers dir index.json":      "249836aa05d48601e4f6245c7eee6a83160925bab5220f141f46f36a2adcf40d",
	"multi-referrers dir blobs":           "958fc55c5fac009e572dd626dd56e2429411c5f7e6f21361163c2c5f81b2d076",
	"single-tag.tar":                      "b6da20213dd9c3da3ea81e53909af460362e876a5bb0110d20b34f373b07ef9a",
	"single-tag.tar.gz":                   "2a3084f84222a9c113aefa44c0f224876aa40b9c8b6a27e0eade3708baddced7",
	"single-tag.tar.zst":                  "d1e4d6b31f443b48e81f9764e1d1d30c925a3b45c253a6509d5e0324149b3138",
	"single-tag dir index.json":           "369963b49672be8884a18d04e9dc2013d4514cab2856b09706a1c2a9bccb27c9",
	"single-tag dir blobs":                "3a1d8cd13ddbe01e1e1b6fb06c2d6136022f6bad340821d8f7ee4320849dee85",
	"single-tag-referrers.tar":            "83049692e25b6510ae49fb4eb63f90ba48549408405a64bff6aedda836791fed",
	"single-tag-referrers.tar.gz":         "bf10ffbc06e74d3b2d1c317e3b9f763ff9a88ffd28596e5ea6441d714a5287aa",
	"single-tag-referrers.tar.zst":        "82195e8824f687b7467365ef73931f04a8665b79240af158f271a7e72e0a3387",
	"single-tag-referrers dir index.json": "afe2b29c087bd62918913dac6beee999d29ee3f522d335857709855fe042218f",
	"single-tag-referrers dir blobs":      "fed1df77dad8bb9fd7372b2095bb1679ddd6de86ff29bdd2de00b2da7e1ad43e",
}

// goldenRegistry is an in-process registry seeded with the sample, and the
// --resolve flag that reaches it as goldenHost.
func goldenRegistry(t *testing.T) (*registrytest.Server, []string) {
	t.Helper()
	s, _ := sampleRegistry(t)
	_, port, err := net.SplitHostPort(s.Host())
	if err != nil {
		t.Fatal(err)
	}
	return s, []string{"--plain-http", "--no-tty", "--resolve", goldenHost + ":127.0.0.1:" + port}
}

// goldenBackup backs up the selection sel into out through the fixed name.
func goldenBackup(t *testing.T, conn []string, out string, referrers bool, refs []string) {
	t.Helper()
	args := append([]string{"backup"}, conn...)
	if referrers {
		args = append(args, "--include-referrers")
	}
	args = append(args, "-o", out)
	for _, r := range refs {
		args = append(args, goldenHost+"/"+r)
	}
	regvault(t, "", args...).wantCode(t, exitOK)
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256String(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// layoutSums is, for a layout directory, the sum of index.json and of the
// sorted list of every other file's path (the blobs, and oci-layout).
func layoutSums(t *testing.T, dir string) (index, blobs string) {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel != "index.json" {
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return sha256File(t, filepath.Join(dir, "index.json")), sha256String(strings.Join(names, "\n") + "\n")
}

// wantGolden compares got with the constant for key in golden; on a
// difference it prints the line to paste and note.
func wantGolden(t *testing.T, golden map[string]string, key, got, note string) {
	t.Helper()
	if want := golden[key]; got != want {
		t.Errorf("%s: got %s, want %s\n\t%q: %q,\n%s", key, got, want, key, got, note)
	}
}

// TestArchiveGolden pins the bytes of the archives (and directory layouts)
// the current code writes for the sample.
func TestArchiveGolden(t *testing.T) {
	_, conn := goldenRegistry(t)
	for _, sel := range goldenSelections {
		for _, ext := range goldenOutputs {
			key := sel.name + ext
			if ext == "" {
				key = sel.name + " dir"
			}
			t.Run(key, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "backup"+ext)
				goldenBackup(t, conn, out, sel.referrers, sel.refs)
				if ext != "" {
					wantGolden(t, goldenArchives, key, sha256File(t, out), archiveChanged)
					return
				}
				index, blobs := layoutSums(t, out)
				wantGolden(t, goldenArchives, key+" index.json", index, archiveChanged)
				wantGolden(t, goldenArchives, key+" blobs", blobs, archiveChanged)
			})
		}
	}
}

// goldenRestore pins a restore of the multi-referrers tar into an empty
// registry: the tags and digests it holds after, and the requests it got.
var goldenRestore = map[string]string{
	"tags demo/backend":  "v1 sha256:6786448783d2552973f42f4dee90b5782e561a51c604a98676da7fc7eee0f624, v2 sha256:4c30a6e7451e4aefcbe5458b438b58a1b4adc2959368f4f920eb01faff7efc2d",
	"tags demo/frontend": "v1 sha256:529857a2d34d4f953a397e5fa0660abd771734a5fcfe79a85fa8a243af6738a2, v2 sha256:e9bc4153ba2e022fb1d79297dec569071e515728a5992e7aff59e5b6fbde15ed",
	"tags library/base":  "1.0 sha256:3311f65f14a82c1dc05c12b34fe09fd598cfb52278204d955b88ba8c4791dcd7, 1.1 sha256:4da1d8f4fc55e8ec9862374c908ca7bd17a6f2330e43af1900eba1c9732718b7",
	"requests":           "GET tags 3, POST upload 30, PUT manifest 24, PUT upload 26",
	"mounts":             "4",
	"bytes in":           "83078",
	"status":             "201 54, 202 26, 404 3",
}

// TestRestoreGolden restores the tar of every repository with referrers
// into a fresh registry and pins the result and the requests it took.
func TestRestoreGolden(t *testing.T) {
	_, conn := goldenRegistry(t)
	in := filepath.Join(t.TempDir(), "backup.tar")
	sel := goldenSelections[1]
	goldenBackup(t, conn, in, sel.referrers, sel.refs)
	wantGolden(t, goldenArchives, sel.name+".tar", sha256File(t, in), archiveChanged)

	dst := registrytest.NewInProcess(t)
	regvault(t, "", "restore", "--plain-http", "--no-tty", "--input", in, dst.Host()).wantCode(t, exitOK)
	st := dst.Stats()

	// Tags → digests, read through the registry's API.
	for _, repo := range sel.refs {
		var tags []string
		r := registrytest.Repo(t, dst, repo)
		if err := r.Tags(t.Context(), "", func(page []string) error { tags = append(tags, page...); return nil }); err != nil {
			t.Fatalf("tags of %s: %v", repo, err)
		}
		slices.Sort(tags)
		var lines []string
		for _, tag := range tags {
			d, err := r.Resolve(t.Context(), tag)
			if err != nil {
				t.Fatalf("%s:%s: %v", repo, tag, err)
			}
			lines = append(lines, tag+" "+d.Digest.String())
		}
		wantGolden(t, goldenRestore, "tags "+repo, strings.Join(lines, ", "), restoreChanged)
	}

	// Requests by method and kind, in a fixed order.
	var reqs []string
	for k, n := range st.Requests {
		reqs = append(reqs, fmt.Sprintf("%s %s %d", k.Method, k.Kind, n))
	}
	sort.Strings(reqs)
	wantGolden(t, goldenRestore, "requests", strings.Join(reqs, ", "), restoreChanged)
	wantGolden(t, goldenRestore, "mounts", fmt.Sprint(st.Mounts), restoreChanged)
	wantGolden(t, goldenRestore, "bytes in", fmt.Sprint(st.BytesIn), restoreChanged)
	var status []string
	for code, n := range st.Status {
		status = append(status, fmt.Sprintf("%d %d", code, n))
	}
	sort.Strings(status)
	wantGolden(t, goldenRestore, "status", strings.Join(status, ", "), restoreChanged)
}
