package source

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// Concurrent callers of one key share one call.
func TestWalkOnceRunsOnce(t *testing.T) {
	var o once[string, int]
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := o.Do(context.Background(), "k", func() (int, error) {
				calls.Add(1)
				<-release
				return 42, nil
			})
			require.NoError(t, err)
			require.Equal(t, 42, v)
		}()
	}
	close(release)
	wg.Wait()
	require.EqualValues(t, 1, calls.Load())
}

// A failed call is forgotten: the next caller tries again.
func TestWalkOnceForgetsFailure(t *testing.T) {
	var o once[string, int]
	_, err := o.Do(context.Background(), "k", func() (int, error) { return 0, errors.New("boom") })
	require.Error(t, err)
	v, err := o.Do(context.Background(), "k", func() (int, error) { return 7, nil })
	require.NoError(t, err)
	require.Equal(t, 7, v)
}

func TestWalkSet(t *testing.T) {
	var s set[string]
	require.True(t, s.Add("a"))
	require.False(t, s.Add("a"))
	require.True(t, s.Has("a"))
	require.False(t, s.Has("b"))
}
