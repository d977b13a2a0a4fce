package registry

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// shownQuery are the query parameters whose values say what a request is
// for and nothing more: pagination, the digest of an upload, a mount's
// source. Every other value is masked: an upload URL carries the upload
// session's state (`_state`, a signed token that lets its holder write
// to the upload), and a registry may put other tokens in its URLs.
var shownQuery = map[string]bool{"n": true, "last": true, "digest": true, "mount": true, "from": true}

// masked replaces a value that is not shown.
const masked = "***"

// MaskURL returns u as regvault shows it, in --debug lines and in errors:
// without user information, and with every query value but those of
// shownQuery replaced by "***".
func MaskURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		q, err := url.ParseQuery(c.RawQuery)
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			for _, v := range q[k] {
				if b.Len() > 0 {
					b.WriteByte('&')
				}
				b.WriteString(url.QueryEscape(k))
				b.WriteByte('=')
				if shownQuery[k] {
					b.WriteString(url.QueryEscape(v))
				} else {
					b.WriteString(masked)
				}
			}
		}
		if err != nil && b.Len() == 0 {
			// A query that does not parse is shown as nothing at all.
			b.WriteString(masked)
		}
		c.RawQuery = b.String()
	}
	return c.String()
}

// urlPattern finds the URLs in a message: errors of the HTTP client and
// of oras-go quote the URL of the failed request.
var urlPattern = regexp.MustCompile(`https?://[^\s"'<>]+`)

// MaskURLs masks, as MaskURL, every URL in s (an error message).
func MaskURLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlPattern.ReplaceAllStringFunc(s, func(raw string) string {
		// A URL at the end of a sentence keeps its full stop or colon.
		trimmed := strings.TrimRight(raw, ".,:;)")
		tail := raw[len(trimmed):]
		u, err := url.Parse(trimmed)
		if err != nil {
			if i := strings.IndexByte(trimmed, '?'); i >= 0 {
				return trimmed[:i+1] + masked + tail
			}
			return raw
		}
		return MaskURL(u) + tail
	})
}
