package pipeline

import (
	"context"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/source"
)

// settleOptional reads a stream to its end (Finisher) and then settles
// each optional layer of the graph: held, or left out.
func (r *run) settleOptional(ctx context.Context, src source.Source) error {
	if f, ok := src.(Finisher); ok {
		if err := f.Finish(ctx); err != nil {
			return err
		}
	}
	h, ok := src.(source.Holder)
	for repo, descs := range r.graph.OptionalDescs() {
		for _, d := range descs {
			has := true
			var err error
			if n := r.graph.Node(d.Digest); ok && n != nil && len(n.Sources()) > 0 {
				has, err = h.Has(ctx, n.Sources()[0], d)
			}
			if err != nil {
				return fmt.Errorf("%s: layer %s: %w", repo, d.Digest, err)
			}
			if has {
				r.graph.Keep(d.Digest)
			} else {
				r.graph.LeaveOut(d.Digest)
			}
		}
	}
	return nil
}

// resummarize counts a repository's result again (summarize).
func (r *run) resummarize(rr *RepoResult) {
	if rr.Err != nil {
		return
	}
	rr.Artifacts, rr.Bytes, rr.NonDistributable = 0, 0, 0
	for i := range rr.Tags {
		t := &rr.Tags[i]
		t.Artifacts, t.Bytes, t.Referrers, t.NonDistributable = 0, 0, 0, 0
	}
	r.summarize(rr)
}

// Checker is a source that tells, without reading it, whether it holds
// content at its size (source.Layout): an error when it does not.
type Checker interface {
	Check(ctx context.Context, desc ocispec.Descriptor) error
}

// Finisher is a source that checks, once everything is transferred, that
// the rest of its input is sound too (source.Layout on a stream): an
// error keeps the tags from being set.
type Finisher interface {
	Finish(ctx context.Context) error
}

// sourceName returns how src names a plan's source repository. A plan
// names sources in full, registry/path (a backup's names, or a copy's
// sources); a registry reads its repositories by path.
func sourceName(src source.Source) func(string) string {
	h, ok := src.(interface{ Host() string })
	if !ok {
		return func(s string) string { return s }
	}
	prefix := strings.TrimSuffix(h.Host(), "/") + "/"
	return func(s string) string { return strings.TrimPrefix(s, prefix) }
}
