#!/usr/bin/env bash
# start-infra.sh - install (if missing) and start the local container infrastructure that
# skiff's integration tests and demos talk to. Everything is private to this machine
# (unix sockets and a loopback TCP port) and all state lives under $INFRA:
#
#   dockerd     Debian docker.io (20.10), storage driver vfs, no iptables/bridge
#               -> unix://$INFRA/docker.sock
#   containerd  Debian containerd (1.6), CRI plugin disabled
#               -> $INFRA/containerd/containerd.sock
#   registry    Debian docker-registry (CNCF distribution 2.8), plain HTTP
#               -> http://$REGISTRY_ADDR  (default 127.0.0.1:5000)
#   containerd2 containerd 2.4.2 built from the Go module proxy (build-engines.sh, cached in
#               $SKIFF_TOOLS), CRI disabled -> $INFRA/containerd2/containerd.sock
#   docker28    Docker Engine 28.5.2 dockerd built from the module cache (build-engines.sh),
#               containerd image store on ("containerd-snapshotter": true), snapshotter
#               native, on containerd2 (so it needs containerd2) -> unix://$INFRA/docker28.sock
#   postgres    Debian postgresql (15), run as the postgres user, trust auth on loopback,
#               database "skiff" owned by role "skiff" -> 127.0.0.1:$PG_PORT (default 55432)
#
# Writes $INFRA/env.sh exporting DOCKER_HOST, CONTAINERD_ADDRESS and REGISTRY (host:port), and
# for the modern engines DOCKER28_HOST, CONTAINERD2_ADDRESS and CTR2 (the ctr 2.4.2 to use
# with it, e.g. SKIFF_CTR=$CTR2), and SKIFF_POSTGRES (a postgres:// URL); source it: `. /tmp/skiff-infra/env.sh`.
#
# Idempotent: a daemon whose recorded PID is alive, runs the expected binary and answers
# its readiness probe is left alone. PIDs are recorded in $INFRA/pids/<name>.pid and
# stop-infra.sh signals exactly those PIDs. Needs root (dockerd, apt-get).
#
# Environment knobs:
#   INFRA                  state directory                (default /tmp/skiff-infra)
#   REGISTRY_ADDR          registry listen host:port      (default 127.0.0.1:5000)
#   DOCKER_STORAGE_DRIVER  vfs | overlay2                 (default vfs; works everywhere)
#   COMPONENTS             subset of "docker containerd registry containerd2 docker28 postgres"
#                          (default: all six)
#   PG_PORT                postgres loopback port         (default 55432)
#   DOCKER28_STORAGE_DRIVER containerd snapshotter of docker28: native | overlayfs (default native)
#   SKIFF_TOOLS            where build-engines.sh caches its builds (default ~/.cache/skiff/tools)
#   SKIP_INSTALL=1         never call apt-get or build; fail if a binary is missing
set -euo pipefail

INFRA=${INFRA:-/tmp/skiff-infra}
REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}
DOCKER_STORAGE_DRIVER=${DOCKER_STORAGE_DRIVER:-vfs}
COMPONENTS=${COMPONENTS:-docker containerd registry containerd2 docker28 postgres}
PG_PORT=${PG_PORT:-55432}
DOCKER28_STORAGE_DRIVER=${DOCKER28_STORAGE_DRIVER:-native}
SKIFF_TOOLS=${SKIFF_TOOLS:-$HOME/.cache/skiff/tools}
CONTAINERD2_DIR=$SKIFF_TOOLS/containerd-2.4.2
DOCKER28_DIR=$SKIFF_TOOLS/docker-28.5.2
HERE=$(cd "$(dirname "$0")" && pwd)
PIDS=$INFRA/pids
LOGS=$INFRA/logs

log() { printf '[start-infra %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
has() { case " $COMPONENTS " in *" $1 "*) return 0 ;; esac; return 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

for c in $COMPONENTS; do
  case $c in docker | containerd | registry | containerd2 | docker28 | postgres) ;; *) die "unknown component '$c' in COMPONENTS (want docker, containerd, registry, containerd2, docker28, postgres)" ;; esac
done
if has docker28 && ! has containerd2; then die "COMPONENTS: docker28 runs on containerd2; add containerd2"; fi
case $REGISTRY_ADDR in
  *:*) REG_HOST=${REGISTRY_ADDR%:*} REG_PORT=${REGISTRY_ADDR##*:} ;;
  *) die "REGISTRY_ADDR='$REGISTRY_ADDR' must be host:port, e.g. 127.0.0.1:5000" ;;
esac
[[ $REG_PORT =~ ^[0-9]+$ ]] && [ "$REG_PORT" -ge 1 ] && [ "$REG_PORT" -le 65535 ] ||
  die "REGISTRY_ADDR='$REGISTRY_ADDR': port '$REG_PORT' is not a number in 1..65535"
[ "$(id -u)" = 0 ] || die "must run as root (dockerd, containerd and apt-get need it)"

mkdir -p "$INFRA" "$PIDS" "$LOGS"
# One start/stop at a time per $INFRA (tests may call this concurrently).
exec 9>"$INFRA/.lock"
flock 9

# ---------------------------------------------------------------- install
# pg_bin -> the newest Debian PostgreSQL server's bin directory
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/postgres" ] && echo "$d"
}

install_pkgs() {
  local want=()
  if has docker; then
    command -v dockerd >/dev/null || want+=(docker.io)
    command -v docker >/dev/null || want+=(docker.io)
  fi
  if has containerd; then
    command -v containerd >/dev/null || want+=(containerd)
    command -v ctr >/dev/null || want+=(containerd)
  fi
  if has registry; then command -v docker-registry >/dev/null || want+=(docker-registry); fi
  # docker28 needs a docker CLI for its readiness probe and runc to run containers: Debian's.
  if has docker28; then
    command -v docker >/dev/null || want+=(docker.io)
    command -v runc >/dev/null || want+=(runc)
  fi
  if has postgres; then pg_bin >/dev/null || want+=(postgresql); fi
  command -v curl >/dev/null || want+=(curl)
  command -v flock >/dev/null || want+=(util-linux)
  command -v setpriv >/dev/null || want+=(util-linux)
  if [ ${#want[@]} -eq 0 ]; then log "packages already installed"; return 0; fi
  mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
  [ "${SKIP_INSTALL:-0}" = 1 ] && die "SKIP_INSTALL=1 but missing packages: ${want[*]}"
  command -v apt-get >/dev/null || die "missing ${want[*]} and no apt-get to install them (Debian/Ubuntu only)"
  log "apt-get install ${want[*]}"
  # Keep dpkg postinst scripts from starting system-wide services.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${want[@]}"
  } >"$LOGS/apt.log" 2>&1 || rc=$?
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ $rc != 0 ]; then
    tail -30 "$LOGS/apt.log" >&2
    die "apt-get failed (exit $rc); full log in $LOGS/apt.log"
  fi
}

# build_engines -> the cached containerd 2.4.2 and dockerd 28.5.2 (built once, ~5 min each)
build_engines() {
  local want=()
  if has containerd2 && [ ! -e "$CONTAINERD2_DIR/.complete" ]; then want+=(containerd2); fi
  if has docker28 && [ ! -e "$DOCKER28_DIR/.complete" ]; then want+=(docker28); fi
  if [ ${#want[@]} -eq 0 ]; then
    if has containerd2 || has docker28; then log "engine builds cached in $SKIFF_TOOLS"; fi
    return 0
  fi
  [ "${SKIP_INSTALL:-0}" = 1 ] && die "SKIP_INSTALL=1 but not built: ${want[*]} (run $HERE/build-engines.sh)"
  log "building ${want[*]} (once; cached in $SKIFF_TOOLS; log $LOGS/build-engines.log)"
  SKIFF_TOOLS=$SKIFF_TOOLS ENGINES="${want[*]}" bash "$HERE/build-engines.sh" >"$LOGS/build-engines.log" 2>&1 || {
    tail -30 "$LOGS/build-engines.log" >&2
    die "build-engines.sh failed; full log in $LOGS/build-engines.log"
  }
}

# ---------------------------------------------------------------- daemons
# running NAME BINARY -> 0 if pids/NAME.pid holds a live process whose executable is BINARY
# (a name on PATH or an absolute path; the executables' base names are compared)
running() {
  local f=$PIDS/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -d "/proc/$pid" ] || return 1
  [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "$(basename "$2")" ]
}

# start NAME BINARY READY_CMD -- ARGS...
start() {
  local name=$1 bin=$2 ready=$3 t0
  shift 4
  t0=$(now_ms)
  if running "$name" "$bin"; then
    if eval "$ready" >/dev/null 2>&1; then
      log "$name already running (pid $(cat "$PIDS/$name.pid"))"
      return 0
    fi
    log "$name pid $(cat "$PIDS/$name.pid") alive but not ready yet; waiting"
  else
    rm -f "$PIDS/$name.pid"
    command -v "$bin" >/dev/null || die "$bin not found on PATH"
    # RUNAS: a command prefix that execs bin as another user (setpriv), so $! is bin's PID.
    # shellcheck disable=SC2086
    nohup ${RUNAS:-} "$bin" "$@" >"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
    echo $! >"$PIDS/$name.pid"
    log "started $name pid $! (log $LOGS/$name.log)"
  fi
  for _ in $(seq 1 120); do
    if eval "$ready" >/dev/null 2>&1; then
      log "$name ready in $(($(now_ms) - t0)) ms"
      return 0
    fi
    if ! running "$name" "$bin"; then
      tail -20 "$LOGS/$name.log" >&2
      die "$name exited during startup (log above, full log $LOGS/$name.log)"
    fi
    sleep 0.25
  done
  tail -20 "$LOGS/$name.log" >&2
  die "$name not ready after 30 s (log $LOGS/$name.log)"
}

start_docker() {
  mkdir -p "$INFRA/docker" "$INFRA/docker-exec"
  # A stale pidfile written by dockerd itself blocks a restart.
  running dockerd dockerd || rm -f "$INFRA/docker-exec/dockerd.pid" "$INFRA/docker.sock"
  start dockerd dockerd "docker -H unix://$INFRA/docker.sock version" -- \
    --storage-driver="$DOCKER_STORAGE_DRIVER" \
    --data-root "$INFRA/docker" --exec-root "$INFRA/docker-exec" \
    --pidfile "$INFRA/docker-exec/dockerd.pid" \
    --host "unix://$INFRA/docker.sock" \
    --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false
}

start_containerd() {
  local d=$INFRA/containerd
  mkdir -p "$d/root" "$d/state"
  cat >"$d/config.toml" <<EOT
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
[metrics]
  address = ""
EOT
  running containerd containerd || rm -f "$d/containerd.sock" "$d/containerd.sock.ttrpc" "$d/debug.sock"
  start containerd containerd "ctr -a $d/containerd.sock version" -- --config "$d/config.toml"
}

start_containerd2() {
  local d=$INFRA/containerd2
  mkdir -p "$d/root" "$d/state"
  cat >"$d/config.toml" <<EOT
version = 3
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
[metrics]
  address = ""
EOT
  running containerd2 "$CONTAINERD2_DIR/containerd" || rm -f "$d/containerd.sock" "$d/containerd.sock.ttrpc" "$d/debug.sock"
  # Its shim must be the 2.4.2 one: first on PATH for the daemon.
  PATH=$CONTAINERD2_DIR:$PATH start containerd2 "$CONTAINERD2_DIR/containerd" \
    "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1 $CONTAINERD2_DIR/ctr -a $d/containerd.sock version" -- --config "$d/config.toml"
}

start_docker28() {
  local d=$INFRA/docker28
  mkdir -p "$d/root" "$d/exec"
  # The containerd image store; the snapshotter is the storage driver (vfs is no containerd
  # snapshotter name). No docker-proxy is installed: no userland proxy.
  cat >"$d/daemon.json" <<EOT
{"features": {"containerd-snapshotter": true}}
EOT
  running docker28 "$DOCKER28_DIR/dockerd" || rm -f "$d/exec/dockerd.pid" "$INFRA/docker28.sock"
  start docker28 "$DOCKER28_DIR/dockerd" "docker -H unix://$INFRA/docker28.sock version" -- \
    --config-file "$d/daemon.json" \
    --containerd "$INFRA/containerd2/containerd.sock" \
    --storage-driver="$DOCKER28_STORAGE_DRIVER" \
    --data-root "$d/root" --exec-root "$d/exec" \
    --pidfile "$d/exec/dockerd.pid" \
    --host "unix://$INFRA/docker28.sock" \
    --userland-proxy=false \
    --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false
}

# port_listener -> description of whoever listens on $REG_PORT (empty if nobody)
port_listener() {
  if command -v ss >/dev/null; then
    ss -Hltnp "sport = :$REG_PORT" 2>/dev/null | awk '{print $4, ($6 == "" ? "(owner process not visible)" : $6)}' | head -3
  elif (exec 3<>"/dev/tcp/$REG_HOST/$REG_PORT") 2>/dev/null; then
    echo "(unknown process)"
  fi
}

start_registry() {
  local d=$INFRA/registry
  mkdir -p "$d/data"
  if running registry docker-registry; then
    local was
    was=$(cat "$d/addr" 2>/dev/null || true)
    [ "$was" = "$REGISTRY_ADDR" ] ||
      die "our registry (pid $(cat "$PIDS/registry.pid")) already serves '$was', not REGISTRY_ADDR=$REGISTRY_ADDR; run stop-infra.sh first"
  else
    local who
    who=$(port_listener)
    [ -z "$who" ] ||
      die "port $REG_PORT (REGISTRY_ADDR=$REGISTRY_ADDR) is already taken by something else: $who; choose another with REGISTRY_ADDR=127.0.0.1:PORT"
  fi
  cat >"$d/config.yml" <<EOT
version: 0.1
log:
  level: info
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOT
  echo "$REGISTRY_ADDR" >"$d/addr"
  start registry docker-registry "curl -sf http://$REGISTRY_ADDR/v2/" -- serve "$d/config.yml"
}

# The postgres server refuses to run as root: its data directory and socket belong to the
# postgres user (created by Debian's package), and it runs through setpriv.
start_postgres() {
  local d=$INFRA/postgres bin as
  bin=$(pg_bin) || die "no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)"
  id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  mkdir -p "$d"
  chown postgres: "$d"
  chmod 0700 "$d"
  as="setpriv --reuid=postgres --regid=$(id -g postgres) --init-groups"
  if [ ! -s "$d/data/PG_VERSION" ]; then
    log "initdb $d/data (role skiff, trust on loopback)"
    rm -rf "$d/data"
    # shellcheck disable=SC2086
    $as "$bin/initdb" -D "$d/data" -U skiff -A trust -E UTF8 --no-sync >"$LOGS/initdb.log" 2>&1 || {
      tail -20 "$LOGS/initdb.log" >&2
      die "initdb failed (log $LOGS/initdb.log)"
    }
  fi
  RUNAS=$as start postgres "$bin/postgres" "$bin/pg_isready -q -h 127.0.0.1 -p $PG_PORT" -- \
    -D "$d/data" -c listen_addresses=127.0.0.1 -p "$PG_PORT" -k "$d" -c max_connections=200
  if ! "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U skiff -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'skiff'" | grep -qx 1; then
    "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U skiff skiff || die "createdb skiff failed"
    log "created database skiff"
  fi
}

write_env() {
  local tmp=$INFRA/env.sh.tmp
  {
    echo "# generated by start-infra.sh; source it: . $INFRA/env.sh"
    echo "export INFRA=$INFRA"
    has docker && echo "export DOCKER_HOST=unix://$INFRA/docker.sock"
    has containerd && echo "export CONTAINERD_ADDRESS=$INFRA/containerd/containerd.sock"
    has registry && echo "export REGISTRY=$REGISTRY_ADDR"
    if has containerd2; then
      echo "export CONTAINERD2_ADDRESS=$INFRA/containerd2/containerd.sock"
      echo "export CTR2=$CONTAINERD2_DIR/ctr"
    fi
    has docker28 && echo "export DOCKER28_HOST=unix://$INFRA/docker28.sock"
    has postgres && echo "export SKIFF_POSTGRES=postgres://skiff@127.0.0.1:$PG_PORT/skiff?sslmode=disable"
    true
  } >"$tmp"
  mv "$tmp" "$INFRA/env.sh"
}

# ---------------------------------------------------------------- main
T0=$(now_ms)
install_pkgs
build_engines
T1=$(now_ms)
has docker && start_docker
has containerd && start_containerd
has registry && start_registry
has containerd2 && start_containerd2
has docker28 && start_docker28
has postgres && start_postgres
write_env
log "install $(((T1 - T0) / 1000)).$(((T1 - T0) % 1000 / 100))s, start $((($(now_ms) - T1) / 1000)).$((($(now_ms) - T1) % 1000 / 100))s; pids: $(cd "$PIDS" && grep -H . ./*.pid 2>/dev/null | sed 's|^\./||; s|\.pid:|=|' | tr '\n' ' ')"
log "use: . $INFRA/env.sh"
