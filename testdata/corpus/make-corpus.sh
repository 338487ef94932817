#!/usr/bin/env bash
# make-corpus.sh - build skiff's realistic corpus: pairs of layer tars made from real
# software, for benchmarks and large integration tests.
#
#   toolchain  Go toolchain go1.22.0 -> go1.22.1 as /usr/local/go (module golang.org/toolchain)
#   app        prometheus node_exporter v1.7.0 -> v1.8.0 built from the Go module proxy
#              with -trimpath, + LICENSE/NOTICE + an /etc/default config that changes
#   os         Debian bookworm minbase (debootstrap); old = plain, new = fresh debootstrap
#              + apt-get upgrade from bookworm-updates and bookworm-security
#
# Output (default SKIFF_CORPUS=$HOME/.cache/skiff/corpus):
#   $SKIFF_CORPUS/layers/<pair>/{old,new}.tar   the layer tars (uncompressed)
#   $SKIFF_CORPUS/layers/<pair>/RECIPE.txt      exactly how they were made
#   $SKIFF_CORPUS/layers/<pair>/SHA256SUMS      full digests (sha256sum -c format)
#   $SKIFF_CORPUS/layers/<pair>/.stamp          recipe version + sizes; a pair whose stamp
#                                               matches is not rebuilt
#   $SKIFF_CORPUS/layers/SUMMARY.txt            pair, side, bytes, entries, sha256 prefix
#
# toolchain and app are bit-identical across rebuilds (same GNU tar); os follows the
# live Debian suite and drifts. Scratch space is $SKIFF_CORPUS/work (removed on success).
# Needs: Go >= 1.21 on PATH (for `go mod download`), network access to the Go module proxy
# and a Debian mirror; root for the os pair (debootstrap, chroot) and to apt-get missing tools.
set -euo pipefail
shopt -s inherit_errexit # errors inside $(...) abort too

RECIPE_VERSION=1 # bump whenever a change below alters any output byte
ALL_PAIRS="toolchain app os"

usage() {
  cat <<EOF
usage: $0 [--force] [--pairs "toolchain app os"] [--keep-work]
  --force       rebuild the selected pairs even if their stamp says they are current
  --pairs LIST  build only these pairs (space or comma separated; default: $ALL_PAIRS)
  --keep-work   keep \$SKIFF_CORPUS/work (module cache, staging trees, logs) afterwards
  --verify      on a cache hit also re-check the full sha256 of each tar (slower)
env: SKIFF_CORPUS (output dir), MIRROR / SECMIRROR (Debian / Debian security mirror URLs)
EOF
}

FORCE=0 KEEP_WORK=0 VERIFY=0 PAIRS=$ALL_PAIRS
while [ $# -gt 0 ]; do
  case $1 in
    --force) FORCE=1 ;;
    --keep-work) KEEP_WORK=1 ;;
    --verify) VERIFY=1 ;;
    --pairs)
      [ $# -ge 2 ] || { echo "make-corpus: --pairs needs a value, e.g. --pairs \"toolchain app\"" >&2; exit 2; }
      PAIRS=${2//,/ }
      shift
      ;;
    --pairs=*) PAIRS=${1#--pairs=} PAIRS=${PAIRS//,/ } ;;
    -h | --help) usage; exit 0 ;;
    *) echo "make-corpus: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
for p in $PAIRS; do
  case " $ALL_PAIRS " in *" $p "*) ;; *) echo "make-corpus: unknown pair '$p' (known: $ALL_PAIRS)" >&2; exit 2 ;; esac
done
[ -n "${PAIRS// /}" ] || { echo "make-corpus: --pairs is empty (known: $ALL_PAIRS)" >&2; exit 2; }

C=${SKIFF_CORPUS:-$HOME/.cache/skiff/corpus}
case $C in /*) ;; *) C=$PWD/$C ;; esac
L=$C/layers W=$C/work

# Inputs. Changing any of these changes the pair's stamp key, so the pair is rebuilt.
GO_OLD=1.22.0 GO_NEW=1.22.1
APP=github.com/prometheus/node_exporter APP_OLD=v1.7.0 APP_NEW=v1.8.0 APP_GO=$GO_NEW
SUITE=bookworm

log() { printf '[make-corpus %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
epoch() { date -u -d "$1" +%s; }

# ---------------------------------------------------------------- cleanup on exit
STEP=setup
mounts_under() { awk -v w="$1/" 'index($2 "/", w) == 1 {print $2}' /proc/mounts | sort -r; }
unmount_all() {
  local m
  [ -d "$W" ] || return 0
  for m in $(mounts_under "$W"); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}
# safe_rm DIR... : never recurse into a mounted filesystem (e.g. a chroot's /proc or /dev)
safe_rm() {
  local d
  for d in "$@"; do
    [ -e "$d" ] || continue
    [ -z "$(mounts_under "$d")" ] || die "refusing to delete $d: still has mounts: $(mounts_under "$d" | tr '\n' ' ')"
    chmod -R u+w "$d" 2>/dev/null || true # the Go module cache is read-only
    rm -rf --one-file-system "$d"
  done
}
on_exit() {
  local rc=$?
  unmount_all
  if [ $rc != 0 ]; then
    log "FAILED during: $STEP (exit $rc); logs and partial output are under $W"
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# One run at a time per corpus directory (tests may call this concurrently).
mkdir -p "$C"
exec 8>"$C/.lock"
if ! flock -n 8; then
  log "another make-corpus run holds $C/.lock; waiting"
  flock 8
fi

# ---------------------------------------------------------------- tools
need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root"; }
apt_install() {
  [ $# -gt 0 ] || return 0
  need_root "installing $*"
  command -v apt-get >/dev/null || die "missing $* and no apt-get to install them"
  log "apt-get install $*"
  mkdir -p "$W"
  { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "$@"; } >"$W/apt.log" 2>&1 ||
    { tail -20 "$W/apt.log" >&2; die "apt-get install $* failed (log $W/apt.log)"; }
}
want_pair() { case " $PAIRS " in *" $1 "*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------- cache stamps
# stamp_key PAIR: first line of .stamp; any change of recipe or inputs rebuilds the pair
stamp_key() {
  case $1 in
    toolchain) echo "skiff-corpus v$RECIPE_VERSION toolchain go$GO_OLD go$GO_NEW linux-amd64" ;;
    app) echo "skiff-corpus v$RECIPE_VERSION app $APP $APP_OLD $APP_NEW go$APP_GO linux-amd64" ;;
    os) echo "skiff-corpus v$RECIPE_VERSION os debian $SUITE minbase amd64" ;;
  esac
}
# cached PAIR -> 0 when layers/PAIR has a matching stamp and both tars with the recorded sizes
cached() {
  local d=$L/$1 side bytes entries sum rest
  [ -f "$d/.stamp" ] || return 1
  [ "$(head -1 "$d/.stamp")" = "$(stamp_key "$1")" ] || return 1
  while read -r side bytes entries sum rest; do
    [ -f "$d/$side.tar" ] || return 1
    [ "$(stat -c %s "$d/$side.tar")" = "$bytes" ] || return 1
    if [ $VERIFY = 1 ]; then [ "$(sha256sum "$d/$side.tar" | cut -c1-64)" = "$sum" ] || return 1; fi
  done < <(tail -n +2 "$d/.stamp")
  [ "$(tail -n +2 "$d/.stamp" | wc -l)" = 2 ]
}
# finish PAIR OUTDIR: record digests + stamp, then atomically replace layers/PAIR
finish() {
  local p=$1 o=$2 side
  (cd "$o" && sha256sum old.tar new.tar >SHA256SUMS)
  {
    stamp_key "$p"
    for side in old new; do
      printf '%s %s %s %s\n' $side "$(stat -c %s "$o/$side.tar")" "$(tar -tf "$o/$side.tar" | wc -l)" \
        "$(grep " $side.tar\$" "$o/SHA256SUMS" | cut -c1-64)"
    done
  } >"$o/.stamp"
  mkdir -p "$L"
  safe_rm "$L/$p.old"
  [ -e "$L/$p" ] && mv "$L/$p" "$L/$p.old"
  mv "$o" "$L/$p"
  safe_rm "$L/$p.old"
}

# ---------------------------------------------------------------- helpers
# Deterministic tar: names sorted bytewise, no "./" prefix, POSIX (pax) format without
# atime/ctime records, numeric ids.
#   mktar SRC OUT EPOCH fixed  -> every entry gets mtime EPOCH and owner 0:0
#   mktar SRC OUT EPOCH clamp  -> mtimes clamped to <= EPOCH, real owners kept
mktar() {
  local src=$1 out=$2 t=$3 mode=$4
  # shellcheck disable=SC2054 # the commas belong to --pax-option
  local opts=(--sort=name --format=posix --numeric-owner --mtime=@"$t"
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
  if [ "$mode" = clamp ]; then opts+=(--clamp-mtime); else opts+=(--owner=0 --group=0); fi
  (cd "$src" && ls -A | sort | tar "${opts[@]}" -cf "$out" -T -)
}
# jfield NAME: a top-level string field of `go mod download -json` output (stdin)
jfield() { sed -n "s/^\t\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -1; }
# gomod MODULE@VERSION: go mod download, printing its JSON; dies with go's error text
gomod() {
  local out err
  if ! out=$(cd "$W" && go mod download -json "$1" 2>&1); then
    err=$(echo "$out" | jfield Error)
    die "go mod download $1 failed: ${err:-$(echo "$out" | tail -3)}"
  fi
  echo "$out"
}
# unzip_toolchain VERSION DEST: golang.org/toolchain module for VERSION/linux-ARCH into DEST (=GOROOT)
unzip_toolchain() {
  local v=$1 dest=$2 arch=${3:-amd64} mod zip x
  mod=golang.org/toolchain@v0.0.1-go$v.linux-$arch
  zip=$(gomod "$mod" | jfield Zip)
  [ -f "$zip" ] || die "go mod download $mod gave no zip"
  x=$W/.unzip.$$
  safe_rm "$x"
  mkdir -p "$x"
  unzip -q "$zip" -d "$x" # unzip keeps the zip's unix modes
  [ -d "$x/$mod" ] || die "$zip does not contain $mod/"
  mv "$x/$mod" "$dest"
  safe_rm "$x"
  echo "$mod $(sha256sum "$zip" | cut -c1-64)"
}

# ================================================================ 1. toolchain
build_toolchain() {
  local o=$1 side v st t info
  for side in old new; do
    v=$GO_OLD
    [ $side = new ] && v=$GO_NEW
    STEP="toolchain: go$v"
    log "toolchain/$side: go$v from the module proxy"
    st=$W/stage-toolchain-$side
    safe_rm "$st"
    mkdir -p "$st/usr/local"
    info=$(unzip_toolchain "$v" "$st/usr/local/go" amd64)
    chmod -R u+w,go-w,a+rX "$st/usr"
    t=$(epoch "$(sed -n 's/^time //p' "$st/usr/local/go/VERSION")") # release build time
    [ -n "$t" ] || die "no 'time' line in go$v's VERSION file"
    mktar "$st" "$o/$side.tar" "$t" fixed
    echo "$side: ${info% *} (zip sha256 ${info##* }) unzipped to usr/local/go; every entry mtime=@$t (VERSION time), owner 0:0" >>"$o/RECIPE.txt"
    safe_rm "$st"
  done
  echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --owner=0 --group=0" >>"$o/RECIPE.txt"
}

# ================================================================ 2. app
# node_exporter built with go$APP_GO (downloaded, independent of the host Go), -trimpath,
# promu-style version ldflags, for linux/amd64; plus LICENSE/NOTICE and a changing config.
build_app() {
  local o=$1 side v info dir when rev t st tc harch pv
  harch=$(go env GOHOSTARCH)
  tc=$W/go$APP_GO-$harch
  STEP="app: go$APP_GO toolchain"
  if [ ! -x "$tc/bin/go" ]; then
    log "app: fetching go$APP_GO (linux-$harch) to build with"
    safe_rm "$tc"
    unzip_toolchain "$APP_GO" "$tc" "$harch" >/dev/null
  fi
  for side in old new; do
    v=$APP_OLD
    [ $side = new ] && v=$APP_NEW
    STEP="app: node_exporter $v"
    info=$(gomod "$APP@$v")
    dir=$(echo "$info" | jfield Dir)
    when=$(grep -o '"Time":"[^"]*"' "$(echo "$info" | jfield Info)" | cut -d'"' -f4)
    rev=$(grep -o '"Hash":"[0-9a-f]*"' "$(echo "$info" | jfield Info)" | cut -d'"' -f4 || true)
    [ -n "$when" ] || die "no Time in the module proxy's info for $APP@$v"
    if [ -z "$rev" ]; then
      log "WARN: the module proxy gave no Origin.Hash for $APP@$v; Revision=unknown (output will differ from a proxy that has it)"
      rev=unknown
    fi
    t=$(epoch "$when")
    st=$W/stage-app-$side
    safe_rm "$st"
    mkdir -p "$st/usr/local/bin" "$st/usr/local/share/doc/node_exporter" "$st/etc/default"
    log "app/$side: go install $APP@$v with go$APP_GO"
    pv=github.com/prometheus/common/version
    (cd "$W" && GOBIN=$st/usr/local/bin "$tc/bin/go" install -trimpath \
      -ldflags "-X $pv.Version=${v#v} -X $pv.Revision=$rev -X $pv.Branch=HEAD -X $pv.BuildUser=root@corpus -X $pv.BuildDate=$(date -u -d "$when" +%Y%m%d-%H:%M:%S)" \
      "$APP@$v") >"$W/app-$side.log" 2>&1 || { tail -20 "$W/app-$side.log" >&2; die "building $APP@$v failed (log $W/app-$side.log)"; }
    [ -x "$st/usr/local/bin/node_exporter" ] || die "go install $APP@$v produced no node_exporter binary (GOARCH mismatch?)"
    install -m 0644 "$dir/LICENSE" "$dir/NOTICE" "$st/usr/local/share/doc/node_exporter/"
    if [ $side = old ]; then
      printf '%s\n' '# managed by fleet-config rev 41' \
        'NODE_EXPORTER_ARGS="--web.listen-address=:9100 --collector.textfile.directory=/var/lib/node_exporter/textfile --no-collector.wifi"' \
        >"$st/etc/default/node_exporter"
    else
      printf '%s\n' '# managed by fleet-config rev 42' \
        'NODE_EXPORTER_ARGS="--web.listen-address=:9100 --collector.textfile.directory=/var/lib/node_exporter/textfile --no-collector.wifi --collector.systemd --web.telemetry-path=/metrics"' \
        >"$st/etc/default/node_exporter"
    fi
    chmod -R go-w,a+rX "$st"
    mktar "$st" "$o/$side.tar" "$t" fixed
    echo "$side: $APP@$v (rev $rev) via 'go install -trimpath' with go$APP_GO, CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOAMD64=v1, + LICENSE, NOTICE, etc/default/node_exporter; every entry mtime=@$t (module time), owner 0:0" >>"$o/RECIPE.txt"
    safe_rm "$st"
  done
  echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --owner=0 --group=0" >>"$o/RECIPE.txt"
}

# ================================================================ 3. os
# The Debian mirrors this machine's apt already uses (deb822 or one-line sources), else deb.debian.org.
apt_uris() {
  {
    sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' \t' '\n\n'
    sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]\+\).*/\2/p' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | sed 's|/*$||' | grep -E '^https?://' || true
}
MIRROR=${MIRROR:-$(apt_uris | grep -E '/debian$' | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECMIRROR=${SECMIRROR:-$(apt_uris | grep -E '/debian-security$' | head -1)}
SECMIRROR=${SECMIRROR:-http://deb.debian.org/debian-security}

# Clean a rootfs like the official debian images do (no caches, lists, logs, host files).
clean_rootfs() {
  local r=$1
  [ -z "$(mounts_under "$r")" ] || die "refusing to clean $r: still has mounts"
  find "$r/dev" "$r/proc" "$r/sys" "$r/run" "$r/tmp" "$r/var/tmp" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} +
  rm -f "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb
  rm -rf "$r"/var/cache/apt/archives/partial/*
  rm -rf "$r"/var/lib/apt/lists/*
  mkdir -p "$r"/var/lib/apt/lists/partial
  find "$r/var/log" -type f -delete
  rm -f "$r"/var/cache/ldconfig/aux-cache "$r"/var/lib/dpkg/*-old "$r"/var/cache/debconf/*-old
  rm -f "$r"/etc/resolv.conf "$r"/etc/hostname
}
newest_release() { # newest Date: among the rootfs' apt Release files -> epoch
  local best=0 d e f
  for f in "$1"/var/lib/apt/lists/*Release; do
    [ -f "$f" ] || continue
    d=$(sed -n 's/^Date: //p' "$f" | head -1)
    e=$(epoch "$d")
    [ "$e" -gt "$best" ] && best=$e
  done
  [ "$best" -gt 0 ] || die "no apt Release files with a Date under $1/var/lib/apt/lists"
  echo "$best"
}
build_os() {
  local o=$1 side r t upg=0
  need_root "the os pair (debootstrap, chroot)"
  [ "$(dpkg --print-architecture 2>/dev/null || uname -m)" = amd64 ] || die "the os pair is defined for amd64 hosts"
  mkdir -p "$W/debs"
  for side in old new; do
    r=$W/rootfs-$side
    safe_rm "$r"
    STEP="os: debootstrap ($side)"
    log "os/$side: debootstrap --variant=minbase $SUITE $MIRROR"
    debootstrap --arch=amd64 --variant=minbase --cache-dir="$W/debs" "$SUITE" "$r" "$MIRROR" >"$W/debootstrap-$side.log" 2>&1 ||
      { tail -20 "$W/debootstrap-$side.log" >&2; die "debootstrap failed (log $W/debootstrap-$side.log)"; }
    cat >"$r/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECMIRROR $SUITE-security main
EOF
    if [ $side = new ]; then
      STEP="os: apt-get upgrade (new)"
      log "os/new: apt-get upgrade from $SUITE-updates and $SUITE-security"
      cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
      mount -t proc proc "$r/proc"
      chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C \
        sh -c 'apt-get -q update && apt-get -qy -o Dpkg::Options::=--force-confold upgrade' >"$W/upgrade.log" 2>&1 ||
        { tail -20 "$W/upgrade.log" >&2; die "apt-get upgrade in the chroot failed (log $W/upgrade.log)"; }
      umount "$r/proc"
      upg=$(grep -c '^Unpacking' "$W/upgrade.log" || true)
      log "os/new: upgraded $upg packages"
    fi
    STEP="os: tar ($side)"
    t=$(newest_release "$r")
    chroot "$r" dpkg-query -W -f '${Package} ${Version}\n' >"$o/$side.packages"
    clean_rootfs "$r"
    mktar "$r" "$o/$side.tar" "$t" clamp
    echo "$side: debootstrap --variant=minbase $SUITE $MIRROR$([ $side = new ] && echo " + apt-get upgrade ($upg packages) from $SUITE-updates, $SUITE-security ($SECMIRROR)"); cleaned like the official images; mtimes clamped to @$t (newest InRelease Date); real owners" >>"$o/RECIPE.txt"
    safe_rm "$r"
  done
  echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --clamp-mtime" >>"$o/RECIPE.txt"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ); drifts with the live suite. Package changes (< old, > new):" >>"$o/RECIPE.txt"
  diff "$o/old.packages" "$o/new.packages" | grep '^[<>]' >>"$o/RECIPE.txt" || true
}

# ================================================================ main
T_START=$(date +%s)
todo=()
for p in $ALL_PAIRS; do
  want_pair "$p" || continue
  if [ $FORCE = 0 ] && cached "$p"; then
    log "$p: cached ($L/$p, $(stamp_key "$p"))"
  else
    todo+=("$p")
  fi
done

if [ ${#todo[@]} -gt 0 ]; then
  STEP="tools"
  tar --version 2>/dev/null | grep -q 'GNU tar' || die "need GNU tar (for --sort=name)"
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi
  command -v go >/dev/null || die "need a Go >= 1.21 binary on PATH (only for 'go mod download')"
  pk=()
  command -v unzip >/dev/null || pk+=(unzip)
  if [[ " ${todo[*]} " == *" os "* ]]; then
    command -v debootstrap >/dev/null || pk+=(debootstrap)
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || pk+=(debian-archive-keyring)
  fi
  apt_install "${pk[@]}"

  mkdir -p "$W"
  umask 022
  # A private, fully specified Go environment: only the proxy settings come from the host.
  for v in GOPROXY GOSUMDB GONOSUMDB GONOPROXY GOPRIVATE GOINSECURE; do
    export "$v=$(go env "$v")"
  done
  unset GOROOT GOPATH GOBIN GOEXPERIMENT GOFLAGS GOAMD64 GOARCH GOOS GO386 GOARM
  export GOENV=off GOTOOLCHAIN=local GOMODCACHE=$W/gomodcache GOPATH=$W/gopath GOCACHE=$W/gocache \
    GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOAMD64=v1 \
    GO111MODULE=on GOWORK=off LC_ALL=C TZ=UTC
  safe_rm "$GOCACHE"

  for p in "${todo[@]}"; do
    t0=$(date +%s)
    STEP="$p"
    log "$p: building"
    o=$W/out-$p
    safe_rm "$o"
    mkdir -p "$o"
    "build_$p" "$o"
    STEP="$p: finishing"
    finish "$p" "$o"
    log "$p: done in $(($(date +%s) - t0))s"
  done
fi

# ---------------------------------------------------------------- summary
STEP=summary
{
  printf '%-10s %-4s %12s %8s  %s\n' pair side bytes entries sha256
  for p in $ALL_PAIRS; do
    [ -f "$L/$p/.stamp" ] || continue
    tail -n +2 "$L/$p/.stamp" | while read -r side bytes entries sum; do
      printf '%-10s %-4s %12d %8d  %s\n' "$p" "$side" "$bytes" "$entries" "${sum:0:16}"
    done
  done
} >"$L/SUMMARY.txt.tmp"
mv "$L/SUMMARY.txt.tmp" "$L/SUMMARY.txt"
cat "$L/SUMMARY.txt"
if [ ${#todo[@]} -gt 0 ] && [ -d "$W" ] && [ $KEEP_WORK = 0 ]; then
  unmount_all
  safe_rm "$W"
fi
log "corpus at $L ($(du -sh "$L" | cut -f1)); ${#todo[@]} pair(s) built, total $(($(date +%s) - T_START))s"
