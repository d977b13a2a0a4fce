// Command regvault-demo runs regvault's main job end to end on this
// machine alone: two registries on 127.0.0.1 (in-process, with the
// Referrers API), sample repositories that share layers and carry SBOM and
// signature referrers, a multi-repository backup into one archive, an
// inspection of it, a rules-based restore into the second registry and a
// direct copy, whose result is then listed. Every regvault command is printed before it
// runs, so it can be copied; the backup and the restore are made from Go,
// with the regvault package's Backup and Restore, as a program would.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	rv "github.com/regvault/regvault"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
)

func main() {
	bin := flag.String("regvault", "bin/regvault", "the regvault binary to run")
	keep := flag.String("dir", "", "keep the archive and rules file in this directory (default: a temporary one)")
	flag.Parse()
	if err := demo(*bin, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func demo(bin, dir string) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "regvault-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	src, err := registrytest.StartInProcess()
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := registrytest.StartInProcess()
	if err != nil {
		return err
	}
	defer dst.Close()

	step("Seeding the source registry %s with sample repositories", src.Host())
	sample, err := registrytest.SeedSample(ctx, src.Target(), registrytest.SampleOptions{BaseLayerSize: 4 << 20, LayerSize: 512 << 10})
	if err != nil {
		return err
	}
	for _, repo := range sample.Repositories {
		tags := make([]string, 0, len(sample.Tags[repo]))
		for t := range sample.Tags[repo] {
			tags = append(tags, t)
		}
		sort.Strings(tags)
		fmt.Printf("  %s/%s: tags %s, %d referrer(s)\n", src.Host(), repo, strings.Join(tags, ", "), len(sample.Referrers[repo]))
	}
	fmt.Printf("  every image shares the base layer %s (%d bytes)\n", short(sample.BaseLayer.Digest.String()), sample.BaseLayer.Size)

	archive := filepath.Join(dir, "apps.tar")
	var refs []string
	for _, repo := range sample.Repositories {
		refs = append(refs, src.Host()+"/"+repo)
	}
	step("Backing up %d repositories into one archive, from Go: regvault.Backup", len(refs))
	fmt.Printf("  regvault.Backup(ctx, regvault.BackupOptions{Sources: %q, Output: %q, IncludeReferrers: true, Registry: registry.Options{PlainHTTP: true}})\n", refs, archive)
	backup, err := rv.Backup(ctx, rv.BackupOptions{
		Sources:          refs,
		Output:           archive,
		IncludeReferrers: true,
		Registry:         registry.Options{PlainHTTP: true},
	})
	if err != nil {
		return err
	}
	printReport(backup)
	fmt.Printf("  %d unique manifests and blobs, %d bytes written (the shared base layer once)\n", backup.Result.UniqueNodes, backup.OutputSize)

	step("Looking into the archive")
	for _, args := range [][]string{
		{"repo", "ls", "--oci-layout-path", archive},
		{"repo", "tags", "--oci-layout-path", archive, src.Host() + "/" + registrytest.SampleBackend},
		{"discover", "--oci-layout-path", archive, src.Host() + "/" + registrytest.SampleBackend + ":v2"},
		{"verify", "--no-tty", "--input", archive},
	} {
		if err := regvault(bin, args...); err != nil {
			return err
		}
	}

	step("Previewing a restore of everything into %s", dst.Host())
	if err := regvault(bin, "restore", "--plain-http", "--no-tty", "--dry-run", "--input", archive, dst.Host()); err != nil {
		return err
	}

	rules := filepath.Join(dir, "restore-rules.json")
	rulesText := fmt.Sprintf(`{
  // Production gets the apps under new names, v2 promoted to "stable".
  "mappings": [
    {
      "source": "%[1]s/demo/frontend",
      "target": "%[2]s/prod/web",
      "tag-mappings": { "v2": "stable" }
    },
    {
      "source": "%[1]s/demo/backend",
      "target": "%[2]s/prod/api"
    },
    /* the base image, without its referrers */
    {
      "source": "%[1]s/library/base",
      "target": "%[2]s/base/os",
      "tags": ["1.1"],
      "exclude-referrers": true
    }
  ]
}
`, src.Host(), dst.Host())
	if err := os.WriteFile(rules, []byte(rulesText), 0o644); err != nil {
		return err
	}
	step("Restoring into %s with a rules file (%s), from Go: regvault.Restore", dst.Host(), rules)
	fmt.Print(rulesText)
	fmt.Printf("  regvault.Restore(ctx, regvault.RestoreOptions{Input: %q, RulesFile: %q, Registry: registry.Options{PlainHTTP: true}})\n", archive, rules)
	restore, err := rv.Restore(ctx, rv.RestoreOptions{
		Input:     archive,
		RulesFile: rules,
		Registry:  registry.Options{PlainHTTP: true},
	})
	if err != nil {
		return err
	}
	printReport(restore)

	step("Restoring the same again: nothing is pushed twice")
	if err := regvault(bin, "restore", "--plain-http", "--no-tty", "--input", archive, "--rules", rules); err != nil {
		return err
	}

	step("Copying %s/%s into %s directly, without an archive", src.Host(), registrytest.SampleFrontend, dst.Host())
	if err := regvault(bin, "copy", "--from-plain-http", "--to-plain-http", "--no-tty", "--include-referrers",
		src.Host()+"/"+registrytest.SampleFrontend, dst.Host()+"/direct/web"); err != nil {
		return err
	}

	step("What %s holds now", dst.Host())
	reg, err := dst.Target().Registry()
	if err != nil {
		return err
	}
	var repos []string
	if err := reg.Repositories(ctx, "", func(page []string) error { repos = append(repos, page...); return nil }); err != nil {
		return err
	}
	for _, repo := range repos {
		r, err := dst.Repository(repo)
		if err != nil {
			return err
		}
		var tags []string
		if err := r.Tags(ctx, "", func(page []string) error { tags = append(tags, page...); return nil }); err != nil {
			return err
		}
		for _, t := range tags {
			if strings.HasPrefix(t, "sha256-") {
				continue
			}
			d, err := r.Resolve(ctx, t)
			if err != nil {
				return err
			}
			fmt.Printf("  %s/%s:%s  %s\n", dst.Host(), repo, t, short(d.Digest.String()))
		}
	}
	fmt.Println("\nDemo complete.")
	return nil
}

// printReport prints a line per repository of a report: its tags, or why
// it failed.
func printReport(r *rv.Report) {
	for _, rr := range r.Repositories {
		if rr.Err != nil {
			fmt.Printf("  ✗ %s: %v\n", rr.Repository, rr.Err.Err)
			continue
		}
		tags := make([]string, len(rr.Tags))
		for i, t := range rr.Tags {
			tags[i] = fmt.Sprintf("%s (%s, %d referrer(s))", t.Name, short(t.Desc.Digest.String()), t.Referrers)
		}
		fmt.Printf("  ✓ %s: %s\n", rr.Repository, strings.Join(tags, ", "))
	}
}

func step(format string, a ...any) {
	fmt.Printf("\n==> "+format+"\n", a...)
}

func regvault(bin string, args ...string) error {
	fmt.Printf("$ regvault %s\n", strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("regvault %s: %w", args[0], err)
	}
	return nil
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19] + "..."
	}
	return d
}
