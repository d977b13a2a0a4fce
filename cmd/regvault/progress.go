package main

import (
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/regvault/regvault/pipeline"
)

// progressBar draws a run's progress on a terminal: it polls the
// pipeline's byte counters, and is cleared whenever a line is printed.
type progressBar struct {
	w    io.Writer
	desc string
	mu   *sync.Mutex // the reporter's output lock, held while drawing

	bar    *progressbar.ProgressBar
	stopCh chan struct{}
	done   chan struct{}
}

// start polls pr until stop.
func (p *progressBar) start(pr *pipeline.Progress) {
	p.stopCh = make(chan struct{})
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stopCh:
				return
			case <-tick.C:
			}
			total, done := pr.Total.Load(), pr.Done.Load()
			if total <= 0 {
				continue
			}
			p.mu.Lock()
			if p.bar == nil {
				p.bar = newProgressBar(p.w, p.desc, total)
			} else if p.bar.GetMax64() != total {
				p.bar.ChangeMax64(total)
			}
			_ = p.bar.Set64(done)
			p.mu.Unlock()
		}
	}()
}

// stop removes the bar for good. It is safe when start was not called.
func (p *progressBar) stop() {
	if p.stopCh == nil {
		return
	}
	close(p.stopCh)
	<-p.done
	p.stopCh = nil
	p.mu.Lock()
	p.clear()
	p.bar = nil
	p.mu.Unlock()
}

// clear erases the bar so that a line can be printed; the next poll draws
// it again. p.mu is held.
func (p *progressBar) clear() {
	if p.bar != nil {
		_ = p.bar.Clear()
	}
}

// newProgressBar is the bar backup and restore show on a terminal: bytes
// moved, rate and ETA.
func newProgressBar(w io.Writer, desc string, total int64) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// stderrLines writes lines to standard error (--debug lines, notices of
// the registry client), one at a time, clearing the progress bar first,
// if one is drawn: the next poll draws it again below them.
type stderrLines struct{ c *cli }

func (w stderrLines) Write(p []byte) (int, error) {
	if bar := w.c.bar.Load(); bar != nil {
		bar.mu.Lock()
		defer bar.mu.Unlock()
		bar.clear()
	}
	w.c.linesMu.Lock()
	defer w.c.linesMu.Unlock()
	return w.c.stderr.Write(p)
}
