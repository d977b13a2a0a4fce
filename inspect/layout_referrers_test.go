package inspect

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/source"
)

// A single-repository backup is written tag-only (ref.name "v1"), but its
// referrers record their repository. Restore names such a backup's
// repository "" (or anything): its referrers must come back all the same,
// as its tags do.
func TestLayoutReferrersOfTagOnlyBackup(t *testing.T) {
	s, smp := sample(t)
	p := filepath.Join(t.TempDir(), "backend.tar")
	backup(t, p, refs(s, registrytest.SampleBackend)...)
	ctx := context.Background()
	l, err := source.OpenLayout(ctx, p, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v1 := smp.Tags[registrytest.SampleBackend]["v1"]
	if tags, err := l.Tags(ctx, ""); err != nil || len(tags) != 2 {
		t.Fatalf("Tags(\"\") = %v, %v: a tag-only backup's tags belong to any name", tags, err)
	}
	for _, repo := range []string{"", "any-name"} {
		refs, err := l.Referrers(ctx, repo, v1)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != 1 {
			t.Errorf("Referrers(%q, backend:v1) of a tag-only backup = %d referrers, want its SBOM: restore of a single-repository backup drops every referrer", repo, len(refs))
		}
	}
}
