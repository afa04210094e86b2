#!/usr/bin/env bash
# `make test`: start the services the suite needs, run it, and stop only what this script started.
set -uo pipefail
cd "$(dirname "$0")/.."
fs=.venv/bin/fraudstream

if $fs services status >/dev/null 2>&1; then started_here=no; else started_here=yes; fi
$fs services up || exit 1
$fs topics create >/dev/null && $fs db init >/dev/null || exit 1

.venv/bin/pytest "$@"
status=$?

if [ "$started_here" = yes ]; then
  $fs services down
fi
exit $status
