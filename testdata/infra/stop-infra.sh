#!/usr/bin/env bash
# stop-infra.sh - stop the daemons start-infra.sh started, and nothing else: only the PIDs
# recorded in $INFRA/pids/*.pid are signalled, each after checking that the process still
# runs the expected executable (a recycled PID is left alone).
# Containers/tasks started through *our* dockerd/containerd are killed first so no runc
# shims outlive their daemon.
#   INFRA    state directory (default /tmp/skiff-infra, as start-infra.sh)
#   PURGE=1  also delete the state (images, containerd content, registry blobs)
set -uo pipefail
INFRA=${INFRA:-/tmp/skiff-infra}
PIDS=$INFRA/pids
log() { printf '[stop-infra %s] %s\n' "$(date +%T)" "$*" >&2; }

[ -d "$INFRA" ] || { log "$INFRA does not exist; nothing to stop"; exit 0; }
exec 9>"$INFRA/.lock"
flock 9

declare -A BIN=([dockerd]=dockerd [containerd]=containerd [registry]=docker-registry [docker28]=dockerd [containerd2]=containerd [postgres]=postgres)
declare -A SOCK=([containerd]=$INFRA/containerd/containerd.sock [containerd2]=$INFRA/containerd2/containerd.sock
  [dockerd]=$INFRA/docker.sock [docker28]=$INFRA/docker28.sock)
SKIFF_TOOLS=${SKIFF_TOOLS:-$HOME/.cache/skiff/tools}
CTR2=$SKIFF_TOOLS/containerd-2.4.2/ctr
export CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1

# containerd leaves runc shims (and their containers) running after it exits.
cleanup_containerd_tasks() {
  local a=${SOCK[$1]} ns t ctr=ctr
  [ -S "$a" ] || return 0
  [ "$1" = containerd2 ] && [ -x "$CTR2" ] && ctr=$CTR2
  for ns in $($ctr -a "$a" namespaces ls -q 2>/dev/null); do
    for t in $($ctr -a "$a" -n "$ns" tasks ls -q 2>/dev/null); do
      log "killing containerd task $ns/$t"
      $ctr -a "$a" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
      for _ in $(seq 1 20); do
        $ctr -a "$a" -n "$ns" tasks delete "$t" >/dev/null 2>&1 && break
        sleep 0.25
      done
    done
  done
}

# dockerd would give each running container a 10 s stop timeout; kill them first.
kill_docker_containers() {
  local s=${SOCK[$1]} ids
  [ -S "$s" ] || return 0
  ids=$(docker -H "unix://$s" ps -q 2>/dev/null) || return 0
  if [ -n "$ids" ]; then
    log "killing docker containers: $(echo $ids)"
    docker -H "unix://$s" kill $ids >/dev/null 2>&1 || true
  fi
  return 0
}

stop_one() {
  local name=$1 f=$PIDS/$1.pid pid exe
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if [ ! -d "/proc/$pid" ]; then
    log "$name (pid $pid) not running"
    rm -f "$f"
    return 0
  fi
  exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null || true)
  if [ "$exe" != "${BIN[$name]}" ]; then
    log "pid $pid is '$exe', not ${BIN[$name]}: not touching it"
    rm -f "$f"
    return 0
  fi
  case $name in
    containerd | containerd2) cleanup_containerd_tasks "$name" ;;
    dockerd | docker28) kill_docker_containers "$name" ;;
  esac
  log "stopping $name pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    [ -d "/proc/$pid" ] || break
    sleep 0.25
  done
  if [ -d "/proc/$pid" ]; then
    log "$name pid $pid ignored TERM for 15 s; KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$f"
}

# docker28 runs on containerd2: it stops first.
for n in postgres registry docker28 containerd2 containerd dockerd; do stop_one "$n"; done
rm -f "$INFRA/docker.sock" "$INFRA/docker-exec/dockerd.pid" "$INFRA/docker28.sock" "$INFRA/docker28/exec/dockerd.pid"
if [ "${PURGE:-0}" = 1 ]; then
  log "purging state under $INFRA"
  rm -rf "$INFRA/docker" "$INFRA/docker-exec" "$INFRA/containerd/root" "$INFRA/containerd/state" \
    "$INFRA/registry/data" "$INFRA/docker28" "$INFRA/containerd2/root" "$INFRA/containerd2/state" "$INFRA/postgres" "$INFRA/env.sh"
fi
log "done"
