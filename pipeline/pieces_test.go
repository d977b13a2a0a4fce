package pipeline

import "testing"

func TestPieces(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		name        string
		size, total int64
		conc, want  int
	}{
		{"one big layer alone: every connection takes a piece", 2048 * MiB, 2048 * MiB, 8, 8},
		{"many similar blobs keep the connections busy: whole", 40 * MiB, 2048 * MiB, 8, 1},
		{"one layer much larger than the rest: pieces of about a fair share", 32 * MiB, 151 * MiB, 8, 2},
		{"never under minPart", 12 * MiB, 12 * MiB, 8, 1},
		{"at most conc", 100 * MiB, 100 * MiB, 4, 4},
		{"small blob", 1 * MiB, 1 * MiB, 8, 1},
	} {
		if got := pieces(c.size, c.conc, c.total/int64(c.conc)); got != c.want {
			t.Errorf("%s: pieces(%d MiB, conc %d, share of %d MiB) = %d, want %d", c.name, c.size/MiB, c.conc, c.total/MiB, got, c.want)
		}
	}
}
