#!/usr/bin/env bash
# Make sure a Docker engine answers: exit 0 at once when `docker info` works,
# otherwise start dockerd in the background (no systemd needed) and wait for it.
#
# usage: scripts/start-dockerd.sh
# environment:
#   FLEET_DOCKERD_ARGS  flags for dockerd (default: --bridge=none --iptables=false
#                       --ip-forward=false: the fleet uses host networking only, so
#                       the engine needs no bridge, no NAT rules and no forwarding;
#                       plain dockerd works too where bridges and iptables do)
#   FLEET_DOCKERD_WAIT  seconds to wait for the engine (default 30)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
    "") ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
esac

engine_answers() {
    docker info >/dev/null 2>&1
}

command -v docker >/dev/null 2>&1 && engine_answers && {
    log "docker engine is running"
    exit 0
}
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    die "Docker is not installed (no docker/dockerd on PATH); run scripts/install-deps.sh --with-docker"
fi

wait_s="${FLEET_DOCKERD_WAIT:-30}"
read -r -a dockerd_args <<<"${FLEET_DOCKERD_ARGS:---bridge=none --iptables=false --ip-forward=false}"
log_dir="$(fleet_home)/logs"
mkdir -p "$log_dir"
log_file="$log_dir/dockerd.log"

# A dockerd that is still starting owns the pid file: wait for it rather than
# start a second one that would fail on the same socket.
pid=""
if [ -r /var/run/docker.pid ]; then
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        log "dockerd (pid $pid) is running but not answering yet; waiting"
    else
        pid=""
    fi
fi
if [ -z "$pid" ]; then
    log "starting dockerd ${dockerd_args[*]} (log: $log_file)"
    printf '\n--- %s: start-dockerd.sh runs dockerd %s\n' "$(date -u +%FT%TZ)" "${dockerd_args[*]}" >>"$log_file"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    # setsid: the engine outlives this script and the shell or test that ran it.
    "${sudo_cmd[@]}" setsid nohup dockerd "${dockerd_args[@]}" >>"$log_file" 2>&1 </dev/null &
    pid=$!
fi

deadline=$((SECONDS + wait_s))
until engine_answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 20 "$log_file" >&2 || true
        die "docker engine did not answer within ${wait_s}s (see $log_file)"
    fi
    if ! kill -0 "$pid" 2>/dev/null && ! pgrep -x dockerd >/dev/null 2>&1; then
        tail -n 20 "$log_file" >&2 || true
        die "dockerd exited while starting (see $log_file)"
    fi
    sleep 0.5
done
log "docker engine is running ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
