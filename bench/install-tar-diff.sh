#!/usr/bin/env bash
# Build containers/tar-diff and tar-patch v0.1.2 into $1 (default ./bin) for
# `skiff bench`. `go install module@version` needs the proxy's version list
# for the deprecation check, which some proxies refuse for this module; then
# build from a scratch module that requires the exact version instead.
set -euo pipefail
BIN=$(realpath -m "${1:-bin}")
VERSION=v0.1.2
GO=${GO:-go}
mkdir -p "$BIN"
if GOBIN="$BIN" "$GO" install "github.com/containers/tar-diff/cmd/tar-diff@$VERSION" 2>/dev/null &&
   GOBIN="$BIN" "$GO" install "github.com/containers/tar-diff/cmd/tar-patch@$VERSION" 2>/dev/null; then
	echo "installed tar-diff and tar-patch $VERSION into $BIN"
	exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
"$GO" mod init tar-diff-build >/dev/null 2>&1
"$GO" get "github.com/containers/tar-diff/cmd/tar-diff@$VERSION" "github.com/containers/tar-diff/cmd/tar-patch@$VERSION"
GOBIN="$BIN" "$GO" install github.com/containers/tar-diff/cmd/tar-diff github.com/containers/tar-diff/cmd/tar-patch
echo "installed tar-diff and tar-patch $VERSION into $BIN (built from a scratch module)"
