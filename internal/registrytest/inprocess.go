package registrytest

import (
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Option configures StartInProcess.
type Option func(*inProcessConfig)

type inProcessConfig struct {
	referrers  bool
	noFixes    bool
	tls        bool
	clientAuth bool
	users      map[string]string
	pageSize   int
	wrap       []func(http.Handler) http.Handler
	logger     *log.Logger
}

// WithReferrersAPI turns the Referrers API on (the default) or off. Off,
// the server is "a registry without the Referrers API": GET
// /v2/<name>/referrers/<digest> is 404 and clients fall back to the
// referrers tag schema.
func WithReferrersAPI(enabled bool) Option {
	return func(c *inProcessConfig) { c.referrers = enabled }
}

// WithHandler wraps the registry handler, inside the request counters and
// authentication: e.g. to corrupt a blob body, inject failures, or delay
// responses. Several WithHandler options nest, the first outermost.
func WithHandler(wrap func(http.Handler) http.Handler) Option {
	return func(c *inProcessConfig) { c.wrap = append(c.wrap, wrap) }
}

// WithTLS serves HTTPS with a certificate for 127.0.0.1 and localhost,
// signed by a CA generated for this server (Server.CAFile).
func WithTLS() Option { return func(c *inProcessConfig) { c.tls = true } }

// WithClientAuth serves HTTPS (as WithTLS) and requires a client
// certificate signed by the server's CA (Server.ClientCertFile/KeyFile).
func WithClientAuth() Option {
	return func(c *inProcessConfig) { c.tls, c.clientAuth = true, true }
}

// WithBasicAuth requires HTTP basic authentication with one of these
// user→password pairs on every request (401 with a Basic challenge
// otherwise), as a registry with htpasswd authentication does.
func WithBasicAuth(users map[string]string) Option {
	return func(c *inProcessConfig) {
		c.users = make(map[string]string, len(users))
		for u, p := range users {
			c.users[u] = p
		}
	}
}

// WithTagPageSize makes the server answer tag lists in pages of at most n
// tags (with a Link header to the next page) even when the client asks for
// more or does not ask for a page size at all, as some registries do.
// (Distribution, by contrast, returns every tag when n is not given and
// clamps n to DistConfig.MaxTags.) Ignored with WithoutFixes.
func WithTagPageSize(n int) Option { return func(c *inProcessConfig) { c.pageSize = n } }

// WithoutFixes serves ggcr's registry as it is, without the compatibility
// layer described in the package documentation.
func WithoutFixes() Option { return func(c *inProcessConfig) { c.noFixes = true } }

// WithLogger sends ggcr's request log to l (the default discards it).
func WithLogger(l *log.Logger) Option { return func(c *inProcessConfig) { c.logger = l } }

// StartInProcess starts go-containerregistry's in-memory registry on a
// free 127.0.0.1 port, in this process, plain HTTP, with the Referrers API
// on unless an option turns it off, behind the compatibility layer and the
// request counters (see the package documentation). Close it when done.
func StartInProcess(opts ...Option) (*Server, error) {
	cfg := inProcessConfig{referrers: true}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = discardLogger()
	}
	s := &Server{kind: "in-process", referrers: cfg.referrers, users: cfg.users, stats: newCounter(), clientTLS: cfg.clientAuth}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()

	var h http.Handler = registry.New(registry.Logger(cfg.logger), registry.WithReferrersSupport(cfg.referrers))
	if !cfg.noFixes {
		h = newCompat(h, cfg.referrers, cfg.pageSize)
	}
	for i := len(cfg.wrap) - 1; i >= 0; i-- {
		h = cfg.wrap[i](h)
	}
	if len(cfg.users) > 0 {
		h = basicAuth(h, cfg.users)
	}
	h = s.stats.wrap(h)

	if cfg.tls {
		dir, err := tempDir("regvault-registry-tls-")
		if err != nil {
			return nil, err
		}
		s.onClose(func() error { return removeAll(dir) })
		if s.certs, err = newCertSet(dir); err != nil {
			return nil, fmt.Errorf("generating certificates: %w", err)
		}
	}
	l, err := listen()
	if err != nil {
		return nil, err
	}
	s.host = l.Addr().String()
	if s.certs != nil {
		s.onClose(serve(l, h, s.certs.serverConfig(cfg.clientAuth)))
	} else {
		s.onClose(serve(l, h, nil))
	}
	ok = true
	return s, nil
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
