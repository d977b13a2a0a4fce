package shard

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/regvault/regvault/planfile"
)

// IndexEnv is the variable a Kubernetes Indexed Job sets in each pod to
// the pod's index, 0 … completions-1.
const IndexEnv = "JOB_COMPLETION_INDEX"

// ParseSpec reads a shard spec: "I/N" (shard I of N, I from 0 to N-1),
// or "auto/N" (or "/N") for the index in $JOB_COMPLETION_INDEX, which
// getenv reads.
func ParseSpec(spec string, getenv func(string) string) (index, n int, err error) {
	is, ns, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, fmt.Errorf("shard %q: use I/N (shard I of N, I from 0 to N-1) or auto/N (I from $%s)", spec, IndexEnv)
	}
	n, err = strconv.Atoi(ns)
	if err != nil || n < 1 || n > MaxShards {
		return 0, 0, fmt.Errorf("shard %q: the number of shards %q must be a whole number from 1 to %d", spec, ns, MaxShards)
	}
	from := ""
	if is == "auto" || is == "" {
		is = getenv(IndexEnv)
		if is == "" {
			return 0, 0, fmt.Errorf("shard %q: $%s is not set: it is set in the pods of a Kubernetes Indexed Job; elsewhere give the index, as I/%d", spec, IndexEnv, n)
		}
		from = " ($" + IndexEnv + ")"
	}
	index, err = strconv.Atoi(is)
	if err != nil {
		return 0, 0, fmt.Errorf("shard %q: index %q%s is not a whole number", spec, is, from)
	}
	if index < 0 || index >= n {
		return 0, 0, fmt.Errorf("shard %q: index %d%s is out of range: the shards of %d are 0 to %d", spec, index, from, n, n-1)
	}
	return index, n, nil
}

// Select returns the shard spec names (ParseSpec, reading the process's
// environment) of the assignment of p.
func Select(p *planfile.Plan, spec string) (*Shard, error) {
	return SelectEnv(p, spec, os.Getenv)
}

// SelectEnv is Select with the environment read by getenv.
func SelectEnv(p *planfile.Plan, spec string, getenv func(string) string) (*Shard, error) {
	if _, _, err := ParseSpec(spec, getenv); err != nil {
		return nil, err // before indexing the plan
	}
	return SelectIndex(planfile.NewIndex(p), spec, getenv)
}

// SelectIndex is SelectEnv of the indexed plan (planfile.ReadIndex: what a
// pod does at start, the plan indexed once for its validation, the
// assignment and the shard's plan, Shard.PlanOf).
func SelectIndex(x *planfile.Index, spec string, getenv func(string) string) (*Shard, error) {
	i, n, err := ParseSpec(spec, getenv)
	if err != nil {
		return nil, err
	}
	a, err := AssignIndex(x, n)
	if err != nil {
		return nil, err
	}
	return &a.Shards[i], nil
}
