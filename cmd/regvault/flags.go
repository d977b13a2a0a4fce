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
	endFlags
	sharedFlags
}

// endFlags are the flags of one registry: the one a command talks to, or
// one end of a copy (with a prefix: --from-, --to-).
type endFlags struct {
	// prefix is "" or the flags' prefix ("from-"); end names the registry
	// in help texts and messages ("source registry"), "" without a prefix.
	prefix, end string

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
}

// sharedFlags are given once even for two registries.
type sharedFlags struct {
	concurrency int
	// concFlag is --concurrency, to tell whether it was given.
	concFlag     *pflag.Flag
	readTimeout  time.Duration
	maxRetryWait time.Duration
	noTTY        bool
}

// addFlags registers the flags on fs. withConcurrency is false for
// commands that move no content (login).
func (f *registryFlags) addFlags(fs *pflag.FlagSet, withConcurrency bool) {
	f.endFlags.addFlags(fs)
	f.sharedFlags.addFlags(fs, withConcurrency)
}

// addFlags registers one registry's flags. Without a prefix they have the
// short forms and texts of a command with one registry; with one, as oras
// cp names them (--from-username: "source registry username").
func (f *endFlags) addFlags(fs *pflag.FlagSet) {
	// help is the text without a prefix, or the other one with the end
	// (%[1]s) and the prefix (%[2]s) filled in.
	help := func(plain, prefixed string) string {
		if f.prefix == "" {
			return plain
		}
		return fmt.Sprintf(prefixed, f.end, f.prefix)
	}
	short := func(s string) string {
		if f.prefix == "" {
			return s
		}
		return ""
	}
	p := f.prefix
	fs.StringVarP(&f.username, p+"username", short("u"), "", help("registry username", "%[1]s username"))
	fs.StringVarP(&f.password, p+"password", short("p"), "", help("registry password or identity token (insecure on the command line: prefer --password-stdin)",
		"%[1]s password or identity token (insecure on the command line: prefer --%[2]spassword-stdin)"))
	fs.BoolVar(&f.passwordStdin, p+"password-stdin", false, help("read the password from standard input", "read the %[1]s password from standard input"))
	fs.StringVar(&f.identityToken, p+"identity-token", "", help("registry identity token (refresh token)", "%[1]s identity token (refresh token)"))
	fs.BoolVar(&f.identityTokenStdin, p+"identity-token-stdin", false, help("read the identity token from standard input",
		"read the %[1]s identity token from standard input"))
	fs.StringVar(&f.registryConfig, p+"registry-config", "", help("path of the Docker config file with credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)",
		"path of the Docker config file with the %[1]s credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)"))
	fs.BoolVar(&f.plainHTTP, p+"plain-http", false, help("talk to the registry over plain HTTP instead of HTTPS", "talk to the %[1]s over plain HTTP instead of HTTPS"))
	fs.BoolVar(&f.insecure, p+"insecure", false, help("accept any TLS certificate of the registry (not recommended)",
		"accept any TLS certificate of the %[1]s (not recommended)"))
	fs.StringVar(&f.caFile, p+"ca-file", "", help("CA certificate file (PEM) to verify the registry's certificate with",
		"CA certificate file (PEM) to verify the %[1]s's certificate with"))
	fs.StringVar(&f.certFile, p+"cert-file", "", help("client certificate file (PEM) for mutual TLS", "client certificate file (PEM) for mutual TLS with the %[1]s"))
	fs.StringVar(&f.keyFile, p+"key-file", "", help("client private key file (PEM) for mutual TLS", "client private key file (PEM) for mutual TLS with the %[1]s"))
	fs.StringArrayVarP(&f.headers, p+"header", short("H"), nil, help("add an HTTP header to every request, as 'Name: value' (repeatable)",
		"add an HTTP header to every request to the %[1]s, as 'Name: value' (repeatable)"))
	fs.StringArrayVar(&f.resolve, p+"resolve", nil, help("connect to host:port at address[:port] instead, as host:port:address[:port] (repeatable)",
		"for the %[1]s, connect to host:port at address[:port] instead, as host:port:address[:port] (repeatable)"))
	fs.StringVar(&f.distributionSpec, p+"distribution-spec", "", help("how to find referrers: ", "how to find referrers on the %[1]s: ")+
		registry.SpecReferrersAPI+" (Referrers API) or "+registry.SpecReferrersTag+" (tag schema); default: detect")
}

func (f *sharedFlags) addFlags(fs *pflag.FlagSet, withConcurrency bool) {
	if withConcurrency {
		fs.IntVar(&f.concurrency, "concurrency", 8, "blob transfers under way at once, across repositories, tags and blobs (small requests, blobs under 1 MiB among them: up to 4× as many; a large blob may use several for byte ranges, and the slots the others leave idle). Default: adapts, starting at 8, raised from the registry's first answer to a small request and from the latency of the first transfers (16 from 25 ms to their first byte, 32 from 50 ms, or less if a small request is answered sooner; back to 8 if the transfers started then wait over twice as long for theirs), then doubled while the throughput grows with it, up to 32; given, the number is fixed")
		f.concFlag = fs.Lookup("concurrency")
		// Not given, it adapts (the help says how), rather than being 8:
		// no "(default 8)" in the help.
		f.concFlag.DefValue = "0"
	}
	fs.DurationVar(&f.readTimeout, "read-timeout", registry.DefaultReadTimeout, "how long a registry may send nothing (no answer, no byte of a body) or take no byte of an upload before the request counts as failed and is retried (a blob download resumes where it stopped, an upload starts over)")
	fs.DurationVar(&f.maxRetryWait, "max-retry-wait", registry.DefaultMaxRetryWait, "the longest wait a registry's Retry-After is honoured for before a retry (a longer one is cut to it); each wait is announced on standard error")
	fs.BoolVar(&f.noTTY, "no-tty", false, "print plain lines, no progress bar, even on a terminal")
}

// options validates the flags into registry options, reading a password or
// identity token from stdin when asked to.
func (f *registryFlags) options(stdin io.Reader) (registry.Options, error) {
	return f.endFlags.options(f.c, f.sharedFlags, stdin)
}

// transfers is the library's Concurrency: --concurrency, or 0 (adapt)
// when it was not given.
func (f *sharedFlags) transfers() int {
	if f.concFlag != nil && !f.concFlag.Changed {
		return 0
	}
	return f.concurrency
}

func (f *sharedFlags) check() error {
	if f.readTimeout <= 0 {
		return usageError("--read-timeout %s: give a duration above zero, e.g. 60s or 2m", f.readTimeout)
	}
	if f.maxRetryWait <= 0 {
		return usageError("--max-retry-wait %s: give a positive duration, e.g. 60s or 5m", f.maxRetryWait)
	}
	return nil
}

// flag is a flag's name as the user types it: --<prefix><name>.
func (f *endFlags) flag(name string) string { return "--" + f.prefix + name }

// forEnd is "" without a prefix, else " for the <end>", to say which
// registry a message is about.
func (f *endFlags) forEnd() string {
	if f.prefix == "" {
		return ""
	}
	return " for the " + f.end
}

// stdinFlags are the flags set that read standard input.
func (f *endFlags) stdinFlags() []string {
	var out []string
	if f.passwordStdin {
		out = append(out, f.flag("password-stdin"))
	}
	if f.identityTokenStdin {
		out = append(out, f.flag("identity-token-stdin"))
	}
	return out
}

// options validates one registry's flags and the shared ones into
// registry options, reading a password or identity token from stdin when
// asked to.
func (f *endFlags) options(c *cli, shared sharedFlags, stdin io.Reader) (registry.Options, error) {
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
		Concurrency:      shared.concurrency,
		ReadTimeout:      shared.readTimeout,
		UserAgent:        "regvault/" + versionString(),
		MaxRetryWait:     shared.maxRetryWait,
		Notice:           stderrLines{c},
	}
	c.addSecret(f.password)
	c.addSecret(f.identityToken)
	switch {
	case f.password != "" && f.passwordStdin:
		return o, usageError("%s and %s cannot be used together", f.flag("password"), f.flag("password-stdin"))
	case f.identityToken != "" && f.identityTokenStdin:
		return o, usageError("%s and %s cannot be used together", f.flag("identity-token"), f.flag("identity-token-stdin"))
	case f.passwordStdin && f.identityTokenStdin:
		return o, usageError("%s and %s cannot be used together: both read standard input", f.flag("password-stdin"), f.flag("identity-token-stdin"))
	case (f.identityToken != "" || f.identityTokenStdin) && (f.password != "" || f.passwordStdin):
		return o, usageError("an identity token and a password cannot be used together%s", f.forEnd())
	case (f.identityToken != "" || f.identityTokenStdin) && f.username != "":
		return o, usageError("%s cannot be used with an identity token", f.flag("username"))
	}
	if err := shared.check(); err != nil {
		return o, err
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return o, usageError("%s and %s go together", f.flag("cert-file"), f.flag("key-file"))
	}
	if f.distributionSpec != "" && f.distributionSpec != registry.SpecReferrersAPI && f.distributionSpec != registry.SpecReferrersTag {
		return o, usageError("%s %q: use %s or %s", f.flag("distribution-spec"), f.distributionSpec, registry.SpecReferrersAPI, registry.SpecReferrersTag)
	}
	for _, r := range f.resolve {
		if err := checkResolve(f.flag("resolve"), r); err != nil {
			return o, err
		}
	}
	if len(f.headers) > 0 {
		o.Headers = http.Header{}
		for _, h := range f.headers {
			name, value, ok := strings.Cut(h, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return o, usageError("%s %q: expected 'Name: value'", f.flag("header"), h)
			}
			o.Headers.Add(name, strings.TrimSpace(value))
		}
	}
	if f.passwordStdin || f.identityTokenStdin {
		what := f.stdinFlags()[0]
		secret, err := readSecret(stdin)
		if err != nil {
			return o, fmt.Errorf("%s: reading standard input: %w", what, err)
		}
		if secret == "" {
			return o, usageError("%s: standard input is empty", what)
		}
		c.addSecret(secret)
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
		fmt.Fprintf(c.stderr, "WARNING! Using %s via the command line is insecure: it is visible to other users and kept in shell history. Use %s.\n",
			f.flag("password"), f.flag("password-stdin"))
	}
	if c.debug {
		o.Debug = stderrLines{c}
	}
	return o, nil
}

// copyRegistryFlags are the registry flags of a command with two
// registries (copy): each end's flags with its prefix, as oras cp has them
// (--from-username, --to-username, ...), and the shared ones once.
type copyRegistryFlags struct {
	c        *cli
	from, to endFlags
	sharedFlags
}

func newCopyRegistryFlags(c *cli) *copyRegistryFlags {
	return &copyRegistryFlags{c: c,
		from: endFlags{prefix: "from-", end: "source registry"},
		to:   endFlags{prefix: "to-", end: "target registry"}}
}

// addFlags registers the source's flags, the target's, then the shared
// ones.
func (f *copyRegistryFlags) addFlags(fs *pflag.FlagSet) {
	f.from.addFlags(fs)
	f.to.addFlags(fs)
	f.sharedFlags.addFlags(fs, true)
}

// options validates the flags into the source's and the target's registry
// options. Standard input is read once at most: only one of the -stdin
// flags of both ends may be given.
func (f *copyRegistryFlags) options(stdin io.Reader) (from, to registry.Options, err error) {
	if err := f.sharedFlags.check(); err != nil {
		return from, to, err
	}
	if fs, ts := f.from.stdinFlags(), f.to.stdinFlags(); len(fs) > 0 && len(ts) > 0 {
		return from, to, usageError("%s and %s cannot be used together: both read standard input; "+
			"give one of the secrets another way (e.g. %s, %s or a Docker config with %s)",
			fs[0], ts[0], f.to.flag("password"), f.to.flag("identity-token"), f.to.flag("registry-config"))
	}
	if from, err = f.from.options(f.c, f.sharedFlags, stdin); err != nil {
		return from, to, err
	}
	to, err = f.to.options(f.c, f.sharedFlags, stdin)
	return from, to, err
}

// tty reports whether w is a terminal and the flags allow terminal output.
func (f *copyRegistryFlags) tty(w io.Writer) bool {
	return !f.noTTY && isTerminal(w)
}

// warnInsecure prints a warning on stderr for each host of each end that
// is not on this machine when that end's --*-plain-http or --*-insecure is
// used.
func (f *copyRegistryFlags) warnInsecure(from, to []string) {
	for _, w := range insecureWarningsFor("--from-", f.from.plainHTTP, f.from.insecure, from) {
		fmt.Fprintln(f.c.stderr, w)
	}
	for _, w := range insecureWarningsFor("--to-", f.to.plainHTTP, f.to.insecure, to) {
		fmt.Fprintln(f.c.stderr, w)
	}
}

// tty reports whether w is a terminal and the flags allow terminal output.
func (f *registryFlags) tty(w io.Writer) bool {
	return !f.noTTY && isTerminal(w)
}

func isTerminal(v any) bool {
	file, ok := v.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// checkResolve checks the value e of flag (--resolve, or a prefixed one).
func checkResolve(flag, e string) error {
	parts := strings.Split(e, ":")
	if len(parts) != 3 && len(parts) != 4 {
		return usageError("%s %q: expected host:port:address[:port]", flag, e)
	}
	for _, p := range parts {
		if p == "" {
			return usageError("%s %q: expected host:port:address[:port]", flag, e)
		}
	}
	if net.ParseIP(parts[2]) == nil {
		return usageError("%s %q: %q is not an IP address", flag, e, parts[2])
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
	return insecureWarningsFor("--", plainHTTP, insecure, hosts)
}

// insecureWarningsFor is insecureWarnings naming the flags with prefix
// ("--", or "--from-" for a copy's source).
func insecureWarningsFor(prefix string, plainHTTP, insecure bool, hosts []string) []string {
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
			out = append(out, fmt.Sprintf("WARNING! %splain-http: talking to %s over plain HTTP: credentials and content cross the network unencrypted.", prefix, h))
		} else {
			out = append(out, fmt.Sprintf("WARNING! %sinsecure: the TLS certificate of %s is not verified: anyone on the network path can impersonate the registry. Prefer %sca-file.", prefix, h, prefix))
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
