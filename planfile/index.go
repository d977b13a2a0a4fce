package planfile

import (
	"slices"

	"github.com/opencontainers/go-digest"
)

// Index answers which content each tag needs. It indexes a valid plan
// (Validate) and is not safe for concurrent use.
type Index struct {
	plan     *Plan
	content  map[string]int32 // digest → index into Content
	children [][]int32
	// referrers by subject's content index (a slice, not a map: the walk
	// looks it up at every node): the referrer's content index
	// and the repositories (indexes into Repositories) it is in.
	referrers [][]indexReferrer

	stamp []uint32
	gen   uint32
	stack []int32
}

type indexReferrer struct {
	content int32
	repos   []int32 // sorted
}

// NewIndex indexes p; digests p does not list are skipped (Validate
// reports them).
func NewIndex(p *Plan) *Index {
	x := &Index{
		plan:      p,
		content:   make(map[string]int32, len(p.Content)),
		children:  make([][]int32, len(p.Content)),
		referrers: make([][]indexReferrer, len(p.Content)),
		stamp:     make([]uint32, len(p.Content)),
	}
	for i, c := range p.Content {
		x.content[string(c.Digest)] = int32(i)
	}
	for i, c := range p.Content {
		for _, d := range c.Children {
			if j, ok := x.content[string(d)]; ok {
				x.children[i] = append(x.children[i], j)
			}
		}
	}
	for _, r := range p.Referrers {
		ci, ok1 := x.content[string(r.Digest)]
		si, ok2 := x.content[string(r.Subject)]
		if !ok1 || !ok2 {
			continue
		}
		ir := indexReferrer{content: ci}
		for _, name := range r.Repositories {
			if ri, ok := searchRepo(p.Repositories, name); ok {
				ir.repos = append(ir.repos, int32(ri))
			}
		}
		slices.Sort(ir.repos)
		x.referrers[si] = append(x.referrers[si], ir)
	}
	return x
}

// Plan is the plan indexed.
func (x *Index) Plan() *Plan { return x.plan }

// Needs returns what tag t of repository r (indexes into Repositories and
// its Tags) needs: its manifest, everything that manifest references
// (recursively through indexes), and, in repository r, the referrers of
// each of those manifests (recursively), as ascending indexes into
// Content, each once. The result is appended to buf.
func (x *Index) Needs(r, t int, buf []int32) []int32 {
	x.next()
	return x.walk(int32(r), x.plan.Repositories[r].Tags[t].Digest, buf)
}

// RepositoryNeeds is Needs of every tag of repository r, each piece of
// content once.
func (x *Index) RepositoryNeeds(r int, buf []int32) []int32 {
	x.next()
	start := len(buf)
	for _, t := range x.plan.Repositories[r].Tags {
		buf = x.walkFrom(int32(r), t.Digest, buf)
	}
	slices.Sort(buf[start:])
	return buf
}

// Size is the total size of the content indexes.
func (x *Index) Size(content []int32) int64 {
	var n int64
	for _, c := range content {
		n += x.plan.Content[c].Size
	}
	return n
}

func (x *Index) next() {
	x.gen++
	if x.gen == 0 { // wrapped: start the stamps afresh
		clear(x.stamp)
		x.gen = 1
	}
}

func (x *Index) walk(repo int32, root digest.Digest, buf []int32) []int32 {
	start := len(buf)
	buf = x.walkFrom(repo, root, buf)
	slices.Sort(buf[start:])
	return buf
}

// walkFrom appends what root needs in repo that this generation has not
// stamped yet.
func (x *Index) walkFrom(repo int32, root digest.Digest, buf []int32) []int32 {
	ri, ok := x.content[string(root)]
	if !ok {
		return buf
	}
	if x.stamp[ri] == x.gen {
		return buf
	}
	x.stamp[ri] = x.gen
	x.stack = append(x.stack[:0], ri)
	for len(x.stack) > 0 {
		c := x.stack[len(x.stack)-1]
		x.stack = x.stack[:len(x.stack)-1]
		buf = append(buf, c)
		for _, k := range x.children[c] {
			if x.stamp[k] != x.gen {
				x.stamp[k] = x.gen
				x.stack = append(x.stack, k)
			}
		}
		for _, rf := range x.referrers[c] {
			if _, ok := slices.BinarySearch(rf.repos, repo); !ok {
				continue
			}
			if x.stamp[rf.content] != x.gen {
				x.stamp[rf.content] = x.gen
				x.stack = append(x.stack, rf.content)
			}
		}
	}
	return buf
}

// reached marks the content some tag needs.
func (x *Index) reached() []bool {
	out := make([]bool, len(x.plan.Content))
	var buf []int32
	for r := range x.plan.Repositories {
		buf = x.RepositoryNeeds(r, buf[:0])
		for _, c := range buf {
			out[c] = true
		}
	}
	return out
}
