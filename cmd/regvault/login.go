package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	orasregistry "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/regvault/regvault/registry"
)

type loginCmd struct {
	c   *cli
	reg registryFlags
}

func (c *cli) loginCommand() *cobra.Command {
	l := &loginCmd{c: c, reg: registryFlags{c: c}}
	cmd := &cobra.Command{
		Use:   "login [flags] <registry>",
		Short: "Log in to a registry: store its credentials in the Docker config",
		Long: `Log in to a registry: check the credentials against it and store them in the
Docker config (or its credential helper), where regvault, oras and docker find
them. On a terminal, a username and password that are not given are asked for
(the password is not shown).`,
		Example: `  # Log in, asked for username and password
  regvault login registry.mycompany.com

  # Log in with the password from standard input
  echo "$REGISTRY_PASSWORD" | regvault login --username admin --password-stdin registry.mycompany.com

  # Log in with an identity token
  regvault login --identity-token-stdin registry.mycompany.com < token.txt

  # Store the credentials in another config file
  regvault login --registry-config ./auth.json -u admin --password-stdin localhost:5000`,
		Args: exactArgs(1, "one registry host"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return l.run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().SortFlags = false
	l.reg.addFlags(cmd.Flags(), false)
	return cmd
}

func checkHost(host string) error {
	if strings.Contains(host, "/") {
		return usageError("%q: give a registry host (host[:port]), not a repository or URL", host)
	}
	if err := (orasregistry.Reference{Registry: host}).ValidateRegistry(); err != nil {
		return usageError("%q is not a registry host (host[:port])", host)
	}
	return nil
}

func (l *loginCmd) run(ctx context.Context, host string) error {
	c := l.c
	if err := checkHost(host); err != nil {
		return err
	}
	opts, err := l.reg.options(c.stdin)
	if err != nil {
		return err
	}
	cred := auth.Credential{Username: opts.Username, Password: opts.Password, RefreshToken: opts.IdentityToken}
	if cred.Password == "" && cred.RefreshToken == "" {
		if !isTerminal(c.stdin) {
			return usageError("no credentials given and standard input is not a terminal: use --username and --password-stdin (or --identity-token-stdin)")
		}
		if err := l.prompt(&cred); err != nil {
			return err
		}
	}
	// Check the credentials, not whatever the config holds now.
	opts.Username, opts.Password, opts.IdentityToken = "", "", ""
	client, err := registry.New(host, opts)
	if err != nil {
		return err
	}
	l.reg.warnInsecure(host)
	store, err := registry.CredentialStore(l.reg.registryConfig)
	if err != nil {
		return fmt.Errorf("opening the Docker config: %w", err)
	}
	if err := credentials.Login(ctx, store, client.Registry(), cred); err != nil {
		if recs := recommendations(host, []error{err}); len(recs) > 0 {
			return fmt.Errorf("%w\n%s", err, "  "+strings.Join(recs, "\n  "))
		}
		return err
	}
	fmt.Fprintln(c.stdout, "Login Succeeded")
	return nil
}

// prompt asks for what is missing of a username and password on the
// terminal; the password is not echoed. An empty username asks for an
// identity token instead.
func (l *loginCmd) prompt(cred *auth.Credential) error {
	c := l.c
	in, _ := c.stdin.(*os.File)
	if cred.Username == "" {
		fmt.Fprint(c.stdout, "Username (leave empty to give an identity token): ")
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		cred.Username = strings.TrimSpace(line)
	}
	label := "Password: "
	if cred.Username == "" {
		label = "Identity token: "
	}
	fmt.Fprint(c.stdout, label)
	secret, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(c.stdout)
	if err != nil {
		return fmt.Errorf("reading the password: %w", err)
	}
	s := strings.TrimRight(string(secret), "\r\n")
	if s == "" {
		return usageError("no password given")
	}
	c.addSecret(s)
	if cred.Username == "" {
		cred.RefreshToken = s
	} else {
		cred.Password = s
	}
	return nil
}

func (c *cli) logoutCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "logout [flags] <registry>",
		Short: "Log out of a registry: remove its credentials from the Docker config",
		Example: `  regvault logout registry.mycompany.com
  regvault logout --registry-config ./auth.json localhost:5000`,
		Args: exactArgs(1, "one registry host"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host := args[0]
			if err := checkHost(host); err != nil {
				return err
			}
			store, err := registry.CredentialStore(configPath)
			if err != nil {
				return fmt.Errorf("opening the Docker config: %w", err)
			}
			if err := credentials.Logout(cmd.Context(), store, host); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, "Logout Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "registry-config", "", "path of the Docker config file with credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	return cmd
}
