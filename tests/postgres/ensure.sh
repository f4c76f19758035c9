#!/usr/bin/env bash
# Prints the directory holding PostgreSQL's server binaries (initdb, postgres), installing
# Debian's postgresql package first if no server is on the machine. Safe to run concurrently.
set -euo pipefail

find_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$newest" ] && [ -x "$newest/initdb" ] && echo "$newest"
}

if bindir=$(find_bindir); then
  echo "$bindir"
  exit 0
fi

lock="${XDG_CACHE_HOME:-$HOME/.cache}/bridgekit/postgres-install.lock"
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9
if ! bindir=$(find_bindir); then
  echo "PostgreSQL is not installed; installing Debian's postgresql package" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2 || true
  # Keep the package from starting a system-wide server (no init system in CI, and the
  # tests start their own): policy-rc.d answering 101 tells invoke-rc.d to leave it off.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  status=0
  $sudo apt-get install -y -qq --no-install-recommends postgresql >&2 || status=$?
  [ -n "$made_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d
  [ "$status" -eq 0 ] || exit "$status"
  bindir=$(find_bindir)
fi
echo "$bindir"
