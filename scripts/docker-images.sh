#!/usr/bin/env bash
# Builds the project image (fraudstream:latest) and, with --local, the stand-ins that
# deploy/docker/compose.local.yaml runs instead of the official Kafka, TimescaleDB and Prometheus images.
# The base image is made from Debian's archive first when missing (scripts/docker-base-image.sh).
# Layers are cached: after the first build (about 10 minutes here), a source change rebuilds in seconds.
# Needs a running Docker daemon (scripts/install-docker.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

local_images=0
if [ "${1:-}" = --local ]; then local_images=1; fi
base=${BASE_IMAGE:-debian:bookworm-slim}
logs=${FRAUDSTREAM_STATE_DIR:-.fraudstream}/docker
mkdir -p "$logs"

scripts/docker-base-image.sh "$base"

# The builder trusts what this host trusts (TLS-intercepting proxies); build stages only.
trust=deploy/docker/build-trust
if [ "${FRAUDSTREAM_BUILD_TRUST:-1}" != 0 ]; then
  copy() { if [ -f "$1" ] && ! cmp -s "$1" "$2"; then cp "$1" "$2"; fi; }
  copy "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$trust/ca-certificates.crt"
  copy /etc/ssl/certs/java/cacerts "$trust/cacerts"
else
  rm -f "$trust/ca-certificates.crt" "$trust/cacerts"
fi

# Debian's engine has no buildx: the classic builder, unless BuildKit is really there.
if [ -z "${DOCKER_BUILDKIT:-}" ]; then
  if docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=1; else export DOCKER_BUILDKIT=0; fi
fi

build() {
  local tag=$1 dockerfile=$2 log
  log=$logs/build-${tag//[:\/]/-}.log
  local start=$SECONDS
  printf 'building %-30s ' "$tag"
  if ! docker build --build-arg "BASE_IMAGE=$base" -f "$dockerfile" -t "$tag" . >"$log" 2>&1; then
    echo "FAILED"
    echo "docker build of $tag failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  printf '%4d s  %s\n' $((SECONDS - start)) \
    "$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

build "${FRAUDSTREAM_IMAGE:-fraudstream:latest}" Dockerfile
if [ "$local_images" = 1 ]; then
  build fraudstream/kafka:local deploy/docker/kafka/Dockerfile
  build fraudstream/postgres:local deploy/docker/postgres/Dockerfile
  build fraudstream/prometheus:local deploy/docker/prometheus/Dockerfile
fi
