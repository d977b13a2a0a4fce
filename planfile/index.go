package planfile

import (
	"slices"

	"github.com/opencontainers/go-digest"
)

// Index answers which content each tag needs. It indexes a valid plan
// (Validate; ReadIndex gives the index its validation built) and is not
// safe for concurrent use.
//
// Everything is indexes into the plan's lists (int32: a plan of millions
// of entries fits), in flat slices: a pod of a sharded run indexes a plan
// of 100,000 tags at start, and one allocation per entry would be most of
// its time.
type Index struct {
	plan    *Plan
	content *digestTable // digest → index into Content
	// children of content i: childList[childStart[i]:childStart[i+1]].
	childStart, childList []int32
	// referrers of content i (as subject; looked up at every node of a
	// walk): refList[refStart[i]:refStart[i+1]], each the referrer's
	// content index and the repositories (indexes into Repositories,
	// ascending) it is in, refRepos[from:to].
	refStart []int32
	refList  []indexReferrer
	refRepos []int32
	// roots[tagStart[r]+t] is the content index of tag t of repository r
	// (-1: not in Content).
	tagStart, roots []int32
	// What each repository needs (Needs of all its tags, ascending):
	// needList[needStart[r]:needStart[r+1]]. Validation (everything is
	// needed by some tag) and the assignment of shards both start from it.
	needStart, needList []int32

	stamp []uint32
	gen   uint32
	stack []int32
}

type indexReferrer struct {
	content, from, to int32
}

// NewIndex indexes p; digests p does not list are skipped (Validate
// reports them).
func NewIndex(p *Plan) *Index {
	n := len(p.Content)
	x := &Index{
		plan:       p,
		content:    newDigestTable(p.Content),
		childStart: make([]int32, n+1),
		refStart:   make([]int32, n+2),
		tagStart:   make([]int32, len(p.Repositories)+1),
		stamp:      make([]uint32, n),
	}
	children := 0
	for _, c := range p.Content {
		children += len(c.Children)
	}
	x.childList = make([]int32, 0, children)
	for i, c := range p.Content {
		for _, d := range c.Children {
			if j, ok := x.content.lookup(d); ok {
				x.childList = append(x.childList, j)
			}
		}
		x.childStart[i+1] = int32(len(x.childList))
	}
	// Referrers grouped by subject: counted, then placed.
	type ref struct{ content, subject int32 }
	refs := make([]ref, 0, len(p.Referrers))
	for _, r := range p.Referrers {
		ci, ok1 := x.content.lookup(r.Digest)
		si, ok2 := x.content.lookup(r.Subject)
		if !ok1 || !ok2 {
			ci, si = -1, -1
		} else {
			x.refStart[si+2]++
		}
		refs = append(refs, ref{ci, si})
	}
	for i := 2; i < len(x.refStart); i++ {
		x.refStart[i] += x.refStart[i-1]
	}
	x.refList = make([]indexReferrer, x.refStart[n+1])
	for i, r := range p.Referrers {
		rf := refs[i]
		if rf.content < 0 {
			continue
		}
		from := int32(len(x.refRepos))
		for _, name := range r.Repositories {
			if ri, ok := searchRepo(p.Repositories, name); ok {
				x.refRepos = append(x.refRepos, int32(ri))
			}
		}
		slices.Sort(x.refRepos[from:])
		x.refList[x.refStart[rf.subject+1]] = indexReferrer{content: rf.content, from: from, to: int32(len(x.refRepos))}
		x.refStart[rf.subject+1]++
	}
	x.refStart = x.refStart[:n+1]
	tags := 0
	for r, repo := range p.Repositories {
		tags += len(repo.Tags)
		x.tagStart[r+1] = int32(tags)
	}
	x.roots = make([]int32, 0, tags)
	for _, repo := range p.Repositories {
		for _, t := range repo.Tags {
			ci, ok := x.content.lookup(t.Digest)
			if !ok {
				ci = -1
			}
			x.roots = append(x.roots, ci)
		}
	}
	x.needStart = make([]int32, len(p.Repositories)+1)
	for r := range p.Repositories {
		x.next()
		start := len(x.needList)
		for _, root := range x.roots[x.tagStart[r]:x.tagStart[r+1]] {
			x.needList = x.walkFrom(int32(r), root, x.needList)
		}
		slices.Sort(x.needList[start:])
		x.needStart[r+1] = int32(len(x.needList))
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
	start := len(buf)
	buf = x.walkFrom(int32(r), x.roots[int(x.tagStart[r])+t], buf)
	slices.Sort(buf[start:])
	return buf
}

// RepositoryNeeds is Needs of every tag of repository r, each piece of
// content once, appended to buf.
func (x *Index) RepositoryNeeds(r int, buf []int32) []int32 {
	return append(buf, x.RepositoryContent(r)...)
}

// RepositoryContent is RepositoryNeeds(r, nil) without a copy: the
// slice is the index's own, not to be changed.
func (x *Index) RepositoryContent(r int) []int32 {
	return x.needList[x.needStart[r]:x.needStart[r+1]:x.needStart[r+1]]
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

// walkFrom appends what content root needs in repo that this generation
// has not stamped yet.
func (x *Index) walkFrom(repo int32, root int32, buf []int32) []int32 {
	if root < 0 || x.stamp[root] == x.gen {
		return buf
	}
	x.stamp[root] = x.gen
	x.stack = append(x.stack[:0], root)
	for len(x.stack) > 0 {
		c := x.stack[len(x.stack)-1]
		x.stack = x.stack[:len(x.stack)-1]
		buf = append(buf, c)
		for _, k := range x.childList[x.childStart[c]:x.childStart[c+1]] {
			if x.stamp[k] != x.gen {
				x.stamp[k] = x.gen
				x.stack = append(x.stack, k)
			}
		}
		for _, rf := range x.refList[x.refStart[c]:x.refStart[c+1]] {
			if _, ok := slices.BinarySearch(x.refRepos[rf.from:rf.to], repo); !ok {
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

// lookup is the index in Content of digest d.
func (x *Index) lookup(d digest.Digest) (int32, bool) {
	i, ok := x.content.lookup(d)
	return i, ok
}

// reached marks the content some tag needs.
func (x *Index) reached() []bool {
	out := make([]bool, len(x.plan.Content))
	for _, c := range x.needList {
		out[c] = true
	}
	return out
}

// find is lookup's index, -1 when d is not in Content.
func (x *Index) find(d digest.Digest) int32 {
	if i, ok := x.lookup(d); ok {
		return i
	}
	return -1
}
