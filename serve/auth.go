package serve

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Users are the users of an htpasswd file, as the distribution registry
// reads it: bcrypt entries only (htpasswd -B).
type Users struct {
	hashes map[string][]byte

	mu sync.Mutex
	ok map[[sha256.Size]byte]bool // user and password checked already: bcrypt costs tens of milliseconds
}

// ReadHtpasswd reads an htpasswd file of "user:bcrypt-hash" lines; blank
// lines and lines starting with # are skipped. Any other hash is refused,
// naming its line.
func ReadHtpasswd(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--htpasswd: %w", err)
	}
	u := &Users{hashes: map[string][]byte{}, ok: map[[sha256.Size]byte]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("--htpasswd %s: line %d is not user:hash", path, line)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("--htpasswd %s: line %d (user %s): not a bcrypt hash; only bcrypt entries are accepted, as by the distribution registry: create them with htpasswd -B", path, line, user)
		}
		u.hashes[user] = []byte(hash)
	}
	if len(u.hashes) == 0 {
		return nil, fmt.Errorf("--htpasswd %s: no user in the file (lines of user:bcrypt-hash, from htpasswd -Bc)", path)
	}
	return u, nil
}

func (u *Users) check(user, pass string) bool {
	hash, ok := u.hashes[user]
	if !ok {
		return false
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	u.mu.Lock()
	known := u.ok[key]
	u.mu.Unlock()
	if known {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	u.mu.Lock()
	u.ok[key] = true
	u.mu.Unlock()
	return true
}
