package bench

import (
	"strings"
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// On the proxy's clock; the tool started at 100 ms.
	src := []TraceEvent{
		{Start: ms(150), End: ms(200), Method: "GET", Kind: "tags", Status: 200, Out: 50},
		{Start: ms(200), End: ms(250), Method: "GET", Kind: "manifest", Status: 200, Out: 700},
		{Start: ms(260), End: ms(900), First: ms(300), Method: "GET", Kind: "blob", Status: 200, Out: 8 * MiB},
		{Start: ms(260), End: ms(500), First: ms(300), Method: "GET", Kind: "blob", Status: 200, Out: 2 * MiB},
	}
	tl := NewTimeline("x", ms(1000), ms(950), TraceOf{Events: src, Offset: ms(100)})
	want := map[string][2]time.Duration{
		"first request":  {tl.FirstRequest, ms(50)},
		"first manifest": {tl.FirstManifest, ms(100)},
		"first blob":     {tl.FirstBlobRequest, ms(160)},
		"first byte":     {tl.FirstBlobByte, ms(200)},
		"last byte":      {tl.LastBlobByte, ms(800)},
		"last request":   {tl.LastRequest, ms(800)},
	}
	for name, w := range want {
		if w[0] != w[1] {
			t.Errorf("%s at %v, want %v", name, w[0], w[1])
		}
	}
	var path []string
	for _, s := range tl.Critical {
		path = append(path, s.What)
	}
	if got := strings.Join(path, " → "); got != "GET tags → GET manifest → GET blob 8 MiB" {
		t.Errorf("critical path %q", got)
	}
	// 50 ms before the first request, 10 before the blob, 200 after it
	if tl.Idle != ms(260) {
		t.Errorf("idle %v on the critical path, want 260ms", tl.Idle)
	}
	md := tl.Markdown()
	for _, s := range []string{"| 0 | 50 ms | 100 ms | 160 ms | 200 ms | 800 ms | 800 ms | 950 ms | 1000 ms |", "Critical path (3 round trips"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	// A copy: the target's side too, labelled.
	tgt := []TraceEvent{{Start: ms(300), End: ms(950), First: ms(350), Method: "PUT", Kind: "upload", Status: 201, In: 8 * MiB}}
	tl = NewTimeline("c", ms(1000), -1, TraceOf{Label: "source", Events: src, Offset: ms(100)}, TraceOf{Label: "target", Events: tgt, Offset: ms(100)})
	if tl.LastBlobByte != ms(850) || tl.Critical[len(tl.Critical)-1].What != "PUT target upload 8 MiB" {
		t.Errorf("copy: last blob byte %v, critical path %+v", tl.LastBlobByte, tl.Critical)
	}
}

func TestTimelineName(t *testing.T) {
	if got := timelineName("D1-wan-copy-regvault-0"); got != "D1 · wan · copy · regvault · run 1" {
		t.Errorf("got %q", got)
	}
}
