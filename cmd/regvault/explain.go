package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
	"github.com/regvault/regvault/registry"
	"github.com/regvault/regvault/source"
)

// problem is what kind of failure an error is, for a short reason and a
// recommendation.
type problem int

const (
	problemOther problem = iota
	problemAuth
	problemDenied
	problemRepoNotFound
	problemTagNotFound
	problemTLS
	problemPlainHTTP
	problemUnreachable
	problemIntegrity
	problemBackupIncomplete // content the backup lists is not in it
	problemStalled          // the registry sent nothing for --read-timeout
	problemUploadStalled    // the registry took no byte of an upload for --read-timeout
	problemTooLarge         // a manifest (or tag list) above the limit
	problemForeignRefused   // the registry refuses a manifest's non-distributable layer urls
	problemBlobNotFound     // the registry lacks a blob a manifest names
	problemManifestNotFound // the registry lacks a manifest fetched by digest
)

func classify(err error) problem {
	if err == nil {
		return problemOther
	}
	var missing *source.MissingError
	if errors.As(err, &missing) {
		return problemBackupIncomplete
	}
	var resp *errcode.ErrorResponse
	var te *pipeline.TransferError
	if errors.As(err, &te) && te.Source &&
		(errors.Is(err, errdef.ErrNotFound) || errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound) {
		// Fetched by digest during the transfer: not a tag that is
		// missing.
		if te.Kind == graph.KindManifest {
			return problemManifestNotFound
		}
		return problemBlobNotFound
	}
	if errors.As(err, &resp) {
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return problemAuth
		case http.StatusForbidden:
			return problemDenied
		}
		for _, e := range resp.Errors {
			switch e.Code {
			case errcode.ErrorCodeUnauthorized:
				return problemAuth
			case errcode.ErrorCodeDenied:
				return problemDenied
			case errcode.ErrorCodeNameUnknown:
				return problemRepoNotFound
			case errcode.ErrorCodeManifestUnknown:
				return problemTagNotFound
			}
		}
		if resp.StatusCode == http.StatusNotFound {
			if strings.Contains(resp.URL.Path, "/tags/list") {
				return problemRepoNotFound
			}
			return problemTagNotFound
		}
	}
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		return problemAuth
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return problemTagNotFound
	}
	if errors.Is(err, registry.ErrUploadTimeout) {
		return problemUploadStalled
	}
	if errors.Is(err, registry.ErrReadTimeout) {
		return problemStalled
	}
	if errors.Is(err, errdef.ErrSizeExceedsLimit) {
		return problemTooLarge
	}
	if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) {
		return problemIntegrity
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostErr   *x509.HostnameError
		certErr   *x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recErr    *tls.RecordHeaderError
	)
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid URL on layer"):
		// distribution's answer to a manifest with a foreign layer
		// whose urls its configuration does not allow.
		return problemForeignRefused
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &certErr), errors.As(err, &verifyErr):
		return problemTLS
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return problemPlainHTTP
	case errors.As(err, &recErr):
		return problemPlainHTTP
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls: failed to verify"):
		return problemTLS
	}
	var dnsErr *net.DNSError
	if errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &dnsErr) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || strings.Contains(msg, "connection refused") {
		return problemUnreachable
	}
	return problemOther
}

// reason is a short phrase for a failure, as the failure summary shows
// it: "✗ docker.io/library/postgres (authentication required)".
func reason(err error) string {
	switch classify(err) {
	case problemAuth:
		return "authentication required"
	case problemDenied:
		return "access denied"
	case problemRepoNotFound:
		return "repository not found"
	case problemTagNotFound:
		return "tag not found"
	case problemTLS:
		return "TLS certificate not trusted"
	case problemPlainHTTP:
		return "registry speaks plain HTTP"
	case problemUnreachable:
		return "registry unreachable"
	case problemIntegrity:
		return "content does not match its digest"
	case problemBackupIncomplete:
		return "content missing from the backup"
	case problemStalled:
		return "the registry stopped sending"
	case problemUploadStalled:
		return "the registry stopped taking the upload"
	case problemTooLarge:
		return "larger than the " + archive.MaxManifestSizeText + " limit"
	case problemForeignRefused:
		return "the registry refuses the urls of a non-distributable layer"
	case problemBlobNotFound:
		return "blob not found in the registry"
	case problemManifestNotFound:
		return "manifest not found in the registry"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && len(msg)-i < 80 {
		return msg[i+2:]
	}
	return msg
}

// recommendations are what a user can do about the failures, each once.
func recommendations(host string, errs []error) []string {
	var out recommendationList
	add := out.add
	for _, err := range errs {
		switch classify(err) {
		case problemAuth:
			add("Check credentials for "+host,
				"Use --username and --password-stdin, or regvault login "+host)
		case problemDenied:
			add("Check credentials for "+host+": the account may not have pull access to the repository",
				"Use --username and --password-stdin, or regvault login "+host)
		case problemRepoNotFound:
			add("Check that the repository exists in " + host + ": names are case-sensitive and include their namespace, e.g. library/alpine")
		case problemTagNotFound:
			add("Check the tag names, or name no tags to back up every tag of the repository")
		case problemTLS:
			add("Pass the CA certificate that signed "+host+"'s certificate with --ca-file",
				"Or skip certificate verification with --insecure (not recommended)")
		case problemPlainHTTP:
			add(host + " speaks plain HTTP: add --plain-http")
		case problemUnreachable:
			add(fmt.Sprintf("Check the registry address %s: nothing answered there", host))
		case problemIntegrity:
			add("The registry served content that does not match its digest: retry, and report it to the registry's operator if it persists")
		case problemStalled:
			add(host + " sent nothing for the read timeout, on every retry: retry later, or give a slow registry more time with --read-timeout")
		case problemUploadStalled:
			add(host + " took no byte of an upload for the read timeout, on every retry: retry later, or give a slow registry more time with --read-timeout")
		case problemTooLarge:
			add("regvault reads manifests, tag lists and referrers lists of at most " + archive.MaxManifestSizeText + ", as registries store them: a larger manifest could not be restored, so it is refused at backup time")
		case problemBlobNotFound:
			add("A blob that the repository's manifests name is missing from " + host + " (deleted, or lost by the registry): push the image again, then back the repository up again")
		case problemManifestNotFound:
			add("A manifest that the repository's tags or indexes name is missing from " + host + " (deleted, or its tag moved during the backup): back the repository up again, or push the image again if it persists")
		}
	}
	return out
}

// recommendationList is recommendations in the order given, each once.
type recommendationList []string

func (l *recommendationList) add(lines ...string) {
	for _, line := range lines {
		if !slices.Contains(*l, line) {
			*l = append(*l, line)
		}
	}
}

// restoreRecommendations are recommendations for failures pushing to host:
// those of recommendations, with push in place of pull where it matters.
func restoreRecommendations(host string, errs []error) []string {
	var out recommendationList
	add := out.add
	for _, err := range errs {
		switch classify(err) {
		case problemDenied:
			add("Check credentials for "+host+": the account may not have push access to the repository",
				"Use --username and --password-stdin, or regvault login "+host)
		case problemRepoNotFound, problemTagNotFound:
			add("Check that " + host + " lets this account create the repository (some registries need it created first)")
		case problemIntegrity:
			add("A blob of the backup does not match its digest: the backup is damaged; check it with regvault verify --input <backup>")
		case problemBackupIncomplete:
			add("The backup lacks content it needs: it is incomplete; check it with regvault verify --input <backup>")
		case problemForeignRefused:
			add(host + " refuses manifests whose non-distributable (foreign) layers it does not hold: allow their URLs " +
				"(distribution: validation.manifests.urls.allow in its configuration), or push those layers to it first")
		default:
			add(recommendations(host, []error{err})...)
		}
	}
	return out
}
