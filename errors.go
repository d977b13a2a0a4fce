package regvault

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/regvault/regvault/graph"
	"github.com/regvault/regvault/pipeline"
)

// Operations a RepositoryError names.
const (
	OpBackup  = "backup"
	OpRestore = "restore"
	OpCopy    = "copy"
	OpPlan    = "plan"
)

// RepositoryError is why one repository failed by itself (a repository
// stopped because another one failed has none): the operation, the
// repository (for a restore or a copy, the target), the tag and digest
// when the failure is tied to one, and the cause. As oras-go's
// CopyError, it wraps its cause: errors.Is and errors.As see through it.
type RepositoryError struct {
	Repository graph.Repository
	Op         string
	Tag        string        // "" when no one tag failed
	Digest     digest.Digest // "" when no one manifest or blob failed
	Err        error
}

func (e *RepositoryError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Op, e.Repository, e.Err)
}

func (e *RepositoryError) Unwrap() error { return e.Err }

// newRepositoryError types err, a failure of repo, finding the digest it
// is about when the pipeline or the walk recorded one.
func newRepositoryError(op string, repo graph.Repository, err error) *RepositoryError {
	re := &RepositoryError{Repository: repo, Op: op, Err: err}
	var te *pipeline.TransferError
	if errors.As(err, &te) {
		re.Digest = te.Desc.Digest
	}
	return re
}
