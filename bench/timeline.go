package bench

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// A Timeline says where the wall time of one run went, from the requests
// its proxies saw (-trace) and the run's own start and end: when the
// first manifest was asked for, when the first and last blob bytes moved,
// when the output was renamed into place, the chain of requests that
// bound the run (its critical path) and how many requests and blob
// streams were under way over time. Times count from the tool's start.
type Timeline struct {
	Name string
	Wall time.Duration // the tool's start to its exit
	// The milestones, from the tool's start; -1 when there was none.
	FirstRequest, FirstManifest, FirstBlobRequest, FirstBlobByte, LastBlobByte, LastRequest, Renamed time.Duration
	Requests                                                                                         int
	// Critical is the chain of requests that ends last, each the one that
	// ended latest before the next started, earliest first; Idle is the
	// time on it in no request (the tool working, or waiting for
	// something other than these requests).
	Critical []TimelineStep
	Idle     time.Duration
	// Slices of the wall time, Step long each: requests under way (the
	// average over the slice), blob streams moving bytes, and MB/s moved
	// in blob bodies.
	Step                    time.Duration
	Underway, Streams, MBps []float64
}

// TimelineStep is one request of the critical path, or several alike in a
// row (Count), and the idle time before it.
type TimelineStep struct {
	What       string // "GET manifest", "PUT upload 32.0 MiB"
	Count      int
	Start, End time.Duration
	Before     time.Duration // idle before it
}

// TraceOf is one proxy's events for a timeline: Label names the side of a
// copy (source, target); Offset is the tool's start on the proxy's clock.
type TraceOf struct {
	Label  string
	Events []TraceEvent
	Offset time.Duration
}

// isBlobBody says whether e moved blob content (a blob GET, an upload
// with a body).
func isBlobBody(e TraceEvent) bool {
	kind := e.Kind[strings.LastIndex(e.Kind, " ")+1:] // after a copy's side (source, target)
	return (kind == "blob" && e.Method == "GET" && e.Out > 0) || (kind == "upload" && e.In > 0)
}

// NewTimeline builds the timeline of a run that lasted wall, from the
// traces of its proxies; renamed is when the output was renamed into
// place (from the tool's start; -1 when unknown or not a file).
func NewTimeline(name string, wall, renamed time.Duration, traces ...TraceOf) *Timeline {
	t := &Timeline{Name: name, Wall: wall, Renamed: renamed,
		FirstRequest: -1, FirstManifest: -1, FirstBlobRequest: -1, FirstBlobByte: -1, LastBlobByte: -1, LastRequest: -1}
	var all []TraceEvent
	for _, tr := range traces {
		for _, e := range tr.Events {
			e.Start -= tr.Offset
			e.End -= tr.Offset
			if e.First != 0 {
				e.First -= tr.Offset
			}
			if tr.Label != "" {
				e.Kind = tr.Label + " " + e.Kind
			}
			all = append(all, e)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Start < all[j].Start })
	t.Requests = len(all)
	earliest := func(p *time.Duration, d time.Duration) {
		if *p < 0 || d < *p {
			*p = d
		}
	}
	latest := func(p *time.Duration, d time.Duration) {
		if d > *p {
			*p = d
		}
	}
	for _, e := range all {
		earliest(&t.FirstRequest, e.Start)
		latest(&t.LastRequest, e.End)
		kind := e.Kind[strings.LastIndex(e.Kind, " ")+1:]
		if kind == "manifest" {
			earliest(&t.FirstManifest, e.Start)
		}
		if isBlobBody(e) {
			earliest(&t.FirstBlobRequest, e.Start)
			if e.First != 0 {
				earliest(&t.FirstBlobByte, e.First)
			}
			latest(&t.LastBlobByte, e.End)
		}
	}
	t.critical(all)
	t.slices(all)
	return t
}

// critical walks back from the request that ended last: before each, the
// one that ended latest no later than it started (a millisecond of slack
// for the clocks of two proxies).
func (t *Timeline) critical(all []TraceEvent) {
	if len(all) == 0 {
		return
	}
	cur := all[0]
	for _, e := range all {
		if e.End > cur.End {
			cur = e
		}
	}
	chain := []TraceEvent{cur}
	for {
		found := false
		var pred TraceEvent
		for _, e := range all {
			if e.End <= cur.Start+time.Millisecond && e.Start < cur.Start && (!found || e.End > pred.End) {
				pred, found = e, true
			}
		}
		if !found {
			break
		}
		chain = append(chain, pred)
		cur = pred
	}
	var steps []TimelineStep
	for i := len(chain) - 1; i >= 0; i-- {
		e := chain[i]
		what := e.Method + " " + e.Kind
		if n := e.In + e.Out; isBlobBody(e) && n >= MiB {
			what += " " + sizeString(n)
		}
		if e.Status == 404 {
			what += " (404)"
		}
		before := e.Start
		if len(steps) > 0 {
			before = max(0, e.Start-steps[len(steps)-1].End)
		}
		t.Idle += before
		if k := len(steps) - 1; k >= 0 && steps[k].What == what && before < 5*time.Millisecond {
			steps[k].Count++
			steps[k].End = e.End
			steps[k].Before += before
			continue
		}
		steps = append(steps, TimelineStep{What: what, Count: 1, Start: e.Start, End: e.End, Before: before})
	}
	if len(steps) > 0 {
		t.Idle += max(0, t.Wall-steps[len(steps)-1].End)
	}
	t.Critical = steps
}

// slices fills the concurrency over time, in about a dozen slices of a
// whole number of 50 ms.
func (t *Timeline) slices(all []TraceEvent) {
	if t.Wall <= 0 {
		return
	}
	t.Step = max(50*time.Millisecond, (t.Wall/12+25*time.Millisecond)/(50*time.Millisecond)*(50*time.Millisecond))
	n := int((t.Wall + t.Step - 1) / t.Step)
	t.Underway = make([]float64, n)
	t.Streams = make([]float64, n)
	t.MBps = make([]float64, n)
	overlap := func(a, b time.Duration, i int) time.Duration {
		lo, hi := max(a, time.Duration(i)*t.Step), min(b, time.Duration(i+1)*t.Step)
		return max(0, hi-lo)
	}
	for _, e := range all {
		for i := 0; i < n; i++ {
			t.Underway[i] += float64(overlap(e.Start, e.End, i)) / float64(t.Step)
			// streams of small bodies (configs) are mostly the server's
			// answer after them: not counted as moving
			if isBlobBody(e) && e.In+e.Out >= 64*KiB && e.First != 0 && e.End > e.First {
				o := overlap(e.First, e.End, i)
				t.Streams[i] += float64(o) / float64(t.Step)
				// the bytes spread evenly over the time they moved
				t.MBps[i] += float64(e.In+e.Out) * float64(o) / float64(e.End-e.First) / MB / t.Step.Seconds()
			}
		}
	}
}

// Markdown is the timeline as a report section's part: the milestones,
// the critical path and the concurrency over time.
func (t *Timeline) Markdown() string {
	var b strings.Builder
	ms := func(d time.Duration) string {
		if d < 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	fmt.Fprintf(&b, "**%s** (wall %.2f s, %d requests)\n\n", t.Name, t.Wall.Seconds(), t.Requests)
	b.WriteString("| tool start | first request | first manifest request | first blob request | first blob byte | last blob byte | last request ends | output renamed | exit |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	fmt.Fprintf(&b, "| 0 | %s | %s | %s | %s | %s | %s | %s | %s |\n\n", ms(t.FirstRequest), ms(t.FirstManifest), ms(t.FirstBlobRequest),
		ms(t.FirstBlobByte), ms(t.LastBlobByte), ms(t.LastRequest), ms(t.Renamed), ms(t.Wall))
	if len(t.Critical) > 0 {
		var parts []string
		for _, s := range t.Critical {
			p := ""
			if s.Before >= 5*time.Millisecond {
				p = fmt.Sprintf("*idle %s* → ", ms(s.Before))
			}
			p += s.What
			if s.Count > 1 {
				p += fmt.Sprintf(" ×%d", s.Count)
			}
			p += fmt.Sprintf(" (%s)", ms(s.End-s.Start))
			parts = append(parts, p)
		}
		last := t.Critical[len(t.Critical)-1].End
		fmt.Fprintf(&b, "Critical path (%d round trips, %s idle on it): %s → *%s to exit*\n\n", t.roundTrips(), ms(t.Idle), strings.Join(parts, " → "), ms(max(0, t.Wall-last)))
	}
	if len(t.Underway) > 0 {
		b.WriteString("| from | ")
		for i := range t.Underway {
			fmt.Fprintf(&b, "%.2f s | ", (time.Duration(i) * t.Step).Seconds())
		}
		b.WriteString("\n| ---")
		b.WriteString(strings.Repeat(" | ---:", len(t.Underway)))
		b.WriteString(" |\n")
		for _, row := range []struct {
			name string
			v    []float64
			f    string
		}{{"requests under way", t.Underway, "%.1f"}, {"blob streams moving", t.Streams, "%.1f"}, {"blob MB/s", t.MBps, "%.0f"}} {
			b.WriteString("| " + row.name + " | ")
			for _, v := range row.v {
				fmt.Fprintf(&b, row.f+" | ", v)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// roundTrips counts the requests on the critical path.
func (t *Timeline) roundTrips() int {
	n := 0
	for _, s := range t.Critical {
		n += s.Count
	}
	return n
}
