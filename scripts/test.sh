#!/usr/bin/env bash
# All of meshguard's tests: the workspace test suite, plus proof that policy-core builds for the
# wasm targets its shells run on. Needs the wasm32 targets (`.ci/run` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== policy-core builds for wasm (no I/O, no threads, no host ABI)"
cargo build --locked -p policy-core --target wasm32-unknown-unknown
cargo build --locked -p policy-core --target wasm32-wasip1 --no-default-features

echo "== formatting"
cargo fmt --all -- --check

echo "== tests"
cargo test --locked --workspace

echo "== benchmarks compile"
cargo bench --locked --workspace --no-run
