#!/usr/bin/env bash
# Installs matrix-nio with end-to-end encryption (the vodozemac wheel, no compiler) into a
# cache venv once, and prints its python. The encrypted-room tests drive it through driver.py.
set -euo pipefail
VENV=${NIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bridgekit/nio-venv}
mkdir -p "$(dirname "$VENV")"
(
  flock 9
  if ! "$VENV/bin/python" -c "import nio.crypto" 2>/dev/null; then
    echo "[nio] installing matrix-nio[e2e] into $VENV (once; ~15 s)" >&2
    rm -rf "$VENV"
    "${NIO_PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "matrix-nio[e2e]==0.26.0" >&2
  fi
) 9>"$VENV.lock"
echo "$VENV/bin/python"
