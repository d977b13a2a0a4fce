package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/archive"
	"github.com/regvault/regvault/internal/registrytest"
)

// TestServeConformance runs the OCI distribution-spec conformance suite
// (the version the Makefile pins, built by `make conformance`, found
// through REGVAULT_CONFORMANCE) read-only against `regvault serve` of a
// backup of the sample: pushes off, the read-only data naming
// demo/backend's tags, manifests, blobs and referrer subjects. Every pull,
// tag-listing and referrers check must pass; nothing may fail.
//
// The suite's exit code is not used: after a read-only run this version
// panics writing its report files (it records a result for test data that
// push-less runs never create), after it has printed its result tree. The
// test reads that tree.
func TestServeConformance(t *testing.T) {
	bin := peer(t, "REGVAULT_CONFORMANCE", "conformance")
	src, sample := sampleRegistry(t)
	srv := startServe(t, "--input", servedBackup(t, src, "sample.tar"))

	repo := registrytest.SampleBackend
	var tags, manifests, blobs, referrers []string
	for tag := range sample.Tags[repo] {
		tags = append(tags, tag)
	}
	for _, d := range sample.Content[repo] {
		if archive.IsManifest(d.MediaType) {
			manifests = append(manifests, d.Digest.String())
		} else {
			blobs = append(blobs, d.Digest.String())
		}
	}
	seen := map[digest.Digest]bool{}
	for _, r := range sample.Referrers[repo] {
		if !seen[r.Subject.Digest] {
			seen[r.Subject.Digest] = true
			referrers = append(referrers, r.Subject.Digest.String())
		}
	}
	for _, l := range [][]string{tags, manifests, blobs, referrers} {
		slices.Sort(l)
	}
	results := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"HOME="+results,
		"OCI_RESULTS_DIR="+results,
		"OCI_REGISTRY="+srv.addr,
		"OCI_TLS=disabled",
		"OCI_REPO1="+repo,
		"OCI_REPO2="+registrytest.SampleFrontend,
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_RO_DATA_TAGS="+strings.Join(tags, " "),
		"OCI_RO_DATA_MANIFESTS="+strings.Join(manifests, " "),
		"OCI_RO_DATA_BLOBS="+strings.Join(blobs, " "),
		"OCI_RO_DATA_REFERRERS="+strings.Join(referrers, " "),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("conformance suite ended: %v", err)
	case <-time.After(5 * time.Minute): // a hang, not a timing
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the conformance suite did not end in 5 minutes\n[stdout]\n%s", out.String())
	}
	t.Logf("[stdout]\n%s[stderr]\n%s", out.String(), truncate(errOut.String()))

	// The result tree: "<indent><name>: <status>" lines.
	line := regexp.MustCompile(`(?m)^(\s*)(.+): (Pass|Skip|Disabled|FAIL|Error|Unknown)$`)
	counts := map[string]int{}
	var failed []string
	for _, m := range line.FindAllStringSubmatch(out.String(), -1) {
		counts[m[3]]++
		if m[3] == "FAIL" || m[3] == "Error" {
			failed = append(failed, strings.TrimSpace(m[2]))
		}
	}
	if !strings.Contains(out.String(), "\nOCI Conformance Test: Pass\n") {
		t.Errorf("the suite's overall result is not Pass")
	}
	if counts["Pass"] == 0 {
		t.Fatalf("no passing check in the suite's output: it did not run")
	}
	for _, f := range failed {
		t.Errorf("conformance: %s", f)
	}
	for _, area := range []string{"pull", "tag list", "referrers"} {
		if !regexp.MustCompile(`(?mi)^\s*.*` + area + `.*: Pass$`).MatchString(out.String()) {
			t.Errorf("no passing %s check in the suite's output", area)
		}
	}
	t.Logf("conformance results: %v", counts)
}
