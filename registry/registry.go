// Package registry is how regvault talks to a registry: one HTTP client per
// registry host with TLS, credentials (flags, or the Docker config and its
// credential helpers), retries and custom headers, all from oras-go.
package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regvault/regvault/graph"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Distribution-spec modes for referrers, as `oras --distribution-spec`.
const (
	SpecReferrersAPI = "v1.1-referrers-api"
	SpecReferrersTag = "v1.1-referrers-tag"
)

// Options are the registry flags shared by every command.
type Options struct {
	Username      string
	Password      string // never printed
	IdentityToken string // never printed
	// RegistryConfig is the Docker config path for credentials; "" is
	// the default (~/.docker/config.json, $DOCKER_CONFIG).
	RegistryConfig string
	PlainHTTP      bool
	Insecure       bool // skip TLS verification
	CAFile         string
	CertFile       string
	KeyFile        string
	Headers        http.Header
	// Resolve entries are host:port:address[:port], as curl and oras take.
	Resolve          []string
	DistributionSpec string
	// Concurrency sizes the connection pool.
	Concurrency int
	// Debug, when set, receives one line per HTTP request (no headers).
	Debug     io.Writer
	UserAgent string
	// ReadTimeout is how long a registry may send nothing (no answer to
	// a request without a body, no byte of a body) or take no byte of an
	// upload before the request counts as failed and is retried; 0 is
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// MaxRetryWait is the longest wait a registry's Retry-After is
	// honoured for (longer ones are cut to it); 0 is DefaultMaxRetryWait.
	MaxRetryWait time.Duration
	// Notice, when set, is told of each wait a registry asked for.
	Notice io.Writer
}

func (o Options) readTimeout() time.Duration {
	if o.ReadTimeout <= 0 {
		return DefaultReadTimeout
	}
	return o.ReadTimeout
}

// Client reaches the repositories of one registry host.
type Client struct {
	host  string
	opts  Options
	auth  *auth.Client
	mu    sync.Mutex
	repos map[string]*remote.Repository

	// referrers is what the host answers for referrers, found out by the
	// first listing (or given by --distribution-spec) and then handed to
	// every repository of the host: a registry has the Referrers API or
	// not, whatever the repository, and asking again in each repository
	// costs a request each.
	referrers atomic.Int32
	// probing is held by the one listing that finds it out while the
	// others wait for its answer (a slot of one, to wait with a context).
	probing chan struct{}
	rtts    *roundTrips
}

// Referrers capability of a host (Client.referrers).
const (
	referrersUnknown int32 = iota
	referrersAPI
	referrersTagSchema
)

// New builds a client for host (host[:port]).
func New(host string, o Options) (*Client, error) {
	if o.DistributionSpec != "" && o.DistributionSpec != SpecReferrersAPI && o.DistributionSpec != SpecReferrersTag {
		return nil, fmt.Errorf("--distribution-spec %q: use %s or %s", o.DistributionSpec, SpecReferrersAPI, SpecReferrersTag)
	}
	tr, err := transport(o)
	if err != nil {
		return nil, err
	}
	// The debug lines are written below the retries: each attempt shows.
	rtts := &roundTrips{base: tr}
	var rt http.RoundTripper = &errorBodyTransport{base: &timeoutTransport{base: rtts, idle: o.readTimeout()}}
	rt = &metadataTransport{base: rt}
	if o.Debug != nil {
		rt = &debugTransport{base: rt, w: o.Debug}
	}
	rt = &retryTransport{base: rt, policy: newRetryPolicy(host, o.MaxRetryWait, o.Notice)}
	cred, err := credential(host, o)
	if err != nil {
		return nil, err
	}
	ac := &auth.Client{
		Client:     &http.Client{Transport: rt},
		Header:     o.Headers.Clone(),
		Cache:      auth.NewCache(),
		Credential: cred,
	}
	ua := o.UserAgent
	if ua == "" {
		ua = "regvault"
	}
	ac.SetUserAgent(ua)
	c := &Client{host: host, opts: o, auth: ac, repos: map[string]*remote.Repository{}, probing: make(chan struct{}, 1), rtts: rtts}
	switch o.DistributionSpec {
	case SpecReferrersAPI:
		c.referrers.Store(referrersAPI)
	case SpecReferrersTag:
		c.referrers.Store(referrersTagSchema)
	}
	return c, nil
}

// LeastRoundTrip is the shortest time a request without a body (a tag
// list, a manifest, a HEAD) has waited for its answer from this registry,
// false before any answer: the round trip of the path to it, as closely as
// the client has seen it.
func (c *Client) LeastRoundTrip() (time.Duration, bool) { return c.rtts.get() }

// Host is the registry host this client talks to.
func (c *Client) Host() string { return c.host }

// Repository returns the repository at path (without the host). The same
// object is returned for the same path, so its referrers capability, once
// detected, is reused.
func (c *Client) Repository(path string) (*remote.Repository, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.repos[path]; ok {
		return r, nil
	}
	ref := registry.Reference{Registry: c.host, Repository: path}
	if err := ref.ValidateRepository(); err != nil {
		return nil, fmt.Errorf("repository %q: %w", path, err)
	}
	r := &remote.Repository{
		Client:          c.auth,
		Reference:       ref,
		PlainHTTP:       c.opts.PlainHTTP,
		SkipReferrersGC: true,
		// A registry whose pagination never ends stops here (limits.go).
		TagListMaxPages:      MaxTagPages,
		ReferrerListMaxPages: MaxReferrerPages,
	}
	c.shareReferrers(r)
	c.repos[path] = r
	return r, nil
}

// shareReferrers gives r the host's referrers capability, once known.
func (c *Client) shareReferrers(r *remote.Repository) {
	switch c.referrers.Load() {
	case referrersAPI:
		_ = r.SetReferrersCapability(true)
	case referrersTagSchema:
		_ = r.SetReferrersCapability(false)
	}
}

// ListReferrers is ListReferrers for the repository at path (without the
// host), asking the host about its Referrers API once: while no listing
// has found out whether it has one, a listing waits for the one under way
// and then goes straight to the API or the tag schema, rather than every
// repository probing the API first (a request each, and on a registry
// without it a 404 each).
func (c *Client) ListReferrers(ctx context.Context, path string, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	r, err := c.Repository(path)
	if err != nil {
		return nil, err
	}
	if c.referrers.Load() == referrersUnknown {
		select {
		case c.probing <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.referrers.Load() != referrersUnknown {
			// found out while this one waited: go on beside the others
			<-c.probing
		} else {
			// The probe: the others may go on as soon as oras-go turns to
			// the tag schema (the API answered that it is not there),
			// not only once this listing is done (a round trip later).
			release := sync.OnceFunc(func() { <-c.probing })
			defer release()
			probe := c.probeRepository(r, func() {
				c.referrers.CompareAndSwap(referrersUnknown, referrersTagSchema)
				release()
			})
			refs, err := ListReferrers(ctx, probe, desc)
			if err == nil && c.referrers.Load() == referrersUnknown {
				c.learnReferrers(probe)
			}
			c.shareReferrers(r)
			return refs, err
		}
	}
	c.shareReferrers(r)
	refs, err := ListReferrers(ctx, r, desc)
	if err == nil && c.referrers.Load() == referrersUnknown {
		c.learnReferrers(r)
	}
	return refs, err
}

// probeRepository is r for the listing that finds out the host's
// referrers capability: its requests go through r's client, and
// onTagSchema is called when oras-go, having found no Referrers API,
// asks for the tag-schema index (a GET of a sha256-<hex> tag).
func (c *Client) probeRepository(r *remote.Repository, onTagSchema func()) *remote.Repository {
	ac := *c.auth
	hc := *c.auth.Client
	hc.Transport = &tagSchemaWatch{base: hc.Transport, seen: onTagSchema}
	ac.Client = &hc
	return &remote.Repository{
		Client:               &ac,
		Reference:            r.Reference,
		PlainHTTP:            r.PlainHTTP,
		SkipReferrersGC:      r.SkipReferrersGC,
		TagListMaxPages:      r.TagListMaxPages,
		ReferrerListMaxPages: r.ReferrerListMaxPages,
	}
}

// tagSchemaWatch calls seen before the first GET of a referrers tag-schema
// index.
type tagSchemaWatch struct {
	base http.RoundTripper
	seen func()
	once sync.Once
}

func (t *tagSchemaWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet {
		if i := strings.LastIndex(req.URL.Path, "/manifests/"); i >= 0 && isTagSchemaTag(req.URL.Path[i+len("/manifests/"):]) {
			t.once.Do(t.seen)
		}
	}
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(req)
}

// isTagSchemaTag tells a referrers tag-schema tag (<alg>-<hex>) from a
// digest (<alg>:<hex>) or a tag a user made.
func isTagSchemaTag(ref string) bool {
	alg, hex, ok := strings.Cut(ref, "-")
	if !ok || alg == "" || len(hex) < 32 {
		return false
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// learnReferrers records the capability r found out in a listing that
// succeeded. oras-go keeps it unexported; setting it to what it already
// is succeeds and to the other value fails (SetReferrersCapability), and a
// successful listing has always set it, so the call changes nothing.
func (c *Client) learnReferrers(r *remote.Repository) {
	state := referrersAPI
	if err := r.SetReferrersCapability(true); errors.Is(err, remote.ErrReferrersCapabilityAlreadySet) {
		state = referrersTagSchema
	} else if err != nil {
		return
	}
	c.referrers.CompareAndSwap(referrersUnknown, state)
	c.Debugf("%s: referrers through the %s", c.host, map[int32]string{referrersAPI: "Referrers API", referrersTagSchema: "tag schema (no Referrers API)"}[state])
}

// Registry returns the registry-level handle (ping, catalog, login).
func (c *Client) Registry() *remote.Registry {
	reg := &remote.Registry{}
	reg.Client = c.auth
	reg.PlainHTTP = c.opts.PlainHTTP
	reg.Reference = registry.Reference{Registry: c.host}
	return reg
}

// CredentialStore opens the Docker config credential store (and its
// helpers) that login, logout and the default credentials use.
func CredentialStore(configPath string) (credentials.Store, error) {
	opts := credentials.StoreOptions{AllowPlaintextPut: true, DetectDefaultNativeStore: true}
	if configPath != "" {
		return credentials.NewStore(configPath, opts)
	}
	return credentials.NewStoreFromDocker(opts)
}

func credential(host string, o Options) (auth.CredentialFunc, error) {
	if o.IdentityToken != "" {
		return auth.StaticCredential(host, auth.Credential{RefreshToken: o.IdentityToken}), nil
	}
	if o.Username != "" || o.Password != "" {
		return auth.StaticCredential(host, auth.Credential{Username: o.Username, Password: o.Password}), nil
	}
	store, err := CredentialStore(o.RegistryConfig)
	if err != nil {
		return nil, fmt.Errorf("reading credentials from the Docker config: %w", err)
	}
	return credentials.Credential(store), nil
}

func transport(o Options) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	conc := o.Concurrency
	if conc < 1 {
		conc = 8
	}
	// Every worker may hold a connection; keep them alive between blobs.
	tr.MaxIdleConnsPerHost = conc*4 + 4 // metadata requests run 4× --concurrency
	tr.MaxConnsPerHost = 0
	// Requests without a body have the read timeout for their answer
	// (timeoutTransport); an upload's, once all of its body is sent (the
	// read timeout applies to each byte of it until then), may take
	// longer.
	tr.ResponseHeaderTimeout = max(uploadHeaderTimeout, o.readTimeout())
	tlsConf := &tls.Config{InsecureSkipVerify: o.Insecure} //nolint:gosec // only with --insecure
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate found", o.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		if o.CertFile == "" || o.KeyFile == "" {
			return nil, fmt.Errorf("--cert-file and --key-file go together")
		}
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	tr.TLSClientConfig = tlsConf
	if len(o.Resolve) > 0 {
		dial, err := resolveDialer(o.Resolve)
		if err != nil {
			return nil, err
		}
		tr.DialContext = dial
	}
	return tr, nil
}

// resolveDialer sends connections for host:port to a fixed address, as
// `--resolve host:port:address[:port]`.
func resolveDialer(entries []string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	to := map[string]string{}
	for _, e := range entries {
		parts := strings.Split(e, ":")
		if len(parts) != 3 && len(parts) != 4 {
			return nil, fmt.Errorf("--resolve %q: expected host:port:address[:port]", e)
		}
		port := parts[1]
		if len(parts) == 4 {
			port = parts[3]
		}
		to[net.JoinHostPort(parts[0], parts[1])] = net.JoinHostPort(parts[2], port)
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if a, ok := to[addr]; ok {
			addr = a
		}
		return d.DialContext(ctx, network, addr)
	}, nil
}

// errorBodyLimit is the largest error answer read ahead in full.
const errorBodyLimit = 64 << 10

// errorBodyTransport reads small error answers (4xx, 5xx) in full before
// handing them on. oras-go closes some of them unread (a 404 for a
// referrers tag-schema tag, say), and an HTTP/1.1 connection whose answer
// was not read to its end cannot carry the next request: without this,
// each probe for a referrers tag that is not there cost a new connection
// (and on TLS a new handshake).
type errorBodyTransport struct{ base http.RoundTripper }

func (t *errorBodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode < 400 || resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength > errorBodyLimit {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit+1))
	if rerr != nil || len(body) > errorBodyLimit {
		// Not read in full: hand on what was read and the rest.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		return resp, nil
	}
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// debugTransport logs each request's method, URL and outcome, never its
// headers (they carry credentials).
type debugTransport struct {
	base http.RoundTripper
	w    io.Writer
	mu   sync.Mutex
}

func (t *debugTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	u := MaskURL(req.URL) // upload URLs carry state tokens
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		fmt.Fprintf(t.w, "debug: %s %s: %s (%s)\n", req.Method, u, MaskURLs(err.Error()), time.Since(start).Round(time.Millisecond))
	} else {
		fmt.Fprintf(t.w, "debug: %s %s -> %d (%s)\n", req.Method, u, resp.StatusCode, time.Since(start).Round(time.Millisecond))
	}
	return resp, err
}

// Clients hands out one client per registry host, all with the same
// options: a restore may write to several registries.
type Clients struct {
	opts Options
	mu   sync.Mutex
	m    map[string]*Client
}

// NewClients returns an empty set of clients built with o.
func NewClients(o Options) *Clients { return &Clients{opts: o, m: map[string]*Client{}} }

// Get returns the client for host, building it on first use.
func (cs *Clients) Get(host string) (*Client, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.m[host]; ok {
		return c, nil
	}
	c, err := New(host, cs.opts)
	if err != nil {
		return nil, err
	}
	cs.m[host] = c
	return c, nil
}

// LeastRoundTrip is the longest of the clients' least round trips
// (Client.LeastRoundTrip), false before any answer: the path to the
// farthest of the registries written to.
func (cs *Clients) LeastRoundTrip() (time.Duration, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var most time.Duration
	seen := false
	for _, c := range cs.m {
		if d, ok := c.LeastRoundTrip(); ok {
			most, seen = max(most, d), true
		}
	}
	return most, seen
}

// Debugf writes one line to Options.Debug (--debug), if set: a note of
// what a run decided that the request lines alone do not tell.
func (cs *Clients) Debugf(format string, args ...any) { debugf(cs.opts, format, args...) }

// Debugf is Clients.Debugf for one client.
func (c *Client) Debugf(format string, args ...any) { debugf(c.opts, format, args...) }

func debugf(o Options, format string, args ...any) {
	if o.Debug == nil {
		return
	}
	_, _ = io.WriteString(o.Debug, "debug: "+MaskURLs(fmt.Sprintf(format, args...))+"\n")
}

// ListReferrers is Client.ListReferrers for r on its registry.
func (cs *Clients) ListReferrers(ctx context.Context, r graph.Repository, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	c, err := cs.Get(r.Registry)
	if err != nil {
		return nil, err
	}
	return c.ListReferrers(ctx, r.Path, desc)
}

// Repository returns the repository r on its registry.
func (cs *Clients) Repository(r graph.Repository) (*remote.Repository, error) {
	c, err := cs.Get(r.Registry)
	if err != nil {
		return nil, err
	}
	return c.Repository(r.Path)
}

// errStopListing ends a tag listing after its first page.
var errStopListing = errors.New("stop listing")

// RepositoryExists asks for one tag of the repository at path (without
// the host): a registry answers 404 for a repository it has never had a
// tag in. The answer is false only on that 404; any other failure is
// returned, so a caller that cannot tell treats the repository as
// existing.
func (c *Client) RepositoryExists(ctx context.Context, path string) (bool, error) {
	ref := registry.Reference{Registry: c.host, Repository: path}
	if err := ref.ValidateRepository(); err != nil {
		return false, fmt.Errorf("repository %q: %w", path, err)
	}
	// A repository object of its own: the page size is a field, and the
	// shared one lists whole pages for `repo tags` and backups.
	r := &remote.Repository{Client: c.auth, Reference: ref, PlainHTTP: c.opts.PlainHTTP, TagListPageSize: 1}
	err := r.Tags(ctx, "", func([]string) error { return errStopListing })
	var resp *errcode.ErrorResponse
	switch {
	case err == nil, errors.Is(err, errStopListing):
		return true, nil
	case errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound:
		return false, nil
	}
	return true, fmt.Errorf("listing tags of %s/%s: %w", c.host, path, err)
}

// RepositoryExists is Client.RepositoryExists for r on its registry.
func (cs *Clients) RepositoryExists(ctx context.Context, r graph.Repository) (bool, error) {
	c, err := cs.Get(r.Registry)
	if err != nil {
		return false, err
	}
	return c.RepositoryExists(ctx, r.Path)
}
