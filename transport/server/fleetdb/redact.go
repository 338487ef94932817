package fleetdb

import (
	"net/url"
	"regexp"
	"strings"
)

// passwordParam is a password=VALUE parameter of a DSN's query.
var passwordParam = regexp.MustCompile(`((?:^|[?&])password=)[^&#]*`)

// Redact returns dsn fit for a log line: a postgres URL's password (in
// its user part or a password parameter) becomes "xxxxx", also in a URL
// that does not parse. Other DSNs are returned as they are.
func Redact(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok || (scheme != "postgres" && scheme != "postgresql") {
		return dsn
	}
	if u, err := url.Parse(dsn); err == nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	// By hand: the user part ends at the last @ (an @ in a password
	// must be escaped, but may not be).
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, has := strings.Cut(rest[:at], ":"); has {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	return scheme + "://" + passwordParam.ReplaceAllString(rest, "${1}xxxxx")
}
