package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/regvault/regvault/inspect"
	"github.com/regvault/regvault/source"
)

// The inspection commands read a backup with --oci-layout-path, as oras
// reads an OCI layout: repo ls, repo tags, manifest fetch, discover.

const layoutPathUsage = "the backup to read: a directory, a .tar, .tar.gz/.tgz or .tar.zst/.tzst file (found by its content), or - for a tar on standard input"

// layoutPath is the --oci-layout-path flag of an inspection command.
type layoutPath struct {
	c    *cli
	path string
	// paths are the values of a repeatable flag (repo ls): several
	// backups read as one.
	paths []string
}

// addMulti registers --oci-layout-path as repeatable (and as a glob
// pattern): repo ls lists the union of several backups.
func (l *layoutPath) addMulti(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&l.paths, "oci-layout-path", nil, layoutPathUsage+"; repeat it, or give a glob pattern, to list several backups as one (the parts of a sharded backup)")
}

// openMulti opens the backups of addMulti: one as open does, several
// as one (source.Layouts: the union of their entries; a tag two give
// different manifests is an error naming both). It returns what they
// list, their name for messages, and the function that closes them.
func (l *layoutPath) openMulti(ctx context.Context) (inspect.Contents, string, func(), error) {
	paths, err := expandInputs(l.paths)
	if err != nil {
		return inspect.Contents{}, "", nil, err
	}
	if len(paths) <= 1 {
		if len(paths) == 1 {
			l.path = paths[0]
		}
		b, err := l.open(ctx)
		if err != nil {
			return inspect.Contents{}, "", nil, err
		}
		return b.Contents, b.Name(), func() { _ = b.Close() }, nil
	}
	l.path = strings.Join(paths, " --oci-layout-path ")
	if slices.Contains(paths, "-") && isTerminal(l.c.stdin) {
		return inspect.Contents{}, "", nil, usageError("--oci-layout-path -: standard input is a terminal; pipe the backup in")
	}
	ls, err := source.OpenLayouts(ctx, paths, l.c.stdin, "")
	if err != nil {
		return inspect.Contents{}, "", nil, err
	}
	for _, n := range ls.Notes() {
		fmt.Fprintf(l.c.stderr, "Note: %s\n", n)
	}
	return inspect.ContentsOf(ls.Entries()), strings.Join(paths, ", "), func() { _ = ls.Close() }, nil
}

func (l *layoutPath) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.path, "oci-layout-path", "", layoutPathUsage)
}

// open opens the backup, or says why not.
func (l *layoutPath) open(ctx context.Context) (*inspect.Backup, error) {
	if l.path == "" {
		return nil, usageError("--oci-layout-path is required: the backup to read (a directory, a tar, a compressed tar, or - for standard input)")
	}
	if l.path == "-" && isTerminal(l.c.stdin) {
		return nil, usageError("--oci-layout-path -: standard input is a terminal; pipe the backup in, e.g. 'cat backup.tar.zst | regvault ...'")
	}
	b, err := inspect.Open(ctx, l.path, l.c.stdin)
	if err == nil {
		printNotes(l.c.stderr, l.path, b.Layout, 0)
	}
	return b, err
}

// printNotes prints on w the notes of reading the backup (members of a
// docker save archive it ignores) from the skip-th on; it returns how
// many there are.
func printNotes(w io.Writer, input string, l *source.Layout, skip int) int {
	notes := l.Notes()
	if input == "-" {
		input = "standard input"
	}
	for _, n := range notes[min(skip, len(notes)):] {
		fmt.Fprintf(w, "Note: %s: %s\n", input, n)
	}
	return len(notes)
}

// ---- repo ls, repo tags ----

const repoLsExamples = `  # List the repositories in a backup (full registry/repository names)
  regvault repo ls --oci-layout-path base-images.tar

  # List the repositories under a namespace, relative to it
  regvault repo ls --oci-layout-path base-images.tar docker.io/library

  # A compressed backup is read as a stream, never extracted
  regvault repo ls --oci-layout-path apps.tar.zst

  # From standard input
  ssh vault 'cat apps.tar.gz' | regvault repo ls --oci-layout-path -`

const repoTagsExamples = `  # List the tags of a repository in a backup, sorted
  regvault repo tags --oci-layout-path base-images.tar docker.io/library/busybox

  # The repository may be given without its registry
  regvault repo tags --oci-layout-path base-images.tar library/busybox

  # A single-repository backup names tags only (as oras writes it): any name lists them
  regvault repo tags --oci-layout-path frontend.tar frontend`

func (c *cli) repoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "List the repositories and tags in a backup",
		Long: `List the repositories and tags in a backup, as 'oras repo ls' and
'oras repo tags' do with --oci-layout-path.`,
		Example: repoLsExamples + "\n\n" + repoTagsExamples,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(c.repoLsCommand(), c.repoTagsCommand())
	return cmd
}

func (c *cli) repoLsCommand() *cobra.Command {
	l := &layoutPath{c: c}
	cmd := &cobra.Command{
		Use:     "ls --oci-layout-path <path> [--oci-layout-path <path> ...] [<prefix>]",
		Aliases: []string{"list"},
		Short:   "List the repositories in a backup",
		Long: `List the repositories in a backup, one a line, sorted, by their full
registry/repository names. With a prefix (a namespace such as
docker.io/library, with or without its registry), list the repositories
below it, relative to it.

A single-repository backup written tag-only (as 'oras backup' and
'regvault backup' without --full-reference write it) does not record its
repository's name: 'repo ls' says so, and 'repo tags' lists its tags.

Several backups (--oci-layout-path repeated, or a glob pattern such as
'part-*-of-4.tar.zst') are listed as one: the repositories of any of them,
each once (a repository a sharded backup split by tags is in several parts).
A tag that two of them give different manifests is an error naming both.`,
		Example: repoLsExamples + `

  # The parts of a sharded backup, as one
  regvault repo ls --oci-layout-path 'part-*-of-4.tar.zst'`,
		Args: maxArgs(1, "at most one prefix"),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			return c.repoLs(cmd.Context(), l, prefix)
		},
	}
	l.addMulti(cmd)
	return cmd
}

func (c *cli) repoLs(ctx context.Context, l *layoutPath, prefix string) error {
	cont, name, closeAll, err := l.openMulti(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	if cont.TagOnly() {
		fmt.Fprintf(c.stderr, "The backup %s does not name its repository: its index.json names tags only (%s),\n"+
			"as a single-repository backup is written without --full-reference.\n", name, strings.Join(cont.Unnamed, ", "))
		if len(cont.Recorded) > 0 {
			fmt.Fprintf(c.stderr, "Its referrers record it as %s.\n", strings.Join(cont.Recorded, ", "))
		}
		fmt.Fprintf(c.stderr, "List its tags with: regvault repo tags --oci-layout-path %s <any-name>\n", l.path)
		return nil
	}
	names := cont.Below(prefix)
	if prefix != "" && len(names) == 0 {
		if found := cont.FindRepo(strings.TrimRight(prefix, "/")); len(found) > 0 {
			return &exitError{code: exitFailure, err: fmt.Errorf("%s is a repository, with nothing below it: list its tags with 'regvault repo tags --oci-layout-path %s %s'", found[0], l.path, prefix)}
		}
		return &exitError{code: exitFailure, err: fmt.Errorf("no repository of the backup %s is under %q. Repositories in it:%s", name, prefix, inspect.Listing(cont.Repos, prefix))}
	}
	if len(names) == 0 {
		fmt.Fprintf(c.stderr, "The backup %s holds no repositories.\n", name)
		return nil
	}
	if len(cont.Unnamed) > 0 && prefix == "" {
		fmt.Fprintf(c.stderr, "Note: the backup also has %d tag(s) without a repository name: %s\n", len(cont.Unnamed), strings.Join(cont.Unnamed, ", "))
	}
	for _, n := range names {
		fmt.Fprintln(c.stdout, n)
	}
	return nil
}

func (c *cli) repoTagsCommand() *cobra.Command {
	l := &layoutPath{c: c}
	cmd := &cobra.Command{
		Use:   "tags --oci-layout-path <path> <repository>",
		Short: "List the tags of a repository in a backup",
		Long: `List the tags of a repository in a backup, one a line, sorted. The
repository is its full registry/repository name, or its path without the
registry. In a backup that names tags only (a single repository, as oras
writes it) any repository name lists its tags, as oras does. Entries named
sha256-<hex> that point at an index of referrers (the referrers tag schema)
are not tags and are not listed.`,
		Example: repoTagsExamples,
		Args:    exactArgs(1, "one repository"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := l.open(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			tags, err := b.Tags(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, t := range tags {
				fmt.Fprintln(c.stdout, t)
			}
			return nil
		},
	}
	l.add(cmd)
	return cmd
}

// ---- manifest fetch ----

const manifestFetchExamples = `  # Print a tagged manifest exactly as stored in the backup
  regvault manifest fetch --oci-layout-path base-images.tar docker.io/library/busybox:1.36.1

  # Indented, for reading
  regvault manifest fetch --oci-layout-path base-images.tar --pretty docker.io/library/busybox:1.36.1

  # Its descriptor (media type, digest, size) instead
  regvault manifest fetch --oci-layout-path base-images.tar --descriptor docker.io/library/busybox:1.36.1

  # A manifest by digest: a platform manifest of an index, or a referrer
  regvault manifest fetch --oci-layout-path apps.tar.zst registry.example.com/app/backend@sha256:9f86d08...

  # Save it to a file
  regvault manifest fetch --oci-layout-path apps.tar -o manifest.json registry.example.com/app/backend:v2`

func (c *cli) manifestCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Show manifests in a backup",
		Long:  `Show manifests in a backup, as 'oras manifest fetch' does with --oci-layout-path.`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
		Example: manifestFetchExamples,
	}
	cmd.AddCommand(c.manifestFetchCommand())
	return cmd
}

func (c *cli) manifestFetchCommand() *cobra.Command {
	l := &layoutPath{c: c}
	var descriptor, pretty bool
	var output string
	cmd := &cobra.Command{
		Use:   "fetch --oci-layout-path <path> [flags] <repository>:<tag>|<repository>@<digest>",
		Short: "Print a manifest stored in a backup",
		Long: `Print a manifest stored in a backup: its bytes exactly as stored (and
verified against its digest), indented with --pretty, or its descriptor
with --descriptor.

The manifest is named by <repository>:<tag>, or by <repository>@<digest> for
any manifest of the repository: a tagged one, a platform manifest of an
index, a referrer. The repository is its full registry/repository name or
its path without the registry.`,
		Example: manifestFetchExamples,
		Args:    exactArgs(1, "one <repository>:<tag> or <repository>@<digest>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := inspect.ParseReference(args[0])
			if err != nil {
				return usageError("%s", err.Error())
			}
			b, err := l.open(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := b.Resolve(cmd.Context(), ref)
			if err != nil {
				return err
			}
			var out []byte
			switch {
			case descriptor:
				if out, err = marshalJSON(res.Desc, pretty); err != nil {
					return err
				}
			case pretty:
				var buf bytes.Buffer
				if err := json.Indent(&buf, res.Content, "", "  "); err != nil {
					return fmt.Errorf("%s: the manifest is not valid JSON: %w", res.Reference(), err)
				}
				buf.WriteByte('\n')
				out = buf.Bytes()
			default:
				out = res.Content
			}
			return c.writeOutput(output, out)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	l.add(cmd)
	fs.BoolVar(&descriptor, "descriptor", false, "print the manifest's descriptor (media type, digest, size) instead of the manifest")
	fs.BoolVar(&pretty, "pretty", false, "indent the JSON (by default the manifest is printed byte for byte as stored)")
	fs.StringVarP(&output, "output", "o", "-", "write to this file instead of standard output")
	return cmd
}

func marshalJSON(v any, pretty bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if pretty {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeOutput writes data to path, "-" (or "") meaning standard output.
func (c *cli) writeOutput(path string, data []byte) error {
	if path == "" || path == "-" {
		_, err := c.stdout.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// ---- discover ----

const discoverExamples = `  # Show the referrers (signatures, SBOMs, ...) of a tag as a tree, recursively
  regvault discover --oci-layout-path base-images.tar docker.io/library/busybox:1.36.1

  # Of a manifest by digest, e.g. a platform manifest of an index
  regvault discover --oci-layout-path apps.tar registry.example.com/app/backend@sha256:9f86d08...

  # Machine-readable
  regvault discover --oci-layout-path apps.tar.gz --format json registry.example.com/app/backend:v2`

func (c *cli) discoverCommand() *cobra.Command {
	l := &layoutPath{c: c}
	var format string
	cmd := &cobra.Command{
		Use:   "discover --oci-layout-path <path> [flags] <repository>:<tag>|<repository>@<digest>",
		Short: "Show the referrers of a manifest in a backup",
		Long: `Show the referrers of a manifest in a backup — the artifacts whose subject
it is, such as signatures and SBOMs — and theirs, recursively: as a tree by
artifact type and digest, as 'oras discover' prints it, or as JSON.

Referrers are those the backup holds for the repository (a backup records
where each referrer was backed up from).`,
		Example: discoverExamples,
		Args:    exactArgs(1, "one <repository>:<tag> or <repository>@<digest>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "tree" && format != "json" {
				return usageError("--format %q: use tree or json", format)
			}
			ref, err := inspect.ParseReference(args[0])
			if err != nil {
				return usageError("%s", err.Error())
			}
			b, err := l.open(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			tree, err := b.Discover(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if format == "json" {
				out, err := marshalJSON(tree, true)
				if err != nil {
					return err
				}
				_, err = c.stdout.Write(out)
				return err
			}
			fmt.Fprintln(c.stdout, tree.Reference)
			printTree(c.stdout, tree, "")
			return nil
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	l.add(cmd)
	fs.StringVar(&format, "format", "tree", "output format: tree or json")
	return cmd
}

// printTree prints t's referrers under it, grouped by artifact type as
// oras discover does:
//
//	├── application/vnd.cncf.notary.signature
//	│   └── sha256:...
func printTree(w io.Writer, t *inspect.Tree, indent string) {
	var types []string
	byType := map[string][]*inspect.Tree{}
	for _, r := range t.Referrers {
		at := r.ArtifactType
		if at == "" {
			at = "<unknown>"
		}
		if _, ok := byType[at]; !ok {
			types = append(types, at)
		}
		byType[at] = append(byType[at], r)
	}
	sort.Strings(types)
	for i, at := range types {
		branch, next := "├── ", "│   "
		if i == len(types)-1 {
			branch, next = "└── ", "    "
		}
		fmt.Fprintf(w, "%s%s%s\n", indent, branch, at)
		refs := byType[at]
		for j, r := range refs {
			b2, n2 := "├── ", "│   "
			if j == len(refs)-1 {
				b2, n2 = "└── ", "    "
			}
			fmt.Fprintf(w, "%s%s%s%s\n", indent, next, b2, r.Digest)
			printTree(w, r, indent+next+n2)
		}
	}
}

// maxArgs returns a cobra.PositionalArgs that allows at most n arguments.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError("%s takes %s, got %d arguments\nUsage: %s", cmd.CommandPath(), what, len(args), cmd.UseLine())
		}
		return nil
	}
}
