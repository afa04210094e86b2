#!/usr/bin/env bash
# `make test`: start the services the suite needs, run it, and stop only what was not running before
# (the Spark cluster is started by the Spark tests' own fixture, and stopped here too).
set -uo pipefail
cd "$(dirname "$0")/.."
fs=.venv/bin/fraudstream
running() {
  .venv/bin/python -c "from fraudstream.config import get_settings; from fraudstream.services import manager
print(' '.join(s.name for s in manager.status(get_settings()) if s.healthy))"
}

before=" $(running) "
$fs services up || exit 1
$fs topics create >/dev/null && $fs db init >/dev/null || exit 1

.venv/bin/pytest "$@"
status=$?

for name in $(running); do
  case "$before" in *" $name "*) ;; *) $fs services down "$name" ;; esac
done
exit $status
