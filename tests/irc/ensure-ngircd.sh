#!/usr/bin/env bash
# Prints the path of the ngircd binary, installing Debian's ngircd package first if missing.
set -euo pipefail
find_ngircd() { command -v ngircd 2>/dev/null || { [ -x /usr/sbin/ngircd ] && echo /usr/sbin/ngircd; }; }
if ! path=$(find_ngircd); then
  "$(dirname "$0")/../apt-install.sh" ngircd
  path=$(find_ngircd)
fi
echo "$path"
