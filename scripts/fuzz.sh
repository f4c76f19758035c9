#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer + AddressSanitizer), each from its
# committed corpus in fuzz/corpus/<target>. New inputs go to fuzz/grown/<target> (ignored by
# git), so a test run leaves the committed corpus as it was; --grow writes them into the
# committed corpus instead. Stops at the first crash, leak or timeout, with the reproducer in
# fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                    # 10 s per target (what the test suite runs)
#   scripts/fuzz.sh --seconds 300      # longer
#   scripts/fuzz.sh --runs 10000000    # a fixed number of executions per target
#   scripts/fuzz.sh --runs 10000000 transaction event   # some targets only
#   scripts/fuzz.sh --seconds 600 --grow   # grow the committed corpus (then review and commit)
#
# The toolchain here is stable Rust; cargo fuzz needs -Z flags (the sanitizer), which
# RUSTC_BOOTSTRAP=1 allows on stable. cargo-fuzz is installed from crates.io if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time=10)
targets=()
grow=false
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    --grow) grow=true; shift ;;
    *) targets+=("$1"); shift ;;
  esac
done
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz
export RUSTC_BOOTSTRAP=1
cd fuzz
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -O
mkdir -p logs
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "grown/$target"
  # libFuzzer writes new inputs into the first corpus directory it is given.
  dirs=("grown/$target" "corpus/$target")
  if $grow; then dirs=("corpus/$target" "grown/$target"); fi
  echo "fuzzing $target (${limit[*]})"
  log="logs/$target.log"
  # -rss_limit_mb and -timeout: unbounded allocation or a hang is a finding too.
  status=0
  cargo fuzz run -O "$target" "${dirs[@]}" -- "${limit[@]}" \
    -rss_limit_mb=1024 -timeout=5 -max_len=1048576 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)|panicked|deadly signal|Test unit written" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz target $target failed; the reproducer is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
