package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/plan"
)

// The terminal path: a progress bar polled from pipeline.Progress while
// repository lines arrive from several goroutines.
func TestReporterProgressBar(t *testing.T) {
	var out, errOut bytes.Buffer
	var mu sync.Mutex
	c := &cli{stdout: lockedWriter{&mu, &out}, stderr: lockedWriter{&mu, &errOut}}
	p := &plan.Backup{Registry: "reg.example", Output: "x.tar",
		Repos: []plan.Repo{{Name: "a"}, {Name: "b"}, {Name: "c", Tags: []string{"v1"}}}}
	rep := &reporter{c: c, out: c.stdout, plan: p, tty: true}
	rep.header()
	pr := &pipeline.Progress{}
	rep.start(pr)
	pr.Total.Store(10 << 20)
	var wg sync.WaitGroup
	for i, name := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				pr.Done.Add(512 << 10)
				time.Sleep(30 * time.Millisecond)
			}
			if i == 1 {
				rep.observe(pipeline.Event{Kind: pipeline.RepoFailed, Repo: name, Err: errTest("boom")})
				return
			}
			rep.observe(pipeline.Event{Kind: pipeline.RepoDone, Repo: name, Count: 3, Bytes: 4404019,
				Tags: []pipeline.TagResult{{Name: "v1", Artifacts: 3, Bytes: 4404019}}})
		}()
	}
	wg.Wait()
	rep.stop()
	mu.Lock()
	defer mu.Unlock()
	wantContains(t, "stdout", out.String(),
		"Found 3 repository(ies) with 1 tag(s) and all tags of 2:\n  - reg.example/a: all tags\n",
		"[1/3] reg.example/", "[2/3] reg.example/", "[3/3] reg.example/",
		"  ✓ v1 (3/3 artifacts, 4.2 MB)\n  Repository complete: 3 artifacts, 4.2 MB\n",
		"] reg.example/b\n  ✗ failed: boom\n")
	wantContains(t, "progress bar", errOut.String(), "Backing up", "MB")
	if strings.Contains(out.String(), "Backing up  ") {
		t.Errorf("the bar went to stdout")
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
