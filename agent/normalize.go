package agent

import (
	"fmt"
	"strings"
)

// dockerHubAliases are the names Docker Hub goes by.
var dockerHubAliases = map[string]bool{
	"docker.io":               true,
	"index.docker.io":         true,
	"registry-1.docker.io":    true,
	"registry.hub.docker.com": true,
	"registry.docker.io":      true,
}

// Mirrors maps mirror hosts (with an optional path prefix) to the upstream
// registry they mirror.
type Mirrors map[string][]string

// NormalizeName returns the canonical name of an image repository or
// reference, so that the same image reached through Docker Hub's aliases
// or a registry mirror compares equal:
//
//	nginx                                  -> docker.io/library/nginx
//	index.docker.io/library/nginx:1.27     -> docker.io/library/nginx:1.27
//	mirror.gcr.io/library/nginx            -> docker.io/library/nginx (mirrors: {docker.io: [mirror.gcr.io]})
//	harbor.local/dockerhub/nginx@sha256:…  -> docker.io/library/nginx@sha256:… (mirrors: {docker.io: [harbor.local/dockerhub]})
//
// A docker:// prefix is dropped. Tags and digests are kept; names are
// returned in lower case except for the tag.
func NormalizeName(ref string, mirrors Mirrors) (string, error) {
	s := strings.TrimPrefix(ref, "docker://")
	if s == "" {
		return "", fmt.Errorf("empty image name")
	}
	// Split off @digest, then :tag (a colon after the last slash).
	var suffix string
	if i := strings.Index(s, "@"); i >= 0 {
		s, suffix = s[:i], s[i:]
	}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		suffix = s[i:] + suffix
		s = s[:i]
	}
	if s == "" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") {
		return "", fmt.Errorf("image name %q: malformed repository", ref)
	}
	host, path, ok := strings.Cut(s, "/")
	// The first component is a registry host only if it looks like one
	// (Docker's rule): a dot, a port or "localhost".
	if !ok || (!strings.ContainsAny(host, ".:") && host != "localhost") {
		host, path = "docker.io", s
	}
	host = strings.ToLower(host)
	// A mirror (longest match first: host plus path prefix) stands for
	// its upstream.
	best, bestUp := "", ""
	for up, ms := range mirrors {
		for _, m := range ms {
			m = strings.TrimSuffix(strings.ToLower(m), "/")
			full := host + "/" + path
			if (full == m || strings.HasPrefix(full, m+"/")) && len(m) > len(best) {
				best, bestUp = m, strings.ToLower(up)
			}
		}
	}
	if best != "" {
		full := host + "/" + path
		rest := strings.TrimPrefix(full[len(best):], "/")
		if rest == "" {
			return "", fmt.Errorf("image name %q: names only the mirror %s, no repository", ref, best)
		}
		host, path = bestUp, rest
	}
	if dockerHubAliases[host] {
		host = "docker.io"
		if !strings.Contains(path, "/") {
			path = "library/" + path
		}
	}
	return host + "/" + strings.ToLower(path) + suffix, nil
}

// SameRepository reports whether two names (with or without tag or digest)
// name the same repository once normalized.
func SameRepository(a, b string, mirrors Mirrors) bool {
	na, err1 := NormalizeName(a, mirrors)
	nb, err2 := NormalizeName(b, mirrors)
	if err1 != nil || err2 != nil {
		return false
	}
	return stripTagDigest(na) == stripTagDigest(nb)
}

func stripTagDigest(n string) string {
	if i := strings.Index(n, "@"); i >= 0 {
		n = n[:i]
	}
	if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") {
		n = n[:i]
	}
	return n
}
