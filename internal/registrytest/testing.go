package registrytest

import (
	"context"
	"os"
	"testing"

	"oras.land/oras-go/v2/registry/remote"
)

// NewInProcess starts an in-process registry for the test (see
// StartInProcess) and closes it when the test ends.
func NewInProcess(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := StartInProcess(opts...)
	if err != nil {
		tb.Fatalf("starting the in-process registry: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("closing the in-process registry: %v", err)
		}
	})
	return s
}

// NewDistribution starts the CNCF distribution registry for the test (see
// StartDistribution) and stops it when the test ends. Without the binary
// ($REGVAULT_DISTRIBUTION unset or missing) the test is skipped with a
// hint to run `make test`, or fails when $CI is set.
func NewDistribution(tb testing.TB, cfg DistConfig) *Server {
	tb.Helper()
	if cfg.Binary == "" {
		if _, err := DistributionBinary(); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatalf("CI: %v", err)
			}
			tb.Skipf("skipping: %v", err)
		}
	}
	s, err := StartDistribution(cfg)
	if err != nil {
		tb.Fatalf("starting the distribution registry: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			if logs := s.Logs(); logs != "" {
				tb.Logf("distribution registry output:\n%s", logs)
			}
		}
		if err := s.Close(); err != nil {
			tb.Errorf("closing the distribution registry: %v", err)
		}
	})
	return s
}

// Repo is s.Repository(name), failing the test on error.
func Repo(tb testing.TB, s *Server, name string) *remote.Repository {
	tb.Helper()
	r, err := s.Repository(name)
	if err != nil {
		tb.Fatalf("repository %q: %v", name, err)
	}
	return r
}

// Seed is SeedSample on s with its Target, failing the test on error.
func Seed(tb testing.TB, s *Server, opts SampleOptions) Sample {
	tb.Helper()
	sample, err := SeedSample(context.Background(), s.Target(), opts)
	if err != nil {
		tb.Fatalf("seeding the sample: %v", err)
	}
	return sample
}
