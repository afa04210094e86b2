#!/bin/bash
# Runs once, on an empty data directory, as the superuser POSTGRES_USER (fraudstream_admin), from the image's
# entrypoint (the official images and deploy/docker/postgres alike): the application role `fraudstream`,
# not a superuser, with the password FRAUDSTREAM_APP_PASSWORD, made owner of the project database; and the
# timescaledb extension in it when the server has one (creating an extension takes a superuser). As the local
# stack does it (fraudstream/services/postgres.py): the superuser only sets up, everything else uses the role.
set -euo pipefail
: "${FRAUDSTREAM_APP_PASSWORD:?FRAUDSTREAM_APP_PASSWORD is not set (compose passes POSTGRES_PASSWORD)}"
psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set app_password="$FRAUDSTREAM_APP_PASSWORD" --set database="$POSTGRES_DB" <<'SQL'
CREATE ROLE fraudstream WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
ALTER DATABASE :"database" OWNER TO fraudstream;
ALTER SCHEMA public OWNER TO fraudstream;
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') AS timescale \gset
\if :timescale
CREATE EXTENSION IF NOT EXISTS timescaledb;
\endif
SQL
echo "application role fraudstream owns database $POSTGRES_DB"
