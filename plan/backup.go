package plan

import (
	"slices"
	"strings"

	"github.com/regvault/regvault/archive"
)

// Repo is one source repository of a backup and the tags to take from it.
type Repo struct {
	Name string   // path without the registry host
	Tags []string // nil: every tag
}

// Backup is a validated backup plan.
type Backup struct {
	Registry string
	Repos    []Repo
	Output   string
	Kind     archive.Kind
	// FullReference: index.json names tags registry/repo:tag. Always true
	// for several repositories.
	FullReference    bool
	IncludeReferrers bool
	DryRun           bool
	FailFast         bool
	Concurrency      int
}

// BackupOptions are the flags of `regvault backup`.
type BackupOptions struct {
	Output           string
	FullReference    bool
	IncludeReferrers bool
	DryRun           bool
	FailFast         bool
	Concurrency      int
}

// NewBackup validates the arguments of `regvault backup` into a plan.
func NewBackup(args []string, o BackupOptions) (*Backup, error) {
	if len(args) == 0 {
		return nil, usagef("no repository given: regvault backup --output <path> <registry>/<repo>[:<tags>] ...")
	}
	if o.Output == "" && !o.DryRun {
		return nil, usagef("--output is required: a directory, a .tar, .tar.gz or .tar.zst file, or - for standard output")
	}
	if o.Concurrency < 1 {
		return nil, usagef("--concurrency must be at least 1, got %d", o.Concurrency)
	}
	b := &Backup{
		Output: o.Output, Kind: archive.KindOf(o.Output),
		IncludeReferrers: o.IncludeReferrers, DryRun: o.DryRun,
		FailFast: o.FailFast, Concurrency: o.Concurrency,
	}
	reg, repos, err := parseSources(args, func(registries []string) error {
		return usagef("all repositories of one backup must be from the same registry, got %s.\n"+
			"Create a separate backup for each registry, e.g.:\n"+
			"  regvault backup --output %s.tar %s/...", strings.Join(registries, ", "),
			strings.NewReplacer(":", "_", "/", "_").Replace(registries[1]), registries[1])
	})
	if err != nil {
		return nil, err
	}
	b.Registry, b.Repos = reg, repos
	b.FullReference = o.FullReference || len(b.Repos) > 1
	return b, nil
}

// parseSources parses `<registry>/<repo>[:<tag>[,<tag>...]]` arguments
// (at least one) into their registry and repositories, in the order given;
// a repository named twice gets the union of its tags ("all tags" wins).
// Sources from several registries are refused with severalRegistries'
// error (the registries in the order given).
func parseSources(args []string, severalRegistries func(registries []string) error) (string, []Repo, error) {
	var repos []Repo
	byName := map[string]int{}
	var registries []string
	for _, a := range args {
		ref, err := ParseRepoRef(a)
		if err != nil {
			return "", nil, err
		}
		if !slices.Contains(registries, ref.Registry) {
			registries = append(registries, ref.Registry)
		}
		if i, ok := byName[ref.Repository]; ok {
			// The same repository twice: take the union; "all tags" wins.
			r := &repos[i]
			if r.Tags == nil || ref.Tags == nil {
				r.Tags = nil
			} else {
				for _, t := range ref.Tags {
					if !slices.Contains(r.Tags, t) {
						r.Tags = append(r.Tags, t)
					}
				}
			}
			continue
		}
		byName[ref.Repository] = len(repos)
		repos = append(repos, Repo{Name: ref.Repository, Tags: ref.Tags})
	}
	if len(registries) > 1 {
		return "", nil, severalRegistries(registries)
	}
	return registries[0], repos, nil
}

// TagCount is the number of named tags (repositories with all tags count 0
// until they are listed).
func (b *Backup) TagCount() int {
	n := 0
	for _, r := range b.Repos {
		n += len(r.Tags)
	}
	return n
}
