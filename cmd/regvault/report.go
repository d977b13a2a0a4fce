package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	api "github.com/regvault/regvault"
	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
)

// reporter turns pipeline events into lines on the screen and, on a
// terminal, a progress bar. It observes; it never drives the pipeline.
type reporter struct {
	c    *cli
	out  io.Writer // the report: stdout, or stderr when the archive is on stdout
	plan *plan.Backup
	json bool
	tty  bool
	// planMoved are the tags of --plan that moved since it was made.
	planMoved []api.MovedTag

	mu      sync.Mutex
	started bool // "Backing up N repositories..." printed
	n       int  // repositories reported so far
	bar     progressBar
}

func (r *reporter) full(repo string) string { return graph.FullRepo(r.plan.Registry, repo) }

// header prints the plan: "Found N repository(ies) with M tag(s):".
func (r *reporter) header() {
	p := r.plan
	all := 0
	for _, repo := range p.Repos {
		if repo.Tags == nil {
			all++
		}
	}
	switch {
	case all == 0:
		fmt.Fprintf(r.out, "Found %d repository(ies) with %d tag(s):\n", len(p.Repos), p.TagCount())
	case all == len(p.Repos):
		fmt.Fprintf(r.out, "Found %d repository(ies), all tags:\n", len(p.Repos))
	default:
		fmt.Fprintf(r.out, "Found %d repository(ies) with %d tag(s) and all tags of %d:\n", len(p.Repos), p.TagCount(), all)
	}
	for _, repo := range p.Repos {
		tags := "all tags"
		if repo.Tags != nil {
			tags = strings.Join(repo.Tags, ", ")
		}
		fmt.Fprintf(r.out, "  - %s: %s\n", r.full(repo.Name), tags)
	}
	fmt.Fprintln(r.out)
	if !p.DryRun {
		fmt.Fprintf(r.out, "Backing up %s...\n", plural(len(p.Repos), "repository", "repositories"))
	}
}

// observe is the pipeline's Observer.
func (r *reporter) observe(ev pipeline.Event) {
	if r.json || r.plan.DryRun {
		return
	}
	switch ev.Kind {
	case pipeline.RepoDone:
		var b strings.Builder
		for _, t := range ev.Tags {
			fmt.Fprintf(&b, "  ✓ %s (%d/%d artifacts, %s", t.Name, t.Artifacts, t.Artifacts, humanBytes(t.Bytes))
			if r.plan.IncludeReferrers {
				fmt.Fprintf(&b, ", %d referrer(s)", t.Referrers)
			}
			if t.NonDistributable > 0 {
				fmt.Fprintf(&b, ", %d non-distributable layer(s) left out", t.NonDistributable)
			}
			b.WriteString(")\n")
		}
		fmt.Fprintf(&b, "  Repository complete: %d artifacts, %s\n", ev.Count, humanBytes(ev.Bytes))
		r.repoLines(ev.Repo, b.String())
	case pipeline.RepoFailed:
		r.repoLines(ev.Repo, fmt.Sprintf("  ✗ failed: %s\n", r.c.redact(reason(ev.Err))))
	}
}

// repoLines prints one repository's block "[i/N] host/repo" and lines.
func (r *reporter) repoLines(repo, lines string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.bar.clear()
	fmt.Fprintf(r.out, "\n[%d/%d] %s\n%s", r.n, len(r.plan.Repos), r.full(repo), lines)
}

// start shows the progress bar on a terminal, polling pr.
func (r *reporter) start(pr *pipeline.Progress) {
	if !r.tty || r.json || r.plan.DryRun {
		return
	}
	r.bar = progressBar{w: r.c.stderr, desc: "Backing up", mu: &r.mu}
	r.bar.start(pr)
	r.c.bar.Store(&r.bar)
}

// stop removes the progress bar.
func (r *reporter) stop() {
	r.c.bar.Store(nil)
	r.bar.stop()
}

// summary is what a run did, for both output formats.
type summary struct {
	plan        *plan.Backup
	res         *pipeline.Result
	graph       *graph.Graph
	runErr      error
	interrupted bool
	ok          []pipeline.RepoResult
	failed      []pipeline.RepoResult
	culprit     map[string]bool // the failed repositories named as failing by themselves
	moved       []archive.Moved // tags of the directory moved to another digest
	resumed     bool            // a killed run's new directory was resumed
	size        int64           // what was written
}

func summarize(rep *api.Report) *summary {
	s := &summary{plan: rep.BackupPlan, res: rep.Result, graph: rep.Graph, runErr: rep.Err,
		interrupted: rep.Interrupted, moved: rep.MovedTags, resumed: rep.Resumed, size: rep.OutputSize,
		culprit: map[string]bool{}}
	for _, rr := range s.res.Repos {
		if rr.Err != nil {
			s.failed = append(s.failed, rr)
		} else {
			s.ok = append(s.ok, rr)
		}
	}
	for _, rr := range rep.Failed() {
		s.culprit[rr.Repository.Path] = true
	}
	return s
}

// written reports whether the backup (or, for a dry run, the plan) was
// completed for the repositories that did not fail.
func (s *summary) written() bool {
	return s.runErr == nil && !s.interrupted
}

func (s *summary) exitCode() int {
	switch {
	case s.interrupted, s.runErr != nil:
		return exitFailure
	case len(s.failed) > 0 && len(s.ok) > 0:
		return exitPartial
	case len(s.failed) > 0:
		return exitFailure
	}
	return exitOK
}

// failedNames lists the repositories that failed, for a sentence.
func (s *summary) failedNames() string {
	names := make([]string, len(s.failed))
	for i, rr := range s.failed {
		names[i] = rr.Repo
	}
	return strings.Join(names, ", ")
}

// culprits are the repositories to name in "Failed to backup": those the
// report says failed by themselves (under --fail-fast, the one that
// stopped the others).
func (s *summary) culprits() []pipeline.RepoResult {
	var out []pipeline.RepoResult
	for _, rr := range s.failed {
		if s.culprit[rr.Repo] {
			out = append(out, rr)
		}
	}
	return out
}

func (r *reporter) printSummary(s *summary) {
	if s.interrupted {
		return // run() says so
	}
	p := s.plan
	if p.DryRun {
		r.printDryRun(s)
	} else if s.written() {
		fmt.Fprintln(r.out)
		line := fmt.Sprintf("Exported to %s (%s)", outputName(p), humanBytes(s.size))
		if s.res.Skipped > 0 {
			line += fmt.Sprintf("; %d blob(s) were already there", s.res.Skipped)
		}
		if s.resumed {
			line += " (resumed from a killed run's temporary directory)"
		}
		fmt.Fprintln(r.out, line)
		if len(s.moved) > 0 {
			fmt.Fprintf(r.out, "Updated %s that moved to another digest since the last backup into %s:\n",
				plural(len(s.moved), "tag", "tags"), outputName(p))
			for _, m := range s.moved {
				fmt.Fprintf(r.out, "  %s: %s (was %s)\n", m.Name, m.To, m.From)
			}
		}
		if len(s.failed) == 0 {
			fmt.Fprintf(r.out, "Successfully backed up %d tag(s) from %d repository(ies) in %s.\n",
				s.res.TagCount(), len(s.ok), humanDuration(s.res.Duration))
		} else {
			fmt.Fprintf(r.out, "Backed up %d tag(s) from %d repository(ies) in %s.\n",
				s.res.TagCount(), len(s.ok), humanDuration(s.res.Duration))
		}
		if line := leftOutLine(s.graph, "the registry"); line != "" {
			fmt.Fprintln(r.out, line)
		}
	}
	if len(s.failed) > 0 {
		r.printFailures(s)
	}
}

// printFailures prints to stderr each failed repository with its reason,
// then the outcome and a line per repository.
func (r *reporter) printFailures(s *summary) {
	w := r.c.stderr
	p := s.plan
	var errs []error
	fmt.Fprintln(w)
	for _, rr := range s.culprits() {
		fmt.Fprintf(w, "Error: Failed to backup %s\n", r.full(rr.Repo))
		fmt.Fprintf(w, "  Reason: %s\n", r.c.redact(rr.Err.Error()))
		errs = append(errs, rr.Err)
	}
	fmt.Fprintln(w)
	total := len(s.res.Repos)
	switch {
	case p.DryRun:
		fmt.Fprintf(w, "Dry run: %d of %d repositories could be backed up\n", len(s.ok), total)
	case p.FailFast && s.runErr != nil:
		fmt.Fprintf(w, "No backup was written: --fail-fast stops at the first failure\n")
	case errors.Is(s.runErr, pipeline.ErrCannotDrop):
		fmt.Fprintf(w, "No backup was written: a stream (.tar.gz, .tar.zst or -) writes index.json, which names every repository, before the first blob, so it cannot leave out a repository that fails during the transfer; back up to a directory or a .tar to keep the others\n")
	case len(s.ok) == 0 || s.runErr != nil:
		fmt.Fprintf(w, "No backup was written: %d of %d repositories backed up successfully\n", 0, total)
	default:
		fmt.Fprintf(w, "Partial backup created: %d of %d repositories backed up successfully\n", len(s.ok), total)
	}
	culprit := map[string]bool{}
	for _, rr := range s.culprits() {
		culprit[rr.Repo] = true
	}
	for _, rr := range s.res.Repos {
		switch {
		case rr.Err == nil:
			if s.written() {
				fmt.Fprintf(w, "  ✓ %s (%s)\n", r.full(rr.Repo), plural(len(rr.Tags), "tag", "tags"))
			} else {
				fmt.Fprintf(w, "  - %s (not written)\n", r.full(rr.Repo))
			}
		case culprit[rr.Repo]:
			fmt.Fprintf(w, "  ✗ %s (%s)\n", r.full(rr.Repo), r.c.redact(reason(rr.Err)))
		default:
			fmt.Fprintf(w, "  - %s (stopped)\n", r.full(rr.Repo))
		}
	}
	if recs := recommendations(p.Registry, errs); len(recs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Recommendations:")
		for i, rec := range recs {
			fmt.Fprintf(w, "  %d. %s\n", i+1, rec)
		}
	}
}

// printDryRun lists what a backup would do.
func (r *reporter) printDryRun(s *summary) {
	w := r.out
	p := s.plan
	if p.Output != "" {
		fmt.Fprintf(w, "[DRY RUN] The following would be backed up to %s:\n\n", outputName(p))
	} else {
		fmt.Fprintf(w, "[DRY RUN] The following would be backed up:\n\n")
	}
	fmt.Fprintf(w, "Registry: %s\n", p.Registry)
	for i, rr := range s.res.Repos {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "  Repository: %s\n", rr.Repo)
		if rr.Err != nil {
			fmt.Fprintf(w, "    ✗ %s\n", r.c.redact(reason(rr.Err)))
			continue
		}
		for _, t := range rr.Tags {
			left := ""
			if t.NonDistributable > 0 {
				left = fmt.Sprintf(", %d non-distributable layer(s) left out", t.NonDistributable)
			}
			fmt.Fprintf(w, "    ✓ %s (%s) + %d referrer(s), %d artifacts, %s%s\n",
				t.Name, shortDigest(t.Desc.Digest), t.Referrers, t.Artifacts, humanBytes(t.Bytes), left)
		}
	}
	fmt.Fprintln(w)
	var nodes int
	var bytes int64
	if s.graph != nil {
		nodes, bytes = s.graph.Len(), s.graph.Size()
	}
	fmt.Fprintf(w, "[DRY RUN] Would back up %d tag(s) from %d repository(ies)\n", s.res.TagCount(), len(s.ok))
	fmt.Fprintf(w, "[DRY RUN] Total artifacts: %d unique manifests and blobs (including referrers)\n", nodes)
	fmt.Fprintf(w, "[DRY RUN] Estimated size: %s (each blob once)\n", humanBytes(bytes))
	if line := leftOutLine(s.graph, "the registry"); line != "" {
		fmt.Fprintln(w, "[DRY RUN] "+line)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "No changes were made. Remove --dry-run to perform the backup.")
}

// JSON output: one object.

type jsonTag struct {
	Tag       string `json:"tag"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Referrers int    `json:"referrers"`
	Artifacts int    `json:"artifacts"`
	Bytes     int64  `json:"bytes"`
	// NonDistributable counts the non-distributable layers left out.
	NonDistributable int `json:"nonDistributableLeftOut"`
}

type jsonRepo struct {
	Name      string    `json:"name"`
	Reference string    `json:"reference"`
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"`
	Tags      []jsonTag `json:"tags"`
	Artifacts int       `json:"artifacts"`
	Bytes     int64     `json:"bytes"`
	// NonDistributable counts the non-distributable layers left out.
	NonDistributable int `json:"nonDistributableLeftOut"`
}

// jsonMove is a tag of the output directory that moved to another digest.
type jsonMove struct {
	Tag  string `json:"tag"`
	From string `json:"from"`
	To   string `json:"to"`
}

// jsonPlanMove is a tag of --plan that moved since the plan was made: the
// run took the registry's digest (now), not the plan's (planned).
type jsonPlanMove struct {
	Reference string `json:"reference"` // registry/repository
	Tag       string `json:"tag"`
	Planned   string `json:"planned"`
	Now       string `json:"now"`
}

func jsonPlanMoves(ms []api.MovedTag) []jsonPlanMove {
	var out []jsonPlanMove
	for _, m := range ms {
		out = append(out, jsonPlanMove{Reference: m.Repository.String(), Tag: m.Tag, Planned: m.Planned.String(), Now: m.Now.String()})
	}
	return out
}

type jsonSummary struct {
	Registry     string     `json:"registry"`
	Output       string     `json:"output"`
	DryRun       bool       `json:"dryRun"`
	Repositories []jsonRepo `json:"repositories"`
	UniqueBlobs  int        `json:"uniqueBlobs"`
	UniqueBytes  int64      `json:"uniqueBytes"`
	BytesMoved   int64      `json:"bytesMoved"`
	BlobsSkipped int        `json:"blobsSkipped"`
	MovedTags    []jsonMove `json:"movedTags,omitempty"`
	// MovedSincePlan: with --plan, the tags that moved since the plan was
	// made (each also a warning on standard error).
	MovedSincePlan []jsonPlanMove `json:"movedSincePlan,omitempty"`
	// NonDistributable lists the non-distributable layers left out: the
	// source does not hold them, clients fetch them from their urls.
	NonDistributable []jsonLeftOut `json:"nonDistributableLeftOut"`
	DurationSeconds  float64       `json:"durationSeconds"`
	ExitCode         int           `json:"exitCode"`
	Error            string        `json:"error,omitempty"`
}

func (r *reporter) printJSON(s *summary, code int) error {
	p := s.plan
	js := jsonSummary{
		Registry:         p.Registry,
		Output:           p.Output,
		DryRun:           p.DryRun,
		Repositories:     []jsonRepo{},
		UniqueBlobs:      s.res.UniqueNodes,
		UniqueBytes:      s.res.UniqueBytes,
		BytesMoved:       s.res.Moved,
		BlobsSkipped:     s.res.Skipped,
		NonDistributable: leftOut(s.graph),
		DurationSeconds:  s.res.Duration.Seconds(),
		ExitCode:         code,
	}
	for _, m := range s.moved {
		js.MovedTags = append(js.MovedTags, jsonMove{Tag: m.Name, From: m.From.String(), To: m.To.String()})
	}
	js.MovedSincePlan = jsonPlanMoves(r.planMoved)
	switch {
	case s.interrupted:
		js.Error = "interrupted"
	case s.runErr != nil:
		js.Error = r.c.redact(s.runErr.Error())
	}
	for _, rr := range s.res.Repos {
		jr := jsonRepo{Name: rr.Repo, Reference: r.full(rr.Repo), Status: "ok", Tags: []jsonTag{},
			Artifacts: rr.Artifacts, Bytes: rr.Bytes, NonDistributable: rr.NonDistributable}
		switch {
		case rr.Err != nil:
			jr.Status = "failed"
			jr.Error = r.c.redact(rr.Err.Error())
		case !s.written() && errors.Is(s.runErr, pipeline.ErrCannotDrop):
			jr.Status = "failed"
			jr.Error = "not written: the stream cannot leave out " + s.failedNames() + ", which failed"
		case !s.written():
			jr.Status = "failed"
			jr.Error = "not written: the backup was stopped"
		}
		for _, t := range rr.Tags {
			if t.Desc.Digest == "" {
				continue
			}
			jr.Tags = append(jr.Tags, jsonTag{Tag: t.Name, Digest: t.Desc.Digest.String(), MediaType: t.Desc.MediaType,
				Size: t.Desc.Size, Referrers: t.Referrers, Artifacts: t.Artifacts, Bytes: t.Bytes,
				NonDistributable: t.NonDistributable})
		}
		js.Repositories = append(js.Repositories, jr)
	}
	b, err := json.MarshalIndent(js, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(r.out, "%s\n", b)
	if err == nil && len(s.failed) > 0 {
		// The reasons are in the JSON; stderr gets the short version.
		for _, rr := range s.culprits() {
			fmt.Fprintf(r.c.stderr, "Error: Failed to backup %s: %s\n", r.full(rr.Repo), r.c.redact(reason(rr.Err)))
		}
	}
	return err
}

// jsonLeftOut is a non-distributable layer left out, in JSON reports.
type jsonLeftOut struct {
	Digest       string   `json:"digest"`
	MediaType    string   `json:"mediaType"`
	Size         int64    `json:"size"`
	URLs         []string `json:"urls,omitempty"`
	Repositories []string `json:"repositories"`
}

func leftOut(g *graph.Graph) []jsonLeftOut {
	out := []jsonLeftOut{}
	if g == nil {
		return out
	}
	for _, a := range g.Absent() {
		out = append(out, jsonLeftOut{Digest: a.Desc.Digest.String(), MediaType: a.Desc.MediaType, Size: a.Desc.Size,
			URLs: a.Desc.URLs, Repositories: a.Repos})
	}
	return out
}

// leftOutLine says how many non-distributable layers were left out and
// why; "" when none were. source names where they are missing.
func leftOutLine(g *graph.Graph, source string) string {
	if g == nil {
		return ""
	}
	n := len(g.Absent())
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("Left out %d non-distributable layer(s) that %s does not hold (foreign layers: clients fetch them from their URLs); the manifests that list them are kept whole.", n, source)
}
