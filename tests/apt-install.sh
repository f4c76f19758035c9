#!/usr/bin/env bash
# Installs Debian packages for the tests, once, without starting their system services:
# no init system runs in CI, and the tests start their own servers. Safe to run
# concurrently (one install at a time, under a lock in the cache directory).
#   tests/apt-install.sh PACKAGE...
set -euo pipefail
lock="${XDG_CACHE_HOME:-$HOME/.cache}/bridgekit/apt-install.lock"
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian packages: $*" >&2
$sudo apt-get update -qq >&2 || true
# policy-rc.d answering 101 tells invoke-rc.d not to start what the packages install.
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
status=0
$sudo apt-get install -y -qq --no-install-recommends "$@" >&2 || status=$?
[ -n "$made_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d
exit "$status"
