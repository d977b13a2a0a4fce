package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Config is how Run listens.
type Config struct {
	// Listen is the address (host:port; port 0 picks one).
	Listen string
	// TLSCert and TLSKey are PEM files: HTTPS when set (both or none).
	TLSCert, TLSKey string
	// ShutdownTimeout bounds the wait for requests in flight once ctx
	// ends; those still running then are cut.
	ShutdownTimeout time.Duration
	// Ready is called with the address listened on (with its port), once
	// requests are accepted.
	Ready func(addr string)
}

// Run serves h until ctx ends, then shuts down gracefully: no new
// connection is accepted, requests in flight get ShutdownTimeout to
// finish. A listening or TLS error is returned before anything is served.
func Run(ctx context.Context, h http.Handler, cfg Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return &UsageError{Msg: "--tls-cert and --tls-key go together: give both, or neither for plain HTTP"}
		}
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("loading --tls-cert %s and --tls-key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	if cfg.Ready != nil {
		cfg.Ready(l.Addr().String())
	}
	select {
	case err := <-done:
		return fmt.Errorf("serving on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	log.Info("shutting down", slog.String("address", l.Addr().String()), slog.Duration("deadline", timeout))
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("requests still running at the shutdown deadline were cut", slog.Duration("deadline", timeout))
		_ = srv.Close()
		err = nil
	}
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
