package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// Rules is a parsed rules file (restore Mode 3), checked for everything
// that does not depend on the backup: syntax, unknown keys, types, names,
// duplicate mappings. NewRestore checks it against the backup.
//
// The format is JSON with comments (// and /* */), as README's "Rules
// files" shows it:
//
//	{
//	  "settings": {"exclude-referrers": false, "fail-fast": true},
//	  "mappings": [
//	    {
//	      "source": "registry-a.example/app",      // a repository of the backup
//	      "target": "registry-b.example/apps/app", // registry/repository
//	      "tags": ["v1", "latest"],                // optional: only these tags
//	      "tag-mappings": {"latest": "stable"},    // optional: push latest as stable only
//	      "exclude-referrers": true                // optional: overrides settings
//	    }
//	  ]
//	}
//
// A backup written tag-only (single repository, as oras v1.3 writes it)
// does not record its repository's name: a mapping for it leaves "source"
// out (or sets it to ""). Any other source must be the backup's repository
// name exactly, registry included, as `regvault` lists it.
type Rules struct {
	// Name is the file name used in messages.
	Name string
	// Settings; nil when not given.
	ExcludeReferrers *bool
	FailFast         *bool
	Mappings         []RuleMapping

	data []byte // the file as read, for line and column in messages
}

// RuleMapping is one entry of "mappings".
type RuleMapping struct {
	Source string
	Target Target
	// Tags restricts the tags restored; nil: every tag.
	Tags []string
	// TagMappings renames tags: the key is pushed under the value only.
	TagMappings map[string]string
	// ExcludeReferrers overrides settings.exclude-referrers; nil: not given.
	ExcludeReferrers *bool

	pos rulePos
}

// rulePos holds the byte offsets of a mapping's parts, for messages.
type rulePos struct {
	start, source, target int
	tagList               int            // "tags"
	tags                  []int          // each element of "tags"
	tagMapKeys            map[string]int // each key of "tag-mappings"
}

// tag is the offset of the k-th tag of "tags", or of the mapping.
func (p rulePos) tag(k int) int {
	if k < len(p.tags) {
		return p.tags[k]
	}
	return p.start
}

// tagKey is the offset of key from in "tag-mappings", or of the mapping.
func (p rulePos) tagKey(from string) int {
	if off, ok := p.tagMapKeys[from]; ok {
		return off
	}
	return p.start
}

// rulesJSON is the file's schema for encoding/json.
type rulesJSON struct {
	Settings *struct {
		ExcludeReferrers *bool `json:"exclude-referrers"`
		FailFast         *bool `json:"fail-fast"`
	} `json:"settings"`
	Mappings []struct {
		Source           string            `json:"source"`
		Target           string            `json:"target"`
		Tags             []string          `json:"tags"`
		TagMappings      map[string]string `json:"tag-mappings"`
		ExcludeReferrers *bool             `json:"exclude-referrers"`
	} `json:"mappings"`
}

var (
	rootKeys     = []string{"settings", "mappings"}
	settingsKeys = []string{"exclude-referrers", "fail-fast"}
	mappingKeys  = []string{"source", "target", "tags", "tag-mappings", "exclude-referrers"}
)

// LoadRules reads and parses a rules file.
func LoadRules(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("cannot read rules file: %v", err)
	}
	return ParseRules(path, data)
}

// ParseRules parses a rules file; name is used in messages. Every error is
// a *UsageError naming the file, the line and column, and the mapping.
func ParseRules(name string, data []byte) (*Rules, error) {
	r := &Rules{Name: name, data: data}
	clean, openComment := stripComments(data)
	if len(bytes.TrimSpace(clean)) == 0 && openComment < 0 {
		return nil, usagef("%s: the rules file is empty: expected {\"mappings\": [{\"source\": ..., \"target\": ...}]}", name)
	}
	var raw json.RawMessage
	err := json.Unmarshal(clean, &raw)
	var se *json.SyntaxError
	if err != nil && !errors.As(err, &se) {
		return nil, usagef("%s: %v", name, err)
	}
	if openComment >= 0 && (se == nil || int(se.Offset) > openComment) {
		// first in the file; whatever follows it is swallowed
		return nil, r.errAt(openComment, "", "comment is not closed: add */")
	}
	if se != nil {
		off := int(se.Offset) - 1
		msg := strings.TrimPrefix(se.Error(), "json: ")
		if strings.Contains(msg, "unexpected end") {
			off, msg = len(clean), "unexpected end of file: a } or ] is missing"
		} else if off < 0 || off >= len(clean) {
			off = len(clean)
		} else if c := clean[off]; c == '}' || c == ']' {
			if comma := len(bytes.TrimRight(clean[:off], " \t\r\n")) - 1; comma >= 0 && clean[comma] == ',' {
				off, msg = comma, fmt.Sprintf("trailing comma before '%c': remove the comma", c)
			}
		}
		return nil, r.errAt(off, "", "syntax error: %s", msg)
	}
	w := &walker{r: r, data: clean, dec: json.NewDecoder(bytes.NewReader(clean))}
	w.dec.UseNumber()
	if err := w.root(); err != nil {
		return nil, err
	}
	// The walker checked keys (exactly, and each once) and types, with
	// positions; encoding/json decodes the values, strictly.
	var f rulesJSON
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, usagef("%s: %v", name, err)
	}
	if f.Settings != nil {
		r.ExcludeReferrers, r.FailFast = f.Settings.ExcludeReferrers, f.Settings.FailFast
	}
	if len(f.Mappings) != len(w.pos) {
		return nil, usagef("%s: %d mappings decoded, %d read", name, len(f.Mappings), len(w.pos))
	}
	var errs []string
	for i, m := range f.Mappings {
		rm := RuleMapping{Source: m.Source, TagMappings: m.TagMappings, ExcludeReferrers: m.ExcludeReferrers, pos: w.pos[i]}
		if err := r.checkMapping(i, &rm, m.Target, m.Tags); err != nil {
			errs = append(errs, err.Error())
		}
		r.Mappings = append(r.Mappings, rm)
	}
	if len(r.Mappings) == 0 {
		errs = append(errs, fmt.Sprintf("%s: no mappings: add \"mappings\": [{\"source\": ..., \"target\": ...}]", name))
	}
	// Two mappings of one source to one target cannot be told apart.
	for i := range r.Mappings {
		for j := range i {
			a, b := &r.Mappings[j], &r.Mappings[i]
			if a.Source == b.Source && a.Target == b.Target && a.Target.Repository != "" {
				errs = append(errs, r.errAt(b.pos.start, mappingName(i, b.Source),
					"maps the same source to the same target as mappings[%d]: merge the two into one mapping", j).Error())
			}
		}
	}
	if len(errs) > 0 {
		return nil, &UsageError{Msg: strings.Join(errs, "\n")}
	}
	return r, nil
}

// checkMapping validates one mapping without the backup and fills in its
// target and tags.
func (r *Rules) checkMapping(i int, m *RuleMapping, target string, tags []string) error {
	name := mappingName(i, m.Source)
	var errs []string
	p := m.pos
	add := func(off int, format string, a ...any) {
		errs = append(errs, r.errAt(off, name, format, a...).Error())
	}
	switch t, err := ParseTarget(target); {
	case target == "":
		add(m.pos.start, "\"target\" is missing: name the registry/repository to write to")
	case err != nil:
		add(m.pos.target, "invalid target: %v", err)
	case t.Repository == "":
		add(m.pos.target, "target %q names no repository: expected <registry>/<repository>", target)
	case t.Tags != nil:
		add(m.pos.target, "target %q names tags: list them in \"tags\" (or rename them with \"tag-mappings\") and give the target as <registry>/<repository>", target)
	default:
		m.Target = Target{Registry: t.Registry, Repository: t.Repository}
	}
	if tags != nil {
		if len(tags) == 0 {
			add(p.tagList, "\"tags\" is empty: list the tags to take, or leave \"tags\" out to take every tag")
		}
		// a tag listed twice is taken once; positions stay parallel to Tags
		m.Tags, m.pos.tags = []string{}, nil
		for k, t := range tags {
			if !validTag(t) {
				add(p.tags[k], "invalid tag %q in \"tags\": %s", t, tagRule)
			} else if !slices.Contains(m.Tags, t) {
				m.Tags = append(m.Tags, t)
				m.pos.tags = append(m.pos.tags, p.tags[k])
			}
		}
	}
	for _, from := range sortedKeys(m.TagMappings) {
		to := m.TagMappings[from]
		off := p.tagKey(from)
		switch {
		case !validTag(from):
			add(off, "invalid tag %q in \"tag-mappings\": %s", from, tagRule)
		case !validTag(to):
			add(off, "invalid new name %q for tag %q in \"tag-mappings\": %s", to, from, tagRule)
		case m.Tags != nil && !slices.Contains(m.Tags, from):
			add(off, "\"tag-mappings\" renames %q, which \"tags\" does not list: add it to \"tags\"", from)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// mappingName is how messages name mappings[i]: by index and source.
func mappingName(i int, source string) string {
	if source == "" {
		return fmt.Sprintf("mappings[%d]", i)
	}
	return fmt.Sprintf("mappings[%d] (source %q)", i, source)
}

// errAt is a *UsageError "file:line:col: what: message".
func (r *Rules) errAt(off int, what, format string, a ...any) error {
	line, col := lineCol(r.data, off)
	msg := fmt.Sprintf(format, a...)
	if what != "" {
		msg = what + ": " + msg
	}
	return usagef("%s:%d:%d: %s", r.Name, line, col, msg)
}

// lineCol turns a byte offset into a 1-based line and column (in
// characters).
func lineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	if i := bytes.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	return line, utf8.RuneCount(before) + 1
}

// stripComments blanks out // and /* */ comments outside strings, keeping
// every other byte (and every newline) where it is, so that offsets, lines
// and columns in the result are those of the input. openComment is the
// offset of a /* that is never closed, or -1.
func stripComments(data []byte) (out []byte, openComment int) {
	out = bytes.Clone(data)
	openComment = -1
	blank := func(i int) {
		if out[i] != '\n' && out[i] != '\r' {
			out[i] = ' '
		}
	}
	for i := 0; i < len(out); {
		switch {
		case out[i] == '"':
			// A string ends at an unescaped quote; JSON strings hold no
			// newline, so one ends the scan too (and JSON reports it).
			for i++; i < len(out) && out[i] != '"' && out[i] != '\n'; i++ {
				if out[i] == '\\' {
					i++
				}
			}
			i++
		case out[i] == '/' && i+1 < len(out) && out[i+1] == '/':
			for ; i < len(out) && out[i] != '\n'; i++ {
				blank(i)
			}
		case out[i] == '/' && i+1 < len(out) && out[i+1] == '*':
			start := i
			blank(i)
			blank(i + 1)
			for i += 2; ; i++ {
				if i >= len(out) {
					openComment = start
					break
				}
				if out[i] == '*' && i+1 < len(out) && out[i+1] == '/' {
					blank(i)
					blank(i + 1)
					i += 2
					break
				}
				blank(i)
			}
		default:
			i++
		}
	}
	return out, openComment
}

// walker reads syntactically valid JSON token by token against the rules
// schema: keys exactly as spelled (encoding/json would take "Source" for
// "source"), each once, values of the right type, and where each mapping's
// parts are.
type walker struct {
	r    *Rules
	data []byte
	dec  *json.Decoder
	pos  []rulePos
	// context for messages: the current mapping
	what string
}

// next reads a token and the offset where it starts.
func (w *walker) next() (json.Token, int, error) {
	off := int(w.dec.InputOffset())
	for off < len(w.data) && strings.IndexByte(" \t\r\n,:", w.data[off]) >= 0 {
		off++
	}
	tok, err := w.dec.Token()
	if err == io.EOF {
		return nil, off, w.r.errAt(off, w.what, "unexpected end of file")
	}
	if err != nil {
		return nil, off, w.r.errAt(off, w.what, "%v", err)
	}
	return tok, off, nil
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "an array"
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprint(v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

func (w *walker) typeErr(off int, key, want string, got json.Token) error {
	if key != "" {
		return w.r.errAt(off, w.what, "%q must be %s, not %s", key, want, describe(got))
	}
	return w.r.errAt(off, w.what, "expected %s, not %s", want, describe(got))
}

// object reads an object whose opening token is tok (null: none), calling
// field for each key, which must appear once; with known, other keys are
// errors. key and want name the object in messages.
func (w *walker) object(tok json.Token, off int, key, want string, known []string,
	field func(key string, keyOff int) error) error {
	if tok == nil {
		return nil
	}
	if tok != json.Delim('{') {
		return w.typeErr(off, key, want, tok)
	}
	seen := map[string]bool{}
	for w.dec.More() {
		k, koff, err := w.next()
		if err != nil {
			return err
		}
		name := k.(string)
		if seen[name] {
			return w.r.errAt(koff, w.what, "key %q appears twice", name)
		}
		seen[name] = true
		if known != nil && !slices.Contains(known, name) {
			hint := ""
			if kn := suggestKey(name, known); kn != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", kn)
			}
			where := "at the top level"
			if key != "" {
				where = "in " + key
			}
			return w.r.errAt(koff, w.what, "unknown key %q%s: the keys %s are %s", name, hint, where, strings.Join(quoteAll(known), ", "))
		}
		if err := field(name, koff); err != nil {
			return err
		}
	}
	_, _, err := w.next() // }
	return err
}

func (w *walker) root() error {
	tok, off, err := w.next()
	if err != nil {
		return err
	}
	if tok == nil {
		return w.typeErr(off, "", `an object {"mappings": [...]}`, tok)
	}
	return w.object(tok, off, "", `an object {"mappings": [...]}`, rootKeys, func(key string, _ int) error {
		tok, off, err := w.next()
		if err != nil {
			return err
		}
		if key == "settings" {
			if tok != nil && tok != json.Delim('{') {
				return w.typeErr(off, key, "an object", tok)
			}
			w.what = "settings"
			err := w.object(tok, off, "settings", "an object", settingsKeys, func(k string, _ int) error {
				tok, off, err := w.next()
				if err == nil && tok != nil && !isBool(tok) {
					err = w.typeErr(off, k, "true or false", tok)
				}
				return err
			})
			w.what = ""
			return err
		}
		return w.mappings(tok, off)
	})
}

func isString(t json.Token) bool { _, ok := t.(string); return ok }

func isBool(t json.Token) bool { _, ok := t.(bool); return ok }

func (w *walker) mappings(tok json.Token, off int) error {
	if tok == nil {
		return nil
	}
	if tok != json.Delim('[') {
		return w.typeErr(off, "mappings", "an array of mappings", tok)
	}
	for i := 0; w.dec.More(); i++ {
		tok, off, err := w.next()
		if err != nil {
			return err
		}
		w.what = fmt.Sprintf("mappings[%d]", i)
		p := rulePos{start: off, source: off, target: off, tagList: off, tagMapKeys: map[string]int{}}
		if tok != json.Delim('{') {
			return w.typeErr(off, "", `a mapping {"source": ..., "target": ...}`, tok)
		}
		err = w.object(tok, off, "a mapping", "", mappingKeys, func(key string, _ int) error {
			tok, off, err := w.next()
			if err != nil {
				return err
			}
			switch key {
			case "source", "target":
				if tok != nil && !isString(tok) {
					return w.typeErr(off, key, "a string", tok)
				}
				if key == "source" {
					p.source = off
					if s, ok := tok.(string); ok {
						w.what = mappingName(i, s)
					}
				} else {
					p.target = off
				}
			case "exclude-referrers":
				if tok != nil && !isBool(tok) {
					return w.typeErr(off, key, "true or false", tok)
				}
			case "tags":
				if tok == nil {
					return nil
				}
				if tok != json.Delim('[') {
					return w.typeErr(off, key, `an array of tags ["v1", "latest"]`, tok)
				}
				p.tagList = off
				for w.dec.More() {
					tok, off, err := w.next()
					if err != nil {
						return err
					}
					if !isString(tok) {
						return w.typeErr(off, "", `a tag (a string) in "tags"`, tok)
					}
					p.tags = append(p.tags, off)
				}
				_, _, err := w.next() // ]
				return err
			case "tag-mappings":
				return w.object(tok, off, key, `an object {"old-tag": "new-tag"}`, nil, func(k string, koff int) error {
					p.tagMapKeys[k] = koff
					tok, off, err := w.next()
					if err == nil && !isString(tok) {
						err = w.typeErr(off, k, "a string (the new name of the tag)", tok)
					}
					return err
				})
			}
			return nil
		})
		if err != nil {
			return err
		}
		w.pos = append(w.pos, p)
		w.what = ""
	}
	_, _, err := w.next() // ]
	return err
}

// suggestKey finds the known key a misspelt one was probably meant to be:
// another case, _ for -, a missing or extra s.
func suggestKey(name string, known []string) string {
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s))
	}
	for _, kn := range known {
		if n, k := norm(name), norm(kn); n == k || n+"s" == k || n == k+"s" {
			return kn
		}
	}
	return ""
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
