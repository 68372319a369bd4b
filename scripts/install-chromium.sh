#!/usr/bin/env bash
# Debian's chromium for the browser test (Playwright drives it; never `playwright install`).
# Another apt-get or dpkg running meanwhile (an unattended upgrade, another install) holds the
# package manager's lock: wait for it, up to 10 minutes, instead of failing.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
WAIT=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${WAIT[@]}" update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${WAIT[@]}" install -y -q chromium
