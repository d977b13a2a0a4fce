package source

import "github.com/regvault/regvault/archive"

// Names of the two files of an OCI image layout besides its blobs.
const (
	layoutFileName  = archive.LayoutFileName
	layoutIndexName = archive.IndexFileName
)

// Limits on what a layout reader holds in memory.
const (
	// layoutMaxManifest bounds a manifest read to resolve a tag or find a
	// referrer: the one limit of backup, verify and restore.
	layoutMaxManifest = archive.MaxManifestSize
	// layoutMaxManifestCache bounds the manifests kept in memory once
	// read.
	layoutMaxManifestCache = 256 << 20
)
