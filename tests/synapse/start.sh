#!/usr/bin/env bash
# Start a throwaway Synapse homeserver for end-to-end tests and the demo.
#
#   tests/synapse/start.sh DIR PORT [APPSERVICE_REGISTRATION.yaml ...]
#
# - Installs matrix-synapse from PyPI into a shared cache venv if it is not there yet
#   (default ${XDG_CACHE_HOME:-~/.cache}/bridgekit/synapse-venv; SYNAPSE_VENV=path to
#   choose another; SYNAPSE_VERSION=x.y.z pins it). A lock makes parallel installs safe.
# - Writes DIR/homeserver.yaml: server_name "localhost", SQLite, HTTP (no TLS)
#   on 127.0.0.1:PORT only, client API only (no federation listener), open
#   registration without verification, shared-secret registration, rate
#   limits raised, and the given appservice registration files.
# - Starts Synapse in the background (log: DIR/homeserver.log, pid: DIR/synapse.pid),
#   waits until /_matrix/client/versions answers, prints the base URL on stdout.
# Idempotent: if the same config is already running it only prints the URL;
# if the config or a registration file changed it restarts.
# SYNAPSE_FRESH=1 wipes the database first.  Needs curl.
# Stop with tests/synapse/stop.sh DIR.
set -euo pipefail

DIR=${1:?usage: start.sh DIR PORT [registration.yaml ...]}
PORT=${2:?usage: start.sh DIR PORT [registration.yaml ...]}
shift 2
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
VENV=${SYNAPSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bridgekit/synapse-venv}
SECRET=${SYNAPSE_SHARED_SECRET:-test_shared_secret}
URL="http://127.0.0.1:$PORT"
log() { echo "[synapse] $*" >&2; }

# 1. Install (once): prebuilt wheels, no compiler; ~16-20 s and ~240 MB here.
mkdir -p "$(dirname "$VENV")"
(
  flock 9
  if [ ! -x "$VENV/bin/synapse_homeserver" ]; then
    log "installing matrix-synapse${SYNAPSE_VERSION:+==$SYNAPSE_VERSION} into $VENV (once; ~20 s)"
    rm -rf "$VENV"
    "${SYNAPSE_PYTHON:-python3}" -m venv "$VENV"   # needs Python >= 3.10
    "$VENV/bin/pip" install -q --disable-pip-version-check \
      "matrix-synapse${SYNAPSE_VERSION:+==$SYNAPSE_VERSION}" >&2
  fi
) 9>"$VENV.lock"

# 2. Signing key (once; kept across restarts so event signatures stay valid).
[ -f "$DIR/signing.key" ] || "$VENV/bin/generate_signing_key" -o "$DIR/signing.key"

# 3. Config.  Registration paths are made absolute (Synapse opens them as
#    given, from its cwd); their checksums go into a comment, so editing a
#    registration file also counts as a config change.
AS_FILES="[]"; AS_SUMS=""
if [ $# -gt 0 ]; then
  AS_FILES="["
  for f in "$@"; do
    [ -f "$f" ] || { log "no such registration file: $f"; exit 1; }
    AS_FILES="$AS_FILES\"$(cd "$(dirname "$f")" && pwd)/$(basename "$f")\","
    AS_SUMS="$AS_SUMS $(sha256sum < "$f" | cut -c1-12)"
  done
  AS_FILES="${AS_FILES%,}]"
fi
# SYNAPSE_NO_APPSERVICE_E2EE=1 leaves out the experimental features an encrypting bridge
# needs (for the test of the bridge's startup check).
EXPERIMENTAL="experimental_features:
  msc2409_to_device_messages_enabled: true   # to-device in AS transactions
  msc3202_transaction_extensions: true       # device lists / OTK counts"
[ -n "${SYNAPSE_NO_APPSERVICE_E2EE:-}" ] && EXPERIMENTAL="# experimental_features left out"
# Everything is generous so tests never hit M_LIMIT_EXCEEDED.
RC='{per_second: 10000, burst_count: 10000}'
cat > "$DIR/homeserver.yaml.new" <<EOF
server_name: localhost
public_baseurl: $URL/
listeners:
  - port: $PORT
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]      # no 'federation': nothing federates
        compress: false
database:
  name: sqlite3
  args:
    database: $DIR/homeserver.db
media_store_path: $DIR/media_store
signing_key_path: $DIR/signing.key
macaroon_secret_key: test_macaroon_secret
form_secret: test_form_secret
report_stats: false
enable_metrics: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []   # refuse all outbound federation
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: $SECRET
app_service_config_files: $AS_FILES   # sha256:$AS_SUMS
$EXPERIMENTAL
rc_message: $RC
rc_registration: $RC
rc_room_creation: $RC
rc_joins: {local: $RC, remote: $RC}
rc_joins_per_room: $RC
rc_invites: {per_room: $RC, per_user: $RC, per_issuer: $RC}
rc_login: {address: $RC, account: $RC, failed_attempts: $RC}
rc_admin_redaction: $RC
rc_3pid_validation: $RC
rc_key_requests: $RC
rc_presence: {per_user: $RC}
rc_delayed_event_mgmt: $RC
rc_media_create: $RC
rc_profile: $RC
rc_reports: $RC
EOF

running() { [ -f "$DIR/synapse.pid" ] && kill -0 "$(cat "$DIR/synapse.pid")" 2>/dev/null; }
if running; then
  if cmp -s "$DIR/homeserver.yaml.new" "$DIR/homeserver.yaml" && [ -z "${SYNAPSE_FRESH:-}" ] \
     && curl -fs "$URL/_matrix/client/versions" >/dev/null; then
    rm "$DIR/homeserver.yaml.new"; echo "$URL"; exit 0
  fi
  log "config changed (or SYNAPSE_FRESH): restarting"
  "$(dirname "$0")/stop.sh" "$DIR"
fi
mv "$DIR/homeserver.yaml.new" "$DIR/homeserver.yaml"
# Something else on the port would make the readiness check below lie.
if curl -s -o /dev/null "$URL/"; then log "port $PORT is already in use"; exit 1; fi
if [ -n "${SYNAPSE_FRESH:-}" ]; then rm -rf "$DIR"/homeserver.db* "$DIR/media_store"; fi

# 4. Start in the background (own session, so stop.sh can signal it alone).
setsid "$VENV/bin/python" -m synapse.app.homeserver -c "$DIR/homeserver.yaml" \
  >>"$DIR/homeserver.log" 2>&1 < /dev/null &
echo $! > "$DIR/synapse.pid"

# 5. Wait until the client API answers (about 1-1.5 s here; 60 s cap).
for _ in $(seq 1 600); do
  running || { log "synapse exited; last log lines:"; tail -n 30 "$DIR/homeserver.log" >&2; exit 1; }
  if curl -fs "$URL/_matrix/client/versions" >/dev/null; then echo "$URL"; exit 0; fi
  sleep 0.1
done
log "synapse not ready after 60 s; see $DIR/homeserver.log"; exit 1
