package registrytest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// basicAuth answers 401 with a Basic challenge, as distribution's htpasswd
// authentication does, to any request without valid credentials.
func basicAuth(next http.Handler, users map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if ok {
			if want, found := users[u]; found && subtle.ConstantTimeCompare([]byte(p), []byte(want)) == 1 {
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="regvault-test"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	})
}

// writeHtpasswd writes an htpasswd file with bcrypt hashes (minimum cost:
// the registry checks the hash on every request).
func writeHtpasswd(path string, users map[string]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		if u == "" || strings.ContainsAny(u, ":\n") {
			return fmt.Errorf("htpasswd: invalid user name %q", u)
		}
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, u := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(users[u]), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("htpasswd: %w", err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// writeError writes an error in the distribution-spec JSON form.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
	body := string(b)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func tempDir(prefix string) (string, error) { return os.MkdirTemp("", prefix) }

func removeAll(dir string) error { return os.RemoveAll(dir) }
