package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	api "github.com/regvault/regvault"
	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/planfile"
	"github.com/regvault/regvault/shard"
	"github.com/regvault/regvault/source"
)

const planExamples = `  # Resolve every repository under team/ (through the registry's catalog),
  # with referrers, into plan.json
  regvault plan --include-referrers -o plan.json 'registry.mycompany.com/team/*'

  # Named repositories and tags, as backup's arguments
  regvault plan -o plan.json registry.mycompany.com/app/frontend:v1,v2 registry.mycompany.com/app/backend

  # How 8 shards would divide it
  regvault plan -o plan.json --shards 8 'registry.mycompany.com/*'

  # Then run shard I of N of it (in Kubernetes: --shard auto/N)
  regvault backup --plan plan.json --shard 0/4 -o part-0-of-4.tar.zst
  regvault copy --plan plan.json --shard 0/4 registry-b.mycompany.com`

type planCmd struct {
	c   *cli
	reg registryFlags

	output           string
	includeReferrers bool
	shards           int
}

func (c *cli) planCommand() *cobra.Command {
	pc := &planCmd{c: c, reg: registryFlags{c: c}}
	cmd := &cobra.Command{
		Use:   "plan [flags] --output <plan.json> <registry>/<repo>[:<tag>[,<tag>...]] | <registry>/<prefix>/* ...",
		Short: "Resolve a selection once into a plan file that sharded backups and copies run",
		Long: `Resolve a selection of one registry once — every repository, tag, digest,
manifest and blob with its size, and with --include-referrers the
referrers — and write it as a plan file (plan.json, docs/plan-format.md):
sorted and deterministic, the same registry state gives the same bytes.
Nothing is copied.

The arguments are backup's (<registry>/<repository>[:<tag>[,<tag>...]]; no
tags is every tag), and <registry>/<prefix>/* names every repository the
registry's catalog (/v2/_catalog, paginated) lists under prefix
(<registry>/* every repository): quote it, so that the shell leaves the *
alone. A prefix under which the catalog lists nothing is an error; a
repository it lists with no tag (its tags deleted) is left out, with a
note.

The plan is written under a temporary name next to it and renamed when
complete (- writes it to standard output). If a repository cannot be read,
no plan is written (exit code 1): a plan that silently lacks a repository
would make every shard lack it.

backup --plan and copy --plan run it, whole or one shard of it
(--shard I/N, or auto/N in a Kubernetes Indexed Job): every process
computes the same assignment of repositories (large ones split by tags)
to shards from the plan alone. --shards N prints that assignment.`,
		Example: planExamples,
		RunE: func(cmd *cobra.Command, args []string) error {
			return pc.run(cmd.Context(), args)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVarP(&pc.output, "output", "o", "", "where to write the plan (plan.json), or - for standard output")
	fs.BoolVar(&pc.includeReferrers, "include-referrers", false, fmt.Sprintf("also resolve referrers (signatures, SBOMs, ...), recursively (up to %d deep): backup --plan and copy --plan then move them", source.MaxReferrerDepth))
	fs.IntVar(&pc.shards, "shards", 0, fmt.Sprintf("also print how N shards (2 to %d) divide the plan: tags and unique bytes per shard", shard.MaxShards))
	pc.reg.addFlags(fs, true)
	return cmd
}

func (pc *planCmd) run(ctx context.Context, args []string) error {
	c := pc.c
	if pc.output == "" {
		return usageError("--output is required: the plan file to write (plan.json), or - for standard output")
	}
	if len(args) == 0 {
		return usageError("no repository given: regvault plan --output plan.json <registry>/<repo>[:<tags>] | <registry>/<prefix>/* ...")
	}
	if pc.shards != 0 && (pc.shards < 2 || pc.shards > shard.MaxShards) {
		return usageError("--shards %d: give a number of shards from 2 to %d", pc.shards, shard.MaxShards)
	}
	// The arguments that are not patterns are checked before anything
	// is read (a password from standard input) or asked of a registry.
	var named []string
	for _, a := range args {
		if !api.IsPattern(a) {
			if strings.Contains(a, "*") {
				return usageError("%q: only a last path element * is a pattern (<registry>/<prefix>/* for every repository under prefix, every tag)", a)
			}
			named = append(named, a)
		}
	}
	if len(named) > 0 {
		if _, err := plan.NewBackup(named, plan.BackupOptions{DryRun: true, Concurrency: max(pc.reg.concurrency, 1)}); err != nil {
			return err
		}
	}
	if pc.output != "-" {
		if fi, err := os.Stat(pc.output); err == nil && fi.IsDir() {
			return usageError("--output %s is a directory: name the plan file, e.g. %s", pc.output, filepath.Join(pc.output, "plan.json"))
		} else if err == nil && !fi.Mode().IsRegular() {
			// The plan is renamed into place: that would replace a device
			// or a named pipe with a file.
			return usageError("--output %s is not a regular file (a device or a named pipe): give a file name, or - for standard output", pc.output)
		}
	}
	regOpts, err := pc.reg.options(c.stdin)
	if err != nil {
		return err
	}
	out := c.stdout
	if pc.output == "-" {
		out = c.stderr
	}
	sel, err := api.Plan(ctx, api.PlanOptions{
		Sources:          args,
		IncludeReferrers: pc.includeReferrers,
		Concurrency:      pc.reg.concurrency,
		Registry:         regOpts,
	})
	if sel == nil {
		return err
	}
	pc.reg.warnInsecure(sel.Registry)
	for _, r := range sel.Empty {
		fmt.Fprintf(c.stderr, "Note: %s has no tags (the catalog lists it, its tags were deleted): left out of the plan\n", r)
	}
	if err != nil {
		var failed int
		for _, rr := range sel.Repositories {
			if rr.Err != nil {
				failed++
				fmt.Fprintf(out, "  ✗ %s: %s\n", rr.Repository, c.redact(rr.Err.Err.Error()))
			}
		}
		if failed == 0 {
			return err
		}
		return &exitError{code: exitFailure, err: fmt.Errorf("no plan written: %d of %s could not be read (see above); a plan without them would leave them out of every shard",
			failed, plural(len(sel.Repositories), "repository", "repositories"))}
	}
	pf, err := sel.File()
	if err != nil {
		return err
	}
	if pc.output == "-" {
		if err := pf.Encode(c.stdout); err != nil {
			return err
		}
	} else if err := writePlanFile(pc.output, pf); err != nil {
		return err
	}
	where := pc.output
	if where == "-" {
		where = "standard output"
	}
	fmt.Fprintf(out, "Plan of %s written to %s: %s, %s, %s unique (%d manifests and blobs)%s\n",
		pf.Registry, where, plural(len(pf.Repositories), "repository", "repositories"),
		plural(pf.TagCount(), "tag", "tags"), humanBytes(pf.UniqueBytes()), len(pf.Content),
		map[bool]string{true: ", with referrers", false: ""}[pf.IncludeReferrers])
	if pc.shards > 0 {
		return printAssignment(out, pf, pc.shards)
	}
	return nil
}

// printAssignment prints how n shards divide p.
func printAssignment(w io.Writer, p *planfile.Plan, n int) error {
	a, err := shard.Assign(p, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d shards (--shard I/%d):\n", n, n)
	for _, s := range a.Shards {
		split := 0
		for _, part := range s.Parts {
			if !part.Whole {
				split++
			}
		}
		line := fmt.Sprintf("  %s: %s, %s, %s", s.Name(), plural(len(s.Parts), "repository", "repositories"),
			plural(s.TagCount, "tag", "tags"), humanBytes(s.Bytes))
		if split > 0 {
			line += fmt.Sprintf(" (%d split by tags)", split)
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

// writePlanFile writes the plan under a temporary name next to path and
// renames it into place: a reader never sees half a plan.
func writePlanFile(path string, p *planfile.Plan) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".regvault-tmp-*")
	if err != nil {
		return fmt.Errorf("writing the plan: %w", err)
	}
	tmp := f.Name()
	err = p.Encode(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing the plan to %s: %w", path, err)
	}
	return nil
}

// readPlanFile reads the plan of --plan: a file that cannot be read or is
// not a valid plan is a usage error (exit code 2, nothing done).
func readPlanFile(path string) (*planfile.Plan, error) {
	x, err := readPlanIndex(path)
	if err != nil {
		return nil, err
	}
	return x.Plan(), nil
}

// readPlanIndex is readPlanFile with the index its validation built.
func readPlanIndex(path string) (*planfile.Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError("--plan: %v", err)
	}
	defer f.Close()
	x, err := planfile.ReadIndex(f)
	if err != nil {
		return nil, usageError("--plan %s: %v", path, err)
	}
	return x, nil
}

// selectShard is the plan of --plan (a file) and --shard (a spec; ""
// runs the whole plan): the whole plan, the shard (nil for none), the
// shard's plan and a line that names it. The plan is indexed once, by
// its validation, for the assignment and the shard's plan too: every pod
// of a sharded run does this at start.
func selectShard(path, spec string) (*planfile.Plan, *shard.Shard, *planfile.Plan, string, error) {
	x, err := readPlanIndex(path)
	if err != nil {
		return nil, nil, nil, "", err
	}
	p := x.Plan()
	if spec == "" {
		return p, nil, p, fmt.Sprintf("plan %s: %s, %s", path, plural(len(p.Repositories), "repository", "repositories"),
			plural(p.TagCount(), "tag", "tags")), nil
	}
	s, err := shard.SelectIndex(x, spec, os.Getenv)
	if err != nil {
		return nil, nil, nil, "", usageError("--shard: %v", err)
	}
	sp := s.PlanOf(x)
	if len(sp.Repositories) == 0 {
		return nil, nil, nil, "", errEmptyShard{name: s.Name(), path: path}
	}
	return p, s, sp, fmt.Sprintf("shard %s of plan %s: %s, %s, %s unique", s.Name(), path, plural(len(sp.Repositories), "repository", "repositories"),
		plural(s.TagCount, "tag", "tags"), humanBytes(s.Bytes)), nil
}

// errEmptyShard: a shard with nothing to do (more shards than the plan
// has tags), which is done at once.
type errEmptyShard struct{ name, path string }

func (e errEmptyShard) Error() string {
	return fmt.Sprintf("shard %s of plan %s has no tag to move (the plan has fewer tags than shards): nothing to do", e.name, e.path)
}

func isEmptyShard(err error) bool {
	var e errEmptyShard
	return errors.As(err, &e)
}

// stderrLine writes one line to standard error, clear of a progress bar.
func (c *cli) stderrLine(s string) {
	_, _ = stderrLines{c}.Write([]byte(c.redact(s) + "\n"))
}
