#!/usr/bin/env bash
# Debian packages the project needs: a JDK for Kafka and Spark, Maven for their jars, PostgreSQL's server,
# kcat and psql for checks by independent clients, Prometheus for the pipeline-health dashboard, Chromium for
# the console's browser tests (Playwright drives Debian's build: no browser download), Node.js and npm for
# TimescaleDB-in-PGlite (tools/pglite-timescale), which the TimescaleDB flavour's tests run against. Installs
# only what is missing; needs root for that.
set -euo pipefail

need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
command -v kcat >/dev/null || need+=(kcat)
command -v setpriv >/dev/null || need+=(util-linux)
command -v prometheus >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}; install them (sudo apt-get install ${need[*]}) and rerun" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
