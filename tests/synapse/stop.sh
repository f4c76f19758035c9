#!/usr/bin/env bash
# Stop the Synapse started by tests/synapse/start.sh DIR (by its pid file only).
#   tests/synapse/stop.sh DIR        SYNAPSE_WIPE=1 also deletes DIR's database and media.
set -euo pipefail
DIR=${1:?usage: stop.sh DIR}
PIDF="$DIR/synapse.pid"
if [ -f "$PIDF" ] && pid=$(cat "$PIDF") && kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "[synapse] pid $pid ignored SIGTERM, sending SIGKILL" >&2; kill -KILL "$pid"; }
fi
rm -f "$PIDF"
if [ -n "${SYNAPSE_WIPE:-}" ]; then rm -rf "$DIR"/homeserver.db* "$DIR/media_store"; fi
