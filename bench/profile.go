package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ProfileEnv names the environment variable that makes a regvault built
// with profiling (see profilingOverlay) write a CPU profile to
// $REGVAULT_BENCH_CPUPROFILE-<pid>.pprof and a heap profile (at exit) to
// ...-<pid>.heap.pprof.
const ProfileEnv = "REGVAULT_BENCH_CPUPROFILE"

// profileHook is added to package main of cmd/regvault by the overlay.
const profileHook = `package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

var benchProfileStop = func() {}

func init() {
	prefix := os.Getenv(%q)
	if prefix == "" {
		return
	}
	f, err := os.Create(fmt.Sprintf("%%s-%%d.pprof", prefix, os.Getpid()))
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	benchProfileStop = func() {
		pprof.StopCPUProfile()
		f.Close()
		if h, err := os.Create(fmt.Sprintf("%%s-%%d.heap.pprof", prefix, os.Getpid())); err == nil {
			runtime.GC()
			pprof.Lookup("allocs").WriteTo(h, 0)
			h.Close()
		}
	}
}

func benchProfileExit(code int) {
	benchProfileStop()
	os.Exit(code)
}
`

// profilingOverlay writes a `go build -overlay` file, in dir, that builds
// cmd/regvault of root with profiling: a file with the hook is added to
// package main and main.go's os.Exit(run(...)) goes through it. The
// checkout itself is not touched.
func profilingOverlay(root, dir string) (string, error) {
	mainPath := filepath.Join(root, "cmd", "regvault", "main.go")
	src, err := os.ReadFile(mainPath)
	if err != nil {
		return "", err
	}
	const call = "os.Exit(run("
	if strings.Count(string(src), call) != 1 {
		return "", fmt.Errorf("cannot add profiling: %s no longer has exactly one %q", mainPath, call)
	}
	patched := strings.Replace(string(src), call, "benchProfileExit(run(", 1)
	mainOut := filepath.Join(dir, "main.go")
	hookOut := filepath.Join(dir, "zz_benchprofile.go")
	if err := os.WriteFile(mainOut, []byte(patched), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(hookOut, []byte(fmt.Sprintf(profileHook, ProfileEnv)), 0o644); err != nil {
		return "", err
	}
	overlay := map[string]map[string]string{"Replace": {
		mainPath: mainOut,
		filepath.Join(root, "cmd", "regvault", "zz_benchprofile.go"): hookOut,
	}}
	data, _ := json.Marshal(overlay)
	path := filepath.Join(dir, "overlay.json")
	return path, os.WriteFile(path, data, 0o644)
}
