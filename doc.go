// Package regvault is regvault as a Go library: Backup copies
// repositories of one registry into one OCI image layout, Restore pushes
// such a layout into registries with remapping, Copy moves repositories
// from one registry to others directly, and Plan resolves a selection
// without moving anything. Each takes an options struct and returns a
// Report: per repository, the tags done, the bytes, and a
// *RepositoryError for a repository that failed.
//
// The regvault command is a thin layer over this package: it maps its
// flags to the options and prints the report.
package regvault
