package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/regvault/regvault/registry"
)

// registryFlags are the flags every command that talks to a registry
// shares, with the meaning oras gives them.
type registryFlags struct {
	c *cli

	username           string
	password           string
	passwordStdin      bool
	identityToken      string
	identityTokenStdin bool
	registryConfig     string
	plainHTTP          bool
	insecure           bool
	caFile             string
	certFile           string
	keyFile            string
	headers            []string
	resolve            []string
	distributionSpec   string
	concurrency        int
	readTimeout        time.Duration
	maxRetryWait       time.Duration
	noTTY              bool
}

// addFlags registers the flags on fs. withConcurrency is false for
// commands that move no content (login).
func (f *registryFlags) addFlags(fs *pflag.FlagSet, withConcurrency bool) {
	fs.StringVarP(&f.username, "username", "u", "", "registry username")
	fs.StringVarP(&f.password, "password", "p", "", "registry password or identity token (insecure on the command line: prefer --password-stdin)")
	fs.BoolVar(&f.passwordStdin, "password-stdin", false, "read the password from standard input")
	fs.StringVar(&f.identityToken, "identity-token", "", "registry identity token (refresh token)")
	fs.BoolVar(&f.identityTokenStdin, "identity-token-stdin", false, "read the identity token from standard input")
	fs.StringVar(&f.registryConfig, "registry-config", "", "path of the Docker config file with credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "talk to the registry over plain HTTP instead of HTTPS")
	fs.BoolVar(&f.insecure, "insecure", false, "accept any TLS certificate of the registry (not recommended)")
	fs.StringVar(&f.caFile, "ca-file", "", "CA certificate file (PEM) to verify the registry's certificate with")
	fs.StringVar(&f.certFile, "cert-file", "", "client certificate file (PEM) for mutual TLS")
	fs.StringVar(&f.keyFile, "key-file", "", "client private key file (PEM) for mutual TLS")
	fs.StringArrayVarP(&f.headers, "header", "H", nil, "add an HTTP header to every request, as 'Name: value' (repeatable)")
	fs.StringArrayVar(&f.resolve, "resolve", nil, "connect to host:port at address[:port] instead, as host:port:address[:port] (repeatable)")
	fs.StringVar(&f.distributionSpec, "distribution-spec", "", "how to find referrers: "+registry.SpecReferrersAPI+" (Referrers API) or "+registry.SpecReferrersTag+" (tag schema); default: detect")
	if withConcurrency {
		fs.IntVar(&f.concurrency, "concurrency", 8, "blob transfers under way at once, across repositories, tags and blobs (small requests: up to 4× as many; a large blob may use several for byte ranges)")
	}
	fs.DurationVar(&f.readTimeout, "read-timeout", registry.DefaultReadTimeout, "how long a registry may send nothing (no answer, no byte of a body) or take no byte of an upload before the request counts as failed and is retried (a blob download resumes where it stopped, an upload starts over)")
	fs.DurationVar(&f.maxRetryWait, "max-retry-wait", registry.DefaultMaxRetryWait, "the longest wait a registry's Retry-After is honoured for before a retry (a longer one is cut to it); each wait is announced on standard error")
	fs.BoolVar(&f.noTTY, "no-tty", false, "print plain lines, no progress bar, even on a terminal")
}

// options validates the flags into registry options, reading a password or
// identity token from stdin when asked to.
func (f *registryFlags) options(stdin io.Reader) (registry.Options, error) {
	o := registry.Options{
		Username:         f.username,
		Password:         f.password,
		IdentityToken:    f.identityToken,
		RegistryConfig:   f.registryConfig,
		PlainHTTP:        f.plainHTTP,
		Insecure:         f.insecure,
		CAFile:           f.caFile,
		CertFile:         f.certFile,
		KeyFile:          f.keyFile,
		Resolve:          f.resolve,
		DistributionSpec: f.distributionSpec,
		Concurrency:      f.concurrency,
		ReadTimeout:      f.readTimeout,
		UserAgent:        "regvault/" + versionString(),
		MaxRetryWait:     f.maxRetryWait,
		Notice:           stderrLines{f.c},
	}
	f.c.addSecret(f.password)
	f.c.addSecret(f.identityToken)
	switch {
	case f.password != "" && f.passwordStdin:
		return o, usageError("--password and --password-stdin cannot be used together")
	case f.identityToken != "" && f.identityTokenStdin:
		return o, usageError("--identity-token and --identity-token-stdin cannot be used together")
	case f.passwordStdin && f.identityTokenStdin:
		return o, usageError("--password-stdin and --identity-token-stdin cannot be used together: both read standard input")
	case (f.identityToken != "" || f.identityTokenStdin) && (f.password != "" || f.passwordStdin):
		return o, usageError("an identity token and a password cannot be used together")
	case (f.identityToken != "" || f.identityTokenStdin) && f.username != "":
		return o, usageError("--username cannot be used with an identity token")
	}
	if f.readTimeout <= 0 {
		return o, usageError("--read-timeout %s: give a duration above zero, e.g. 60s or 2m", f.readTimeout)
	}
	if f.maxRetryWait <= 0 {
		return o, usageError("--max-retry-wait %s: give a positive duration, e.g. 60s or 5m", f.maxRetryWait)
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return o, usageError("--cert-file and --key-file go together")
	}
	if f.distributionSpec != "" && f.distributionSpec != registry.SpecReferrersAPI && f.distributionSpec != registry.SpecReferrersTag {
		return o, usageError("--distribution-spec %q: use %s or %s", f.distributionSpec, registry.SpecReferrersAPI, registry.SpecReferrersTag)
	}
	for _, r := range f.resolve {
		if err := checkResolve(r); err != nil {
			return o, err
		}
	}
	if len(f.headers) > 0 {
		o.Headers = http.Header{}
		for _, h := range f.headers {
			name, value, ok := strings.Cut(h, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return o, usageError("--header %q: expected 'Name: value'", h)
			}
			o.Headers.Add(name, strings.TrimSpace(value))
		}
	}
	if f.passwordStdin || f.identityTokenStdin {
		what := "--password-stdin"
		if f.identityTokenStdin {
			what = "--identity-token-stdin"
		}
		secret, err := readSecret(stdin)
		if err != nil {
			return o, fmt.Errorf("%s: reading standard input: %w", what, err)
		}
		if secret == "" {
			return o, usageError("%s: standard input is empty", what)
		}
		f.c.addSecret(secret)
		if f.passwordStdin {
			o.Password = secret
		} else {
			o.IdentityToken = secret
		}
	}
	if o.Password != "" && o.Username == "" {
		// As oras: a password without a username is an identity token.
		o.IdentityToken, o.Password = o.Password, ""
	}
	if f.password != "" {
		fmt.Fprintln(f.c.stderr, "WARNING! Using --password via the command line is insecure: it is visible to other users and kept in shell history. Use --password-stdin.")
	}
	if f.c.debug {
		o.Debug = stderrLines{f.c}
	}
	return o, nil
}

// tty reports whether w is a terminal and the flags allow terminal output.
func (f *registryFlags) tty(w io.Writer) bool {
	return !f.noTTY && isTerminal(w)
}

func isTerminal(v any) bool {
	file, ok := v.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

func checkResolve(e string) error {
	parts := strings.Split(e, ":")
	if len(parts) != 3 && len(parts) != 4 {
		return usageError("--resolve %q: expected host:port:address[:port]", e)
	}
	for _, p := range parts {
		if p == "" {
			return usageError("--resolve %q: expected host:port:address[:port]", e)
		}
	}
	if net.ParseIP(parts[2]) == nil {
		return usageError("--resolve %q: %q is not an IP address", e, parts[2])
	}
	return nil
}

// readSecret reads a password or token from r: all of it, without the
// trailing line break.
func readSecret(r io.Reader) (string, error) {
	if r == nil {
		return "", nil
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (c *cli) addSecret(s string) {
	if s != "" {
		c.secrets = append(c.secrets, s)
	}
}

// warnInsecure prints a warning on stderr for each host that is not on
// this machine when --plain-http or --insecure is used: credentials and
// content then cross the network unencrypted, or to a server whose
// identity is not checked.
func (f *registryFlags) warnInsecure(hosts ...string) {
	for _, w := range insecureWarnings(f.plainHTTP, f.insecure, hosts) {
		fmt.Fprintln(f.c.stderr, w)
	}
}

// insecureWarnings are the warnings warnInsecure prints, one per
// non-loopback host (each host once). --plain-http has no TLS at all, so
// it is the one warned about when both are given.
func insecureWarnings(plainHTTP, insecure bool, hosts []string) []string {
	if !plainHTTP && !insecure {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, h := range hosts {
		if seen[h] || isLoopbackHost(h) {
			continue
		}
		seen[h] = true
		if plainHTTP {
			out = append(out, fmt.Sprintf("WARNING! --plain-http: talking to %s over plain HTTP: credentials and content cross the network unencrypted.", h))
		} else {
			out = append(out, fmt.Sprintf("WARNING! --insecure: the TLS certificate of %s is not verified: anyone on the network path can impersonate the registry. Prefer --ca-file.", h))
		}
	}
	return out
}

// isLoopbackHost says whether a registry host (host[:port]) is this
// machine: localhost, 127.0.0.0/8 or ::1.
func isLoopbackHost(host string) bool {
	h := host
	if name, _, err := net.SplitHostPort(host); err == nil {
		h = name
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
