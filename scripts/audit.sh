#!/usr/bin/env bash
# The dependency audit: `cargo deny check advisories` (config: deny.toml) against the live
# RustSec advisory database, or, when it cannot be fetched, against the snapshot in
# tests/audit/ (saying so). Never skipped: no cargo-deny, no database, or an advisory that
# applies fails the run. cargo-deny is installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DENY_VERSION=0.20.2
SNAPSHOT_COMMIT=bf5c0d245a92671908518d7e765914d437954ed6
SNAPSHOT_DATE="2026-08-21T08:28:40+02:00"
# The folder cargo-deny keeps the database of db-urls' first URL in (its name for that URL).
DB_DIR=advisory-db-3157b0e258782691

if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]; then
  echo "audit: installing cargo-deny $DENY_VERSION from crates.io" >&2
  cargo install --quiet --locked cargo-deny --version "$DENY_VERSION"
fi

check() { cargo deny --locked --offline "$@" check advisories --warn unmaintained; }

# cargo-deny reads the dependency graph offline, for every platform: on a fresh machine the
# builds have downloaded only this platform's crates, so fetch the rest first.
if ! cargo fetch --locked --quiet; then
  echo "audit: could not download the crates in Cargo.lock (crates.io unreachable?); the check needs them" >&2
fi

if timeout 180 cargo deny --locked fetch db >/tmp/bridgekit-audit-fetch.log 2>&1; then
  echo "audit: against the live RustSec advisory database" >&2
  check
  exit
fi

echo "audit: the live advisory database could not be fetched ($(grep -m1 -o 'fatal: .*' /tmp/bridgekit-audit-fetch.log || tail -1 /tmp/bridgekit-audit-fetch.log))" >&2
echo "audit: checking against the snapshot in tests/audit/ instead: rustsec/advisory-db ${SNAPSHOT_COMMIT:0:8} of ${SNAPSHOT_DATE%%T*}" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/dbs"
tar -C "$work/dbs" -xzf tests/audit/advisory-db.tar.gz
mv "$work/dbs/advisory-db" "$work/dbs/$DB_DIR"
# cargo-deny reads the database's age from its git HEAD: commit it at the snapshot's date.
(
  cd "$work/dbs/$DB_DIR"
  git init --quiet
  git add --all
  GIT_AUTHOR_DATE=$SNAPSHOT_DATE GIT_COMMITTER_DATE=$SNAPSHOT_DATE \
    git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
    commit --quiet --message "rustsec/advisory-db $SNAPSHOT_COMMIT"
)
{ echo "# deny.toml, reading the snapshot"; sed "s|^\[advisories\]|[advisories]\ndb-path = \"$work/dbs\"|" deny.toml; } >"$work/deny.toml"
check --config "$work/deny.toml"
