#!/usr/bin/env bash
# The echo bridge against a throwaway local Synapse, from nothing:
#   builds the bridge, installs Synapse from PyPI into ~/.cache/bridgekit (once, ~20 s),
#   writes a config and a registration, starts both, creates @alice and a room, invites
#   the bot, sends a message and shows the ghost's echo. Then keeps running until Ctrl-C,
#   so you can log in with any Matrix client and try it yourself.
# Environment: DEMO_DIR (default ./demo), DEMO_HS_PORT (8008), DEMO_AS_PORT (29333).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${DEMO_DIR:-$ROOT/demo}
HS_PORT=${DEMO_HS_PORT:-8008}
AS_PORT=${DEMO_AS_PORT:-29333}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

echo "==> building the echo bridge"
command -v make >/dev/null || "$ROOT/tests/apt-install.sh" make # builds jemalloc
cargo build --quiet --locked -p echo-bridge --manifest-path "$ROOT/Cargo.toml"
BRIDGE="$ROOT/target/debug/echo-bridge"

if [ ! -f "$WORK/config.yaml" ]; then
  sed -e "s/127.0.0.1:8008/127.0.0.1:$HS_PORT/" -e "s/127.0.0.1:29333/127.0.0.1:$AS_PORT/" \
    "$ROOT/bridges/echo/config.example.yaml" > "$WORK/config.yaml"
fi
if [ ! -f "$WORK/echo-registration.yaml" ]; then
  "$BRIDGE" --config "$WORK/config.yaml" generate-registration
fi

echo "==> starting Synapse on 127.0.0.1:$HS_PORT (log: $WORK/synapse/homeserver.log)"
"$ROOT/tests/synapse/start.sh" "$WORK/synapse" "$HS_PORT" "$WORK/echo-registration.yaml" >/dev/null

echo "==> starting the echo bridge on 127.0.0.1:$AS_PORT (log: $WORK/bridge.log)"
"$BRIDGE" --config "$WORK/config.yaml" >>"$WORK/bridge.log" 2>&1 &
BRIDGE_PID=$!
cleanup() {
  kill "$BRIDGE_PID" 2>/dev/null && wait "$BRIDGE_PID" 2>/dev/null || true
  "$ROOT/tests/synapse/stop.sh" "$WORK/synapse"
  echo "stopped. Data is kept in $WORK; delete it to start over."
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$AS_PORT/health/ready" >/dev/null && break
  kill -0 "$BRIDGE_PID" 2>/dev/null || { echo "the bridge exited:"; tail -n 5 "$WORK/bridge.log"; exit 1; }
  sleep 0.1
done

echo "==> chatting as @alice:localhost"
python3 "$ROOT/scripts/demo_client.py" "http://127.0.0.1:$HS_PORT" "@echobot:localhost"

cat <<EOM

It works. Try it yourself with any Matrix client (e.g. Element):
  homeserver:  http://127.0.0.1:$HS_PORT
  user:        alice      password: alice-password
Open the room "Echo demo" (or create one and invite @echobot:localhost) and write:
a ghost answers; edit or delete your message and the echo follows.
Press Ctrl-C to stop.
EOM
wait "$BRIDGE_PID"
