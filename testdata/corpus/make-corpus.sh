#!/usr/bin/env bash
# make-corpus.sh - build skiff's realistic corpus: pairs of layer tars made from real
# software, for benchmarks and large integration tests.
#
#   toolchain  Go toolchain go1.22.0 -> go1.22.1 as /usr/local/go (module golang.org/toolchain)
#   app        prometheus node_exporter v1.7.0 -> v1.8.0 built from the Go module proxy
#              with -trimpath, + LICENSE/NOTICE + an /etc/default config that changes
#   os         Debian bookworm minbase (debootstrap); old = plain, new = fresh debootstrap
#              + apt-get upgrade from bookworm-updates and bookworm-security
#   npm        /app/node_modules of a Node app (react, react-dom, webpack, axios and their
#              dependencies) from the lockfiles in npm/{old,new}/; each direct dependency
#              moves one release, npm ci --ignore-scripts
#   apt        os/old (minbase) -> the same rootfs + apt-get install nginx-light sqlite3,
#              one rebuilt layer
#   python     a layer on os/old: apt-get install python3 python3-flask + a Flask app in
#              /app (v1) -> + python3-requests and app v2
#   goarm64    node_exporter v1.8.1 -> v1.8.2 cross-built for linux/arm64 (like app)
#   armapp     the app pair (node_exporter v1.7.0 -> v1.8.0, same files) for linux/arm64
#   armv7app   the app pair for linux/arm GOARM=7
#   goamd64    the goarm64 pair (v1.8.1 -> v1.8.2) for linux/amd64 GOAMD64=v1, its x86 twin
#   debarm64   Debian bookworm minbase for arm64, unpacked only (debootstrap --foreign, no
#              emulation, no second stage); new = the same + nginx-light sqlite3 and deps
#   debarm64up debarm64's old side -> a fresh first stage with the newer versions of its
#              packages from bookworm-security and bookworm-updates unpacked over it
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
# live Debian suite and drifts, and so does debarm64up/new (bookworm-security, -updates).
# Scratch space is $SKIFF_CORPUS/work (removed on success).
# Needs: Go >= 1.21 on PATH (for `go mod download`), network access to the Go module proxy
# and a Debian mirror (and the security mirror for os and debarm64up); root for the os, apt,
# python, debarm64 and debarm64up pairs (debootstrap, chroot) and to apt-get missing tools.
set -euo pipefail
shopt -s inherit_errexit # errors inside $(...) abort too

RECIPE_VERSION=1 # bump whenever a change below alters any output byte
ALL_PAIRS="toolchain app os npm apt python goarm64 armapp armv7app goamd64 debarm64 debarm64up"

usage() {
  cat <<EOF
usage: $0 [--force] [--pairs "toolchain app os npm apt python goarm64 ..."] [--keep-work]
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
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NPM_DIR=$HERE/npm                             # {old,new}/package{,-lock}.json, committed
NPM_OLD_TIME=2024-03-20T00:00:00Z NPM_NEW_TIME=2024-05-15T00:00:00Z # fixed mtimes of the two sides
ARM_OLD=v1.8.1 ARM_NEW=v1.8.2                 # node_exporter for goarm64 and goamd64, built with go$APP_GO
DEBARM_PKGS="nginx-light sqlite3"             # what debarm64/new adds (with dependencies)
UP_SUITES="$SUITE-security $SUITE-updates"    # the suites debarm64up/new upgrades from (main)
APT_PKGS="nginx-light sqlite3"
PY_OLD_PKGS="python3 python3-flask" PY_NEW_PKGS="python3 python3-flask python3-requests"

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
    npm) echo "skiff-corpus v$RECIPE_VERSION npm locks $(cat "$NPM_DIR"/{old,new}/package{,-lock}.json | sha256sum | cut -c1-16) $NPM_OLD_TIME $NPM_NEW_TIME" ;;
    apt) echo "skiff-corpus v$RECIPE_VERSION apt base os/old $(os_old_sum) +$APT_PKGS $SUITE main amd64" ;;
    python) echo "skiff-corpus v$RECIPE_VERSION python base os/old $(os_old_sum) $PY_OLD_PKGS app-v1 -> $PY_NEW_PKGS app-v2 $SUITE main amd64" ;;
    goarm64) echo "skiff-corpus v$RECIPE_VERSION goarm64 $APP $ARM_OLD $ARM_NEW go$APP_GO linux-arm64" ;;
    armapp) echo "skiff-corpus v$RECIPE_VERSION armapp $APP $APP_OLD $APP_NEW go$APP_GO linux-arm64" ;;
    armv7app) echo "skiff-corpus v$RECIPE_VERSION armv7app $APP $APP_OLD $APP_NEW go$APP_GO linux-arm-v7" ;;
    goamd64) echo "skiff-corpus v$RECIPE_VERSION goamd64 $APP $ARM_OLD $ARM_NEW go$APP_GO linux-amd64-v1" ;;
    debarm64) echo "skiff-corpus v$RECIPE_VERSION debarm64 debian $SUITE minbase foreign arm64 +$DEBARM_PKGS" ;;
    debarm64up) echo "skiff-corpus v$RECIPE_VERSION debarm64up debian $SUITE minbase foreign arm64 upgraded from $UP_SUITES main" ;;
  esac
}
# os_old_sum: sha256 prefix of layers/os/old.tar from its stamp (apt and python build on it)
os_old_sum() { awk '$1 == "old" {print substr($4, 1, 16)}' "$L/os/.stamp" 2>/dev/null || true; }
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

# ================================================================ 2. app (and 7.-10.: goarm64, armapp, armv7app, goamd64)
# build_nodeexp OUT PAIR OLD NEW GOARCH VARIANT CONFIG: node_exporter OLD -> NEW built with
# go$APP_GO (downloaded, independent of the host Go), -trimpath, promu-style version
# ldflags, for linux/GOARCH (VARIANT: extra environment such as GOAMD64=v1 or GOARM=7, or
# empty); plus LICENSE/NOTICE and /etc/default/node_exporter: CONFIG=edit changes it
# (fleet-config rev 41 -> 42, two more flags), CONFIG=same keeps rev 42 on both sides.
# A native build installs with GOBIN; a cross build cannot (go install refuses GOBIN for
# cross-compiled binaries), so it lands in $GOPATH/bin/linux_GOARCH.
build_nodeexp() {
  local o=$1 p=$2 vold=$3 vnew=$4 arch=$5 variant=$6 conf=$7 side v info dir when rev t st tc harch pv gp bin
  harch=$(go env GOHOSTARCH)
  tc=$W/go$APP_GO-$harch
  STEP="$p: go$APP_GO toolchain"
  if [ ! -x "$tc/bin/go" ]; then
    log "$p: fetching go$APP_GO (linux-$harch) to build with"
    safe_rm "$tc"
    unzip_toolchain "$APP_GO" "$tc" "$harch" >/dev/null
  fi
  for side in old new; do
    v=$vold
    [ $side = new ] && v=$vnew
    STEP="$p: node_exporter $v"
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
    st=$W/stage-$p-$side
    gp=$W/gopath-$p
    safe_rm "$st" "$gp/bin"
    mkdir -p "$st/usr/local/bin" "$st/usr/local/share/doc/node_exporter" "$st/etc/default"
    log "$p/$side: go install $APP@$v with go$APP_GO for linux/$arch${variant:+ ($variant)}"
    pv=github.com/prometheus/common/version
    if [ "$arch" = "$harch" ]; then
      bin=$st/usr/local/bin/node_exporter
      # shellcheck disable=SC2086 # $variant is zero or more VAR=value words
      (cd "$W" && env GOBIN="$st/usr/local/bin" GOARCH="$arch" $variant "$tc/bin/go" install -trimpath \
        -ldflags "-X $pv.Version=${v#v} -X $pv.Revision=$rev -X $pv.Branch=HEAD -X $pv.BuildUser=root@corpus -X $pv.BuildDate=$(date -u -d "$when" +%Y%m%d-%H:%M:%S)" \
        "$APP@$v") >"$W/$p-$side.log" 2>&1 || { tail -20 "$W/$p-$side.log" >&2; die "building $APP@$v for linux/$arch failed (log $W/$p-$side.log)"; }
    else
      bin=$gp/bin/linux_$arch/node_exporter
      # shellcheck disable=SC2086
      (cd "$W" && env -u GOBIN GOPATH="$gp" GOARCH="$arch" $variant "$tc/bin/go" install -trimpath \
        -ldflags "-X $pv.Version=${v#v} -X $pv.Revision=$rev -X $pv.Branch=HEAD -X $pv.BuildUser=root@corpus -X $pv.BuildDate=$(date -u -d "$when" +%Y%m%d-%H:%M:%S)" \
        "$APP@$v") >"$W/$p-$side.log" 2>&1 || { tail -20 "$W/$p-$side.log" >&2; die "building $APP@$v for linux/$arch failed (log $W/$p-$side.log)"; }
    fi
    [ -x "$bin" ] || die "go install $APP@$v for linux/$arch left no $bin"
    [ "$bin" = "$st/usr/local/bin/node_exporter" ] || mv "$bin" "$st/usr/local/bin/node_exporter"
    install -m 0644 "$dir/LICENSE" "$dir/NOTICE" "$st/usr/local/share/doc/node_exporter/"
    if [ $conf = edit ] && [ $side = old ]; then
      printf '%s\n' '# managed by fleet-config rev 41' \
        'NODE_EXPORTER_ARGS="--web.listen-address=:9100 --collector.textfile.directory=/var/lib/node_exporter/textfile --no-collector.wifi"' \
        >"$st/etc/default/node_exporter"
    elif [ $conf = edit ]; then
      printf '%s\n' '# managed by fleet-config rev 42' \
        'NODE_EXPORTER_ARGS="--web.listen-address=:9100 --collector.textfile.directory=/var/lib/node_exporter/textfile --no-collector.wifi --collector.systemd --web.telemetry-path=/metrics"' \
        >"$st/etc/default/node_exporter"
    else
      printf '%s\n' '# managed by fleet-config rev 42' \
        'NODE_EXPORTER_ARGS="--web.listen-address=:9100 --collector.textfile.directory=/var/lib/node_exporter/textfile --no-collector.wifi"' \
        >"$st/etc/default/node_exporter"
    fi
    chmod -R go-w,a+rX "$st"
    mktar "$st" "$o/$side.tar" "$t" fixed
    echo "$side: $APP@$v (rev $rev) via 'go install -trimpath' with go$APP_GO, CGO_ENABLED=0 GOOS=linux GOARCH=$arch${variant:+ $variant}, + LICENSE, NOTICE, etc/default/node_exporter$([ $conf = same ] && echo ' (same on both sides)'); every entry mtime=@$t (module time), owner 0:0" >>"$o/RECIPE.txt"
    safe_rm "$st"
  done
  echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --owner=0 --group=0" >>"$o/RECIPE.txt"
}
build_app() { build_nodeexp "$1" app "$APP_OLD" "$APP_NEW" amd64 GOAMD64=v1 edit; }

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

# ================================================================ 4. npm
# /app of a Node application: package.json + package-lock.json from $NPM_DIR/<side>/ (the
# locks pin every package by version and sha512 integrity, and carry no registry URLs),
# node_modules installed by `npm ci --ignore-scripts` (registry tarballs are immutable),
# plus a small server.js. Fixed owners and one fixed mtime per side.
build_npm() {
  local o=$1 side st t when
  command -v npm >/dev/null || die "the npm pair needs npm (and node) on PATH"
  for side in old new; do
    when=$NPM_OLD_TIME
    [ $side = new ] && when=$NPM_NEW_TIME
    t=$(epoch "$when")
    STEP="npm: npm ci ($side)"
    st=$W/stage-npm-$side
    safe_rm "$st"
    mkdir -p "$st/app"
    cp "$NPM_DIR/$side/package.json" "$NPM_DIR/$side/package-lock.json" "$st/app/"
    app_server_js "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$st/app/package.json")" >"$st/app/server.js"
    log "npm/$side: npm ci --ignore-scripts ($(grep -c '"node_modules/' "$st/app/package-lock.json") packages)"
    (cd "$st/app" && npm_config_cache=$W/npm-cache npm ci --ignore-scripts --no-audit --no-fund --no-update-notifier \
      --omit-lockfile-registry-resolved) >"$W/npm-$side.log" 2>&1 ||
      { tail -20 "$W/npm-$side.log" >&2; die "npm ci failed (log $W/npm-$side.log)"; }
    chmod -R go-w,a+rX "$st"
    mktar "$st" "$o/$side.tar" "$t" fixed
    echo "$side: app/package.json + package-lock.json (testdata/corpus/npm/$side, lock sha256 $(sha256sum "$st/app/package-lock.json" | cut -c1-16)), app/node_modules by 'npm ci --ignore-scripts' (node $(node --version), npm $(npm --version)), app/server.js; direct deps: $(sed -n '/"dependencies"/,/}/s/^ *"\([^"]*\)": "\([^"]*\)".*/\1@\2/p' "$st/app/package.json" | tr '\n' ' '); every entry mtime=@$t ($when), owner 0:0" >>"$o/RECIPE.txt"
    safe_rm "$st"
  done
  echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --owner=0 --group=0" >>"$o/RECIPE.txt"
}
app_server_js() {
  cat <<EOF
'use strict';
// fleet-dashboard $1: serves the dashboard bundle and proxies the fleet API.
const http = require('http');
const path = require('path');
const fs = require('fs');
const axios = require('axios');

const api = axios.create({ baseURL: process.env.FLEET_API || 'http://127.0.0.1:8080', timeout: 5000 });
const dist = path.join(__dirname, 'dist');

http.createServer(async (req, res) => {
  if (req.url.startsWith('/api/')) {
    try {
      const r = await api.get(req.url.slice(4));
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(r.data));
    } catch (e) {
      res.writeHead(502);
      res.end(String(e.message));
    }
    return;
  }
  const f = path.join(dist, req.url === '/' ? 'index.html' : path.normalize(req.url));
  fs.createReadStream(f).on('error', () => { res.writeHead(404); res.end(); }).pipe(res);
}).listen(process.env.PORT || 3000, () => console.log('fleet-dashboard $1 listening'));
EOF
}

# ================================================================ 5. apt, 6. python
# Both start from layers/os/old.tar (a Debian minbase), unpacked as root, and install
# packages in a chroot from the $SUITE main suite only (a point release; updates and
# security are left out so the package versions do not move between builds).
# unpack_os_old DEST: layers/os/old.tar extracted with owners, modes and mtimes
unpack_os_old() {
  [ -f "$L/os/old.tar" ] || die "$2 builds on layers/os/old.tar, which is missing (build the os pair)"
  safe_rm "$1"
  mkdir -p "$1"
  tar -C "$1" --numeric-owner -xpf "$L/os/old.tar"
}
# chroot_install ROOT LOG PKG...: apt-get update + install --no-install-recommends in ROOT
# from "$MIRROR $SUITE main"; services are not started (policy-rc.d), apt lists are left
# for newest_release, and ROOT's own sources.list is restored afterwards.
chroot_install() {
  local r=$1 lg=$2 rc=0
  shift 2
  mv "$r/etc/apt/sources.list" "$r/etc/apt/sources.list.corpus"
  echo "deb $MIRROR $SUITE main" >"$r/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
  # a cleaned rootfs has an empty /dev; apt and maintainer scripts need the basic nodes
  # (clean_rootfs removes them again)
  mknod -m 666 "$r/dev/null" c 1 3 && mknod -m 666 "$r/dev/zero" c 1 5 && mknod -m 666 "$r/dev/full" c 1 7 &&
    mknod -m 666 "$r/dev/random" c 1 8 && mknod -m 666 "$r/dev/urandom" c 1 9 && mknod -m 666 "$r/dev/tty" c 5 0 ||
    die "mknod in $r/dev failed"
  mount -t proc proc "$r/proc"
  chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C \
    sh -c 'apt-get -q update && apt-get -qy --no-install-recommends -o Dpkg::Options::=--force-confold install "$@"' sh "$@" >"$lg" 2>&1 || rc=$?
  umount "$r/proc"
  rm -f "$r/usr/sbin/policy-rc.d"
  mv "$r/etc/apt/sources.list.corpus" "$r/etc/apt/sources.list"
  [ $rc = 0 ] || { tail -20 "$lg" >&2; die "apt-get install $* in the chroot failed (log $lg)"; }
}
build_apt() {
  local o=$1 r=$W/rootfs-apt t n
  need_root "the apt pair (chroot)"
  STEP="apt: old = os/old"
  [ -f "$L/os/old.tar" ] || die "the apt pair builds on layers/os/old.tar, which is missing (build the os pair)"
  # a hard link where possible (nothing rewrites a finished tar in place; os rebuilds replace it)
  ln "$L/os/old.tar" "$o/old.tar" 2>/dev/null || cp "$L/os/old.tar" "$o/old.tar"
  cp "$L/os/old.packages" "$o/old.packages"
  STEP="apt: apt-get install $APT_PKGS"
  unpack_os_old "$r" apt
  log "apt/new: apt-get install --no-install-recommends $APT_PKGS from $SUITE main"
  chroot_install "$r" "$W/apt-install.log" $APT_PKGS
  n=$(grep -c '^Unpacking' "$W/apt-install.log" || true)
  t=$(newest_release "$r")
  chroot "$r" dpkg-query -W -f '${Package} ${Version}\n' >"$o/new.packages"
  clean_rootfs "$r"
  STEP="apt: tar (new)"
  mktar "$r" "$o/new.tar" "$t" clamp
  safe_rm "$r"
  {
    echo "old: layers/os/old.tar (hard link or copy; sha256 $(sha256sum "$o/old.tar" | cut -c1-64), the minbase rootfs"
    echo "new: os/old.tar unpacked + apt-get install --no-install-recommends $APT_PKGS ($n packages) from '$MIRROR $SUITE main' in a chroot (policy-rc.d: no services started); cleaned like the official images; mtimes clamped to @$t (newest InRelease Date); real owners"
    echo "image: one layer per side (a rebuilt base layer), so whole-layer tools see one old and one new tar"
    echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --clamp-mtime"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ). Packages added (> new):"
    diff "$o/old.packages" "$o/new.packages" | grep '^[<>]' || true
  } >>"$o/RECIPE.txt"
}

# tree_list DIR: one line per entry below DIR, "path<TAB>type mode uid gid size-or-0 link"
# (directory sizes are 0), sorted bytewise; tree_sums DIR: "path<TAB>sha256" of the files.
tree_list() {
  (cd "$1" && find . -mindepth 1 -printf '%P\t%y %m %U %G %s %l\n') |
    awk -F'\t' 'BEGIN{OFS="\t"} {split($2, a, " "); if (a[1] == "d") sub(/ [0-9]+ $/, " 0 ", $2); print}' | LC_ALL=C sort
}
tree_sums() {
  (cd "$1" && find . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0r sha256sum) |
    sed 's/^\([0-9a-f]*\)  \(.*\)$/\2\t\1/'
}
# layer_diff BASE ROOT STAGE: write into STAGE the layer that turns BASE into ROOT, as
# Docker and BuildKit store it: every added or changed entry (type, mode, owner, size,
# link target or content), the parent directories of each, and a .wh.<name> whiteout
# for each removed entry whose parent was not removed too. Prints the number of changed
# entries and whiteouts.
layer_diff() {
  local base=$1 root=$2 st=$3 d=$W/layerdiff p
  safe_rm "$d" "$st"
  mkdir -p "$d" "$st"
  tree_list "$base" >"$d/base.list"
  tree_list "$root" >"$d/root.list"
  tree_sums "$base" >"$d/base.sums"
  tree_sums "$root" >"$d/root.sums"
  { LC_ALL=C comm -13 "$d/base.list" "$d/root.list"; LC_ALL=C comm -13 "$d/base.sums" "$d/root.sums"; } |
    cut -f1 | LC_ALL=C sort -u >"$d/changed"
  LC_ALL=C comm -23 <(cut -f1 "$d/base.list") <(cut -f1 "$d/root.list") >"$d/removed"
  # only the topmost removed entries get a whiteout
  awk '{ for (i = 1; i <= n; i++) if (index($0, top[i] "/") == 1) next; top[++n] = $0; print }' "$d/removed" >"$d/whiteouts"
  { cat "$d/changed"
    awk '{ while (sub(/\/[^\/]*$/, "")) print }' "$d/changed" "$d/whiteouts"; } | LC_ALL=C sort -u >"$d/include"
  if [ -s "$d/include" ]; then
    tar -C "$root" --numeric-owner --no-recursion -cf - -T "$d/include" | tar -C "$st" --numeric-owner -xpf -
  fi
  while read -r p; do
    case $p in */*) : >"$st/${p%/*}/.wh.${p##*/}" ;; *) : >"$st/.wh.$p" ;; esac
  done <"$d/whiteouts"
  echo "$(wc -l <"$d/changed") changed, $(wc -l <"$d/whiteouts") removed"
  safe_rm "$d"
}
# python_app VERSION: /app/app.py of the Flask service; v2 adds an upstream check (requests)
python_app() {
  cat <<'EOF'
"""fleet-agent-api: device inventory for the fleet dashboard (skiff corpus fixture)."""
import json
import os
import sqlite3

from flask import Flask, abort, jsonify, request
EOF
  if [ "$1" = 2 ]; then echo 'import requests'; fi
  cat <<EOF

VERSION = "$1.0.0"
DB = os.environ.get("FLEET_DB", "/var/lib/fleet/devices.db")
app = Flask(__name__)


def db():
    con = sqlite3.connect(DB)
    con.row_factory = sqlite3.Row
    con.execute("CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, image TEXT, seen INTEGER)")
    return con


@app.get("/healthz")
def healthz():
    return jsonify(status="ok", version=VERSION)


@app.get("/devices")
def devices():
    with db() as con:
        rows = con.execute("SELECT id, image, seen FROM devices ORDER BY id").fetchall()
    return jsonify([dict(r) for r in rows])


@app.put("/devices/<dev>")
def report(dev):
    body = request.get_json(force=True, silent=True) or {}
    if "image" not in body:
        abort(400, "missing image")
    with db() as con:
        con.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, strftime('%s','now'))", (dev, body["image"]))
    return jsonify(id=dev, image=body["image"])
EOF
  if [ "$1" = 2 ]; then
    cat <<'EOF'


@app.get("/upstream")
def upstream():
    """Is the rollout server reachable? (new in 2.0)"""
    url = os.environ.get("ROLLOUT_URL", "http://127.0.0.1:8080/healthz")
    try:
        r = requests.get(url, timeout=3)
        return jsonify(url=url, status=r.status_code)
    except requests.RequestException as e:
        return jsonify(url=url, error=str(e)), 502
EOF
  fi
  cat <<'EOF'


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
EOF
}
build_python() {
  local o=$1 side base=$W/rootfs-python-base r t n pk v ch
  need_root "the python pair (chroot)"
  STEP="python: unpack os/old"
  unpack_os_old "$base" python
  for side in old new; do
    pk=$PY_OLD_PKGS v=1
    [ $side = new ] && pk=$PY_NEW_PKGS v=2
    r=$W/rootfs-python-$side
    safe_rm "$r"
    cp -a "$base" "$r"
    STEP="python: apt-get install ($side)"
    log "python/$side: apt-get install --no-install-recommends $pk + app v$v"
    chroot_install "$r" "$W/python-$side.log" $pk
    n=$(grep -c '^Unpacking' "$W/python-$side.log" || true)
    t=$(newest_release "$r")
    chroot "$r" dpkg-query -W -f '${Package} ${Version}\n' >"$o/$side.packages"
    clean_rootfs "$r"
    mkdir -p "$r/app"
    python_app $v >"$r/app/app.py"
    if [ $v = 2 ]; then printf 'flask\nrequests\n'; else printf 'flask\n'; fi >"$r/app/requirements.txt"
    printf '[Unit]\nDescription=fleet-agent-api %s\n\n[Service]\nExecStart=/usr/bin/python3 /app/app.py\nRestart=always\n' "$v.0.0" >"$r/app/fleet-agent-api.service"
    STEP="python: layer ($side)"
    ch=$(layer_diff "$base" "$r" "$W/stage-python-$side")
    mktar "$W/stage-python-$side" "$o/$side.tar" "$t" clamp
    echo "$side: layer over os/old.tar (sha256 $(sha256sum "$L/os/old.tar" | cut -c1-16)): apt-get install --no-install-recommends $pk ($n packages) from '$MIRROR $SUITE main' in a chroot, cleaned like the official images, + /app v$v.0.0 (app.py, requirements.txt, a systemd unit); the layer holds what changed against os/old ($ch; parents included, whiteouts for removals); mtimes clamped to @$t (newest InRelease Date); real owners" >>"$o/RECIPE.txt"
    safe_rm "$r" "$W/stage-python-$side"
  done
  safe_rm "$base"
  {
    echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --clamp-mtime"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ). Package changes (< old, > new):"
    diff "$o/old.packages" "$o/new.packages" | grep '^[<>]' || true
  } >>"$o/RECIPE.txt"
}

# ================================================================ 7.-10. goarm64, armapp, armv7app, goamd64
# The same node_exporter builds for other architectures (build_nodeexp, section 2):
# goarm64 and its x86-64 counterpart goamd64 are v1.8.1 -> v1.8.2 with one config on both
# sides; armapp and armv7app are the app pair (v1.7.0 -> v1.8.0, config edited) for
# arm64 and ARMv7.
build_goarm64() { build_nodeexp "$1" goarm64 "$ARM_OLD" "$ARM_NEW" arm64 "" same; }
build_goamd64() { build_nodeexp "$1" goamd64 "$ARM_OLD" "$ARM_NEW" amd64 GOAMD64=v1 same; }
build_armapp() { build_nodeexp "$1" armapp "$APP_OLD" "$APP_NEW" arm64 "" edit; }
build_armv7app() { build_nodeexp "$1" armv7app "$APP_OLD" "$APP_NEW" arm GOARM=7 edit; }

# ================================================================ 11. debarm64
# A Debian arm64 userland built on any host without emulation: debootstrap --foreign only
# downloads the packages and unpacks them (dpkg-deb), so no arm64 code runs and no
# maintainer scripts do (no /etc/passwd, an empty dpkg status: what a first stage leaves).
# Each side is a fresh first stage from $SUITE main (a point release, so the versions do
# not move between builds). For new, debootstrap --include's $DEBARM_PKGS and resolves
# their dependencies, but a first stage only unpacks the required packages and leaves
# these "base" ones for the second; they are unpacked here in debootstrap's order the way
# it unpacks (dpkg-deb --fsys-tarfile | tar, keeping the merged-/usr symlinks).
# /debootstrap (second-stage scripts, log, package lists) and the downloaded .debs are
# removed, the rest is cleaned like the os pair: one rebuilt layer per side, mtimes
# clamped to the InRelease date, real owners (unpacked as root).
# deb_foreign LABEL ARCH ROOT LOG [OPTION...]: a fresh first stage in ROOT, debootstrap
# --arch=ARCH --foreign --variant=minbase OPTION... $SUITE $MIRROR; the .debs are cached
# in $W/debs-ARCH for the next first stage of that architecture.
deb_foreign() {
  local label=$1 arch=$2 r=$3 lg=$4
  shift 4
  safe_rm "$r"
  mkdir -p "$W/debs-$arch"
  log "$label: debootstrap --arch=$arch --foreign --variant=minbase${*:+ $*} $SUITE $MIRROR"
  debootstrap --arch="$arch" --foreign --variant=minbase "$@" --cache-dir="$W/debs-$arch" "$SUITE" "$r" "$MIRROR" \
    >"$lg" 2>&1 || { tail -20 "$lg" >&2; die "debootstrap --foreign failed (log $lg)"; }
  [ -f "$r/debootstrap/debpaths" ] || die "debootstrap --foreign left no $r/debootstrap/debpaths"
  [ "$(cat "$r/debootstrap/arch")" = "$arch" ] || die "debootstrap did not bootstrap $arch ($r/debootstrap/arch)"
}
# deb_unpack ROOT DEB: unpack DEB over ROOT the way debootstrap does (dpkg-deb
# --fsys-tarfile | tar, keeping the merged-/usr directory symlinks); no scripts run
deb_unpack() {
  dpkg-deb --fsys-tarfile "$2" | tar -C "$1" --keep-directory-symlink -xf - || die "unpacking $2 failed"
}
# deb_foreign_packages ROOT: "Package Version" of each .deb the first stage in ROOT
# downloaded, sorted (dpkg-query needs a second stage)
deb_foreign_packages() {
  local deb
  while read -r _ deb; do
    dpkg-deb --show --showformat='${Package} ${Version}\n' "$1$deb"
  done <"$1/debootstrap/debpaths" | LC_ALL=C sort
}
# deb_foreign_tar ROOT OUT EPOCH: /debootstrap (second-stage scripts, log, package lists)
# and the .debs removed, cleaned like os, tarred with mtimes clamped to EPOCH, real owners
deb_foreign_tar() {
  rm -rf --one-file-system "$1/debootstrap"
  clean_rootfs "$1"
  mktar "$1" "$2" "$3" clamp
}
# build_debforeign OUT PAIR ARCH: old = a minbase first stage, new = one with
# --include=$DEBARM_PKGS and the packages debootstrap left for the second stage unpacked
build_debforeign() {
  local o=$1 p=$2 arch=$3 side r t inc n pk deb
  need_root "the $p pair (debootstrap unpacks as root to keep the packages' owners)"
  for side in old new; do
    inc=()
    [ $side = new ] && inc=(--include="${DEBARM_PKGS// /,}")
    r=$W/rootfs-$p-$side
    STEP="$p: debootstrap --foreign ($side)"
    deb_foreign "$p/$side" "$arch" "$r" "$W/debootstrap-$p-$side.log" "${inc[@]}"
    if [ $side = new ]; then
      STEP="$p: unpack $DEBARM_PKGS and dependencies"
      for pk in $(cat "$r/debootstrap/base"); do
        deb=$(awk -v p="$pk" '$1 == p {print $2}' "$r/debootstrap/debpaths")
        [ -n "$deb" ] && [ -f "$r$deb" ] || die "$p: no .deb for $pk in $r/debootstrap/debpaths"
        deb_unpack "$r" "$r$deb"
      done
      log "$p/new: unpacked $(wc -w <"$r/debootstrap/base") more packages"
    fi
    STEP="$p: tar ($side)"
    t=$(newest_release "$r")
    deb_foreign_packages "$r" >"$o/$side.packages"
    n=$(wc -l <"$o/$side.packages")
    deb_foreign_tar "$r" "$o/$side.tar" "$t"
    echo "$side: debootstrap --arch=$arch --foreign --variant=minbase${inc[*]:+ ${inc[*]}} $SUITE $MIRROR$([ $side = new ] && echo ", the --include'd packages and their dependencies unpacked with dpkg-deb --fsys-tarfile | tar --keep-directory-symlink") ($n packages unpacked, no second stage); /debootstrap and the .debs removed, cleaned like the os pair; mtimes clamped to @$t (newest InRelease Date); real owners" >>"$o/RECIPE.txt"
    safe_rm "$r"
  done
  {
    echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --clamp-mtime"
    echo "image: one layer per side (a rebuilt base layer, like os and apt); the image config says amd64 like every corpus image"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ). Packages added (> new):"
    diff "$o/old.packages" "$o/new.packages" | grep '^[<>]' || true
  } >>"$o/RECIPE.txt"
}
build_debarm64() { build_debforeign "$1" debarm64 arm64; }

# ================================================================ 12. debarm64up
# An arm64 base image after a package upgrade, still without emulation: old is debarm64's
# old side (a minbase first stage from $SUITE main), new a fresh first stage upgraded the
# way apt-get upgrade would pick, without running anything: for each package of the first
# stage, the newest version in $SUITE-security ($SECMIRROR) or $SUITE-updates ($MIRROR),
# main, ARCH, when dpkg --compare-versions says it is newer. The suites' InRelease files
# are checked with gpgv against the Debian archive keyring, their Packages indexes against
# the InRelease sha256s, each .deb against its Packages sha256 and size. Each upgrade is
# unpacked over the tree like debootstrap unpacks (deb_unpack), after removing the files
# the old version shipped and the new one does not (what dpkg's upgrade does). Like the os
# pair, new follows the live suites and drifts; mtimes are clamped to the newest InRelease
# Date of the three suites.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# suite_mirror SUITE: the mirror serving SUITE
suite_mirror() { case $1 in *-security) echo "$SECMIRROR" ;; *) echo "$MIRROR" ;; esac; }
# fetch URL FILE: download URL to FILE
fetch() { curl -fsSL --retry 3 -o "$2" "$1" || die "downloading $1 failed"; }
# deb_index SUITE ARCH DIR: the suite's InRelease, signature checked (gpgv, $KEYRING), as
# DIR/<apt list name>_InRelease, and its main/binary-ARCH/Packages (sha256 checked against
# the InRelease) as DIR/<suite>_Packages
deb_index() {
  local s=$1 arch=$2 d=$3 m n f sum size want
  m=$(suite_mirror "$s")
  n=$(echo "${m#*://}" | tr / _)_dists_$s
  f=$d/$n.InRelease.signed
  fetch "$m/dists/$s/InRelease" "$f"
  gpgv --keyring "$KEYRING" --output "$d/${n}_InRelease" "$f" >"$f.gpgv" 2>&1 ||
    { cat "$f.gpgv" >&2; die "$m/dists/$s/InRelease: no good signature by $KEYRING"; }
  want=main/binary-$arch/Packages.xz
  read -r sum size < <(awk -v w="$want" '/^[^ ]/ {sha = ($1 == "SHA256:")} sha && $3 == w {print $1, $2}' "$d/${n}_InRelease") ||
    die "$m/dists/$s/InRelease lists no SHA256 for $want"
  fetch "$m/dists/$s/$want" "$d/$s.Packages.xz"
  [ "$(stat -c %s "$d/$s.Packages.xz")" = "$size" ] && [ "$(sha256sum <"$d/$s.Packages.xz" | cut -c1-64)" = "$sum" ] ||
    die "$m/dists/$s/$want does not match its InRelease (sha256 $sum, $size bytes)"
  xz -dc "$d/$s.Packages.xz" >"$d/${s}_Packages"
}
# deb_upgrades PACKAGES DIR SUITE...: for each "Package Version" line of PACKAGES, the newest
# newer version in DIR/<suite>_Packages of the SUITEs, as "Package Old New Suite Filename
# SHA256 Size", sorted by package
deb_upgrades() {
  local pl=$1 d=$2 s p v nv best bs line
  shift 2
  for s in "$@"; do
    awk -v s="$s" 'BEGIN {RS = ""; FS = "\n"; OFS = " "}
      { p = v = fn = sum = sz = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Package: /) p = substr($i, 10); else if ($i ~ /^Version: /) v = substr($i, 10)
          else if ($i ~ /^Filename: /) fn = substr($i, 11); else if ($i ~ /^SHA256: /) sum = substr($i, 9)
          else if ($i ~ /^Size: /) sz = substr($i, 7) }
        if (p != "" && v != "" && fn != "" && sum != "" && sz != "") print p, v, s, fn, sum, sz }' "$d/${s}_Packages"
  done >"$d/candidates"
  while read -r p v; do
    best=$v bs=
    while read -r _ nv line; do
      if dpkg --compare-versions "$nv" gt "$best"; then best=$nv bs=$line; fi
    done < <(awk -v p="$p" '$1 == p' "$d/candidates")
    [ -z "$bs" ] || echo "$p $v $best $bs"
  done <"$pl" | LC_ALL=C sort
}
# deb_upgrade ROOT OLD NEW: replace the unpacked package OLD.deb in ROOT by NEW.deb: the
# non-directories OLD ships and NEW does not are removed, then NEW is unpacked over ROOT;
# prints how many were removed
deb_upgrade() {
  local r=$1 e k=0
  while IFS= read -r e; do
    e=${e#./}
    if [ -L "$r/$e" ] || { [ -e "$r/$e" ] && [ ! -d "$r/$e" ]; }; then rm -f "$r/$e"; k=$((k + 1)); fi
  done < <(LC_ALL=C comm -23 <(dpkg-deb --fsys-tarfile "$2" | tar -t | LC_ALL=C sort) \
    <(dpkg-deb --fsys-tarfile "$3" | tar -t | LC_ALL=C sort) | grep -v '/$')
  deb_unpack "$r" "$3"
  echo $k
}
build_debarm64up() {
  local o=$1 p=debarm64up arch=arm64 side r t n s d=$W/index-debarm64up deb pk v nv st fn sum sz k gone=0 m
  need_root "the $p pair (debootstrap unpacks as root to keep the packages' owners)"
  for side in old new; do
    r=$W/rootfs-$p-$side
    STEP="$p: debootstrap --foreign ($side)"
    deb_foreign "$p/$side" "$arch" "$r" "$W/debootstrap-$p-$side.log"
    deb_foreign_packages "$r" >"$o/$side.packages"
    n=$(wc -l <"$o/$side.packages")
    if [ $side = new ]; then
      STEP="$p: the $UP_SUITES indexes"
      safe_rm "$d"
      mkdir -p "$d" "$W/debs-$p"
      for s in $UP_SUITES; do
        log "$p/new: $(suite_mirror "$s") $s main binary-$arch Packages"
        deb_index "$s" "$arch" "$d"
      done
      # shellcheck disable=SC2086 # UP_SUITES is a list
      deb_upgrades "$o/new.packages" "$d" $UP_SUITES >"$d/upgrades"
      [ -s "$d/upgrades" ] || die "$p: no package of the first stage has a newer version in $UP_SUITES (see $d)"
      log "$p/new: upgrading $(wc -l <"$d/upgrades") packages: $(cut -d' ' -f1 "$d/upgrades" | tr '\n' ' ')"
      STEP="$p: download and unpack the upgrades"
      while read -r pk v nv s fn sum sz; do
        deb=$W/debs-$p/${fn##*/}
        [ -f "$deb" ] && [ "$(sha256sum <"$deb" | cut -c1-64)" = "$sum" ] || fetch "$(suite_mirror "$s")/$fn" "$deb"
        [ "$(stat -c %s "$deb")" = "$sz" ] && [ "$(sha256sum <"$deb" | cut -c1-64)" = "$sum" ] ||
          die "$(suite_mirror "$s")/$fn does not match the $s Packages index (sha256 $sum, $sz bytes)"
        [ "$(dpkg-deb --show --showformat='${Package} ${Version}' "$deb")" = "$pk $nv" ] || die "$deb is not $pk $nv"
        st=$(awk -v p="$pk" '$1 == p {print $2}' "$r/debootstrap/debpaths")
        [ -n "$st" ] && [ -f "$r$st" ] || die "$p: no .deb for $pk in $r/debootstrap/debpaths"
        k=$(deb_upgrade "$r" "$r$st" "$deb")
        gone=$((gone + k))
        echo "upgrade: $pk $v -> $nv from $(suite_mirror "$s") $s ($fn, sha256 $sum)$([ "$k" = 0 ] || echo ", $k files of $v removed")" >>"$d/recipe"
      done <"$d/upgrades"
      awk 'NR == FNR {nv[$1] = $3; next} {print $1, ($1 in nv ? nv[$1] : $2)}' "$d/upgrades" "$o/new.packages" >"$d/packages"
      mv "$d/packages" "$o/new.packages"
      cp "$d"/*_InRelease "$r/var/lib/apt/lists/" # for newest_release; clean_rootfs removes them
    fi
    STEP="$p: tar ($side)"
    t=$(newest_release "$r")
    deb_foreign_tar "$r" "$o/$side.tar" "$t"
    if [ $side = old ]; then
      echo "old: debootstrap --arch=$arch --foreign --variant=minbase $SUITE $MIRROR ($n packages unpacked, no second stage; debarm64's old side); /debootstrap and the .debs removed, cleaned like the os pair; mtimes clamped to @$t (newest InRelease Date); real owners"
    else
      m=""
      for s in $UP_SUITES; do m+="${m:+, }$(suite_mirror "$s") $s"; done
      echo "new: debootstrap --arch=$arch --foreign --variant=minbase $SUITE $MIRROR ($n packages unpacked, no second stage), then the $(wc -l <"$d/upgrades") of them with a newer version (dpkg --compare-versions) in main/binary-$arch of $m (InRelease checked with gpgv against $KEYRING, Packages.xz against its sha256 there, each .deb against the Packages sha256 and size) unpacked over it with dpkg-deb --fsys-tarfile | tar --keep-directory-symlink, after removing the files the old versions shipped and the new do not ($gone); /debootstrap and the .debs removed, cleaned like the os pair; mtimes clamped to @$t (newest InRelease Date); real owners"
      cat "$d/recipe"
      safe_rm "$d"
    fi >>"$o/RECIPE.txt"
    safe_rm "$r"
  done
  {
    echo "tar: GNU tar --sort=name --format=posix (pax, no atime/ctime) --numeric-owner --clamp-mtime"
    echo "image: one layer per side (a rebuilt base layer, like os and debarm64); the image config says amd64 like every corpus image"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ); drifts with $UP_SUITES. Package changes (< old, > new):"
    diff "$o/old.packages" "$o/new.packages" | grep '^[<>]' || true
  } >>"$o/RECIPE.txt"
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
# apt and python build on layers/os/old.tar: make os first when it is missing or stale,
# and rebuild them whenever os is rebuilt (their stamps name os/old's digest).
if [[ " ${todo[*]} " == *" os "* ]]; then
  for p in apt python; do
    if want_pair $p && [[ " ${todo[*]} " != *" $p "* ]]; then todo+=("$p"); fi
  done
elif [[ " ${todo[*]} " == *" apt "* || " ${todo[*]} " == *" python "* ]] && ! cached os; then
  log "os: needed by apt/python and not cached; building it first"
  todo=(os "${todo[@]}")
fi

if [ ${#todo[@]} -gt 0 ]; then
  STEP="tools"
  tar --version 2>/dev/null | grep -q 'GNU tar' || die "need GNU tar (for --sort=name)"
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi
  command -v go >/dev/null || die "need a Go >= 1.21 binary on PATH (only for 'go mod download')"
  pk=()
  command -v unzip >/dev/null || pk+=(unzip)
  if [[ " ${todo[*]} " == *" os "* || " ${todo[*]} " == *" debarm64 "* || " ${todo[*]} " == *" debarm64up "* ]]; then
    command -v debootstrap >/dev/null || pk+=(debootstrap)
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || pk+=(debian-archive-keyring)
  fi
  if [[ " ${todo[*]} " == *" debarm64up "* ]]; then
    command -v curl >/dev/null || pk+=(curl)
    command -v gpgv >/dev/null || pk+=(gpgv)
    command -v xz >/dev/null || pk+=(xz-utils)
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
