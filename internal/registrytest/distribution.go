package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DistributionEnv names the environment variable with the path of the CNCF
// distribution registry binary (github.com/distribution/distribution/v3/
// cmd/registry, v3.1.2). `make test` builds it and sets the variable.
const DistributionEnv = "REGVAULT_DISTRIBUTION"

// DistConfig configures StartDistribution.
type DistConfig struct {
	// Binary is the registry binary; "" means $REGVAULT_DISTRIBUTION.
	Binary string
	// Htpasswd turns on htpasswd authentication with these user→password
	// pairs.
	Htpasswd map[string]string
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost
	// signed by a CA generated at start (Server.CAFile).
	TLS bool
	// ClientAuth (with TLS) requires a client certificate signed by that
	// CA (Server.ClientCertFile/ClientKeyFile).
	ClientAuth bool
	// Handler, if set, wraps the counting proxy's handler in front of the
	// registry (e.g. to corrupt a blob body).
	Handler func(http.Handler) http.Handler
	// MaxTags is distribution's tags.maxtags: a tag list request with n
	// larger than this gets this many tags and a Link (default 1000).
	MaxTags int
	// StartTimeout bounds the wait for the registry to answer; default 30s.
	StartTimeout time.Duration
	// AllowURLs is distribution's validation.manifests.urls.allow: the
	// URLs (regular expressions) a manifest's non-distributable layers
	// may name. Unset, distribution refuses every manifest whose layers
	// have urls.
	AllowURLs []string
}

// DistributionBinary is the registry binary named by $REGVAULT_DISTRIBUTION,
// or an error saying how to get one.
func DistributionBinary() (string, error) {
	p := os.Getenv(DistributionEnv)
	if p == "" {
		return "", fmt.Errorf("$%s is not set: run the tests with `make test`, which builds the distribution registry and sets it", DistributionEnv)
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", fmt.Errorf("$%s=%s: no registry binary there: run the tests with `make test`, which builds it", DistributionEnv, p)
	}
	return p, nil
}

// StartDistribution runs the CNCF distribution registry as a process on a
// free 127.0.0.1 port, with filesystem storage in a temporary directory,
// deletes enabled, and the options of cfg. Clients talk to it through a
// small reverse proxy on another 127.0.0.1 port (Server.Host) that counts
// requests; the proxy terminates and re-originates TLS with the same
// certificate. Close kills the process and removes the directory.
//
// Distribution v3.1.2 has no Referrers API (GET /v2/<name>/referrers/...
// is 404): referrers are found through the referrers tag schema.
func StartDistribution(cfg DistConfig) (*Server, error) {
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = DistributionBinary(); err != nil {
			return nil, err
		}
	}
	if cfg.ClientAuth && !cfg.TLS {
		return nil, errors.New("DistConfig: ClientAuth needs TLS")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	s := &Server{kind: "distribution", stats: newCounter(), clientTLS: cfg.ClientAuth}
	if len(cfg.Htpasswd) > 0 {
		s.users = make(map[string]string, len(cfg.Htpasswd))
		for u, p := range cfg.Htpasswd {
			s.users[u] = p
		}
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()

	dir, err := tempDir("regvault-distribution-")
	if err != nil {
		return nil, err
	}
	s.onClose(func() error { return removeAll(dir) })
	if cfg.TLS {
		if s.certs, err = newCertSet(dir); err != nil {
			return nil, fmt.Errorf("generating certificates: %w", err)
		}
	}
	htpasswd := ""
	if len(s.users) > 0 {
		htpasswd = filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, s.users); err != nil {
			return nil, err
		}
	}

	// The free port is found by listening and closing: another process
	// may take it in between, so a failed start is retried.
	var proc *process
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.backend = fmt.Sprintf("127.0.0.1:%d", port)
		confPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(confPath, []byte(distConfigYAML(dir, s.backend, htpasswd, s.certs, cfg)), 0o600); err != nil {
			return nil, err
		}
		proc, err = startProcess(bin, confPath)
		if err != nil {
			return nil, err
		}
		err = s.waitUp(proc, cfg.StartTimeout)
		if err == nil {
			break
		}
		logs := proc.output()
		_ = proc.stop()
		if attempt < 2 && strings.Contains(logs, "address already in use") {
			continue
		}
		return nil, fmt.Errorf("distribution registry did not start: %w\n%s", err, logs)
	}
	s.onClose(proc.stop)
	s.logs = proc.output

	// The counting proxy.
	backendURL := &url.URL{Scheme: "http", Host: s.backend}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if s.certs != nil {
		backendURL.Scheme = "https"
		tr.TLSClientConfig = s.Target().HTTPClient().Transport.(*http.Transport).TLSClientConfig
	}
	s.onClose(func() error { tr.CloseIdleConnections(); return nil })
	var h http.Handler = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(backendURL)
			pr.Out.Host = pr.In.Host // so that Location headers point at the proxy
		},
		Transport: tr,
		ErrorLog:  discardLogger(),
	}
	if cfg.Handler != nil {
		h = cfg.Handler(h)
	}
	h = s.stats.wrap(h)
	l, err := listen()
	if err != nil {
		return nil, err
	}
	s.host = l.Addr().String()
	if s.certs != nil {
		s.onClose(serve(l, h, s.certs.serverConfig(cfg.ClientAuth)))
	} else {
		s.onClose(serve(l, h, nil))
	}
	ok = true
	return s, nil
}

// waitUp polls /v2/ on the backend until it answers (401 counts) or the
// process exits.
func (s *Server) waitUp(p *process, timeout time.Duration) error {
	t := s.Target()
	t.Host = s.backend
	client := t.HTTPClient()
	defer client.CloseIdleConnections()
	client.Timeout = 2 * time.Second
	scheme := "http"
	if s.certs != nil {
		scheme = "https"
	}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(scheme + "://" + s.backend + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		select {
		case <-p.done:
			return fmt.Errorf("the process exited: %v", p.waitErr)
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %s: %w", timeout, err)
		}
	}
}

func distConfigYAML(dir, addr, htpasswd string, certs *certSet, cfg DistConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: %q
  secret: regvault-test-secret
`, filepath.Join(dir, "storage"), addr)
	if certs != nil {
		fmt.Fprintf(&b, "  tls:\n    certificate: %q\n    key: %q\n", certs.ServerCertFile, certs.ServerKeyFile)
		if cfg.ClientAuth {
			fmt.Fprintf(&b, "    clientcas:\n      - %q\n", certs.CAFile)
		}
	}
	if cfg.MaxTags > 0 {
		fmt.Fprintf(&b, "tags:\n  maxtags: %d\n", cfg.MaxTags)
	}
	if len(cfg.AllowURLs) > 0 {
		b.WriteString("validation:\n  manifests:\n    urls:\n      allow:\n")
		for _, u := range cfg.AllowURLs {
			fmt.Fprintf(&b, "        - %q\n", u)
		}
	}
	if htpasswd != "" {
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: regvault-test\n    path: %q\n", htpasswd)
	}
	return b.String()
}

func freePort() (int, error) {
	l, err := listen()
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is a running registry process with its output captured.
type process struct {
	cmd     *exec.Cmd
	out     *lockedBuffer
	done    chan struct{}
	waitErr error
}

func startProcess(bin, confPath string) (*process, error) {
	cmd := exec.CommandContext(context.Background(), bin, "serve", confPath)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(),
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_SDK_DISABLED=true",
		"OTEL_METRICS_EXPORTER=none",
		"OTEL_LOGS_EXPORTER=none",
	)
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) output() string { return p.out.String() }

// stop kills the process and waits for it.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("registry process %d did not exit", p.cmd.Process.Pid)
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	const max = 1 << 20 // keep the last MiB at most
	if b.buf.Len()+len(p) > max {
		b.buf.Next(b.buf.Len() + len(p) - max)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
