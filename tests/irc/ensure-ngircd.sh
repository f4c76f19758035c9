#!/usr/bin/env bash
# Prints the path of the ngircd binary, installing Debian's ngircd package first if missing.
# Safe to run concurrently.
set -euo pipefail
find_ngircd() { command -v ngircd 2>/dev/null || { [ -x /usr/sbin/ngircd ] && echo /usr/sbin/ngircd; }; }
if path=$(find_ngircd); then echo "$path"; exit 0; fi
lock="${XDG_CACHE_HOME:-$HOME/.cache}/bridgekit/ngircd-install.lock"
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock 9
if ! path=$(find_ngircd); then
  echo "ngircd is not installed; installing Debian's ngircd package" >&2
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
  $sudo apt-get install -y -qq --no-install-recommends ngircd >&2 || status=$?
  [ -n "$made_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d
  [ "$status" -eq 0 ] || exit "$status"
  path=$(find_ngircd)
fi
echo "$path"
