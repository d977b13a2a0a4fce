package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/serve"
	"github.com/regvault/regvault/source"
)

const serveExamples = `  # Serve a backup as a read-only registry on 127.0.0.1:5000
  regvault serve --input base-images.tar
  crane manifest localhost:5000/library/alpine:3.20

  # A backup of one repository written with tags only: name the repository
  regvault serve --input app.tar --repository team/app

  # On the network, with TLS and htpasswd users (bcrypt, htpasswd -Bc users.htpasswd alice)
  regvault serve --input base-images.tar --listen 0.0.0.0:5443 \
      --tls-cert server.crt --tls-key server.key --htpasswd users.htpasswd

  # A compressed backup: decompress it once, then serve the .tar
  zstd -d base-images.tar.zst && regvault verify --input base-images.tar && regvault serve --input base-images.tar`

type serveCmd struct {
	c               *cli
	input           string
	listen          string
	tlsCert, tlsKey string
	htpasswd        string
	repository      string
	format          string
	shutdownTimeout time.Duration
}

func (c *cli) serveCommand() *cobra.Command {
	s := &serveCmd{c: c}
	cmd := &cobra.Command{
		Use:   "serve --input <path> [--listen 127.0.0.1:5000]",
		Short: "Serve a backup as a read-only registry",
		Long: `Serve a backup as a read-only OCI registry (the pull side of the OCI
distribution API), in place: each blob is read from its place in the
backup directory or .tar file, never extracted or copied.

Served: /v2/, manifests by tag and digest (GET, HEAD; Accept read as the
distribution registry reads it: an OCI manifest or index is answered only to
a client that accepts its type, otherwise with MANIFEST_UNKNOWN), blobs (GET,
HEAD, one byte Range), tags/list and _catalog (n and last pagination, Link
header), and the Referrers API (artifactType filtering) from the referrers
the backup records for each repository. A blob is served only under a
repository whose manifests reach it. Every write (PUT, POST, PATCH, DELETE)
is answered 405 UNSUPPORTED. Unknown names are NAME_UNKNOWN,
MANIFEST_UNKNOWN and BLOB_UNKNOWN errors.

Names: the repositories of a backup with full references are served under
their paths without the registry (docker.io/library/alpine as
library/alpine; under the full name when two registries share a path). A
backup whose tags name no repository (as written by oras, or by backup of
one repository) needs --repository.

At start every manifest is read and its digest checked, and every blob is
looked up at its size: a damaged backup is refused (regvault verify lists
what is wrong). Each blob's digest is checked as it is sent; if the bytes
turn out wrong, the connection is cut before the last bytes, so no client
takes them as complete. A Range request of a blob not yet read whole reads
the whole blob to check it, sending only the range. A blob read whole and
found intact is sent straight from the file afterwards (sendfile on plain
HTTP), without hashing it again.

A compressed backup (.tar.gz, .tar.zst) or standard input cannot be served
in place: decompress it once to a .tar.

The startup lines name the address, the repositories and their tags (the
first 10 of each; all of them in the one JSON object of --format json) on
standard output. A line per request
is logged on standard error (JSON objects with --format json). SIGINT or
SIGTERM stops accepting connections and lets requests in flight finish
within --shutdown-timeout.

Exit codes: 0 stopped by a signal; 1 the backup is damaged or the address
cannot be listened on; 2 usage error (nothing served).`,
		Example: serveExamples,
		Args:    exactArgs(0, "no arguments (give the backup with --input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVarP(&s.input, "input", "i", "", "the backup: a directory or a plain .tar file")
	fs.StringVar(&s.listen, "listen", "127.0.0.1:5000", "address to listen on (host:port; 0.0.0.0:5000 for every interface)")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (with --tls-key)")
	fs.StringVar(&s.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	fs.StringVar(&s.htpasswd, "htpasswd", "", "require basic auth of the users of this htpasswd file (bcrypt entries: htpasswd -B)")
	fs.StringVar(&s.repository, "repository", "", "the repository name to serve a tag-only backup's tags under")
	fs.StringVar(&s.format, "format", "text", "output format of the startup line and the request log: text or json")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long requests in flight may run after SIGINT or SIGTERM")
	return cmd
}

func (s *serveCmd) run(ctx context.Context) error {
	c := s.c
	switch {
	case s.input == "":
		return usageError("--input is required: the backup to serve (a directory or a plain .tar file)")
	case s.input == "-":
		return usageError("--input -: standard input cannot be served: %s", serve.ServableHint)
	case s.format != "text" && s.format != "json":
		return usageError("--format %q: use text or json", s.format)
	case (s.tlsCert == "") != (s.tlsKey == ""):
		return usageError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
	case s.shutdownTimeout <= 0:
		return usageError("--shutdown-timeout must be positive")
	}
	if err := checkServable(s.input); err != nil {
		return err
	}
	var users *serve.Users
	if s.htpasswd != "" {
		var err error
		if users, err = serve.ReadHtpasswd(s.htpasswd); err != nil {
			return usageError("%s", err.Error())
		}
	}
	var handler slog.Handler = slog.NewTextHandler(c.stderr, nil)
	if s.format == "json" {
		handler = slog.NewJSONHandler(c.stderr, nil)
	}
	log := slog.New(handler)

	layout, err := source.OpenLayout(ctx, s.input, nil, "")
	if err != nil {
		return err
	}
	defer layout.Close()
	h, err := serve.New(ctx, layout, serve.Options{Repository: s.repository, Users: users, Log: log})
	if err != nil {
		var ue *serve.UsageError
		if errors.As(err, &ue) {
			return usageError("%s", ue.Msg)
		}
		return err
	}
	for _, n := range layout.Notes() {
		fmt.Fprintf(c.stderr, "Note: %s: %s\n", s.input, n)
	}
	scheme := "http"
	if s.tlsCert != "" {
		scheme = "https"
	}
	err = serve.Run(ctx, h, serve.Config{
		Listen: s.listen, TLSCert: s.tlsCert, TLSKey: s.tlsKey, ShutdownTimeout: s.shutdownTimeout,
		Ready: func(addr string) { s.printStartup(c.stdout, scheme, addr, layout, h) },
	}, log)
	if err != nil {
		var ue *serve.UsageError
		if errors.As(err, &ue) {
			return usageError("%s", ue.Msg)
		}
		return err
	}
	return nil
}

// checkServable refuses, before opening it, a backup that cannot be read
// in place: a compressed tar, a pipe.
func checkServable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("opening backup: %w", err)
	}
	if fi.IsDir() {
		return nil
	}
	if !fi.Mode().IsRegular() {
		return usageError("--input %s is not a regular file (a pipe or a device is read once, as a stream): %s", path, serve.ServableHint)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening backup: %w", err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("reading backup %s: %w", path, err)
	}
	head = head[:n]
	switch {
	case archive.IsGzip(head):
		return usageError("--input %s is a gzip-compressed tar, which can only be read as a stream: %s", path, serve.ServableHint)
	case archive.IsZstd(head):
		return usageError("--input %s is a zstd-compressed tar, which can only be read as a stream: %s", path, serve.ServableHint)
	}
	return nil
}

func (s *serveCmd) printStartup(w io.Writer, scheme, addr string, layout *source.Layout, h *serve.Handler) {
	repos := h.Repositories()
	tags := 0
	for _, r := range repos {
		tags += len(r.Tags)
	}
	if s.format == "json" {
		type repo struct {
			Name   string   `json:"name"`
			Source string   `json:"source,omitempty"`
			Tags   []string `json:"tags"`
		}
		out := struct {
			Msg          string `json:"msg"`
			Address      string `json:"address"`
			URL          string `json:"url"`
			Input        string `json:"input"`
			Form         string `json:"form"`
			Repositories []repo `json:"repositories"`
			Tags         int    `json:"tags"`
		}{Msg: "serving", Address: addr, URL: scheme + "://" + addr, Input: s.input, Form: layout.Kind().String(), Tags: tags}
		for _, r := range repos {
			out.Repositories = append(out.Repositories, repo{r.Name, r.Source, r.Tags})
		}
		data, _ := marshalJSON(out, false)
		fmt.Fprintf(w, "%s\n", data)
		return
	}
	fmt.Fprintf(w, "Serving %s (%s) at %s://%s, read-only: %s, %s\n", s.input, layout.Kind(), scheme, addr,
		plural(len(repos), "repository", "repositories"), plural(tags, "tag", "tags"))
	for _, r := range repos {
		from := ""
		if r.Source != "" && r.Source != r.Name {
			from = " (" + r.Source + ")"
		}
		tags := r.Tags
		more := ""
		if len(tags) > 10 { // the JSON line lists them all
			tags, more = tags[:10], fmt.Sprintf(" and %d more", len(r.Tags)-10)
		}
		fmt.Fprintf(w, "  %s%s: %s%s\n", r.Name, from, strings.Join(tags, ", "), more)
	}
}
