package regvault_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/regvault/regvault"
	"github.com/regvault/regvault/internal/registrytest"
	"github.com/regvault/regvault/registry"
)

// A backup of two repositories of a registry (here one on 127.0.0.1 with
// sample content) into one tar, with their signatures and SBOMs.
func ExampleBackup() {
	ctx := context.Background()
	reg, err := registrytest.StartInProcess()
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	if _, err := registrytest.SeedSample(ctx, reg.Target(), registrytest.SampleOptions{}); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "regvault-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	report, err := regvault.Backup(ctx, regvault.BackupOptions{
		Sources:          []string{reg.Host() + "/demo/frontend", reg.Host() + "/library/base:1.0"},
		Output:           filepath.Join(dir, "apps.tar"),
		IncludeReferrers: true,
		Registry:         registry.Options{PlainHTTP: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range report.Repositories {
		for _, t := range r.Tags {
			fmt.Printf("%s:%s %d referrer(s)\n", r.Repository.Path, t.Name, t.Referrers)
		}
	}
	// Output:
	// demo/frontend:v1 1 referrer(s)
	// demo/frontend:v2 1 referrer(s)
	// library/base:1.0 1 referrer(s)
}

// A copy of a repository from one registry into another under a new
// name, every tag, with its referrers; nothing is written to disk.
func ExampleCopy() {
	ctx := context.Background()
	src, err := registrytest.StartInProcess()
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	dst, err := registrytest.StartInProcess()
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Close()
	if _, err := registrytest.SeedSample(ctx, src.Target(), registrytest.SampleOptions{}); err != nil {
		log.Fatal(err)
	}

	report, err := regvault.Copy(ctx, regvault.CopyOptions{
		Sources:          []string{src.Host() + "/demo/backend"},
		Targets:          []string{dst.Host() + "/prod/api"},
		IncludeReferrers: true,
		From:             registry.Options{PlainHTTP: true},
		To:               registry.Options{PlainHTTP: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range report.Repositories {
		for _, t := range r.Tags {
			fmt.Printf("%s:%s %d referrer(s)\n", r.Repository.Path, t.Name, t.Referrers)
		}
	}
	// Output:
	// prod/api:v1 1 referrer(s)
	// prod/api:v2 3 referrer(s)
}
