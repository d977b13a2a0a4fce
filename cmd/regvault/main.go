// Command regvault backs up many repositories of one OCI registry into one
// OCI image layout, restores it, and copies repositories between
// registries. This package is the command line only: flags to the options
// of the regvault package's Backup, Restore and Copy, their reports and
// events to the screen, nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/regvault/regvault/plan"
	"github.com/regvault/regvault/registry"
)

// Exit codes, as README's "Exit codes" lists them.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2 // usage or validation error: nothing was done
	exitPartial = 3 // some repositories done, some failed
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// exitError carries an exit code out of a command. A nil err means the
// command has already told the user what went wrong.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// runOutcome is how a backup or restore ends, once its summary is
// printed: nil on success; an interruption said in words (interrupted
// alone for a dry run, which had nothing to complete); a failure of the
// run as a whole, whole, said as it is; otherwise the exit code alone, the
// failure block being printed already.
func runOutcome(code int, interrupted, dryRun bool, interruptedMsg string, whole error) error {
	switch {
	case code == exitOK:
		return nil
	case interrupted && dryRun:
		return &exitError{code: code, err: errors.New("interrupted")}
	case interrupted:
		return &exitError{code: code, err: errors.New(interruptedMsg)}
	case whole != nil:
		return &exitError{code: code, err: whole}
	default:
		return &exitError{code: code}
	}
}

// cli is one invocation: its streams and the options every command shares.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	debug          bool
	// secrets are redacted from anything printed as an error.
	secrets []string
	// bar is the progress bar on the screen, if any (stderrLines).
	bar atomic.Pointer[progressBar]
	// linesMu serializes the lines of stderrLines.
	linesMu sync.Mutex
}

// run is the whole program: it parses args, runs the command, prints an
// error if there is one and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err == nil {
			return code // already reported
		}
		err = ee.err
	} else if ctx.Err() != nil && !isUsage(err) {
		err = errors.New("interrupted")
	}
	msg := c.redact(err.Error())
	fmt.Fprintf(stderr, "Error: %s\n", msg)
	if code == exitUsage && !strings.Contains(msg, "\n") && !strings.Contains(msg, "--help") {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", commandPath(root, args))
	}
	return code
}

// commandPath names the (sub)command args invoke, for the help hint.
func commandPath(root *cobra.Command, args []string) string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return root.Name()
	}
	return cmd.CommandPath()
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsage(err) {
		return exitUsage
	}
	return exitFailure
}

func isUsage(err error) bool {
	var ue *plan.UsageError
	if errors.As(err, &ue) {
		return true
	}
	// cobra's own argument errors are plain errors.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "invalid argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// usageError returns a usage error (exit code 2).
func usageError(format string, a ...any) error {
	return &plan.UsageError{Msg: fmt.Sprintf(format, a...)}
}

// redact replaces every secret given on the command line (or stdin) with
// "***", and masks the query values of every URL (registry.MaskURLs):
// neither a password nor an upload's `_state` token appears in output.
func (c *cli) redact(s string) string {
	s = registry.MaskURLs(s)
	for _, secret := range c.secrets {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "***")
		}
	}
	return s
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "regvault",
		Short: "Back up repositories of an OCI registry into one OCI image layout, and restore them",
		Long: `regvault backs up many repositories of one OCI registry into a single OCI
image layout (a directory, a tar, or a compressed tar) with each blob stored
once, and restores such a layout into registries, with remapping; copy
moves repositories from one registry into others directly, with the same
remapping and no archive.

A job too large for one machine is split: plan resolves the selection
once into a plan file, and backup and copy run one shard of it each
(--plan, --shard I/N), as the pods of a Kubernetes Indexed Job do;
restore takes the parts back as one (--input repeated).

Credentials come from the Docker config and its credential helpers
(see 'regvault login'), or from the --username/--password-stdin flags.

Exit codes: 0 done, 1 failure, 2 usage or validation error (nothing done),
3 partial (some repositories backed up, restored or copied, some failed).`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(readBuildInfo().oneLine() + "\n")
	root.PersistentFlags().BoolVarP(&c.debug, "debug", "d", false, "print each HTTP request to standard error (never its headers; URL tokens such as an upload's _state masked, as in errors)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError("%s", err.Error())
	})
	root.AddCommand(c.backupCommand(), c.restoreCommand(), c.copyCommand(), c.loginCommand(), c.logoutCommand(), c.repoCommand(), c.manifestCommand(), c.discoverCommand(), c.verifyCommand(), c.versionCommand())
	root.AddCommand(c.serveCommand())
	root.AddCommand(c.planCommand())
	c.completionCommand(root)
	return root
}

// args returns a cobra.PositionalArgs that turns a wrong number of
// arguments into a usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("%s takes %s, got %d argument(s)\nUsage: %s", cmd.CommandPath(), what, len(args), cmd.UseLine())
		}
		return nil
	}
}
