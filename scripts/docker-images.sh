#!/usr/bin/env bash
# Builds the project image (fraudstream:latest) and, with --local, the stand-ins that
# deploy/docker/compose.local.yaml runs instead of the official Kafka, TimescaleDB and Prometheus images.
# The base image is made from Debian's archive first when missing (scripts/docker-base-image.sh).
# What the host already resolved is handed to the builds (deploy/docker/prefetched/: the wheels of the
# pinned dependencies, pyspark's built from its sdist once; the Kafka and Spark jars), so a cold build
# downloads no jar and builds no wheel. Layers are cached: a source change rebuilds in seconds.
# Needs a running Docker daemon (scripts/install-docker.sh). Prints one line per image (seconds, size).
set -euo pipefail
cd "$(dirname "$0")/.."

local_images=0
if [ "${1:-}" = --local ]; then local_images=1; fi
base=${BASE_IMAGE:-debian:bookworm-slim}
logs=${FRAUDSTREAM_STATE_DIR:-.fraudstream}/docker
mkdir -p "$logs"

# BuildKit: a client with buildx, else Debian's engine client (docker.io 20.10 has BuildKit built in and
# needs no buildx); a newer client without buildx refuses DOCKER_BUILDKIT=1.
docker=docker
if ! docker buildx version >/dev/null 2>&1; then
  docker=/usr/bin/docker
  if ! "$docker" version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.10\.'; then
    echo "building needs BuildKit: install the buildx plugin (or Debian's docker.io client)" >&2
    exit 1
  fi
fi
export DOCKER_BUILDKIT=1

scripts/docker-base-image.sh "$base" &
base_pid=$!

# The builder trusts what this host trusts (TLS-intercepting proxies); build stages only.
trust=deploy/docker/build-trust
copy() { if [ -f "$1" ] && ! cmp -s "$1" "$2"; then cp "$1" "$2"; fi; }
if [ "${FRAUDSTREAM_BUILD_TRUST:-1}" != 0 ]; then
  copy "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$trust/ca-certificates.crt"
  copy /etc/ssl/certs/java/cacerts "$trust/cacerts"
else
  rm -f "$trust/ca-certificates.crt" "$trust/cacerts"
fi

# The host's resolutions, each stamped with the hash of what it was resolved from (the Dockerfiles compare).
# Needs the project's venv (make setup) on a Linux host with the image's Python (3.11); skipped otherwise,
# and the builds download for themselves.
prefetched=deploy/docker/prefetched
if [ "${FRAUDSTREAM_PREFETCH:-1}" != 0 ] && [ -x .venv/bin/python ] \
  && .venv/bin/python -c 'import sys; sys.exit(not (sys.platform == "linux" and sys.version_info[:2] == (3, 11)))'; then
  digest=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$prefetched/wheels/.requirements-sha256" 2>/dev/null)" != "$digest" ]; then
    start=$SECONDS
    rm -rf "$prefetched/wheels" "$prefetched/.wheels.partial"
    .venv/bin/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
      >"$logs/requirements.txt"
    if ! .venv/bin/pip wheel -q -c constraints.txt -r "$logs/requirements.txt" 'setuptools>=77' wheel \
        --wheel-dir "$prefetched/.wheels.partial" >"$logs/prefetch-wheels.log" 2>&1; then
      echo "pip wheel failed (the build will download instead); last lines of $logs/prefetch-wheels.log:" >&2
      tail -n 10 "$logs/prefetch-wheels.log" >&2
    else
      echo "$digest" >"$prefetched/.wheels.partial/.requirements-sha256"
      mv "$prefetched/.wheels.partial" "$prefetched/wheels"
      printf 'prefetched %-33s %4d s\n' "wheels" $((SECONDS - start))
    fi
  fi
  # Maven reads the host's repository (~/.m2), which the local services' resolution filled; a folder of
  # its own, so this never races the tests resolving into the state directory.
  .venv/bin/python -c "import sys; from pathlib import Path; from fraudstream.services.maven import resolve_jars
for name in ('spark', 'kafka'): resolve_jars(name, Path(sys.argv[1]))" "$prefetched/jars" \
    || echo "resolving the jars on the host failed (the builds will resolve them)" >&2
fi

wait "$base_pid"

build() {
  local tag=$1 dockerfile=$2 log start=$SECONDS
  log=$logs/build-${tag//[:\/]/-}.log
  if ! "$docker" build --progress=plain --build-arg "BASE_IMAGE=$base" -f "$dockerfile" -t "$tag" . >"$log" 2>&1; then
    echo "docker build of $tag failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
  printf 'built      %-33s %4d s  %s\n' "$tag" $((SECONDS - start)) \
    "$("$docker" image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

# The project image first (the Kafka stand-in reuses its Java layer), then the stand-ins side by side.
build "${FRAUDSTREAM_IMAGE:-fraudstream:latest}" Dockerfile
if [ "$local_images" = 1 ]; then
  pids=()
  build "${FRAUDSTREAM_LOCAL_PREFIX:-fraudstream}/kafka:local" deploy/docker/kafka/Dockerfile & pids+=($!)
  build "${FRAUDSTREAM_LOCAL_PREFIX:-fraudstream}/postgres:local" deploy/docker/postgres/Dockerfile & pids+=($!)
  build "${FRAUDSTREAM_LOCAL_PREFIX:-fraudstream}/prometheus:local" deploy/docker/prometheus/Dockerfile & pids+=($!)
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  exit $status
fi
