#!/usr/bin/env bash
# Writes the variables compose.yaml needs into .env (or FILE) on first use: random passwords and a Kafka
# cluster id. Never changes a value already there (the database volume keeps its first password), only
# adds what is missing. --local-images also selects the images built here (deploy/docker/compose.local.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

local_images=0
file=.env
for argument in "$@"; do
  case "$argument" in
    --local-images) local_images=1 ;;
    -*) echo "usage: $0 [--local-images] [FILE]" >&2; exit 2 ;;
    *) file=$argument ;;
  esac
done
touch "$file"
chmod 600 "$file"

secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
cluster_id() { head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
add() {
  if ! grep -q "^$1=" "$file"; then
    printf '%s=%s\n' "$1" "$2" >>"$file"
    echo "$file: set $1"
  fi
}

add COMPOSE_PROJECT_NAME fraudstream
add POSTGRES_PASSWORD "$(secret)"
add POSTGRES_ADMIN_PASSWORD "$(secret)"
add GRAFANA_ADMIN_PASSWORD "$(secret)"
add CONSOLE_ADMIN_PASSWORD "$(secret)"
add KAFKA_CLUSTER_ID "$(cluster_id)"
if [ "$local_images" = 1 ]; then
  add COMPOSE_FILE compose.yaml:deploy/docker/compose.local.yaml
fi
