#!/usr/bin/env bash
# Prints the directory holding PostgreSQL's server binaries (initdb, postgres), installing
# Debian's postgresql package first if no server is on the machine.
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

if ! bindir=$(find_bindir); then
  "$(dirname "$0")/../apt-install.sh" postgresql
  bindir=$(find_bindir)
fi
echo "$bindir"
