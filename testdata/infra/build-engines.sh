#!/usr/bin/env bash
# build-engines.sh - build the modern engines the integration tests also run against, once,
# from the Go module proxy, into a cache that outlives $INFRA:
#
#   $SKIFF_TOOLS/containerd-2.4.2/{containerd,ctr,containerd-shim-runc-v2}
#       go install github.com/containerd/containerd/v2/cmd/...@v2.4.2      (~5 min)
#   $SKIFF_TOOLS/docker-28.5.2/dockerd
#       github.com/docker/docker@v28.5.2+incompatible from the module cache, built with its
#       vendor.mod/vendor.sum as go.mod/go.sum (go install would resolve @latest) (~5 min)
#
# A directory whose .complete marker exists is never rebuilt; remove it to rebuild.
# Builds are modest (GOMAXPROCS=2, -p 2): the machines are shared.
#
#   SKIFF_TOOLS   cache root                (default $HOME/.cache/skiff/tools)
#   ENGINES       subset of "containerd2 docker28" (default both)
set -euo pipefail

SKIFF_TOOLS=${SKIFF_TOOLS:-$HOME/.cache/skiff/tools}
ENGINES=${ENGINES:-containerd2 docker28}
CONTAINERD_VERSION=2.4.2
DOCKER_VERSION=28.5.2
export GOMAXPROCS=${GOMAXPROCS:-2} GOFLAGS="${GOFLAGS:-} -p=2" GOTOOLCHAIN=local

log() { printf '[build-engines %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
command -v go >/dev/null || die "no Go toolchain on PATH"
mkdir -p "$SKIFF_TOOLS"
# One build per cache at a time (two start-infra.sh runs may race).
exec 8>"$SKIFF_TOOLS/.build.lock"
flock 8

build_containerd() {
  local dir=$SKIFF_TOOLS/containerd-$CONTAINERD_VERSION t0=$SECONDS
  if [ -e "$dir/.complete" ]; then log "containerd $CONTAINERD_VERSION cached in $dir"; return 0; fi
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  log "building containerd $CONTAINERD_VERSION (containerd, ctr, containerd-shim-runc-v2) into $dir"
  GOBIN=$dir.tmp CGO_ENABLED=0 go install \
    "github.com/containerd/containerd/v2/cmd/containerd@v$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@v$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION"
  "$dir.tmp/ctr" --version >&2
  echo "built in $((SECONDS - t0)) s on $(date -u +%FT%TZ)" >"$dir.tmp/.complete"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  log "containerd $CONTAINERD_VERSION built in $((SECONDS - t0)) s"
}

build_docker() {
  local dir=$SKIFF_TOOLS/docker-$DOCKER_VERSION t0=$SECONDS mod src
  if [ -e "$dir/.complete" ]; then log "dockerd $DOCKER_VERSION cached in $dir"; return 0; fi
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  mod=github.com/docker/docker@v$DOCKER_VERSION+incompatible
  log "downloading $mod"
  src=$(cd "$dir.tmp" && go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || die "go mod download $mod gave no directory"
  # The module cache is read-only and its go.mod is a stub: build a writable copy with the
  # dependency versions docker itself pins (vendor.mod/vendor.sum).
  cp -r "$src" "$dir.tmp/src" && chmod -R u+w "$dir.tmp/src"
  cp "$dir.tmp/src/vendor.mod" "$dir.tmp/src/go.mod"
  cp "$dir.tmp/src/vendor.sum" "$dir.tmp/src/go.sum"
  rm -rf "$dir.tmp/src/vendor"
  log "building dockerd $DOCKER_VERSION"
  (cd "$dir.tmp/src" && CGO_ENABLED=0 go build -mod=mod -tags "netgo osusergo static_build" \
    -ldflags "-X github.com/docker/docker/dockerversion.Version=$DOCKER_VERSION" \
    -o "$dir.tmp/dockerd" ./cmd/dockerd)
  rm -rf "$dir.tmp/src"
  "$dir.tmp/dockerd" --version >&2
  echo "built in $((SECONDS - t0)) s on $(date -u +%FT%TZ)" >"$dir.tmp/.complete"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  log "dockerd $DOCKER_VERSION built in $((SECONDS - t0)) s"
}

for e in $ENGINES; do
  case $e in
    containerd2) build_containerd ;;
    docker28) build_docker ;;
    *) die "unknown engine '$e' in ENGINES (want containerd2, docker28)" ;;
  esac
done
