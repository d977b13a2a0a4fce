package planfile

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// parseCanonical decodes a plan file written exactly as Encode writes it
// (one entry a line, fields in their fixed order, strings without escapes)
// without encoding/json: a plan of 100,000 tags is read by every pod of a
// sharded run, and the generic decoder spends seconds on it. It accepts
// only bytes that encoding/json decodes to the same Plan; on anything else
// (a plan pretty-printed or edited by hand, an escape, an unknown field)
// it returns false and Parse decodes with encoding/json, which also names
// what is wrong.
func parseCanonical(data string) (*Plan, bool) {
	// Every name and digest is a substring of the file: no allocation per
	// entry.
	c := cursor{s: data}
	var p Plan
	// Tags and children are cut from slabs, not grown one list at a
	// time: a plan has 100,000s of them.
	var tags slab[Tag]
	var children slab[digest.Digest]
	c.lit("{\n  \"version\": ")
	p.Version = int(c.int())
	c.lit(",\n  \"registry\": ")
	p.Registry = c.str()
	c.lit(",\n  \"includeReferrers\": ")
	p.IncludeReferrers = c.bool()
	c.lit(",\n  \"repositories\": [")
	p.Repositories = []Repository{}
	if c.opt("\n") {
		for !c.bad {
			var r Repository
			c.lit("    {\"name\":")
			r.Name = c.str()
			c.lit(",\"tags\":[")
			r.Tags = []Tag{}
			if c.opt("\n") {
				tags.start()
				for !c.bad {
					var t Tag
					c.lit("      {\"name\":")
					t.Name = c.str()
					c.lit(",\"digest\":")
					t.Digest = digest.Digest(c.str())
					c.lit(",\"mediaType\":")
					t.MediaType = c.str()
					c.lit(",\"size\":")
					t.Size = c.int()
					c.lit("}")
					tags.add(t)
					if !c.more() {
						break
					}
				}
				r.Tags = tags.end()
				c.lit("    ")
			}
			c.lit("]}")
			p.Repositories = append(p.Repositories, r)
			if !c.more() {
				break
			}
		}
		c.lit("  ")
	}
	c.lit("],\n  \"content\": [")
	// At most one entry a line from here: the list is made once, at
	// about its size, not grown by copies.
	p.Content = make([]Content, 0, strings.Count(c.rest(), "\n"))
	if c.opt("\n") {
		for !c.bad {
			var k Content
			c.lit("    {\"digest\":")
			k.Digest = digest.Digest(c.str())
			c.lit(",\"mediaType\":")
			k.MediaType = c.str()
			c.lit(",\"size\":")
			k.Size = c.int()
			c.lit(",\"kind\":")
			k.Kind = c.str()
			if c.opt(",\"children\":[") {
				// omitempty: Encode never writes an empty list.
				children.start()
				for !c.bad {
					children.add(digest.Digest(c.str()))
					if !c.opt(",") {
						break
					}
				}
				k.Children = children.end()
				c.lit("]")
			}
			c.lit("}")
			p.Content = append(p.Content, k)
			if !c.more() {
				break
			}
		}
		c.lit("  ")
	}
	c.lit("]")
	if c.opt(",\n  \"referrers\": [\n") {
		p.Referrers = []Referrer{}
		for !c.bad {
			var r Referrer
			c.lit("    {\"digest\":")
			r.Digest = digest.Digest(c.str())
			c.lit(",\"subject\":")
			r.Subject = digest.Digest(c.str())
			c.lit(",\"repositories\":[")
			r.Repositories = []string{}
			if !c.opt("]") {
				for !c.bad {
					r.Repositories = append(r.Repositories, c.str())
					if !c.opt(",") {
						break
					}
				}
				c.lit("]")
			}
			c.lit("}")
			p.Referrers = append(p.Referrers, r)
			if !c.more() {
				break
			}
		}
		c.lit("  ]")
	}
	c.lit("\n}\n")
	if c.bad || c.i != len(c.s) {
		return nil, false
	}
	return &p, true
}

// slab hands out lists cut from shared chunks: start, add, end gives the
// list added since start (capacity capped, so that nothing appended to
// one list can overwrite the next).
type slab[T any] struct {
	buf   []T
	first int
}

func (s *slab[T]) start() { s.first = len(s.buf) }

func (s *slab[T]) add(v T) {
	if len(s.buf) == cap(s.buf) {
		// A new chunk, the list so far moved to it; earlier lists keep
		// the old chunk.
		n := max(4096, 2*(len(s.buf)-s.first))
		buf := make([]T, 0, n)
		s.buf = append(buf, s.buf[s.first:]...)
		s.first = 0
	}
	s.buf = append(s.buf, v)
}

func (s *slab[T]) end() []T { return s.buf[s.first:len(s.buf):len(s.buf)] }

// cursor reads the canonical layout; the first mismatch sets bad and
// every later read returns a zero value.
type cursor struct {
	s   string
	i   int
	bad bool
}

// rest is what is left to read.
func (c *cursor) rest() string {
	if c.bad {
		return ""
	}
	return c.s[c.i:]
}

func (c *cursor) lit(x string) {
	if c.bad || len(c.s)-c.i < len(x) || c.s[c.i:c.i+len(x)] != x {
		c.bad = true
		return
	}
	c.i += len(x)
}

// opt consumes x if it is next.
func (c *cursor) opt(x string) bool {
	if c.bad || len(c.s)-c.i < len(x) || c.s[c.i:c.i+len(x)] != x {
		return false
	}
	c.i += len(x)
	return true
}

// more reads the end of a list entry: ",\n" (another follows) or "\n".
func (c *cursor) more() bool {
	if c.opt(",\n") {
		return true
	}
	c.lit("\n")
	return false
}

// str reads a JSON string of printable ASCII without escapes: those bytes
// are the string's value. Anything else (an escape, a control character,
// a byte of a multi-byte character, whose validity encoding/json would
// judge) is left to encoding/json.
func (c *cursor) str() string {
	if c.bad || c.i >= len(c.s) || c.s[c.i] != '"' {
		c.bad = true
		return ""
	}
	start := c.i + 1
	for j := start; j < len(c.s); j++ {
		switch b := c.s[j]; {
		case b == '"':
			c.i = j + 1
			return c.s[start:j]
		case b == '\\' || b < 0x20 || b >= 0x80:
			c.bad = true
			return ""
		}
	}
	c.bad = true
	return ""
}

// int reads an integer as encoding/json writes one: -?(0|[1-9][0-9]*),
// within int64.
func (c *cursor) int() int64 {
	if c.bad {
		return 0
	}
	neg := c.opt("-")
	start := c.i
	var n int64
	for c.i < len(c.s) && c.s[c.i] >= '0' && c.s[c.i] <= '9' {
		d := int64(c.s[c.i] - '0')
		if n > (1<<63-1-d)/10 {
			c.bad = true // beyond int64: encoding/json says so
			return 0
		}
		n = n*10 + d
		c.i++
	}
	if digits := c.i - start; digits == 0 || digits > 1 && c.s[start] == '0' {
		c.bad = true
		return 0
	}
	if c.i < len(c.s) && (c.s[c.i] == '.' || c.s[c.i] == 'e' || c.s[c.i] == 'E') {
		c.bad = true
		return 0
	}
	if neg {
		n = -n
	}
	return n
}

func (c *cursor) bool() bool {
	if c.opt("true") {
		return true
	}
	c.lit("false")
	return false
}
