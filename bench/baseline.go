package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// RunBaseline is the baseline tool, run as a child process of the bench
// program (`bench baseline get|put ...`) so that it is measured like the
// other tools:
//
//   - get: GET every blob of the list from its repository into a file
//     named by its digest's hex in -dir, -conns at once, each file synced
//     to disk (fsync) before it counts as done, and the SHA-256 of the
//     bytes fetched checked against the digest as they arrive.
//   - put: push every blob of the list from those files to its
//     repository with POST and one monolithic PUT, -conns at once, the
//     SHA-256 of the bytes sent checked against the digest.
//
// Plain net/http, no retries: the physical limit of the registry, the
// proxy and the disk, with the one piece of work a tool that verifies
// cannot skip (regvault hashes what it fetches, and a restore hashes the
// archive's bytes as it reads them), so that the comparison is like for
// like.
func RunBaseline(args []string) error {
	if len(args) == 0 || (args[0] != "get" && args[0] != "put") {
		return fmt.Errorf("usage: bench baseline get|put -host H -list blobs.json -dir D [-conns N]")
	}
	op := args[0]
	fs := flag.NewFlagSet("baseline "+op, flag.ContinueOnError)
	host := fs.String("host", "", "registry host:port (plain HTTP)")
	list := fs.String("list", "", "JSON list of blobs (digest, size, repo)")
	dir := fs.String("dir", "", "directory of the blob files")
	conns := fs.Int("conns", BaselineConns, "transfers at once")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *host == "" || *list == "" || *dir == "" {
		return fmt.Errorf("baseline %s: -host, -list and -dir are required", op)
	}
	data, err := os.ReadFile(*list)
	if err != nil {
		return err
	}
	var blobs []Blob
	if err := json.Unmarshal(data, &blobs); err != nil {
		return fmt.Errorf("%s: %w", *list, err)
	}
	if op == "get" {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
	}
	c := newClient(*host, *conns)
	defer c.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Largest first, so that one big blob does not start last.
	order := make([]Blob, len(blobs))
	copy(order, blobs)
	sortBySizeDesc(order)
	jobs := make(chan Blob)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				path := filepath.Join(*dir, strings.TrimPrefix(b.Digest, "sha256:"))
				var err error
				if op == "get" {
					err = getToFile(ctx, c, b, path)
				} else {
					err = putFromFile(ctx, c, b, path)
				}
				if err != nil {
					fail(fmt.Errorf("%s %s: %w", op, b.Digest, err))
				}
			}
		}()
	}
feed:
	for _, b := range order {
		select {
		case jobs <- b:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

func getToFile(ctx context.Context, c *client, b Blob, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := c.getBlob(ctx, b.Repo, b.Digest, &bigCopy{io.MultiWriter(f, h)})
	if err == nil {
		err = checkSum(h, b.Digest)
	}
	if err == nil {
		// On disk, as a backup has to be: regvault syncs its output too.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != b.Size {
		err = fmt.Errorf("got %d bytes, want %d", n, b.Size)
	}
	return err
}

func putFromFile(ctx context.Context, c *client, b Blob, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if err := c.uploadMonolithic(ctx, b.Repo, b.Digest, b.Size, io.TeeReader(f, h)); err != nil {
		return err
	}
	// The registry checked the digest too; the baseline pays for the hash
	// as regvault does.
	return checkSum(h, b.Digest)
}

// baselineBuf is the baseline's read size: regvault's copy buffer
// (sink/layout.go), so that neither pays for more syscalls per byte than
// the other.
const baselineBuf = 256 << 10

// bigCopy is a writer that io.Copy fills through baselineBuf-sized reads
// (io.Copy's own buffer is 32 KiB).
type bigCopy struct{ w io.Writer }

func (b *bigCopy) Write(p []byte) (int, error) { return b.w.Write(p) }

func (b *bigCopy) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(b.w, r, make([]byte, baselineBuf))
}

// checkSum fails unless h (a SHA-256) is of the content of dgst.
func checkSum(h hash.Hash, dgst string) error {
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != dgst {
		return fmt.Errorf("content is %s, not %s", got, dgst)
	}
	return nil
}

func sortBySizeDesc(bs []Blob) {
	sort.Slice(bs, func(i, j int) bool {
		if bs[i].Size != bs[j].Size {
			return bs[i].Size > bs[j].Size
		}
		return bs[i].Digest < bs[j].Digest
	})
}
