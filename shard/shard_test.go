package shard_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/planfile"
	"github.com/regvault/regvault/shard"
)

var (
	// varied: 200 repositories whose sizes vary 100×.
	varied = workload{seed: 1, repos: 200, maxTags: 30, minSize: 20 * mib}
	// huge: 40 such repositories and one of 10,000 tags holding most bytes.
	huge = workload{seed: 2, repos: 40, maxTags: 30, minSize: 20 * mib, hugeTags: 10_000, hugeSize: 40_000 * mib}
)

// checkCover checks that every tag of p is in exactly one shard, that the
// shards name nothing else, and that each shard's Bytes is the content its
// tags need, each piece once.
func checkCover(t *testing.T, p *planfile.Plan, a *shard.Assignment, n int) {
	t.Helper()
	if len(a.Shards) != n {
		t.Fatalf("%d shards, want %d", len(a.Shards), n)
	}
	x := planfile.NewIndex(p)
	seen := map[string]int{}
	var moved int64
	for i, s := range a.Shards {
		if s.Index != i || s.Count != n {
			t.Errorf("shard %d is %s", i, s.Name())
		}
		if !slices.IsSortedFunc(s.Parts, func(a, b shard.Part) int { return strings.Compare(a.Repository, b.Repository) }) {
			t.Errorf("shard %d: parts not sorted", i)
		}
		need := map[int32]bool{}
		tags := 0
		for _, part := range s.Parts {
			ri, ok := slices.BinarySearchFunc(p.Repositories, part.Repository, func(r planfile.Repository, n string) int { return strings.Compare(r.Name, n) })
			if !ok {
				t.Fatalf("shard %d: repository %s is not in the plan", i, part.Repository)
			}
			repo := p.Repositories[ri]
			if !slices.IsSorted(part.Tags) || len(part.Tags) == 0 {
				t.Errorf("shard %d: %s: tags %v", i, part.Repository, part.Tags)
			}
			if part.Whole != (len(part.Tags) == len(repo.Tags)) {
				t.Errorf("shard %d: %s: whole %v with %d of %d tags", i, part.Repository, part.Whole, len(part.Tags), len(repo.Tags))
			}
			for _, tag := range part.Tags {
				ti, ok := slices.BinarySearchFunc(repo.Tags, tag, func(t planfile.Tag, n string) int { return strings.Compare(t.Name, n) })
				if !ok {
					t.Fatalf("shard %d: %s:%s is not in the plan", i, part.Repository, tag)
				}
				seen[part.Repository+":"+tag]++
				for _, c := range x.Needs(ri, ti, nil) {
					need[c] = true
				}
				if !s.Has(part.Repository, tag) {
					t.Errorf("shard %d: Has(%s, %s) is false", i, part.Repository, tag)
				}
			}
			tags += len(part.Tags)
		}
		var bytes int64
		for c := range need {
			bytes += p.Content[c].Size
		}
		if s.Bytes != bytes || s.TagCount != tags {
			t.Errorf("shard %d: Bytes %d, TagCount %d; its tags need %d bytes, it has %d tags", i, s.Bytes, s.TagCount, bytes, tags)
		}
		moved += bytes
	}
	for _, r := range p.Repositories {
		for _, tag := range r.Tags {
			if k := r.Name + ":" + tag.Name; seen[k] != 1 {
				t.Errorf("%s is in %d shards", k, seen[k])
			}
			delete(seen, r.Name+":"+tag.Name)
		}
	}
	if len(seen) != 0 {
		t.Errorf("shards name tags the plan does not: %v", seen)
	}
	if a.UniqueBytes != p.UniqueBytes() || a.MovedBytes != moved || moved < a.UniqueBytes {
		t.Errorf("UniqueBytes %d (plan %d), MovedBytes %d (shards %d)", a.UniqueBytes, p.UniqueBytes(), a.MovedBytes, moved)
	}
}

func TestAssignCoversEveryTagOnce(t *testing.T) {
	for _, w := range []struct {
		name string
		w    workload
	}{{"varied", varied}, {"huge", huge}} {
		p := w.w.generate()
		for _, n := range []int{1, 2, 3, 4, 16} {
			a, err := shard.Assign(p, n)
			if err != nil {
				t.Fatal(err)
			}
			checkCover(t, p, a, n)
			if n == 1 && a.Shards[0].Bytes != p.UniqueBytes() {
				t.Errorf("%s: one shard moves %d bytes, the plan's unique bytes are %d", w.name, a.Shards[0].Bytes, p.UniqueBytes())
			}
		}
	}
}

// The largest shard moves at most 10% more than total ÷ N.
func TestAssignBalance(t *testing.T) {
	for _, w := range []struct {
		name string
		w    workload
	}{{"varied", varied}, {"huge", huge}} {
		p := w.w.generate()
		for _, n := range []int{4, 16} {
			a, err := shard.Assign(p, n)
			if err != nil {
				t.Fatal(err)
			}
			fair := float64(p.UniqueBytes()) / float64(n)
			var largest int64
			for _, s := range a.Shards {
				largest = max(largest, s.Bytes)
			}
			t.Logf("%s, N=%d: %d repositories, %d tags, unique %d MiB; largest shard %.3f of total/N; all shards move %.4f× the unique bytes",
				w.name, n, len(p.Repositories), p.TagCount(), p.UniqueBytes()/mib, float64(largest)/fair, float64(a.MovedBytes)/float64(a.UniqueBytes))
			if float64(largest) > 1.1*fair {
				t.Errorf("%s, N=%d: the largest shard moves %d bytes, %.3f of total/N", w.name, n, largest, float64(largest)/fair)
			}
		}
	}
}

func TestAssignSplitsOnlyLargeRepositories(t *testing.T) {
	p := huge.generate()
	a, err := shard.Assign(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	fair := p.UniqueBytes() / 4
	x := planfile.NewIndex(p)
	parts := map[string]int{}
	for _, s := range a.Shards {
		for _, part := range s.Parts {
			parts[part.Repository]++
		}
	}
	for i, r := range p.Repositories {
		size := x.Size(x.RepositoryNeeds(i, nil))
		if size <= fair && parts[r.Name] != 1 {
			t.Errorf("%s (%d bytes, fair share %d) is in %d shards", r.Name, size, fair, parts[r.Name])
		}
	}
	if parts["ci/builds"] < 2 {
		t.Errorf("the repository of 10,000 tags is in %d shards", parts["ci/builds"])
	}
}

// Content shared by the repositories of one shard counts once.
func TestAssignSharedContentCountsOnce(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	p := &planfile.Plan{Version: 1, Registry: "r.example", Content: []planfile.Content{
		{Digest: d("big"), MediaType: "application/octet-stream", Size: 1000, Kind: planfile.KindLayer},
		{Digest: d("a"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 10, Kind: planfile.KindManifest, Children: []digest.Digest{d("big")}},
		{Digest: d("b"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 20, Kind: planfile.KindManifest, Children: []digest.Digest{d("big")}},
		{Digest: d("c"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 30, Kind: planfile.KindManifest, Children: []digest.Digest{d("other")}},
		{Digest: d("other"), MediaType: "application/octet-stream", Size: 980, Kind: planfile.KindLayer},
	}, Repositories: []planfile.Repository{
		{Name: "a", Tags: []planfile.Tag{{Name: "1", Digest: d("a"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 10}}},
		{Name: "b", Tags: []planfile.Tag{{Name: "1", Digest: d("b"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 20}}},
		{Name: "c", Tags: []planfile.Tag{{Name: "1", Digest: d("c"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 30}}},
	}}
	p.Sort()
	a, err := shard.Assign(p, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, p, a, 2)
	// a and b share 1000 bytes: together they move 1030, c moves 1010
	// (apart, a or b with c would move 2020 or 2010, the other 1020).
	var got []int64
	for _, s := range a.Shards {
		got = append(got, s.Bytes)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int64{1010, 1030}) || a.MovedBytes != a.UniqueBytes {
		t.Errorf("shards move %v (moved %d, unique %d), want 1010 and 1030", got, a.MovedBytes, a.UniqueBytes)
	}
}

func TestAssignDeterministic(t *testing.T) {
	p := huge.generate()
	a1, err := shard.Assign(p, 16)
	if err != nil {
		t.Fatal(err)
	}
	// Through the file, as each pod reads it.
	var b bytes.Buffer
	if err := p.Encode(&b); err != nil {
		t.Fatal(err)
	}
	q, err := planfile.Read(&b)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := shard.Assign(q, 16)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a1, a2) {
		t.Errorf("two assignments of one plan differ")
	}
}

func TestAssignRefuses(t *testing.T) {
	p := varied.generate()
	for _, n := range []int{0, -1, shard.MaxShards + 1} {
		if _, err := shard.Assign(p, n); err == nil || !strings.Contains(err.Error(), "number of shards must be 1 to") {
			t.Errorf("Assign(%d): %v", n, err)
		}
	}
	empty := &planfile.Plan{Version: 1, Registry: "r.example", Repositories: []planfile.Repository{{Name: "no-tags"}}}
	if err := empty.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := shard.Assign(empty, 3)
	if err != nil || len(a.Shards) != 3 || a.MovedBytes != 0 {
		t.Fatalf("empty plan: %+v, %v", a, err)
	}
	for _, s := range a.Shards {
		if len(s.Parts) != 0 {
			t.Errorf("shard %s of a plan without tags: %+v", s.Name(), s.Parts)
		}
	}
}

func TestParseSpec(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k != shard.IndexEnv {
				t.Errorf("read $%s", k)
			}
			return v
		}
	}
	cases := []struct {
		spec, env string
		i, n      int
		err       string
	}{
		{spec: "0/4", i: 0, n: 4},
		{spec: "3/4", i: 3, n: 4},
		{spec: "auto/8", env: "5", i: 5, n: 8},
		{spec: "/8", env: "7", i: 7, n: 8},
		{spec: "4/4", err: "index 4 is out of range: the shards of 4 are 0 to 3"},
		{spec: "-1/4", err: "index -1 is out of range"},
		{spec: "auto/4", env: "4", err: "index 4 ($JOB_COMPLETION_INDEX) is out of range"},
		{spec: "auto/4", err: "$JOB_COMPLETION_INDEX is not set"},
		{spec: "auto/4", env: "x", err: `index "x" ($JOB_COMPLETION_INDEX) is not a whole number`},
		{spec: "a/4", err: `index "a" is not a whole number`},
		{spec: "1/0", err: "must be a whole number from 1 to"},
		{spec: "1/x", err: "must be a whole number from 1 to"},
		{spec: "1/1001", err: "must be a whole number from 1 to 1000"},
		{spec: "4", err: "use I/N"},
		{spec: "", err: "use I/N"},
	}
	for _, c := range cases {
		i, n, err := shard.ParseSpec(c.spec, env(c.env))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseSpec(%q) with $%s=%q: %v, want an error with %q", c.spec, shard.IndexEnv, c.env, err, c.err)
			}
			continue
		}
		if err != nil || i != c.i || n != c.n {
			t.Errorf("ParseSpec(%q) with $%s=%q: %d, %d, %v; want %d, %d", c.spec, shard.IndexEnv, c.env, i, n, err, c.i, c.n)
		}
	}
}

func TestSelect(t *testing.T) {
	p := varied.generate()
	a, err := shard.Assign(p, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(shard.IndexEnv, "2")
	s, err := shard.Select(p, "auto/4")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*s, a.Shards[2]) {
		t.Errorf("Select(auto/4) with index 2 is shard %s", s.Name())
	}
	// The shard's plan is what it moves.
	sp := s.Plan(p)
	if err := sp.Validate(); err != nil {
		t.Fatal(err)
	}
	if sp.UniqueBytes() != s.Bytes || sp.TagCount() != s.TagCount {
		t.Errorf("shard plan: %d bytes, %d tags; shard: %d bytes, %d tags", sp.UniqueBytes(), sp.TagCount(), s.Bytes, s.TagCount)
	}
	if _, err := shard.Select(p, "4/4"); err == nil {
		t.Errorf("Select(4/4) succeeded")
	}
}

// A plan of 100,000 tags is assigned (the benchmark says how fast).
func TestAssignLargePlan(t *testing.T) {
	if testing.Short() {
		t.Skip("large plan")
	}
	p := large.generate()
	if p.TagCount() < 100_000 {
		t.Fatalf("%d tags", p.TagCount())
	}
	a, err := shard.Assign(p, 16)
	if err != nil {
		t.Fatal(err)
	}
	checkCover(t, p, a, 16)
}

// large: 100,000 tags, most of them in one repository.
var large = workload{seed: 3, repos: 2000, maxTags: 50, minSize: 20 * mib, hugeTags: 50_000, hugeSize: 200_000 * mib}

func BenchmarkAssign(b *testing.B) {
	p := large.generate()
	b.Logf("%d repositories, %d tags, %d content", len(p.Repositories), p.TagCount(), len(p.Content))
	b.ResetTimer()
	for b.Loop() {
		if _, err := shard.Assign(p, 16); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadAndSelect is what a pod does at start (cmd/regvault's
// selectShard): read and validate a plan of 100,000 tags, compute its
// shard and the shard's plan.
func BenchmarkReadAndSelect(b *testing.B) {
	var buf bytes.Buffer
	if err := large.generate().Encode(&buf); err != nil {
		b.Fatal(err)
	}
	b.Logf("plan file of %d bytes", buf.Len())
	path := filepath.Join(b.TempDir(), "plan.json")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	cpu := processCPU()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		x, err := planfile.ReadIndex(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		s, err := shard.SelectIndex(x, "auto/16", func(string) string { return "3" })
		if err != nil {
			b.Fatal(err)
		}
		if sp := s.PlanOf(x); len(sp.Repositories) == 0 {
			b.Fatal("empty shard")
		}
	}
	b.ReportMetric((processCPU()-cpu).Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkEncode writes plans of 10,000, 40,000 and 100,000 tags: the
// ns/tag figure stays flat when encoding is linear in the plan's size.
func BenchmarkEncode(b *testing.B) {
	for _, tags := range []int{10_000, 40_000, 100_000} {
		w := workload{seed: 3, repos: tags / 50, maxTags: 50, minSize: 20 * mib, hugeTags: tags / 2, hugeSize: int64(tags) * 2 * mib}
		p := w.generate()
		b.Run(fmt.Sprintf("tags=%d", tags), func(b *testing.B) {
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := p.Encode(&buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(p.TagCount()), "ns/tag")
			b.ReportMetric(float64(p.TagCount()), "tags")
		})
	}
}
