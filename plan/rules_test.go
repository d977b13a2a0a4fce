package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStripComments(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"a": 1} // c`, `{"a": 1}     `},
		{"// c\n{}", "    \n{}"},
		{`{"u": "https://x/*y*/"}`, `{"u": "https://x/*y*/"}`},
		{`{"q": "a\"//b", "r": 1} //x`, `{"q": "a\"//b", "r": 1}    `},
		{`{"q": "a\\"//b` + "\n}", `{"q": "a\\"   ` + "\n}"},
		{"{/* a\r\nb */}", "{    \r\n    }"},
		{`{/**/"a"/***/:1}`, `{    "a"     :1}`},
		{"/* é */{}", "        {}"},
		{`{"a": 1 / 2}`, `{"a": 1 / 2}`},
		{"{} /", "{} /"},
		{`"unterminated` + "\n// c", `"unterminated` + "\n    "},
	}
	for _, c := range cases {
		got, open := stripComments([]byte(c.in))
		assert.Equal(t, c.want, string(got), c.in)
		assert.Equal(t, -1, open, c.in)
	}
	got, open := stripComments([]byte("{}\n/* open\n*"))
	assert.Equal(t, "{}\n       \n ", string(got))
	assert.Equal(t, 3, open)
}

func TestLineCol(t *testing.T) {
	data := []byte("ab\n\xc3\xa9x\n")
	for off, want := range [][2]int{{1, 1}, {1, 2}, {1, 3}, {2, 1}, {2, 2}, {2, 2}, {2, 3}, {3, 1}, {3, 1}} {
		line, col := lineCol(data, off)
		assert.Equal(t, want, [2]int{line, col}, "offset %d", off)
	}
}

// rulesErr parses data as rules.json (and, if it parses, plans it against
// baseImages) and returns the error message.
func rulesErr(t *testing.T, data string) string {
	t.Helper()
	r, err := ParseRules("rules.json", []byte(data))
	if err == nil {
		_, err = NewRestoreWithRules(baseImages, r, opts())
	}
	return usageErr(t, err)
}

func TestRulesSyntaxErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty file", "", `rules.json: the rules file is empty: expected {"mappings": [{"source": ..., "target": ...}]}`},
		{"only comments", "// nothing\n/* here */\n", "rules.json: the rules file is empty"},
		{"unclosed comment", "{\"mappings\": []}\n  /* x", "rules.json:2:3: comment is not closed: add */"},
		{"unclosed comment swallowing the end", "{\"mappings\": [ /* x ]}", "rules.json:1:16: comment is not closed: add */"},
		{"syntax error after comments", "// one\n/* two\n three */ {\"mappings\": [}\n", "rules.json:3:25: syntax error: invalid character '}' looking for beginning of value"},
		{"syntax error column counts characters", "{\"s\": \"é\" x}", "rules.json:1:11: syntax error: invalid character 'x' after object key:value pair"},
		{"trailing comma", "{\n  \"mappings\": [\n    {\"source\": \"a\", \"target\": \"b/c\",},\n  ]\n}", "rules.json:3:36: syntax error: trailing comma before '}': remove the comma"},
		{"trailing comma in array", "{\"mappings\": [1, ]}", "rules.json:1:16: syntax error: trailing comma before ']'"},
		{"unexpected end", "{\"mappings\": [\n", "rules.json:2:1: syntax error: unexpected end of file: a } or ] is missing"},
		{"content after the object", "{\"mappings\": []}\n{}", "rules.json:2:1: syntax error: invalid character '{' after top-level value"},
		{"root not an object", "[]", `rules.json:1:1: expected an object {"mappings": [...]}, not an array`},
		{"root null", " null", `rules.json:1:2: expected an object {"mappings": [...]}, not null`},
		{"unknown root key", "{\"mappings\": [], \"Settings\": {}}", `rules.json:1:18: unknown key "Settings" (did you mean "settings"?): the keys at the top level are "settings", "mappings"`},
		{"root key twice", "{\"mappings\": [], \"mappings\": []}", `rules.json:1:18: key "mappings" appears twice`},
		{"unknown settings key", "{\"settings\": {\"failfast\": true}}", `rules.json:1:15: settings: unknown key "failfast" (did you mean "fail-fast"?): the keys in settings are "exclude-referrers", "fail-fast"`},
		{"settings not an object", "{\"settings\": true}", `rules.json:1:14: "settings" must be an object, not true`},
		{"fail-fast not a bool", "{\"settings\": {\"fail-fast\": \"yes\"}}", `rules.json:1:28: settings: "fail-fast" must be true or false, not the string "yes"`},
		{"exclude-referrers not a bool", "{\"settings\": {\"exclude-referrers\": 1}}", `rules.json:1:36: settings: "exclude-referrers" must be true or false, not the number 1`},
		{"mappings not an array", "{\"mappings\": {}}", `rules.json:1:14: "mappings" must be an array of mappings, not an object`},
		{"mapping not an object", "{\"mappings\": [\"a\"]}", `rules.json:1:15: mappings[0]: expected a mapping {"source": ..., "target": ...}, not the string "a"`},
		{"unknown mapping key", "{\"mappings\": [{\"source\": \"x\",\n \"tag\": [\"v1\"]}]}", `rules.json:2:2: mappings[0] (source "x"): unknown key "tag" (did you mean "tags"?): the keys in a mapping are "source", "target", "tags", "tag-mappings", "exclude-referrers"`},
		{"a key spelt in another case", "{\"mappings\": [{\"Source\": \"x\"}]}", `rules.json:1:16: mappings[0]: unknown key "Source" (did you mean "source"?)`},
		{"a key with _", "{\"mappings\": [{\"tag_mappings\": {}}]}", `unknown key "tag_mappings" (did you mean "tag-mappings"?)`},
		{"mapping key twice", "{\"mappings\": [{\"source\": \"x\", \"source\": \"y\"}]}", `rules.json:1:31: mappings[0] (source "x"): key "source" appears twice`},
		{"source not a string", "{\"mappings\": [{\"source\": 5}]}", `rules.json:1:26: mappings[0]: "source" must be a string, not the number 5`},
		{"target not a string", "{\"mappings\": [{\"target\": [\"a\"]}]}", `rules.json:1:26: mappings[0]: "target" must be a string, not an array`},
		{"tags not an array", "{\"mappings\": [{\"tags\": \"v1\"}]}", `rules.json:1:24: mappings[0]: "tags" must be an array of tags ["v1", "latest"], not the string "v1"`},
		{"a tag not a string", "{\"mappings\": [{\"tags\": [\"v1\", 2]}]}", `rules.json:1:31: mappings[0]: expected a tag (a string) in "tags", not the number 2`},
		{"a null tag", "{\"mappings\": [{\"tags\": [null]}]}", `expected a tag (a string) in "tags", not null`},
		{"tag-mappings not an object", "{\"mappings\": [{\"tag-mappings\": [\"a\"]}]}", `rules.json:1:32: mappings[0]: "tag-mappings" must be an object {"old-tag": "new-tag"}, not an array`},
		{"a tag mapping not a string", "{\"mappings\": [{\"tag-mappings\": {\"a\": true}}]}", `rules.json:1:38: mappings[0]: "a" must be a string (the new name of the tag), not true`},
		{"a tag mapping twice", "{\"mappings\": [{\"tag-mappings\": {\"a\": \"b\", \"a\": \"c\"}}]}", `rules.json:1:43: mappings[0]: key "a" appears twice`},
		{"mapping exclude-referrers not a bool", "{\"mappings\": [{\"exclude-referrers\": \"no\"}]}", `"exclude-referrers" must be true or false, not the string "no"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRules("rules.json", []byte(c.in))
			msg := usageErr(t, err)
			assert.Contains(t, msg, c.want)
			if strings.HasPrefix(c.want, "rules.json:") {
				assert.True(t, strings.HasPrefix(msg, c.want), "%q does not start with %q", msg, c.want)
			}
		})
	}
}

func TestRulesFileSyntaxError(t *testing.T) {
	// a URL in a string survives; the missing comma after a block comment
	// is found on the right line and column
	_, err := NewRestore(baseImages, nil, "testdata/rules/syntax.json", opts())
	assert.Equal(t, "testdata/rules/syntax.json:7:7: syntax error: invalid character '\"' after object key:value pair", usageErr(t, err))

	_, err = NewRestore(baseImages, nil, "testdata/rules/nonexistent.json", opts())
	assert.Contains(t, usageErr(t, err), "cannot read rules file: open testdata/rules/nonexistent.json: no such file or directory")
}

func TestRulesMappingErrors(t *testing.T) {
	m := func(s string) string { return `{"mappings": [` + s + `]}` }
	cases := []struct {
		name, in string
		want     []string
	}{
		{"no mappings", `{"settings": {}}`, []string{`rules.json: no mappings: add "mappings": [{"source": ..., "target": ...}]`}},
		{"empty mappings", `{"mappings": []}`, []string{`rules.json: no mappings`}},
		{"null mappings", `{"mappings": null}`, []string{`rules.json: no mappings`}},
		{"missing target", m(`{"source": "docker.io/library/alpine"}`), []string{
			`rules.json:1:15: mappings[0] (source "docker.io/library/alpine"): "target" is missing: name the registry/repository to write to`}},
		{"empty target", m(`{"source": "docker.io/library/alpine", "target": ""}`), []string{`"target" is missing`}},
		{"invalid target", m(`{"source": "docker.io/library/alpine", "target": "reg.example/Alpine"}`), []string{
			`rules.json:1:64: mappings[0] (source "docker.io/library/alpine"): invalid target: "reg.example/Alpine": invalid repository name "Alpine"`}},
		{"target without repository", m(`{"source": "docker.io/library/alpine", "target": "reg.example"}`), []string{
			`target "reg.example" names no repository: expected <registry>/<repository>`}},
		{"target with tags", m(`{"source": "docker.io/library/alpine", "target": "reg.example/x:v1"}`), []string{
			`target "reg.example/x:v1" names tags: list them in "tags"`}},
		{"empty tags", m(`{"source": "docker.io/library/alpine", "target": "reg.example/x", "tags": []}`), []string{
			`rules.json:1:89: mappings[0] (source "docker.io/library/alpine"): "tags" is empty: list the tags to take, or leave "tags" out to take every tag`}},
		{"invalid tag", m(`{"source": "docker.io/library/alpine", "target": "reg.example/x", "tags": ["ok", ".bad"]}`), []string{
			`rules.json:1:96: mappings[0] (source "docker.io/library/alpine"): invalid tag ".bad" in "tags": a tag is up to 128 characters`}},
		{"invalid new tag", m(`{"source": "docker.io/library/alpine", "target": "reg.example/x", "tag-mappings": {"latest": "a b"}}`), []string{
			`rules.json:1:98: mappings[0] (source "docker.io/library/alpine"): invalid new name "a b" for tag "latest" in "tag-mappings"`}},
		{"tag mapping not in tags", m(`{"source": "docker.io/library/alpine", "target": "reg.example/x", "tags": ["latest"], "tag-mappings": {"3.19.0": "old"}}`), []string{
			`rules.json:1:118: mappings[0] (source "docker.io/library/alpine"): "tag-mappings" renames "3.19.0", which "tags" does not list: add it to "tags"`}},
		{"duplicate mapping", m("{\"source\": \"docker.io/library/alpine\", \"target\": \"reg.example/x\"},\n{\"source\": \"docker.io/library/alpine\", \"target\": \"reg.example/x\", \"tags\": [\"latest\"]}"), []string{
			`rules.json:2:1: mappings[1] (source "docker.io/library/alpine"): maps the same source to the same target as mappings[0]: merge the two into one mapping`}},
		{"several errors at once", m("{\"source\": \"docker.io/library/alpine\"},\n{\"source\": \"docker.io/library/busybox\", \"target\": \"x\"}"), []string{
			`rules.json:1:15: mappings[0] (source "docker.io/library/alpine"): "target" is missing`,
			`rules.json:2:51: mappings[1] (source "docker.io/library/busybox"): target "x" names no repository: expected <registry>/<repository>`}},
		// against the backup
		{"missing source", m(`{"target": "reg.example/x"}`), []string{
			`rules.json:1:15: mappings[0]: "source" is missing: name one of the backup's repositories. The backup holds: docker.io/library/alpine, docker.io/library/busybox, docker.io/library/nginx`}},
		{"source not in the backup", m(`{"source": "docker.io/library/redis", "target": "reg.example/x"}`), []string{
			`rules.json:1:26: mappings[0] (source "docker.io/library/redis"): "docker.io/library/redis" is not in the backup. The backup holds: docker.io/library/alpine, docker.io/library/busybox, docker.io/library/nginx`}},
		{"source without its registry", m(`{"source": "library/alpine", "target": "reg.example/x"}`), []string{
			`"library/alpine" is not in the backup. The backup holds: docker.io/library/alpine, docker.io/library/busybox, docker.io/library/nginx (did you mean "docker.io/library/alpine"? the source is the repository as the backup names it, registry included)`}},
		{"source from another registry", m(`{"source": "ghcr.io/library/alpine", "target": "reg.example/x"}`), []string{`(did you mean "docker.io/library/alpine"?`}},
		{"source with a tag", m(`{"source": "docker.io/library/alpine:latest", "target": "reg.example/x"}`), []string{
			`source "docker.io/library/alpine:latest" names tags: give the repository alone and list the tags in "tags"`}},
		{"invalid source", m(`{"source": "docker.io/Library/Alpine", "target": "reg.example/x"}`), []string{
			`invalid source: "docker.io/Library/Alpine": invalid repository name "Library/Alpine"`}},
		{"a tag not in the backup", m("{\"source\": \"docker.io/library/alpine\", \"target\": \"reg.example/x\",\n  \"tags\": [\"latest\", \"9.9\"]}"), []string{
			`rules.json:2:22: mappings[0] (source "docker.io/library/alpine"): tag "9.9" is not in the backup: docker.io/library/alpine has 3.19.0, latest`}},
		{"a tag mapping not in the backup", m("{\"source\": \"docker.io/library/alpine\", \"target\": \"reg.example/x\",\n  \"tag-mappings\": {\"9.9\": \"x\"}}"), []string{
			`rules.json:2:20: mappings[0] (source "docker.io/library/alpine"): "tag-mappings" renames "9.9", which is not in the backup: docker.io/library/alpine has 3.19.0, latest`}},
		{"a rename onto another tag", m("{\"source\": \"docker.io/library/alpine\", \"target\": \"reg.example/x\",\n  \"tag-mappings\": {\"latest\": \"3.19.0\"}}"), []string{
			`rules.json:2:20: mappings[0] (source "docker.io/library/alpine"): tag "latest" (renamed "3.19.0") would put ` + dg("docker.io/library/alpine:latest").String() +
				` under reg.example/x:3.19.0, where this mapping puts ` + dg("docker.io/library/alpine:3.19.0").String() + ` (tag "3.19.0"): restrict "tags" or rename with "tag-mappings"`}},
		{"two renames onto one tag", m(`{"source": "docker.io/library/alpine", "target": "reg.example/x", "tag-mappings": {"latest": "v", "3.19.0": "v"}}`), []string{
			`tag "latest" (renamed "v") would put`, `where this mapping puts ` + dg("docker.io/library/alpine:3.19.0").String() + ` (tag "3.19.0")`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := rulesErr(t, c.in)
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
			assert.True(t, strings.HasPrefix(msg, "rules.json:"), msg)
		})
	}
}

func TestRulesCommented(t *testing.T) {
	r, err := NewRestore(baseImages, nil, "testdata/rules/commented.json", opts())
	require.NoError(t, err)
	assert.Equal(t, []string{
		"docker.io/library/alpine → registry.mycompany.com/images/alpine (2 tags)",
		"docker.io/library/busybox → registry.mycompany.com/base/busybox-custom (1 tag)",
		"docker.io/library/nginx → registry.mycompany.com/webservers/nginx (1 tag; 1.25-alpine as stable; without referrers)",
	}, r.Lines())
	assert.Equal(t, 3, r.Rules)
	assert.Equal(t, []int{1, 0, 2}, []int{r.Mappings[0].Rule, r.Mappings[1].Rule, r.Mappings[2].Rule})
	assert.Equal(t, []TagMapping{{From: "1.25-alpine", To: "stable", Digest: dg("docker.io/library/nginx:1.25-alpine"),
		Size: int64(len("docker.io/library/nginx:1.25-alpine"))}}, r.Mappings[2].Tags)
	assert.True(t, r.FailFast)
	assert.False(t, r.ExcludeReferrers)
	assert.Equal(t, []bool{false, false, true}, []bool{r.Mappings[0].ExcludeReferrers, r.Mappings[1].ExcludeReferrers, r.Mappings[2].ExcludeReferrers})
	assert.Nil(t, r.Skipped)
	checkRestore(t, baseImages, r)
}

func TestRulesPromotion(t *testing.T) {
	backup := entries(
		"staging.mycompany.com/apps/frontend:v2.0", "staging.mycompany.com/apps/frontend:v1.9",
		"staging.mycompany.com/apps/backend:v2.0", "staging.mycompany.com/apps/cache:v2.0",
		"staging.mycompany.com/apps/db:v2.0",
	)
	r, err := NewRestore(backup, nil, "testdata/rules/promotion.json", opts())
	require.NoError(t, err)
	assert.Equal(t, []string{
		"staging.mycompany.com/apps/backend → production.mycompany.com/apps/backend (1 tag; v2.0 as latest)",
		"staging.mycompany.com/apps/cache → production.mycompany.com/apps/cache (1 tag; v2.0 as stable)",
		"staging.mycompany.com/apps/frontend → production.mycompany.com/apps/frontend (2 tags; v2.0 as latest)",
	}, r.Lines())
	// the old name of a renamed tag is not pushed
	assert.Equal(t, []TagMapping{
		{From: "v2.0", To: "latest", Digest: dg("staging.mycompany.com/apps/frontend:v2.0"), Size: 40},
		{From: "v1.9", To: "v1.9", Digest: dg("staging.mycompany.com/apps/frontend:v1.9"), Size: 40},
	}, r.Mappings[2].Tags)
	assert.Equal(t, []string{"staging.mycompany.com/apps/db"}, r.Skipped)
	assert.False(t, r.FailFast, "settings.fail-fast")
	checkRestore(t, backup, r)

	yes := true
	r, err = NewRestore(backup, nil, "testdata/rules/promotion.json", RestoreOptions{Concurrency: 1, FailFast: &yes})
	require.NoError(t, err)
	assert.True(t, r.FailFast, "--fail-fast overrides the rules")
}

func TestRulesConsolidation(t *testing.T) {
	services := func(latest2 string) []BackupEntry {
		return entries(
			"registry-a.com/microservices/service-1:latest=one",
			"registry-a.com/microservices/service-1:v1",
			"registry-a.com/microservices/service-2:latest="+latest2,
			"registry-a.com/microservices/service-2:v2",
		)
	}
	// different manifests under one target tag
	_, err := NewRestore(services("two"), nil, "testdata/rules/collision.json", opts())
	assert.Equal(t, `testdata/rules/collision.json:8:5: mappings[1] (source "registry-a.com/microservices/service-2"): tag "latest" would put `+
		dg("two").String()+` under registry-b.com/unified/services:latest, where mappings[0] (source "registry-a.com/microservices/service-1") puts `+
		dg("one").String()+` (tag "latest"): restrict "tags" or rename with "tag-mappings"`, usageErr(t, err))

	// the same manifest under one target tag is no collision
	b := services("one")
	r, err := NewRestore(b, nil, "testdata/rules/collision.json", opts())
	require.NoError(t, err)
	assert.Equal(t, []string{
		"registry-a.com/microservices/service-1 → registry-b.com/unified/services (2 tags)",
		"registry-a.com/microservices/service-2 → registry-b.com/unified/services (2 tags)",
	}, r.Lines())
	checkRestore(t, b, r)

	// restricted tags do not collide
	rules := `{"mappings": [
		{"source": "registry-a.com/microservices/service-1", "target": "registry-b.com/unified/services", "tags": ["v1"]},
		{"source": "registry-a.com/microservices/service-2", "target": "registry-b.com/unified/services",
		 "tag-mappings": {"latest": "service-2-latest"}}
	]}`
	b = services("two")
	parsed, err := ParseRules("rules.json", []byte(rules))
	require.NoError(t, err)
	r, err = NewRestoreWithRules(b, parsed, opts())
	require.NoError(t, err)
	assert.Equal(t, []string{
		"registry-a.com/microservices/service-1 → registry-b.com/unified/services (1 tag)",
		"registry-a.com/microservices/service-2 → registry-b.com/unified/services (2 tags; latest as service-2-latest)",
	}, r.Lines())
	checkRestore(t, b, r)
}

func TestRulesTagMappings(t *testing.T) {
	plan := func(backup []BackupEntry, rules string) *Restore {
		t.Helper()
		parsed, err := ParseRules("rules.json", []byte(rules))
		require.NoError(t, err)
		r, err := NewRestoreWithRules(backup, parsed, opts())
		require.NoError(t, err)
		checkRestore(t, backup, r)
		return r
	}
	// tags and tag-mappings together; a tag listed twice is taken once
	r := plan(baseImages, `{"mappings": [{"source": "docker.io/library/alpine", "target": "reg.example/x",
		"tags": ["3.19.0", "latest", "3.19.0"], "tag-mappings": {"3.19.0": "3.19"}}]}`)
	assert.Equal(t, []TagMapping{
		{From: "3.19.0", To: "3.19", Digest: dg("docker.io/library/alpine:3.19.0"), Size: 31},
		{From: "latest", To: "latest", Digest: dg("docker.io/library/alpine:latest"), Size: 31},
	}, r.Mappings[0].Tags)
	assert.Equal(t, []string{"docker.io/library/busybox", "docker.io/library/nginx"}, r.Skipped)

	// two names of one manifest renamed onto one tag: pushed once
	b := entries("reg.example/a:latest=x", "reg.example/a:v1=x")
	r = plan(b, `{"mappings": [{"source": "reg.example/a", "target": "other.example/a", "tag-mappings": {"latest": "stable", "v1": "stable"}}]}`)
	assert.Equal(t, []TagMapping{{From: "latest", To: "stable", Digest: dg("x"), Size: 1}}, r.Mappings[0].Tags)

	// swapping two tags is fine
	b = entries("reg.example/a:blue", "reg.example/a:green")
	r = plan(b, `{"mappings": [{"source": "reg.example/a", "target": "other.example/a", "tag-mappings": {"blue": "green", "green": "blue"}}]}`)
	assert.Equal(t, "reg.example/a → other.example/a (2 tags; green as blue, blue as green)", r.String())

	// one source to two targets
	r = plan(baseImages, `{"mappings": [
		{"source": "docker.io/library/busybox", "target": "b.example/busybox"},
		{"source": "docker.io/library/busybox", "target": "a.example/busybox", "tag-mappings": {"1.36.1": "1.36"}}]}`)
	assert.Equal(t, []string{
		"docker.io/library/busybox → a.example/busybox (1 tag; 1.36.1 as 1.36)",
		"docker.io/library/busybox → b.example/busybox (1 tag)",
	}, r.Lines())
	assert.Equal(t, []int{1, 0}, []int{r.Mappings[0].Rule, r.Mappings[1].Rule})
}

func TestRulesReferrersAndFailFast(t *testing.T) {
	rules := func(settings string) *Rules {
		t.Helper()
		r, err := ParseRules("rules.json", []byte(`{`+settings+` "mappings": [
			{"source": "docker.io/library/alpine", "target": "reg.example/a"},
			{"source": "docker.io/library/busybox", "target": "reg.example/b", "exclude-referrers": true},
			{"source": "docker.io/library/nginx", "target": "reg.example/n", "exclude-referrers": false}]}`))
		require.NoError(t, err)
		return r
	}
	no, yes := false, true
	cases := []struct {
		name, settings   string
		o                RestoreOptions
		failFast, global bool
		perMapping       []bool
		lines            []string
	}{
		{"defaults", ``, RestoreOptions{}, true, false, []bool{false, true, false}, []string{
			"docker.io/library/alpine → reg.example/a (2 tags)",
			"docker.io/library/busybox → reg.example/b (1 tag; without referrers)",
			"docker.io/library/nginx → reg.example/n (1 tag)",
		}},
		{"settings", `"settings": {"exclude-referrers": true, "fail-fast": false},`, RestoreOptions{}, false, true, []bool{true, true, false}, []string{
			"docker.io/library/alpine → reg.example/a (2 tags)",
			"docker.io/library/busybox → reg.example/b (1 tag)",
			"docker.io/library/nginx → reg.example/n (1 tag; with referrers)",
		}},
		{"null settings", `"settings": {"exclude-referrers": null, "fail-fast": null},`, RestoreOptions{}, true, false, []bool{false, true, false}, []string{
			"docker.io/library/alpine → reg.example/a (2 tags)",
			"docker.io/library/busybox → reg.example/b (1 tag; without referrers)",
			"docker.io/library/nginx → reg.example/n (1 tag)",
		}},
		{"flags", `"settings": {"fail-fast": false},`, RestoreOptions{ExcludeReferrers: true, FailFast: &yes}, true, true, []bool{true, true, true}, []string{
			"docker.io/library/alpine → reg.example/a (2 tags)",
			"docker.io/library/busybox → reg.example/b (1 tag)",
			"docker.io/library/nginx → reg.example/n (1 tag)",
		}},
		{"--fail-fast=false", `"settings": {"fail-fast": true},`, RestoreOptions{FailFast: &no}, false, false, []bool{false, true, false}, []string{
			"docker.io/library/alpine → reg.example/a (2 tags)",
			"docker.io/library/busybox → reg.example/b (1 tag; without referrers)",
			"docker.io/library/nginx → reg.example/n (1 tag)",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.Concurrency = 1
			r, err := NewRestoreWithRules(baseImages, rules(c.settings), c.o)
			require.NoError(t, err)
			assert.Equal(t, c.failFast, r.FailFast)
			assert.Equal(t, c.global, r.ExcludeReferrers)
			assert.Equal(t, c.perMapping, []bool{r.Mappings[0].ExcludeReferrers, r.Mappings[1].ExcludeReferrers, r.Mappings[2].ExcludeReferrers})
			assert.Equal(t, c.lines, r.Lines())
		})
	}
}

func TestRulesTagOnlyBackup(t *testing.T) {
	b := entries(":v1", ":v2")
	plan := func(rules string) (*Restore, error) {
		parsed, err := ParseRules("rules.json", []byte(rules))
		if err != nil {
			return nil, err
		}
		return NewRestoreWithRules(b, parsed, opts())
	}
	for _, rules := range []string{
		`{"mappings": [{"target": "reg.example/x", "tag-mappings": {"v1": "latest"}}]}`,
		`{"mappings": [{"source": "", "target": "reg.example/x", "tag-mappings": {"v1": "latest"}}]}`,
		`{"mappings": [{"source": null, "target": "reg.example/x", "tag-mappings": {"v1": "latest"}}]}`,
	} {
		r, err := plan(rules)
		require.NoError(t, err, rules)
		assert.Equal(t, "(the tag-only backup's repository) → reg.example/x (2 tags; v1 as latest)", r.String())
		assert.Equal(t, "", r.Mappings[0].Source)
		checkRestore(t, b, r)
	}
	_, err := plan(`{"mappings": [{"source": "docker.io/library/alpine", "target": "reg.example/x"}]}`)
	assert.Equal(t, `rules.json:1:26: mappings[0] (source "docker.io/library/alpine"): "docker.io/library/alpine" is not in the backup: `+
		`it is a tag-only backup (as oras v1.3 writes them), which does not record its repository's name; leave "source" out to restore it`, usageErr(t, err))
}

// FuzzRules parses arbitrary bytes as a rules file: it never panics,
// every error is a *UsageError naming the file, comment stripping keeps
// every offset, a file that parses decodes with encoding/json (strictly),
// and a plan made from it against a fixed backup is self-consistent.
func FuzzRules(f *testing.F) {
	files, _ := filepath.Glob("testdata/rules/*.json")
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(data)
	}
	for _, s := range []string{
		``, `{}`, `{"mappings": []}`, `/* x`, `{"mappings": [{"source": "docker.io/library/alpine", "target": "r.example/a", "tags": ["latest"]}]}`,
		`{"mappings": [{"target": "r.example/a", "tag-mappings": {"latest": "3.19.0"}}]}`,
		`{"mappings": [{"source": "docker.io/library/alpine", "target": "r.example/a", "tag-mappings": {"latest": "x", "3.19.0": "x"}}]}`,
		`{"settings": {"fail-fast": false, "exclude-referrers": true}, "mappings": [{"source": "docker.io/library/busybox", "target": "r.example:5000/b", "exclude-referrers": false}]}`,
		`{"mappings": [{"source": "a\"//b", "target": "r.example/a"} // c` + "\n]}",
		`{"mappings": [{"sou\u0072ce": "docker.io/library/alpine", "target": "r.example/a", "TARGET": "x"}]}`,
		`{"mappings": [{"source": "docker.io/library/alpine", "target": "r.example/a", "tag-mappings": {"l\u0061test": "a", "latest": "b"}}]}`,
	} {
		f.Add([]byte(s))
	}
	backup := append(entries(":v1", ":latest=docker.io/library/alpine:latest",
		"registry-a.com/microservices/service-1:latest", "registry-a.com/microservices/service-2:latest",
		"staging.mycompany.com/apps/frontend:v2.0", "staging.mycompany.com/apps/backend:v2.0",
		"staging.mycompany.com/apps/cache:v2.0"), baseImages...)
	f.Fuzz(func(t *testing.T, data []byte) {
		clean, open := stripComments(data)
		if len(clean) != len(data) {
			t.Fatalf("stripping changed the length: %d to %d", len(data), len(clean))
		}
		for i := range data {
			if (data[i] == '\n') != (clean[i] == '\n') {
				t.Fatalf("stripping moved a newline at %d", i)
			}
		}
		if open >= 0 && !bytes.HasPrefix(data[open:], []byte("/*")) {
			t.Fatalf("open comment at %d is not /*", open)
		}
		rules, err := ParseRules("fuzzed", data)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "fuzzed") {
				t.Fatalf("%T %v", err, err)
			}
			// encoding/json's own errors mean the walker let through
			// what the strict decoder refused
			if strings.Contains(err.Error(), "json: ") || strings.Contains(err.Error(), "mappings decoded") {
				t.Fatalf("the walker missed: %v", err)
			}
			return
		}
		var v map[string]any
		if err := json.Unmarshal(clean, &v); err != nil {
			t.Fatalf("parsed, but not JSON: %v", err)
		}
		if len(rules.Mappings) == 0 {
			t.Fatal("parsed without mappings")
		}
		for i, m := range rules.Mappings {
			if _, err := ParseTarget(m.Target.String()); err != nil || m.Target.Repository == "" {
				t.Fatalf("mappings[%d]: invalid target %q", i, m.Target)
			}
			if m.Tags != nil && len(m.Tags) == 0 {
				t.Fatalf("mappings[%d]: empty tags", i)
			}
			for from, to := range m.TagMappings {
				if !validTag(from) || !validTag(to) {
					t.Fatalf("mappings[%d]: invalid tag mapping %q: %q", i, from, to)
				}
			}
		}
		for _, fail := range []*bool{nil, new(bool)} {
			r, err := NewRestoreWithRules(backup, rules, RestoreOptions{Concurrency: 1, FailFast: fail})
			if err != nil {
				if !strings.HasPrefix(err.Error(), "fuzzed:") {
					t.Fatalf("%v", err)
				}
				return
			}
			checkRestore(t, backup, r)
			if r.Rules != len(rules.Mappings) || len(r.Mappings) != len(rules.Mappings) {
				t.Fatalf("%d rules, %d mappings", len(rules.Mappings), len(r.Mappings))
			}
			if fail != nil && r.FailFast {
				t.Fatal("--fail-fast=false ignored")
			}
			for _, m := range r.Mappings {
				rm := rules.Mappings[m.Rule]
				if rm.Source != m.Source || rm.Target != m.Target {
					t.Fatalf("mapping %v is not rule %v", m, rm)
				}
				for _, tm := range m.Tags {
					if to, ok := rm.TagMappings[tm.From]; ok && to != tm.To || !ok && tm.From != tm.To {
						t.Fatalf("tag %v does not follow %v", tm, rm.TagMappings)
					}
				}
			}
		}
	})
}
