#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, docs, unit tests and the
# end-to-end tests against a real Synapse (installed from PyPI into ~/.cache/bridgekit
# on first use by tests/synapse/start.sh), and the store suite against a throwaway
# PostgreSQL cluster (Debian's postgresql package, installed by tests/postgres/ensure.sh
# when missing), and the IRC bridge against ngircd (Debian's package, installed by
# tests/irc/ensure-ngircd.sh when missing), then a short run of every fuzz target
# (cargo-fuzz is installed from crates.io when missing). The dependency audit
# (scripts/audit.sh: cargo-deny against the RustSec database, or its snapshot offline) runs
# before the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# make builds jemalloc (the example bridges' allocator, from tikv-jemalloc-sys).
command -v make >/dev/null || tests/apt-install.sh make
tests/postgres/ensure.sh >/dev/null
tests/irc/ensure-ngircd.sh >/dev/null
cargo fmt --all -- --check
scripts/audit.sh
cargo clippy --locked --workspace --all-targets --features bridgekit/internals -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
cargo test --locked --workspace
# Every fuzz target for 10 s from its corpus (longer runs: scripts/fuzz.sh --runs N).
scripts/fuzz.sh --seconds 10
