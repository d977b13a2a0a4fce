// Package shard splits a plan (package planfile) into N shards that run
// apart, e.g. as the pods of a Kubernetes Indexed Job. The assignment is a
// pure function of the plan and N: every pod computes it alone, and all
// agree.
//
// Shards are whole repositories, balanced by the unique bytes each shard
// moves: content shared by repositories of one shard counts (and moves)
// once. Content shared by repositories of different shards is moved by
// each shard that needs it: a shard fetches everything its tags need, so
// a base layer used by repositories in k shards is fetched k times (and
// stored in k archives, where a restore of the parts uploads it once).
// The assignment puts a repository where its content already is as long
// as that shard stays within 5% of its fair share, which keeps that cost
// low; Assignment.MovedBytes against the plan's unique bytes is what it is.
//
// A repository larger than its fair share (the plan's unique bytes ÷ N),
// typically one CI repository with tens of thousands of tags, is split by
// tags: each of its tags is placed on its own, and each shard fetches what
// its tags of it need.
package shard

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"

	"github.com/regvault/regvault/planfile"
)

// MaxShards bounds N: the assignment's memory grows with N times the
// plan's content.
const MaxShards = 1000

// slack is how far beyond its fair share (1/slack of it) a shard takes a
// unit that shares content it holds already, rather than have another
// shard move that content again.
const slack = 20

// Part is what one shard takes of one repository.
type Part struct {
	Repository string
	// Tags, sorted.
	Tags []string
	// Whole says the part is every tag of the repository in the plan.
	Whole bool
}

// Shard is one of the N shards.
type Shard struct {
	Index int // 0 … Count-1, as JOB_COMPLETION_INDEX
	Count int
	// Parts, sorted by repository.
	Parts []Part
	// Bytes is the unique bytes this shard moves: the content its tags
	// need, each piece once.
	Bytes int64
	// TagCount is the number of tags of all parts.
	TagCount int
}

// Name is the shard as "I/N", e.g. "2/8".
func (s *Shard) Name() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Has says whether tag of repo is in the shard.
func (s *Shard) Has(repo, tag string) bool {
	i, ok := slices.BinarySearchFunc(s.Parts, repo, func(p Part, r string) int { return cmp.Compare(p.Repository, r) })
	if !ok {
		return false
	}
	_, ok = slices.BinarySearch(s.Parts[i].Tags, tag)
	return ok
}

// Plan is p filtered to the shard's tags: what the shard moves.
func (s *Shard) Plan(p *planfile.Plan) *planfile.Plan {
	return p.Filter(s.Has)
}

// PlanOf is Plan of the indexed plan, from its index.
func (s *Shard) PlanOf(x *planfile.Index) *planfile.Plan {
	return x.Filter(s.Has)
}

// Assignment is the plan split into shards.
type Assignment struct {
	Shards []Shard
	// UniqueBytes is the plan's unique bytes: what one unsharded run
	// moves.
	UniqueBytes int64
	// MovedBytes is the sum of the shards' Bytes: what all shards move
	// together. MovedBytes - UniqueBytes is the cost of content shared
	// across shards.
	MovedBytes int64
}

// unit is what is placed on a shard at once: a whole repository, or one
// tag of a repository larger than its fair share.
type unit struct {
	repo  int
	tag   int // -1: every tag
	needs []int32
	size  int64
}

// Assign splits p into n shards. It is deterministic: the same plan and n
// give the same assignment. p must be valid (planfile.Read validates; a
// plan built in code: Plan.Validate). Its time is linear in the plan times
// n: each repository or tag placed looks at what each shard holds.
func Assign(p *planfile.Plan, n int) (*Assignment, error) {
	if n < 1 || n > MaxShards {
		return nil, fmt.Errorf("%d shards: the number of shards must be 1 to %d", n, MaxShards)
	}
	return AssignIndex(planfile.NewIndex(p), n)
}

// AssignIndex is Assign of the indexed plan (planfile.ReadIndex): the
// plan is not indexed again.
func AssignIndex(x *planfile.Index, n int) (*Assignment, error) {
	if n < 1 || n > MaxShards {
		return nil, fmt.Errorf("%d shards: the number of shards must be 1 to %d", n, MaxShards)
	}
	p := x.Plan()
	total := p.UniqueBytes()
	fair := (total + int64(n) - 1) / int64(n)

	// Whole repositories first, largest first (as longest-processing-time
	// scheduling), then the tags of the repositories that are split, in
	// plan order (neighbouring tags tend to share layers). Ties in plan
	// order: a total order, so the result depends on the plan alone.
	var units, tagUnits []unit
	var needBuf []int32
	for r, repo := range p.Repositories {
		if len(repo.Tags) == 0 {
			continue // nothing to move: no shard names it
		}
		needs := x.RepositoryContent(r) // read only
		size := x.Size(needs)
		if size <= fair || len(repo.Tags) < 2 {
			units = append(units, unit{repo: r, tag: -1, needs: needs, size: size})
			continue
		}
		for t := range repo.Tags {
			// One buffer for the needs of all tags (a repository split by
			// tags has thousands): each unit keeps its part of it, capped.
			start := len(needBuf)
			needBuf = x.Needs(r, t, needBuf)
			needs := needBuf[start:len(needBuf):len(needBuf)]
			tagUnits = append(tagUnits, unit{repo: r, tag: t, needs: needs, size: x.Size(needs)})
		}
	}
	slices.SortStableFunc(units, func(a, b unit) int {
		if c := cmp.Compare(b.size, a.size); c != 0 {
			return c
		}
		return cmp.Compare(a.repo, b.repo)
	})
	units = append(units, tagUnits...)

	// A unit goes to the shard that already holds most of its content
	// (it moves least there) as long as that shard stays within slack of
	// the fair share; when no shard can take it so, to the shard whose
	// load after taking it is least.
	limit := fair + fair/slack
	words := (len(p.Content) + 63) / 64
	held := make([][]uint64, n) // content each shard needs so far
	for s := range held {
		held[s] = make([]uint64, words)
	}
	load := make([]int64, n)
	owner := make([]int32, len(units))
	for i, u := range units {
		fit, fitAdd := -1, int64(0)      // least added bytes within the limit
		least, leastLoad := -1, int64(0) // least load after
		for s := range n {
			if least >= 0 && load[s] >= leastLoad && load[s] > limit {
				continue // can beat neither choice
			}
			add := int64(0)
			h := held[s]
			for _, c := range u.needs {
				if h[c>>6]&(1<<(uint(c)&63)) == 0 {
					add += p.Content[c].Size
				}
			}
			if l := load[s] + add; l <= limit && (fit < 0 || add < fitAdd || add == fitAdd && l < load[fit]+fitAdd) {
				fit, fitAdd = s, add
			}
			if l := load[s] + add; least < 0 || l < leastLoad {
				least, leastLoad = s, l
			}
		}
		best := least
		if fit >= 0 {
			best = fit
		}
		h := held[best]
		for _, c := range u.needs {
			if h[c>>6]&(1<<(uint(c)&63)) == 0 {
				h[c>>6] |= 1 << (uint(c) & 63)
				load[best] += p.Content[c].Size
			}
		}
		owner[i] = int32(best)
	}

	a := &Assignment{Shards: make([]Shard, n), UniqueBytes: total}
	// The parts of each shard, in plan order.
	type key struct{ shard, repo int }
	tags := map[key][]int{}
	whole := map[key]bool{}
	for i, u := range units {
		k := key{int(owner[i]), u.repo}
		if u.tag < 0 {
			whole[k] = true
		} else {
			tags[k] = append(tags[k], u.tag)
		}
	}
	for s := range n {
		sh := &a.Shards[s]
		sh.Index, sh.Count = s, n
		sh.Bytes = heldBytes(p, held[s])
		a.MovedBytes += sh.Bytes
	}
	for r, repo := range p.Repositories {
		for s := range n {
			k := key{s, r}
			sh := &a.Shards[s]
			switch {
			case whole[k]:
				part := Part{Repository: repo.Name, Whole: true, Tags: make([]string, len(repo.Tags))}
				for t, tg := range repo.Tags {
					part.Tags[t] = tg.Name
				}
				sh.Parts = append(sh.Parts, part)
				sh.TagCount += len(part.Tags)
			case len(tags[k]) > 0:
				ts := tags[k]
				slices.Sort(ts)
				part := Part{Repository: repo.Name, Whole: len(ts) == len(repo.Tags)}
				for _, t := range ts {
					part.Tags = append(part.Tags, repo.Tags[t].Name)
				}
				sh.Parts = append(sh.Parts, part)
				sh.TagCount += len(part.Tags)
			}
		}
	}
	return a, nil
}

func heldBytes(p *planfile.Plan, h []uint64) int64 {
	var n int64
	for w, word := range h {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			n += p.Content[w*64+b].Size
			word &= word - 1
		}
	}
	return n
}
