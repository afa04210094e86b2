#!/usr/bin/env bash
# Docker for `compose.yaml` and its test: Debian's engine (docker.io), Compose v1 (docker-compose, the
# only Compose Debian ships) and debootstrap (the base image is built here from Debian packages, see
# scripts/docker-base-image.sh). Installs only what is missing (needs root for that), then starts the
# daemon if none answers. Exit status 3 means "no Docker daemon can run here" (the compose test skips
# on it and says why); anything else non-zero is an error to fix.
set -euo pipefail

log=${FRAUDSTREAM_DOCKERD_LOG:-/var/log/fraudstream-dockerd.log}

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]}; install them (sudo apt-get install ${need[*]}) and rerun" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "no Docker daemon answers and only root can start one: start it (sudo systemctl start docker)" >&2
  exit 3
fi
nice=${FRAUDSTREAM_DOCKERD_NICE:-0}
echo "starting dockerd (log: $log, nice $nice)"
# A daemon of its own session, so it outlives this script and the shell that ran it. With a niceness
# (`make test` asks for 10), its builds and containers yield the CPU to everything else on the machine.
setsid nohup nice -n "$nice" dockerd >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  if ! kill -0 $! 2>/dev/null; then
    break
  fi
  sleep 1
done
echo "dockerd did not start; its last log lines ($log):" >&2
tail -n 20 "$log" >&2 || true
exit 3
