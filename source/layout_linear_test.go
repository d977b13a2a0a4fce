package source

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/regvault/regvault/bench"
)

// Planning a restore is linear in the tags: resolving each tag of a backup
// looks at the index.json entries of that tag only (not at all of them,
// which made a restore of 100,000 tags quadratic), and the referrers are
// found once, however many walks ask for them at the same time. Counted,
// not timed: one repository with many tags, and many repositories with
// one tag each.
func TestLayoutPlanningIsLinear(t *testing.T) {
	const n = 3000
	oneRepo := filepath.Join(t.TempDir(), "one")
	require.NoError(t, bench.WriteManyTags(oneRepo, "src.example/many/tags", n, n/4))
	// the same manifests, each tag in a repository of its own
	manyRepos := filepath.Join(t.TempDir(), "many")
	require.NoError(t, os.CopyFS(manyRepos, os.DirFS(oneRepo)))
	data, err := os.ReadFile(filepath.Join(manyRepos, "index.json"))
	require.NoError(t, err)
	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(data, &idx))
	for i := range idx.Manifests {
		idx.Manifests[i].Annotations[ocispec.AnnotationRefName] = fmt.Sprintf("src.example/bulk/r%05d:v1", i)
	}
	data, err = json.Marshal(idx)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(manyRepos, "index.json"), data, 0o644))

	for _, tc := range []struct {
		name string
		path string
	}{{"one repository", oneRepo}, {"one tag per repository", manyRepos}} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := testOpen(t, tc.path, nil)
			entries := l.Entries()
			require.Len(t, entries, n)
			var g errgroup.Group
			g.SetLimit(64)
			for i, e := range entries {
				g.Go(func() error {
					repo := e.Repo
					if i%2 == 1 {
						repo = e.RepoPath() // by path, as a target keeping it asks
					}
					desc, _, err := l.Resolve(context.Background(), repo, e.Tag)
					if err != nil {
						return err
					}
					if desc.Digest != e.Desc.Digest {
						return fmt.Errorf("%s:%s resolved to %s, want %s", repo, e.Tag, desc.Digest, e.Desc.Digest)
					}
					_, err = l.Referrers(context.Background(), repo, desc)
					return err
				})
			}
			require.NoError(t, g.Wait())
			require.Equal(t, int64(n), l.lookup.scanned.Load(), "index.json entries looked at to resolve %d tags", n)
			require.Equal(t, 1, l.refBuilds, "times the referrers were found")
		})
	}
}
