#!/usr/bin/env bash
# The benchmark: builds release binaries and runs the load generator (crates/loadgen).
# Each run prints one JSON line: a fake homeserver pushes transactions like Synapse (one in
# flight, --batch events) to the target and serves its sends; the line holds throughput,
# echo latency and ack percentiles, CPU per 1k events and peak RSS of the target, and every
# lost, duplicated or swallowed event. By default: baseline and bridgekit, echo and ingest.
# Extra arguments go to loadgen (see `target/release/loadgen --help`), e.g. --rate 1000.
# The release profile links with whole-program LTO (Cargo.toml): a cold build takes ~20 min on
# 2 cores, ~11 min after a change to bridgekit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked --release -p echo-bridge -p loadgen
exec target/release/loadgen "$@"
