package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/regvault/regvault/internal/registrytest"
)

// bearerAuth puts token authentication in front of a registry, the way
// registries that take identity tokens do: a request without the access
// token is answered 401 with a Bearer challenge whose realm is the
// registry's own /token endpoint, which hands out the access token for the
// identity (refresh) token, and only for it. Requests to /token are
// counted in tokenRequests.
func bearerAuth(identityToken, accessToken string, tokenRequests *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				tokenRequests.Add(1)
				if r.Method == http.MethodPost && r.ParseForm() == nil &&
					r.PostForm.Get("grant_type") == "refresh_token" && r.PostForm.Get("refresh_token") == identityToken {
					w.Header().Set("Content-Type", "application/json")
					json.NewEncoder(w).Encode(map[string]any{"access_token": accessToken, "expires_in": 300})
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid identity token"}]}`)
				return
			}
			if r.Header.Get("Authorization") == "Bearer "+accessToken {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="regvault-test"`, r.Host))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		})
	}
}

// No password, identity token, access token or Authorization header value
// appears in anything regvault prints: text and JSON output, --debug
// lines, errors and recommendations, with credentials given by flag, on
// standard input or from the Docker config, right and wrong, for backup,
// restore and login. The debug transport prints the method and URL of
// each request and never a header.
func TestSecretsNeverPrintedReliability(t *testing.T) {
	const (
		user          = "alice"
		password      = "pw-S3cret-backup-5e1f0a"
		wrongPassword = "pw-Wr0ng-guess-77c3b9"
		identityToken = "idt-S3cret-refresh-0b8e41d2"
		wrongToken    = "idt-Wr0ng-refresh-9a7c55"
		accessToken   = "acc-S3cret-bearer-3f6d20aa"
	)
	forbidden := []string{
		password, wrongPassword, identityToken, wrongToken, accessToken,
		base64.StdEncoding.EncodeToString([]byte(user + ":" + password)),
		base64.StdEncoding.EncodeToString([]byte(user + ":" + wrongPassword)),
		"Authorization", "Bearer " + accessToken, "Basic ",
	}
	src, sample := sampleRegistry(t, registrytest.WithBasicAuth(map[string]string{user: password}))
	var tokenRequests atomic.Int64
	dst := registrytest.NewInProcess(t, registrytest.WithHandler(bearerAuth(identityToken, accessToken, &tokenRequests)))
	dir := t.TempDir()
	in := filepath.Join(dir, "apps.tar")
	config := filepath.Join(dir, "docker", "config.json")
	srcRef := ref(src, registrytest.SampleFrontend)
	dstRef := ref(dst, registrytest.SampleFrontend)
	emptyConfig := filepath.Join(dir, "none", "config.json") // no credentials at all

	check := func(t *testing.T, r result, debug bool) {
		t.Helper()
		wantNotContains(t, "output", r.stdout+r.stderr, forbidden...)
		if debug && !strings.Contains(r.stderr, "debug: ") {
			t.Errorf("--debug printed no request lines:\n%s", r.stderr)
		}
	}
	backupArgs := func(out string, extra ...string) []string {
		return append(append([]string{"-d", "backup", "--plain-http", "--no-tty", "--include-referrers", "-o", out}, extra...), srcRef)
	}
	restoreArgs := func(extra ...string) []string {
		return append(append([]string{"-d", "restore", "--plain-http", "--no-tty", "-i", in}, extra...), dstRef)
	}

	steps := []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		// backup: basic authentication
		{"backup, password on stdin", password + "\n", backupArgs(in, "-u", user, "--password-stdin"), exitOK},
		{"backup, password on stdin, json", password, backupArgs(filepath.Join(dir, "b2.tar"), "--format", "json", "-u", user, "--password-stdin"), exitOK},
		{"backup, wrong password on stdin", wrongPassword, backupArgs(filepath.Join(dir, "b3.tar"), "-u", user, "--password-stdin"), exitFailure},
		{"backup, wrong password on stdin, json", wrongPassword, backupArgs(filepath.Join(dir, "b4.tar"), "--format", "json", "-u", user, "--password-stdin"), exitFailure},
		{"backup, password flag", "", backupArgs(filepath.Join(dir, "b5.tar"), "-u", user, "-p", password), exitOK},
		{"backup, wrong password flag, dry run", "", backupArgs(filepath.Join(dir, "b6.tar"), "--dry-run", "-u", user, "-p", wrongPassword), exitFailure},
		{"backup, no credentials", "", backupArgs(filepath.Join(dir, "b7.tar"), "--registry-config", emptyConfig), exitFailure},
		{"login with password", password, []string{"-d", "login", "--plain-http", "--registry-config", config, "-u", user, "--password-stdin", src.Host()}, exitOK},
		{"login with wrong password", wrongPassword, []string{"-d", "login", "--plain-http", "--registry-config", filepath.Join(dir, "c2", "config.json"), "-u", user, "--password-stdin", src.Host()}, exitFailure},
		// the password now comes from the Docker config: regvault does
		// not know it to redact it
		{"backup, password from the Docker config", "", backupArgs(filepath.Join(dir, "b8.tar"), "--registry-config", config), exitOK},
		{"backup, password from the Docker config, json", "", backupArgs(filepath.Join(dir, "b9.tar"), "--format", "json", "--registry-config", config), exitOK},

		// restore: token authentication with an identity token
		{"restore, identity token on stdin", identityToken, restoreArgs("--identity-token-stdin"), exitOK},
		{"restore, identity token on stdin, json", identityToken, restoreArgs("--format", "json", "--identity-token-stdin"), exitOK},
		{"restore, wrong identity token on stdin", wrongToken, restoreArgs("--identity-token-stdin"), exitFailure},
		{"restore, wrong identity token on stdin, json", wrongToken, restoreArgs("--format", "json", "--identity-token-stdin"), exitFailure},
		{"restore, identity token flag, dry run", "", restoreArgs("--dry-run", "--identity-token", identityToken), exitOK},
		{"restore, wrong identity token flag, dry run, json", "", restoreArgs("--dry-run", "--format", "json", "--identity-token", wrongToken), exitOK}, // the dry run says it could not ask,
		{"restore, password without username (an identity token)", "", restoreArgs("-p", identityToken), exitOK},
		{"restore, basic credentials to a token registry", password, restoreArgs("-u", user, "--password-stdin"), exitFailure},
		{"login with identity token", identityToken, []string{"-d", "login", "--plain-http", "--registry-config", config, "--identity-token-stdin", dst.Host()}, exitOK},
		{"login with wrong identity token", wrongToken, []string{"-d", "login", "--plain-http", "--registry-config", filepath.Join(dir, "c3", "config.json"), "--identity-token-stdin", dst.Host()}, exitFailure},
		{"restore, identity token from the Docker config", "", restoreArgs("--registry-config", config), exitOK},
		{"restore, identity token from the Docker config, json", "", restoreArgs("--format", "json", "--registry-config", config), exitOK},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := regvault(t, s.stdin, s.args...)
			r.wantCode(t, s.code)
			check(t, r, true)
		})
	}
	if tokenRequests.Load() == 0 {
		t.Error("the token endpoint was never asked: the identity token was not used")
	}
	if n := dst.Stats().Count(http.MethodPut, registrytest.KindManifest); n < int64(len(sample.Tags[registrytest.SampleFrontend])) {
		t.Errorf("%d manifests pushed with the identity token", n)
	}
}

// The same against the CNCF distribution registry with htpasswd and TLS:
// backup and restore with --debug, text and JSON, wrong and right
// password.
func TestSecretsNeverPrintedDistributionReliability(t *testing.T) {
	const password, wrong = "dist-S3cret-pw-61a9", "dist-Wr0ng-pw-0c2e"
	s := registrytest.NewDistribution(t, registrytest.DistConfig{TLS: true, Htpasswd: map[string]string{"alice": password}})
	registrytest.Seed(t, s, registrytest.SampleOptions{})
	forbidden := []string{password, wrong, "Authorization", "Basic ",
		base64.StdEncoding.EncodeToString([]byte("alice:" + password)), base64.StdEncoding.EncodeToString([]byte("alice:" + wrong))}
	dir := t.TempDir()
	in := filepath.Join(dir, "b.tar")
	tls := []string{"--no-tty", "--ca-file", s.CAFile(), "-u", "alice", "--password-stdin"}
	for _, step := range []struct {
		stdin string
		args  []string
		code  int
	}{
		{wrong, append(append([]string{"-d", "backup"}, tls...), "-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend")), exitFailure},
		{wrong, append(append([]string{"-d", "backup", "--format", "json"}, tls...), "-o", filepath.Join(dir, "x.tar"), ref(s, "demo/frontend")), exitFailure},
		{password, append(append([]string{"-d", "backup", "--include-referrers"}, tls...), "-o", in, ref(s, "demo/frontend")), exitOK},
		{wrong, append(append([]string{"-d", "restore", "-i", in}, tls...), ref(s, "copy/frontend")), exitFailure},
		{wrong, append(append([]string{"-d", "restore", "--format", "json", "-i", in}, tls...), ref(s, "copy/frontend")), exitFailure},
		{password, append(append([]string{"-d", "restore", "--format", "json", "-i", in}, tls...), ref(s, "copy/frontend")), exitOK},
	} {
		r := regvault(t, step.stdin, step.args...)
		r.wantCode(t, step.code)
		wantNotContains(t, "output", r.stdout+r.stderr, forbidden...)
		if !strings.Contains(r.stderr, "debug: ") {
			t.Errorf("--debug printed no request lines")
		}
	}
}
