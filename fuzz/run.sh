#!/usr/bin/env bash
# A fuzzing campaign over every target, one after another: `fuzz/run.sh [SECONDS_PER_TARGET]`
# (default 720, so about an hour for the five). Works on the stable toolchain: RUSTC_BOOTSTRAP=1
# lets cargo-fuzz pass the sanitizer flags it needs. Logs go to target/fuzz-logs/ (the last
# lines of each hold libFuzzer's execution count and coverage); crashes to fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
per_target=${1:-720}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
[ -d corpus/fix ] || python3 seed.py
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
logs=../target/fuzz-logs
mkdir -p "$logs"
for target in yaml ruleset admission envoy_headers opa_input cel webhook vap fix; do
  echo "== $target for ${per_target}s"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: over 2 GiB is a memory bug.
  cargo fuzz run -O "$target" -- -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$logs/$target.log" 2>&1 || echo "$target: a crash; see $logs/$target.log"
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|cov:" "$logs/$target.log" | tail -3
done
