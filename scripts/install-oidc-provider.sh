#!/usr/bin/env bash
# The OpenID Connect provider the login browser test starts (tests/oidc: node's oidc-provider, from
# the npm registry, at the version package-lock.json pins). Needs Node.js 20+ and npm: Debian's
# nodejs and npm packages if the machine has neither.
set -euo pipefail
cd "$(dirname "$0")/../tests/oidc"
if [ -d node_modules/oidc-provider ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then exit 0; fi  # installed since the lock changed
if ! command -v npm >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  WAIT=(-o DPkg::Lock::Timeout=600)
  $SUDO apt-get "${WAIT[@]}" update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${WAIT[@]}" install -y -q nodejs npm
fi
npm ci --no-audit --no-fund --loglevel=error
