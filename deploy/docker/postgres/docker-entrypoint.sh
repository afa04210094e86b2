#!/bin/bash
# What the official postgres entrypoint does, for the stand-in image: on an empty PGDATA, initdb with
# POSTGRES_USER / POSTGRES_PASSWORD (password auth over TCP), create POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*; then run the server on every interface of the container. Arguments after
# "postgres" are passed to the server.
set -euo pipefail
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (no password-less database is started)}"
  initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [ "$database" != postgres ]; then
    echo "CREATE DATABASE \"$database\" OWNER \"$user\"" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "initialized $PGDATA (user $user, database $database)"
  # the init scripts, as the official entrypoint runs them: a server on the socket only (the healthcheck, over
  # TCP, waits for the real one), *.sh executed (sourced when not executable), *.sql through psql
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh) if [ -x "$script" ]; then POSTGRES_USER=$user POSTGRES_DB=$database "$script"; else . "$script"; fi ;;
      *.sql) psql -v ON_ERROR_STOP=1 -X -q --username "$user" --dbname "$database" -f "$script" ;;
      *) if [ -e "$script" ]; then echo "ignoring $script"; fi ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
if [ "${1:-postgres}" = postgres ]; then
  shift || true
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
