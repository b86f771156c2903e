#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: meshguard and its peers (regorus, CEL, Envoy RBAC and Lua, the
# admission hosts' floors, the JavaScript package in Node) on the same work in one run, each figure
# with its peer and the ratio.
# About 30 minutes on 2 cores. Needs wrk and valgrind for the load and instruction-count parts
# (without them those sections say "not measured"); sets up the rest like scripts/test.sh.
#   scripts/bench.sh            everything
#   scripts/bench.sh --quick    shorter criterion and load runs, for trying the pipeline
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The load and instruction-count sections need wrk and valgrind (Debian's packages).
if ! command -v wrk >/dev/null || ! command -v valgrind >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk valgrind >/dev/null
  fi
fi

quick=false
[ "${1:-}" = "--quick" ] && quick=true
if $quick; then
  criterion=(--warm-up-time 0.5 --measurement-time 1); load=(--rounds 1 --seconds 2)
else
  criterion=(--warm-up-time 1 --measurement-time 3); load=(--rounds 3 --seconds 5)
fi

echo "== wasm artifacts"
bash scripts/build-wasm.sh

echo "== JavaScript package"
bash scripts/build-js.sh

rm -rf target/criterion target/bench
mkdir -p target/bench
echo "== criterion: meshguard and its peers"
cargo bench --locked -p meshguard-benches --bench side_by_side -- "${criterion[@]}"
cargo bench --locked -p meshguard-benches --bench check_repo -- "${criterion[@]}"
cargo bench --locked -p meshguard-benches --bench admission_hosts -- "${criterion[@]}"

echo "== Envoy under load"
if command -v wrk >/dev/null; then
  cargo run --locked --release -p meshguard-benches --bin envoy-load -- "${load[@]}"
else
  echo "bench: wrk not found (apt-get install wrk); skipping the Envoy load comparison" >&2
fi

echo "== Envoy instructions per request (callgrind)"
if command -v valgrind >/dev/null && command -v curl >/dev/null; then
  bash scripts/envoy-instructions.sh
else
  echo "bench: valgrind or curl not found; skipping the Envoy instruction counts" >&2
fi

echo "== admission webhook under load"
command -v oha >/dev/null || cargo install oha --locked
cargo build --locked --release -p host-runner
if $quick; then python3 scripts/webhook-load.py --seconds 6; else python3 scripts/webhook-load.py --seconds 30; fi
echo "== admission webhook under load: mutating reviews (/mutate, every answer a patch)"
if $quick; then python3 scripts/webhook-load.py --seconds 6 --mutate; else python3 scripts/webhook-load.py --seconds 30 --mutate; fi

echo "== meshguard fix against meshguard check over the 10,000-object repo"
python3 scripts/fix-vs-check.py

echo "== admission webhook under attack (idle connections, costly reviews, a well-behaved tenant)"
if $quick; then python3 scripts/webhook-fairness.py --seconds 6 --idle 500; else python3 scripts/webhook-fairness.py; fi

echo "== report"
cargo build --locked --release -p meshguard-benches --bin instructions
cargo run --locked --release -p meshguard-benches --bin bench-report
