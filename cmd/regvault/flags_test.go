package main

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/regvault/regvault/registry"
)

// copyFlags registers a copy's registry flags on a new flag set and parses
// args with them.
func copyFlags(t *testing.T, args ...string) (*copyRegistryFlags, *pflag.FlagSet, *bytes.Buffer) {
	t.Helper()
	var stderr bytes.Buffer
	f := newCopyRegistryFlags(&cli{stderr: &stderr})
	fs := pflag.NewFlagSet("copy", pflag.ContinueOnError)
	fs.SortFlags = false
	f.addFlags(fs)
	require.NoError(t, fs.Parse(args))
	return f, fs, &stderr
}

// noRead fails the test if standard input is read.
type noRead struct{ t *testing.T }

func (r noRead) Read([]byte) (int, error) {
	r.t.Error("standard input was read")
	return 0, io.EOF
}

// TestCopyRegistryFlagsHelp: every registry flag twice, --from- and --to-,
// with texts naming the end and no short forms; the shared flags once.
func TestCopyRegistryFlagsHelp(t *testing.T) {
	_, fs, _ := copyFlags(t)
	names := []string{"username", "password", "password-stdin", "identity-token", "identity-token-stdin", "registry-config",
		"plain-http", "insecure", "ca-file", "cert-file", "key-file", "header", "resolve", "distribution-spec"}
	for _, end := range []struct{ prefix, name string }{{"from-", "source registry"}, {"to-", "target registry"}} {
		for _, n := range names {
			fl := fs.Lookup(end.prefix + n)
			if assert.NotNil(t, fl, end.prefix+n) {
				assert.Empty(t, fl.Shorthand, end.prefix+n)
				assert.Contains(t, fl.Usage, end.name, end.prefix+n)
			}
			assert.Nil(t, fs.Lookup(n), "--%s without a prefix", n)
		}
	}
	for _, n := range []string{"concurrency", "read-timeout", "max-retry-wait", "no-tty"} {
		assert.NotNil(t, fs.Lookup(n), n)
	}
	// One space between the columns, whatever their width.
	help := regexp.MustCompile(`[ ]+`).ReplaceAllString(fs.FlagUsages(), " ")
	for _, line := range []string{
		" --from-username string source registry username\n",
		" --to-username string target registry username\n",
		" --from-password string source registry password or identity token (insecure on the command line: prefer --from-password-stdin)\n",
		" --to-password-stdin read the target registry password from standard input\n",
		" --from-plain-http talk to the source registry over plain HTTP instead of HTTPS\n",
		" --to-ca-file string CA certificate file (PEM) to verify the target registry's certificate with\n",
		" --from-distribution-spec string how to find referrers on the source registry: v1.1-referrers-api (Referrers API) or v1.1-referrers-tag (tag schema); default: detect\n",
	} {
		assert.Contains(t, help, line)
	}
	assert.Less(t, strings.Index(help, "--from-distribution-spec"), strings.Index(help, "--to-username"), "the source's flags, then the target's")
	assert.Less(t, strings.Index(help, "--to-distribution-spec"), strings.Index(help, "--concurrency"), "then the shared ones")
}

// TestCopyRegistryFlagsOptions: each end gets its own settings; the
// shared ones go to both.
func TestCopyRegistryFlagsOptions(t *testing.T) {
	f, _, stderr := copyFlags(t,
		"--from-username", "alice", "--from-password-stdin", "--from-plain-http", "--from-header", "X-A: 1",
		"--to-identity-token", "tok-en", "--to-insecure", "--to-resolve", "dst.example:443:127.0.0.1", "--to-distribution-spec", registry.SpecReferrersTag,
		"--to-registry-config", "/tmp/to-config.json", "--concurrency", "3", "--read-timeout", "7s")
	from, to, err := f.options(strings.NewReader("s3cret\n"))
	require.NoError(t, err)
	assert.Equal(t, "alice", from.Username)
	assert.Equal(t, "s3cret", from.Password)
	assert.Empty(t, from.IdentityToken)
	assert.True(t, from.PlainHTTP)
	assert.False(t, from.Insecure)
	assert.Equal(t, http.Header{"X-A": {"1"}}, from.Headers)
	assert.Empty(t, from.Resolve)
	assert.Empty(t, from.DistributionSpec)
	assert.Empty(t, from.RegistryConfig)

	assert.Empty(t, to.Username)
	assert.Empty(t, to.Password)
	assert.Equal(t, "tok-en", to.IdentityToken)
	assert.False(t, to.PlainHTTP)
	assert.True(t, to.Insecure)
	assert.Nil(t, to.Headers)
	assert.Equal(t, []string{"dst.example:443:127.0.0.1"}, to.Resolve)
	assert.Equal(t, registry.SpecReferrersTag, to.DistributionSpec)
	assert.Equal(t, "/tmp/to-config.json", to.RegistryConfig)

	for _, o := range []registry.Options{from, to} {
		assert.Equal(t, 3, o.Concurrency)
		assert.Equal(t, 7*time.Second, o.ReadTimeout)
		assert.Equal(t, registry.DefaultMaxRetryWait, o.MaxRetryWait)
	}
	assert.Contains(t, f.c.secrets, "s3cret")
	assert.Contains(t, f.c.secrets, "tok-en")
	assert.Empty(t, stderr.String())

	// A password on the command line is warned about, with the end's flags.
	f, _, stderr = copyFlags(t, "--to-username", "bob", "--to-password", "hunter22")
	_, to, err = f.options(noRead{t})
	require.NoError(t, err)
	assert.Equal(t, "hunter22", to.Password)
	assert.Equal(t, "WARNING! Using --to-password via the command line is insecure: it is visible to other users and kept in shell history. Use --to-password-stdin.\n", stderr.String())
}

// TestCopyRegistryFlagsOneStdin: standard input is read by one flag at
// most, across both ends, and refused before it is read.
func TestCopyRegistryFlagsOneStdin(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from-password-stdin", "--to-password-stdin"}, "--from-password-stdin and --to-password-stdin cannot be used together: both read standard input"},
		{[]string{"--from-identity-token-stdin", "--to-password-stdin"}, "--from-identity-token-stdin and --to-password-stdin cannot be used together: both read standard input"},
		{[]string{"--from-password-stdin", "--to-identity-token-stdin"}, "--from-password-stdin and --to-identity-token-stdin cannot be used together"},
		{[]string{"--to-password-stdin", "--to-identity-token-stdin"}, "--to-password-stdin and --to-identity-token-stdin cannot be used together: both read standard input"},
	} {
		f, _, _ := copyFlags(t, tc.args...)
		_, _, err := f.options(noRead{t})
		require.Error(t, err, "%v", tc.args)
		assert.True(t, isUsage(err), "%v: %v is not a usage error", tc.args, err)
		assert.Contains(t, err.Error(), tc.want)
	}
	// The target's secret from stdin, the source's from a flag.
	f, _, _ := copyFlags(t, "--from-identity-token", "abcd", "--to-username", "u", "--to-password-stdin")
	from, to, err := f.options(strings.NewReader("pw\n"))
	require.NoError(t, err)
	assert.Equal(t, "abcd", from.IdentityToken)
	assert.Equal(t, "pw", to.Password)
}

// TestCopyRegistryFlagsErrors: each end's mistakes name that end's flags.
func TestCopyRegistryFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from-password", "x", "--from-password-stdin"}, "--from-password and --from-password-stdin cannot be used together"},
		{[]string{"--to-identity-token", "x", "--to-identity-token-stdin"}, "--to-identity-token and --to-identity-token-stdin cannot be used together"},
		{[]string{"--from-identity-token", "x", "--from-password", "y"}, "an identity token and a password cannot be used together for the source registry"},
		{[]string{"--to-identity-token", "x", "--to-username", "y"}, "--to-username cannot be used with an identity token"},
		{[]string{"--to-cert-file", "c.pem"}, "--to-cert-file and --to-key-file go together"},
		{[]string{"--from-distribution-spec", "v2"}, `--from-distribution-spec "v2": use v1.1-referrers-api or v1.1-referrers-tag`},
		{[]string{"--to-resolve", "a:1:nope"}, `--to-resolve "a:1:nope": "nope" is not an IP address`},
		{[]string{"--from-header", "bad"}, `--from-header "bad": expected 'Name: value'`},
		{[]string{"--read-timeout", "0s"}, "--read-timeout 0s: give a duration above zero"},
		{[]string{"--to-password-stdin"}, "--to-password-stdin: standard input is empty"},
	} {
		f, _, _ := copyFlags(t, tc.args...)
		_, _, err := f.options(strings.NewReader(""))
		require.Error(t, err, "%v", tc.args)
		assert.True(t, isUsage(err), "%v: %v is not a usage error", tc.args, err)
		assert.Equal(t, tc.want, err.Error()[:min(len(err.Error()), len(tc.want))], "%v", tc.args)
	}
	// An identity token and a password of different ends go together.
	f, _, _ := copyFlags(t, "--from-identity-token", "x", "--to-username", "u", "--to-password", "y")
	_, _, err := f.options(noRead{t})
	assert.NoError(t, err)
}

func TestCopyRegistryFlagsWarnInsecure(t *testing.T) {
	f, _, stderr := copyFlags(t, "--from-plain-http", "--to-insecure")
	f.warnInsecure([]string{"src.example", "127.0.0.1:5000"}, []string{"dst.example:5000"})
	assert.Equal(t, "WARNING! --from-plain-http: talking to src.example over plain HTTP: credentials and content cross the network unencrypted.\n"+
		"WARNING! --to-insecure: the TLS certificate of dst.example:5000 is not verified: anyone on the network path can impersonate the registry. Prefer --to-ca-file.\n",
		stderr.String())

	f, _, stderr = copyFlags(t, "--to-plain-http")
	f.warnInsecure([]string{"src.example"}, []string{"localhost:5000"})
	assert.Empty(t, stderr.String(), "only the end with the flag, and only hosts off this machine")
}

// TestRegistryFlagsUnprefixed: a command with one registry keeps its
// short forms and texts.
func TestRegistryFlagsUnprefixed(t *testing.T) {
	f := &registryFlags{c: &cli{stderr: io.Discard}}
	fs := pflag.NewFlagSet("backup", pflag.ContinueOnError)
	f.addFlags(fs, true)
	require.NoError(t, fs.Parse([]string{"-u", "alice", "-p", "pw12", "-H", "X-B: 2", "--concurrency", "5"}))
	o, err := f.options(noRead{t})
	require.NoError(t, err)
	assert.Equal(t, "alice", o.Username)
	assert.Equal(t, "pw12", o.Password)
	assert.Equal(t, http.Header{"X-B": {"2"}}, o.Headers)
	assert.Equal(t, 5, o.Concurrency)
	assert.Equal(t, "registry username", fs.Lookup("username").Usage)
	assert.Nil(t, fs.Lookup("from-username"))

	f = &registryFlags{c: &cli{stderr: io.Discard}}
	fs = pflag.NewFlagSet("backup", pflag.ContinueOnError)
	f.addFlags(fs, true)
	require.NoError(t, fs.Parse([]string{"--identity-token", "t", "--password", "p"}))
	_, err = f.options(noRead{t})
	assert.EqualError(t, err, "an identity token and a password cannot be used together")
}

// TestConcurrencyAdaptsUnlessGiven: without --concurrency the library is
// asked to adapt (0); given, even as 8, the number is fixed; the help
// says so and shows no fixed default.
func TestConcurrencyAdaptsUnlessGiven(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 0},
		{[]string{"--concurrency", "8"}, 8},
		{[]string{"--concurrency", "32"}, 32},
	} {
		f := &registryFlags{c: &cli{stderr: io.Discard}}
		fs := pflag.NewFlagSet("backup", pflag.ContinueOnError)
		f.addFlags(fs, true)
		require.NoError(t, fs.Parse(tc.args))
		assert.Equal(t, tc.want, f.transfers(), "%v", tc.args)
	}
	r := regvault(t, "", "backup", "--help")
	r.wantCode(t, exitOK)
	wantContains(t, "help", r.stdout, "Default: adapts, starting at 8", "up to 32; given, the number is fixed")
	if regexp.MustCompile(`--concurrency int .*\(default 8\)`).MatchString(r.stdout) {
		t.Errorf("the help shows a fixed default:\n%s", r.stdout)
	}
}
