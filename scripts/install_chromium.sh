#!/usr/bin/env bash
# The report's browser test needs a real headless Chromium (Debian's package).
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; } \
  || echo "warning: could not install chromium; the browser test of the report will be skipped" >&2
exit 0
