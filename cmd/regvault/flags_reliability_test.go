package main

import (
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
)

func TestInsecureWarningsReliability(t *testing.T) {
	loopback := []string{"127.0.0.1", "127.0.0.1:5000", "127.3.2.1:443", "localhost", "localhost:5000", "LocalHost:80", "[::1]:5000", "::1", "[::1]"}
	remote := []string{"registry.example.com", "registry.example.com:5000", "reg.invalid", "10.0.0.1:5000", "192.168.1.10",
		"[2001:db8::1]:443", "localhost.example.com", "127.0.0.1.nip.io:5000", "0.0.0.0:5000", "128.0.0.1"}
	for _, h := range loopback {
		for _, flags := range [][2]bool{{true, false}, {false, true}, {true, true}} {
			if w := insecureWarnings(flags[0], flags[1], []string{h}); len(w) != 0 {
				t.Errorf("%s (plain-http %v, insecure %v) is loopback, warned: %q", h, flags[0], flags[1], w)
			}
		}
	}
	for _, h := range remote {
		if w := insecureWarnings(false, false, []string{h}); len(w) != 0 {
			t.Errorf("%s without --plain-http or --insecure: warned %q", h, w)
		}
		w := insecureWarnings(true, false, []string{h})
		if len(w) != 1 || !strings.Contains(w[0], "WARNING! --plain-http: talking to "+h+" over plain HTTP") {
			t.Errorf("%s --plain-http: %q", h, w)
		}
		w = insecureWarnings(false, true, []string{h})
		if len(w) != 1 || !strings.Contains(w[0], "WARNING! --insecure: the TLS certificate of "+h+" is not verified") {
			t.Errorf("%s --insecure: %q", h, w)
		}
		// both: no TLS at all, so the plain-HTTP warning
		w = insecureWarnings(true, true, []string{h})
		if len(w) != 1 || !strings.Contains(w[0], "--plain-http") {
			t.Errorf("%s --plain-http --insecure: %q", h, w)
		}
	}
	// each host once, loopback hosts left out
	w := insecureWarnings(true, false, []string{"a.example", "127.0.0.1:5000", "b.example:5000", "a.example"})
	if len(w) != 2 || !strings.Contains(w[0], "a.example") || !strings.Contains(w[1], "b.example:5000") {
		t.Errorf("%q", w)
	}
}

// closedPort is a 127.0.0.1 port where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}

// --plain-http and --insecure warn on stderr against a registry that is
// not on this machine, and not against a loopback one. The remote name is
// a reserved .invalid name sent by --resolve to a closed local port: no
// DNS query and no connection leaves the machine.
func TestInsecureWarningCLIReliability(t *testing.T) {
	port := closedPort(t)
	dir := t.TempDir()
	_, _, in := sampleBackup(t)
	for _, tc := range []struct {
		name string
		args []string
		warn string
	}{
		{"backup --plain-http", []string{"backup", "--dry-run", "--no-tty", "--plain-http", "--resolve", "registry.invalid:80:127.0.0.1:" + port, "registry.invalid/library/alpine"},
			"WARNING! --plain-http: talking to registry.invalid over plain HTTP: credentials and content cross the network unencrypted."},
		{"backup --insecure", []string{"backup", "--dry-run", "--no-tty", "--insecure", "--resolve", "registry.invalid:443:127.0.0.1:" + port, "registry.invalid/library/alpine"},
			"WARNING! --insecure: the TLS certificate of registry.invalid is not verified"},
		{"backup --insecure, json", []string{"backup", "--dry-run", "--format", "json", "--insecure", "--resolve", "registry.invalid:5000:127.0.0.1:" + port, "registry.invalid:5000/library/alpine"},
			"WARNING! --insecure: the TLS certificate of registry.invalid:5000 is not verified"},
		{"restore --plain-http", []string{"restore", "--dry-run", "--no-tty", "--plain-http", "--resolve", "registry.invalid:80:127.0.0.1:" + port, "-i", in, "registry.invalid"},
			"WARNING! --plain-http: talking to registry.invalid over plain HTTP"},
		{"restore --insecure to two registries, one remote", []string{"restore", "--dry-run", "--no-tty", "--insecure", "--resolve", "registry.invalid:443:127.0.0.1:" + port,
			"-i", in, "registry.invalid/demo/frontend", "127.0.0.1:" + port + "/demo/backend"},
			"WARNING! --insecure: the TLS certificate of registry.invalid is not verified"},
		{"login --plain-http", []string{"login", "--plain-http", "--registry-config", filepath.Join(dir, "config.json"), "-u", "a", "-p", "pw-x1", "--resolve", "registry.invalid:80:127.0.0.1:" + port, "registry.invalid"},
			"WARNING! --plain-http: talking to registry.invalid over plain HTTP"},
		{"backup --plain-http, loopback", []string{"backup", "--dry-run", "--no-tty", "--plain-http", "127.0.0.1:" + port + "/library/alpine"}, ""},
		{"backup --insecure, localhost", []string{"backup", "--dry-run", "--no-tty", "--insecure", "localhost:" + port + "/library/alpine"}, ""},
		{"restore --plain-http, loopback", []string{"restore", "--dry-run", "--no-tty", "--plain-http", "-i", in, "127.0.0.1:" + port}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := regvault(t, "", tc.args...)
			if r.code == exitOK && strings.HasPrefix(tc.args[0], "backup") {
				t.Errorf("a backup from a closed port succeeded")
			}
			if tc.warn != "" {
				wantContains(t, "stderr", r.stderr, tc.warn)
				if n := strings.Count(r.stderr, "WARNING! --"); n != 1 {
					t.Errorf("%d warnings, want 1", n)
				}
				wantNotContains(t, "stdout", r.stdout, "WARNING!")
			} else {
				wantNotContains(t, "stderr", r.stderr, "WARNING! --plain-http", "WARNING! --insecure")
			}
		})
	}
}

// Retries are visible with --debug: each attempt is a line.
func TestDebugShowsRetriesReliability(t *testing.T) {
	var mu sync.Mutex
	failed := map[string]bool{}
	flaky := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := r.Method + " " + r.URL.Path
			mu.Lock()
			first := !failed[key]
			failed[key] = true
			mu.Unlock()
			if first && strings.HasSuffix(r.URL.Path, "/tags/list") {
				http.Error(w, "injected", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	s, _ := sampleRegistry(t, registrytest.WithHandler(flaky))
	r := regvault(t, "", "-d", "backup", "--dry-run", "--no-tty", "--plain-http", ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	wantContains(t, "stderr", r.stderr,
		"debug: GET http://"+s.Host()+"/v2/demo/frontend/tags/list -> 503",
		"debug: GET http://"+s.Host()+"/v2/demo/frontend/tags/list -> 200")
}
