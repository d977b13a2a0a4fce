package registry_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
)

// LeastRoundTrip is the shortest wait for the answer to a request without
// a body: unknown before any, and an upload's answer (which comes after
// its body is sent) does not count. The server here answers requests
// without a body after 40 ms, uploads at once.
func TestLeastRoundTrip(t *testing.T) {
	const wait = 40 * time.Millisecond
	slow := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength <= 0 {
				time.Sleep(wait)
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := registrytest.NewInProcess(t, registrytest.WithHandler(slow))
	c, err := registry.New(srv.Host(), registry.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := c.LeastRoundTrip(); ok {
		t.Fatalf("before any request: %s, want unknown", d)
	}
	repo, err := c.Repository("rt/app")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := registrytest.Bytes("round trip", 4<<10)
	// A HEAD (404), a POST without a body and a PUT with the blob.
	if _, err := registrytest.PushBlob(ctx, repo, "application/octet-stream", data); err != nil {
		t.Fatal(err)
	}
	d, ok := c.LeastRoundTrip()
	if !ok || d < wait {
		t.Errorf("after a push: %s (known %v), want at least %s: the upload, answered at once, counted", d, ok, wait)
	}
	cs := registry.NewClients(registry.Options{PlainHTTP: true})
	if _, ok := cs.LeastRoundTrip(); ok {
		t.Error("clients without a request: known")
	}
	if _, err := cs.RepositoryExists(ctx, graph.Repository{Registry: srv.Host(), Path: "rt/app"}); err != nil {
		t.Fatal(err)
	}
	if d, ok := cs.LeastRoundTrip(); !ok || d < wait {
		t.Errorf("clients after a tag listing: %s (known %v), want at least %s", d, ok, wait)
	}
}
