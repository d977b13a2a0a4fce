// Package bench measures regvault against the tools users would use
// instead (oras, crane, skopeo, regsync) and against a plain-HTTP baseline, on
// generated workloads served by the CNCF distribution registry process of
// registrytest. `make bench` (go run ./bench/cmd/bench) runs it; the
// results go to docs/benchmarks.md. Timings live here, never in tests.
//
// The parts:
//
//   - workload.go: the workloads D1, L, S and B, generated from a seed
//     (Spec), and what a seeded registry holds (Workload).
//   - seed.go: pushing a Spec into a registry with streamed, generated
//     bytes, and the cache of seeded registry storage.
//   - proxy.go: the reverse proxy every tool talks to: counts requests by
//     method and kind and body bytes, and for the WAN profile adds latency
//     to every request and caps every body stream.
//   - tools.go: the tools (regvault, oras, crane, skopeo, regsync,
//     baseline), how they are installed and the commands they run
//     (backup, restore, and registry-to-registry copy).
//   - baseline.go: the physical limit: unique blobs fetched with parallel
//     GETs and pushed with monolithic uploads, run as a child process.
//   - run.go: the run matrix, one child process at a time, measured with
//     wait4 (wall time, peak RSS, CPU); a copy runs against a source and
//     a target each behind its own proxy.
//   - verify.go: a run counts only if its output holds what it should.
//   - report.go: tables, targets, docs/benchmarks.md.
//   - profile.go: -cpuprofile builds regvault with a CPU and heap profile
//     hook through `go build -overlay` (the checkout is not changed).
//
// Finding out why a run is slow: -trace DIR writes every request of every
// run as the proxy saw it (start, end, method, kind, bytes) and logs a
// summary (when the first blob transfer and the largest one started) and
// a timeline of each backup, restore and copy (timeline.go: milestones,
// the critical path of requests, the concurrency over time, as markdown);
// -cpuprofile DIR profiles regvault (go tool pprof -top
// DIR/regvault-profiling DIR/<file>.pprof).
package bench
