package registrytest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Server is a running test registry: the in-process one (StartInProcess)
// or a CNCF distribution process (StartDistribution). Close stops it and
// removes everything it wrote.
type Server struct {
	kind      string // "in-process" or "distribution"
	host      string // what clients dial: 127.0.0.1:PORT
	backend   string // distribution's own address, behind the counting proxy
	referrers bool
	certs     *certSet
	clientTLS bool // the server requires client certificates
	users     map[string]string
	stats     *counter
	logs      func() string

	closeOnce sync.Once
	closeErr  error
	closers   []func() error // run in reverse order
}

// Host is "127.0.0.1:PORT", the registry host for references and clients.
func (s *Server) Host() string { return s.host }

// BackendHost is where the registry itself listens. For the in-process
// registry it is Host; for distribution it is the process's own port,
// behind the counting proxy that Host points at (requests sent there
// directly are not counted).
func (s *Server) BackendHost() string {
	if s.backend != "" {
		return s.backend
	}
	return s.host
}

// URL is "http://HOST" or "https://HOST".
func (s *Server) URL() string {
	if s.certs != nil {
		return "https://" + s.host
	}
	return "http://" + s.host
}

// PlainHTTP tells whether the server speaks plain HTTP (no TLS).
func (s *Server) PlainHTTP() bool { return s.certs == nil }

// ReferrersAPI tells whether the server implements the OCI Referrers API.
// Without it, referrers are found through the referrers tag schema
// (sha256-<hex> tags pointing at an index).
func (s *Server) ReferrersAPI() bool { return s.referrers }

// CAFile is the path of the PEM CA certificate that signed the server
// certificate (for --ca-file), or "" for a plain-HTTP server.
func (s *Server) CAFile() string {
	if s.certs == nil {
		return ""
	}
	return s.certs.CAFile
}

// ClientCertFile and ClientKeyFile are a client certificate and key
// signed by the CA (for --cert-file/--key-file), or "" for a plain-HTTP
// server. A server started with client authentication requires them.
func (s *Server) ClientCertFile() string {
	if s.certs == nil {
		return ""
	}
	return s.certs.ClientCertFile
}

// ClientKeyFile: see ClientCertFile.
func (s *Server) ClientKeyFile() string {
	if s.certs == nil {
		return ""
	}
	return s.certs.ClientKeyFile
}

// RootCAs is a pool holding the CA certificate, or nil for plain HTTP.
func (s *Server) RootCAs() *x509.CertPool {
	if s.certs == nil {
		return nil
	}
	return s.certs.pool
}

// Users is a copy of the user→password map the server accepts; empty when
// the server has no authentication.
func (s *Server) Users() map[string]string {
	m := make(map[string]string, len(s.users))
	for k, v := range s.users {
		m[k] = v
	}
	return m
}

// Stats is a snapshot of the request counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// ResetStats sets every counter back to zero.
func (s *Server) ResetStats() { s.stats.reset() }

// Logs is what the registry process wrote so far (distribution only; ""
// for the in-process registry). Useful in a failure message.
func (s *Server) Logs() string {
	if s.logs == nil {
		return ""
	}
	return s.logs()
}

// Target is how to reach the server with full rights: its host, plain HTTP
// or its CA, the client certificate if the server wants one, and (with
// authentication) the credentials of the alphabetically first user.
func (s *Server) Target() Target {
	t := Target{Host: s.host, PlainHTTP: s.certs == nil}
	if s.certs != nil {
		t.RootCAs = s.certs.pool
		if s.clientTLS {
			c := s.certs.client
			t.ClientCert = &c
		}
	}
	if len(s.users) > 0 {
		names := make([]string, 0, len(s.users))
		for u := range s.users {
			names = append(names, u)
		}
		sort.Strings(names)
		t.Username, t.Password = names[0], s.users[names[0]]
	}
	return t
}

// Repository is an oras-go client for the repository name on this server,
// as Target().Repository(name).
func (s *Server) Repository(name string) (*remote.Repository, error) {
	return s.Target().Repository(name)
}

// Close stops the server and removes its files. It is safe to call more
// than once; later calls return the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		for i := len(s.closers) - 1; i >= 0; i-- {
			if err := s.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Server) onClose(f func() error) { s.closers = append(s.closers, f) }

// Target says how a client reaches a registry. The zero value of each
// optional field means "not used".
type Target struct {
	Host       string         // 127.0.0.1:PORT
	PlainHTTP  bool           // http:// instead of https://
	RootCAs    *x509.CertPool // CAs to trust; nil: the system's
	ClientCert *tls.Certificate
	Username   string
	Password   string
}

// HTTPClient is a plain *http.Client with the Target's TLS settings (no
// credentials), for raw requests in tests.
func (t Target) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{RootCAs: t.RootCAs, MinVersion: tls.VersionTLS12}
	if t.ClientCert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*t.ClientCert}
	}
	return &http.Client{Transport: tr}
}

// AuthClient is an oras-go auth client with the Target's TLS settings and
// credentials.
func (t Target) AuthClient() *auth.Client {
	c := &auth.Client{Client: t.HTTPClient(), Cache: auth.NewCache()}
	if t.Username != "" || t.Password != "" {
		c.Credential = auth.StaticCredential(t.Host, auth.Credential{Username: t.Username, Password: t.Password})
	}
	c.SetUserAgent("regvault-registrytest")
	return c
}

// Repository is an oras-go client for the repository name (a path such as
// "demo/frontend", without the host).
func (t Target) Repository(name string) (*remote.Repository, error) {
	ref := registry.Reference{Registry: t.Host, Repository: name}
	if err := ref.ValidateRepository(); err != nil {
		return nil, err
	}
	return &remote.Repository{Client: t.AuthClient(), Reference: ref, PlainHTTP: t.PlainHTTP}, nil
}

// Registry is an oras-go client for the registry itself (ping, catalog).
func (t Target) Registry() (*remote.Registry, error) {
	ref := registry.Reference{Registry: t.Host}
	if err := ref.ValidateRegistry(); err != nil {
		return nil, err
	}
	r := &remote.Registry{}
	r.Reference = ref
	r.Client = t.AuthClient()
	r.PlainHTTP = t.PlainHTTP
	return r, nil
}

// listen opens a listener on a free 127.0.0.1 port.
func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// serve runs an http.Server for h on l (TLS when tc is not nil) and
// returns the function that stops it and waits for it to end.
func serve(l net.Listener, h http.Handler, tc *tls.Config) func() error {
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, ErrorLog: discardLogger()}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	return func() error {
		err := srv.Close()
		if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		return err
	}
}
