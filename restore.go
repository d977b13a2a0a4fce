package regvault

import (
	"github.com/regvault/regvault/source"
)

// Input is what a backup read by Restore lists in its index.json.
type Input struct {
	Path  string
	Kind  source.LayoutKind
	Size  int64               // -1: not known
	Repos []string            // sorted
	Tags  map[string][]string // repository → its tags, sorted
}
