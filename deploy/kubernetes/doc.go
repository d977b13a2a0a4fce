// Package kubernetes holds regvault's Kubernetes manifests (the *.yaml
// files of this directory, walked through in README.md): Indexed Jobs for a
// sharded copy and a sharded backup, the plan's ConfigMap, the registry
// credentials' Secret and the backup's volume. Its test reads them the way
// the API server would, field by field, since `kubectl --dry-run=client`
// needs a cluster.
package kubernetes
