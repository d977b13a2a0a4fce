package planfile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The digest table finds every digest of Content at its index, and
// nothing else: sha256 digests spread over all buckets, digests of other
// algorithms, and content out of order (a plan Validate refuses, indexed
// all the same).
func TestDigestTable(t *testing.T) {
	var cs []Content
	for i := range 5000 {
		cs = append(cs, Content{Digest: digest.FromString(fmt.Sprint(i))})
	}
	for i := range 3 {
		cs = append(cs, Content{Digest: digest.SHA512.FromString(fmt.Sprint(i))})
	}
	// Neighbours in one bucket: the same first 16 bytes.
	near := "sha256:" + strings.Repeat("ab", 16)
	cs = append(cs, Content{Digest: digest.Digest(near + strings.Repeat("0", 32))}, Content{Digest: digest.Digest(near + strings.Repeat("1", 32))})
	slices.SortFunc(cs, func(a, b Content) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	absent := []digest.Digest{
		digest.FromString("absent"), digest.SHA512.FromString("absent"),
		digest.Digest(near + strings.Repeat("2", 32)),
		digest.Digest(strings.ToUpper(string(cs[0].Digest))), "sha256:", "", "sha256:" + digest.Digest(strings.Repeat("g", 64)),
	}
	check := func(name string, cs []Content) {
		tab := newDigestTable(cs)
		for i, c := range cs {
			if got, ok := tab.lookup(c.Digest); !ok || int(got) != i {
				t.Errorf("%s: %s is at %d, lookup gives %d %v", name, c.Digest, i, got, ok)
			}
		}
		for _, d := range absent {
			if got, ok := tab.lookup(d); ok {
				t.Errorf("%s: %q is not in the table, lookup gives %d", name, d, got)
			}
		}
	}
	check("sorted", cs)
	check("empty", nil)
	check("one", cs[:1])
	unsorted := slices.Clone(cs)
	unsorted[10], unsorted[4000] = unsorted[4000], unsorted[10]
	check("unsorted", unsorted)
	if tab := newDigestTable(cs); tab.other == nil || len(tab.other) != 3 {
		t.Errorf("sorted: %d digests in the map, want the 3 sha512 ones", len(tab.other))
	}
}

// A plan read from a file (mapped into memory on Linux) is the plan read
// from its bytes; a reader that is not at the file's start reads what is
// left, as any reader.
func TestReadFile(t *testing.T) {
	data, err := os.ReadFile("testdata/small.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, append([]byte(" "), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(1, 0); err != nil {
		t.Fatal(err)
	}
	got, err := Read(f)
	if err != nil {
		t.Fatalf("from offset 1: %v", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	mapped, err := Read(g)
	if err != nil {
		t.Fatal(err)
	}
	var a, b, c strings.Builder
	for w, p := range map[*strings.Builder]*Plan{&a: want, &b: got, &c: mapped} {
		if err := p.Encode(w); err != nil {
			t.Fatal(err)
		}
	}
	if a.String() != b.String() || a.String() != c.String() {
		t.Errorf("plans differ:\n%s\n%s\n%s", a.String(), b.String(), c.String())
	}
}
