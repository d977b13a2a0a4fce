package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/source"
)

// holdHeader marks the requests of the process the test kills.
const holdHeader = "X-Regvault-Test"

// holdGate lets the first blob GETs of the marked process through and
// then holds the next ones until the process is gone: the process is
// killed mid-way, with part of its shard done.
type holdGate struct {
	passed atomic.Int64
	once   sync.Once
	held   chan struct{}
	// when, if set, says when to start holding instead of "after two".
	when func() bool
}

func (g *holdGate) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.Header.Get(holdHeader) == "hold" && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			n := g.passed.Add(1)
			if g.when == nil && n > 2 || g.when != nil && g.when() {
				g.once.Do(func() { close(g.held) })
				<-r.Context().Done() // until the process is killed
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// jobSource is a registry with two samples (6 repositories, 12 tags,
// referrers) behind a holdGate.
func jobSource(t *testing.T, base, layer int) (*registrytest.Server, []registrytest.Sample, *holdGate) {
	gate := &holdGate{held: make(chan struct{})}
	src := registrytest.NewInProcess(t, registrytest.WithHandler(gate.handler))
	var samples []registrytest.Sample
	for _, prefix := range []string{"", "team/"} {
		samples = append(samples, registrytest.Seed(t, src, registrytest.SampleOptions{Prefix: prefix, Seed: "job-" + prefix, BaseLayerSize: base, LayerSize: layer}))
	}
	return src, samples, gate
}

// registryState is what s holds for the samples' repositories under
// prefix: every tag's digest and every subject's referrers.
func registryState(t *testing.T, s *registrytest.Server, samples []registrytest.Sample, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sample := range samples {
		for _, repo := range sample.Repositories {
			r := registrytest.Repo(t, s, prefix+repo)
			for tag := range sample.Tags[repo] {
				d, err := r.Resolve(t.Context(), tag)
				if err != nil {
					t.Errorf("%s%s:%s: %v", prefix, repo, tag, err)
					continue
				}
				out[repo+":"+tag] = d.Digest.String()
			}
			for _, rf := range sample.Referrers[repo] {
				var refs []string
				err := r.Referrers(t.Context(), rf.Subject, "", func(page []ocispec.Descriptor) error {
					for _, d := range page {
						refs = append(refs, d.Digest.String())
					}
					return nil
				})
				require.NoError(t, err)
				sort.Strings(refs)
				out[repo+" referrers of "+rf.Subject.Digest.String()] = strings.Join(refs, ",")
			}
		}
	}
	return out
}

// playJob runs the N pods of an Indexed Job as local processes: each
// `bin args...` with JOB_COMPLETION_INDEX=i, at once; pod victim marks
// its requests (extra arguments) so that the gate holds it mid-way, and
// is killed (SIGKILL) there and run again, as backoffLimitPerIndex
// retries it. Every other pod must exit 0, and so must the re-run.
func playJob(t *testing.T, bin string, n, victim int, gate *holdGate, args func(i int) []string, mark []string, ready func() bool) string {
	t.Helper()
	run := func(i int, extra []string) *exec.Cmd {
		cmd := exec.Command(bin, append(args(i), extra...)...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i))
		return cmd
	}
	var wg sync.WaitGroup
	outputs := make([][]byte, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		if i == victim {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			outputs[i], errs[i] = run(i, nil).CombinedOutput()
		}()
	}
	cmd := run(victim, mark)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	select {
	case <-gate.held:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("pod %d never reached its third blob:\n%s", victim, out.String())
	}
	for deadline := time.Now().Add(60 * time.Second); ready != nil && !ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("pod %d did not get as far as the test waits for:\n%s", victim, out.String())
		}
	}
	require.NoError(t, cmd.Process.Kill())
	err := cmd.Wait()
	require.Error(t, err, "the killed pod exits non-zero:\n%s", out.String())
	wg.Wait()
	for i := 0; i < n; i++ {
		if i != victim {
			require.NoError(t, errs[i], "pod %d:\n%s", i, outputs[i])
			require.Contains(t, string(outputs[i]), fmt.Sprintf("shard %d/%d of plan", i, n))
		}
	}
	// The retry of the killed pod.
	rerun, err := run(victim, nil).CombinedOutput()
	require.NoError(t, err, "re-run of pod %d:\n%s", victim, rerun)
	return string(rerun)
}

// entrySet is every index.json entry of the backups (name and digest),
// each once.
func entrySet(t *testing.T, paths ...string) []string {
	t.Helper()
	var out []string
	for _, p := range paths {
		l, err := source.OpenLayout(t.Context(), p, nil, t.TempDir())
		require.NoError(t, err)
		for _, e := range l.Entries() {
			out = append(out, e.Repo+":"+e.Tag+"@"+e.Desc.Digest.String())
		}
		require.NoError(t, l.Close())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// The sharded backup of the Kubernetes Job (deploy/kubernetes/
// backup-job.yaml), played here: 3 processes with JOB_COMPLETION_INDEX
// 0..2 run `backup --plan plan.json --shard auto/3 -o part-I-of-3.tar.zst`,
// one is killed mid-way and run again. The parts hold the index entries
// of one unsharded backup of the plan, and their restore gives the
// target the same tags, digests and referrers as its restore.
func TestJobPlayBackup(t *testing.T) {
	bin := build(t)
	src, samples, gate := jobSource(t, 64<<10, 16<<10)
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.json")
	out, err := exec.Command(bin, "plan", "--plain-http", "--no-tty", "--include-referrers", "-o", plan, src.Host()+"/*").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "6 repositories, 12 tags")

	partsDir := filepath.Join(dir, "out")
	require.NoError(t, os.Mkdir(partsDir, 0o755))
	playJob(t, bin, 3, 1, gate, func(i int) []string {
		return []string{"backup", "--plain-http", "--no-tty", "--plan", plan, "--shard", "auto/3",
			"-o", filepath.Join(partsDir, fmt.Sprintf("part-%d-of-3.tar.zst", i))}
	}, []string{"--header", holdHeader + ": hold"}, nil)

	// The three parts, no leftover of the killed run.
	names, err := filepath.Glob(filepath.Join(partsDir, "*"))
	require.NoError(t, err)
	var base []string
	for _, n := range names {
		base = append(base, filepath.Base(n))
	}
	require.Equal(t, []string{"part-0-of-3.tar.zst", "part-1-of-3.tar.zst", "part-2-of-3.tar.zst"}, base)
	entries, _ := os.ReadDir(partsDir)
	require.Len(t, entries, 3, "leftovers: %v", entries)

	whole := filepath.Join(dir, "whole.tar.zst")
	out, err = exec.Command(bin, "backup", "--plain-http", "--no-tty", "--plan", plan, "-o", whole).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, entrySet(t, whole), entrySet(t, names...), "the parts' index entries are the unsharded backup's")
	for _, part := range names {
		require.NotEqual(t, entrySet(t, whole), entrySet(t, part), "one part holds everything: the shards did not split")
	}

	out, err = exec.Command(bin, "verify", "-i", filepath.Join(partsDir, "part-*-of-3.tar.zst")).CombinedOutput()
	require.NoError(t, err, "%s", out)

	one := registrytest.NewInProcess(t)
	out, err = exec.Command(bin, "restore", "--plain-http", "--no-tty", "-i", whole, one.Host()).CombinedOutput()
	require.NoError(t, err, "%s", out)
	parts := registrytest.NewInProcess(t)
	out, err = exec.Command(bin, "restore", "--plain-http", "--no-tty", "-i", filepath.Join(partsDir, "part-*-of-3.tar.zst"), parts.Host()).CombinedOutput()
	require.NoError(t, err, "%s", out)
	want := registryState(t, one, samples, "")
	require.Len(t, want, 12+countReferrerSubjects(samples))
	wantReferrers(t, want)
	got := registryState(t, parts, samples, "")
	if !maps.Equal(got, want) {
		t.Errorf("restore of the 3 parts:\n%v\nrestore of one backup:\n%v", got, want)
	}
}

func countReferrerSubjects(samples []registrytest.Sample) int {
	n := 0
	for _, s := range samples {
		for _, refs := range s.Referrers {
			n += len(refs)
		}
	}
	return n
}

// The sharded copy of the Kubernetes Job (deploy/kubernetes/
// copy-job.yaml), played here: 3 processes run `copy --plan plan.json
// --shard auto/3 <target>`, one killed mid-way and run again; the target
// then holds what one unsharded copy of the plan gives another.
func TestJobPlayCopy(t *testing.T) {
	const large = 1 << 20 // sink's headAlways: a re-run asks for such blobs rather than send them again
	bin := build(t)
	src, samples, gate := jobSource(t, 2*large, large)
	sizes := map[digest.Digest]int64{}
	for _, sample := range samples {
		for _, content := range sample.Content {
			for _, d := range content {
				sizes[d.Digest] = d.Size
			}
		}
	}
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.json")
	out, err := exec.Command(bin, "plan", "--plain-http", "--no-tty", "--include-referrers", "-o", plan, src.Host()+"/*").CombinedOutput()
	require.NoError(t, err, "%s", out)

	// The target records the blob uploads the killed pod completed: it
	// is killed once it has a large one.
	up := &uploads{done: map[digest.Digest]int{}}
	largeDone := func() bool {
		for d := range up.completed() {
			if sizes[d] >= large {
				return true
			}
		}
		return false
	}
	// The killed pod transfers one blob at a time and is held once it
	// has uploaded a large one.
	gate.when = largeDone
	sharded := registrytest.NewInProcess(t, registrytest.WithHandler(up.marked))
	const victim = 2
	args := func(i int) []string {
		return []string{"copy", "--from-plain-http", "--to-plain-http", "--no-tty", "--plan", plan, "--shard", "auto/3", sharded.Host() + "/mirror"}
	}
	rerun := playJob(t, bin, 3, victim, gate, args,
		[]string{"--from-header", holdHeader + ": hold", "--to-header", holdHeader + ": mark", "--concurrency", "1"},
		largeDone)

	// The re-run did not redo what the killed pod had done: it uploaded
	// fewer blobs than the same shard into an empty registry.
	fresh := registrytest.NewInProcess(t)
	cmd := exec.Command(bin, append(args(victim)[:len(args(victim))-1], fresh.Host()+"/mirror")...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", victim))
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	if uploaded(rerun) >= uploaded(string(out)) {
		t.Errorf("the re-run uploaded %d blobs, a fresh copy of the shard %d: it redid what was done\nre-run:\n%s", uploaded(rerun), uploaded(string(out)), rerun)
	}

	single := registrytest.NewInProcess(t)
	out, err = exec.Command(bin, "copy", "--from-plain-http", "--to-plain-http", "--no-tty", "--plan", plan, single.Host()+"/mirror").CombinedOutput()
	require.NoError(t, err, "%s", out)
	want := registryState(t, single, samples, "mirror/")
	require.Len(t, want, 12+countReferrerSubjects(samples))
	wantReferrers(t, want)
	if got := registryState(t, sharded, samples, "mirror/"); !maps.Equal(got, want) {
		t.Errorf("3 sharded copies:\n%v\none copy:\n%v", got, want)
	}
}

// uploaded is the number of blobs a copy's summary says it uploaded.
func uploaded(out string) int {
	m := regexp.MustCompile(`Uploaded (\d+) blob`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// wantReferrers fails unless every subject of the state has referrers:
// the plan's referrer policy (--include-referrers) was followed.
func wantReferrers(t *testing.T, state map[string]string) {
	t.Helper()
	for k, v := range state {
		if strings.Contains(k, " referrers of ") && v == "" {
			t.Errorf("%s: none", k)
		}
	}
}
