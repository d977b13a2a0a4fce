package serve

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// startRun runs Run with h until the returned cancel; addr is where it
// listens, ended gives Run's result.
func startRun(t *testing.T, h http.Handler, timeout time.Duration) (addr string, cancel context.CancelFunc, ended chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	ended = make(chan error, 1)
	go func() {
		ended <- Run(ctx, h, Config{Listen: "127.0.0.1:0", ShutdownTimeout: timeout, Ready: func(a string) { ready <- a }}, nil)
	}()
	select {
	case addr = <-ready:
	case err := <-ended:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(cancel)
	return addr, cancel, ended
}

// TestRunGracefulShutdown: once its context ends, a request in flight
// finishes (its response whole) and Run returns nil; new connections are
// refused.
func TestRunGracefulShutdown(t *testing.T) {
	inHandler, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inHandler)
		<-release
		_, _ = io.WriteString(w, "finished")
	})
	addr, cancel, ended := startRun(t, h, time.Minute)
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(b)
	}()
	<-inHandler
	cancel()
	// Shutdown has begun once the listener is closed.
	for i := 0; ; i++ {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			break
		}
		resp.Body.Close()
		if i > 1000 {
			t.Fatal("new requests still accepted after the context ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-ended:
		t.Fatalf("Run returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if s := <-got; s != "finished" {
		t.Errorf("the request in flight got %q, want its whole response", s)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("Run: %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(time.Minute): // a hang, not a timing
		t.Fatal("Run did not return after its last request")
	}
}

// TestRunShutdownDeadline: a request still running at the deadline is
// cut, and Run returns.
func TestRunShutdownDeadline(t *testing.T) {
	inHandler := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		close(inHandler)
		<-r.Context().Done() // ends when the connection is cut
	})
	addr, cancel, ended := startRun(t, h, 50*time.Millisecond)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-inHandler
	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(time.Minute): // a hang, not a timing
		t.Fatal("Run did not return after its shutdown deadline")
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("the request cut at the deadline completed")
	}
}
