#!/usr/bin/env bash
# The slot store's PostgreSQL tests need a real server binary (Debian's package); the tests initdb and start their
# own cluster on a free loopback port (tests/_postgres.py), so nothing is configured or started here.
set -uo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get install -y -q postgresql >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q postgresql >/dev/null 2>&1; } \
  || echo "warning: could not install postgresql; the PostgreSQL slot-store tests will fail" >&2
exit 0
