package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
)

// configAuths returns the "auths" entries of a Docker config file.
func configAuths(t *testing.T, path string) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return cfg.Auths
}

// loginLogout logs in to s with a temporary config, backs up with the
// stored credentials, and logs out.
func loginLogout(t *testing.T, s *registrytest.Server, tlsFlags []string) {
	const user, password = "alice", "login-secret-4242"
	config := filepath.Join(t.TempDir(), "config.json")
	host := s.Host()
	base := append([]string{"--registry-config", config}, tlsFlags...)

	// A wrong password: nothing is stored, the password is printed nowhere.
	r := regvault(t, "not-the-password-x", append(append([]string{"login"}, base...), "-u", user, "--password-stdin", host)...)
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "Error: ", "401")
	wantNotContains(t, "output", r.stdout+r.stderr, "not-the-password-x", password)
	if _, ok := configAuths(t, config)[host]; ok {
		t.Fatalf("a failed login stored credentials for %s", host)
	}

	// Without credentials, a backup is refused.
	dir := t.TempDir()
	r = regvault(t, "", append(append([]string{"backup"}, base...), "-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend"))...)
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "authentication required", "regvault login "+host)

	// Login.
	r = regvault(t, password+"\n", append(append([]string{"login"}, base...), "-u", user, "--password-stdin", host)...)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Login Succeeded")
	wantNotContains(t, "output", r.stdout+r.stderr, password)
	if _, ok := configAuths(t, config)[host]; !ok {
		t.Fatalf("login did not store credentials for %s in %s", host, config)
	}

	// The stored credentials are used.
	r = regvault(t, "", append(append([]string{"backup"}, base...), "-o", filepath.Join(dir, "ok.tar"), ref(s, "demo/frontend"))...)
	r.wantCode(t, exitOK)

	// Logout.
	r = regvault(t, "", "logout", "--registry-config", config, host)
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Logout Succeeded")
	if _, ok := configAuths(t, config)[host]; ok {
		t.Fatalf("logout left credentials for %s in %s", host, config)
	}
}

func TestLoginLogout(t *testing.T) {
	s := registrytest.NewInProcess(t, registrytest.WithBasicAuth(map[string]string{"alice": "login-secret-4242"}))
	registrytest.Seed(t, s, registrytest.SampleOptions{})
	loginLogout(t, s, []string{"--plain-http"})
}

// The distribution registry process, with htpasswd and TLS from a
// self-signed CA. Skipped without $REGVAULT_DISTRIBUTION (make test sets it).

func TestDistributionLoginLogout(t *testing.T) {
	s := registrytest.NewDistribution(t, registrytest.DistConfig{
		Htpasswd: map[string]string{"alice": "login-secret-4242"},
		TLS:      true,
	})
	registrytest.Seed(t, s, registrytest.SampleOptions{})
	loginLogout(t, s, []string{"--ca-file", s.CAFile()})
}

func TestDistributionWrongPassword(t *testing.T) {
	const password = "dist-password-31337"
	const wrong = "dist-wrong-password-1"
	s := registrytest.NewDistribution(t, registrytest.DistConfig{Htpasswd: map[string]string{"alice": password}})
	registrytest.Seed(t, s, registrytest.SampleOptions{})
	dir := t.TempDir()
	r := regvault(t, wrong, "backup", "--plain-http", "-u", "alice", "--password-stdin",
		"-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend"), ref(s, "library/base"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr,
		"Error: Failed to backup "+s.Host()+"/demo/frontend",
		"Error: Failed to backup "+s.Host()+"/library/base",
		"authentication required",
		"Recommendations:",
		"Check credentials for "+s.Host())
	wantNotContains(t, "output", r.stdout+r.stderr, wrong, password)
	wantEmptyDir(t, dir)

	r = regvault(t, password, "backup", "--plain-http", "-u", "alice", "--password-stdin", "--include-referrers",
		"-o", filepath.Join(dir, "ok.tar"), ref(s, "demo/frontend"), ref(s, "library/base"))
	r.wantCode(t, exitOK)
	wantContains(t, "stdout", r.stdout, "Successfully backed up 4 tag(s) from 2 repository(ies)")
}

func TestDistributionTLS(t *testing.T) {
	s := registrytest.NewDistribution(t, registrytest.DistConfig{TLS: true})
	registrytest.Seed(t, s, registrytest.SampleOptions{})
	dir := t.TempDir()
	r := regvault(t, "", "backup", "-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend"))
	r.wantCode(t, exitFailure)
	wantContains(t, "stderr", r.stderr, "TLS certificate not trusted", "--ca-file", "--insecure")
	wantEmptyDir(t, dir)

	r = regvault(t, "", "backup", "--ca-file", s.CAFile(), "-o", filepath.Join(dir, "ca.tar"), ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	r = regvault(t, "", "backup", "--insecure", "--format", "json", "-o", filepath.Join(dir, "insecure"), ref(s, "demo/frontend"))
	r.wantCode(t, exitOK)
	parseJSON(t, r.stdout)
}
