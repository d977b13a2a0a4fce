package bench

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// checkBackup tells whether the backup outputs (tar files, layout
// directories, or the baseline's directory of blob files) hold every
// digest the tool should have written: "ok", or what is missing.
func checkBackup(t *Tool, w *Workload, outs []string) string {
	have := map[string]bool{}
	for _, out := range outs {
		st, err := os.Stat(out)
		if err != nil {
			return fmt.Sprintf("no output: %v", err)
		}
		switch {
		case t.Name == ToolBaseline:
			entries, err := os.ReadDir(out)
			if err != nil {
				return err.Error()
			}
			for _, e := range entries {
				have["sha256:"+e.Name()] = true
			}
		case st.IsDir():
			entries, err := os.ReadDir(filepath.Join(out, "blobs", "sha256"))
			if err != nil {
				return err.Error()
			}
			for _, e := range entries {
				have["sha256:"+e.Name()] = true
			}
		default:
			if err := tarBlobs(out, have); err != nil {
				return fmt.Sprintf("%s: %v", filepath.Base(out), err)
			}
		}
	}
	return missing(w.expectedDigests(t.Referrers, t.Manifests), have)
}

// tarBlobs adds the digests of the blobs/<alg>/<hex> members of the tar
// file path to have.
func tarBlobs(path string, have map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(h.Name, "./")
		if rest, ok := strings.CutPrefix(name, "blobs/"); ok {
			if alg, hex, ok := strings.Cut(rest, "/"); ok && hex != "" {
				have[alg+":"+hex] = true
			}
		}
	}
}

// checkRestore tells whether the registry at host (the target itself, not
// its proxy) has every tag of w with the right digest, and the referrers
// when the tool carries them (the baseline: every unique blob).
func checkRestore(ctx context.Context, t *Tool, w *Workload, host string) string {
	c := newClient(host, 4)
	defer c.close()
	var miss []string
	total := 0
	if t.Name == ToolBaseline {
		for _, b := range w.Blobs {
			total++
			ok, err := c.headBlob(ctx, b.Repo, b.Digest)
			if err != nil {
				return err.Error()
			}
			if !ok {
				miss = append(miss, b.Repo+"@"+b.Digest)
			}
		}
	} else {
		for _, r := range w.Repos {
			for _, tg := range r.Tags {
				total++
				d, err := c.headManifest(ctx, r.Name, tg.Name)
				if err != nil {
					return err.Error()
				}
				if d != tg.Digest {
					miss = append(miss, r.Name+":"+tg.Name)
				}
				if !t.Referrers {
					continue
				}
				for _, rf := range tg.Referrers {
					total++
					d, err := c.headManifest(ctx, r.Name, rf.Digest)
					if err != nil {
						return err.Error()
					}
					if d != rf.Digest {
						miss = append(miss, r.Name+"@"+rf.Digest+" (referrer)")
					}
				}
			}
		}
	}
	if len(miss) == 0 {
		return "ok"
	}
	return fmt.Sprintf("missing %d of %d: %s", len(miss), total, firstFew(miss))
}

func missing(want []string, have map[string]bool) string {
	var miss []string
	for _, d := range want {
		if !have[d] {
			miss = append(miss, d)
		}
	}
	if len(miss) == 0 {
		return "ok"
	}
	return fmt.Sprintf("missing %d of %d: %s", len(miss), len(want), firstFew(miss))
}

func firstFew(s []string) string {
	if len(s) > 3 {
		return strings.Join(s[:3], ", ") + ", ..."
	}
	return strings.Join(s, ", ")
}
