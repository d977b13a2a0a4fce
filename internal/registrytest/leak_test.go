package registrytest

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServersLeaveNoGoroutines runs sequentially, so no other test's
// goroutines are counted.
func TestServersLeaveNoGoroutines(t *testing.T) {
	start := func(t *testing.T) *Server {
		s, err := StartInProcess(WithTLS(), WithBasicAuth(map[string]string{"u": "p"}))
		require.NoError(t, err)
		return s
	}
	check := func(t *testing.T, start func(t *testing.T) *Server) {
		before := runtime.NumGoroutine()
		s := start(t)
		_, err := SeedSample(context.Background(), s.Target(), SampleOptions{})
		require.NoError(t, err)
		require.NoError(t, s.Close())
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	}
	t.Run("inprocess", func(t *testing.T) { check(t, start) })
	t.Run("distribution", func(t *testing.T) {
		if _, err := DistributionBinary(); err != nil {
			NewDistribution(t, DistConfig{}) // skips, or fails under CI
		}
		check(t, func(t *testing.T) *Server {
			s, err := StartDistribution(DistConfig{TLS: true, Htpasswd: map[string]string{"u": "p"}})
			require.NoError(t, err)
			return s
		})
	})
}
