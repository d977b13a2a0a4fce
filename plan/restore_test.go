package plan

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func dg(s string) digest.Digest { return digest.FromString(s) }

// entries builds a backup from "repo:tag" or "repo:tag=content" strings
// (content defaults to repo:tag, so every tag has its own digest); a
// leading ":" is a tag-only entry.
func entries(refs ...string) []BackupEntry {
	var out []BackupEntry
	for _, ref := range refs {
		ref, content, ok := strings.Cut(ref, "=")
		if !ok {
			content = ref
		}
		i := strings.LastIndexByte(ref, ':')
		out = append(out, BackupEntry{Repo: ref[:i], Tag: ref[i+1:], Digest: dg(content), Size: int64(len(content))})
	}
	return out
}

// baseImages is README's base-images.tar, with a second alpine tag.
var baseImages = entries(
	"docker.io/library/busybox:1.36.1",
	"docker.io/library/alpine:3.19.0",
	"docker.io/library/alpine:latest",
	"docker.io/library/nginx:1.25-alpine",
)

func opts() RestoreOptions { return RestoreOptions{Concurrency: 1} }

func usageErr(t *testing.T, err error) string {
	t.Helper()
	require.Error(t, err)
	var ue *UsageError
	require.True(t, errors.As(err, &ue), "%T is not a *UsageError: %v", err, err)
	return err.Error()
}

func TestParseTarget(t *testing.T) {
	ok := []struct {
		in   string
		want TargetRef
	}{
		{"reg.example", TargetRef{Registry: "reg.example"}},
		{"localhost:5000", TargetRef{Registry: "localhost:5000"}},
		{"127.0.0.1:5000/a", TargetRef{Registry: "127.0.0.1:5000", Repository: "a"}},
		{"[::1]:5000/a/b:v1", TargetRef{Registry: "[::1]:5000", Repository: "a/b", Tags: []string{"v1"}}},
		{"reg.example/library/alpine", TargetRef{Registry: "reg.example", Repository: "library/alpine"}},
		{"localhost:5000/x:v1,latest,v1", TargetRef{Registry: "localhost:5000", Repository: "x", Tags: []string{"v1", "latest"}}},
		{"reg.example/a__b/c-d.e:_x", TargetRef{Registry: "reg.example", Repository: "a__b/c-d.e", Tags: []string{"_x"}}},
	}
	for _, c := range ok {
		got, err := ParseTarget(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
		if !slices.Contains([]string{"localhost:5000/x:v1,latest,v1"}, c.in) {
			assert.Equal(t, c.in, got.String())
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty target; expected <registry>[/<repository>][:<tag>[,<tag>...]]"},
		{"reg.example:v1", `"reg.example:v1": invalid registry "reg.example:v1" (a colon after the registry is its port; tags need a repository`},
		{"reg.example:", `invalid registry "reg.example:"`},
		{"user@reg.example/x", `invalid registry "user@reg.example"`},
		{"/x", `invalid registry ""`},
		{"reg.example/", `"reg.example/": empty repository after '/'`},
		{"reg.example/:v1", `empty repository after '/'`},
		{"reg.example/Alpine", `invalid repository name "Alpine": use lowercase`},
		{"reg.example/a//b", `invalid repository name "a//b"`},
		{"reg.example/x:", `ends with ':' but names no tag`},
		{"reg.example/x:v1,,v2", `invalid tag "": a tag is up to 128 characters`},
		{"reg.example/x:-v1", `invalid tag "-v1"`},
		{"reg.example/x:" + strings.Repeat("a", 129), `invalid tag "aaaa`},
		{"reg.example/x@sha256:" + strings.Repeat("a", 64), "digest references are not supported"},
		{"reg.example/x:v1/y", `invalid tag "v1/y"`},
	}
	for _, c := range bad {
		_, err := ParseTarget(c.in)
		assert.Contains(t, usageErr(t, err), c.want, c.in)
		assert.Contains(t, err.Error(), "<registry>", c.in)
	}
}

// TestRestoreTargets covers every row of README's target table (Restore).
func TestRestoreTargets(t *testing.T) {
	multiRegistry := entries(
		"docker.io/library/alpine:latest=a",
		"ghcr.io/library/alpine:latest=a",
		"ghcr.io/library/alpine:edge",
	)
	cases := []struct {
		name    string
		backup  []BackupEntry
		targets []string
		lines   []string
		skipped []string
	}{
		{
			name: "row 1: registry alone, every repository, paths kept", targets: []string{"registry.mycompany.com"},
			lines: []string{
				"docker.io/library/alpine → registry.mycompany.com/library/alpine (2 tags)",
				"docker.io/library/busybox → registry.mycompany.com/library/busybox (1 tag)",
				"docker.io/library/nginx → registry.mycompany.com/library/nginx (1 tag)",
			},
		},
		{
			name: "row 1: registry with a port", targets: []string{"localhost:5000"},
			backup: entries("docker.io/library/alpine:latest"),
			lines:  []string{"docker.io/library/alpine → localhost:5000/library/alpine (1 tag)"},
		},
		{
			name: "row 2: a repository's path", targets: []string{"reg.example/library/alpine"},
			lines:   []string{"docker.io/library/alpine → reg.example/library/alpine (2 tags)"},
			skipped: []string{"docker.io/library/busybox", "docker.io/library/nginx"},
		},
		{
			name: "row 2: selective restore", targets: []string{"registry.mycompany.com/library/alpine", "registry.mycompany.com/library/busybox"},
			lines: []string{
				"docker.io/library/alpine → registry.mycompany.com/library/alpine (2 tags)",
				"docker.io/library/busybox → registry.mycompany.com/library/busybox (1 tag)",
			},
			skipped: []string{"docker.io/library/nginx"},
		},
		{
			name: "row 2 wins over row 3: a path that is also a prefix", targets: []string{"reg.example/library"},
			backup:  entries("docker.io/library:v1", "docker.io/library/alpine:v1"),
			lines:   []string{"docker.io/library → reg.example/library (1 tag)"},
			skipped: []string{"docker.io/library/alpine"},
		},
		{
			name: "row 3: a prefix of paths", targets: []string{"reg.example/library"},
			backup: append(entries("docker.io/other/alpine2:v1"), baseImages...),
			lines: []string{
				"docker.io/library/alpine → reg.example/library/alpine (2 tags)",
				"docker.io/library/busybox → reg.example/library/busybox (1 tag)",
				"docker.io/library/nginx → reg.example/library/nginx (1 tag)",
			},
			skipped: []string{"docker.io/other/alpine2"},
		},
		{
			name: "row 3: a prefix ends at a path element", targets: []string{"reg.example/lib", "reg.example/library/nginx"},
			backup: append(entries("docker.io/lib/x:v1"), baseImages...),
			lines: []string{
				"docker.io/lib/x → reg.example/lib/x (1 tag)",
				"docker.io/library/nginx → reg.example/library/nginx (1 tag)",
			},
			skipped: []string{"docker.io/library/alpine", "docker.io/library/busybox"},
		},
		{
			name: "row 4: the same last name element, renamed", targets: []string{"reg.example/base/alpine"},
			lines:   []string{"docker.io/library/alpine → reg.example/base/alpine (2 tags)"},
			skipped: []string{"docker.io/library/busybox", "docker.io/library/nginx"},
		},
		{
			name:    "row 4: selective tag restoration",
			targets: []string{"registry.mycompany.com/base/alpine:3.19.0", "registry.mycompany.com/base/busybox:1.36.1"},
			lines: []string{
				"docker.io/library/alpine → registry.mycompany.com/base/alpine (1 tag)",
				"docker.io/library/busybox → registry.mycompany.com/base/busybox (1 tag)",
			},
			skipped: []string{"docker.io/library/nginx"},
		},
		{
			name: "row 4: a single-repository full-reference backup", targets: []string{"registry.mycompany.com/alpine:latest"},
			backup: entries("docker.io/library/alpine:latest", "docker.io/library/alpine:3.19"),
			lines:  []string{"docker.io/library/alpine → registry.mycompany.com/alpine (1 tag)"},
		},
		{
			name: "row 5: one target, one repository, renamed", targets: []string{"reg.example/x"},
			backup: entries("docker.io/library/alpine:latest", "docker.io/library/alpine:3.19"),
			lines:  []string{"docker.io/library/alpine → reg.example/x (2 tags)"},
		},
		{
			name: "row 5: a tag-only backup with a tag, as oras v1.3", targets: []string{"reg.example/x:v1"},
			backup: entries(":v1", ":v2"),
			lines:  []string{"(the tag-only backup's repository) → reg.example/x (1 tag)"},
		},
		{
			name: "row 5: a tag-only backup, every tag", targets: []string{"localhost:5000/a/b"},
			backup: entries(":v1", ":v2"),
			lines:  []string{"(the tag-only backup's repository) → localhost:5000/a/b (2 tags)"},
		},
		{
			name: "row 6: one target, several repositories, none matched: under the prefix", targets: []string{"reg.example/mirror"},
			lines: []string{
				"docker.io/library/alpine → reg.example/mirror/library/alpine (2 tags)",
				"docker.io/library/busybox → reg.example/mirror/library/busybox (1 tag)",
				"docker.io/library/nginx → reg.example/mirror/library/nginx (1 tag)",
			},
		},
		{
			name: "row 6 with tags: repositories without them are left out", targets: []string{"reg.example/mirror:latest,1.36.1"},
			lines: []string{
				"docker.io/library/alpine → reg.example/mirror/library/alpine (1 tag)",
				"docker.io/library/busybox → reg.example/mirror/library/busybox (1 tag)",
			},
			skipped: []string{"docker.io/library/nginx"},
		},
		{
			name: "tags restrict a prefix", targets: []string{"reg.example/library:latest"},
			lines:   []string{"docker.io/library/alpine → reg.example/library/alpine (1 tag)"},
			skipped: []string{"docker.io/library/busybox", "docker.io/library/nginx"},
		},
		{
			name: "the same repository twice: tags united, every tag wins", targets: []string{"reg.example/library/alpine:latest", "reg.example/library"},
			lines: []string{
				"docker.io/library/alpine → reg.example/library/alpine (2 tags)",
				"docker.io/library/busybox → reg.example/library/busybox (1 tag)",
				"docker.io/library/nginx → reg.example/library/nginx (1 tag)",
			},
		},
		{
			name: "the same repository twice with tags", targets: []string{"reg.example/library/alpine:latest", "reg.example/library/alpine:3.19.0", "reg.example/library/alpine:latest"},
			lines:   []string{"docker.io/library/alpine → reg.example/library/alpine (2 tags)"},
			skipped: []string{"docker.io/library/busybox", "docker.io/library/nginx"},
		},
		{
			name: "one repository to two registries", targets: []string{"a.example/library/alpine", "b.example/library/alpine:latest"},
			lines: []string{
				"docker.io/library/alpine → a.example/library/alpine (2 tags)",
				"docker.io/library/alpine → b.example/library/alpine (1 tag)",
			},
			skipped: []string{"docker.io/library/busybox", "docker.io/library/nginx"},
		},
		{
			name: "same path from two registries, same manifest under one tag: both restored", targets: []string{"reg.example/library/alpine:latest"},
			backup: multiRegistry,
			lines: []string{
				"docker.io/library/alpine → reg.example/library/alpine (1 tag)",
				"ghcr.io/library/alpine → reg.example/library/alpine (1 tag)",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.backup
			if b == nil {
				b = baseImages
			}
			r, err := NewRestore(b, c.targets, "", opts())
			require.NoError(t, err)
			assert.Equal(t, c.lines, r.Lines())
			assert.Equal(t, strings.Join(c.lines, "\n"), r.String())
			assert.Equal(t, c.skipped, r.Skipped)
			for _, m := range r.Mappings {
				assert.Equal(t, -1, m.Rule)
				assert.False(t, m.ExcludeReferrers)
			}
			checkRestore(t, b, r)
		})
	}
}

func TestRestoreTargetErrors(t *testing.T) {
	apps := entries("legacy.example/team-a/app:v1", "legacy.example/team-b/app:v1", "legacy.example/shared/utils:v1")
	cases := []struct {
		name    string
		backup  []BackupEntry
		targets []string
		want    []string
	}{
		{
			name: "ambiguous last name element", backup: apps, targets: []string{"reg.example/services/app"},
			want: []string{
				`target "reg.example/services/app" is ambiguous: 2 repositories in the backup are named "app": legacy.example/team-a/app, legacy.example/team-b/app.`,
				"Give the path of one to keep it (reg.example/team-a/app), or map repositories with a rules file: regvault restore --input <backup> --rules <file>",
			},
		},
		{
			name: "several targets that match nothing", targets: []string{"reg.example/a/foo", "reg.example/library/alpine", "reg.example/bar"},
			want: []string{
				`target "reg.example/a/foo" matches no repository in the backup, which holds: docker.io/library/alpine, docker.io/library/busybox, docker.io/library/nginx.`,
				`target "reg.example/bar" matches no repository`,
				"Give a repository's path (reg.example/library/alpine), a prefix of paths, or a path ending in a repository's last name element; or map repositories with a rules file: regvault restore --input <backup> --rules <file>",
			},
		},
		{
			name: "a tag-only backup to a registry alone", backup: entries(":v1"), targets: []string{"reg.example"},
			want: []string{`target "reg.example" keeps each repository's path, but the backup does not record its repository's name (a tag-only backup, as oras v1.3 writes them): name the repository to restore to, e.g. reg.example/<repository>`},
		},
		{
			name: "a tag-only backup to two targets", backup: entries(":v1"), targets: []string{"reg.example/a", "reg.example/b"},
			want: []string{
				`target "reg.example/a" matches no repository in the backup, which holds: (the tag-only backup's repository).`,
				"With several targets, each must match a repository by name, and the backup does not record its repository's name (a tag-only backup); give one target, or map repositories with a rules file",
			},
		},
		{
			name: "a single-repository backup to two targets that match nothing", backup: entries("docker.io/library/alpine:v1"),
			targets: []string{"reg.example/a", "reg.example/b"},
			want:    []string{`target "reg.example/a" matches no repository`, "--rules <file>"},
		},
		{
			name: "a tag not in the repository", targets: []string{"reg.example/library/alpine:latest,9.9"},
			want: []string{`target "reg.example/library/alpine:latest,9.9": tag "9.9" is not in the backup: docker.io/library/alpine has 3.19.0, latest`},
		},
		{
			name: "a tag in none of the repositories", targets: []string{"reg.example/library:9.9"},
			want: []string{`target "reg.example/library:9.9": tag "9.9" is not in the backup: none of docker.io/library/alpine, docker.io/library/busybox, docker.io/library/nginx has it`},
		},
		{
			name: "two manifests under one target tag", targets: []string{"reg.example"},
			backup: entries("docker.io/library/alpine:latest=a", "ghcr.io/library/alpine:latest=b"),
			want: []string{"reg.example/library/alpine:latest would get two different manifests: docker.io/library/alpine:latest (" +
				dg("a").String() + ") and ghcr.io/library/alpine:latest (" + dg("b").String() + "); restore them to different repositories, or map repositories with a rules file"},
		},
		{
			name: "an invalid target", targets: []string{"reg.example/UPPER"},
			want: []string{`"reg.example/UPPER": invalid repository name "UPPER"`},
		},
		{
			name: "a path that cannot be a repository name under a prefix", targets: []string{"reg.example/mirror"},
			backup: entries("docker.io/Library/alpine:v1", "docker.io/library/busybox:v1"),
			want:   []string{`docker.io/Library/alpine → reg.example/mirror/Library/alpine: invalid target repository name "mirror/Library/alpine"`},
		},
		{
			name: "a long list of candidates is cut", targets: []string{"reg.example/a", "reg.example/b"},
			backup: entries("r.example/r00:v", "r.example/r01:v", "r.example/r02:v", "r.example/r03:v", "r.example/r04:v", "r.example/r05:v",
				"r.example/r06:v", "r.example/r07:v", "r.example/r08:v", "r.example/r09:v", "r.example/r10:v", "r.example/r11:v"),
			want: []string{"which holds: r.example/r00, r.example/r01, r.example/r02, r.example/r03, r.example/r04, r.example/r05, " +
				"r.example/r06, r.example/r07, r.example/r08, r.example/r09 and 2 more.\n"},
		},
		{
			name: "a tag in the backup that is not a valid tag", targets: []string{"reg.example"},
			backup: entries("docker.io/a/b:not valid"),
			want:   []string{"docker.io/a/b:not valid cannot be restored as reg.example/a/b:not valid: a tag is up to 128 characters"},
		},
		{
			name: "no target", want: []string{"no target given: regvault restore --input <backup> <registry>[/<repository>][:<tags>] ..., or regvault restore --input <backup> --rules <file>"},
		},
		{
			name: "an empty backup", backup: []BackupEntry{}, targets: []string{"reg.example"},
			want: []string{"the backup holds no tags: nothing to restore"},
		},
		{
			name: "a backup naming one tag twice", targets: []string{"reg.example"},
			backup: entries("docker.io/a/b:v1=x", "docker.io/a/b:v1=y"),
			want:   []string{"the backup names two manifests docker.io/a/b:v1"},
		},
		{
			name: "a backup entry without a tag", targets: []string{"reg.example"},
			backup: []BackupEntry{{Repo: "docker.io/a/b", Digest: dg("x")}},
			want:   []string{"the backup names " + dg("x").String() + " without a tag"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.backup
			if b == nil {
				b = baseImages
			}
			_, err := NewRestore(b, c.targets, "", opts())
			msg := usageErr(t, err)
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

func TestRestoreFlags(t *testing.T) {
	_, err := NewRestore(baseImages, []string{"reg.example/repo"}, "rules.json", opts())
	assert.Equal(t, "--rules cannot be used with positional repository arguments.\n\n"+
		"Use either:\n"+
		"  - Positional args for direct/selective restore:\n"+
		"      regvault restore --input backup.tar registry.io/repo1 registry.io/repo2\n"+
		"  \n"+
		"  - Rules file for repository mapping:\n"+
		"      regvault restore --input backup.tar --rules rules.json", usageErr(t, err))

	_, err = NewRestore(baseImages, []string{"reg.example"}, "", RestoreOptions{})
	assert.Equal(t, "--concurrency must be at least 1, got 0", usageErr(t, err))

	r, err := NewRestore(baseImages, []string{"reg.example"}, "", RestoreOptions{Concurrency: 4, DryRun: true})
	require.NoError(t, err)
	assert.True(t, r.FailFast, "restore fails fast by default")
	assert.True(t, r.DryRun)
	assert.Equal(t, 4, r.Concurrency)
	assert.False(t, r.ExcludeReferrers)
	assert.Equal(t, 0, r.Rules)

	no := false
	r, err = NewRestore(baseImages, []string{"reg.example"}, "", RestoreOptions{Concurrency: 1, FailFast: &no, ExcludeReferrers: true})
	require.NoError(t, err)
	assert.False(t, r.FailFast)
	assert.True(t, r.ExcludeReferrers)
	for _, m := range r.Mappings {
		assert.True(t, m.ExcludeReferrers)
	}
	// the global policy is not repeated on each line
	assert.Equal(t, "docker.io/library/alpine → reg.example/library/alpine (2 tags)", r.Lines()[0])
}

func TestRestoreMappingDetails(t *testing.T) {
	r, err := NewRestore(baseImages, []string{"b.example/library", "a.example/base/alpine:latest"}, "", opts())
	require.NoError(t, err)
	require.Len(t, r.Mappings, 4)
	// sorted by source, then target
	assert.Equal(t, Mapping{
		Source: "docker.io/library/alpine", Target: Target{Registry: "a.example", Repository: "base/alpine"},
		Tags: []TagMapping{{From: "latest", To: "latest", Digest: dg("docker.io/library/alpine:latest"), Size: int64(len("docker.io/library/alpine:latest"))}},
		Rule: -1,
	}, r.Mappings[0])
	assert.Equal(t, "b.example/library/alpine", r.Mappings[1].Target.String())
	assert.Equal(t, []string{"3.19.0", "latest"}, []string{r.Mappings[1].Tags[0].To, r.Mappings[1].Tags[1].To})
	assert.Equal(t, 5, r.TagCount())
	assert.Equal(t, []string{"a.example", "b.example"}, r.Registries())
	assert.Equal(t, []string{"docker.io/library/alpine", "docker.io/library/busybox", "docker.io/library/nginx"}, r.Sources())
	assert.Nil(t, r.Skipped)

	// tag-only: the source is ""
	r, err = NewRestore(entries(":v1"), []string{"reg.example/x"}, "", opts())
	require.NoError(t, err)
	assert.Equal(t, "", r.Mappings[0].Source)
	assert.Equal(t, []string{""}, r.Sources())
}

// checkRestore asserts what holds for every plan: sources and tags come
// from the backup with their digests, targets and tags are valid names, no
// target tag gets two manifests, mappings are sorted, and every repository
// of the backup is either restored or skipped.
func checkRestore(t testing.TB, backup []BackupEntry, r *Restore) {
	t.Helper()
	byRef := map[string]BackupEntry{}
	for _, e := range backup {
		byRef[e.Repo+"\x00"+e.Tag] = e
	}
	pushed := map[string]digest.Digest{}
	for i, m := range r.Mappings {
		if i > 0 {
			p := r.Mappings[i-1]
			if p.Source > m.Source || p.Source == m.Source && p.Target.String() > m.Target.String() {
				t.Fatalf("mappings not sorted: %v before %v", p, m)
			}
		}
		if _, err := ParseTarget(m.Target.String()); err != nil || m.Target.Repository == "" {
			t.Fatalf("invalid target %q: %v", m.Target, err)
		}
		if len(m.Tags) == 0 {
			t.Fatalf("mapping %v has no tags", m)
		}
		for _, tm := range m.Tags {
			e, ok := byRef[m.Source+"\x00"+tm.From]
			if !ok || e.Digest != tm.Digest || e.Size != tm.Size {
				t.Fatalf("%s:%s is not in the backup as %v", m.Source, tm.From, tm)
			}
			if !validTag(tm.To) {
				t.Fatalf("invalid tag %q", tm.To)
			}
			key := m.Target.String() + ":" + tm.To
			if d, ok := pushed[key]; ok && d != tm.Digest {
				t.Fatalf("%s gets %s and %s", key, d, tm.Digest)
			}
			pushed[key] = tm.Digest
		}
	}
	var all []string
	for _, e := range backup {
		if !slices.Contains(all, e.Repo) {
			all = append(all, e.Repo)
		}
	}
	got := append(slices.Clone(r.Sources()), r.Skipped...)
	slices.Sort(all)
	slices.Sort(got)
	if !slices.Equal(all, got) {
		t.Fatalf("restored %v + skipped %v is not the backup's %v", r.Sources(), r.Skipped, all)
	}
	if len(r.Lines()) != len(r.Mappings) {
		t.Fatalf("%d lines for %d mappings", len(r.Lines()), len(r.Mappings))
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"reg.example", "localhost:5000", "reg.example/library/alpine:3.19,latest", "[::1]:5000/a:b",
		"reg.example:v1", "reg.example/", "reg.example/x:", "a/b@sha256:00", "a/b:c/d", "a/b:,", "a:/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseTarget(s)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q: %T is not a *UsageError", s, err)
			}
			return
		}
		again, err := ParseTarget(ref.String())
		if err != nil {
			t.Fatalf("%q parsed as %q, which does not parse: %v", s, ref.String(), err)
		}
		if again.String() != ref.String() || again.Registry != ref.Registry || again.Repository != ref.Repository || !slices.Equal(again.Tags, ref.Tags) {
			t.Fatalf("%q: %#v reparses as %#v", s, ref, again)
		}
		if ref.Repository == "" && ref.Tags != nil {
			t.Fatalf("%q: tags without a repository: %#v", s, ref)
		}
		for i, tag := range ref.Tags {
			if !validTag(tag) || slices.Contains(ref.Tags[:i], tag) {
				t.Fatalf("%q: bad or repeated tag %q", s, tag)
			}
		}
	})
}

func FuzzParseRepoRef(f *testing.F) {
	for _, s := range []string{
		"docker.io/library/alpine", "localhost:5000/a/b:v1,v2", "reg.example", "reg.example/x:", "a/b@sha256:00",
		"a/b:c/d", "a:/b", "/b", "a/B", "a/b:v1,v1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseRepoRef(s)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q: %T is not a *UsageError", s, err)
			}
			return
		}
		if ref.Registry == "" || ref.Repository == "" {
			t.Fatalf("%q: empty part in %#v", s, ref)
		}
		again, err := ParseRepoRef(ref.String())
		if err != nil {
			t.Fatalf("%q parsed as %q, which does not parse: %v", s, ref.String(), err)
		}
		if again.Registry != ref.Registry || again.Repository != ref.Repository || !slices.Equal(again.Tags, ref.Tags) {
			t.Fatalf("%q: %#v reparses as %#v", s, ref, again)
		}
		for i, tag := range ref.Tags {
			if !validTag(tag) || slices.Contains(ref.Tags[:i], tag) {
				t.Fatalf("%q: bad or repeated tag %q", s, tag)
			}
		}
	})
}
