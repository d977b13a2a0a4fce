package plan

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func copyOpts() CopyOptions { return CopyOptions{Concurrency: 1} }

// writeRules writes a rules file into a test directory and returns its path.
func writeRules(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.json")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestSplitCopyArgs(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		dash             int
		rules            bool
		sources, targets []string
	}{
		{[]string{"src.io/a", "dst.io"}, -1, false, []string{"src.io/a"}, []string{"dst.io"}},
		{[]string{"src.io/a", "src.io/b:v1", "dst.io/x"}, -1, false, []string{"src.io/a", "src.io/b:v1"}, []string{"dst.io/x"}},
		{[]string{"src.io/a", "dst.io", "mirror.io/m"}, 1, false, []string{"src.io/a"}, []string{"dst.io", "mirror.io/m"}},
		{[]string{"src.io/a", "src.io/b", "dst.io"}, 2, false, []string{"src.io/a", "src.io/b"}, []string{"dst.io"}},
		{[]string{"src.io/a", "src.io/b"}, -1, true, []string{"src.io/a", "src.io/b"}, nil},
		{[]string{"src.io/a"}, -1, true, []string{"src.io/a"}, nil},
		{[]string{"src.io/a"}, 1, true, []string{"src.io/a"}, nil}, // a trailing -- with nothing after it
	} {
		s, tg, err := SplitCopyArgs(tc.args, tc.dash, tc.rules)
		require.NoError(t, err, "%v dash %d", tc.args, tc.dash)
		assert.Equal(t, tc.sources, s, "%v dash %d", tc.args, tc.dash)
		assert.Equal(t, tc.targets, tg, "%v dash %d", tc.args, tc.dash)
	}
	for _, tc := range []struct {
		args  []string
		dash  int
		rules bool
		want  string
	}{
		{nil, -1, false, "no source given"},
		{nil, -1, true, "no source given"},
		{[]string{"src.io/a"}, -1, false, "no target given: the last argument is the target"},
		{[]string{"src.io/a"}, 1, false, "no target after --"},
		{[]string{"dst.io"}, 0, false, "no source given"},
		{[]string{"src.io/a", "dst.io"}, 1, true, "--rules cannot be used with positional targets"},
	} {
		_, _, err := SplitCopyArgs(tc.args, tc.dash, tc.rules)
		assert.Contains(t, usageErr(t, err), tc.want, "%v dash %d rules %v", tc.args, tc.dash, tc.rules)
	}
}

func TestParseCopyArgs(t *testing.T) {
	c, err := ParseCopyArgs([]string{"src.io/a:v1,v2", "src.io/team/b", "src.io/a:v3", "dst.io", "dst.io"}, 3, CopyOptions{Concurrency: 2, IncludeReferrers: true})
	require.NoError(t, err)
	assert.Equal(t, "src.io", c.Registry)
	assert.Equal(t, []Repo{{Name: "a", Tags: []string{"v1", "v2", "v3"}}, {Name: "team/b"}}, c.Repos)
	assert.Equal(t, []TargetRef{{Registry: "dst.io"}}, c.Targets, "a target given twice counts once")
	assert.Equal(t, []string{"src.io/a", "src.io/team/b"}, c.Names())
	assert.True(t, c.IncludeReferrers)
	assert.Nil(t, c.Rules)
}

// TestCopyUsageErrors: every mistake is found before any request, with
// the text a user reads.
func TestCopyUsageErrors(t *testing.T) {
	rules := writeRules(t, `{"mappings": [{"source": "src.io/a", "target": "dst.io/a"}, {"source": "other.io/z", "target": "dst.io/z"}]}`)
	for _, tc := range []struct {
		name string
		args []string
		dash int
		o    CopyOptions
		want []string
	}{
		{"bad source", []string{"src.io", "dst.io"}, -1, copyOpts(),
			[]string{`"src.io" has no repository: expected <registry>/<repository>[:<tag>[,<tag>...]]`}},
		{"digest source", []string{"src.io/a@sha256:abc", "dst.io"}, -1, copyOpts(), []string{"digest references are not supported"}},
		{"bad source tag", []string{"src.io/a:-x", "dst.io"}, -1, copyOpts(), []string{`invalid tag "-x"`}},
		{"bad target", []string{"src.io/a", "dst.io/UPPER"}, -1, copyOpts(), []string{`"dst.io/UPPER": invalid repository name "UPPER"`}},
		{"target ends with colon", []string{"src.io/a", "dst.io/a:"}, -1, copyOpts(),
			[]string{`"dst.io/a:" ends with ':' but names no tag: drop the ':' to copy every tag`}},
		{"two source registries", []string{"src.io/a", "other.io/b", "dst.io"}, -1, copyOpts(),
			[]string{"all source repositories of one copy must be from the same registry, got src.io, other.io.",
				"Run a separate copy for each source registry.",
				"Without --, only the last argument is a target; to copy to several targets, put them after --"}},
		{"targets without --", []string{"src.io/a", "dst.io/a", "mirror.io/m"}, -1, copyOpts(),
			[]string{"got src.io, dst.io", "put them after --"}},
		{"registry targets without --", []string{"src.io/a", "dst.io", "mirror.io"}, -1, copyOpts(),
			[]string{`"dst.io" has no repository`, "Without --, only the last argument is a target; to copy to several targets, put them after --"}},
		{"rules with targets", []string{"src.io/a", "dst.io"}, 1, CopyOptions{Concurrency: 1, Rules: rules},
			[]string{"--rules cannot be used with positional targets"}},
		{"concurrency", []string{"src.io/a", "dst.io"}, -1, CopyOptions{}, []string{"--concurrency must be at least 1, got 0"}},
		{"rules file missing", []string{"src.io/a"}, -1, CopyOptions{Concurrency: 1, Rules: filepath.Join(t.TempDir(), "none.json")},
			[]string{"cannot read rules file"}},
		{"rules source not a source", []string{"src.io/a"}, -1, CopyOptions{Concurrency: 1, Rules: rules},
			[]string{`"other.io/z" is not in the source selection. The source selection holds: src.io/a`}},
		{"rules source without registry", []string{"src.io/a", "src.io/z"}, -1, CopyOptions{Concurrency: 1, Rules: writeRules(t, `{"mappings": [{"source": "a", "target": "dst.io/a"}]}`)},
			[]string{`did you mean "src.io/a"? a source is named with its registry, as on the command line`}},
		{"target matches nothing", []string{"src.io/a", "src.io/b", "--", "dst.io/a", "dst.io/zzz"}, -1, copyOpts(),
			[]string{`target "dst.io/zzz" matches no repository in the source selection, which holds: src.io/a, src.io/b.`,
				"or map repositories with a rules file: regvault copy --rules <file> <sources> ..."}},
		{"ambiguous target", []string{"src.io/x/app", "src.io/y/app", "dst.io/app", "dst.io/x"}, 2, copyOpts(),
			[]string{`target "dst.io/app" is ambiguous: 2 repositories in the source selection are named "app": src.io/x/app, src.io/y/app.`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := slices.DeleteFunc(slices.Clone(tc.args), func(a string) bool { return a == "--" })
			dash := tc.dash
			if i := slices.Index(tc.args, "--"); i >= 0 {
				dash = i
			}
			_, err := ParseCopyArgs(args, dash, tc.o)
			msg := usageErr(t, err)
			for _, w := range tc.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

// only is the entries of the named repositories.
func only(es []BackupEntry, repos ...string) []BackupEntry {
	return slices.DeleteFunc(slices.Clone(es), func(e BackupEntry) bool { return !slices.Contains(repos, e.Repo) })
}

// copyPlan parses args and plans the copy of the given source tags.
func copyPlan(t *testing.T, args []string, dash int, o CopyOptions, es []BackupEntry) (*Restore, error) {
	t.Helper()
	c, err := ParseCopyArgs(args, dash, o)
	require.NoError(t, err)
	return c.Restore(es)
}

// TestCopyTable: positional targets go where restore would put a backup
// of the same tags.
func TestCopyTable(t *testing.T) {
	src := entries("src.io/library/alpine:3.19", "src.io/library/alpine:latest", "src.io/library/busybox:1.36", "src.io/tools/nginx:1.25")
	all := []string{"src.io/library/alpine", "src.io/library/busybox", "src.io/tools/nginx"}
	for _, tc := range []struct {
		name   string
		args   []string
		dash   int
		want   []string
		source []BackupEntry
	}{
		{"registry alone keeps paths", append(slices.Clone(all), "dst.io"), -1, []string{
			"src.io/library/alpine → dst.io/library/alpine (2 tags)",
			"src.io/library/busybox → dst.io/library/busybox (1 tag)",
			"src.io/tools/nginx → dst.io/tools/nginx (1 tag)"}, src},
		{"only target, several repositories: prefix", append(slices.Clone(all), "dst.io/mirror"), -1, []string{
			"src.io/library/alpine → dst.io/mirror/library/alpine (2 tags)",
			"src.io/library/busybox → dst.io/mirror/library/busybox (1 tag)",
			"src.io/tools/nginx → dst.io/mirror/tools/nginx (1 tag)"}, src},
		{"one repository renamed", []string{"src.io/library/alpine", "dst.io/base/os"}, -1, []string{
			"src.io/library/alpine → dst.io/base/os (2 tags)"}, src[:2]},
		{"several targets after --, by path and last name", append(slices.Clone(all), "dst.io/library", "dst.io/web/nginx:1.25"), 3, []string{
			"src.io/library/alpine → dst.io/library/alpine (2 tags)",
			"src.io/library/busybox → dst.io/library/busybox (1 tag)",
			"src.io/tools/nginx → dst.io/web/nginx (1 tag)"}, src},
		{"target tags restrict", []string{"src.io/library/alpine", "dst.io/a:latest"}, -1, []string{
			"src.io/library/alpine → dst.io/a (1 tag)"}, src[:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := copyPlan(t, tc.args, tc.dash, copyOpts(), tc.source)
			require.NoError(t, err)
			assert.Equal(t, tc.want, p.Lines())
			assert.Empty(t, p.Skipped)
			// The same plan as restore's for a backup holding these tags.
			c, err := ParseCopyArgs(tc.args, tc.dash, copyOpts())
			require.NoError(t, err)
			want, err := NewRestore(tc.source, c.targets, "", opts())
			require.NoError(t, err)
			assert.Equal(t, want.Mappings, p.Mappings)
		})
	}
}

func TestCopyTags(t *testing.T) {
	schema := "sha256-" + strings.Repeat("ab", 32)
	src := entries("src.io/a:v1", "src.io/a:v2", "src.io/a:"+schema, "src.io/b:v1", "src.io/b:"+schema)
	p, err := copyPlan(t, []string{"src.io/a", "src.io/b:v1", "dst.io"}, -1, copyOpts(), src)
	require.NoError(t, err)
	var got []string
	for _, m := range p.Mappings {
		for _, tm := range m.Tags {
			got = append(got, m.Target.String()+":"+tm.To)
		}
	}
	assert.Equal(t, []string{"dst.io/a:v1", "dst.io/a:v2", "dst.io/b:v1"}, got,
		"tag-schema tags of a source taken whole are left out; a source with named tags takes those")

	// A tag-schema tag named on the command line is taken, as backup does.
	p, err = copyPlan(t, []string{"src.io/a:" + schema, "dst.io"}, -1, copyOpts(), only(src, "src.io/a"))
	require.NoError(t, err)
	assert.Equal(t, schema, p.Mappings[0].Tags[0].To)

	// A target tag that no source has.
	_, err = copyPlan(t, []string{"src.io/a", "dst.io/x:v9"}, -1, copyOpts(), only(src, "src.io/a"))
	assert.Equal(t, `target "dst.io/x:v9": tag "v9" is not in the source selection: src.io/a has v1, v2`, usageErr(t, err))

	// Nothing to copy.
	_, err = copyPlan(t, []string{"src.io/a:" + schema, "dst.io"}, -1, copyOpts(), nil)
	assert.Equal(t, "the source selection holds no tags: nothing to copy", usageErr(t, err))

	// An entry of another repository is the caller's mistake.
	c, err := ParseCopyArgs([]string{"src.io/a", "dst.io"}, -1, copyOpts())
	require.NoError(t, err)
	_, err = c.Restore(entries("src.io/zzz:v1"))
	require.Error(t, err)
	var ue *UsageError
	assert.False(t, errors.As(err, &ue), "not a usage error: %v", err)
}

// TestCopySourceWithoutTags: a source whose listing failed or came back
// empty leaves the others where they would have gone.
func TestCopySourceWithoutTags(t *testing.T) {
	p, err := copyPlan(t, []string{"src.io/a", "src.io/b", "dst.io/m"}, -1, copyOpts(), entries("src.io/a:v1"))
	require.NoError(t, err)
	assert.Equal(t, []string{"src.io/a → dst.io/m/a (1 tag)"}, p.Lines(), "still the prefix row, not a rename of the only repository with tags")
	assert.Equal(t, []string{"src.io/b"}, p.Skipped)

	p, err = copyPlan(t, []string{"src.io/a", "src.io/b", "dst.io/m:v1"}, -1, copyOpts(), entries("src.io/a:v1"))
	require.NoError(t, err)
	assert.Equal(t, []string{"src.io/a → dst.io/m/a (1 tag)"}, p.Lines())

	rules := writeRules(t, `{"mappings": [{"source": "src.io/a", "target": "dst.io/x"}, {"source": "src.io/b", "target": "dst.io/y", "tags": ["v1"]}]}`)
	p, err = copyPlan(t, []string{"src.io/a", "src.io/b"}, -1, CopyOptions{Concurrency: 1, Rules: rules}, entries("src.io/a:v1"))
	require.NoError(t, err)
	assert.Equal(t, []string{"src.io/a → dst.io/x (1 tag)"}, p.Lines())
	assert.Equal(t, []string{"src.io/b"}, p.Skipped)
}

func TestCopyRules(t *testing.T) {
	rules := writeRules(t, `{
  "settings": {"fail-fast": false},
  "mappings": [
    {"source": "src.io/app", "target": "dst.io/apps/app", "tag-mappings": {"latest": "stable"}, "exclude-referrers": true},
    {"source": "src.io/tools", "target": "dst.io/tools", "tags": ["v1"]}
  ]
}`)
	src := entries("src.io/app:v1", "src.io/app:latest", "src.io/tools:v1", "src.io/tools:v2", "src.io/other:v1")
	p, err := copyPlan(t, []string{"src.io/app", "src.io/tools", "src.io/other"}, -1, CopyOptions{Concurrency: 1, Rules: rules}, src)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"src.io/app → dst.io/apps/app (2 tags; latest as stable; without referrers)",
		"src.io/tools → dst.io/tools (1 tag)"}, p.Lines())
	assert.Equal(t, []string{"src.io/other"}, p.Skipped)
	assert.False(t, p.FailFast)
	assert.Equal(t, 2, p.Rules)

	// A rules tag that the source lacks.
	bad := writeRules(t, `{"mappings": [{"source": "src.io/app", "target": "dst.io/app", "tags": ["v9"]}]}`)
	_, err = copyPlan(t, []string{"src.io/app"}, -1, CopyOptions{Concurrency: 1, Rules: bad}, only(src, "src.io/app"))
	assert.Contains(t, usageErr(t, err), `tag "v9" is not in the source selection: src.io/app has latest, v1`)
}

// TestCopyConsolidationCollision: two sources into one target repository
// that would put different manifests under one tag are refused before
// anything is pushed.
func TestCopyConsolidationCollision(t *testing.T) {
	src := entries("src.io/x/app:v1=one", "src.io/y/app:v1=two", "src.io/y/app:v2")
	rules := writeRules(t, `{"mappings": [{"source": "src.io/x/app", "target": "dst.io/app"}, {"source": "src.io/y/app", "target": "dst.io/app"}]}`)
	_, err := copyPlan(t, []string{"src.io/x/app", "src.io/y/app"}, -1, CopyOptions{Concurrency: 1, Rules: rules}, src)
	msg := usageErr(t, err)
	assert.Contains(t, msg, `would put `+string(dg("two"))+` under dst.io/app:v1, where mappings[0] (source "src.io/x/app") puts `+string(dg("one")))

	// The same manifest from both: one push, no error.
	same := entries("src.io/x/app:v1=one", "src.io/y/app:v1=one", "src.io/y/app:v2")
	p, err := copyPlan(t, []string{"src.io/x/app", "src.io/y/app"}, -1, CopyOptions{Concurrency: 1, Rules: rules}, same)
	require.NoError(t, err)
	assert.Equal(t, []string{"src.io/x/app → dst.io/app (1 tag)", "src.io/y/app → dst.io/app (2 tags)"}, p.Lines())
}

// FuzzParseCopyArgs: any argument list either parses into sources of one
// registry and at least one target (or a rules file), taken from the
// arguments as SplitCopyArgs splits them, or fails with a *UsageError;
// it never panics.
func FuzzParseCopyArgs(f *testing.F) {
	for _, s := range []struct {
		args  string
		dash  int
		rules bool
	}{
		{"src.io/a dst.io", -1, false},
		{"src.io/a:v1,v2 src.io/b dst.io/x:v1", -1, false},
		{"src.io/a dst.io mirror.io/m", 1, false},
		{"src.io/a src.io/b", -1, true},
		{"src.io/a dst.io", 1, true},
		{"localhost:5000/a/b:latest [::1]:5000", -1, false},
		{"src.io/a", -1, false},
		{"", 0, false},
		{"src.io/a other.io/b dst.io", -1, false},
		{"src.io/a@sha256:00 dst.io/a:", -1, false},
		{"src.io/x/app src.io/y/app dst.io/app", -1, false},
	} {
		f.Add(s.args, s.dash, s.rules)
	}
	rules := writeRules(f, `{"mappings": [{"source": "src.io/a", "target": "dst.io/a"}]}`)
	f.Fuzz(func(t *testing.T, line string, dash int, withRules bool) {
		args := strings.Fields(line)
		o := copyOpts()
		if withRules {
			o.Rules = rules
		}
		c, err := ParseCopyArgs(args, dash, o)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q dash %d: %T is not a *UsageError: %v", args, dash, err, err)
			}
			if ue.Msg == "" {
				t.Fatalf("%q dash %d: empty message", args, dash)
			}
			return
		}
		sources, targets, err := SplitCopyArgs(args, dash, withRules)
		if err != nil {
			t.Fatalf("%q: parsed, but split fails: %v", args, err)
		}
		if len(sources) == 0 || len(c.Repos) == 0 || len(c.Repos) > len(sources) {
			t.Fatalf("%q: %d sources, %d repositories", args, len(sources), len(c.Repos))
		}
		if withRules != (c.Rules != nil) || withRules && len(c.Targets) > 0 || !withRules && len(c.Targets) == 0 {
			t.Fatalf("%q rules %v: %d targets, rules %v", args, withRules, len(c.Targets), c.Rules != nil)
		}
		if len(c.Targets) > len(targets) {
			t.Fatalf("%q: %d targets from %d arguments", args, len(c.Targets), len(targets))
		}
		for _, s := range sources {
			if ref, err := ParseRepoRef(s); err != nil || ref.Registry != c.Registry {
				t.Fatalf("%q: source %q is not from %s (%v)", args, s, c.Registry, err)
			}
		}
		for _, tg := range targets {
			if _, err := ParseTarget(tg); err != nil {
				t.Fatalf("%q: target %q accepted but ParseTarget refuses it: %v", args, tg, err)
			}
		}
	})
}
