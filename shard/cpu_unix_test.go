//go:build unix

package shard_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time of this process so far (user and system, all
// threads: the garbage collector's too), for benchmarks on a machine
// shared with other work, where wall time says little.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
