package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/regvault/regvault/inspect"
)

const verifyExamples = `  # Check that a backup can be restored: every blob read once, every digest and size checked
  regvault verify --input base-images.tar

  # Any form restore reads: a directory, a gzip or zstd tar (read as a stream, never extracted)
  regvault verify --input ./backup-dir
  regvault verify --input apps.tar.zst

  # From standard input, e.g. straight from where the backup is kept
  ssh vault 'cat apps.tar.gz' | regvault verify --input -

  # Machine-readable report; the exit code says whether the backup can be restored
  regvault verify --input apps.tar --format json`

type verifyCmd struct {
	c           *cli
	inputs      []string
	input       string
	format      string
	concurrency int
	noTTY       bool
}

func (c *cli) verifyCommand() *cobra.Command {
	v := &verifyCmd{c: c}
	cmd := &cobra.Command{
		Use:   "verify --input <path> [--input <path> ...]",
		Short: "Check that a backup is complete and intact",
		Long: `Check that a backup can be restored: read every blob once, check its
digest and size, and check that every manifest's config, layers, index
children and subject are in the backup and intact. The report lists, per
repository, each tag and referrer that can be restored, and what is missing
or corrupt, naming each blob's digest and the tags it keeps from being
restored.

verify and restore give one verdict: what restore refuses, verify reports
as an error (a member twice, such as two index.json; an unexpected member;
an index.json that names no tag, as crane pull --format=oci writes it, with
what to do about it). A non-distributable (foreign) layer the backup does not
hold is expected, not missing: the report lists it. The manifest.json and
repositories of a docker save archive are ignored, with a note on stderr.

The input is a directory, a tar, a gzip- or zstd-compressed tar (read as a
stream, never extracted to disk), or - for such a tar on standard input. In a
directory, oci-layout, index.json and every blob must be regular files: any
other (a named pipe, a device) is reported and never opened.
verify reads it at disk speed and prints the rate it reached.

A manifest larger than 4 MiB, the limit backup and restore share, is
reported as invalid.

Several backups (--input repeated, or a glob pattern such as
'part-*-of-4.tar.zst', quoted) are verified as the one restore
--input ... --input ... reads: each by itself (a part of a sharded backup
holds everything its tags need), one after the other, and then together:
a tag that two of them give different manifests is an error (restore
refuses it). The verdict is the whole: every backup restorable and no such
conflict. With --format json, several backups give {"backups": [one
report each], "conflicts": [...], "restorable", "exitCode"}.

Exit codes: 0 the whole backup can be restored; 1 it cannot (something is
missing, corrupt or unreadable), or it is not a backup; 2 usage error.`,
		Example: verifyExamples,
		Args:    exactArgs(0, "no arguments (give the backup with --input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return v.run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringArrayVarP(&v.inputs, "input", "i", nil, "the backup: a directory, a .tar, .tar.gz/.tgz or .tar.zst/.tzst file (found by its content), or - for a tar on standard input; repeat it, or give a glob pattern, for several backups restored as one")
	fs.StringVar(&v.format, "format", "text", "output format: text or json")
	fs.IntVar(&v.concurrency, "concurrency", runtime.NumCPU(), "number of blobs hashed at once")
	fs.BoolVar(&v.noTTY, "no-tty", false, "print plain lines, no progress bar, even on a terminal")
	return cmd
}

func (v *verifyCmd) run(ctx context.Context) error {
	c := v.c
	inputs, err := expandInputs(v.inputs)
	if err != nil {
		return err
	}
	if len(inputs) > 1 {
		return v.runSeveral(ctx, inputs)
	}
	if len(inputs) == 1 {
		v.input = inputs[0]
	}
	switch {
	case v.input == "":
		return usageError("--input is required: the backup to verify (a directory, a tar, a compressed tar, or - for standard input)")
	case v.format != "text" && v.format != "json":
		return usageError("--format %q: use text or json", v.format)
	case v.concurrency < 1:
		return usageError("--concurrency must be at least 1")
	case v.input == "-" && isTerminal(c.stdin):
		return usageError("--input -: standard input is a terminal; pipe the backup in, e.g. 'cat backup.tar.zst | regvault verify --input -'")
	}
	prog := &inspect.Progress{}
	stop := func() {}
	if v.format == "text" && !v.noTTY && isTerminal(c.stderr) {
		stop = showVerifyProgress(c.stderr, prog)
	}
	rep, err := inspect.Verify(ctx, v.input, inspect.VerifyOptions{Stdin: c.stdin, Workers: v.concurrency, Progress: prog})
	stop()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("interrupted: %s was not verified", rep.Path)}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(c.stderr, "Note: %s: %s\n", rep.Path, n)
	}
	code := exitOK
	if !rep.Restorable {
		code = exitFailure
	}
	if v.format == "json" {
		out, err := marshalJSON(struct {
			*inspect.Report
			MBps     float64 `json:"mbPerSecond"`
			ExitCode int     `json:"exitCode"`
		}{rep, rep.MBps(), code}, true)
		if err != nil {
			return err
		}
		if _, err := c.stdout.Write(out); err != nil {
			return err
		}
	} else {
		printVerify(c.stdout, rep)
	}
	if code == exitOK {
		return nil
	}
	return &exitError{code: code, err: fmt.Errorf("the backup %s cannot be restored in full: %s", rep.Path, verifyVerdict(rep))}
}

// verifyVerdict says in one line what is wrong.
func verifyVerdict(rep *inspect.Report) string {
	var parts []string
	if n := len(rep.Errors); n > 0 {
		parts = append(parts, plural(n, "error", "errors")+" in the archive")
	}
	if n := len(rep.Problems); n > 0 {
		parts = append(parts, plural(n, "blob", "blobs")+" missing or damaged")
	}
	s := strings.Join(parts, ", ")
	okT, allT := rep.Tags()
	okR, allR := rep.Referrers()
	bad := 0
	for _, r := range rep.Repos {
		if !r.Complete {
			bad++
		}
	}
	if bad > 0 {
		s += fmt.Sprintf("; affects %d of %d repositories (%d of %d tags, %d of %d referrers)", bad, len(rep.Repos), allT-okT, allT, allR-okR, allR)
	}
	return s
}

// rate formats bytes per duration as humanBytes per second.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return humanBytes(int64(float64(n)/d.Seconds())) + "/s"
}

func printVerify(w io.Writer, rep *inspect.Report) {
	fmt.Fprintf(w, "Verified %s (%s)\n", rep.Path, rep.Kind)
	switch {
	case rep.Kind == "directory":
		fmt.Fprintf(w, "Read %s (%s) in %s: %s\n", plural(rep.Blobs, "blob", "blobs"),
			humanBytes(rep.ContentBytes), humanDuration(rep.Duration), rate(rep.ContentBytes, rep.Duration))
	case strings.Contains(rep.Kind, ".gz") || strings.Contains(rep.Kind, ".zst"):
		fmt.Fprintf(w, "Read %s in %s: %s (%s, %s uncompressed: %s)\n",
			humanBytes(rep.ArchiveBytes), humanDuration(rep.Duration), rate(rep.ArchiveBytes, rep.Duration),
			plural(rep.Blobs, "blob", "blobs"), humanBytes(rep.ContentBytes), rate(rep.ContentBytes, rep.Duration))
	default:
		fmt.Fprintf(w, "Read %s in %s: %s (%s, %s)\n",
			humanBytes(rep.ArchiveBytes), humanDuration(rep.Duration), rate(rep.ArchiveBytes, rep.Duration),
			plural(rep.Blobs, "blob", "blobs"), humanBytes(rep.ContentBytes))
	}
	for _, r := range rep.Repos {
		fmt.Fprintln(w)
		name := r.Name
		if name == "" {
			name = "(the repository of a tag-only backup: index.json does not name it"
			if r.Recorded != "" {
				name += "; its referrers record " + r.Recorded
			}
			name += ")"
		}
		okT, okR := 0, 0
		for _, t := range r.Tags {
			if t.OK {
				okT++
			}
		}
		for _, t := range r.Referrers {
			if t.OK {
				okR++
			}
		}
		if r.Complete {
			fmt.Fprintf(w, "✓ %s: complete, %s, %s\n", name, plural(len(r.Tags), "tag", "tags"), plural(len(r.Referrers), "referrer", "referrers"))
		} else {
			fmt.Fprintf(w, "✗ %s: %d of %d tags and %d of %d referrers can be restored\n", name, okT, len(r.Tags), okR, len(r.Referrers))
		}
		for _, t := range r.Tags {
			label := t.Tag
			if label == "" {
				label = "@" + t.Digest.String()
			}
			absent := ""
			if t.NonDistributable > 0 {
				absent = fmt.Sprintf("; %s absent, as expected", plural(t.NonDistributable, "non-distributable layer", "non-distributable layers"))
			}
			if t.OK {
				fmt.Fprintf(w, "  ✓ %s (%s, %s, %s%s)\n", label, shortDigest(t.Digest), plural(t.Blobs, "blob", "blobs"), humanBytes(t.Bytes), absent)
				continue
			}
			fmt.Fprintf(w, "  ✗ %s (%s): %s\n", label, shortDigest(t.Digest), problemList(t.Problems))
		}
		for _, t := range r.Referrers {
			if !t.OK {
				fmt.Fprintf(w, "  ✗ referrer %s (%s): %s\n", t.Digest, t.ArtifactType, problemList(t.Problems))
			}
		}
	}
	if len(rep.Orphans) > 0 {
		fmt.Fprintf(w, "\nReferrers restore does not push (their subject is reached by no tag):\n")
		for _, t := range rep.Orphans {
			fmt.Fprintf(w, "  - %s (%s) of %s\n", t.Digest, t.ArtifactType, t.Subject)
		}
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "\nErrors in the archive:\n")
		for _, e := range rep.Errors {
			fmt.Fprintf(w, "  ✗ %s\n", e)
		}
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(w, "\nMissing or damaged (%d):\n", len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  ✗ %s %s: %s, %s\n", p.Role, p.Digest, p.Kind, p.Detail)
			if len(p.Affects) > 0 {
				fmt.Fprintf(w, "    needed by: %s\n", neededBy(p))
			}
		}
	}
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings:\n")
		for _, s := range rep.Warnings {
			fmt.Fprintf(w, "  ! %s\n", s)
		}
	}
	if n := len(rep.NonDistributable); n > 0 {
		fmt.Fprintf(w, "\n%s not in the backup, as expected: registries usually do not hold such (foreign) layers, clients fetch them from their URLs; restore pushes the manifests that list them without them.\n",
			plural(n, "non-distributable layer is", "non-distributable layers are"))
		for _, a := range rep.NonDistributable {
			fmt.Fprintf(w, "  - %s (%s)", a.Digest, a.MediaType)
			if len(a.URLs) > 0 {
				fmt.Fprintf(w, " from %s", strings.Join(a.URLs, ", "))
			}
			fmt.Fprintln(w)
		}
	}
	if rep.Unreferenced > 0 {
		fmt.Fprintf(w, "\n%s (%s) in the backup are needed by no tag or referrer.\n",
			plural(rep.Unreferenced, "blob", "blobs"), humanBytes(rep.UnreferencedBytes))
	}
	if rep.Restorable {
		okT, _ := rep.Tags()
		okR, _ := rep.Referrers()
		absent := ""
		if n := len(rep.NonDistributable); n > 0 {
			absent = fmt.Sprintf(" (%s absent, as expected)", plural(n, "non-distributable layer", "non-distributable layers"))
		}
		fmt.Fprintf(w, "\nThe backup can be restored: %s, %s, %s; every blob is present and intact%s.\n",
			plural(len(rep.Repos), "repository", "repositories"), plural(okT, "tag", "tags"), plural(okR, "referrer", "referrers"), absent)
	}
}

// neededBy lists the tags a problem affects, up to a few, and counts the
// referrers (--format json lists them all).
func neededBy(p *inspect.Problem) string {
	const max = 10
	var parts []string
	if n := len(p.Tags); n > max {
		parts = append(parts, strings.Join(p.Tags[:max], ", ")+fmt.Sprintf(" and %d more tags", n-max))
	} else if n > 0 {
		parts = append(parts, strings.Join(p.Tags, ", "))
	}
	switch n := len(p.Referrers); {
	case n > 0 && n <= 2 && len(p.Tags) <= max:
		parts = append(parts, strings.Join(p.Referrers, ", "))
	case n > 0:
		parts = append(parts, plural(n, "referrer", "referrers"))
	}
	return strings.Join(parts, ", ")
}

// problemList joins a tag's problems, the first few of them.
func problemList(ps []string) string {
	const max = 3
	if len(ps) <= max {
		return strings.Join(ps, "; ")
	}
	return strings.Join(ps[:max], "; ") + fmt.Sprintf("; and %d more (see below)", len(ps)-max)
}

// showVerifyProgress draws a progress bar of prog on w until the returned
// function is called.
func showVerifyProgress(w io.Writer, prog *inspect.Progress) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var bar *progressbar.ProgressBar
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				if bar != nil {
					_ = bar.Clear()
				}
				return
			case <-tick.C:
			}
			total := prog.Total.Load()
			if total <= 0 {
				total = -1 // unknown: a spinner with bytes and rate
			}
			if bar == nil {
				bar = progressbar.NewOptions64(total,
					progressbar.OptionSetWriter(w),
					progressbar.OptionSetDescription("Verifying"),
					progressbar.OptionShowBytes(true),
					progressbar.OptionShowTotalBytes(true),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionSetWidth(30),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionUseANSICodes(true),
					progressbar.OptionSetRenderBlankState(true),
				)
			} else if total > 0 && bar.GetMax64() != total {
				bar.ChangeMax64(total)
			}
			_ = bar.Set64(prog.Read.Load())
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// runSeveral verifies several backups, each by itself, then whether
// they agree on their tags, as restore of them all needs.
func (v *verifyCmd) runSeveral(ctx context.Context, inputs []string) error {
	c := v.c
	switch {
	case v.format != "text" && v.format != "json":
		return usageError("--format %q: use text or json", v.format)
	case v.concurrency < 1:
		return usageError("--concurrency must be at least 1")
	case slices.Contains(inputs, "-"):
		return usageError("--input -: standard input is one of several backups; verify it alone, or give files")
	}
	var reports []*inspect.Report
	restorable := true
	type seen struct {
		digest digest.Digest
		path   string
	}
	tags := map[string]seen{}
	var conflicts []string
	for i, in := range inputs {
		prog := &inspect.Progress{}
		stop := func() {}
		if v.format == "text" && !v.noTTY && isTerminal(c.stderr) {
			stop = showVerifyProgress(c.stderr, prog)
		}
		rep, err := inspect.Verify(ctx, in, inspect.VerifyOptions{Stdin: c.stdin, Workers: v.concurrency, Progress: prog})
		stop()
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		if ctx.Err() != nil {
			return &exitError{code: exitFailure, err: fmt.Errorf("interrupted: %s was not verified", rep.Path)}
		}
		for _, n := range rep.Notes {
			fmt.Fprintf(c.stderr, "Note: %s: %s\n", rep.Path, n)
		}
		reports = append(reports, rep)
		restorable = restorable && rep.Restorable
		for _, r := range rep.Repos {
			for _, t := range r.Tags {
				if t.Tag == "" {
					continue
				}
				k := r.Name + ":" + t.Tag
				if r.Name == "" {
					k = t.Tag + " (of a tag-only backup)"
				}
				if s, ok := tags[k]; ok && s.digest != t.Digest {
					conflicts = append(conflicts, fmt.Sprintf("%s is %s in %s and %s in %s", k, s.digest, s.path, t.Digest, in))
				} else if !ok {
					tags[k] = seen{t.Digest, in}
				}
			}
		}
		if v.format == "text" {
			if i > 0 {
				fmt.Fprintln(c.stdout)
			}
			fmt.Fprintf(c.stdout, "== %s (%d of %d)\n", in, i+1, len(inputs))
			printVerify(c.stdout, rep)
		}
	}
	restorable = restorable && len(conflicts) == 0
	code := exitOK
	if !restorable {
		code = exitFailure
	}
	if v.format == "json" {
		out, err := marshalJSON(struct {
			Backups    []*inspect.Report `json:"backups"`
			Conflicts  []string          `json:"conflicts"`
			Restorable bool              `json:"restorable"`
			ExitCode   int               `json:"exitCode"`
		}{reports, append([]string{}, conflicts...), restorable, code}, true)
		if err != nil {
			return err
		}
		if _, err := c.stdout.Write(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(c.stdout)
		for _, cf := range conflicts {
			fmt.Fprintf(c.stdout, "✗ the backups do not agree: %s\n", cf)
		}
		if restorable {
			fmt.Fprintf(c.stdout, "All %d backups can be restored together (%d tags).\n", len(inputs), len(tags))
		}
	}
	if code == exitOK {
		return nil
	}
	var bad []string
	for _, rep := range reports {
		if !rep.Restorable {
			bad = append(bad, rep.Path+" ("+verifyVerdict(rep)+")")
		}
	}
	if len(conflicts) > 0 {
		bad = append(bad, fmt.Sprintf("%d tag(s) the backups give different manifests", len(conflicts)))
	}
	return &exitError{code: code, err: fmt.Errorf("the %d backups cannot be restored in full: %s", len(inputs), strings.Join(bad, "; "))}
}
