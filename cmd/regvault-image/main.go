// Command regvault-image builds regvault's container image as an OCI image
// layout, without a container daemon: from scratch, one layer with the
// static binary (/regvault), the CA certificates of the pinned
// golang.org/x/crypto/x509roots/fallback bundle
// (/etc/ssl/certs/ca-certificates.crt) and a non-root user (65532,
// "nonroot"), for each platform whose binary it is given, under one image
// index tagged with the version. Every time stamp is the one given
// (-epoch, or SOURCE_DATE_EPOCH), so the same binaries give the same bytes.
// `make image` cross-builds the binaries and runs it.
//
//	regvault-image -o bin/image -tar bin/regvault-image.tar -version v1.2.3 \
//	    linux/amd64=bin/image-build/linux_amd64/regvault \
//	    linux/arm64=bin/image-build/linux_arm64/regvault
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options is what one build takes.
type options struct {
	Out      string // the OCI layout directory
	Tar      string // the same layout as a tar, "" for none
	Version  string // org.opencontainers.image.version
	Tag      string // the ref.name of the index in index.json
	Revision string // org.opencontainers.image.revision, "" to leave it out
	Source   string // org.opencontainers.image.source
	Epoch    int64  // seconds since 1970 for every time stamp
	Binaries []platformBinary
}

// platformBinary is one platform's static regvault binary.
type platformBinary struct {
	OS, Arch, Variant string
	Path              string
}

func (p platformBinary) platform() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// tagPattern is the distribution spec's rule for a tag.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if !errors.Is(err, errFlags) {
			fmt.Fprintln(stderr, "regvault-image:", err)
		}
		return 2
	}
	res, err := build(o)
	if err != nil {
		fmt.Fprintln(stderr, "regvault-image:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s:%s %s (%s)\n", o.Out, o.Tag, res.Index, strings.Join(res.Platforms, ", "))
	if o.Tar != "" {
		fmt.Fprintf(stdout, "%s: the same layout as a tar\n", o.Tar)
	}
	return 0
}

// errFlags is a flag error the flag package has already printed.
var errFlags = errors.New("bad flags")

// parseArgs reads the command line into options.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("regvault-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	fs.StringVar(&o.Out, "o", "", "write the OCI image layout to this directory (replaced if it holds one; required)")
	fs.StringVar(&o.Tar, "tar", "", "also write the layout as this tar file")
	fs.StringVar(&o.Version, "version", "", "the version the image carries (label org.opencontainers.image.version; required)")
	fs.StringVar(&o.Tag, "tag", "", "the tag of the image in the layout's index.json (default: the version)")
	fs.StringVar(&o.Revision, "revision", "", "the source commit (label org.opencontainers.image.revision)")
	fs.StringVar(&o.Source, "source", "https://github.com/regvault/regvault", "the source repository (label org.opencontainers.image.source)")
	fs.StringVar(&epoch, "epoch", epoch, "every time stamp, in seconds since 1970 (default $SOURCE_DATE_EPOCH, else 0)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: regvault-image -o <dir> -version <v> [flags] <os>/<arch>[/<variant>]=<static binary> ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errFlags
	}
	return o, o.parse(epoch, fs.Args())
}

// parse checks the flags and reads the platform=binary arguments.
func (o *options) parse(epoch string, args []string) error {
	if o.Out == "" {
		return errors.New("-o <dir> is required: the OCI layout to write")
	}
	if o.Version == "" {
		return errors.New("-version is required (make image passes the one `regvault version` prints)")
	}
	if o.Tag == "" {
		o.Tag = o.Version
	}
	if !tagPattern.MatchString(o.Tag) {
		return fmt.Errorf("%q is not a valid tag: give one with -tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127})", o.Tag)
	}
	if epoch == "" {
		epoch = "0"
	}
	n, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("-epoch / SOURCE_DATE_EPOCH %q: want seconds since 1970, e.g. $(git log -1 --format=%%ct)", epoch)
	}
	o.Epoch = n
	if len(args) == 0 {
		return errors.New("no binaries: give <os>/<arch>=<path to a static regvault binary> for each platform")
	}
	seen := map[string]bool{}
	for _, a := range args {
		plat, path, ok := strings.Cut(a, "=")
		parts := strings.Split(plat, "/")
		if !ok || path == "" || len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return fmt.Errorf("%q: want <os>/<arch>[/<variant>]=<path>, e.g. linux/amd64=bin/regvault", a)
		}
		b := platformBinary{OS: parts[0], Arch: parts[1], Path: path}
		if len(parts) == 3 {
			b.Variant = parts[2]
		}
		if seen[b.platform()] {
			return fmt.Errorf("platform %s given twice", b.platform())
		}
		seen[b.platform()] = true
		o.Binaries = append(o.Binaries, b)
	}
	return nil
}
